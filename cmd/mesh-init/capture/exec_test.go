package capture

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// These tests drive Execute against a scripted Host: they check which
// programs run with which input, and what each failure turns into. The real
// binaries and kernel are exercised by the suite in test/netns.

const (
	allCaps     = "CapEff:\t000001ffffffffff\n"
	dualStack   = "fd000000000000000000000000000001 02 40 00 80     eth0\n00000000000000000000000000000001 01 80 10 80       lo\n"
	linkLocalV6 = "fe800000000000000000000000000001 02 40 20 80     eth0\n00000000000000000000000000000001 01 80 10 80       lo\n"
)

type fakeHost struct {
	files    map[string]string
	path     map[string]bool   // programs in PATH
	versions map[string]string // program → --version output
	saves    map[string]string // save program → output
	fail     map[string]string // program → stderr of a failure
	calls    []string
	inputs   map[string]string // restore program → stdin
	log      bytes.Buffer
	stdout   bytes.Buffer
}

func newFake() *fakeHost {
	f := &fakeHost{
		files: map[string]string{
			"/proc/self/status":                        allCaps,
			"/proc/net/if_inet6":                       dualStack,
			"/proc/sys/net/ipv6/conf/all/disable_ipv6": "0\n",
		},
		path: map[string]bool{}, versions: map[string]string{}, saves: map[string]string{},
		fail: map[string]string{}, inputs: map[string]string{},
	}
	for _, fam := range []string{"iptables", "ip6tables"} {
		for _, m := range []string{"nft", "legacy"} {
			for _, k := range []string{"save", "restore"} {
				f.path[fam+"-"+m+"-"+k] = true
			}
		}
	}
	return f
}

func (f *fakeHost) host() *Host {
	return &Host{
		Run: func(_ context.Context, path string, args []string, stdin []byte) ([]byte, error) {
			name := strings.TrimPrefix(path, "/usr/sbin/")
			f.calls = append(f.calls, strings.TrimSpace(name+" "+strings.Join(args, " ")))
			if len(args) == 1 && args[0] == "--version" {
				return []byte(f.versions[name]), nil
			}
			if stderr, ok := f.fail[name]; ok {
				return nil, &ExecError{Path: path, Args: args, Stderr: stderr, Err: errors.New("exit status 1")}
			}
			if stdin != nil {
				f.inputs[name] = string(stdin)
			}
			return []byte(f.saves[name]), nil
		},
		LookPath: func(file string) (string, error) {
			if f.path[file] {
				return "/usr/sbin/" + file, nil
			}
			return "", errors.New("executable file not found in $PATH")
		},
		ReadFile: func(name string) ([]byte, error) {
			if s, ok := f.files[name]; ok {
				return []byte(s), nil
			}
			return nil, fs.ErrNotExist
		},
		Stdout: &f.stdout,
		Log:    &f.log,
	}
}

func (f *fakeHost) execute(t *testing.T, args ...string) error {
	t.Helper()
	cmd, err := meshinit.ParseCaptureCommand(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Execute(context.Background(), cmd, f.host())
}

func TestExecuteAutoFreshPod(t *testing.T) {
	f := newFake()
	if err := f.execute(t); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"iptables-nft-save", "ip6tables-nft-save", // legacy has no tables: not run
		"iptables-nft-restore --noflush", "ip6tables-nft-restore --noflush",
	}
	if strings.Join(f.calls, "|") != strings.Join(want, "|") {
		t.Errorf("calls %q, want %q", f.calls, want)
	}
	if got := f.inputs["iptables-nft-restore"]; got != ApplyInput(meshinit.DefaultCaptureConfig(), IPv4, NATState{}) {
		t.Errorf("IPv4 input:\n%s", got)
	}
	if got := f.inputs["ip6tables-nft-restore"]; got != ApplyInput(meshinit.DefaultCaptureConfig(), IPv6, NATState{}) {
		t.Errorf("IPv6 input:\n%s", got)
	}
	for _, want := range []string{"IPv6: detected (eth0 has the global IPv6 address fd00:", "iptables backend: nft (auto: both backends hold 0 rules; nft is the default)",
		"effective capabilities: CHOWN,DAC_OVERRIDE,", ",CHECKPOINT_RESTORE (0x1ffffffffff)"} {
		if !strings.Contains(f.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, f.log.String())
		}
	}
}

