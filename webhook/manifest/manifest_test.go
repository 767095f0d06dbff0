package manifest_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/injector/test/testkit"
	"github.com/sidecar-injector/injector/test/testkit/podcases"
	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/manifest"
)

// shopEnabled is what --namespace-labels gives the fixtures that do not
// carry their Namespace.
var shopEnabled = map[string]map[string]string{"shop": {"sidecar-injector.io/injection": "enabled"}}

func TestMain(m *testing.M) { os.Exit(testkit.Main(m, "testdata/*.golden.yaml")) }

func engine(t *testing.T) *inject.Engine {
	t.Helper()
	e, err := inject.Compile(nil, podcases.Options(true))
	require.NoError(t, err)
	return e
}

func fixtures(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, pattern := range []string{"*.yaml", "*.json"} {
		m, err := filepath.Glob(filepath.Join("testdata", pattern))
		require.NoError(t, err)
		for _, f := range m {
			if !strings.Contains(f, ".golden.") {
				out = append(out, f)
			}
		}
	}
	require.NotEmpty(t, out)
	return out
}

func run(t *testing.T, mode manifest.Mode, name string, data []byte, f manifest.Format) ([]byte, []manifest.Line) {
	t.Helper()
	out, lines, err := manifest.Process([]manifest.Source{{Name: name, Data: data}}, manifest.Options{
		Mode: mode, Engine: engine(t), Format: f, NamespaceLabels: shopEnabled,
	})
	require.NoError(t, err)
	return out, lines
}

func TestInjectGolden(t *testing.T) {
	for _, path := range fixtures(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			in, err := os.ReadFile(path)
			require.NoError(t, err)
			out, lines := run(t, manifest.Inject, filepath.Base(path), in, manifest.YAML)
			var report []string
			for _, l := range lines {
				report = append(report, l.String())
			}
			got := string(out) + "# report:\n# " + strings.Join(report, "\n# ") + "\n"
			golden := strings.TrimSuffix(path, filepath.Ext(path)) + ".golden.yaml"
			testkit.Golden(t, golden, []byte(got))

			// Idempotent: injecting the output again changes nothing.
			again, _ := run(t, manifest.Inject, "again", out, manifest.YAML)
			assert.Equal(t, string(out), string(again), "inject(inject(x)) == inject(x)")

			// uninject(inject(x)) == x, compared as objects; for input that
			// was injected already, x is what uninject makes of it.
			back, _ := run(t, manifest.Uninject, "back", out, manifest.YAML)
			orig, _ := run(t, manifest.Uninject, "orig", in, manifest.YAML)
			assert.Equal(t, objects(t, orig), objects(t, back), "uninject(inject(x)) == uninject(x)")
			if !strings.Contains(path, "already-injected") {
				assert.Equal(t, objects(t, in), objects(t, back), "uninject(inject(x)) == x")
			}

			// JSON output carries the same objects.
			js, _ := run(t, manifest.Inject, "json", in, manifest.JSON)
			assert.Equal(t, objects(t, out), objects(t, js))
		})
	}
}

// objects decodes a stream into generic objects, flattening Lists, so two
// renderings compare by content rather than by formatting.
func objects(t *testing.T, b []byte) []any {
	t.Helper()
	var out []any
	src := strings.TrimSpace(string(b))
	if strings.HasPrefix(src, "{") {
		var v map[string]any
		require.NoError(t, json.Unmarshal(b, &v))
		return flattenList(v)
	}
	for _, doc := range strings.Split(src, "\n---\n") {
		var v map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(doc), &v))
		if v != nil {
			out = append(out, flattenList(v)...)
		}
	}
	return out
}

func flattenList(v map[string]any) []any {
	if items, ok := v["items"].([]any); ok && v["kind"] == "List" {
		return items
	}
	return []any{v}
}

