package inject_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// Pods whose overrides differ only in how their bytes line up must not
// share a cached rendering.
func TestRenderingCacheKeysCannotCollide(t *testing.T) {
	e, err := inject.New(policy.BuiltinConfig(), inject.Options{})
	require.NoError(t, err)
	ns := inject.Namespace{Name: "shop", Labels: map[string]string{policy.NamespaceLabel: "enabled"}}
	pod := func(ann map[string]string) *corev1.Pod {
		base := map[string]string{"sidecar-injector.io/registry": "http", "sidecar-injector.io/offline-http-url": "http://127.0.0.1:9/x"}
		for k, v := range ann {
			base[k] = v
		}
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: base},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	}
	crafted := pod(map[string]string{"sidecar-injector.io/offline-http-body": "a\x00lifecycle.registry.http.expectStatus=200"})
	plain := pod(map[string]string{"sidecar-injector.io/offline-http-body": "a", "sidecar-injector.io/offline-http-expect-status": "200"})
	first, d := e.Inject(crafted, ns)
	require.Equal(t, inject.Injected, d.Result, d.Message)
	second, d := e.Inject(plain, ns)
	require.Equal(t, inject.Injected, d.Result, d.Message)
	cmd := strings.Join(second.Spec.Containers[1].Lifecycle.PreStop.Exec.Command, " ")
	assert.Contains(t, cmd, "--http-expect-status=200")
	assert.Contains(t, cmd, "--http-body=a ")
	assert.NotEqual(t, first.Spec.Containers[1].Lifecycle.PreStop, second.Spec.Containers[1].Lifecycle.PreStop)
}

// A pod whose annotations would pass Kubernetes' 256 KiB limit once the
// status is added is refused with a reason, not sent to a certain rejection.
func TestAnnotationSizeLimit(t *testing.T) {
	e, err := inject.New(policy.BuiltinConfig(), inject.Options{})
	require.NoError(t, err)
	ns := inject.Namespace{Name: "shop", Labels: map[string]string{policy.NamespaceLabel: "enabled"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "big", Annotations: map[string]string{"example.com/blob": strings.Repeat("x", 200*1024)}},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "job", Image: "job", Command: []string{"/bin/run", strings.Repeat("y", 70*1024)}}}}}
	_, d := e.Inject(pod, ns)
	assert.Equal(t, inject.Refused, d.Result)
	assert.Equal(t, inject.ReasonInvalidPod, d.Reason)
	assert.Contains(t, d.Message, "over Kubernetes' limit of 262144")
}