func TestExecuteAutoPicksLegacyWithRules(t *testing.T) {
	f := newFake()
	f.files["/proc/net/ip_tables_names"] = "nat\nfilter\n"
	f.saves["iptables-legacy-save"] = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n-A INPUT -j DROP\nCOMMIT\n"
	f.saves["iptables-nft-save"] = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n"
	if err := f.execute(t); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.log.String(), "iptables backend: legacy (auto: the legacy backend holds more rules (2 legacy, 1 nft))") {
		t.Errorf("log:\n%s", f.log.String())
	}
	last := f.calls[len(f.calls)-2:]
	if last[0] != "iptables-legacy-restore --noflush --wait=30" || last[1] != "ip6tables-legacy-restore --noflush --wait=30" {
		t.Errorf("calls %q", f.calls)
	}
}

func TestExecuteAutoHintWins(t *testing.T) {
	f := newFake()
	f.files["/proc/net/ip_tables_names"] = "mangle\n"
	f.saves["iptables-legacy-save"] = "*filter\n-A INPUT -j ACCEPT\n-A INPUT -j ACCEPT\nCOMMIT\n"
	f.saves["iptables-nft-save"] = "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"
	if err := f.execute(t); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.log.String(), "iptables backend: nft (auto: the nft backend holds a Kubernetes marker chain)") {
		t.Errorf("log:\n%s", f.log.String())
	}
}

func TestExecuteAutoFallsBackWhenNFTUnsupported(t *testing.T) {
	f := newFake()
	f.fail["iptables-nft-save"] = "iptables-nft-save v1.8.9 (nf_tables): Failed to initialize nft: Protocol not supported\n"
	if err := f.execute(t); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.log.String(), "iptables backend nft unusable") ||
		!strings.Contains(f.log.String(), "iptables backend: legacy (auto: only the legacy backend is available)") {
		t.Errorf("log:\n%s", f.log.String())
	}
	if _, ok := f.inputs["ip6tables-legacy-restore"]; !ok {
		t.Errorf("calls %q", f.calls)
	}
	// With no legacy binaries either, the nft failure is the answer.
	f = newFake()
	f.fail["iptables-nft-save"] = "iptables-nft-save v1.8.9 (nf_tables): Failed to initialize nft: Protocol not supported\n"
	delete(f.path, "iptables-legacy-save")
	var re *RestoreError
	if err := f.execute(t); !errors.As(err, &re) || !strings.Contains(err.Error(), "no IPv4 nat table for the nft backend") {
		t.Errorf("got %v", err)
	}
}

func TestExecuteRerunKeepsJumps(t *testing.T) {
	f := newFake()
	f.saves["iptables-nft-save"] = "*nat\n:MESH_INBOUND - [0:0]\n:MESH_OUTPUT - [0:0]\n-A PREROUTING -p tcp -j MESH_INBOUND\n-A OUTPUT -p tcp -j MESH_OUTPUT\nCOMMIT\n"
	if err := f.execute(t, "--iptables-mode=nft"); err != nil {
		t.Fatal(err)
	}
	if in := f.inputs["iptables-nft-restore"]; strings.Contains(in, "-A PREROUTING") || strings.Contains(in, "-A OUTPUT") {
		t.Errorf("re-run adds the jumps again:\n%s", in)
	}
	if in := f.inputs["ip6tables-nft-restore"]; !strings.Contains(in, "-A PREROUTING -p tcp -j MESH_INBOUND") {
		t.Errorf("IPv6 jumps missing:\n%s", in)
	}
}

