package hook

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readyAfter answers 503 like a starting proxy until d has passed, then 200.
func readyAfter(d time.Duration) func(w http.ResponseWriter, r *http.Request, n int) {
	start := time.Now()
	return func(w http.ResponseWriter, r *http.Request, _ int) {
		if time.Since(start) < d {
			answerText(w, http.StatusServiceUnavailable, "no healthy upstream")
			return
		}
		w.WriteHeader(http.StatusOK)
	}
}

func TestWaitReady(t *testing.T) {
	t.Parallel()
	t.Run("turns ready", func(t *testing.T) {
		t.Parallel()
		f := newFake(t, readyAfter(500*time.Millisecond))
		r := harness{}.run("wait-ready", "--url="+f.URL+"/healthz/ready", "--timeout=5s")
		if r.code != ExitOK {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		within(t, "waiting", r.took(), 450*time.Millisecond, 2*time.Second)
		reqs := f.requests()
		// Polled about every 200ms: a few 503s, then the 200.
		if len(reqs) < 3 || len(reqs) > 6 {
			t.Errorf("%d polls in %v", len(reqs), r.took())
		}
		if strings.Count(r.stdout, "not ready yet: 503") != 1 || !strings.Contains(r.stdout, "proxy ready after") {
			t.Errorf("want the 503 logged once, then ready:\n%s", r.stdout)
		}
	})
	t.Run("times out", func(t *testing.T) {
		t.Parallel()
		f := newFake(t, readyAfter(time.Hour))
		r := harness{}.run("wait-ready", "--url="+f.URL+"/healthz/ready", "--timeout=600ms")
		if r.code != ExitFailed {
			t.Fatalf("exit %d", r.code)
		}
		within(t, "a 600ms timeout", r.took(), 600*time.Millisecond, 1600*time.Millisecond)
		if !strings.HasPrefix(r.stderr, "mesh-init wait-ready: FAILED: proxy not ready after 600ms; last answer: 503 \"no healthy upstream\"") {
			t.Errorf("stderr = %q", r.stderr)
		}
	})
	t.Run("malformed URL is bad arguments, not a timeout", func(t *testing.T) {
		t.Parallel()
		for _, args := range [][]string{
			{"wait-ready", "--url=127.0.0.1:15021/healthz/ready", "--timeout=5s"},
			{"proxy-stop", "--wait=0s", "--drain=0s", "--admin-url=127.0.0.1:15000"},
			{"run", "--ready-url=http:///healthz/ready", "--ready-timeout=5s", "--", "/bin/true"},
		} {
			r := harness{}.run(args...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, "bad arguments: --") || !strings.Contains(r.stderr, "is not an absolute http or https URL with a host") {
				t.Errorf("%q: exit %d, stderr %q", args, r.code, r.stderr)
			}
			within(t, args[0]+" with a malformed URL", r.took(), 0, 200*time.Millisecond)
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		t.Parallel()
		r := harness{}.run("wait-ready", "--url="+refusedURL(t)+"/healthz/ready", "--timeout=400ms")
		if r.code != ExitFailed || !strings.Contains(r.stderr, "connection refused") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
		within(t, "a 400ms timeout", r.took(), 400*time.Millisecond, 1400*time.Millisecond)
	})
}

// envoyAdmin answers drain_listeners and quitquitquit as Envoy's admin does.
func envoyAdmin(w http.ResponseWriter, r *http.Request, _ int) {
	if r.Method != http.MethodPost {
		answerText(w, http.StatusMethodNotAllowed, "This endpoint requires POST\n")
		return
	}
	switch r.URL.Path {
	case "/drain_listeners", "/quitquitquit":
		answerText(w, http.StatusOK, "OK\n")
	default:
		answerText(w, http.StatusNotFound, "invalid path\n")
	}
}

func TestProxyStop(t *testing.T) {
	t.Parallel()
	const wait, drain = 300 * time.Millisecond, 300 * time.Millisecond
	t.Run("drains after the wait", func(t *testing.T) {
		t.Parallel()
		f := newFake(t, envoyAdmin)
		r := harness{}.run("proxy-stop", "--wait="+wait.String(), "--drain="+drain.String(), "--admin-url="+f.URL+"/")
		if r.code != ExitOK {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		reqs := f.requests()
		if len(reqs) != 1 {
			t.Fatalf("%d requests", len(reqs))
		}
		expectRequest(t, reqs[0], http.MethodPost, "/drain_listeners", "graceful&inboundonly")
		within(t, "until the drain", reqs[0].At.Sub(r.start), wait, wait+500*time.Millisecond)
		within(t, "the hook", r.took(), wait+drain, wait+drain+time.Second)
	})
	t.Run("admin down", func(t *testing.T) {
		t.Parallel()
		r := harness{}.run("proxy-stop", "--wait="+wait.String(), "--drain="+drain.String(), "--admin-url="+refusedURL(t))
		if r.code != ExitFailed || !strings.Contains(r.stderr, "FAILED: drain inbound listeners") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
		within(t, "the hook", r.took(), wait+drain, wait+drain+time.Second)
	})
	t.Run("admin hanging", func(t *testing.T) {
		t.Parallel()
		f := newFake(t, slow(10*time.Second, envoyAdmin))
		r := harness{}.run("proxy-stop", "--wait=0s", "--drain=0s", "--admin-url="+f.URL)
		if r.code != ExitFailed {
			t.Errorf("exit %d", r.code)
		}
		within(t, "the hook with nothing to wait", r.took(), 0, time.Second+200*time.Millisecond)
	})
}

func TestRun(t *testing.T) {
	t.Parallel()
	t.Run("passes the exit code and quits the proxy", func(t *testing.T) {
		t.Parallel()
		admin := newFake(t, envoyAdmin)
		ready := newFake(t, readyAfter(300*time.Millisecond))
		stamp := filepath.Join(t.TempDir(), "stamp")
		args := append([]string{"run", "--ready-url=" + ready.URL, "--ready-timeout=5s", "--quit-url=" + admin.URL + "/quitquitquit", "--quit-on-failure", "--"},
			helperCommand(t, "stamp", stamp, "say", "job output", "exit", "7")...)
		r := harness{}.run(args...)
		if r.code != 7 {
			t.Fatalf("exit %d, want the command's 7\n%s%s", r.code, r.stdout, r.stderr)
		}
		ran := readStamp(t, stamp)
		within(t, "until the command started", ran.Sub(r.start), 300*time.Millisecond, 2*time.Second)
		quits := admin.requests()
		if len(quits) != 1 {
			t.Fatalf("%d quit requests", len(quits))
		}
		expectRequest(t, quits[0], http.MethodPost, "/quitquitquit", "")
		if quits[0].At.Before(ran) {
			t.Error("the proxy was told to quit before the command ran")
		}
		// The command owns stdout; run's own lines go to stderr.
		if r.stdout != "job output\n" || !strings.Contains(r.stderr, "the command exited 7") {
			t.Errorf("stdout %q\nstderr %q", r.stdout, r.stderr)
		}
	})
	t.Run("proxy never ready", func(t *testing.T) {
		t.Parallel()
		admin := newFake(t, envoyAdmin)
		ready := newFake(t, readyAfter(time.Hour))
		stamp := filepath.Join(t.TempDir(), "stamp")
		args := append([]string{"run", "--ready-url=" + ready.URL, "--ready-timeout=300ms", "--quit-url=" + admin.URL + "/quitquitquit", "--quit-on-failure", "--"},
			helperCommand(t, "stamp", stamp)...)
		r := harness{}.run(args...)
		if r.code != ExitFailed || !strings.Contains(r.stderr, "the command was not started") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
		if _, err := os.Stat(stamp); err == nil {
			t.Error("the command ran")
		}
		if len(admin.requests()) != 1 {
			t.Error("the proxy was not told to quit")
		}
	})
	t.Run("forwards SIGTERM", func(t *testing.T) {
		t.Parallel()
		admin := newFake(t, envoyAdmin)
		trapped := filepath.Join(t.TempDir(), "trapped")
		h := harness{signals: make(chan os.Signal, 1)}
		go func() {
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(trapped); err == nil {
					h.signals <- syscall.SIGTERM
					return
				}
			}
		}()
		r := h.run(append([]string{"run", "--quit-url=" + admin.URL + "/quitquitquit", "--quit-on-failure", "--"}, helperCommand(t, "trap", trapped)...)...)
		if r.code != 42 {
			t.Errorf("exit %d, want 42 from the command's SIGTERM handler\n%s", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "passing SIGTERM to the command") || len(admin.requests()) != 1 {
			t.Errorf("stderr %q, %d quit requests", r.stderr, len(admin.requests()))
		}
	})
	t.Run("command missing", func(t *testing.T) {
		t.Parallel()
		admin := newFake(t, envoyAdmin)
		r := harness{}.run("run", "--quit-url="+admin.URL+"/quitquitquit", "--quit-on-failure", "--", "/nonexistent/job")
		if r.code != 127 || len(admin.requests()) != 1 {
			t.Errorf("exit %d, %d quit requests; want 127 and the quit", r.code, len(admin.requests()))
		}
	})
	t.Run("restartPolicy OnFailure keeps the proxy after a failure", func(t *testing.T) {
		t.Parallel()
		admin := newFake(t, envoyAdmin)
		r := harness{}.run("run", "--quit-url="+admin.URL+"/quitquitquit", "--", "/bin/sh", "-c", "exit 3")
		if r.code != 3 || len(admin.requests()) != 0 {
			t.Errorf("exit %d, %d quit requests; want 3 and no quit (the kubelet retries the command, which needs the proxy)", r.code, len(admin.requests()))
		}
		r = harness{}.run("run", "--quit-url="+admin.URL+"/quitquitquit", "--", "/bin/sh", "-c", "exit 0")
		if r.code != 0 || len(admin.requests()) != 1 {
			t.Errorf("exit %d, %d quit requests; want 0 and the quit once the command succeeds", r.code, len(admin.requests()))
		}
	})
	t.Run("quit fails", func(t *testing.T) {
		t.Parallel()
		r := harness{}.run(append([]string{"run", "--quit-url=" + refusedURL(t) + "/quitquitquit", "--"}, helperCommand(t, "exit", "0")...)...)
		if r.code != 0 || !strings.Contains(r.stderr, "could not tell the proxy to quit") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

// TestMain* go through the exported entry point with the real environment,
// streams and signal handling.
func TestMainEntryPoint(t *testing.T) {
	var out, errOut strings.Builder
	start := time.Now()
	code := Main([]string{"prestop", "--registry=none", "--sleep=300ms"}, &out, &errOut)
	within(t, "a 300ms sleep through Main", time.Since(start), 300*time.Millisecond, time.Second)
	if code != ExitOK || errOut.Len() != 0 {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{nil, ExitUsage, ""},
		{[]string{"help"}, ExitOK, "usage: mesh-init hook <command>"},
		{[]string{"wait-ready", "-h"}, ExitOK, "usage: mesh-init hook wait-ready"},
		{[]string{"preStop"}, ExitUsage, ""},
		{[]string{"run"}, ExitUsage, ""},
	} {
		out.Reset()
		errOut.Reset()
		if code := Main(c.args, &out, &errOut); code != c.code || !strings.Contains(out.String(), c.out) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", c.args, code, out.String(), errOut.String())
		}
	}
}
