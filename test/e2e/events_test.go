package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/webhook"
)

// ownerEvents lists the Events on an object, as kubectl describe finds
// them (by the involved object's UID).
func ownerEvents(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string, uid types.UID) []corev1.Event {
	t.Helper()
	list, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.uid", string(uid)).String()})
	require.NoError(t, err)
	return list.Items
}

// A pod of an enabled namespace that is skipped or refused leaves an Event
// on its ReplicaSet, written through the real API server and found the
// way kubectl describe finds it; dry-run admissions leave none; a burst
// of pods of one owner stays one Event whose count stops at client-go's
// spam filter's burst (25).
func TestEventsThroughTheAPIServer(t *testing.T) {
	c := controlPlane(t)
	in := sharedInjector(t)
	ctx := t.Context()
	cs := c.Clientset
	const suite, ns = "events", "e2e-events"
	require.NoError(t, harness.EnsureNamespace(ctx, cs, ns, map[string]string{suiteLabel: suite, injectionKey: "enabled"}))
	installWebhook(t, c, in, suite, ns)

	// Owners as the controllers would have them (nothing reconciles them
	// here: the pods are created by the test, as a controller would).
	rs := func(name string) *appsv1.ReplicaSet {
		r, err := cs.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](0),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: harness.AppPod("").Spec}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		return r
	}
	pod := func(owner *appsv1.ReplicaSet, annotations ...string) *corev1.Pod {
		p := annotate(harness.AppPod(""), annotations...)
		p.GenerateName = owner.Name + "-"
		p.Labels = map[string]string{"app": owner.Name}
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: owner.Name, UID: owner.UID,
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
		return p
	}

	optedOut := rs("opted-out")
	_, err := cs.CoreV1().Pods(ns).Create(ctx, pod(optedOut, "sidecar-injector.io/inject", "false"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	require.NoError(t, err)
	_, err = cs.CoreV1().Pods(ns).Create(ctx, pod(optedOut, "sidecar-injector.io/inject", "false"), metav1.CreateOptions{})
	require.NoError(t, err)
	var skipped corev1.Event
	harness.WaitFor(t, "an InjectionSkipped event on the ReplicaSet", func() error {
		evs := ownerEvents(ctx, t, cs, ns, optedOut.UID)
		if len(evs) == 0 {
			return fmt.Errorf("no event yet")
		}
		skipped = evs[0]
		return nil
	})
	assert.Equal(t, corev1.EventTypeNormal, skipped.Type)
	assert.Equal(t, webhook.EventInjectionSkipped, skipped.Reason)
	assert.Equal(t, "ReplicaSet", skipped.InvolvedObject.Kind)
	assert.Equal(t, webhook.EventComponent, skipped.Source.Component)
	assert.Contains(t, skipped.Message, "pod opted-out-*: skipped (pod_opted_out): the pod opts out")
	// The dry run recorded nothing: one admission, one count.
	time.Sleep(2 * time.Second)
	evs := ownerEvents(ctx, t, cs, ns, optedOut.UID)
	require.Len(t, evs, 1)
	assert.Equal(t, int32(1), evs[0].Count, "the dry-run admission must not be recorded")

	refusedRS := rs("refused")
	_, err = cs.CoreV1().Pods(ns).Create(ctx, pod(refusedRS, "sidecar-injector.io/drain-seconds", "soon"), metav1.CreateOptions{})
	require.Error(t, err)
	harness.WaitFor(t, "an InjectionRefused event on the ReplicaSet", func() error {
		evs := ownerEvents(ctx, t, cs, ns, refusedRS.UID)
		if len(evs) == 0 {
			return fmt.Errorf("no event yet")
		}
		if evs[0].Type != corev1.EventTypeWarning || evs[0].Reason != webhook.EventInjectionRefused ||
			!strings.Contains(evs[0].Message, `refused (invalid_annotation): sidecar-injector.io/drain-seconds: "soon" is invalid`) {
			return fmt.Errorf("unexpected event %s %s %q", evs[0].Type, evs[0].Reason, evs[0].Message)
		}
		return nil
	})

	// A burst: identical events are one Event with a count, and the spam
	// filter stops counting at its burst.
	burst := rs("burst")
	for i := 0; i < 40; i++ {
		_, err := cs.CoreV1().Pods(ns).Create(ctx, pod(burst, "sidecar-injector.io/inject", "false"), metav1.CreateOptions{})
		require.NoError(t, err)
	}
	harness.WaitFor(t, "the burst's event counted up to the spam filter's burst", func() error {
		evs := ownerEvents(ctx, t, cs, ns, burst.UID)
		if len(evs) != 1 || evs[0].Count != 25 {
			var counts []int32
			for _, e := range evs {
				counts = append(counts, e.Count)
			}
			return fmt.Errorf("events with counts %v", counts)
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	evs = ownerEvents(ctx, t, cs, ns, burst.UID)
	require.Len(t, evs, 1)
	assert.Equal(t, int32(25), evs[0].Count, "40 skipped pods, at most 25 recorded")
}
