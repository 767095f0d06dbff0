// Package install is `mesh-cni install`, the node agent the chart's
// DaemonSet runs (cni.enabled): it copies the mesh-cni binary into the
// node's CNI bin folder and chains the plugin into the node's CNI
// configuration, keeps both in place while it runs, and removes both when
// it stops.
//
// Which configuration: the one containerd uses, the first file of the
// configuration folder in lexical order with the extension .conf,
// .conflist or .json (go-cni's rule). The plugin's entry is appended to
// its plugins list, after the primary plugins, declaring the
// io.kubernetes.cri.pod-annotations capability; a single-plugin .conf
// file is turned into a .conflist holding it and ours (unless a .conflist
// of that name that the agent did not make exists: then both are left
// alone and the readiness check says why). A symbolic link is followed to
// its target when that lies inside the folder, and the target is edited in
// place of the link; other links are left alone, likewise. Every write is
// atomic (a temporary file in the same folder, synced, exchanged with the
// file) and a compare-and-swap against the primary CNI rewriting its file
// meanwhile (files.go), so the runtime never reads half a file and no
// update of the primary is lost, and happens only when the content
// changes, so the runtime's file watcher sees no loop. The folder is
// polled: when the primary CNI rewrites its file without our entry, or
// another file becomes the first, the entry is put back where it belongs
// (and removed from the file that is no longer first). Entries of other
// plugins are never touched.
package install

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sidecar-injector/injector/cmd/mesh-cni/plugin"
)

// Options configure the agent.
type Options struct {
	// BinDir is the node's CNI bin folder as mounted in the agent
	// (/opt/cni/bin on most nodes, /usr/lib/cni on Debian's packages).
	BinDir string
	// ConfDir is the node's CNI configuration folder (/etc/cni/net.d).
	ConfDir string
	// Self is the binary to install (/proc/self/exe).
	Self string
	// Interval is how often the folders are checked.
	Interval time.Duration
	Log      io.Writer

	installed *seen // set by Run
}

func (o Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, "mesh-cni install: "+format+"\n", args...)
	}
}

// Main is `mesh-cni install [flags]`.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mesh-cni install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := Options{Self: "/proc/self/exe", Log: stdout}
	fs.StringVar(&o.BinDir, "bin-dir", "/host/opt/cni/bin", "the node's CNI bin folder, as mounted here")
	fs.StringVar(&o.ConfDir, "conf-dir", "/host/etc/cni/net.d", "the node's CNI configuration folder, as mounted here")
	fs.DurationVar(&o.Interval, "interval", 2*time.Second, "how often the folders are checked")
	check := fs.Bool("check", false, "exit 0 when the plugin is installed and chained into the first configuration, 1 otherwise (a readiness probe)")
	uninstall := fs.Bool("uninstall", false, "remove the plugin's entries and binary, and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case *check:
		if err := Check(o); err != nil {
			fmt.Fprintf(stderr, "mesh-cni install --check: %v\n", err)
			return 1
		}
		return 0
	case *uninstall:
		if err := Uninstall(o); err != nil {
			fmt.Fprintf(stderr, "mesh-cni install: %v\n", err)
			return 1
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, o); err != nil {
		fmt.Fprintf(stderr, "mesh-cni install: %v\n", err)
		return 1
	}
	return 0
}

// Run installs and keeps the plugin chained until ctx ends, then
// uninstalls it. An error reaching the folders at start is returned; later
// ones are logged (a repeated one once, then every repeatEvery) and
// retried.
func Run(ctx context.Context, o Options) error {
	if o.Interval <= 0 {
		o.Interval = 2 * time.Second
	}
	for _, d := range []string{o.BinDir, o.ConfDir} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return fmt.Errorf("%s is not a folder (mount the node's CNI folders there): %v", d, err)
		}
	}
	o.installed = &seen{}
	o.logf("bin folder %s, configuration folder %s, checked every %s", o.BinDir, o.ConfDir, o.Interval)
	removeTemps(o, o.BinDir, o.ConfDir)
	var rep repeats
	for {
		rep.report(o, time.Now(), Sync(o))
		select {
		case <-ctx.Done():
			o.logf("stopping: removing the plugin")
			return Uninstall(o)
		case <-time.After(o.Interval):
		}
	}
}

// repeatEvery is how often an error that keeps recurring is logged again.
const repeatEvery = 5 * time.Minute

// repeats logs Sync's outcome: an error when it first occurs, then only a
// reminder every repeatEvery while it recurs unchanged, and its end.
type repeats struct {
	last    string
	waiting bool
	n       int
	at      time.Time
}

