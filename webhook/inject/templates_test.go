package inject_test

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/injector/templates"
	"github.com/sidecar-injector/injector/test/testkit/podcases"
	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/meshinit"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// policyWithTemplate is a policy file whose "custom" set replaces one
// template; the namespace "custom" uses it.
func policyWithTemplate(t *testing.T, name, text string) string {
	t.Helper()
	b, err := yaml.Marshal(map[string]any{
		"apiVersion": policy.APIVersion, "kind": policy.Kind,
		"templateSets": map[string]any{"custom": map[string]string{name: text}},
		"policies":     []any{map[string]any{"name": "custom", "namespaces": []string{"custom"}, "templateSet": "custom"}},
	})
	require.NoError(t, err)
	return string(b)
}

func compile(policyFile string) (*inject.Engine, error) {
	cfg, err := policy.Parse([]byte(policyFile))
	if err != nil {
		return nil, err
	}
	return inject.New(cfg, podcases.Options(false))
}

func builtinText(t *testing.T, name string) string {
	t.Helper()
	s, err := templates.Builtin(name)
	require.NoError(t, err)
	return s
}

func TestCustomTemplateIsUsed(t *testing.T) {
	text := strings.Replace(builtinText(t, templates.Sidecar), "env:\n", "env:\n- {name: MESH_FLAVOUR, value: custom}\n", 1)
	e, err := compile(policyWithTemplate(t, templates.Sidecar, text))
	require.NoError(t, err)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	enabled := map[string]string{policy.NamespaceLabel: "enabled"}

	out, d := e.Inject(pod, inject.Namespace{Name: "custom", Labels: enabled})
	require.Equal(t, inject.Injected, d.Result, d.Message)
	assert.Equal(t, "custom", d.Policy)
	assert.Contains(t, out.Spec.Containers[0].Env, corev1.EnvVar{Name: "MESH_FLAVOUR", Value: "custom"})

	out, d = e.Inject(pod, inject.Namespace{Name: "elsewhere", Labels: enabled})
	require.Equal(t, inject.Injected, d.Result)
	for _, env := range out.Spec.Containers[0].Env {
		assert.NotEqual(t, "MESH_FLAVOUR", env.Name, "other namespaces keep the built-in templates")
	}

	// A pod override re-renders the custom set, not the built-in one.
	pod.Annotations = map[string]string{"sidecar-injector.io/proxy-log-level": "debug"}
	out, d = e.Inject(pod, inject.Namespace{Name: "custom", Labels: enabled})
	require.Equal(t, inject.Injected, d.Result)
	assert.Contains(t, out.Spec.Containers[0].Env, corev1.EnvVar{Name: "MESH_FLAVOUR", Value: "custom"})
	assert.Contains(t, out.Spec.Containers[0].Args, "debug")
}

