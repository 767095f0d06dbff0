package netns

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidecar-injector/injector/test/testkit"
)

// deadline bounds every wait of this tier, in the test and in its agents
// (the same binary, with the same environment): an agent starting, the
// veths coming up, a connection being made and answered. It is stated
// once, here, and generous: an idle run needs milliseconds for each, up to
// a second for a link to come up. TEST_DEADLINE_SCALE raises it on a
// slower machine.
var deadline = testkit.Deadline(time.Minute)

// meshInit is the mesh-init binary built once by TestMain.
var meshInit string

// missing lists what this machine lacks to run the suite; empty when all
// is there.
var missing []string

// requiredBinaries are the programs the suite runs (package iptables and
// iproute2 on Debian/Ubuntu).
var requiredBinaries = []string{
	"ip",
	"iptables-nft-save", "iptables-nft-restore", "ip6tables-nft-save", "ip6tables-nft-restore",
	"iptables-legacy-save", "iptables-legacy-restore", "ip6tables-legacy-save", "ip6tables-legacy-restore",
}

func TestMain(m *testing.M) {
	if code, ok := helperMain(); ok {
		os.Exit(code)
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	missing = checkPrerequisites()
	if len(missing) == 0 {
		dir, err := os.MkdirTemp("", "mesh-init-netns-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		// Helpers running as an unprivileged UID must be able to exec it.
		if err := os.Chmod(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		meshInit = filepath.Join(dir, "mesh-init")
		if err := buildMeshInit(meshInit); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

func checkPrerequisites() []string {
	var out []string
	if runtime.GOOS != "linux" {
		return []string{"Linux"}
	}
	if os.Geteuid() != 0 {
		out = append(out, "root")
	}
	for _, b := range requiredBinaries {
		if _, err := exec.LookPath(b); err != nil {
			out = append(out, "the "+b+" binary")
		}
	}
	if len(out) == 0 {
		name := fmt.Sprintf("miprobe%d", os.Getpid())
		if b, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			out = append(out, fmt.Sprintf("network namespaces (ip netns add: %s)", strings.TrimSpace(string(b))))
		} else {
			_ = exec.Command("ip", "netns", "del", name).Run()
		}
	}
	return out
}

func buildMeshInit(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", out, "../../cmd/mesh-init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building mesh-init: %v\n%s", err, b)
	}
	return nil
}

// requirePrerequisites skips the test (or, when CI is set, fails it) when
// the machine cannot run namespace tests.
func requirePrerequisites(t testing.TB) {
	t.Helper()
	if len(missing) == 0 {
		return
	}
	testkit.Need(t, fmt.Errorf("the network-namespace suite needs %s: install the tools with `apt-get install -y iptables iproute2` and run the tests as root "+
		"(sudo -E go test ./test/netns/...)", strings.Join(missing, ", ")))
}

// run runs a command and fails the test with its output on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var nsCounter atomic.Int32

// Addresses of the topology every test builds:
//
//	pod netns  eth0 10.200.0.1/24 fd00:200::1/64 ──veth── eth0 10.200.0.2/24 fd00:200::2/64  peer netns
//	                routes to 10.201.0.0/24, fd00:201::/64       10.201.0.2/24 fd00:201::2/64
//
// so the peer is reachable at addresses in two different CIDRs.
const (
	pod4   = "10.200.0.1"
	pod6   = "fd00:200::1"
	peerA4 = "10.200.0.2"
	peerA6 = "fd00:200::2"
	peerB4 = "10.201.0.2"
	peerB6 = "fd00:201::2"
)

// topo is one pod namespace and one peer namespace joined by a veth pair.
type topo struct {
	pod, peer string
}

// newTopo creates the namespaces (with unique names, deleted by
// t.Cleanup) and their links. With ipv6 false the pod gets no IPv6 address
// beyond loopback and link-local.
func newTopo(t testing.TB, ipv6 bool) *topo {
	t.Helper()
	id := fmt.Sprintf("mi%d-%d", os.Getpid(), nsCounter.Add(1))
	tp := &topo{pod: id + "-pod", peer: id + "-peer"}
	for _, ns := range []string{tp.pod, tp.peer} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("deleting netns %s: %v %s", ns, err, out)
			}
		})
	}
	batch := func(ns string, cmds ...string) {
		cmd := exec.Command("ip", "-n", ns, "-batch", "-")
		cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s -batch: %v\n%s\n%s", ns, err, strings.Join(cmds, "\n"), out)
		}
	}
	batch(tp.pod, "link set lo up", "link add eth0 type veth peer name eth0 netns "+tp.peer)
	// The test addresses are nodad (usable at once) and on-link; no
	// link-local addresses are needed.
	podCmds := []string{
		"link set eth0 addrgenmode none",
		"addr add " + pod4 + "/24 dev eth0",
		"link set eth0 up",
		"route add 10.201.0.0/24 dev eth0",
	}
	if ipv6 {
		podCmds = append(podCmds,
			"addr add "+pod6+"/64 dev eth0 nodad",
			"route add fd00:201::/64 dev eth0")
	}
	batch(tp.pod, podCmds...)
	batch(tp.peer,
		"link set lo up",
		"link set eth0 addrgenmode none",
		"addr add "+peerA4+"/24 dev eth0",
		"addr add "+peerB4+"/24 dev eth0",
		"addr add "+peerA6+"/64 dev eth0 nodad",
		"addr add "+peerB6+"/64 dev eth0 nodad",
		"link set eth0 up")
	return tp
}

