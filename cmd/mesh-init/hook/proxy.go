package hook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// pollInterval is how often wait-ready asks the proxy. The app's start
// waits for the hook, so every poll not taken is start time saved; a
// request to the proxy's loopback readiness port costs well under 1ms.
const pollInterval = 50 * time.Millisecond

// waitReady runs "hook wait-ready", the classic-mode proxy's postStart
// hook: kubelet starts the next container only once it returns, and kills
// the proxy container when it fails.
func (t *tool) waitReady(args []string) (int, error) {
	w, err := meshinit.ParseWaitReady(args)
	if err != nil {
		return 0, err
	}
	ctx, in, stop := t.signalContext()
	defer stop()
	t.logf("waiting up to %s for the proxy to be ready at %s", w.Timeout, meshinit.RedactURL(w.URL))
	ready, last := t.pollReady(ctx, w.URL, time.Duration(w.Timeout))
	if code, ok := t.stopped(in, "waiting for the proxy"); ok {
		return code, nil
	}
	if !ready {
		t.errorf("FAILED: proxy not ready after %s; last answer: %s", w.Timeout, last)
		return ExitFailed, nil
	}
	return ExitOK, nil
}

// pollReady asks target every pollInterval until it answers 200 or timeout
// passes (it asks at least once). It logs each new kind of answer once, not
// every poll, and returns the last answer.
func (t *tool) pollReady(ctx context.Context, target string, timeout time.Duration) (bool, string) {
	start := t.clock.Now()
	deadline := start.Add(timeout)
	var seen, last string
	for {
		per := min(time.Second, max(deadline.Sub(t.clock.Now()), 100*time.Millisecond))
		a := t.exchange(ctx, per, http.MethodGet, target, nil, "")
		if a.err == nil && a.status == http.StatusOK {
			t.logf("proxy ready after %s", fmtDuration(t.since(start)))
			return true, ""
		}
		last = a.String()
		if kind := answerKind(a); kind != seen {
			seen = kind
			t.logf("not ready yet: %s", last)
		}
		if wait := min(pollInterval, deadline.Sub(t.clock.Now())); wait <= 0 || !t.clock.Sleep(ctx, wait) {
			return false, last
		}
	}
}

// answerKind is an answer without its timing, to log changes only.
func answerKind(a answer) string {
	if a.err == nil {
		return fmt.Sprintf("%d %s", a.status, oneLine(a.shownBody(), 100))
	}
	var ue *url.Error
	if errors.As(a.err, &ue) {
		return ue.Err.Error()
	}
	return a.err.Error()
}

// proxyStop runs "hook proxy-stop", the classic-mode proxy's preStop: kubelet
// runs every container's preStop at once and sends each container SIGTERM
// when its own hook returns, so the proxy's hook outlasts the app's offline
// and sleep (Wait) and then drains for Drain while the app shuts down.
func (t *tool) proxyStop(args []string) (int, error) {
	p, err := meshinit.ParseProxyStop(args)
	if err != nil {
		return 0, err
	}
	ctx, in, stop := t.signalContext()
	defer stop()
	start := t.clock.Now()
	if p.Wait > 0 {
		t.logf("keeping the proxy serving for %s while the app goes offline and sleeps", p.Wait)
		if !t.clock.Sleep(ctx, time.Duration(p.Wait)) {
			code, _ := t.stopped(in, "keeping the proxy serving")
			return code, nil
		}
	}

	// The drain call comes out of the drain budget, and gets at least
	// 500ms: the whole hook stays within Wait+Drain plus 1s.
	drainStart := t.clock.Now()
	bound := min(time.Second, max(time.Duration(p.Drain), 500*time.Millisecond))
	ok, last := t.send(ctx, "drain inbound listeners", bound, bound/2, 2, http.MethodPost,
		strings.TrimRight(p.AdminURL, "/")+"/drain_listeners?graceful&inboundonly")
	if code, ok := t.stopped(in, "draining the proxy's listeners"); ok {
		return code, nil
	}
	if rest := time.Duration(p.Drain) - t.since(drainStart); rest > 0 {
		t.logf("letting connections drain for %s", fmtDuration(rest))
		if !t.clock.Sleep(ctx, rest) {
			code, _ := t.stopped(in, "letting connections drain")
			return code, nil
		}
	}
	took := fmtDuration(t.since(start))
	if !ok {
		t.errorf("FAILED: drain inbound listeners: %s (the proxy kept serving for %s and the %s drain time was kept; hook took %s)", last, p.Wait, p.Drain, took)
		return ExitFailed, nil
	}
	t.logf("done in %s; the proxy exits when kubelet sends it SIGTERM", took)
	return ExitOK, nil
}
