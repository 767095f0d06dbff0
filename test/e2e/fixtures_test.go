package e2e

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/test/testkit/podcases"
	"github.com/sidecar-injector/injector/webhook/inject"
)

// Every pod shape of the core's golden fixtures, injected by the core and
// created (server-side dry run) through the real kube-apiserver: an injected
// pod must be accepted as it is, in native and classic mode alike, and so
// must what uninject gives back. The webhook path itself is covered by
// TestAdmissionThroughTheAPIServer; this one covers breadth of shapes.
func TestAPIServerAcceptsEveryInjectedFixture(t *testing.T) {
	c := controlPlane(t)
	ctx := t.Context()
	const ns = "e2e-fixtures"
	require.NoError(t, harness.EnsureNamespace(ctx, c.Clientset, ns, map[string]string{suiteLabel: "fixtures"}))
	cases, err := podcases.LoadCases(filepath.Join(harness.RepoRoot(), "webhook", "inject", "testdata", "pods"))
	require.NoError(t, err)
	require.NotEmpty(t, cases)
	create := func(t *testing.T, p *corev1.Pod) error {
		p = p.DeepCopy()
		p.Namespace = ns
		p.OwnerReferences = nil // the owners do not exist here
		if p.Name == "" && p.GenerateName == "" {
			p.GenerateName = "fixture-"
		}
		_, err := c.Clientset.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	injected := 0
	for _, fc := range cases {
		t.Run(fc.Name, func(t *testing.T) {
			out, d := fc.Engine(t).Inject(fc.Pod, fc.Namespace)
			if d.Result != inject.Injected {
				return
			}
			injected++
			assert.NoError(t, create(t, out), "the API server must accept the injected pod")
			back, err := inject.Uninject(out)
			require.NoError(t, err)
			assert.NoError(t, create(t, back), "and what uninject gives back")
		})
	}
	assert.GreaterOrEqual(t, injected, 20, "most fixtures are injected ones")
}
