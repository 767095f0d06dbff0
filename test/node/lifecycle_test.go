package node

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/test/node/images"
	"github.com/sidecar-injector/injector/test/node/nodeharness"
	"github.com/sidecar-injector/injector/test/node/standin"
)

// stopRecord is what one pod's stop looked like, from every side: the
// test's delete call, the offline endpoint, the app's and the Envoy
// STAND-IN's own timestamped logs, and the kubelet's last status.
type stopRecord struct {
	pod                 *corev1.Pod // as admitted (injected)
	deleted, gone       time.Time
	app                 []appEvent
	proxy               []standin.LogLine
	offline             []appEvent // the offline endpoint's events about this pod
	appExit, proxyExit  *corev1.ContainerStateTerminated
	preStopHookFailures []string
}

// lifecycleFixture is a namespace labelled for injection and an offline
// endpoint outside the mesh: testapp's /offline, which records each
// offline call with its time (the hook's `http` preset calls it; a full
// registry stand-in is issue 15's test/registry).
type lifecycleFixture struct {
	n        *nodeharness.Node
	ns       string
	registry *corev1.Pod
}

func newLifecycleFixture(t *testing.T, ns string) *lifecycleFixture {
	n := nodeharness.Shared(t)
	injector(t, n)
	ctx := t.Context()
	if err := n.EnsureNamespace(ctx, ns+"-peers", nil); err != nil {
		t.Fatal(err)
	}
	if err := n.EnsureNamespace(ctx, ns, map[string]string{nodeharness.InjectionLabel: "enabled"}); err != nil {
		t.Fatal(err)
	}
	reg := appPod(ns+"-peers", "offline-endpoint")
	reg.Spec.Containers[0].Image = images.DistrolessRef
	r, _, err := n.RunPod(ctx, reg)
	if err != nil {
		t.Fatal(err)
	}
	return &lifecycleFixture{n: n, ns: ns, registry: r}
}

// offlineAnnotations point a pod's preStop at the offline endpoint (over
// IPv4, so through the pod's outbound capture and the proxy).
func (f *lifecycleFixture) offlineAnnotations(t *testing.T, pod string) map[string]string {
	return map[string]string{
		"sidecar-injector.io/registry":         "http",
		"sidecar-injector.io/offline-http-url": fmt.Sprintf("http://%s/offline?pod=%s", hostPort(mustIP(t, f.registry, false), 8080), pod),
	}
}