func (r *repeats) report(o Options, now time.Time, err error) {
	if err == nil {
		if r.last != "" && !r.waiting {
			o.logf("recovered from: %s", r.last)
		}
		r.last, r.waiting = "", false
		return
	}
	msg := err.Error()
	waiting := errors.Is(err, errNoConfig)
	if waiting {
		msg = fmt.Sprintf("waiting for the node's CNI configuration in %s", o.ConfDir)
	}
	if msg == r.last {
		r.n++
		if now.Sub(r.at) >= repeatEvery {
			o.logf("%s (still, %d more times in %s)", msg, r.n, now.Sub(r.at).Round(time.Second))
			r.n, r.at = 0, now
		}
		return
	}
	r.last, r.waiting, r.n, r.at = msg, waiting, 0, now
	if waiting {
		o.logf("%s", msg)
		return
	}
	o.logf("%s (retrying every %s; logged again every %s while it recurs)", msg, o.Interval, repeatEvery)
}

var errNoConfig = errors.New("no CNI configuration yet")

// attempts bounds the retries of one edit whose file keeps changing under
// it; the next poll tries again.
const attempts = 5

// Sync makes the node's folders hold the plugin: the binary, and the
// entry in the first configuration file and in no other.
func Sync(o Options) error {
	if err := installBinary(o); err != nil {
		return err
	}
	files, err := confFiles(o.ConfDir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return errNoConfig
	}
	errs := []error{retry(func() error { return chain(o, files[0]) })}
	// Listed again: chaining a single-plugin file renames it.
	if files, err = confFiles(o.ConfDir); err != nil || len(files) == 0 {
		return errors.Join(append(errs, err)...)
	}
	for _, f := range files[1:] {
		removed, err := unchain(f, o.ConfDir)
		switch {
		case err != nil:
			errs = append(errs, err)
		case removed:
			o.logf("removed the plugin from %s, which is no longer the first configuration", f)
		}
	}
	return errors.Join(errs...)
}

// retry runs an edit again while its file changed under it.
func retry(edit func() error) error {
	var err error
	for i := 0; i < attempts; i++ {
		if err = edit(); !errors.Is(err, errChanged) {
			return err
		}
	}
	return fmt.Errorf("%w %d times in a row; trying again later", err, attempts)
}

// Check reports whether the plugin is installed and chained.
func Check(o Options) error {
	if st, err := os.Stat(filepath.Join(o.BinDir, plugin.Type)); err != nil || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not installed in %s", plugin.Type, o.BinDir)
	}
	files, err := confFiles(o.ConfDir)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no CNI configuration in %s", o.ConfDir)
	}
	real, err := resolve(o.ConfDir, files[0])
	if err != nil {
		return err
	}
	c, err := readConflist(real)
	if err != nil {
		return err
	}
	if c.single {
		if err := clash(files[0]); err != nil {
			return err
		}
		return fmt.Errorf("%s is a single-plugin configuration not yet turned into a .conflist chaining %s", files[0], plugin.Type)
	}
	if !c.chained() {
		return fmt.Errorf("%s does not chain %s with the %s capability", files[0], plugin.Type, plugin.PodAnnotationsCapability)
	}
	return nil
}

// Uninstall removes the plugin's entry from every configuration file and
// then its binary: in that order, so the runtime never runs a
// configuration that names a missing plugin. If an entry cannot be
// removed, the binary stays (pods keep being set up) and the error says
// which file.
func Uninstall(o Options) error {
	bin := filepath.Join(o.BinDir, plugin.Type)
	files, err := confFiles(o.ConfDir)
	if err != nil {
		return fmt.Errorf("listing the configuration files: %w; keeping %s, which one of them may name", err, bin)
	}
	var errs []error
	for _, f := range files {
		removed, err := unchain(f, o.ConfDir)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("removing the plugin from %s: %w", f, err))
		case removed:
			o.logf("removed the plugin from %s", f)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w; keeping %s, which that configuration still names", errors.Join(errs...), bin)
	}
	if _, err := os.Lstat(bin); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := os.Remove(bin); err != nil {
		return err
	}
	o.logf("removed %s", bin)
	return nil
}