// Every template of a set is parsed and test-rendered when the policy
// loads; a broken one refuses the whole configuration with its place.
func TestBrokenTemplatesFailAtLoad(t *testing.T) {
	for _, tc := range []struct {
		name     string
		template string
		text     func(t *testing.T) string
		want     []string
	}{
		{"does not parse", templates.Sidecar, func(*testing.T) string { return "name: {{ .Names.Proxy " }, []string{`template set "custom"`, "sidecar.yaml"}},
		{"missing key", templates.Volumes, func(*testing.T) string { return "- name: {{ .Settings.Proxy.Nope }}\n" }, []string{"volumes.yaml", "Nope"}},
		{"unknown field in a container", templates.Sidecar, func(t *testing.T) string {
			return strings.Replace(builtinText(t, templates.Sidecar), "env:\n", "enviroment: []\nenv:\n", 1)
		}, []string{"sidecar.yaml renders invalid YAML", `unknown field "enviroment"`}},
		{"wrong container name", templates.InitContainer, func(t *testing.T) string {
			return strings.Replace(builtinText(t, templates.InitContainer), "name: {{ .Names.Init }}", "name: my-init", 1)
		}, []string{`must render a container named "mesh-init", not "my-init"`}},
		{"no tools volume", templates.Volumes, func(*testing.T) string { return "- {name: other, emptyDir: {}}\n" }, []string{`the volume "mesh-tools"`}},
		{"invalid Envoy bootstrap", templates.EnvoyBootstrap, func(t *testing.T) string {
			return strings.Replace(builtinText(t, templates.EnvoyBootstrap), "max_ejection_percent: {{ . }}", "max_ejection_percent: 200", 1)
		}, []string{"envoy bootstrap", "max_ejection_percent", "less than or equal to 100"}},
		{"unknown template name", "sidecars.yaml", func(*testing.T) string { return "x" }, []string{`unknown template(s) sidecars.yaml`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compile(policyWithTemplate(t, tc.template, tc.text(t)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), `policy "custom"`)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// A policy's bootstrap carries its circuit breakers: a change in policy is a
// change in the rendered Envoy configuration, validated at load.
func TestPolicyBootstrapDiffers(t *testing.T) {
	e, pod, enabled := tightBreakers(t)
	tight, _ := e.Inject(pod, inject.Namespace{Name: "tight", Labels: enabled})
	loose, _ := e.Inject(pod, inject.Namespace{Name: "loose", Labels: enabled})
	assert.Contains(t, bootstrapOf(t, tight), `"max_connections":7`)
	assert.NotContains(t, bootstrapOf(t, loose), `"max_connections":7`)
}

// tightBreakers is an engine whose policy for namespace "tight" sets
// circuit breakers, a pod, and the labels that enable injection.
func tightBreakers(t *testing.T) (*inject.Engine, *corev1.Pod, map[string]string) {
	t.Helper()
	e, err := compile(`apiVersion: sidecar-injector.io/v1alpha1
kind: InjectorConfig
policies:
- name: tight
  namespaces: [tight]
  settings: {envoy: {outbound: {circuitBreakers: {maxConnections: 7}}}}
`)
	require.NoError(t, err)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	enabled := map[string]string{policy.NamespaceLabel: "enabled"}
	return e, pod, enabled
}

// bootstrapOf is the Envoy bootstrap an injected pod's mesh-init writes.
func bootstrapOf(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	b, err := meshinit.DecodeFile(bootstrapArg(t, pod))
	require.NoError(t, err)
	return string(b)
}

// bootstrapArg is mesh-init's --envoy-bootstrap argument in an injected pod.
func bootstrapArg(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	for _, c := range pod.Spec.InitContainers {
		if c.Name == inject.DefaultNames.Init {
			cmd, err := meshinit.ParseCaptureCommand(c.Args[1:], nil)
			require.NoError(t, err)
			return cmd.EnvoyBootstrap
		}
	}
	t.Fatal("no mesh-init container")
	return ""
}

// An operator's bootstrap template may read any setting: a pod override of
// one it reads renders (and validates) the bootstrap anew instead of
// reusing the policy's.
func TestCustomBootstrapRerendersForOverrides(t *testing.T) {
	text := builtinText(t, templates.EnvoyBootstrap)
	require.Equal(t, 2, strings.Count(text, "connect_timeout: 1s\n"))
	text = strings.Replace(text, "connect_timeout: 1s\n", "connect_timeout: {{ .Settings.Lifecycle.Drain }}s\n", 1)
	e, err := compile(policyWithTemplate(t, templates.EnvoyBootstrap, text))
	require.NoError(t, err)
	enabled := map[string]string{policy.NamespaceLabel: "enabled"}
	podWith := func(drain string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{"sidecar-injector.io/drain-seconds": drain}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	}
	out, d := e.Inject(podWith("9"), inject.Namespace{Name: "custom", Labels: enabled})
	require.Equal(t, inject.Injected, d.Result, d.Message)
	assert.Contains(t, bootstrapOf(t, out), `"connect_timeout":"9s"`)

	// 0s is not a valid connect timeout: the pod is refused with Envoy's
	// reason, never given an unvalidated bootstrap.
	_, d = e.Inject(podWith("0"), inject.Namespace{Name: "custom", Labels: enabled})
	assert.NotEqual(t, inject.Injected, d.Result)
	assert.Contains(t, d.Message, "connect_timeout")
}

// The bootstrap travels in every injected pod compressed against a frozen
// dictionary (webhook/meshinit/encoding.go) that is itself a bootstrap. When
// the built-in template drifts far from the newest dictionary the argument
// grows back towards the ~2,000 characters of compression alone, and every
// pod, every patch and every watch event with it: then add the next
// dictionary (the current default bootstrap) and keep the old ones.
func TestBootstrapArgumentStaysSmall(t *testing.T) {
	e, pod, enabled := tightBreakers(t)
	for _, ns := range []string{"default", "tight"} {
		out, d := e.Inject(pod, inject.Namespace{Name: ns, Labels: enabled})
		require.Equal(t, inject.Injected, d.Result, d.Message)
		arg := bootstrapArg(t, out)
		var b bytes.Buffer
		zw, _ := flate.NewWriter(&b, flate.BestCompression)
		_, _ = zw.Write([]byte(bootstrapOf(t, out)))
		require.NoError(t, zw.Close())
		plain := base64.StdEncoding.EncodeToString(b.Bytes())
		assert.LessOrEqual(t, len(arg), len(plain)/5,
			"namespace %s: the bootstrap argument is %d characters, %d without a dictionary: the built-in bootstrap drifted from the newest dictionary; add the next one (webhook/meshinit/encoding.go)", ns, len(arg), len(plain))
	}
}
