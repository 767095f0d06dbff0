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
// file is turned into a .conflist holding it and ours. Every write is
// atomic (a temporary file in the same folder, synced, renamed over the
// file), so the runtime never reads half a file, and happens only when the
// content changes, so the runtime's file watcher sees no loop. The folder
// is polled: when the primary CNI rewrites its file without our entry, or
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
// ones are logged and retried.
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
	waiting := false
	for {
		err := Sync(o)
		switch {
		case errors.Is(err, errNoConfig):
			if !waiting {
				o.logf("waiting for the node's CNI configuration in %s", o.ConfDir)
			}
			waiting = true
		case err != nil:
			o.logf("%v (retrying)", err)
		default:
			waiting = false
		}
		select {
		case <-ctx.Done():
			o.logf("stopping: removing the plugin")
			return Uninstall(o)
		case <-time.After(o.Interval):
		}
	}
}

var errNoConfig = errors.New("no CNI configuration yet")

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
	var errs []error
	for i, f := range files {
		if i == 0 {
			errs = append(errs, chain(o, f))
			continue
		}
		if changed, err := rewrite(f, func(c *conflist) bool { return c.remove() }); err != nil {
			errs = append(errs, err)
		} else if changed {
			o.logf("removed the plugin from %s, which is no longer the first configuration", f)
		}
	}
	return errors.Join(errs...)
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
	c, err := readConflist(files[0])
	if err != nil {
		return err
	}
	if !c.chained() {
		return fmt.Errorf("%s does not chain %s with the %s capability", files[0], plugin.Type, plugin.PodAnnotationsCapability)
	}
	return nil
}

// Uninstall removes the plugin's entry from every configuration file and
// then its binary: in that order, so the runtime never runs a
// configuration that names a missing plugin.
func Uninstall(o Options) error {
	var errs []error
	files, err := confFiles(o.ConfDir)
	errs = append(errs, err)
	for _, f := range files {
		changed, err := rewrite(f, func(c *conflist) bool { return c.remove() })
		errs = append(errs, err)
		if changed {
			o.logf("removed the plugin from %s", f)
		}
	}
	bin := filepath.Join(o.BinDir, plugin.Type)
	if err := os.Remove(bin); err == nil {
		o.logf("removed %s", bin)
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
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

// chain puts the plugin's entry into the first configuration file.
func chain(o Options, path string) error {
	if filepath.Ext(path) != ".conflist" {
		c, err := readConflist(path)
		if err != nil {
			return err
		}
		if c.single {
			// A single-plugin configuration: a .conflist holding it and ours
			// replaces it (the .conf goes only once the .conflist is there).
			c.add()
			list := strings.TrimSuffix(path, filepath.Ext(path)) + ".conflist"
			b, err := c.marshal()
			if err != nil {
				return err
			}
			if err := writeAtomic(list, b, c.mode); err != nil {
				return err
			}
			if err := os.Remove(path); err != nil {
				return err
			}
			o.logf("turned %s into %s and chained the plugin there", path, list)
			return nil
		}
	}
	changed, err := rewrite(path, func(c *conflist) bool { return c.add() })
	if err != nil {
		return err
	}
	if changed {
		o.logf("chained the plugin into %s", path)
	}
	return nil
}

// conflist is a configuration file, kept as raw JSON so that everything
// but our entry is written back as it was (key order aside).
type conflist struct {
	top     map[string]json.RawMessage
	plugins []json.RawMessage
	// single: the file is one plugin's configuration (a .conf), not a list.
	single bool
	mode   os.FileMode
}

func readConflist(path string) (*conflist, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	c := &conflist{mode: st.Mode().Perm()}
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

// rewrite applies edit to a conflist file and writes it back when edit
// reports a change. Single-plugin files are never ours to change.
func rewrite(path string, edit func(*conflist) bool) (bool, error) {
	c, err := readConflist(path)
	if err != nil {
		return false, err
	}
	if c.single || !edit(c) {
		return false, nil
	}
	b, err := c.marshal()
	if err != nil {
		return false, err
	}
	return true, writeAtomic(path, b, c.mode)
}

func compact(b []byte) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}

// writeAtomic writes data to a temporary file in path's folder (a name
// the runtime ignores: no configuration extension), syncs it and renames
// it over path.
func writeAtomic(path string, data []byte, mode os.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+plugin.Type+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