// confFiles lists the configuration files the runtime considers, in the
// order it does (go-cni: libcni.ConfFiles, sorted).
func confFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// installBinary copies Self to BinDir/mesh-cni unless the same bytes are
// there: atomically, so a runtime starting the plugin meanwhile runs the
// old file or the new one (a running binary is never overwritten in place,
// which would fail with "text file busy").
func installBinary(o Options) error {
	dst := filepath.Join(o.BinDir, plugin.Type)
	st, err := os.Stat(dst)
	if err == nil && o.installed != nil && o.installed.matches(dst, st) {
		return nil // unchanged since this agent wrote or checked it
	}
	want, err := os.ReadFile(o.Self)
	if err != nil {
		return fmt.Errorf("reading the running binary: %w", err)
	}
	if have, err := os.ReadFile(dst); err != nil || !bytes.Equal(have, want) {
		if err := writeAtomic(dst, want, 0o755); err != nil {
			return fmt.Errorf("installing %s: %w", dst, err)
		}
		o.logf("installed %s (%d bytes)", dst, len(want))
	}
	if o.installed != nil {
		if st, err := os.Stat(dst); err == nil {
			o.installed.remember(dst, st)
		}
	}
	return nil
}

// seen remembers the installed binary's size and time, so the agent reads
// it (and itself) again only when something replaced it.
type seen struct {
	path string
	size int64
	mod  time.Time
}

func (s *seen) matches(path string, st os.FileInfo) bool {
	return s.path == path && s.size == st.Size() && s.mod.Equal(st.ModTime())
}

func (s *seen) remember(path string, st os.FileInfo) {
	s.path, s.size, s.mod = path, st.Size(), st.ModTime()
}

// chain puts the plugin's entry into the first configuration file, path
// (through a link, into its target).
func chain(o Options, path string) error {
	real, err := resolve(o.ConfDir, path)
	if err != nil {
		return err
	}
	c, err := readConflist(real)
	if err != nil {
		return err
	}
	if c.single {
		if real != path {
			return fmt.Errorf("%s is a symbolic link to a single-plugin configuration, which the agent does not turn into a .conflist "+
				"(the link would have to go); make it a .conflist", path)
		}
		return convert(o, path, c)
	}
	if !c.add() {
		return nil
	}
	b, err := c.marshal()
	if err != nil {
		return err
	}
	if err := replace(real, b, c.mode, c.id); err != nil {
		return err
	}
	if real != path {
		o.logf("chained the plugin into %s (the target of %s)", real, path)
	} else {
		o.logf("chained the plugin into %s", path)
	}
	return nil
}

// convertedKey marks a .conflist the agent made from a single-plugin
// file, with that file's name: when the primary CNI writes its .conf again
// (which then comes first), the agent may replace its own .conflist, and
// only its own. libcni ignores keys it does not know.
const convertedKey = "meshCNIConvertedFrom"

// convert turns the single-plugin file path into a .conflist of the same
// name holding it and ours, then removes path.
func convert(o Options, path string, c *conflist) error {
	list := strings.TrimSuffix(path, filepath.Ext(path)) + ".conflist"
	c.add()
	from, _ := json.Marshal(filepath.Base(path))
	c.top[convertedKey] = from
	b, err := c.marshal()
	if err != nil {
		return err
	}
	if _, err := os.Lstat(list); err == nil {
		if err := clash(path); err != nil {
			return err
		}
		twin, err := readConflist(list)
		if err != nil {
			return err
		}
		if err := replace(list, b, c.mode, twin.id); err != nil {
			return err
		}
	} else if err := create(list, b, c.mode); err != nil {
		return err
	}
	if err := removeIf(path, c.id); err != nil {
		return err
	}
	o.logf("turned %s into %s and chained the plugin there", path, list)
	return nil
}

// errClash is a single-plugin file whose .conflist name is taken.
var errClash = errors.New("clashes with an existing .conflist")

// clash says why the single-plugin file path cannot become a .conflist:
// a file of that name exists that the agent did not make from it.
func clash(path string) error {
	list := strings.TrimSuffix(path, filepath.Ext(path)) + ".conflist"
	fi, err := os.Lstat(list)
	if err != nil {
		return nil
	}
	if fi.Mode().IsRegular() {
		if twin, err := readConflist(list); err == nil && twin.convertedFrom() == filepath.Base(path) {
			return nil
		}
	}
	return fmt.Errorf("%s %w: it would become %s, which exists and was not made by %s from it; "+
		"both are left alone: remove or rename one of them", path, errClash, list, plugin.Type)
}

