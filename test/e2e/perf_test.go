package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sidecar-injector/injector/test/e2e/harness"
)

// Pod creation throughput through the real kube-apiserver and etcd, with
// the chart's webhook configuration registered (pointed at the in-process
// injector) and without it, in one run, in the same labelled namespace.
// The numbers for docs/e2e.md come from the benchmark, without -race:
//
//	go test -run '^$' -bench PodCreation -benchtime 500x ./test/e2e/
//
// The test runs a short version in every e2e run so the harness stays
// working; under -race its numbers are not representative.

const perfSuite = "perf"

type perfEnv struct {
	cs  kubernetes.Interface
	c   *harness.ControlPlane
	in  *injector
	ns  string
	mwc string
}

func newPerfEnv(tb testing.TB) *perfEnv {
	c := controlPlane(tb)
	in := sharedInjector(tb)
	ns := "perf"
	require.NoError(tb, harness.EnsureNamespace(tb.Context(), c.Clientset, ns, map[string]string{injectionKey: "enabled", suiteLabel: perfSuite}))
	return &perfEnv{cs: c.Clientset, c: c, in: in, ns: ns, mwc: "e2e-" + perfSuite}
}

// setWebhook registers or removes the configuration and waits until the
// API server acts on it.
func (p *perfEnv) setWebhook(tb testing.TB, on bool) {
	tb.Helper()
	if on {
		installWebhook(tb, p.c, p.in, perfSuite, p.ns)
		return
	}
	err := p.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(tb.Context(), p.mwc, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		tb.Fatal(err)
	}
	waitFor(tb, 30*time.Second, "the API server stops calling the webhook", func() error {
		pod, err := p.cs.CoreV1().Pods(p.ns).Create(context.Background(), appPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if _, ok := pod.Annotations["sidecar-injector.io/status"]; ok {
			return fmt.Errorf("still injected")
		}
		return nil
	})
}

// benchPod is ../shared/bench/pod.json, the ReplicaSet-created pod of the
// admission benchmark (probes, env, resources, affinity, volumes): a
// realistic workload, where appPod is a minimal one. Fields the API server
// sets itself (managed fields, owners that do not exist here, status) are
// dropped.
func benchPod(tb testing.TB) *corev1.Pod {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "bench-pod.json"))
	require.NoError(tb, err)
	var pod corev1.Pod
	require.NoError(tb, json.Unmarshal(b, &pod))
	pod.ManagedFields, pod.OwnerReferences, pod.Namespace = nil, nil, ""
	pod.Status = corev1.PodStatus{}
	pod.GenerateName = "perf-"
	pod.Spec.ServiceAccountName, pod.Spec.DeprecatedServiceAccount = "", "" // "default" exists here
	// The bench pod asks to be the default container already; drop the
	// hint so both workloads are injected the same way.
	return &pod
}

// create makes n pods with conc workers and returns the elapsed time.
// optOut pods carry the opt-out annotation: the webhook is called and
// answers "skipped", which separates its round trip from the cost of
// storing a bigger, injected pod.
func (p *perfEnv) create(tb testing.TB, n, conc int, wantInjected, optOut bool) time.Duration {
	pod := appPod("")
	pod.GenerateName = "perf-"
	return p.createPods(tb, pod, n, conc, wantInjected, optOut)
}

func (p *perfEnv) createPods(tb testing.TB, template *corev1.Pod, n, conc int, wantInjected, optOut bool) time.Duration {
	tb.Helper()
	var next, failures atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				pod := template.DeepCopy()
				if optOut {
					annotate(pod, "sidecar-injector.io/inject", "false")
				}
				got, err := p.cs.CoreV1().Pods(p.ns).Create(context.Background(), pod, metav1.CreateOptions{})
				if err == nil {
					if _, ok := got.Annotations["sidecar-injector.io/status"]; ok != wantInjected {
						err = fmt.Errorf("pod %s: injected=%v, want %v", got.Name, ok, wantInjected)
					}
				}
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failures.Load(); f > 0 {
		tb.Fatalf("%d of %d pod creations failed; first: %v", f, n, firstErr.Load())
	}
	return elapsed
}

// perfModes: no webhook; the webhook registered and injecting; the
// webhook registered but the pods opted out by annotation (called,
// answers "skipped").
var perfModes = []struct {
	name                      string
	webhook, injected, optOut bool
}{
	{"no-webhook", false, false, false},
	{"webhook-injects", true, true, false},
	{"webhook-skips", true, false, true},
}

func BenchmarkPodCreation(b *testing.B) {
	p := newPerfEnv(b)
	minimal := appPod("")
	minimal.GenerateName = "perf-"
	for _, workload := range []struct {
		name string
		pod  *corev1.Pod
	}{{"minimal-pod", minimal}, {"bench-pod", benchPod(b)}} {
		for _, mode := range perfModes {
			for _, conc := range []int{1, 8} {
				b.Run(fmt.Sprintf("%s/%s/concurrency=%d", workload.name, mode.name, conc), func(b *testing.B) {
					p.setWebhook(b, mode.webhook)
					b.ResetTimer()
					elapsed := p.createPods(b, workload.pod, b.N, conc, mode.injected, mode.optOut)
					b.StopTimer()
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pods/s")
				})
			}
		}
	}
}

func TestPodCreationThroughput(t *testing.T) {
	p := newPerfEnv(t)
	const n = 100
	race := ""
	if raceEnabled {
		race = " (under -race: not representative; see BenchmarkPodCreation)"
	}
	for _, mode := range perfModes {
		p.setWebhook(t, mode.webhook)
		for _, conc := range []int{1, 8} {
			elapsed := p.create(t, n, conc, mode.injected, mode.optOut)
			t.Logf("%-16s concurrency=%d: %d pods in %s, %.0f pods/s%s", mode.name, conc, n, elapsed.Round(time.Millisecond), n/elapsed.Seconds(), race)
		}
	}
	// What the API server stores per pod, with and without injection.
	opts := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	injected, err := p.cs.CoreV1().Pods(p.ns).Create(t.Context(), appPod("size"), opts)
	require.NoError(t, err)
	plain, err := p.cs.CoreV1().Pods(p.ns).Create(t.Context(), annotate(appPod("size"), "sidecar-injector.io/inject", "false"), opts)
	require.NoError(t, err)
	bi, _ := json.Marshal(injected)
	bp, _ := json.Marshal(plain)
	t.Logf("stored pod: %d bytes of JSON injected, %d bytes not injected", len(bi), len(bp))
}
