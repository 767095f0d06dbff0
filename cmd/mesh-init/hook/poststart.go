package hook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// offlineRecord is what the prestop hook leaves in the pod's state volume
// (an emptyDir, which survives container restarts but not the pod): the
// poststart hook of a container restarted in place (liveness failure, OOM
// kill) finds it and brings the instance back online.
type offlineRecord struct {
	Registry string    `json:"registry"`
	Key      string    `json:"key"`
	At       time.Time `json:"at"`
	State    string    `json:"state"`
}

// writeRecord replaces the record atomically; a failure is logged, not
// fatal: the offline step matters more than its note.
func (t *tool) writeRecord(path string, r offlineRecord) {
	if path == "" {
		return
	}
	b, _ := json.Marshal(r)
	tmp := path + ".tmp"
	err := t.env.writeFile(tmp, append(b, '\n'))
	if err == nil {
		err = t.env.rename(tmp, path)
	}
	if err != nil {
		t.logf("could not record the offline step in %s (a restart in place will not bring the instance back by itself): %v", path, err)
	}
}

// postStart runs "hook poststart", an app container's postStart in a pod
// with a registry offline step. Without a record it costs nothing: the
// container's first start returns at once. With one, the container was
// restarted in place after its prestop took the instance offline; for
// registries that keep that state across the app's re-registration (Nacos
// 2.x/3.x's metadata override, Eureka's status override, Consul's
// maintenance), the instance would stay offline for good. The hook waits
// for the app to register again, puts the instance back online, reads it
// back and removes the record.
//
// It never fails for its own part: a failed postStart hook makes the
// kubelet kill the container, which would turn a registry hiccup into a
// crash loop. Its failures go to the app's own log (PID 1's stderr), where
// kubectl logs shows them. Only the app's own postStart handler's exit
// code is passed on, as it was before injection.
func (t *tool) postStart(args []string) (int, error) {
	p, err := meshinit.ParsePostStart(args)
	if err != nil {
		t.appLogf("bad arguments: %v (the instance is not brought back online, and the container's own postStart handler is not run; see mesh-init hook poststart -h)", err)
		return ExitOK, nil
	}
	ctx, in, stop := t.signalContext()
	defer stop()
	t.undo(ctx, p)
	if code, ok := t.stopped(in, "bringing the instance back online"); ok {
		return code, nil
	}
	code, failure := t.original(ctx, in, p.Then, "postStart")
	if code, ok := t.stopped(in, "running the original postStart handler"); ok {
		return code, nil
	}
	if failure != "" {
		t.errorf("FAILED: %s", failure)
		if code == 0 {
			code = ExitFailed
		}
	}
	return code, nil
}

// undo brings the instance back when a record says prestop took it down.
func (t *tool) undo(ctx context.Context, p meshinit.PostStart) {
	if p.Record == "" {
		return
	}
	b, err := t.env.readFile(p.Record)
	if errors.Is(err, fs.ErrNotExist) {
		return // the container's first start: nothing to undo
	}
	var rec offlineRecord
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil {
		t.appLogf("could not read the offline record %s (%v); bringing the instance back online anyway", p.Record, err)
	}
	t.logf("found %s: %s took %s offline at %s (%s); this container restarted in place, so it is brought back online", p.Record, rec.Registry, rec.Key, rec.At.Format(time.RFC3339), rec.State)
	what := string(p.Registry.Preset) + " online"
	reg, err := t.env.resolve(p.Registry)
	if err != nil || reg == nil {
		t.appLogf("%s: %v; the instance may still be offline", what, err)
		return
	}
	timeout := time.Duration(p.Timeout)
	if timeout <= 0 {
		timeout = meshinit.DefaultUndoTimeout
	}
	s, stop := t.newStep(ctx, what, timeout)
	defer stop()
	if notes := reg.notes(); len(notes) > 0 {
		t.logf("%s: using %s", what, strings.Join(notes, "; "))
	}
	ok, said := reg.online(s)
	if !ok {
		if s.interrupted() {
			return
		}
		// The record stays: it is still true that the instance may be
		// offline, and the next restart tries again.
		t.appLogf("FAILED: %s for %s: %s (the instance may still be offline in the registry; the record %s is kept)", what, reg.key(), said, p.Record)
		return
	}
	t.logf("%s: confirmed for %s: %s", what, reg.key(), said)
	if err := t.env.remove(p.Record); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.appLogf("%s: could not remove %s: %v", what, p.Record, err)
	}
}

// appLogf writes one line to the hook's stderr and to the app's own log:
// a postStart hook's output is shown nowhere unless it fails, and this
// hook must not fail.
func (t *tool) appLogf(format string, a ...any) {
	line := fmt.Sprintf("mesh-init %s: %s\n", t.cmd, fmt.Sprintf(format, a...))
	fmt.Fprint(t.errOut, line)
	if t.env.appLog != nil {
		t.env.appLog(line)
	}
}

// writeAppLog appends a line to PID 1's stderr, which the container
// runtime captures as the container's log; best effort.
func writeAppLog(line string) {
	f, err := os.OpenFile("/proc/1/fd/2", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(line)
}