// Injecting a pod template gives exactly what the webhook gives a pod
// created from it: every pod fixture of the core, wrapped in a workload.
func TestTemplateEqualsWebhook(t *testing.T) {
	cases, err := podcases.LoadCases(filepath.Join("..", "inject", "testdata", "pods"))
	require.NoError(t, err)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			e := c.Engine(t)
			want, d := e.Inject(c.Pod, c.Namespace)

			apiVersion, kind, path := "apps/v1", "Deployment", "spec.template"
			if c.Pod.Spec.RestartPolicy == corev1.RestartPolicyNever || c.Pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure {
				apiVersion, kind = "batch/v1", "Job"
			}
			tmpl := corev1.PodTemplateSpec{Spec: c.Pod.Spec}
			tmpl.Labels, tmpl.Annotations = c.Pod.Labels, c.Pod.Annotations
			wl := map[string]any{
				"apiVersion": apiVersion, "kind": kind,
				"metadata": map[string]any{"name": c.Name, "namespace": c.Namespace.Name},
				"spec":     map[string]any{"template": tmpl},
			}
			// Job pods carry their owner; the webhook keys run-to-completion
			// handling off restartPolicy, which the template has too.
			data, err := json.Marshal(wl)
			require.NoError(t, err)
			out, lines, err := manifest.Process([]manifest.Source{{Name: c.Name, Data: data}}, manifest.Options{
				Mode: manifest.Inject, Engine: e, Format: manifest.JSON,
				NamespaceLabels: map[string]map[string]string{c.Namespace.Name: c.Namespace.Labels},
			})
			if d.Result == inject.Refused {
				require.Error(t, err, "a refused pod fails the manifest run")
				assert.Contains(t, err.Error(), d.Message)
				assert.Contains(t, err.Error(), path)
				return
			}
			require.NoError(t, err)
			require.Len(t, lines, 1)
			assert.Equal(t, string(d.Result), lines[0].Result)
			assert.Equal(t, string(d.Reason), lines[0].Reason)

			var got struct {
				Spec struct {
					Template corev1.PodTemplateSpec `json:"template"`
				} `json:"spec"`
			}
			require.NoError(t, json.Unmarshal(out, &got))
			assert.Equal(t, want.Annotations, got.Spec.Template.Annotations)
			assert.Equal(t, want.Labels, got.Spec.Template.Labels)
			// Compared as JSON: quantities decoded from text keep their
			// original spelling in a cache that DeepEqual would see.
			wantSpec, _ := json.Marshal(want.Spec)
			gotSpec, _ := json.Marshal(got.Spec.Template.Spec)
			assert.JSONEq(t, string(wantSpec), string(gotSpec))
		})
	}
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"not yaml", "kind: [unclosed", "document 1"},
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", "document 1, kind: every document needs a kind"},
		{"workload without template", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: shop}\nspec: {}\n", "document 1, spec.template: a Deployment needs spec.template"},
		{"misspelt template field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: shop}\nspec:\n  template:\n    spec:\n      containerz: []\n", `unknown field "containerz"`},
		{"invalid annotation names the document", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: shop\n  annotations: {sidecar-injector.io/proxy-cpu: lots}\nspec:\n  containers: [{name: a, image: a}]\n",
			`document 2, the object: sidecar-injector.io/proxy-cpu: "lots" is invalid`},
		{"bad JSON stream", `{"kind":"Pod"} {"kind":`, "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := manifest.Process([]manifest.Source{{Name: "in.yaml", Data: []byte(tc.in)}}, manifest.Options{
				Mode: manifest.Inject, Engine: engine(t), NamespaceLabels: shopEnabled,
			})
			require.Error(t, err)
			assert.Nil(t, out, "nothing is written when anything fails")
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "in.yaml")
		})
	}
}

func TestUninjectOfUninjectedIsUnchanged(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "service-only.yaml"))
	require.NoError(t, err)
	out, lines := run(t, manifest.Uninject, "svc", in, manifest.YAML)
	assert.Equal(t, strings.TrimRight(string(in), "\n")+"\n", string(out), "byte for byte")
	require.Len(t, lines, 1)
	assert.Equal(t, "passed through", lines[0].Result)
}

