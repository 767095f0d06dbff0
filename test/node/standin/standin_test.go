package standin

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/test/testkit"
	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/meshinit"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// deadline bounds every wait of these tests (a server answering, a
// listener stopping): generous, stated once; TEST_DEADLINE_SCALE raises it.
var deadline = testkit.Deadline(time.Minute)

// rendered injects a pod with the built-in defaults and returns the
// bootstrap and the proxy container the injector produced.
func rendered(t *testing.T) (string, corev1.Container) {
	t.Helper()
	e, err := inject.New(policy.BuiltinConfig(), inject.Options{NativeSidecarsSupported: true})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	out, d := e.Inject(pod, inject.Namespace{Name: "shop", Labels: map[string]string{"sidecar-injector.io/injection": "enabled"}})
	if d.Result != inject.Injected {
		t.Fatalf("not injected: %+v", d)
	}
	// The bootstrap is what mesh-init writes from its argument, exactly as
	// in a pod; the proxy is the injected container of that name.
	var bootstrap string
	var proxy *corev1.Container
	for i := range out.Spec.InitContainers {
		c := &out.Spec.InitContainers[i]
		switch c.Name {
		case inject.DefaultNames.Init:
			cmd, err := meshinit.ParseCaptureCommand(c.Args[1:], func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatalf("mesh-init arguments: %v", err)
			}
			b, err := meshinit.DecodeFile(cmd.EnvoyBootstrap)
			if err != nil {
				t.Fatalf("bootstrap argument: %v", err)
			}
			bootstrap = string(b)
		case inject.DefaultNames.Proxy:
			proxy = c
		}
	}
	if bootstrap == "" || proxy == nil {
		t.Fatalf("the injected pod has no mesh-init bootstrap or no proxy: %+v", out.Spec.InitContainers)
	}
	return bootstrap, *proxy
}

