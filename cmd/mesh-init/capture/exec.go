package capture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// This file is the impure half of mesh-init: it runs iptables-save and
// iptables-restore (and their ip6tables twins), reads /proc, and copies the
// binary. Every decision it makes is delegated to rules.go and detect.go.

// Host is the world Execute acts on. NewHost returns the real one; tests may
// replace any field.
type Host struct {
	// Run runs a program with stdin and returns its standard output. A
	// failure is an *ExecError carrying the program's standard error.
	Run func(ctx context.Context, path string, args []string, stdin []byte) ([]byte, error)
	// LookPath finds a program in PATH (exec.LookPath).
	LookPath func(file string) (string, error)
	// ReadFile reads /proc files (os.ReadFile).
	ReadFile func(name string) ([]byte, error)
	// Self is the running binary, copied by --copy-self-to.
	Self string
	// Stdout receives the --dry-run output.
	Stdout io.Writer
	// Log receives one line per decision and step.
	Log io.Writer
}

// NewHost returns the real Host: programs from PATH, files from the local
// /proc, the binary from /proc/self/exe (which still works if the file on
// disk was replaced).
func NewHost(stdout, log io.Writer) *Host {
	return &Host{
		Run:      runProgram,
		LookPath: exec.LookPath,
		ReadFile: os.ReadFile,
		Self:     "/proc/self/exe",
		Stdout:   stdout,
		Log:      log,
	}
}

func (h *Host) logf(format string, args ...any) {
	if h.Log != nil {
		fmt.Fprintf(h.Log, "mesh-init: "+format+"\n", args...)
	}
}

// ExecError is a program that could not run or exited non-zero.
type ExecError struct {
	Path   string
	Args   []string
	Stderr string
	Err    error
}

func (e *ExecError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = e.Err.Error()
	} else {
		msg = strings.ReplaceAll(msg, "\n", " / ") + " (" + e.Err.Error() + ")"
	}
	return strings.TrimSpace(filepath.Base(e.Path)+" "+strings.Join(e.Args, " ")) + ": " + msg
}

func (e *ExecError) Unwrap() error { return e.Err }

