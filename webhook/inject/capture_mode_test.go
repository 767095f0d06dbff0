package inject_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// In the cni capture mode the annotation the node's plugin reads and the
// validation container's arguments are the same settings, parsed by the
// same contract; the injector's containers ask for nothing Pod Security
// restricted refuses; init mode pods carry no annotation.
func TestCNIModeContract(t *testing.T) {
	pods := injectedPods(t)
	for name, pod := range pods {
		t.Run(name, func(t *testing.T) {
			value, cni := pod.Annotations[meshinit.CNIAnnotation]
			c := container(pod, inject.DefaultNames.Init)
			require.NotNil(t, c)
			if !cni {
				assert.Equal(t, "capture", c.Args[0], "init mode: mesh-init writes the rules")
				return
			}
			require.Equal(t, "validate", c.Args[0])
			cmd, err := meshinit.ParseCaptureCommand(c.Args[1:], nil)
			require.NoError(t, err)
			fromAnnotation, err := meshinit.ParseCaptureAnnotation(value)
			require.NoError(t, err, "the plugin must accept the annotation")
			assert.Equal(t, cmd.Config, fromAnnotation, "the plugin writes what the validator checks")

			st, _, err := inject.ReadStatus(pod)
			require.NoError(t, err)
			assert.Contains(t, st.Annotations, meshinit.CNIAnnotation, "recorded, so uninject removes it")

			// What Pod Security restricted checks on every container, set
			// on ours whatever the pod sets (the API server proves it in
			// test/e2e).
			for _, n := range []string{inject.DefaultNames.Init, inject.DefaultNames.Proxy} {
				sc := container(pod, n).SecurityContext
				require.NotNil(t, sc, n)
				assert.False(t, sc.Privileged != nil && *sc.Privileged, n)
				require.NotNil(t, sc.AllowPrivilegeEscalation, n)
				assert.False(t, *sc.AllowPrivilegeEscalation, n)
				require.NotNil(t, sc.Capabilities, n)
				assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, n)
				assert.Empty(t, sc.Capabilities.Add, n)
				require.NotNil(t, sc.RunAsNonRoot, n)
				assert.True(t, *sc.RunAsNonRoot, n)
				require.NotNil(t, sc.RunAsUser, n)
				assert.NotZero(t, *sc.RunAsUser, n)
				require.NotNil(t, sc.SeccompProfile, n)
				assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type, n)
			}
			// The validator's connections must be captured: neither the
			// proxy's UID nor its GID.
			init := container(pod, inject.DefaultNames.Init).SecurityContext
			proxy := container(pod, inject.DefaultNames.Proxy).SecurityContext
			assert.NotEqual(t, *proxy.RunAsUser, *init.RunAsUser)
			assert.NotEqual(t, *proxy.RunAsGroup, *init.RunAsGroup)
			assert.NotEqual(t, int64(cmd.Config.ProxyUID), *init.RunAsUser)
			assert.NotEqual(t, int64(cmd.Config.ProxyGID), *init.RunAsGroup)
			for _, v := range pod.Spec.Volumes {
				assert.Nil(t, v.HostPath, "no hostPath volume")
			}
		})
	}
	assert.Contains(t, pods["cni-mode-classic"].Annotations[meshinit.CNIAnnotation], "--exclude-outbound-ports=8761",
		"a pod's own overrides reach the node's plugin")
	assert.Equal(t, int64(65533), *container(pods["cni-mode-classic"], inject.DefaultNames.Init).SecurityContext.RunAsUser,
		"the proxy's GID is 65534 there")
}