// TestAcceptsTheInjectorsArguments: the stand-in parses exactly what the
// injector renders for the proxy container, and refuses what Envoy
// refuses.
func TestAcceptsTheInjectorsArguments(t *testing.T) {
	_, proxy := rendered(t)
	o, err := ParseFlags(proxy.Args, io.Discard)
	if err != nil {
		t.Fatalf("the stand-in refuses the injector's proxy args %q: %v", proxy.Args, err)
	}
	if o.ConfigPath != inject.DefaultPaths.Bootstrap || o.DrainStrategy != "immediate" || !o.DisableHotRestart {
		t.Errorf("parsed %+v from %q", o, proxy.Args)
	}
	for _, bad := range [][]string{
		append(proxy.Args, "--no-such-flag"),
		{"--config-path", "x", "--log-level", "loud"},
		{"--config-path", "x", "--drain-strategy", "slow"},
		{"--log-level", "info"},
		{"--config-path", "x", "stray"},
	} {
		if _, err := ParseFlags(bad, io.Discard); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// TestReadsTheRenderedBootstrap: listeners, directions, dual-stack and
// the admin routes come from the bootstrap the injector renders.
func TestReadsTheRenderedBootstrap(t *testing.T) {
	boot, _ := rendered(t)
	b, err := ParseBootstrap([]byte(boot))
	if err != nil {
		t.Fatal(err)
	}
	if b.AdminAddress != "127.0.0.1:15000" {
		t.Errorf("admin %s", b.AdminAddress)
	}
	want := map[string]string{"outbound": "[::]:15001 OUTBOUND passthrough", "inbound": "[::]:15006 INBOUND passthrough",
		"readiness": "[::]:15021  /healthz/ready->/ready", "stats": "[::]:15090  /stats/prometheus->/stats/prometheus"}
	for _, l := range b.Listeners {
		got := l.Address + " " + string(l.Direction)
		if l.Passthrough {
			got += " passthrough"
		}
		for from, to := range l.AdminRoutes {
			got += " " + from + "->" + to
		}
		if want[l.Name] != got {
			t.Errorf("listener %s: %q, want %q", l.Name, got, want[l.Name])
		}
		if !l.V4Compat {
			t.Errorf("listener %s is not ipv4_compat", l.Name)
		}
		delete(want, l.Name)
	}
	if len(want) > 0 {
		t.Errorf("missing listeners %v", want)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs a stand-in with an admin port and a readiness listener on
// free loopback ports, and an inbound passthrough listener.
func start(t *testing.T, drain int, before ...func(*Server)) (*Server, string, string, *lockedBuffer) {
	t.Helper()
	admin := "127.0.0.1:" + strconv.Itoa(freePort(t))
	ready := "127.0.0.1:" + strconv.Itoa(freePort(t))
	in := "127.0.0.1:" + strconv.Itoa(freePort(t))
	boot := &Bootstrap{AdminAddress: admin, Listeners: []Listener{
		{Name: "readiness", Address: ready, AdminRoutes: map[string]string{"/healthz/ready": "/ready"}},
		{Name: "inbound", Address: in, Direction: Inbound, Passthrough: true},
	}}
	logs := &lockedBuffer{}
	s := New(Options{DrainTimeSeconds: drain}, boot, slog.New(slog.NewJSONHandler(logs, nil)))
	for _, f := range before {
		f(s)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, "http://" + admin, "http://" + ready, logs
}

// lockedBuffer is written by the stand-in's goroutines and read by the
// test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func call(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := (&http.Client{Timeout: deadline}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestNotReadyWhileInitializing: a stand-in told to be slow
// (ReadyDelayEnv) answers the readiness probe and the hook tool 503, as
// Envoy does before it is initialized, and 200 once it is.
func TestNotReadyWhileInitializing(t *testing.T) {
	s, admin, ready, _ := start(t, 0, func(s *Server) { s.SetInitializing(true) })
	if code, body := call(t, "GET", ready+"/healthz/ready"); code != 503 || body != "PRE_INITIALIZING\n" {
		t.Errorf("readiness while initializing: %d %q", code, body)
	}
	if code, _ := call(t, "GET", admin+"/ready"); code != 503 {
		t.Errorf("/ready while initializing: %d", code)
	}
	s.SetInitializing(false)
	if code, body := call(t, "GET", ready+"/healthz/ready"); code != 200 || body != "LIVE\n" {
		t.Errorf("readiness once initialized: %d %q", code, body)
	}
}

// TestAdminSemantics: Envoy's answers to the calls the hook tool and the
// readiness probe make.
func TestAdminSemantics(t *testing.T) {
	s, admin, ready, _ := start(t, 0)
	if code, body := call(t, "GET", ready+"/healthz/ready"); code != 200 || body != "LIVE\n" {
		t.Errorf("readiness: %d %q", code, body)
	}
	if code, _ := call(t, "GET", ready+"/other"); code != 404 {
		t.Errorf("unrouted path on the readiness listener: %d", code)
	}
	for _, p := range []string{"/quitquitquit", "/drain_listeners", "/healthcheck/fail"} {
		if code, body := call(t, "GET", admin+p); code != http.StatusMethodNotAllowed || !strings.Contains(body, "POST required") {
			t.Errorf("GET %s: %d %q, want 405 (mutating admin calls need POST)", p, code, body)
		}
	}
	if code, _ := call(t, "GET", admin+"/nope"); code != 404 {
		t.Errorf("unknown admin path: %d", code)
	}
	if code, _ := call(t, "POST", admin+"/healthcheck/fail"); code != 200 {
		t.Errorf("healthcheck/fail: %d", code)
	}
	if code, body := call(t, "GET", admin+"/ready"); code != 503 || body != "DRAINING\n" {
		t.Errorf("/ready after healthcheck/fail: %d %q", code, body)
	}
	call(t, "POST", admin+"/healthcheck/ok")
	if code, _ := call(t, "GET", ready+"/healthz/ready"); code != 200 {
		t.Errorf("readiness after healthcheck/ok: %d", code)
	}
	select {
	case <-s.Quit():
		t.Fatal("quit before /quitquitquit")
	default:
	}
	if code, body := call(t, "POST", admin+"/quitquitquit"); code != 200 || body != "OK\n" {
		t.Errorf("quitquitquit: %d %q", code, body)
	}
	select {
	case <-s.Quit():
	case <-time.After(deadline):
		t.Fatalf("/quitquitquit did not make the stand-in quit within %s", deadline)
	}
}

// TestDrainListeners: inboundonly stops only INBOUND listeners; graceful
// keeps them accepting for --drain-time-s first. The drain's sleep is held
// open by the test (no race with the clock): the listener must accept
// while it lasts, the sleep must be for the drain time, and the listener
// must stop once it ends.
func TestDrainListeners(t *testing.T) {
	asked := make(chan time.Duration, 1)
	release := make(chan struct{})
	s, admin, ready, logs := start(t, 7, func(s *Server) {
		s.drainSleep = func(d time.Duration) { asked <- d; <-release }
	})
	inAddr := s.boot.Listeners[1].Address
	dial := func() error {
		c, err := net.DialTimeout("tcp", inAddr, deadline)
		if err == nil {
			c.Close()
		}
		return err
	}
	if code, _ := call(t, "POST", admin+"/drain_listeners?graceful&inboundonly"); code != 200 {
		t.Fatalf("drain_listeners: %d", code)
	}
	var d time.Duration
	select {
	case d = <-asked:
	case <-time.After(deadline):
		t.Fatalf("no drain began within %s of drain_listeners", deadline)
	}
	if d != 7*time.Second {
		t.Errorf("the drain sleeps %s, want --drain-time-s=7", d)
	}
	if err := dial(); err != nil {
		t.Errorf("the inbound listener stopped during the drain: %v", err)
	}
	close(release)
	stopBy := time.Now().Add(deadline)
	for dial() == nil {
		if time.Now().After(stopBy) {
			t.Fatalf("the inbound listener still accepts %s after the drain ended", deadline)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// inboundonly: the readiness listener (no direction) keeps serving.
	if code, _ := call(t, "GET", ready+"/healthz/ready"); code != 200 {
		t.Errorf("readiness after an inbound-only drain: %d", code)
	}
	var sawStop bool
	for _, l := range strings.Split(logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "listener stopped" && m["listener"] == "inbound" {
			sawStop = true
		}
		if strings.Contains(l, "listener stopped") && strings.Contains(l, `"readiness"`) {
			t.Errorf("the readiness listener was stopped by an inbound-only drain: %s", l)
		}
	}
	if !sawStop {
		t.Errorf("no 'listener stopped' line for inbound:\n%s", logs.String())
	}
}
