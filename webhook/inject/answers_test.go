package inject_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// A refusal caused by an annotation that breaks a rule across fields names
// the annotation the pod wrote (or the Istio alias) and its value, and
// where the other field of the rule comes from.
func TestCrossFieldRefusalsNameTheAnnotation(t *testing.T) {
	e, err := compile("apiVersion: sidecar-injector.io/v1alpha1\nkind: InjectorConfig\npolicies:\n- {name: shop, namespaces: [shop], settings: {proxy: {resources: {limits: {cpu: \"1\"}}}}}\n")
	require.NoError(t, err)
	enabled := map[string]string{policy.NamespaceLabel: "enabled"}
	for _, tc := range []struct {
		name  string
		annot map[string]string
		want  string
	}{
		{"an Istio alias above the policy's limit", map[string]string{"sidecar.istio.io/proxyCPU": "3"},
			`sidecar.istio.io/proxyCPU: "3" is invalid: proxy.resources.requests.cpu 3 exceeds the limit 1 (proxy.resources.limits.cpu comes from policy shop, policy "shop")`},
		{"a limit under the policy's request", map[string]string{"sidecar-injector.io/proxy-memory-limit": "64Mi"},
			`sidecar-injector.io/proxy-memory-limit: "64Mi" is invalid: proxy.resources.requests.memory 128Mi exceeds the limit 64Mi (proxy.resources.requests.memory comes from built-in default, policy "shop")`},
		{"both sides from the pod", map[string]string{"sidecar-injector.io/proxy-cpu": "800m", "sidecar-injector.io/proxy-cpu-limit": "500m"},
			`sidecar-injector.io/proxy-cpu: "800m" and sidecar-injector.io/proxy-cpu-limit: "500m" are invalid together: proxy.resources.requests.cpu 800m exceeds the limit 500m`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: tc.annot},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
			_, d := e.Inject(pod, inject.Namespace{Name: "shop", Labels: enabled})
			assert.Equal(t, inject.Refused, d.Result)
			assert.Equal(t, inject.ReasonInvalidAnnotation, d.Reason)
			assert.Equal(t, tc.want, d.Message)
		})
	}
}