func TestExecuteRerunUpToDateWritesNothing(t *testing.T) {
	f := newFake()
	var saved strings.Builder
	saved.WriteString("*nat\n")
	for _, ch := range OwnedChains() {
		saved.WriteString(":" + ch + " - [0:0]\n")
	}
	saved.WriteString(strings.Join(wantJumps, "\n") + "\n")
	saved.WriteString(strings.Join(ChainRules(meshinit.DefaultCaptureConfig(), IPv4), "\n") + "\nCOMMIT\n")
	f.saves["iptables-nft-save"] = saved.String()
	if err := f.execute(t, "--iptables-mode=nft"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.inputs["iptables-nft-restore"]; ok {
		t.Error("an up-to-date IPv4 table was rewritten")
	}
	if _, ok := f.inputs["ip6tables-nft-restore"]; !ok {
		t.Error("the empty IPv6 table was not written")
	}
	if !strings.Contains(f.log.String(), "IPv4: rules already up to date (iptables-nft-save); nothing written") {
		t.Errorf("log:\n%s", f.log.String())
	}
}

func TestExecuteIPv6(t *testing.T) {
	t.Run("link-local only: skipped with a log line", func(t *testing.T) {
		f := newFake()
		f.files["/proc/net/if_inet6"] = linkLocalV6
		if err := f.execute(t, "--iptables-mode=nft"); err != nil {
			t.Fatal(err)
		}
		for _, c := range f.calls {
			if strings.HasPrefix(c, "ip6tables") {
				t.Errorf("ran %s", c)
			}
		}
		if !strings.Contains(f.log.String(), "IPv6: not detected (no interface but lo has a global IPv6 address") {
			t.Errorf("log:\n%s", f.log.String())
		}
	})
	t.Run("required on link-local only: written", func(t *testing.T) {
		f := newFake()
		f.files["/proc/net/if_inet6"] = linkLocalV6
		if err := f.execute(t, "--iptables-mode=nft", "--ipv6=required"); err != nil {
			t.Fatal(err)
		}
		if _, ok := f.inputs["ip6tables-nft-restore"]; !ok {
			t.Errorf("no IPv6 rules: %q", f.calls)
		}
	})
	t.Run("required but disabled: prerequisite error", func(t *testing.T) {
		f := newFake()
		f.files["/proc/sys/net/ipv6/conf/all/disable_ipv6"] = "1\n"
		err := f.execute(t, "--ipv6=required")
		if ExitCode(err) != ExitPrerequisite || !strings.Contains(err.Error(), "--ipv6=required but the pod has no IPv6: net.ipv6.conf.all.disable_ipv6 is 1") {
			t.Errorf("got %v", err)
		}
		if len(f.calls) != 0 {
			t.Errorf("ran %q", f.calls)
		}
	})
	t.Run("off: never touched", func(t *testing.T) {
		f := newFake()
		if err := f.execute(t, "--ipv6=off", "--iptables-mode=legacy"); err != nil {
			t.Fatal(err)
		}
		for _, c := range f.calls {
			if strings.HasPrefix(c, "ip6tables") {
				t.Errorf("ran %s", c)
			}
		}
	})
	t.Run("present: a failure fails the command", func(t *testing.T) {
		f := newFake()
		f.fail["ip6tables-nft-restore"] = "ip6tables-nft-restore v1.8.9 (nf_tables): Failed to initialize nft: Protocol not supported\n"
		err := f.execute(t, "--iptables-mode=nft")
		var re *RestoreError
		if !errors.As(err, &re) || re.Family != IPv6 || !strings.Contains(err.Error(), "the kernel has no IPv6 nat table for the nft backend") {
			t.Errorf("got %v", err)
		}
		if ExitCode(err) != ExitFailed {
			t.Errorf("exit %d", ExitCode(err))
		}
	})
}

func TestExecuteErrors(t *testing.T) {
	t.Run("no NET_ADMIN: refused before running anything", func(t *testing.T) {
		f := newFake()
		f.files["/proc/self/status"] = "CapEff:\t0000000000002000\n" // NET_RAW only
		err := f.execute(t)
		if ExitCode(err) != ExitPrerequisite || !strings.Contains(err.Error(), "lacks the NET_ADMIN capability") ||
			!strings.Contains(err.Error(), "mesh-init needs NET_ADMIN and NET_RAW") {
			t.Errorf("got %v", err)
		}
		if len(f.calls) != 0 {
			t.Errorf("ran %q", f.calls)
		}
	})
	t.Run("legacy without NET_RAW", func(t *testing.T) {
		f := newFake()
		f.files["/proc/self/status"] = "CapEff:\t0000000000001000\n" // NET_ADMIN only
		err := f.execute(t, "--iptables-mode=legacy")
		if ExitCode(err) != ExitPrerequisite || !strings.Contains(err.Error(), "lacks the NET_RAW capability") {
			t.Errorf("got %v", err)
		}
		// nft needs no NET_RAW.
		f = newFake()
		f.files["/proc/self/status"] = "CapEff:\t0000000000001000\n"
		if err := f.execute(t, "--iptables-mode=nft"); err != nil {
			t.Errorf("nft without NET_RAW: %v", err)
		}
	})
	t.Run("permission denied from the tool", func(t *testing.T) {
		f := newFake()
		f.fail["iptables-nft-save"] = "iptables-nft-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n"
		err := f.execute(t, "--iptables-mode=nft")
		if ExitCode(err) != ExitPrerequisite || !strings.Contains(err.Error(), "iptables-nft-save was refused by the kernel: mesh-init needs NET_ADMIN and NET_RAW") ||
			!strings.Contains(err.Error(), "Permission denied (you must be root)") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("rejected line is quoted", func(t *testing.T) {
		f := newFake()
		f.fail["iptables-nft-restore"] = "iptables-nft-restore v1.8.9 (nf_tables): \nline 9: RULE_APPEND failed (No such file or directory): rule in chain MESH_OUTPUT\n"
		err := f.execute(t, "--iptables-mode=nft", "--ipv6=off")
		var re *RestoreError
		if !errors.As(err, &re) || re.Line != 9 || re.Text != "-A MESH_INBOUND -p tcp -m tcp --dport 15021 -j RETURN" {
			t.Errorf("got %v", err)
		}
	})
	t.Run("missing binary names it and the package", func(t *testing.T) {
		f := newFake()
		delete(f.path, "iptables-legacy-restore")
		err := f.execute(t, "--iptables-mode=legacy")
		if ExitCode(err) != ExitPrerequisite ||
			!strings.Contains(err.Error(), "iptables-legacy-restore (needed for IPv4 rules with --iptables-mode=legacy) is not in PATH") ||
			!strings.Contains(err.Error(), "apt-get install -y iptables") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("plain iptables-restore of the right flavour is used", func(t *testing.T) {
		f := newFake()
		for k := range f.path {
			delete(f.path, k)
		}
		for _, n := range []string{"iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore"} {
			f.path[n] = true
			f.versions[n] = n + " v1.8.9 (nf_tables)\n"
		}
		if err := f.execute(t); err != nil {
			t.Fatal(err)
		}
		if _, ok := f.inputs["ip6tables-restore"]; !ok || !strings.Contains(f.log.String(), "only the nft backend is available") {
			t.Errorf("calls %q log %s", f.calls, f.log.String())
		}
		// ... but not for the other flavour.
		err := f.execute(t, "--iptables-mode=legacy")
		if ExitCode(err) != ExitPrerequisite {
			t.Errorf("legacy with only nft binaries: %v", err)
		}
	})
}

func TestExecuteCleanup(t *testing.T) {
	ours := "*nat\n:MESH_OUTPUT - [0:0]\n-A OUTPUT -p tcp -j MESH_OUTPUT\nCOMMIT\n"
	t.Run("auto cleans every backend holding our chains", func(t *testing.T) {
		f := newFake()
		f.files["/proc/net/ip_tables_names"] = "nat\n"
		f.saves["iptables-legacy-save"] = ours
		f.saves["ip6tables-nft-save"] = ours
		if err := f.execute(t, "--cleanup"); err != nil {
			t.Fatal(err)
		}
		want := "*nat\n-D OUTPUT -p tcp -j MESH_OUTPUT\n-F MESH_OUTPUT\n-X MESH_OUTPUT\nCOMMIT\n"
		if f.inputs["iptables-legacy-restore"] != want || f.inputs["ip6tables-nft-restore"] != want {
			t.Errorf("inputs %q", f.inputs)
		}
		if _, ok := f.inputs["iptables-nft-restore"]; ok {
			t.Errorf("restore run for a table without our chains")
		}
	})
	t.Run("IPv6 disabled since the rules were written", func(t *testing.T) {
		f := newFake()
		f.files["/proc/sys/net/ipv6/conf/all/disable_ipv6"] = "1\n"
		f.saves["ip6tables-nft-save"] = ours
		if err := f.execute(t, "--cleanup"); err != nil {
			t.Fatal(err)
		}
		if f.inputs["ip6tables-nft-restore"] == "" {
			t.Errorf("the IPv6 rules were left; calls %q", f.calls)
		}
	})
	t.Run("nothing to remove", func(t *testing.T) {
		f := newFake()
		if err := f.execute(t, "--cleanup"); err != nil {
			t.Fatal(err)
		}
		if len(f.inputs) != 0 || !strings.Contains(f.log.String(), "nothing to do") {
			t.Errorf("inputs %q log %s", f.inputs, f.log.String())
		}
	})
}

// TestExecuteAutoStaysWithOurChains: a re-run whose other backend gained
// rules since stays on the backend holding our chains; when both hold a
// copy, the backend not chosen loses its copy in the same run, so two sets
// of our rules (one with old settings) never stay in force together.
func TestExecuteAutoStaysWithOurChains(t *testing.T) {
	ours := "*nat\n:MESH_OUTPUT - [0:0]\n-A OUTPUT -p tcp -j MESH_OUTPUT\nCOMMIT\n"
	many := "*filter\n:INPUT ACCEPT [0:0]\n" + strings.Repeat("-A INPUT -s 192.0.2.1/32 -j ACCEPT\n", 40) + "COMMIT\n"
	t.Run("ours in nft only", func(t *testing.T) {
		f := newFake()
		f.files["/proc/net/ip_tables_names"] = "filter\n"
		f.saves["iptables-nft-save"] = ours
		f.saves["iptables-legacy-save"] = many
		if err := f.execute(t); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(f.log.String(), "iptables backend: nft (auto: mesh-init's chains are in the nft backend already)") {
			t.Errorf("log:\n%s", f.log.String())
		}
		for name := range f.inputs {
			if strings.Contains(name, "legacy") {
				t.Errorf("%s was written", name)
			}
		}
	})
	t.Run("ours in both", func(t *testing.T) {
		f := newFake()
		f.files["/proc/net/ip_tables_names"] = "nat\nfilter\n"
		f.saves["iptables-nft-save"] = ours
		f.saves["iptables-legacy-save"] = ours + many
		if err := f.execute(t); err != nil {
			t.Fatal(err)
		}
		if got := f.inputs["iptables-nft-restore"]; got != CleanupInput(ParseSave(ours)) {
			t.Errorf("the stale nft copy was not removed; nft input:\n%s", got)
		}
		if got := f.inputs["iptables-legacy-restore"]; !strings.Contains(got, "-A MESH_OUTPUT") {
			t.Errorf("legacy input:\n%s", got)
		}
		if !strings.Contains(f.log.String(), "IPv4: removed a stale copy of our chains from the nft backend") {
			t.Errorf("log:\n%s", f.log.String())
		}
	})
}

func TestExecuteDryRun(t *testing.T) {
	f := newFake()
	if err := f.execute(t, "--dry-run", "--copy-self-to=/nonexistent/x"); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 0 || f.stdout.String() != DryRun(meshinit.DefaultCaptureConfig(), false) {
		t.Errorf("calls %q stdout\n%s", f.calls, f.stdout.String())
	}
}

func TestCopySelf(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("binary v1"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "shared", "bin", "mesh-init")
	if err := CopySelf(src, dst); err != nil {
		t.Fatal(err)
	}
	// Overwrite atomically with new content.
	if err := os.WriteFile(src, []byte("binary v2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CopySelf(src, dst); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dst)
	fi, _ := os.Stat(dst)
	if err != nil || string(b) != "binary v2" || fi.Mode().Perm() != 0o755 {
		t.Errorf("copy: %q %v %v", b, fi.Mode(), err)
	}
	entries, _ := os.ReadDir(filepath.Dir(dst))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if err := CopySelf(src, filepath.Dir(dst)); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("copy onto a directory: %v", err)
	}
	if err := CopySelf(filepath.Join(dir, "missing"), dst); err == nil {
		t.Error("copy of a missing file succeeded")
	}
	// The real thing: the running test binary through /proc/self/exe.
	if _, err := os.Stat("/proc/self/exe"); err == nil {
		if err := CopySelf("/proc/self/exe", dst); err != nil {
			t.Fatal(err)
		}
	}
}

// The proxy's bootstrap travels compressed in mesh-init's arguments and is
// written, byte for byte, where the proxy reads it; a bad argument is a
// usage error naming the flag, and the two flags go together.
func TestEnvoyBootstrapIsWritten(t *testing.T) {
	bootstrap := []byte(`{"admin":{"address":{"socket_address":{"address":"127.0.0.1","port_value":15000}}}}`)
	enc := meshinit.EncodeFile(bootstrap)
	if enc != meshinit.EncodeFile(bootstrap) {
		t.Fatal("EncodeFile is not deterministic")
	}
	dst := filepath.Join(t.TempDir(), "mesh", "envoy-bootstrap.json")
	f := newFake()
	if err := f.execute(t, "--"+meshinit.FlagEnvoyBootstrapTo+"="+dst, "--"+meshinit.FlagEnvoyBootstrap+"="+enc); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || string(got) != string(bootstrap) {
		t.Fatalf("wrote %q (%v), want %q", got, err, bootstrap)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 (the proxy runs as another user)", fi.Mode())
	}

	for _, args := range [][]string{
		{"--" + meshinit.FlagEnvoyBootstrapTo + "=" + dst, "--" + meshinit.FlagEnvoyBootstrap + "=not-base64!"},
		{"--" + meshinit.FlagEnvoyBootstrapTo + "=" + dst, "--" + meshinit.FlagEnvoyBootstrap + "=d1.not-base64!"},
		{"--" + meshinit.FlagEnvoyBootstrapTo + "=" + dst, "--" + meshinit.FlagEnvoyBootstrap + "=d1.aGVsbG8="}, // base64, not DEFLATE
		{"--" + meshinit.FlagEnvoyBootstrapTo + "=" + dst, "--" + meshinit.FlagEnvoyBootstrap + "=d0." + strings.TrimPrefix(enc, "d1.")},
		{"--" + meshinit.FlagEnvoyBootstrapTo + "=" + dst, "--" + meshinit.FlagEnvoyBootstrap + "=" + meshinit.EncodeFile([]byte("not json"))},
		{"--" + meshinit.FlagEnvoyBootstrapTo + "=" + dst, "--" + meshinit.FlagEnvoyBootstrap + "=" + "aGVsbG8="}, // base64, not gzip
		{"--" + meshinit.FlagEnvoyBootstrap + "=" + enc},
		{"--" + meshinit.FlagEnvoyBootstrapTo + "=relative/path", "--" + meshinit.FlagEnvoyBootstrap + "=" + enc},
	} {
		_, err := meshinit.ParseCaptureCommand(args, nil)
		if err == nil || ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), "envoy-bootstrap") {
			t.Errorf("%q: %v (exit %d), want a usage error naming the flag", args, err, ExitCode(err))
		}
	}
	cmd := meshinit.CaptureCommand{Config: meshinit.DefaultCaptureConfig(), EnvoyBootstrapTo: dst, EnvoyBootstrap: enc}
	back, err := meshinit.ParseCaptureCommand(cmd.Args(), nil)
	if err != nil || back.EnvoyBootstrap != enc || back.EnvoyBootstrapTo != dst {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

// A value the tool refuses is not a missing kernel module, even when the
// message names the owner match.
func TestClassifyBadValueHasNoModuleHint(t *testing.T) {
	ee := &ExecError{Path: "/usr/sbin/iptables-nft-restore", Stderr: `iptables-restore v1.8.9 (nf_tables): owner: Bad value for "--uid-owner" option: "4294967295"` + "\nError occurred at line: 7\n", Err: errors.New("exit status 2")}
	err := classifyToolError(ee, IPv4, meshinit.ModeNFT, strings.Repeat("x\n", 8))
	var re *RestoreError
	if !errors.As(err, &re) || re.Hint != "" || re.Line != 7 {
		t.Errorf("%#v", err)
	}
	ee.Stderr = "iptables-restore: line 3 failed: Couldn't load match `owner':No such file or directory"
	if err := classifyToolError(ee, IPv4, meshinit.ModeNFT, "a\nb\nc\n"); !errors.As(err, &re) || !strings.Contains(re.Hint, "xt_owner") {
		t.Errorf("%#v", err)
	}
}