// Inputs from an independent probe with real-world manifests.
func TestRealWorldShapes(t *testing.T) {
	semantic := func(t *testing.T, a, b []byte) {
		t.Helper()
		var x, y any
		require.NoError(t, yaml.Unmarshal(a, &x))
		require.NoError(t, yaml.Unmarshal(b, &y))
		assert.Equal(t, x, y)
	}
	roundTrip := func(t *testing.T, in string) []byte {
		t.Helper()
		injected, lines := run(t, manifest.Inject, "in.yaml", []byte(in), manifest.YAML)
		require.NotEmpty(t, lines)
		back, _ := run(t, manifest.Uninject, "out.yaml", injected, manifest.YAML)
		semantic(t, []byte(in), back)
		return injected
	}

	t.Run("a pod without a namespace gets none", func(t *testing.T) {
		out := roundTrip(t, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {sidecar-injector.io/inject: \"true\"}\nspec:\n  containers: [{name: app, image: nginx}]\n")
		assert.Contains(t, string(out), "mesh-proxy")
		assert.NotContains(t, string(out), "namespace:")
	})
	t.Run("a pod dump keeps its status and creationTimestamp", func(t *testing.T) {
		out := roundTrip(t, `apiVersion: v1
kind: Pod
metadata: {name: p, namespace: shop, creationTimestamp: "2024-06-01T10:00:00Z"}
spec:
  containers: [{name: app, image: nginx}]
status: {phase: Running, podIP: 10.0.0.7}
`)
		assert.Contains(t, string(out), "mesh-proxy")
		assert.Contains(t, string(out), "podIP: 10.0.0.7")
	})
	t.Run("integers beyond 2^53 pass through", func(t *testing.T) {
		list := `apiVersion: v1
kind: List
items:
- {apiVersion: example.com/v1, kind: Counter, metadata: {name: c}, spec: {offset: 9007199254740993}}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: d, namespace: shop}
  spec: {template: {spec: {containers: [{name: app, image: nginx}]}}}
`
		out := roundTrip(t, list)
		assert.Contains(t, string(out), "9007199254740993")
		js, _ := run(t, manifest.Inject, "in.json", []byte(`{"apiVersion":"example.com/v1","kind":"Counter","metadata":{"name":"c"},"spec":{"offset":9007199254740993}}`), manifest.JSON)
		assert.Contains(t, string(js), "9007199254740993")
	})
	t.Run("empty documents are skipped", func(t *testing.T) {
		for _, in := range []string{"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n", "---\n\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n", "---\n---\n# comment only\n"} {
			_, _ = run(t, manifest.Inject, "in.yaml", []byte(in), manifest.YAML)
		}
	})
	t.Run("custom resources that look like Lists or workloads pass through", func(t *testing.T) {
		in := `apiVersion: net.example.com/v1
kind: EgressAllowList
metadata: {name: a}
items: [example.com, example.org]
---
apiVersion: batch.volcano.sh/v1alpha1
kind: Job
metadata: {name: v, namespace: shop}
spec: {tasks: [{name: t, template: {spec: {containers: [{name: app, image: x}]}}}]}
---
apiVersion: apps.kruise.io/v1beta1
kind: StatefulSet
metadata: {name: k, namespace: shop}
spec: {template: {spec: {containers: [{name: app, image: x}]}}}
`
		out, lines := run(t, manifest.Inject, "in.yaml", []byte(in), manifest.YAML)
		assert.Equal(t, strings.TrimSpace(in), strings.TrimSpace(string(out)))
		for _, l := range lines {
			assert.Equal(t, "passed through", l.Result, l.String())
		}
	})
	t.Run("a failed object is reported as an error", func(t *testing.T) {
		_, lines, err := manifest.Process([]manifest.Source{{Name: "in.yaml", Data: []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: legacy, namespace: other}
spec: {template: {spec: {containers: [{name: app, image: x, imagePullPolicyy: Always}]}}}
`)}}, manifest.Options{Mode: manifest.Inject, Engine: engine(t), NamespaceLabels: shopEnabled})
		require.Error(t, err)
		require.Len(t, lines, 1)
		assert.Equal(t, "error", lines[0].Result)
	})
}
