package inject_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/injector/test/testkit/podcases"
	"github.com/sidecar-injector/injector/webhook/inject"
)

// The core reads nothing outside PodFields: every fixture, cut down to
// those fields, gets the same decision and the same change record as the
// whole pod (in its own namespace and in an enabled one, so the skipped
// fixtures are decided in full too). A core change that reads another
// field fails here until PodFields lists it, and then the webhook's view
// test fails until the edge decodes it.
func TestCoreReadsOnlyPodFields(t *testing.T) {
	cases, err := podcases.LoadCases(filepath.Join("testdata", "pods"))
	require.NoError(t, err)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			e := c.Engine(t)
			b, err := podcases.Project(c.Raw, inject.PodFields)
			require.NoError(t, err)
			var cut corev1.Pod
			require.NoError(t, yaml.UnmarshalStrict(b, &cut))
			require.NotEqual(t, c.Pod, &cut, "the projection drops what the core does not read")
			for _, ns := range []inject.Namespace{c.Namespace, {Name: "enabled", Labels: map[string]string{"sidecar-injector.io/injection": "enabled"}}} {
				d, ch := e.Decide(c.Pod, ns)
				dc, chc := e.Decide(&cut, ns)
				assert.Equal(t, d, dc, "decision in namespace %s", ns.Name)
				assert.Equal(t, ch, chc, "change record in namespace %s", ns.Name)
			}
		})
	}
}
