package hook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
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
	// UndoFailed is why the last poststart could not bring the instance
	// back (kubectl exec ... cat the record to see it).
	UndoFailed string `json:"undoFailed,omitempty"`
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
	t.logf("found %s: %s took %s offline at %s (%s); this container restarted in place", p.Record, rec.Registry, rec.Key, rec.At.Format(time.RFC3339), rec.State)
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
		// offline, and the next restart tries again. It says why, too.
		failure := fmt.Sprintf("FAILED: %s for %s: %s", what, reg.key(), said)
		t.appLogf("%s (the instance may still be offline in the registry; the record %s is kept and says so)", failure, p.Record)
		rec.UndoFailed = fmt.Sprintf("%s at %s", failure, t.clock.Now().UTC().Format(time.RFC3339))
		t.writeRecord(p.Record, rec)
		return
	}
	if why, ok := strings.CutPrefix(said, errNothingToUndo); ok {
		t.logf("%s: nothing to undo for %s: %s", what, reg.key(), why)
	} else {
		t.logf("%s: confirmed for %s: %s", what, reg.key(), said)
	}
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

// writeAppLog appends a line to the stderr of this container's main
// process, which the container runtime captures as the container's log
// (kubectl logs); best effort. A postStart hook's own output is shown
// nowhere unless the hook fails, and this one must not fail.
func writeAppLog(line string) {
	f, err := os.OpenFile(appLogTarget(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(line)
}

// appLogTarget is the stderr of this container's first process. That is
// PID 1 when the container has its own process namespace. When the pod
// shares one (shareProcessNamespace), PID 1 is the pod's pause process,
// whose output no one reads: the container's first process is then the
// lowest PID in this container's own cgroup, which the hook shares.
func appLogTarget() string {
	const pid1 = "/proc/1/fd/2"
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return pid1
	}
	if c, err := os.ReadFile("/proc/1/cgroup"); err == nil && string(c) == string(self) {
		return pid1
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return pid1
	}
	best := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || (best != 0 && pid >= best) {
			continue
		}
		if c, err := os.ReadFile("/proc/" + e.Name() + "/cgroup"); err == nil && string(c) == string(self) {
			best = pid
		}
	}
	if best == 0 {
		return pid1
	}
	return "/proc/" + strconv.Itoa(best) + "/fd/2"
}
