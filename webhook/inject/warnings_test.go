package inject_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/test/testkit/podcases"
	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// A policy's proxy image that runs an Envoy older than the rules its
// bootstrap is validated with, or that does not say which Envoy it runs,
// loads with a warning; explain shows the warnings of the policy it
// explains.
func TestEnvoyVersionWarnings(t *testing.T) {
	cfg, err := policy.Parse([]byte(`apiVersion: sidecar-injector.io/v1alpha1
kind: InjectorConfig
policies:
- {name: old, namespaces: [old], settings: {proxy: {image: "envoyproxy/envoy:v1.35.3"}}}
- {name: digest, namespaces: [digest], settings: {proxy: {image: "registry.example.com/mesh/proxy@sha256:` + strings.Repeat("a", 64) + `"}}}
- {name: declared, namespaces: [declared], settings: {proxy: {image: "registry.example.com/mesh/proxy:7", envoyVersion: "1.37"}}}
- {name: declared-old, namespaces: [declared-old], settings: {proxy: {envoyVersion: "1.34"}}}
- {name: current, namespaces: [current], settings: {proxy: {image: "registry.example.com/mesh/envoy:v1.38.0"}}}
- {name: own, namespaces: [mesh-system]}
`))
	require.NoError(t, err)
	e, err := inject.New(cfg, podcases.Options(true))
	require.NoError(t, err)
	var got []string
	for _, w := range e.Warnings() {
		got = append(got, w.String())
	}
	assert.Equal(t, []string{
		"policies[0] (old): settings.proxy.image: envoyproxy/envoy:v1.35.3 runs Envoy 1.35, older than 1.36, whose rules its bootstrap is validated with: Envoy 1.35 may refuse at start what 1.36 accepts; use an image of Envoy 1.36 or newer",
		"policies[1] (digest): settings.proxy.image: registry.example.com/mesh/proxy@sha256:" + strings.Repeat("a", 64) + " does not say which Envoy it runs (its tag names no version): its bootstrap is validated with Envoy 1.36's rules, the oldest supported; set proxy.envoyVersion to the Envoy it runs",
		"policies[3] (declared-old): settings.proxy.image: docker.io/envoyproxy/envoy:v1.36.2 runs Envoy 1.34, older than 1.36, whose rules its bootstrap is validated with: Envoy 1.34 may refuse at start what 1.36 accepts; use an image of Envoy 1.36 or newer",
		"policies[5] (own): namespaces: mesh-system is the injector's own namespace, which is never injected: the policy has no effect there",
	}, got)

	x := e.Explain(nil, inject.Namespace{Name: "old"})
	require.Len(t, x.PolicyWarnings, 1)
	assert.Contains(t, x.Text(), "policy warning: policies[0] (old): settings.proxy.image: envoyproxy/envoy:v1.35.3 runs Envoy 1.35")
	assert.Empty(t, e.Explain(nil, inject.Namespace{Name: "current"}).PolicyWarnings)

	// A pod that chooses an older Envoy hears it at admission.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{
		"sidecar-injector.io/proxy-image": "docker.io/envoyproxy/envoy:v1.33.0"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	_, d := e.Inject(pod, inject.Namespace{Name: "current", Labels: map[string]string{policy.NamespaceLabel: "enabled"}})
	require.Equal(t, inject.Injected, d.Result, d.Message)
	assert.Contains(t, d.Warnings, "sidecar-injector.io/proxy-image: docker.io/envoyproxy/envoy:v1.33.0 runs Envoy 1.33, older than 1.36, whose rules its bootstrap is validated with: Envoy 1.33 may refuse at start what 1.36 accepts; use an image of Envoy 1.36 or newer")
}
