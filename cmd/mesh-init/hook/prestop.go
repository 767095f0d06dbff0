package hook

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// preStop runs "hook prestop": offline, sleep, original handler. The sleep
// is never skipped or shortened by a failed offline step: consumers that
// missed the offline call still need the time to notice the endpoint going
// away by other means (endpoint removal, their own registry refresh). Not
// even by arguments that do not parse: losing the drain is worse than a
// late error, so the --sleep found among them is slept first.
func (t *tool) preStop(args []string) (int, error) {
	p, err := meshinit.ParsePreStop(args)
	if err != nil {
		if d, ok := meshinit.SleepFromArgs(args); ok && d > 0 {
			ctx, in, stop := t.signalContext()
			defer stop()
			t.logf("the arguments do not parse (%v); sleeping the %s drain anyway before failing", err, d)
			if !t.clock.Sleep(ctx, time.Duration(d)) {
				code, _ := t.stopped(in, "sleeping after bad arguments")
				return code, nil
			}
		}
		return 0, err
	}
	ctx, in, stop := t.signalContext()
	defer stop()
	start := t.clock.Now()

	offlineFailure := t.offline(ctx, p.Registry, p.Record)
	if code, ok := t.stopped(in, "taking the instance offline"); ok {
		return code, nil
	}

	if p.Sleep > 0 {
		t.logf("sleeping %s before the app is stopped", p.Sleep)
		slept := t.clock.Now()
		if !t.clock.Sleep(ctx, time.Duration(p.Sleep)) {
			code, _ := t.stopped(in, fmt.Sprintf("sleeping (%s of %s slept)", fmtDuration(t.since(slept)), p.Sleep))
			return code, nil
		}
	}

	thenCode, thenFailure := t.original(ctx, in, p.Then, "preStop")
	if code, ok := t.stopped(in, "running the original preStop handler"); ok {
		return code, nil
	}

	var failed []string
	for _, f := range []string{offlineFailure, thenFailure} {
		if f != "" {
			failed = append(failed, f)
		}
	}
	took := fmtDuration(t.since(start))
	if len(failed) == 0 {
		t.logf("done in %s", took)
		return ExitOK, nil
	}
	kept := ""
	if p.Sleep > 0 {
		kept = fmt.Sprintf("the %s sleep was kept; ", p.Sleep)
	}
	t.errorf("FAILED: %s (%shook took %s)", strings.Join(failed, "; "), kept, took)
	if thenCode != 0 {
		return thenCode, nil
	}
	return ExitFailed, nil
}

// offline takes the instance offline and confirms it by reading it back,
// within the registry's timeout. It returns one line saying what failed
// (the registry, the instance key used and what the registry said), or ""
// on success.
func (t *tool) offline(ctx context.Context, r meshinit.Registry, record string) string {
	what := string(r.Preset) + " offline"
	reg, err := t.env.resolve(r)
	if err != nil {
		t.logf("%s: %v", what, err)
		return fmt.Sprintf("%s: %v", what, err)
	}
	if reg == nil {
		t.logf("no registry offline step (registry none)")
		return ""
	}
	budget := time.Duration(r.Timeout)
	if budget <= 0 {
		budget = meshinit.DefaultOfflineTimeout
	}
	s, stop := t.newStep(ctx, what, budget)
	defer stop()
	if notes := reg.notes(); len(notes) > 0 {
		t.logf("%s: using %s", what, strings.Join(notes, "; "))
	}
	// Recorded before the first write: a write that lands but whose answer
	// or read-back is lost must still be undone after a restart in place.
	t.writeRecord(record, offlineRecord{Registry: string(r.Preset), Key: reg.key(), At: t.clock.Now().UTC(), State: "offline requested"})
	ok, said := reg.offline(s)
	if ok {
		state := "offline, confirmed"
		if u, unconfirmable := reg.(unconfirmable); unconfirmable {
			t.logf("%s: done for %s: %s (not confirmed: %s)", what, reg.key(), said, u.unconfirmed())
			state = "offline, not confirmable"
		} else {
			t.logf("%s: confirmed for %s: %s", what, reg.key(), said)
		}
		t.writeRecord(record, offlineRecord{Registry: string(r.Preset), Key: reg.key(), At: t.clock.Now().UTC(), State: state})
		return ""
	}
	if s.interrupted() {
		return what + ": interrupted"
	}
	n := ""
	if s.requests > 0 {
		n = fmt.Sprintf(" after %d request%s", s.requests, map[bool]string{true: "", false: "s"}[s.requests == 1])
	}
	return fmt.Sprintf("%s failed%s for %s: %s", what, n, reg.key(), said)
}

