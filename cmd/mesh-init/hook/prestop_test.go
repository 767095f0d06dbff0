package hook

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-injector/injector/test/registry"
)

const testSleep = 300 * time.Millisecond

func expectRequest(t *testing.T, r recorded, method, path, rawQuery string) {
	t.Helper()
	if r.Method != method || r.Path != path || (rawQuery != "" && r.Raw != rawQuery) {
		t.Errorf("got %s %s?%s, want %s %s?%s", r.Method, r.Path, r.Raw, method, path, rawQuery)
	}
}

// TestPreStopSleepOnly measures the drain with the real clock: a lower
// bound, because a sleep is never shortened. The upper bound is only a
// guard against a hang: 30s is over 10x what an idle run takes (~300ms).
func TestPreStopSleepOnly(t *testing.T) {
	t.Parallel()
	r := harness{real: true}.run("prestop", "--registry=none", "--sleep=300ms")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r.took() < 300*time.Millisecond || r.took() > 30*time.Second {
		t.Errorf("a 300ms sleep took %s", r.took())
	}
	want := "mesh-init prestop: no registry offline step (registry none)\nmesh-init prestop: sleeping 300ms before the app is stopped\nmesh-init prestop: done in "
	if !strings.HasPrefix(r.stdout, want) {
		t.Errorf("stdout = %q, want it to start %q", r.stdout, want)
	}
}

// A missing setting is a failed offline step (exit 1 after the drain), not
// bad arguments.
func TestPreStopMissingConfig(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	r := harness{clock: clk}.run("prestop", "--registry=nacos", "--sleep=30s")
	if r.code != ExitFailed || !strings.Contains(r.stderr, "no Nacos service name") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if got := clk.Sleeps(); len(got) != 1 || got[0] != 30*time.Second {
		t.Errorf("sleeps %v, want the 30s drain", got)
	}
}