func runProgram(ctx context.Context, path string, args []string, stdin []byte) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &ExecError{Path: path, Args: args, Stderr: stderr.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

// PrereqError is something the pod spec or the image must provide: a
// binary, a capability, IPv6. What says what is missing, Fix what to change.
type PrereqError struct {
	What string
	Fix  string
	Err  error
}

func (e *PrereqError) Error() string {
	s := e.What
	if e.Fix != "" {
		s += ": " + e.Fix
	}
	if e.Err != nil {
		s += " (" + e.Err.Error() + ")"
	}
	return s
}

func (e *PrereqError) Unwrap() error { return e.Err }

// RestoreError is iptables-save or -restore (or the ip6tables twins)
// failing: the kernel lacks a module, or a rule is not accepted.
type RestoreError struct {
	// Op is "reading" (save) or "writing" (restore).
	Op     string
	Family Family
	Mode   meshinit.Mode
	// Line is the 1-based input line the tool complained about, 0 if none.
	Line int
	// Text is that line of the input.
	Text string
	Hint string
	Err  *ExecError
}

func (e *RestoreError) Error() string {
	s := fmt.Sprintf("%s the %s rules (%s backend) failed", e.Op, e.Family, e.Mode)
	if e.Line > 0 {
		s += fmt.Sprintf(" at input line %d %q", e.Line, e.Text)
	}
	s += ": " + e.Err.Error()
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s
}

func (e *RestoreError) Unwrap() error { return e.Err }

const installFix = "install the iptables package in the mesh-init image " +
	"(Debian/Ubuntu: apt-get install -y iptables; Alpine: apk add iptables ip6tables; " +
	"Fedora/RHEL: dnf install iptables-nft iptables-legacy)"

// backend is one iptables implementation resolved to binaries.
type backend struct {
	mode    meshinit.Mode
	save    map[Family]string
	restore map[Family]string
}

var flavorRE = regexp.MustCompile(`\((nf_tables|legacy)\)`)

// resolve finds the save and restore binaries of mode for every family:
// "iptables-nft-restore" and so on, or else the unsuffixed
// "iptables-restore" when its --version says it is that backend (images
// that ship only one backend often install only the plain names).
func (h *Host) resolve(ctx context.Context, mode meshinit.Mode, fams []Family) (backend, error) {
	b := backend{mode: mode, save: map[Family]string{}, restore: map[Family]string{}}
	want := "nf_tables"
	if mode == meshinit.ModeLegacy {
		want = "legacy"
	}
	for _, f := range fams {
		for _, kind := range []string{"save", "restore"} {
			name := f.tool() + "-" + string(mode) + "-" + kind
			path, err := h.LookPath(name)
			if err != nil {
				generic := f.tool() + "-" + kind
				if gp, gerr := h.LookPath(generic); gerr == nil {
					out, _ := h.Run(ctx, gp, []string{"--version"}, nil)
					if m := flavorRE.FindSubmatch(out); m != nil && string(m[1]) == want {
						path, err = gp, nil
					}
				}
			}
			if err != nil {
				return backend{}, &PrereqError{
					What: fmt.Sprintf("%s (needed for %s rules with --iptables-mode=%s) is not in PATH (%s)",
						name, f, mode, os.Getenv("PATH")),
					Fix: installFix,
				}
			}
			if kind == "save" {
				b.save[f] = path
			} else {
				b.restore[f] = path
			}
		}
	}
	return b, nil
}

// saveAll runs the backend's save command (all tables) for every family.
// Reading all tables rather than "-t nat" avoids creating an empty nat
// table in the legacy backend just by looking, which would skew detection.
func (h *Host) saveAll(ctx context.Context, b backend, fams []Family) (map[Family]NATState, error) {
	out := map[Family]NATState{}
	for _, f := range fams {
		text, err := h.Run(ctx, b.save[f], nil, nil)
		if err != nil {
			return nil, classifyToolError(err, f, b.mode, "")
		}
		out[f] = ParseSave(string(text))
	}
	return out, nil
}

// restore runs the backend's restore command with input, in one
// transaction, without touching chains the input does not name.
func (h *Host) restore(ctx context.Context, b backend, f Family, input string) error {
	args := []string{"--noflush"}
	if b.mode == meshinit.ModeLegacy {
		// The legacy backend serialises writers with /run/xtables.lock;
		// wait for it rather than failing when another writer holds it.
		args = append(args, "--wait=30")
	}
	if _, err := h.Run(ctx, b.restore[f], args, []byte(input)); err != nil {
		return classifyToolError(err, f, b.mode, input)
	}
	return nil
}

var lineRE = regexp.MustCompile(`(?:Error occurred at line: |line )(\d+)`)

// classifyToolError turns a failed save or restore into an error that says
// what to fix: a permission problem (capabilities), a kernel without the
// needed tables or modules, or a rejected line.
func classifyToolError(err error, f Family, mode meshinit.Mode, input string) error {
	var ee *ExecError
	if !errors.As(err, &ee) {
		return err
	}
	msg := ee.Stderr
	switch {
	case strings.Contains(msg, "Permission denied"), strings.Contains(msg, "Operation not permitted"),
		strings.Contains(msg, "you must be root"):
		return &PrereqError{What: filepath.Base(ee.Path) + " was refused by the kernel", Fix: capabilityFix, Err: ee}
	}
	re := &RestoreError{Op: "writing", Family: f, Mode: mode, Err: ee}
	if input == "" {
		re.Op = "reading"
	}
	if m := lineRE.FindStringSubmatch(msg); m != nil && input != "" {
		n, _ := strconv.Atoi(m[1])
		lines := strings.Split(input, "\n")
		if n >= 1 && n <= len(lines) {
			re.Line, re.Text = n, lines[n-1]
		}
	}
	nat := map[Family]string{IPv4: "iptable_nat", IPv6: "ip6table_nat"}[f]
	other := meshinit.ModeLegacy
	if mode == meshinit.ModeLegacy {
		other = meshinit.ModeNFT
	}
	switch {
	case strings.Contains(msg, "unable to initialize table"), strings.Contains(msg, "Table does not exist"),
		strings.Contains(msg, "does not exist (do you need to insmod?)"), strings.Contains(msg, "Protocol not supported"),
		strings.Contains(msg, "Address family not supported"), strings.Contains(msg, "Failed to initialize nft"):
		if mode == meshinit.ModeLegacy {
			re.Hint = fmt.Sprintf("the kernel has no %s nat table for the legacy backend: load the %s module on the node, "+
				"or try --iptables-mode=%s (the legacy backend also needs NET_RAW)", f, nat, other)
		} else {
			re.Hint = fmt.Sprintf("the kernel has no %s nat table for the nft backend: load nf_tables and nft_chain_nat "+
				"on the node, or try --iptables-mode=%s", f, other)
		}
	case strings.Contains(msg, "Bad value"), strings.Contains(msg, "Bad argument"), strings.Contains(msg, "invalid"):
		// A value the tool rejects: the line (above) says which.
	case strings.Contains(msg, "No chain/target/match"), strings.Contains(msg, "Couldn't load"),
		strings.Contains(msg, "REDIRECT"), strings.Contains(msg, "owner"):
		re.Hint = "the kernel lacks a match or target mesh-init uses: load xt_REDIRECT, xt_owner, xt_tcpudp and nf_nat on the node"
	}
	return re
}

// CopySelf copies the file self (normally /proc/self/exe) to dst
// atomically: it writes a temporary file in dst's directory (created with
// mode 0755 when missing), makes it mode 0755 and renames it over dst, so a
// reader sees either the old file or the whole new one — and a running copy
// of the old file is not disturbed.
func CopySelf(self, dst string) error {
	if fi, serr := os.Stat(dst); serr == nil && fi.IsDir() {
		return fmt.Errorf("--copy-self-to=%s is a directory; give the file to create, such as %s",
			dst, filepath.Join(dst, "mesh-init"))
	}
	in, err := os.Open(self)
	if err != nil {
		return fmt.Errorf("copy to %s: reading the running binary: %w", dst, err)
	}
	defer in.Close()
	if err := writeFileAtomic(dst, in, 0o755); err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	return nil
}

// writeFileAtomic writes src to a temporary file in dst's directory
// (created with mode 0755 when missing), sets mode and renames it over dst:
// a reader sees the old file or the whole new one.
//
// It does not fsync. The files live in the pod's emptyDir, which lives and
// dies with the pod; only a crash of the node could lose written data, and
// after one the kubelet starts a new sandbox and runs mesh-init again,
// which writes both files anew. The sync of the 10 MB binary cost 36–116ms
// of every pod's start on the node tier's disk (docs/lossless.md).
func writeFileAtomic(dst string, src io.Reader, mode os.FileMode) (err error) {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = io.Copy(tmp, src); err != nil {
		return err
	}
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// families decides which families to write, logging the IPv6 decision.
func (h *Host) families(c meshinit.CaptureConfig, cleanup bool) ([]Family, error) {
	if c.IPv6 == meshinit.IPv6Off {
		h.logf("IPv6: skipped (--ipv6=off)")
		return []Family{IPv4}, nil
	}
	st := DetectIPv6(h.ReadFile)
	switch {
	case cleanup && st.Module:
		// Remove IPv6 rules wherever they can exist, even if the address
		// that made a previous run write them is gone or IPv6 has been
		// disabled since: ip6tables still holds them.
		return []Family{IPv4, IPv6}, nil
	case cleanup:
		h.logf("IPv6: the kernel has none (%s); only IPv4 rules to remove", st.Reason)
		return []Family{IPv4}, nil
	case c.IPv6 == meshinit.IPv6Required && !st.Kernel:
		return nil, &PrereqError{
			What: "--ipv6=required but the pod has no IPv6: " + st.Reason,
			Fix:  "give the pod IPv6 (a dual-stack or IPv6 cluster network), or set --ipv6=auto or --ipv6=off",
		}
	case c.IPv6 == meshinit.IPv6Required:
		h.logf("IPv6: rules required (--ipv6=required; %s)", st.Reason)
		return []Family{IPv4, IPv6}, nil
	case st.Routable:
		h.logf("IPv6: detected (%s); ip6tables rules are required", st.Reason)
		return []Family{IPv4, IPv6}, nil
	}
	h.logf("IPv6: not detected (%s); skipping ip6tables (--ipv6=required insists)", st.Reason)
	return []Family{IPv4}, nil
}

// target is a backend together with what its save commands reported.
type target struct {
	backend
	states map[Family]NATState
	// stale: auto mode chose the other backend, and this one holds a copy
	// of our chains (from an older version, or a run forced to it) that
	// would otherwise stay in force beside the new rules; it is removed.
	stale bool
}

// targets resolves the backend(s) to act on. With a forced mode that is the
// mode. With auto it is the backend ChooseBackend picks — or, for cleanup,
// every backend that holds something of ours.
func (h *Host) targets(ctx context.Context, mode meshinit.Mode, fams []Family, cleanup bool) ([]target, error) {
	if mode != meshinit.ModeAuto {
		b, err := h.resolve(ctx, mode, fams)
		if err != nil {
			return nil, err
		}
		if err := checkCapabilities(h.ReadFile, mode); err != nil {
			return nil, err
		}
		states, err := h.saveAll(ctx, b, fams)
		if err != nil {
			return nil, err
		}
		h.logf("iptables backend: %s (--iptables-mode=%s)", mode, mode)
		return []target{{backend: b, states: states}}, nil
	}

	var cands [2]target
	var obs [2]Observation
	var missing [2]error
	for i, m := range []meshinit.Mode{meshinit.ModeNFT, meshinit.ModeLegacy} {
		b, err := h.resolve(ctx, m, fams)
		if err != nil {
			missing[i] = err
			continue
		}
		cands[i].backend = b
		if m == meshinit.ModeLegacy && legacyTablesEmpty(h.ReadFile) {
			// No legacy table exists in this namespace: nothing to read.
			cands[i].states = map[Family]NATState{}
			obs[i] = Observation{Available: true}
			continue
		}
		if m == meshinit.ModeLegacy {
			if err := checkCapabilities(h.ReadFile, m); err != nil {
				return nil, fmt.Errorf("the legacy backend has tables here but cannot be read: %w", err)
			}
		}
		states, err := h.saveAll(ctx, b, fams)
		var pe *PrereqError
		switch {
		case errors.As(err, &pe):
			return nil, err
		case err != nil:
			// The binaries exist but the kernel refuses this backend (no
			// nf_tables, no ip_tables module): let the other one serve.
			h.logf("iptables backend %s unusable: %v", m, err)
			missing[i] = err
			continue
		}
		cands[i].states = states
		o := Observation{Available: true}
		for _, s := range states {
			o.Rules += s.Rules
			o.Hint = o.Hint || s.Hint
			o.Ours = o.Ours || !s.Empty()
		}
		obs[i] = o
	}
	if missing[0] != nil && missing[1] != nil {
		return nil, missing[0]
	}
	if cleanup {
		var out []target
		for i := range cands {
			if !obs[i].Available {
				continue
			}
			for _, s := range cands[i].states {
				if !s.Empty() {
					out = append(out, cands[i])
					break
				}
			}
		}
		return out, nil
	}
	chosen, why, err := ChooseBackend(obs[0], obs[1])
	if err != nil {
		return nil, err
	}
	i := 0
	if chosen == meshinit.ModeLegacy {
		i = 1
		if err := checkCapabilities(h.ReadFile, chosen); err != nil {
			return nil, err
		}
	}
	h.logf("iptables backend: %s (auto: %s)", chosen, why)
	out := []target{cands[i]}
	if other := 1 - i; obs[other].Ours {
		cands[other].stale = true
		out = append(out, cands[other])
	}
	return out, nil
}

// Execute runs a parsed capture command: the copy (unless dry run), then
// the rules for each family in one restore transaction per family. IPv4
// rules are always required; IPv6 rules are required when the pod has IPv6
// (or --ipv6=required) and skipped with a log line otherwise. Errors are
// *PrereqError, *RestoreError or plain errors; ExitCode maps them.
func Execute(ctx context.Context, cmd meshinit.CaptureCommand, h *Host) error {
	c := cmd.Config
	if err := c.Validate(); err != nil {
		return &meshinit.UsageError{Err: err}
	}
	if cmd.DryRun {
		if cmd.CopySelfTo != "" {
			h.logf("dry run: not copying the binary to %s", cmd.CopySelfTo)
		}
		if cmd.EnvoyBootstrapTo != "" {
			h.logf("dry run: not writing the proxy's bootstrap to %s", cmd.EnvoyBootstrapTo)
		}
		_, err := io.WriteString(h.Stdout, DryRun(c, cmd.Cleanup))
		return err
	}
	start := time.Now()
	if err := Prepare(cmd, h); err != nil {
		return err
	}
	// NET_ADMIN is needed whatever the backend; NET_RAW only by legacy,
	// which auto mode checks once it has chosen.
	if err := checkCapabilities(h.ReadFile, c.Mode); err != nil {
		return err
	}
	// What the rules were written with, from the kernel's own record: a
	// reader of the pod's log (or the node tier) sees the privileges the
	// init container really had.
	if caps, err := effectiveCaps(h.ReadFile); err == nil {
		h.logf("effective capabilities: %s", DescribeCaps(caps))
	}
	fams, err := h.families(c, cmd.Cleanup)
	if err != nil {
		return err
	}
	targets, err := h.targets(ctx, c.Mode, fams, cmd.Cleanup)
	if err != nil {
		return err
	}
	removed := false
	for _, t := range targets {
		for _, f := range fams {
			st := t.states[f]
			var input string
			if t.stale {
				if input = CleanupInput(st); input == "" {
					continue
				}
				if err := h.restore(ctx, t.backend, f, input); err != nil {
					return err
				}
				h.logf("%s: removed a stale copy of our chains from the %s backend with %s", f, t.mode, filepath.Base(t.restore[f]))
				continue
			}
			if cmd.Cleanup {
				input = CleanupInput(st)
				if input == "" {
					continue
				}
			} else {
				if UpToDate(c, f, st) {
					h.logf("%s: rules already up to date (%s); nothing written", f, filepath.Base(t.save[f]))
					continue
				}
				input = ApplyInput(c, f, st)
			}
			if err := h.restore(ctx, t.backend, f, input); err != nil {
				return err
			}
			if cmd.Cleanup {
				removed = true
				h.logf("%s: removed %d chains and %d jumps with %s", f, len(st.Chains), len(st.Jumps), filepath.Base(t.restore[f]))
			} else {
				h.logf("%s: wrote %d rules in %d chains with %s (%d jumps already present)",
					f, len(ChainRules(c, f)), len(OwnedChains()), filepath.Base(t.restore[f]), len(st.Jumps))
			}
		}
	}
	if cmd.Cleanup && !removed {
		h.logf("cleanup: no MESH_ chains or jumps found; nothing to do")
	}
	h.logf("done in %s", time.Since(start).Round(time.Millisecond))
	return nil
}

// Prepare does what every pod needs from mesh-init before the rules: it
// copies the binary for the hooks (--copy-self-to) and writes the proxy's
// bootstrap (--envoy-bootstrap-to). Execute runs it first; `mesh-init
// validate`, which writes no rules (cni capture mode), runs it alone. Both
// need no privilege beyond writing the shared volume.
func Prepare(cmd meshinit.CaptureCommand, h *Host) error {
	if cmd.CopySelfTo != "" {
		if err := CopySelf(h.Self, cmd.CopySelfTo); err != nil {
			return err
		}
		h.logf("copied the binary to %s", cmd.CopySelfTo)
	}
	if cmd.EnvoyBootstrapTo != "" {
		data, err := meshinit.DecodeFile(cmd.EnvoyBootstrap)
		if err != nil {
			return &meshinit.UsageError{Err: fmt.Errorf("--%s: %w", meshinit.FlagEnvoyBootstrap, err)}
		}
		if err := writeFileAtomic(cmd.EnvoyBootstrapTo, bytes.NewReader(data), 0o644); err != nil {
			return fmt.Errorf("writing the proxy's bootstrap: %w", err)
		}
		h.logf("wrote the proxy's bootstrap (%d bytes, sha256 %x) to %s", len(data), sha256.Sum256(data), cmd.EnvoyBootstrapTo)
	}
	return nil
}