// original runs the app's own preStop handler. It returns the exit code to
// pass on (an exec handler's own code) and a failure description.
func (t *tool) original(ctx context.Context, in *interrupt, o meshinit.OriginalHandler, kind string) (int, string) {
	switch {
	case len(o.Exec) > 0:
		return t.originalExec(ctx, in, o.Exec, kind)
	case o.HTTPGet != "":
		return t.originalHTTPGet(ctx, o)
	case o.Sleep > 0:
		t.logf("original sleep handler: sleeping %s", o.Sleep)
		t.clock.Sleep(ctx, time.Duration(o.Sleep))
	}
	return 0, ""
}

func (t *tool) originalExec(ctx context.Context, in *interrupt, argv []string, kind string) (int, string) {
	t.logf("running the original %s exec handler %q", kind, argv)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = t.out.forChild()
	cmd.Stderr = t.errOut.forChild()
	// A grandchild left holding the output pipe must not hold the hook.
	cmd.WaitDelay = 2 * time.Second
	start := t.clock.Now()
	if err := cmd.Start(); err != nil {
		code := startFailureCode(err)
		t.logf("original exec handler could not start: %v", err)
		return code, fmt.Sprintf("original exec handler %q could not start (exit %d): %v", argv[0], code, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		// Pass the signal on and give the handler a moment to act on it.
		sig := in.signal()
		if sig == nil {
			sig = syscall.SIGTERM
		}
		_ = cmd.Process.Signal(sig)
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	code := processExitCode(cmd.ProcessState)
	t.logf("original exec handler exited %d in %s", code, fmtDuration(t.since(start)))
	if code != 0 {
		return code, fmt.Sprintf("original exec handler %q exited %d", argv[0], code)
	}
	return 0, ""
}

func (t *tool) originalHTTPGet(ctx context.Context, o meshinit.OriginalHandler) (int, string) {
	header := http.Header{}
	for _, h := range o.HTTPHeaders {
		k, v, _ := meshinit.ParseHeader(h) // checked when the arguments were parsed
		header.Add(k, v)
	}
	// The kubelet accepts anything unless the handler says otherwise.
	if _, ok := header["Accept"]; !ok {
		header.Set("Accept", "*/*")
	}
	target := o.HTTPGet
	if o.HTTPGetPodIP {
		// The kubelet calls a handler without a host on the pod's IP; an
		// app may listen there only.
		if ips := t.env.podIPs(); len(ips) > 0 {
			if u, err := url.Parse(target); err == nil {
				u.Host = net.JoinHostPort(ips[0], u.Port())
				target = u.String()
			}
		}
	}
	// Like kubelet's own httpGet handler: one try, no timeout of its own
	// (the pod's grace period bounds it), no certificate verification for
	// HTTPS (the kubelet does not verify either), redirects followed on
	// the same host only, and a redirect elsewhere counts as its 3xx.
	a := t.exchangeWith(kubeletLikeClient, ctx, 0, http.MethodGet, target, header, "")
	line := fmt.Sprintf("GET %s -> %s", meshinit.RedactURL(target), a)
	if a.isRedirect() {
		line += ", as the kubelet does for a redirect to another host"
	}
	t.logf("original httpGet handler %s", line)
	if a.err != nil || a.status >= 400 {
		return 0, "original httpGet handler " + line
	}
	return 0, ""
}

// startFailureCode follows the shell: 127 when the command is missing, 126
// when it cannot be run.
func startFailureCode(err error) int {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return 127
	}
	return 126
}

// processExitCode is the child's exit code, or 128 + the signal that killed it.
func processExitCode(ps *os.ProcessState) int {
	if ps == nil {
		return ExitFailed
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
