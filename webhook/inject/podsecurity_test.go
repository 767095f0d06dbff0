package inject_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/templates"
	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// noCapabilityInit is an init container that needs nothing Pod Security
// restricts (as a capture mode without capabilities in the pod would
// render it): the check follows what is rendered, not a fixed list.
const noCapabilityInit = `name: {{ .Names.Init }}
image: {{ toJSON .Settings.Init.Image }}
command: ["mesh-init"]
args: {{ toJSON .InitArgs }}
securityContext:
  runAsUser: 1337
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  capabilities: {drop: ["ALL"]}
  seccompProfile: {type: RuntimeDefault}
volumeMounts:
- name: {{ .Names.ToolsVolume }}
  mountPath: {{ toJSON .Paths.ToolsDir }}
`

func TestPodSecurityFollowsWhatIsRendered(t *testing.T) {
	restricted := map[string]string{policy.NamespaceLabel: "enabled", inject.PodSecurityEnforceLabel: "restricted"}
	app := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}

	// The built-in templates: only mesh-init violates restricted; the
	// proxy complies on its own, whatever the pod sets.
	e, err := compile("apiVersion: sidecar-injector.io/v1alpha1\nkind: InjectorConfig\n")
	require.NoError(t, err)
	_, d := e.Inject(app, inject.Namespace{Name: "shop", Labels: restricted})
	require.Equal(t, inject.ReasonPodSecurityViolation, d.Reason, d.Message)
	assert.Contains(t, d.Message, `container "mesh-init" adds the capabilities NET_ADMIN, NET_RAW, does not set runAsNonRoot: true, runs as root (runAsUser 0), has no seccomp profile RuntimeDefault or Localhost. Ways out`)
	assert.NotContains(t, d.Message, "mesh-proxy")

	// An init container that needs no capability passes restricted.
	e, err = compile(policyWithTemplate(t, templates.InitContainer, noCapabilityInit))
	require.NoError(t, err)
	out, d := e.Inject(app, inject.Namespace{Name: "custom", Labels: restricted})
	require.Equal(t, inject.Injected, d.Result, d.Message)
	assert.Empty(t, d.Warnings)
	assert.NotNil(t, out)

	// Privileged namespaces, and namespaces without the label, are not
	// judged; an unknown enforce level is read as restricted, as Pod
	// Security admission reads it.
	e, err = compile("apiVersion: sidecar-injector.io/v1alpha1\nkind: InjectorConfig\n")
	require.NoError(t, err)
	for level, want := range map[string]inject.Reason{"privileged": inject.ReasonNamespaceEnabled, "": inject.ReasonNamespaceEnabled,
		"Restricted": inject.ReasonPodSecurityViolation, "baseline": inject.ReasonPodSecurityViolation} {
		labels := map[string]string{policy.NamespaceLabel: "enabled"}
		if level != "" {
			labels[inject.PodSecurityEnforceLabel] = level
		}
		_, d := e.Inject(app, inject.Namespace{Name: "shop", Labels: labels})
		assert.Equal(t, want, d.Reason, "%q: %s", level, d.Message)
		if level == "Restricted" {
			assert.Contains(t, d.Message, `pod-security.kubernetes.io/enforce=Restricted, which Pod Security reads as restricted`)
		}
	}

	// explain decides the same.
	x := e.Explain(app, inject.Namespace{Name: "shop", Labels: map[string]string{policy.NamespaceLabel: "enabled", inject.PodSecurityEnforceLabel: "baseline"}})
	assert.Equal(t, inject.ReasonPodSecurityViolation, x.Decision.Reason)
	assert.True(t, strings.Contains(x.Text(), "pod_security_violation"))
}
