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

// readyAfter answers 503 like a starting proxy for its first n polls, then
// 200: counted, not timed, so a busy machine changes nothing.
func readyAfter(n int) func(w http.ResponseWriter, r *http.Request, i int) {
	return func(w http.ResponseWriter, r *http.Request, i int) {
		if i < n {
			answerText(w, http.StatusServiceUnavailable, "no healthy upstream")
			return
		}
		w.WriteHeader(http.StatusOK)
	}
}

// never is a proxy that is never ready.
const never = 1 << 30

func TestWaitReady(t *testing.T) {
	t.Parallel()
	t.Run("turns ready", func(t *testing.T) {
		t.Parallel()
		f := newFake(t, readyAfter(3))
		clk := newFakeClock()
		r := harness{clock: clk}.run("wait-ready", "--url="+f.URL+"/healthz/ready", "--timeout=5s")
		if r.code != ExitOK {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		// Three 503s, each followed by a pollInterval pause, then the 200.
		if reqs, sleeps := f.requests(), clk.Sleeps(); len(reqs) != 4 || len(sleeps) != 3 || sleeps[0] != pollInterval {
			t.Errorf("%d polls, pauses %v", len(reqs), sleeps)
		}
		if strings.Count(r.stdout, "not ready yet: 503") != 1 || !strings.Contains(r.stdout, "proxy ready after") {
			t.Errorf("want the 503 logged once, then ready:\n%s", r.stdout)
		}
	})
	t.Run("times out", func(t *testing.T) {
		t.Parallel()
		f := newFake(t, readyAfter(never))
		clk := newFakeClock()
		start := clk.Now()
		r := harness{clock: clk}.run("wait-ready", "--url="+f.URL+"/healthz/ready", "--timeout=600ms")
		if r.code != ExitFailed {
			t.Fatalf("exit %d", r.code)
		}
		// It polls until the timeout and not beyond: 600ms of pauses, a
		// poll at the start and after each pause.
		want := int(600*time.Millisecond/pollInterval) + 1
		if took := clk.Now().Sub(start); took != 600*time.Millisecond || len(f.requests()) != want {
			t.Errorf("waited %s over %d polls, want 600ms over %d", took, len(f.requests()), want)
		}
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
			clk := newFakeClock()
			r := harness{clock: clk}.run(args...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, "bad arguments: --") || !strings.Contains(r.stderr, "is not an absolute http or https URL with a host") {
				t.Errorf("%q: exit %d, stderr %q", args, r.code, r.stderr)
			}
			if got := clk.Sleeps(); len(got) != 0 {
				t.Errorf("%q: waited %v before refusing", args, got)
			}
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		t.Parallel()
		clk := newFakeClock()
		start := clk.Now()
		r := harness{clock: clk}.run("wait-ready", "--url="+refusedURL(t)+"/healthz/ready", "--timeout=400ms")
		if r.code != ExitFailed || !strings.Contains(r.stderr, "connection refused") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
		if took := clk.Now().Sub(start); took != 400*time.Millisecond {
			t.Errorf("waited %s, want the 400ms timeout", took)
		}
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
		clk := newFakeClock()
		r := harness{clock: clk}.run("proxy-stop", "--wait="+wait.String(), "--drain="+drain.String(), "--admin-url="+f.URL+"/")
		if r.code != ExitOK {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		reqs := f.requests()
		if len(reqs) != 1 {
			t.Fatalf("%d requests", len(reqs))
		}
		expectRequest(t, reqs[0], http.MethodPost, "/drain_listeners", "graceful&inboundonly")
		// The whole wait, then the drain call, then the rest of the drain.
		if got := clk.Sleeps(); len(got) != 2 || got[0] != wait || got[1] != drain {
			t.Errorf("sleeps %v, want %s then %s", got, wait, drain)
		}
	})
	t.Run("admin down", func(t *testing.T) {
		t.Parallel()
		clk := newFakeClock()
		start := clk.Now()
		r := harness{clock: clk}.run("proxy-stop", "--wait="+wait.String(), "--drain="+drain.String(), "--admin-url="+refusedURL(t))
		if r.code != ExitFailed || !strings.Contains(r.stderr, "FAILED: drain inbound listeners") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
		// The failure does not shorten the wait or the drain.
		if took := clk.Now().Sub(start); took != wait+drain {
			t.Errorf("took %s on the fake clock, want %s", took, wait+drain)
		}
	})
	t.Run("admin hanging", func(t *testing.T) {
		t.Parallel()
		// A hanging admin API costs the drain call's 500ms bound, no more
		// (on the fake clock: the held request waits for its timeout).
		held := make(chan struct{}, 4)
		f := newFake(t, func(w http.ResponseWriter, r *http.Request, _ int) {
			held <- struct{}{}
			<-r.Context().Done()
		})
		clk := newFakeClock()
		go func() {
			for range held {
				clk.FireNext()
			}
		}()
		start := clk.Now()
		r := harness{clock: clk}.run("proxy-stop", "--wait=0s", "--drain=0s", "--admin-url="+f.URL)
		close(held)
		if r.code != ExitFailed {
			t.Errorf("exit %d", r.code)
		}
		if took := clk.Now().Sub(start); took > 500*time.Millisecond {
			t.Errorf("took %s on the fake clock, over the 500ms bound", took)
		}
	})
}

func TestRun(t *testing.T) {
	t.Parallel()
	t.Run("passes the exit code and quits the proxy", func(t *testing.T) {
		t.Parallel()
		admin := newFake(t, envoyAdmin)
		ready := newFake(t, readyAfter(2))
		stamp := filepath.Join(t.TempDir(), "stamp")
		args := append([]string{"run", "--ready-url=" + ready.URL, "--ready-timeout=5s", "--quit-url=" + admin.URL + "/quitquitquit", "--quit-on-failure", "--"},
			helperCommand(t, "stamp", stamp, "say", "job output", "exit", "7")...)
		r := harness{}.run(args...)
		if r.code != 7 {
			t.Fatalf("exit %d, want the command's 7\n%s%s", r.code, r.stdout, r.stderr)
		}
		ran := readStamp(t, stamp)
		if polls := ready.requests(); len(polls) != 3 || ran.Before(polls[2].At) {
			t.Errorf("the command started before the proxy was ready (%d polls)", len(polls))
		}
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
		ready := newFake(t, readyAfter(never))
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
	// The real clock: a sleep is never shortened. 30s is only a guard
	// against a hang, over 10x an idle run (~300ms).
	if took := time.Since(start); took < 300*time.Millisecond || took > 30*time.Second {
		t.Errorf("a 300ms sleep through Main took %s", took)
	}
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