// runAndStop runs a pod until Ready, then deletes it (its own grace
// period) and collects the stopRecord once the kubelet has confirmed its
// end.
func (f *lifecycleFixture) runAndStop(t *testing.T, pod *corev1.Pod) (*corev1.Pod, *stopRecord) {
	t.Helper()
	ctx := t.Context()
	n := f.n
	running, _, err := n.RunPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := running.Annotations[nodeharness.StatusAnnotation]; !ok {
		t.Fatalf("not injected: %v", running.Annotations)
	}
	// Follow both logs while the pod stops: the streams end when the
	// containers exit, so nothing depends on the kubelet keeping the
	// files of a deleted pod.
	appLog := n.FollowLogs(ctx, pod.Namespace, pod.Name, "app")
	proxyLog := n.FollowLogs(ctx, pod.Namespace, pod.Name, "mesh-proxy")
	w, err := n.WatchPod(ctx, pod.Namespace, pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	rec := &stopRecord{pod: running, deleted: time.Now()}
	if err := n.Clientset.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, rec.gone, err = w.WaitGone(ctx); err != nil {
		t.Fatalf("%v\n%s", err, n.DiagnosePod(pod.Namespace, pod.Name))
	}
	rec.appExit, rec.proxyExit = w.Terminated("app"), w.Terminated("mesh-proxy")
	a, err := appLog.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxyLog.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec.app, rec.proxy = parseEvents(a), standin.ParseLog(p)
	var evs []appEvent
	u, err := nodeharness.PodURL(f.registry, false, 8080, "/events")
	if err != nil {
		t.Fatal(err)
	}
	get(t, ctx, u, &evs)
	for _, e := range evs {
		if e.Event == "offline" && strings.Contains(e.Detail, "pod="+pod.Name+" ") {
			rec.offline = append(rec.offline, e)
		}
	}
	kevs, err := n.Events(ctx, pod.Namespace, pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range kevs {
		if e.Reason == "FailedPreStopHook" || e.Reason == "FailedPostStartHook" {
			rec.preStopHookFailures = append(rec.preStopHookFailures, e.Reason+": "+e.Message)
		}
	}
	return running, rec
}

// at returns the time of the app's first event of that name, failing the
// test when there is none.
func (r *stopRecord) at(t *testing.T, event string) time.Time {
	t.Helper()
	e, ok := first(r.app, event)
	if !ok {
		t.Fatalf("the app logged no %q event: %+v", event, r.app)
	}
	return e.Time
}

func (r *stopRecord) proxyAt(t *testing.T, msg string) time.Time {
	t.Helper()
	l, ok := proxyLine(r.proxy, msg)
	if !ok {
		t.Fatalf("the Envoy STAND-IN logged no %q line: %+v", msg, r.proxy)
	}
	return l.Time
}

// before fails the test unless a happened no later than b.
func before(t *testing.T, what string, a, b time.Time) {
	t.Helper()
	if a.After(b) {
		t.Errorf("%s: %s is after %s", what, a.Format(time.RFC3339Nano), b.Format(time.RFC3339Nano))
	}
}

// atLeast fails the test unless b came at least d after a (a lower bound:
// a sleep is never shortened).
func atLeast(t *testing.T, what string, a, b time.Time, d time.Duration) {
	t.Helper()
	if b.Sub(a) < d {
		t.Errorf("%s: %s after, want at least %s", what, b.Sub(a), d)
	}
}

// exited fails the test unless the container ended with that exit code.
func exited(t *testing.T, name string, st *corev1.ContainerStateTerminated, code int32) {
	t.Helper()
	switch {
	case st == nil:
		t.Errorf("the kubelet reported no end of container %s", name)
	case st.ExitCode != code:
		t.Errorf("container %s exited %d (%s), want %d", name, st.ExitCode, st.Reason, code)
	}
}

// graceCovers fails the test unless the pod's grace period holds the
// offline step, the drain sleep and the app's shutdown, as the injector
// promises.
func graceCovers(t *testing.T, p *corev1.Pod, offline, drain, shutdown int64) {
	t.Helper()
	g := p.Spec.TerminationGracePeriodSeconds
	if g == nil || *g < offline+drain+shutdown {
		t.Errorf("terminationGracePeriodSeconds %v, want at least %d (offline %ds + drain %ds + shutdown %ds)", g, offline+drain+shutdown, offline, drain, shutdown)
	}
}

// TestLifecycleOrdering proves the lifecycle the injector promises with
// timestamps, on the real kubelet, for an app image with no shell and no
// curl (testapp-distroless: the hooks run mesh-init from the shared
// volume):
//   - native sidecar: the proxy is ready before the app starts; on delete
//     the offline call (through the proxy), then the drain sleep, then
//     SIGTERM to the app, then the proxy last; both exit cleanly within
//     the grace period the injector sized;
//   - classic sidecar: the postStart hook holds the app until the proxy is
//     ready; on delete the proxy keeps serving while the app goes offline
//     (through it) and sleeps, then drains its inbound listeners and stops
//     after the app;
//   - the grace period is enforced: an app slower than it is SIGKILLed
//     when it ends.
func TestLifecycleOrdering(t *testing.T) {
	f := newLifecycleFixture(t, "lifecycle")

	t.Run("native", func(t *testing.T) {
		t.Parallel()
		const name, drain = "native", 2
		pod := appPod(f.ns, name)
		pod.Spec.Containers[0].Image = images.DistrolessRef
		pod.Spec.TerminationGracePeriodSeconds = nil
		pod.Annotations = f.offlineAnnotations(t, name)
		pod.Annotations["sidecar-injector.io/native-sidecar"] = "true"
		pod.Annotations["sidecar-injector.io/drain-seconds"] = fmt.Sprint(drain)
		pod.Annotations["sidecar-injector.io/registry-timeout"] = "2s"
		pod.Annotations["sidecar-injector.io/shutdown-seconds"] = "5"
		running, r := f.runAndStop(t, pod)
		if c := container(running, "mesh-proxy"); c == nil || c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Fatalf("not a native sidecar: %+v", c)
		}
		graceCovers(t, running, 2, drain, 5)

		ready, start := r.proxyAt(t, "ready"), r.at(t, "start")
		before(t, "the proxy ready before the app starts", ready, start)
		if len(r.offline) != 1 {
			t.Fatalf("the offline endpoint saw %d offline calls for %s, want 1: %+v", len(r.offline), name, r.offline)
		}
		off, sig, exit := r.offline[0].Time, r.at(t, "signal"), r.at(t, "exit")
		proxyStop := r.proxyAt(t, "signal received")
		before(t, "delete, then the offline call", r.deleted, off)
		atLeast(t, "the offline call, then the drain sleep, then SIGTERM to the app", off, sig, drain*time.Second)
		before(t, "the app exits before the proxy is told to stop", exit, proxyStop)
		if conns := connections(r.proxy); conns["outbound "+hostPort(mustIP(t, f.registry, false), 8080)] != 1 {
			t.Errorf("the offline call did not go through the Envoy STAND-IN: %v", conns)
		}
		exited(t, "app", r.appExit, 0)
		exited(t, "mesh-proxy", r.proxyExit, 0)
		if len(r.preStopHookFailures) > 0 {
			t.Errorf("hook failures: %v", r.preStopHookFailures)
		}
		t.Logf("native: proxy ready %s before the app started; delete at 0, offline %s, SIGTERM to the app %s, app exit %s, SIGTERM to the proxy %s, pod gone %s (grace %ds)",
			start.Sub(ready).Round(time.Millisecond), stamp(r.deleted, off), stamp(r.deleted, sig), stamp(r.deleted, exit),
			stamp(r.deleted, proxyStop), stamp(r.deleted, r.gone), *running.Spec.TerminationGracePeriodSeconds)
	})

	t.Run("classic", func(t *testing.T) {
		t.Parallel()
		const name, drain, offlineTimeout, shutdown = "classic", 2, 1, 2
		pod := appPod(f.ns, name)
		pod.Spec.Containers[0].Image = images.DistrolessRef
		pod.Spec.TerminationGracePeriodSeconds = nil
		pod.Annotations = f.offlineAnnotations(t, name)
		pod.Annotations["sidecar-injector.io/native-sidecar"] = "false"
		pod.Annotations["sidecar-injector.io/drain-seconds"] = fmt.Sprint(drain)
		pod.Annotations["sidecar-injector.io/registry-timeout"] = fmt.Sprintf("%ds", offlineTimeout)
		pod.Annotations["sidecar-injector.io/shutdown-seconds"] = fmt.Sprint(shutdown)
		running, r := f.runAndStop(t, pod)
		if len(running.Spec.Containers) == 0 || running.Spec.Containers[0].Name != "mesh-proxy" {
			t.Fatalf("not a classic sidecar: %v", running.Spec.Containers)
		}
		graceCovers(t, running, offlineTimeout, drain, shutdown)

		ready, start := r.proxyAt(t, "ready"), r.at(t, "start")
		before(t, "postStart holds the app until the proxy is ready", ready, start)
		if len(r.offline) != 1 {
			t.Fatalf("the offline endpoint saw %d offline calls for %s, want 1: %+v", len(r.offline), name, r.offline)
		}
		off, sig, exit := r.offline[0].Time, r.at(t, "signal"), r.at(t, "exit")
		drainAt, proxyStop := r.proxyAt(t, "admin: drain_listeners"), r.proxyAt(t, "signal received")
		before(t, "delete, then the offline call", r.deleted, off)
		atLeast(t, "the offline call, then the drain sleep, then SIGTERM to the app", off, sig, drain*time.Second)
		// proxy-stop: serve for offline timeout + drain, then drain the
		// inbound listeners for the shutdown time, then SIGTERM.
		atLeast(t, "delete, then the proxy's inbound drain", r.deleted, drainAt, (offlineTimeout+drain)*time.Second)
		// proxy-stop counts its drain from before its admin call, so the
		// lower bound that holds on a busy machine is from the delete.
		before(t, "the inbound drain, then SIGTERM to the proxy", drainAt, proxyStop)
		atLeast(t, "delete, then SIGTERM to the proxy after offline timeout + drain + shutdown", r.deleted, proxyStop, (offlineTimeout+drain+shutdown)*time.Second)
		before(t, "the app exits before the proxy is told to stop", exit, proxyStop)
		if conns := connections(r.proxy); conns["outbound "+hostPort(mustIP(t, f.registry, false), 8080)] != 1 {
			t.Errorf("the offline call did not go through the Envoy STAND-IN: %v", conns)
		}
		exited(t, "app", r.appExit, 0)
		exited(t, "mesh-proxy", r.proxyExit, 0)
		if len(r.preStopHookFailures) > 0 {
			t.Errorf("hook failures: %v", r.preStopHookFailures)
		}
		t.Logf("classic: proxy ready %s before the app started; delete at 0, offline %s, SIGTERM to the app %s, app exit %s, proxy inbound drain %s, SIGTERM to the proxy %s, pod gone %s (grace %ds)",
			start.Sub(ready).Round(time.Millisecond), stamp(r.deleted, off), stamp(r.deleted, sig), stamp(r.deleted, exit),
			stamp(r.deleted, drainAt), stamp(r.deleted, proxyStop), stamp(r.deleted, r.gone), *running.Spec.TerminationGracePeriodSeconds)
	})

	t.Run("grace-period-enforced", func(t *testing.T) {
		t.Parallel()
		// The app keeps serving 10 minutes after SIGTERM; the pod's grace
		// period (4 s, enough for the 1 s drain and 1 s of shutdown the
		// annotations declare, so the injector keeps it) ends first.
		const name, grace, drain = "too-slow", 4, 1
		pod := appPod(f.ns, name)
		pod.Spec.TerminationGracePeriodSeconds = ptr(int64(grace))
		pod.Spec.Containers[0].Args = []string{"serve", "--listen=8080", "--term-delay=10m"}
		pod.Annotations = map[string]string{
			"sidecar-injector.io/drain-seconds":    fmt.Sprint(drain),
			"sidecar-injector.io/shutdown-seconds": "1",
		}
		running, r := f.runAndStop(t, pod)
		if g := *running.Spec.TerminationGracePeriodSeconds; g != grace {
			t.Fatalf("the injector changed the grace period to %d, want the pod's %d kept", g, grace)
		}
		sig := r.at(t, "signal")
		atLeast(t, "delete, then the drain sleep, then SIGTERM", r.deleted, sig, drain*time.Second)
		if e, ok := first(r.app, "exit"); ok {
			t.Errorf("the app exited by itself at %s; it should have been killed at the grace period", stamp(r.deleted, e.Time))
		}
		exited(t, "app", r.appExit, 137) // SIGKILL
		if r.appExit != nil {
			// finishedAt has second resolution.
			atLeast(t, "delete, then SIGKILL at the grace period", r.deleted.Truncate(time.Second), r.appExit.FinishedAt.Time, grace*time.Second-time.Second)
		}
		t.Logf("grace period %ds: delete at 0, SIGTERM to the app %s, the app killed (exit %d) at %s, pod gone %s; it asked for 10m",
			grace, stamp(r.deleted, sig), r.appExit.ExitCode, stamp(r.deleted.Truncate(time.Second), r.appExit.FinishedAt.Time), stamp(r.deleted, r.gone))
	})
}
