package netns

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sidecar-injector/injector/cmd/mesh-init/capture"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// family bundles what a test needs to address one IP family.
type family struct {
	fam          capture.Family
	tool         string // iptables or ip6tables
	pod          string
	peerA, peerB string
	loopback     string
}

var families = []family{
	{capture.IPv4, "iptables", pod4, peerA4, peerB4, "127.0.0.1"},
	{capture.IPv6, "ip6tables", pod6, peerA6, peerB6, "::1"},
}

func hp(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

// both returns wildcard listen addresses for port in both families.
func both(ports ...int) []string {
	var out []string
	for _, p := range ports {
		out = append(out, hp("0.0.0.0", p), hp("::", p))
	}
	return out
}

// pod is a topology with the stand-in proxy and the app in the pod
// namespace and a server in the peer namespace.
type pod struct {
	*topo
	proxy, app, peer *agent
	// uidOnly runs as the proxy's UID with another GID, gidOnly the other
	// way round: each proves one of the two owner rules on its own.
	uidOnly, gidOnly *agent
}

func newPod(t *testing.T, ownerAgents bool) *pod {
	t.Helper()
	tp := newTopo(t, true)
	cfgs := []agentConfig{
		{Name: "proxy", NS: tp.pod, UID: 1337, GID: 1337, Servers: both(15000), Proxies: []proxyListener{
			{Addr: "0.0.0.0:15001", Kind: "outbound"}, {Addr: "[::]:15001", Kind: "outbound"},
			{Addr: "0.0.0.0:15006", Kind: "inbound"}, {Addr: "[::]:15006", Kind: "inbound"},
		}},
		{Name: "app", NS: tp.pod, UID: 1000, GID: 1000, Servers: both(8080, 8081, 9090)},
		{Name: "peer", NS: tp.peer, UID: 0, GID: 0, Servers: both(8080, 8761, 9443)},
	}
	if ownerAgents {
		cfgs = append(cfgs,
			agentConfig{Name: "uid-only", NS: tp.pod, UID: 1337, GID: 2000},
			agentConfig{Name: "gid-only", NS: tp.pod, UID: 2000, GID: 1337})
	}
	a := startAgents(t, cfgs...)
	p := &pod{topo: tp, proxy: a[0], app: a[1], peer: a[2]}
	if ownerAgents {
		p.uidOnly, p.gidOnly = a[3], a[4]
	}
	tp.waitLinksUp(t)
	return p
}

// expectDirect asserts that a connection from a to addr reached server
// without passing through the proxy.
func expectDirect(t *testing.T, a *agent, addr, server string) {
	t.Helper()
	res := a.dial(t, addr)
	want := "server " + server + " local=" + addr + " "
	if res.Err != "" || len(res.Lines) != 1 || !strings.HasPrefix(res.Lines[0], want) {
		t.Errorf("%s → %s: want a direct connection to %s, got lines %q err %q", a.name, addr, server, res.Lines, res.Err)
	}
}

// expectProxied asserts that a connection from a to addr went through the
// proxy's kind listener exactly once, that the proxy recovered addr as the
// original destination, and that the proxy's own connection to addr then
// reached server directly (no second capture, no loop).
func expectProxied(t *testing.T, a *agent, addr, kind, server string) {
	t.Helper()
	res := a.dial(t, addr)
	ok := res.Err == "" && len(res.Lines) == 2 &&
		res.Lines[0] == "proxy "+kind+" orig="+addr &&
		strings.HasPrefix(res.Lines[1], "server "+server+" local="+addr+" ")
	if !ok {
		t.Errorf("%s → %s: want it through the %s proxy listener to %s, got lines %q err %q", a.name, addr, kind, server, res.Lines, res.Err)
	}
}

// seed writes unrelated nat rules (a user chain, a jump to it, a rule in a
// built-in chain) so the tests can prove mesh-init leaves them alone.
func seed(t *testing.T, ns, mode string) {
	t.Helper()
	for _, f := range families {
		dst := "192.0.2.1/32"
		if f.fam == capture.IPv6 {
			dst = "2001:db8::1/128"
		}
		bin := f.tool + "-" + mode
		run(t, "ip", "netns", "exec", ns, bin, "-w", "-t", "nat", "-N", "KEEP_ME")
		run(t, "ip", "netns", "exec", ns, bin, "-w", "-t", "nat", "-A", "KEEP_ME", "-j", "RETURN")
		run(t, "ip", "netns", "exec", ns, bin, "-w", "-t", "nat", "-A", "OUTPUT", "-d", dst, "-j", "KEEP_ME")
		run(t, "ip", "netns", "exec", ns, bin, "-w", "-t", "nat", "-A", "POSTROUTING", "-d", dst, "-j", "RETURN")
	}
}

// meshLines returns the saved rules and chain declarations that belong to
// mesh-init, sorted.
func meshLines(saved string) []string {
	var out []string
	for _, l := range strings.Split(saved, "\n") {
		if strings.Contains(l, "MESH_") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// wantMeshLines is what save must show after mesh-init ran with args.
func wantMeshLines(t *testing.T, fam capture.Family, args []string) []string {
	t.Helper()
	cmd, err := meshinit.ParseCaptureCommand(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{
		"-A PREROUTING -p tcp -j MESH_INBOUND",
		"-A OUTPUT -p tcp -j MESH_OUTPUT",
	}
	for _, c := range capture.OwnedChains() {
		out = append(out, ":"+c+" - [0:0]")
	}
	out = append(out, capture.ChainRules(cmd.Config, fam)...)
	slices.Sort(out)
	return out
}

func saves(t *testing.T, ns, mode string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tool := range tools {
		out[tool] = save(t, ns, mode, tool)
	}
	return out
}

func TestCapture(t *testing.T) {
	requirePrerequisites(t)
	for _, mode := range []string{"nft", "legacy"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			t.Run("capture-all", func(t *testing.T) { t.Parallel(); testCaptureAll(t, mode) })
			t.Run("include-cidrs", func(t *testing.T) { t.Parallel(); testIncludeCIDRs(t, mode) })
			t.Run("ports-only", func(t *testing.T) { t.Parallel(); testPortsOnly(t, mode) })
		})
	}
}

// testCaptureAll: the default (capture everything) with exclusions, then a
// re-run, then cleanup.
func testCaptureAll(t *testing.T, mode string) {
	p := newPod(t, true)
	seed(t, p.pod, mode)
	pristine := saves(t, p.pod, mode)

	args := []string{
		"--iptables-mode=" + mode,
		"--exclude-outbound-ports=8761",
		"--exclude-outbound-cidrs=10.201.0.0/24,fd00:201::/64",
		"--exclude-inbound-ports=9090",
	}
	out := mustMeshInit(t, p.pod, args...)
	if !strings.Contains(out, "IPv6: detected") {
		t.Errorf("mesh-init did not report IPv6 as detected:\n%s", out)
	}
	applied := saves(t, p.pod, mode)
	for _, f := range families {
		if got, want := meshLines(applied[f.tool]), wantMeshLines(t, f.fam, args); !slices.Equal(got, want) {
			t.Errorf("%s-%s-save shows\n%s\nwant\n%s", f.tool, mode, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}

	for _, f := range families {
		t.Run(f.fam.String(), func(t *testing.T) {
			// Outbound: captured, original destination recovered.
			expectProxied(t, p.app, hp(f.peerA, 8080), "outbound", "peer")
			// Excluded port and CIDR go direct.
			expectDirect(t, p.app, hp(f.peerA, 8761), "peer")
			expectDirect(t, p.app, hp(f.peerB, 8080), "peer")
			// The proxy's own connections, by UID and by GID.
			expectDirect(t, p.proxy, hp(f.peerA, 8080), "peer")
			expectDirect(t, p.uidOnly, hp(f.peerA, 8080), "peer")
			expectDirect(t, p.gidOnly, hp(f.peerA, 8080), "peer")
			// Loopback and the pod's own address stay inside the pod.
			expectDirect(t, p.app, hp(f.loopback, 8081), "app")
			expectDirect(t, p.app, hp(f.pod, 8081), "app")
			// Inbound: captured once, then delivered to the app (the
			// proxy's forwarded connection is not captured again).
			expectProxied(t, p.peer, hp(f.pod, 8080), "inbound", "app")
			// Excluded inbound port and the proxy's own port go direct.
			expectDirect(t, p.peer, hp(f.pod, 9090), "app")
			expectDirect(t, p.peer, hp(f.pod, 15000), "proxy")
		})
	}

	t.Run("rerun-is-idempotent", func(t *testing.T) {
		// Same settings (a container restart): the generated rules match
		// what the kernel reports byte for byte, so nothing is written.
		out := mustMeshInit(t, p.pod, args...)
		if got := saves(t, p.pod, mode); !mapsEqual(got, applied) {
			t.Errorf("a second run changed the rules:\n%s\n%s", diffSaves(applied, got), out)
		}
		for _, fam := range []string{"IPv4", "IPv6"} {
			if !strings.Contains(out, "mesh-init: "+fam+": rules already up to date") {
				t.Errorf("%s rules rewritten on an unchanged re-run:\n%s", fam, out)
			}
		}
		// Different settings, then the original ones again: both go
		// through the restore over existing chains and jumps, and end
		// exactly where the first run did (no duplicated jump).
		mustMeshInit(t, p.pod, append(args, "--exclude-outbound-ports=8761,9443")...)
		if got := saves(t, p.pod, mode); !strings.Contains(got["iptables"], "--dport 9443 -j RETURN") {
			t.Errorf("changed settings not applied:\n%s", got["iptables"])
		}
		out = mustMeshInit(t, p.pod, args...)
		if got := saves(t, p.pod, mode); !mapsEqual(got, applied) {
			t.Errorf("settings changed and back did not converge:\n%s\n%s", diffSaves(applied, got), out)
		}
		for _, f := range families {
			expectProxied(t, p.app, hp(f.peerA, 8080), "outbound", "peer")
			expectDirect(t, p.app, hp(f.peerA, 8761), "peer")
		}
	})

	t.Run("cleanup", func(t *testing.T) {
		mustMeshInit(t, p.pod, "--cleanup", "--iptables-mode="+mode)
		got := saves(t, p.pod, mode)
		for _, tool := range tools {
			if strings.Contains(got[tool], "MESH_") {
				t.Errorf("%s still holds MESH_ chains or jumps after cleanup:\n%s", tool, got[tool])
			}
			if got[tool] != pristine[tool] {
				t.Errorf("cleanup did not restore %s exactly:\nbefore apply\n%s\nafter cleanup\n%s", tool, pristine[tool], got[tool])
			}
		}
		for _, f := range families {
			expectDirect(t, p.app, hp(f.peerA, 8080), "peer")
			expectDirect(t, p.peer, hp(f.pod, 8080), "app")
		}
		// A second cleanup has nothing to do and succeeds.
		out := mustMeshInit(t, p.pod, "--cleanup", "--iptables-mode="+mode)
		if again := saves(t, p.pod, mode); !mapsEqual(again, got) {
			t.Errorf("a second cleanup changed the rules\n%s", out)
		}
	})
}

// testIncludeCIDRs: only listed CIDRs and inbound ports are captured, and
// include-outbound-ports capture whatever the destination.
func testIncludeCIDRs(t *testing.T, mode string) {
	p := newPod(t, false)
	mustMeshInit(t, p.pod,
		"--iptables-mode="+mode,
		"--include-inbound-ports=8080",
		"--include-outbound-cidrs=10.200.0.2/32,fd00:200::2/128",
		"--include-outbound-ports=9443")
	for _, f := range families {
		t.Run(f.fam.String(), func(t *testing.T) {
			expectProxied(t, p.app, hp(f.peerA, 8080), "outbound", "peer")
			expectDirect(t, p.app, hp(f.peerB, 8080), "peer")
			expectProxied(t, p.app, hp(f.peerB, 9443), "outbound", "peer")
			expectProxied(t, p.peer, hp(f.pod, 8080), "inbound", "app")
			expectDirect(t, p.peer, hp(f.pod, 8081), "app")
		})
	}
}

// testPortsOnly: no CIDR and no inbound capture, a port captured whatever
// the address — except into an excluded CIDR, which always wins.
func testPortsOnly(t *testing.T, mode string) {
	p := newPod(t, false)
	mustMeshInit(t, p.pod,
		"--iptables-mode="+mode,
		"--include-inbound-ports=",
		"--include-outbound-cidrs=",
		"--include-outbound-ports=9443",
		"--exclude-outbound-cidrs=10.201.0.0/24,fd00:201::/64")
	for _, f := range families {
		t.Run(f.fam.String(), func(t *testing.T) {
			expectDirect(t, p.app, hp(f.peerA, 8080), "peer")
			expectProxied(t, p.app, hp(f.peerA, 9443), "outbound", "peer")
			expectDirect(t, p.app, hp(f.peerB, 9443), "peer")
			expectDirect(t, p.peer, hp(f.pod, 8080), "app")
		})
	}
}

// diffSaves describes how two sets of save outputs differ.
func diffSaves(before, after map[string]string) string {
	var b strings.Builder
	for k, v := range before {
		if after[k] == v {
			continue
		}
		fmt.Fprintf(&b, "%s before:\n%s\n%s after:\n%s\n", k, v, k, after[k])
	}
	return b.String()
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// allSaves returns both backends' full save output (all tables, without
// "-t nat", which would create the legacy nat table just by looking).
func allSaves(t *testing.T, ns string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, mode := range []string{"nft", "legacy"} {
		for _, tool := range tools {
			b := run(t, "ip", "netns", "exec", ns, tool+"-"+mode+"-save")
			out[mode+"/"+tool] = normalizeSave(b)
		}
	}
	return out
}

func assertBackend(t *testing.T, ns, mode string) {
	t.Helper()
	all := allSaves(t, ns)
	for k, v := range all {
		has := strings.Contains(v, ":MESH_OUTPUT")
		if want := strings.HasPrefix(k, mode+"/"); has != want {
			t.Errorf("%s-save: MESH_ chains present = %v, want %v:\n%s", k, has, want, v)
		}
	}
}

func TestAutoDetect(t *testing.T) {
	requirePrerequisites(t)
	t.Run("empty-namespace-uses-nft", func(t *testing.T) {
		t.Parallel()
		tp := newTopo(t, true)
		out := mustMeshInit(t, tp.pod)
		if !strings.Contains(out, "iptables backend: nft (auto: both backends hold 0 rules") {
			t.Errorf("unexpected detection:\n%s", out)
		}
		assertBackend(t, tp.pod, "nft")
	})
	t.Run("nft-rules-present-uses-nft", func(t *testing.T) {
		t.Parallel()
		tp := newTopo(t, true)
		seed(t, tp.pod, "nft")
		run(t, "ip", "netns", "exec", tp.pod, "iptables-legacy", "-w", "-t", "nat", "-A", "POSTROUTING", "-d", "192.0.2.9/32", "-j", "RETURN")
		out := mustMeshInit(t, tp.pod)
		if !strings.Contains(out, "iptables backend: nft (auto: the nft backend holds more rules") {
			t.Errorf("unexpected detection:\n%s", out)
		}
		assertBackend(t, tp.pod, "nft")
	})
	t.Run("legacy-rules-present-uses-legacy", func(t *testing.T) {
		t.Parallel()
		p := newPod(t, false)
		seed(t, p.pod, "legacy")
		out := mustMeshInit(t, p.pod)
		if !strings.Contains(out, "iptables backend: legacy (auto: the legacy backend holds more rules") {
			t.Errorf("unexpected detection:\n%s", out)
		}
		assertBackend(t, p.pod, "legacy")
		for _, f := range families {
			expectProxied(t, p.app, hp(f.peerA, 8080), "outbound", "peer")
			expectProxied(t, p.peer, hp(f.pod, 8080), "inbound", "app")
		}
		// A re-run in auto mode stays on legacy and changes nothing.
		before := allSaves(t, p.pod)
		mustMeshInit(t, p.pod)
		if after := allSaves(t, p.pod); !mapsEqual(before, after) {
			t.Errorf("auto re-run changed the rules:\n%s", diffSaves(before, after))
		}
		// Auto cleanup finds our chains in whichever backend holds them.
		mustMeshInit(t, p.pod, "--cleanup")
		for k, v := range allSaves(t, p.pod) {
			if strings.Contains(v, "MESH_") {
				t.Errorf("%s still holds MESH_ after cleanup:\n%s", k, v)
			}
			if strings.HasPrefix(k, "legacy/") && !strings.Contains(v, "KEEP_ME") {
				t.Errorf("cleanup removed the unrelated KEEP_ME chain from %s:\n%s", k, v)
			}
		}
	})
}

func TestIPv6Detection(t *testing.T) {
	requirePrerequisites(t)
	t.Run("no-ipv6-address-skips-ip6tables", func(t *testing.T) {
		t.Parallel()
		tp := newTopo(t, false)
		out := mustMeshInit(t, tp.pod, "--iptables-mode=nft")
		if !strings.Contains(out, "IPv6: not detected") || !strings.Contains(out, "skipping ip6tables") {
			t.Errorf("no skip log line:\n%s", out)
		}
		if s := save(t, tp.pod, "nft", "ip6tables"); strings.Contains(s, "MESH_") {
			t.Errorf("ip6tables rules written for a pod without IPv6:\n%s", s)
		}
		if s := save(t, tp.pod, "nft", "iptables"); !strings.Contains(s, "MESH_OUTPUT") {
			t.Errorf("no IPv4 rules:\n%s", s)
		}
		// --ipv6=required writes them anyway: the kernel has IPv6.
		mustMeshInit(t, tp.pod, "--iptables-mode=nft", "--ipv6=required")
		if s := save(t, tp.pod, "nft", "ip6tables"); !strings.Contains(s, "MESH_OUTPUT") {
			t.Errorf("--ipv6=required wrote no ip6tables rules:\n%s", s)
		}
	})
	t.Run("ipv6-disabled", func(t *testing.T) {
		t.Parallel()
		tp := newTopo(t, false)
		run(t, "ip", "netns", "exec", tp.pod, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6")
		res := runMeshInit(t, tp.pod, nil, "--iptables-mode=nft", "--ipv6=required")
		if res.code != capture.ExitPrerequisite || !strings.Contains(res.output, "--ipv6=required but the pod has no IPv6: net.ipv6.conf.all.disable_ipv6 is 1") {
			t.Errorf("want exit %d naming the cause, got %d:\n%s", capture.ExitPrerequisite, res.code, res.output)
		}
		out := mustMeshInit(t, tp.pod, "--iptables-mode=nft")
		if !strings.Contains(out, "skipping ip6tables") {
			t.Errorf("no skip log line:\n%s", out)
		}
	})
}

func TestFailures(t *testing.T) {
	requirePrerequisites(t)
	tp := newTopo(t, true)
	noRules := func(t *testing.T) {
		t.Helper()
		for k, v := range allSaves(t, tp.pod) {
			if strings.Contains(v, "MESH_") {
				t.Errorf("%s holds MESH_ rules after a failed run:\n%s", k, v)
			}
		}
	}
	t.Run("without-capabilities", func(t *testing.T) {
		res := runAs(t, tp.pod, 65534, 65534, meshInit, "capture", "--iptables-mode=legacy")
		if res.code != capture.ExitPrerequisite ||
			!strings.Contains(res.output, "lacks the NET_ADMIN and NET_RAW capabilities") ||
			!strings.Contains(res.output, "mesh-init needs NET_ADMIN and NET_RAW") {
			t.Errorf("want exit %d naming NET_ADMIN and NET_RAW, got %d:\n%s", capture.ExitPrerequisite, res.code, res.output)
		}
		noRules(t)
	})
	t.Run("missing-binary", func(t *testing.T) {
		empty := t.TempDir()
		for _, mode := range []string{"nft", "legacy"} {
			res := runMeshInit(t, tp.pod, []string{"PATH=" + empty}, "--iptables-mode="+mode)
			if res.code != capture.ExitPrerequisite ||
				!strings.Contains(res.output, "iptables-"+mode+"-save (needed for IPv4 rules with --iptables-mode="+mode+") is not in PATH") ||
				!strings.Contains(res.output, "apt-get install -y iptables") {
				t.Errorf("want exit %d naming the binary and package, got %d:\n%s", capture.ExitPrerequisite, res.code, res.output)
			}
		}
		noRules(t)
	})
	t.Run("invalid-arguments", func(t *testing.T) {
		res := runMeshInit(t, tp.pod, nil, "--exclude-outbound-cidrs=10.0.0.0/8,10.0.0.0/33")
		if res.code != capture.ExitUsage || !strings.Contains(res.output, `invalid value "10.0.0.0/8,10.0.0.0/33" for --exclude-outbound-cidrs: "10.0.0.0/33" is not an IPv4 or IPv6 CIDR`) {
			t.Errorf("want exit %d naming flag and value, got %d:\n%s", capture.ExitUsage, res.code, res.output)
		}
		res = runMeshInit(t, tp.pod, []string{"MESH_INIT_INCLUDE_INBOUND_PORTS=http"})
		if res.code != capture.ExitUsage || !strings.Contains(res.output, `invalid value "http" for MESH_INIT_INCLUDE_INBOUND_PORTS (--include-inbound-ports)`) {
			t.Errorf("want exit %d naming variable and value, got %d:\n%s", capture.ExitUsage, res.code, res.output)
		}
		noRules(t)
	})
	t.Run("dry-run-changes-nothing", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "bin", "mesh-init")
		res := runMeshInit(t, tp.pod, nil, "--dry-run", "--copy-self-to="+dst, "--exclude-outbound-cidrs=10.0.0.0/8,fd00::/8")
		if res.code != 0 || !strings.Contains(res.output, "# IPv6: input for ip6tables-restore --noflush") ||
			!strings.Contains(res.output, "-A MESH_OUTPUT -d fd00::/8 -j RETURN") {
			t.Errorf("unexpected dry run, exit %d:\n%s", res.code, res.output)
		}
		if _, err := os.Stat(dst); !os.IsNotExist(err) {
			t.Errorf("dry run copied the binary (%v)", err)
		}
		noRules(t)
	})
	t.Run("copy-self", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "shared", "bin", "mesh-init")
		mustMeshInit(t, tp.pod, "--copy-self-to="+dst, "--iptables-mode=nft")
		fi, err := os.Stat(dst)
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Fatalf("copy: %v %v", fi, err)
		}
		want, _ := os.ReadFile(meshInit)
		got, _ := os.ReadFile(dst)
		if !slices.Equal(got, want) {
			t.Errorf("the copy differs from the binary")
		}
		if out := run(t, dst, "version"); !strings.HasPrefix(out, "mesh-init ") {
			t.Errorf("the copy does not run: %q", out)
		}
		mustMeshInit(t, tp.pod, "--cleanup", "--iptables-mode=nft")
	})
}

// runAs runs argv inside ns as uid/gid, through the "exec" helper role.
func runAs(t *testing.T, ns string, uid, gid int, argv ...string) meshInitResult {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(execConfig{UID: uid, GID: gid, Argv: argv})
	cmd := exec.Command("ip", "netns", "exec", ns, self)
	cmd.Env = append(os.Environ(), envRole+"=exec", envConfig+"="+string(b))
	return result(t, cmd)
}

// TestConvergesFromStaleJumps starts from a nat table holding a duplicated
// jump and one an older version wrote (cmd/mesh-init/capture/testdata/
// save-stale.txt) and checks that one run leaves exactly the wanted rules
// and nothing else touched.
func TestConvergesFromStaleJumps(t *testing.T) {
	requirePrerequisites(t)
	stale, err := os.ReadFile("../../cmd/mesh-init/capture/testdata/save-stale.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"nft", "legacy"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			tp := newTopo(t, false)
			cmd := exec.Command("ip", "netns", "exec", tp.pod, "iptables-"+mode+"-restore")
			cmd.Stdin = strings.NewReader(string(stale))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("loading the stale table: %v\n%s", err, out)
			}
			args := []string{"--iptables-mode=" + mode, "--ipv6=off"}
			mustMeshInit(t, tp.pod, args...)
			got := save(t, tp.pod, mode, "iptables")
			if lines, want := meshLines(got), wantMeshLines(t, capture.IPv4, args); !slices.Equal(lines, want) {
				t.Errorf("after one run:\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
			}
			for _, keep := range []string{":KEEP_ME - [0:0]", "-A OUTPUT -d 192.0.2.1/32 -j KEEP_ME", "-A KEEP_ME -j RETURN"} {
				if !strings.Contains(got, keep+"\n") {
					t.Errorf("lost %q:\n%s", keep, got)
				}
			}
		})
	}
}