// unchain removes every entry of ours from the configuration file path;
// removed says whether there was one. A file the agent cannot parse is
// left alone unless it may hold an entry of ours (an error: the caller
// must keep the binary it names).
func unchain(path, dir string) (removed bool, err error) {
	real, err := resolve(dir, path)
	if err != nil {
		// Gone, or a link the agent does not follow (so never wrote
		// through): ours only if its content names the plugin.
		if b, rerr := os.ReadFile(path); rerr != nil || !mentionsUs(b) {
			return false, nil
		}
		return false, err
	}
	err = retry(func() error {
		b, id, mode, err := readFile(real)
		if err != nil {
			return err
		}
		c, err := parseConflist(real, b)
		if err != nil {
			if mentionsUs(b) {
				return fmt.Errorf("%w, and it names %s", err, plugin.Type)
			}
			return nil
		}
		if c.single || !c.remove() {
			return nil
		}
		out, err := c.marshal()
		if err != nil {
			return err
		}
		if err := replace(real, out, mode, id); err != nil {
			return err
		}
		removed = true
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return removed, err
}

// conflist is a configuration file, kept as raw JSON so that everything
// but our entry is written back as it was (key order aside).
type conflist struct {
	top     map[string]json.RawMessage
	plugins []json.RawMessage
	// single: the file is one plugin's configuration (a .conf), not a list.
	single bool
	mode   os.FileMode
	// id is the version of the file that was read.
	id identity
}

func readConflist(path string) (*conflist, error) {
	b, id, mode, err := readFile(path)
	if err != nil {
		return nil, err
	}
	c, err := parseConflist(path, b)
	if err != nil {
		return nil, err
	}
	c.id, c.mode = id, mode
	return c, nil
}

func parseConflist(path string, b []byte) (*conflist, error) {
	c := &conflist{}
	if err := json.Unmarshal(b, &c.top); err != nil {
		return nil, fmt.Errorf("%s is not a JSON object (waiting for the primary CNI to finish it): %w", path, err)
	}
	if raw, ok := c.top["plugins"]; ok {
		if err := json.Unmarshal(raw, &c.plugins); err != nil {
			return nil, fmt.Errorf("%s: plugins is not a list: %w", path, err)
		}
		return c, nil
	}
	if _, ok := c.top["type"]; !ok {
		return nil, fmt.Errorf("%s has neither plugins nor type", path)
	}
	// One plugin: cniVersion and name move to the list.
	c.single = true
	one := map[string]json.RawMessage{}
	for k, v := range c.top {
		if k != "cniVersion" && k != "name" {
			one[k] = v
		}
	}
	pb, err := json.Marshal(one)
	if err != nil {
		return nil, err
	}
	c.plugins = []json.RawMessage{pb}
	c.top = map[string]json.RawMessage{"cniVersion": c.top["cniVersion"], "name": c.top["name"]}
	return c, nil
}

// convertedFrom is the file the agent made this .conflist from, if any.
func (c *conflist) convertedFrom() string {
	var s string
	_ = json.Unmarshal(c.top[convertedKey], &s)
	return s
}

// entry is our plugin's configuration entry.
func entry() json.RawMessage {
	b, _ := json.Marshal(map[string]any{"type": plugin.Type, "capabilities": map[string]bool{plugin.PodAnnotationsCapability: true}})
	return b
}

func isOurs(p json.RawMessage) bool {
	var t struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(p, &t) == nil && t.Type == plugin.Type
}

// chained: exactly our entry, last.
func (c *conflist) chained() bool {
	n := len(c.plugins)
	if n == 0 || !bytes.Equal(compact(c.plugins[n-1]), entry()) {
		return false
	}
	for _, p := range c.plugins[:n-1] {
		if isOurs(p) {
			return false
		}
	}
	return true
}

// add makes our entry the last plugin, once; it reports a change.
func (c *conflist) add() bool {
	if c.chained() {
		return false
	}
	c.remove()
	c.plugins = append(c.plugins, entry())
	return true
}

// remove drops every entry of ours; it reports a change.
func (c *conflist) remove() bool {
	kept := c.plugins[:0:0]
	for _, p := range c.plugins {
		if !isOurs(p) {
			kept = append(kept, p)
		}
	}
	changed := len(kept) != len(c.plugins)
	c.plugins = kept
	return changed
}

func (c *conflist) marshal() ([]byte, error) {
	pb, err := json.Marshal(c.plugins)
	if err != nil {
		return nil, err
	}
	top := map[string]json.RawMessage{}
	for k, v := range c.top {
		top[k] = v
	}
	top["plugins"] = pb
	b, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func compact(b []byte) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}
