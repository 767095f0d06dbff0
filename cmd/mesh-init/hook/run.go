package hook

import (
	"context"
	"net/http"
	"os/exec"
	"time"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// run runs "hook run", a Job container's command in classic sidecar mode: a
// Job's pod only completes when every container has exited, so once the
// command is done the proxy is told to quit. The command's exit code is what
// run returns; run's own lines go to stderr, leaving stdout to the command.
func (t *tool) run(args []string) (int, error) {
	r, err := meshinit.ParseRun(args)
	if err != nil {
		return 0, err
	}
	t.log = t.errOut

	if r.ReadyURL != "" {
		ctx, in, stop := t.signalContext()
		ready, last := t.pollReady(ctx, r.ReadyURL, time.Duration(r.ReadyTimeout))
		stop()
		if code, ok := t.stopped(in, "waiting for the proxy; the command was not started"); ok {
			t.quitAfter(r, code)
			return code, nil
		}
		if !ready {
			t.errorf("FAILED: proxy not ready after %s (last answer: %s); the command was not started", r.ReadyTimeout, last)
			t.quitAfter(r, ExitFailed)
			return ExitFailed, nil
		}
	}

	cmd := exec.Command(r.Command[0], r.Command[1:]...)
	cmd.Stdin = t.stdin
	cmd.Stdout = t.out.forChild()
	cmd.Stderr = t.errOut.forChild()
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		code := startFailureCode(err)
		t.errorf("FAILED: the command could not start (exit %d): %v", code, err)
		t.quitAfter(r, code)
		return code, nil
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case s := <-t.signals:
			t.logf("passing %s to the command", signalName(s))
			_ = cmd.Process.Signal(s)
		}
	}
	code := processExitCode(cmd.ProcessState)
	t.logf("the command exited %d", code)
	t.quitAfter(r, code)
	return code, nil
}

// quitAfter tells the proxy to quit once the command is done for good: on
// success, or on failure when the container will not be restarted.
func (t *tool) quitAfter(r meshinit.Run, code int) {
	if code != 0 && !r.QuitOnFailure {
		t.logf("the proxy keeps running: the kubelet restarts this container after a failure (restartPolicy OnFailure)")
		return
	}
	t.quitProxy(r.QuitURL)
}

// quitProxy asks Envoy to exit. A failure is logged, not returned: the
// command's exit code is what the Job needs.
func (t *tool) quitProxy(quitURL string) {
	if quitURL == "" {
		return
	}
	if ok, last := t.send(context.Background(), "proxy quit", 3*time.Second, time.Second, 3, http.MethodPost, quitURL); !ok {
		t.errorf("could not tell the proxy to quit (%s); the pod keeps running until the proxy stops", last)
	}
}