// waitLinksUp waits until both ends of the veth report operstate UP. The
// kernel publishes a carrier change through linkwatch, which batches
// events for up to a second, and IPv6 neither sends nor answers neighbour
// discovery on a link it does not yet consider up; IPv4 does not wait. So
// without this the first IPv6 connection would pay a one-second SYN
// retransmit. Called after the agents started, it rarely waits at all.
func (tp *topo) waitLinksUp(t *testing.T) {
	t.Helper()
	upBy := time.Now().Add(deadline)
	for _, ns := range []string{tp.pod, tp.peer} {
		for {
			out := run(t, "ip", "-n", ns, "-o", "link", "show", "dev", "eth0")
			if strings.Contains(out, " state UP ") {
				break
			}
			if time.Now().After(upBy) {
				t.Fatalf("eth0 in %s is not up (operstate UP) after %s: %s", ns, deadline, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// agent is a running helper process in a namespace, driven over its
// stdin/stdout.
type agent struct {
	name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr *bytes.Buffer
}

// startAgents starts every agent concurrently, each in its namespace (NS),
// and waits until each has bound its ports.
func startAgents(t *testing.T, cfgs ...agentConfig) []*agent {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	agents := make([]*agent, len(cfgs))
	for i, cfg := range cfgs {
		b, _ := json.Marshal(cfg)
		cmd := exec.Command("ip", "netns", "exec", cfg.NS, self)
		cmd.Env = append(os.Environ(), envRole+"=agent", envConfig+"="+string(b))
		a := &agent{name: cfg.Name, cmd: cmd, stderr: &bytes.Buffer{}}
		cmd.Stderr = a.stderr
		a.stdin, _ = cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		a.out = bufio.NewReader(stdout)
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting agent %s: %v", cfg.Name, err)
		}
		agents[i] = a
		t.Cleanup(a.stop)
	}
	for _, a := range agents {
		ready := make(chan error, 1)
		go func() {
			line, err := a.out.ReadString('\n')
			if err == nil && line != "ready\n" {
				err = fmt.Errorf("unexpected %q", line)
			}
			ready <- err
		}()
		select {
		case err := <-ready:
			if err != nil {
				a.stop()
				t.Fatalf("agent %s did not start: %v\n%s", a.name, err, a.stderr.String())
			}
		case <-time.After(deadline):
			a.stop()
			t.Fatalf("agent %s did not say ready within %s\n%s", a.name, deadline, a.stderr.String())
		}
	}
	return agents
}

func (a *agent) stop() {
	a.stdin.Close()
	done := make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(deadline):
		_ = a.cmd.Process.Kill()
		<-done
	}
}

// dial asks the agent to connect to addr (host:port) and returns what it
// read.
func (a *agent) dial(t *testing.T, addr string) dialResult {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := fmt.Fprintf(a.stdin, "dial %s\n", addr); err != nil {
		t.Fatalf("agent %s: %v\n%s", a.name, err, a.stderr.String())
	}
	line, err := a.out.ReadString('\n')
	if err != nil {
		t.Fatalf("agent %s: %v\n%s", a.name, err, a.stderr.String())
	}
	var res dialResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		t.Fatalf("agent %s: %v: %q", a.name, err, line)
	}
	return res
}

// meshInitResult is one run of the real mesh-init binary.
type meshInitResult struct {
	code   int
	output string
}

// runMeshInit runs `mesh-init capture args...` inside ns as root, with
// extra environment variables.
func runMeshInit(t testing.TB, ns string, env []string, args ...string) meshInitResult {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, meshInit, "capture"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	return result(t, cmd)
}

// result runs cmd and returns its exit code and combined output.
func result(t testing.TB, cmd *exec.Cmd) meshInitResult {
	t.Helper()
	out, err := cmd.CombinedOutput()
	res := meshInitResult{output: string(out)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running %s: %v", cmd.Path, err)
	}
	return res
}

// mustMeshInit runs mesh-init and fails the test unless it succeeds.
func mustMeshInit(t testing.TB, ns string, args ...string) string {
	t.Helper()
	res := runMeshInit(t, ns, nil, args...)
	if res.code != 0 {
		t.Fatalf("mesh-init capture %s: exit %d\n%s", strings.Join(args, " "), res.code, res.output)
	}
	return res.output
}

var (
	saveNoise    = regexp.MustCompile(`(?m)^#.*\n`)
	saveCounters = regexp.MustCompile(`\[\d+:\d+\]`)
)

// normalizeSave drops what is not rules from save output: comment lines
// (they hold a timestamp) and the built-in chains' packet counters, which
// iptables-legacy-save always prints and which any legacy
// iptables-restore resets (the legacy backend replaces the whole table).
func normalizeSave(s string) string {
	return saveCounters.ReplaceAllString(saveNoise.ReplaceAllString(s, ""), "[0:0]")
}

// save returns `<tool>-<mode>-save -t nat` in ns, normalized.
func save(t *testing.T, ns, mode, tool string) string {
	t.Helper()
	// Standard output only: iptables-nft-save warns on stderr when legacy
	// tables exist too.
	out, err := exec.Command("ip", "netns", "exec", ns, tool+"-"+mode+"-save", "-t", "nat").Output()
	if err != nil {
		t.Fatalf("%s-%s-save in %s: %v", tool, mode, ns, err)
	}
	return normalizeSave(string(out))
}

// tools are the two families' commands.
var tools = []string{"iptables", "ip6tables"}
