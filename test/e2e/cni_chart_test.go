package e2e

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/test/e2e/harness"
)

// TestChartCNIAgent: cni.enabled adds the node agent's DaemonSet, with the
// privileges docs/install.md lists and nothing more, which the real API
// server accepts; without it there is none.
func TestChartCNIAgent(t *testing.T) {
	helm := helmBin(t)
	ctx := t.Context()
	off, err := harness.Render(ctx, helm, release, releaseNamespace, nil)
	require.NoError(t, err)
	objs, err := harness.Manifests(off)
	require.NoError(t, err)
	assert.Nil(t, harness.Find(objs, "DaemonSet"), "cni.enabled defaults to false")

	on, err := harness.Render(ctx, helm, release, releaseNamespace, nil, "cni.enabled=true", "cni.binDir=/usr/lib/cni", "cni.image.tag=v9")
	require.NoError(t, err)
	objs, err = harness.Manifests(on)
	require.NoError(t, err)
	ds := &appsv1.DaemonSet{}
	require.NoError(t, harness.Decode(harness.Find(objs, "DaemonSet"), ds))
	spec := ds.Spec.Template.Spec
	assert.True(t, spec.HostNetwork, "the agent must not need the CNI it repairs")
	require.NotNil(t, spec.AutomountServiceAccountToken)
	assert.False(t, *spec.AutomountServiceAccountToken, "no service account token: it talks to nothing")
	require.Len(t, spec.Containers, 1)
	c := spec.Containers[0]
	assert.Equal(t, "ghcr.io/sidecar-injector/mesh-cni:v9", c.Image)
	assert.Equal(t, []string{"install", "--bin-dir=/host/cni/bin", "--conf-dir=/host/cni/net.d", "--interval=2s"}, c.Args)
	sc := c.SecurityContext
	require.NotNil(t, sc)
	assert.False(t, *sc.Privileged)
	assert.False(t, *sc.AllowPrivilegeEscalation)
	assert.True(t, *sc.ReadOnlyRootFilesystem)
	assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	assert.Empty(t, sc.Capabilities.Add)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, spec.SecurityContext.SeccompProfile.Type)
	require.NotNil(t, c.ReadinessProbe)
	assert.Contains(t, c.ReadinessProbe.Exec.Command, "--check")
	paths := map[string]string{}
	for _, v := range spec.Volumes {
		require.NotNil(t, v.HostPath, "only hostPath volumes: %s", v.Name)
		paths[v.Name] = v.HostPath.Path
	}
	assert.Equal(t, map[string]string{"cni-bin": "/usr/lib/cni", "cni-conf": "/etc/cni/net.d"}, paths, "exactly the two CNI folders")

	c2 := controlPlane(t)
	require.NoError(t, harness.EnsureNamespace(ctx, c2.Clientset, releaseNamespace, nil))
	assert.NoError(t, dryRunApply(t, c2.Client, harness.Find(objs, "DaemonSet")), "the API server accepts the DaemonSet")

	_, err = harness.Render(ctx, helm, release, releaseNamespace, nil, "cni.enabled=true", "cni.binDir=opt/cni/bin")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/cni/binDir")
}
