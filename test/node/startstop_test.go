package node

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/test/node/nodeharness"
)

// TestStartAndStopTimes measures what injection adds to a pod's start
// (create → Ready) and stop (delete → gone), one pod at a time on the
// node: without injection, injected with the defaults (native sidecar,
// 5s drain), and injected with no drain (what the mechanism itself
// costs). Times come from a watch of each pod (the API server's events as
// they arrive), not from polling. `make test` runs 2 pods of the first two
// series; SIDECAR_INJECTOR_NODE_MEASURE=full runs 20 of each
// (docs/lossless.md).
func TestStartAndStopTimes(t *testing.T) {
	n := nodeharness.Shared(t)
	injector(t, n)
	ctx := t.Context()
	per := 2
	if fullMeasure() {
		per = 20
	}
	const plainNS, meshNS = "timing-plain", "timing-injected"
	if err := n.EnsureNamespace(ctx, plainNS, nil); err != nil {
		t.Fatal(err)
	}
	if err := n.EnsureNamespace(ctx, meshNS, map[string]string{nodeharness.InjectionLabel: "enabled"}); err != nil {
		t.Fatal(err)
	}
	series := []struct {
		name, ns string
		ann      map[string]string
		fullOnly bool
	}{
		{"no injection", plainNS, nil, false},
		{"injected, defaults (native sidecar, 5s drain)", meshNS, nil, false},
		{"injected, drain 0s", meshNS, map[string]string{"sidecar-injector.io/drain-seconds": "0"}, true},
	}
	load := loadavg()
	var b strings.Builder
	b.WriteString("| pods | create → Ready median | min–max | delete → gone median | min–max |\n|---|---:|---:|---:|---:|\n")
	for si, s := range series {
		if s.fullOnly && !fullMeasure() {
			continue
		}
		var starts, stops []time.Duration
		for i := range per {
			name := fmt.Sprintf("t%d-%d", si, i)
			pod := appPod(s.ns, name)
			pod.Spec.TerminationGracePeriodSeconds = nil
			pod.Annotations = s.ann
			start, stop := startStop(t, n, pod)
			starts, stops = append(starts, start), append(stops, stop)
		}
		fmt.Fprintf(&b, "| %s (%d) | %s | %s | %s | %s |\n", s.name, per,
			median(starts), spread(starts), median(stops), spread(stops))
	}
	t.Logf("one pod at a time (testapp, readiness probe every 1s); load average before %s, after %s\n%s", load, loadavg(), b.String())
}

// startStop creates a pod, waits until it is Ready, deletes it (its own
// grace period) and waits until it is gone, timing both from a watch.
func startStop(t *testing.T, n *nodeharness.Node, pod *corev1.Pod) (start, stop time.Duration) {
	t.Helper()
	ctx := t.Context()
	w, err := n.WatchPod(ctx, pod.Namespace, pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	if _, err := n.CreatePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	ready, err := w.WaitFor(ctx, "Ready", nodeharness.Ready)
	if err != nil {
		t.Fatalf("%v\n%s", err, n.DiagnosePod(pod.Namespace, pod.Name))
	}
	deleted := time.Now()
	if err := n.Clientset.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, gone, err := w.WaitGone(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, n.DiagnosePod(pod.Namespace, pod.Name))
	}
	return ready.Sub(created), gone.Sub(deleted)
}

func median(d []time.Duration) string {
	s := slices.Sorted(slices.Values(d))
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return m.Round(10 * time.Millisecond).String()
}

func spread(d []time.Duration) string {
	s := slices.Sorted(slices.Values(d))
	return s[0].Round(10*time.Millisecond).String() + "–" + s[len(s)-1].Round(10*time.Millisecond).String()
}
