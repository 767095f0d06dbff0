package inject_test

import (
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
)

// golden is the expected outcome of one fixture.
type golden struct {
	Decision inject.Decision `json:"decision"`
	Pod      *corev1.Pod     `json:"pod"`
}

func TestMain(m *testing.M) { os.Exit(testkit.Main(m, "testdata/pods/*.golden.yaml")) }

func TestGolden(t *testing.T) {
	cases, err := podcases.LoadCases(filepath.Join("testdata", "pods"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(cases), 20, "the core is checked on at least 20 pod shapes")
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			engine := c.Engine(t)
			before := c.Pod.DeepCopy()
			out, d := engine.Inject(c.Pod, c.Namespace)
			assert.Equal(t, before, c.Pod, "Inject must not modify its input")

			got, err := yaml.Marshal(golden{Decision: d, Pod: out})
			require.NoError(t, err)
			testkit.Golden(t, filepath.Join("testdata", "pods", c.Name+".golden.yaml"), got)

			if c.Expect != "" {
				assert.Equal(t, c.Expect, string(d.Result)+"/"+string(d.Reason), "expected outcome declared by the fixture")
			}

			// Idempotency: injecting the result again changes nothing.
			again, d2 := engine.Inject(out, c.Namespace)
			assert.Equal(t, out, again, "inject(inject(x)) must equal inject(x)")
			if d.Result == inject.Injected {
				assert.Equal(t, inject.ReasonAlreadyInjected, d2.Reason)
			} else {
				assert.Equal(t, d.Reason, d2.Reason, "a skip or refusal must be stable")
			}

			// Uninject restores exactly the input.
			if d.Result == inject.Injected {
				back, err := inject.Uninject(out)
				require.NoError(t, err)
				assert.Equal(t, normalize(t, c.Pod), normalize(t, back), "uninject(inject(x)) must equal x")
			}
			if d.Result == inject.Refused {
				assert.NotEmpty(t, d.Message)
				assert.Same(t, c.Pod, out, "a refused pod is returned unchanged")
			}
		})
	}
}

// normalize compares pods by their JSON form, where a nil and an empty
// list are the same thing (as they are to the API server).
func normalize(t *testing.T, p *corev1.Pod) string {
	t.Helper()
	b, err := yaml.Marshal(p)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}
