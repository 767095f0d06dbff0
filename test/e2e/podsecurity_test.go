package e2e

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// restrictedPod is an app pod written for Pod Security restricted.
func restrictedPod(name string) *corev1.Pod {
	p := harness.AppPod(name)
	p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	return p
}

// TestCNIModePassesPodSecurityRestricted: through the real kube-apiserver,
// whose built-in Pod Security admission enforces restricted on the
// namespaces below (after the webhook: admission validates the mutated
// pod), a pod injected in the cni capture mode is admitted — in native and
// classic mode — while the same pod injected in the init mode is refused
// for mesh-init's root user and capabilities, which proves the enforcement
// is on.
func TestCNIModePassesPodSecurityRestricted(t *testing.T) {
	c := controlPlane(t)
	in := sharedInjector(t)
	ctx := t.Context()
	cs := c.Clientset
	const suite = "podsecurity"
	restricted := func(extra map[string]string) map[string]string {
		l := map[string]string{suiteLabel: suite, injectionKey: "enabled",
			"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}
		for k, v := range extra {
			l[k] = v
		}
		return l
	}
	const cniNS, initNS, probeNS = "e2e-restricted-cni", "e2e-restricted-init", "e2e-podsecurity-probe"
	require.NoError(t, harness.EnsureNamespace(ctx, cs, cniNS, restricted(map[string]string{"capture": "cni"})))
	require.NoError(t, harness.EnsureNamespace(ctx, cs, initNS, restricted(nil)))
	require.NoError(t, harness.EnsureNamespace(ctx, cs, probeNS, map[string]string{suiteLabel: suite, injectionKey: "enabled"}))
	installWebhook(t, c, in, suite, probeNS)

	for _, tc := range []struct {
		name    string
		classic bool
	}{{"native sidecar", false}, {"classic sidecar", true}} {
		t.Run(tc.name, func(t *testing.T) {
			p := restrictedPod("")
			p.GenerateName = "cni-"
			if tc.classic {
				p.Annotations = map[string]string{"sidecar-injector.io/native-sidecar": "false"}
			}
			got, err := cs.CoreV1().Pods(cniNS).Create(ctx, p, metav1.CreateOptions{})
			require.NoError(t, err, "Pod Security restricted must admit a pod injected in the cni capture mode")
			t.Cleanup(func() { _ = cs.CoreV1().Pods(cniNS).Delete(ctx, got.Name, metav1.DeleteOptions{}) })
			require.Contains(t, got.Annotations, "sidecar-injector.io/status", "injected")
			value := got.Annotations[meshinit.CNIAnnotation]
			_, err = meshinit.ParseCaptureAnnotation(value)
			assert.NoError(t, err, "the node's plugin reads the annotation the API server stored")
			var initc *corev1.Container
			for i := range got.Spec.InitContainers {
				if got.Spec.InitContainers[i].Name == "mesh-init" {
					initc = &got.Spec.InitContainers[i]
				}
			}
			require.NotNil(t, initc)
			assert.Equal(t, "validate", initc.Args[0])
			assert.Empty(t, initc.SecurityContext.Capabilities.Add)
		})
	}

	// The same pod in the init mode: refused by Pod Security, naming
	// mesh-init's privileges.
	_, err := cs.CoreV1().Pods(initNS).Create(ctx, restrictedPod("init-mode"), metav1.CreateOptions{})
	require.Error(t, err, "restricted must refuse mesh-init's capabilities: is Pod Security admission on?")
	for _, want := range []string{"violates PodSecurity \"restricted:latest\"", "mesh-init", "NET_ADMIN"} {
		assert.True(t, strings.Contains(err.Error(), want), "the refusal %q does not say %q", err, want)
	}
	t.Logf("init mode under restricted: %v", err)
}
