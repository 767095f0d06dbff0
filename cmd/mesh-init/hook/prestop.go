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
// away by other means (endpoint removal, their own registry refresh).
func (t *tool) preStop(args []string) (int, error) {
	p, err := meshinit.ParsePreStop(args)
	if err != nil {
		return 0, err
	}
	ctx, in, stop := t.signalContext()
	defer stop()
	start := time.Now()

	offlineFailure := t.offline(ctx, p.Registry)
	if code, ok := t.stopped(in, "taking the instance offline"); ok {
		return code, nil
	}

	if p.Sleep > 0 {
		t.logf("sleeping %s before the app is stopped", p.Sleep)
		slept := time.Now()
		if !sleep(ctx, time.Duration(p.Sleep)) {
			code, _ := t.stopped(in, fmt.Sprintf("sleeping (%s of %s slept)", fmtDuration(time.Since(slept)), p.Sleep))
			return code, nil
		}
	}

	thenCode, thenFailure := t.original(ctx, in, p.Then)
	if code, ok := t.stopped(in, "running the original preStop handler"); ok {
		return code, nil
	}

	var failed []string
	for _, f := range []string{offlineFailure, thenFailure} {
		if f != "" {
			failed = append(failed, f)
		}
	}
	took := fmtDuration(time.Since(start))
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

// offline runs the preset's offline call; it returns a description of the
// failure, or "" on success.
func (t *tool) offline(ctx context.Context, r meshinit.Registry) string {
	req, err := t.env.offlineRequest(r)
	if err != nil {
		t.logf("%s offline: %v", r.Preset, err)
		return fmt.Sprintf("%s offline: %v", r.Preset, err)
	}
	if req == nil {
		t.logf("no registry offline step (registry none)")
		return ""
	}
	req.redirectHint = "an offline call must be answered by the registry itself"
	out := t.send(ctx, offlinePolicy(time.Duration(r.Timeout)), *req)
	if out.ok {
		return ""
	}
	plural := "s"
	if out.requests == 1 {
		plural = ""
	}
	return fmt.Sprintf("%s failed after %d request%s, last %s", req.what, out.requests, plural, out.last)
}

// original runs the app's own preStop handler. It returns the exit code to
// pass on (an exec handler's own code) and a failure description.
func (t *tool) original(ctx context.Context, in *interrupt, o meshinit.OriginalHandler) (int, string) {
	switch {
	case len(o.Exec) > 0:
		return t.originalExec(ctx, in, o.Exec)
	case o.HTTPGet != "":
		return t.originalHTTPGet(ctx, o)
	case o.Sleep > 0:
		t.logf("original sleep handler: sleeping %s", o.Sleep)
		sleep(ctx, time.Duration(o.Sleep))
	}
	return 0, ""
}

func (t *tool) originalExec(ctx context.Context, in *interrupt, argv []string) (int, string) {
	t.logf("running the original exec handler %q", argv)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = t.out.forChild()
	cmd.Stderr = t.errOut.forChild()
	// A grandchild left holding the output pipe must not hold the hook.
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
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
	t.logf("original exec handler exited %d in %s", code, fmtDuration(time.Since(start)))
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
	a := exchangeWith(kubeletLikeClient, ctx, 0, http.MethodGet, target, header, "")
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