// TestPreStopOriginalExec: the app's own exec handler runs after the sleep,
// its output passes through and its exit code is the hook's.
func TestPreStopOriginalExec(t *testing.T) {
	t.Parallel()
	q := registry.NewDubboQoS("3", "com.example.Orders")
	f := serve(t, q)
	stamp := filepath.Join(t.TempDir(), "stamp")
	args := append([]string{"prestop", "--registry=dubbo", "--dubbo-port=" + portOf(f), "--sleep=" + testSleep.String(), "--then-exec", "--"},
		helperCommand(t, "stamp", stamp, "say", "app handler output", "exit", "3")...)
	clk := newFakeClock()
	r := harness{clock: clk}.run(args...)
	if r.code != 3 {
		t.Fatalf("exit %d, want the handler's 3\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The handler ran after the whole sleep: its stamp follows the QoS
	// requests, and the sleep asked for was the whole testSleep.
	if ran, reqs := readStamp(t, stamp), q.Requests(); ran.Before(reqs[len(reqs)-1].At) {
		t.Error("the original handler ran before the offline step was done")
	}
	if got := clk.Sleeps(); got[len(got)-1] != testSleep {
		t.Errorf("sleeps %v, want the %s drain last", got, testSleep)
	}
	if !strings.Contains(r.stdout, "app handler output\n") {
		t.Errorf("the handler's output is missing:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "FAILED: original exec handler") || !strings.Contains(r.stderr, "exited 3") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

// TestPreStopOriginalExecOK: a handler exiting 0 after a good offline is a
// clean run; a missing command exits 127.
func TestPreStopOriginalExecOK(t *testing.T) {
	t.Parallel()
	r := harness{}.run(append([]string{"prestop", "--sleep=0s", "--then-exec", "--"}, helperCommand(t, "exit", "0")...)...)
	if r.code != ExitOK || r.stderr != "" {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	r = harness{}.run("prestop", "--sleep=0s", "--then-exec", "--", "/nonexistent/handler")
	if r.code != 127 || !strings.Contains(r.stderr, "could not start") {
		t.Errorf("exit %d, stderr %q; want 127 and a reason", r.code, r.stderr)
	}
}

// TestPreStopOriginalHTTPGet: the app's httpGet handler is called with its
// headers after the sleep; a failing one is reported.
func TestPreStopOriginalHTTPGet(t *testing.T) {
	t.Parallel()
	app := newFake(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		if r.URL.Path == "/shutdown" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	clk := newFakeClock()
	r := harness{clock: clk}.run("prestop", "--sleep="+testSleep.String(), "--then-http-get="+app.URL+"/shutdown?grace=1", "--then-http-header=X-Drain: yes")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	reqs := app.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests", len(reqs))
	}
	expectRequest(t, reqs[0], http.MethodGet, "/shutdown", "grace=1")
	if reqs[0].Header.Get("X-Drain") != "yes" {
		t.Errorf("headers = %v", reqs[0].Header)
	}
	if got := clk.Sleeps(); len(got) != 1 || got[0] != testSleep {
		t.Errorf("sleeps %v, want the %s drain before the handler", got, testSleep)
	}

	r = harness{}.run("prestop", "--sleep=0s", "--then-http-get="+app.URL+"/broken")
	if r.code != ExitFailed || !strings.Contains(r.stderr, "FAILED: original httpGet handler GET "+app.URL+"/broken -> 500") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestPreStopOriginalSleep: a sleep handler adds to the hook's own sleep.
func TestPreStopOriginalSleep(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	r := harness{clock: clk}.run("prestop", "--sleep=20s", "--then-sleep=5s")
	if r.code != ExitOK {
		t.Fatalf("exit %d", r.code)
	}
	if got := clk.Sleeps(); len(got) != 2 || got[0] != 20*time.Second || got[1] != 5*time.Second {
		t.Errorf("sleeps %v, want the 20s drain, then the handler's 5s", got)
	}
}

// TestPreStopSignal: SIGTERM (kubelet giving up on the hook) ends the sleep
// at once with a line saying so, and is passed on to a running handler.
func TestPreStopSignal(t *testing.T) {
	t.Parallel()
	t.Run("during the sleep", func(t *testing.T) {
		t.Parallel()
		// The real clock: the signal must end a sleep that is really
		// under way. The 10s sleep is the bound that matters: the hook
		// returns long before it (an idle run takes ~200ms).
		h := harness{signals: make(chan os.Signal, 1), real: true}
		go func() {
			time.Sleep(200 * time.Millisecond)
			h.signals <- syscall.SIGTERM
		}()
		r := h.run("prestop", "--sleep=10m")
		if r.code != 128+int(syscall.SIGTERM) {
			t.Errorf("exit %d, want 143", r.code)
		}
		if r.took() < 200*time.Millisecond || r.took() >= 10*time.Minute {
			t.Errorf("the interrupted hook took %s", r.took())
		}
		if !strings.Contains(r.stderr, "received SIGTERM while sleeping (") {
			t.Errorf("stderr = %q", r.stderr)
		}
	})
	t.Run("during the original handler", func(t *testing.T) {
		t.Parallel()
		ready := filepath.Join(t.TempDir(), "ready")
		h := harness{signals: make(chan os.Signal, 1)}
		go func() {
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(ready); err == nil {
					h.signals <- syscall.SIGTERM
					return
				}
			}
		}()
		r := h.run(append([]string{"prestop", "--sleep=0s", "--then-exec", "--"}, helperCommand(t, "trap", ready)...)...)
		if r.code != 128+int(syscall.SIGTERM) {
			t.Errorf("exit %d, want 143", r.code)
		}
		if !strings.Contains(r.stdout, "original exec handler exited 42") {
			t.Errorf("the handler did not get the signal:\n%s", r.stdout)
		}
	})
}

// TestPreStopBadArguments exits 2 with one line. Nothing else is done but
// the drain: a --sleep found among arguments that do not parse is slept
// in full first, because losing the drain is worse than a late error.
func TestPreStopBadArguments(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	r := harness{clock: clk}.run("prestop", "--registry=zookeeper", "--sleep=45s", "--stray")
	if r.code != ExitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "mesh-init prestop: bad arguments: ") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if got := clk.Sleeps(); len(got) != 1 || got[0] != 45*time.Second || !strings.Contains(r.stdout, "sleeping the 45s drain anyway") {
		t.Errorf("sleeps %v, stdout %q; want the 45s drain kept", got, r.stdout)
	}
	for _, args := range [][]string{
		{"--registry=zookeeper"},
		{"--sleep=soon"},
		{"--registry=http"},
		{"--then-exec"},
		{"--then-sleep=1s", "--then-http-get=http://x/"},
		{"--stray"},
		// Methods and headers the HTTP client could never send.
		{"--registry=http", "--http-url=http://x/", "--http-method=PO ST"},
		{"--registry=http", "--http-url=http://x/", "--http-header=Bad Name: v"},
		{"--registry=http", "--http-url=http://x/", "--http-header=X-A: v\r\nX-Injected: 1"},
		{"--registry=http", "--http-url=http://x/", "--http-header=X-A: v\n"},
		{"--registry=http", "--http-url=http://x/", "--http-header=: x"},
		{"--then-http-get=http://x/", "--then-http-header=Bad Name: v"},
		{"--then-http-get=http://x/", "--then-http-header=X-A: a\rb"},
		{"--then-http-get=http:///path"},
	} {
		r := harness{}.run(append([]string{"prestop"}, args...)...)
		if r.code != ExitUsage || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "mesh-init prestop: bad arguments: ") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
}

// The app's own HTTPS httpGet handler runs as the kubelet runs it: without
// certificate verification, and on the pod's IP when it names no host.
func TestOriginalHTTPSHandlerLikeKubelet(t *testing.T) {
	t.Parallel()
	var got atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	// The server listens on 127.0.0.1; POD_IP says so too, and the URL
	// carries another loopback host that the flag must replace.
	h := harness{vars: map[string]string{"POD_IP": "127.0.0.1"}}
	r := h.run("prestop", "--registry=none", "--sleep=0s",
		"--then-http-get=https://127.0.0.2:"+u.Port()+"/shutdown", "--then-http-get-pod-ip")
	if r.code != 0 || got.Load() != 1 {
		t.Fatalf("exit %d, %d calls; want 0 and 1 (stderr %q)", r.code, got.Load(), r.stderr)
	}
}

// An offline call answered with a redirect has not reached the registry: it
// fails at once, naming where it was sent, and the redirect is not followed
// (a 302 to a login page that answers 200 is not a success).
func TestPreStopRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	redirectToLogin := func(w http.ResponseWriter, r *http.Request, _ int) {
		if r.URL.Path == "/login" {
			answerText(w, http.StatusOK, "please log in")
			return
		}
		http.Redirect(w, r, "/login", http.StatusFound)
	}
	cases := []struct {
		name string
		args func(f *fake) []string
	}{
		{"http", func(f *fake) []string {
			return []string{"--registry=http", "--http-method=PUT", "--http-url=" + f.URL + "/self/down"}
		}},
		{"eureka", func(f *fake) []string {
			return []string{"--registry=eureka", "--eureka-server-url=" + f.URL + "/eureka", "--eureka-app-name=cart", "--eureka-instance-id=cart-1"}
		}},
		{"nacos", func(f *fake) []string {
			return []string{"--registry=nacos", "--nacos-server-url=" + f.URL, "--nacos-service-name=a", "--nacos-port=1"}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, redirectToLogin)
			r := harness{vars: map[string]string{"POD_IP": "10.0.0.1"}}.run(append([]string{"prestop", "--sleep=0s"}, c.args(f)...)...)
			if r.code != ExitFailed {
				t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
			}
			if reqs := f.requests(); len(reqs) != 1 || reqs[0].Path == "/login" {
				t.Errorf("got %d requests (%+v), want the one offline call and no visit to /login", len(reqs), reqs)
			}
			want := `-> 302 Found redirecting to "/login" (not followed) in `
			if !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "a registry call must be answered by the registry itself") {
				t.Errorf("stderr %q does not contain %q and why", r.stderr, want)
			}
			if !strings.Contains(r.stdout, "not retried: redirects are not followed") {
				t.Errorf("stdout does not say the redirect is not retried:\n%s", r.stdout)
			}
		})
	}
	// A status the user lists as expected is success, redirect or not.
	f := newFake(t, redirectToLogin)
	r := harness{}.run("prestop", "--sleep=0s", "--registry=http", "--http-url="+f.URL+"/self", "--http-expect-status=302")
	if r.code != ExitOK || len(f.requests()) != 1 {
		t.Errorf("expected 302: exit %d after %d requests\n%s%s", r.code, len(f.requests()), r.stdout, r.stderr)
	}
}

// The app's own httpGet handler follows redirects as the kubelet does: on
// the same host only; a redirect to another host is its answer, and a 3xx
// is below 400, so it counts as success.
func TestOriginalHTTPGetRedirects(t *testing.T) {
	t.Parallel()
	other := newFake(t, status(http.StatusInternalServerError, "should not be reached"))
	app := newFake(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		switch r.URL.Path {
		case "/shutdown":
			http.Redirect(w, r, "/shutdown/now", http.StatusFound)
		case "/shutdown/now":
			answerText(w, http.StatusOK, "stopping")
		case "/elsewhere":
			// Another host name for the same machine: the kubelet
			// compares host names, not addresses.
			http.Redirect(w, r, "http://localhost:"+other.port(t)+"/x", http.StatusFound)
		}
	})
	r := harness{}.run("prestop", "--sleep=0s", "--then-http-get="+app.URL+"/shutdown")
	if r.code != ExitOK {
		t.Fatalf("same host: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if reqs := app.requests(); len(reqs) != 2 || reqs[1].Path != "/shutdown/now" {
		t.Errorf("same host: want the redirect followed, got %+v", reqs)
	}
	if !strings.Contains(r.stdout, "-> 200 (after a redirect to "+app.URL+"/shutdown/now)") {
		t.Errorf("same host: stdout does not show the redirect:\n%s", r.stdout)
	}

	r = harness{}.run("prestop", "--sleep=0s", "--then-http-get="+app.URL+"/elsewhere")
	if r.code != ExitOK {
		t.Fatalf("other host: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := len(other.requests()); n != 0 {
		t.Errorf("other host: the redirect was followed (%d requests)", n)
	}
	if !strings.Contains(r.stdout, "-> 302 Found redirecting to \"http://localhost:"+other.port(t)+"/x\" (not followed)") ||
		!strings.Contains(r.stdout, "as the kubelet does for a redirect to another host") {
		t.Errorf("other host: stdout does not say the redirect was not followed:\n%s", r.stdout)
	}
}

// Client-side errors that another try would repeat fail at once; errors that
// may pass (connection refused, see TestPreStopRefused) are retried.
func TestPreStopPermanentErrorsNotRetried(t *testing.T) {
	t.Parallel()
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake errors are the point
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	plain := newFake(t, status(http.StatusOK, "OK"))
	plain.Config.ErrorLog = log.New(io.Discard, "", 0)
	cases := []struct{ name, url, want string }{
		{"certificate signed by an unknown authority", tlsSrv.URL + "/offline", "not retried: the server's certificate is not trusted"},
		{"https to a plain HTTP server", "https://" + plain.hostPort() + "/offline", "not retried: the server speaks plain HTTP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clk := newFakeClock()
			r := harness{clock: clk}.run("prestop", "--sleep=0s", "--registry=edas", "--edas-url="+c.url)
			if r.code != ExitFailed {
				t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
			}
			if n := strings.Count(r.stdout, "edas offline GET"); n != 1 || !strings.Contains(r.stdout, c.want) {
				t.Errorf("want one try, logged with %q; got %d:\n%s", c.want, n, r.stdout)
			}
			if got := clk.Sleeps(); len(got) != 0 {
				t.Errorf("paused %v: a permanent error is not retried", got)
			}
			if !strings.Contains(r.stderr, "FAILED: edas offline failed after 1 request") {
				t.Errorf("stderr = %q", r.stderr)
			}
		})
	}
}

// A Host or User-Agent header given for the offline call or the original
// httpGet handler is sent, as the kubelet sends a handler's headers; the
// User-Agent only defaults to mesh-init-hook.
func TestPreStopHostAndUserAgentHeaders(t *testing.T) {
	t.Parallel()
	f := newFake(t, status(http.StatusOK, ""))
	r := harness{}.run("prestop", "--sleep=0s", "--registry=http", "--http-url="+f.URL+"/down",
		"--http-header=Host: registry.internal", "--http-header=User-Agent: ops-tool/1.0",
		"--then-http-get="+f.URL+"/stop", "--then-http-header=host: app.internal", "--then-http-header=user-agent: probe/2")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	reqs := f.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	for i, want := range []struct{ host, ua string }{{"registry.internal", "ops-tool/1.0"}, {"app.internal", "probe/2"}} {
		if reqs[i].Host != want.host || reqs[i].Header.Get("User-Agent") != want.ua {
			t.Errorf("%s: Host %q, User-Agent %q; want %q, %q", reqs[i].Path, reqs[i].Host, reqs[i].Header.Get("User-Agent"), want.host, want.ua)
		}
	}
	if got := reqs[1].Header.Get("Accept"); got != "*/*" {
		t.Errorf("the original handler's Accept = %q, want the kubelet's */*", got)
	}
	// Without them: the server's own address and the hook's User-Agent.
	r = harness{}.run("prestop", "--sleep=0s", "--registry=http", "--http-url="+f.URL+"/down")
	if last := f.requests()[2]; r.code != ExitOK || last.Host != f.hostPort() || last.Header.Get("User-Agent") != "mesh-init-hook" {
		t.Errorf("defaults: exit %d, Host %q, User-Agent %q", r.code, last.Host, last.Header.Get("User-Agent"))
	}
}
