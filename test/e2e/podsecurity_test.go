package e2e

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/webhook/inject"
)

// warnings collects the admission warnings the API server returns.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// restrictedPod complies with Pod Security restricted at container level
// only, so whatever the injector adds must comply on its own.
func restrictedPod(name string) *corev1.Pod {
	p := harness.AppPod(name)
	p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](10001), AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	return p
}

// Pod Security admission on a real API server judges the injected pod. In
// a namespace that enforces baseline the injector refuses the pod itself,
// naming Pod Security, instead of letting the API server reject it with an
// error that does not mention the injector; a namespace that only warns
// gets the injector's warning beside the API server's; and what the
// injector adds besides mesh-init's capture passes restricted, proven by
// the API server admitting a pod injected with an init container that
// needs no capability.
func TestPodSecurityThroughTheAPIServer(t *testing.T) {
	c := controlPlane(t)
	in := sharedInjector(t)
	ctx := t.Context()
	const suite = "pod-security"
	ns := map[string]map[string]string{
		"e2e-ps-probe":    {},
		"e2e-ps-baseline": {"pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/enforce-version": "latest"},
		"e2e-ps-warn":     {"pod-security.kubernetes.io/warn": "restricted"},
		"e2e-ps-nocap":    {"pod-security.kubernetes.io/enforce": "restricted", "e2e-capture": "no-capabilities"},
	}
	for name, labels := range ns {
		labels[suiteLabel] = suite
		labels[injectionKey] = "enabled"
		require.NoError(t, harness.EnsureNamespace(ctx, c.Clientset, name, labels))
	}
	installWebhook(t, c, in, suite, "e2e-ps-probe")
	w := &warnings{}
	cfg := rest.CopyConfig(c.Config)
	cfg.WarningHandler = w
	cs, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)

	t.Run("baseline: refused by the injector, naming Pod Security and the way out", func(t *testing.T) {
		before := injections(t, "refused", string(inject.ReasonPodSecurityViolation))
		_, err := cs.CoreV1().Pods("e2e-ps-baseline").Create(ctx, harness.AppPod("web"), metav1.CreateOptions{})
		require.Error(t, err)
		assert.True(t, apierrors.IsForbidden(err), "%v", err)
		assert.Contains(t, err.Error(), `admission webhook "namespace.sidecar-injector.io" denied the request`)
		assert.Contains(t, err.Error(), `namespace "e2e-ps-baseline" enforces Pod Security level "baseline"`)
		assert.Contains(t, err.Error(), `container "mesh-init" adds the capabilities NET_ADMIN, NET_RAW`)
		assert.Contains(t, err.Error(), "Ways out: label the namespace with a lower level")
		assert.Equal(t, before+1, injections(t, "refused", string(inject.ReasonPodSecurityViolation)))
		// Without the injector, the same pod is admitted: the refusal is
		// about what the injector would add.
		plain := labelPod(harness.AppPod("web-opted-out"), "sidecar-injector.io/inject", "false")
		_, err = cs.CoreV1().Pods("e2e-ps-baseline").Create(ctx, plain, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		assert.NoError(t, err)
	})

	t.Run("warn at restricted: injected, with the injector's warning", func(t *testing.T) {
		w.take()
		got, err := cs.CoreV1().Pods("e2e-ps-warn").Create(ctx, harness.AppPod("web"), metav1.CreateOptions{})
		require.NoError(t, err)
		assert.Contains(t, got.Annotations, "sidecar-injector.io/status")
		all := strings.Join(w.take(), "\n")
		assert.Contains(t, all, `namespace "e2e-ps-warn" warns at Pod Security level "restricted"`)
		assert.Contains(t, all, `container "mesh-init" adds the capabilities NET_ADMIN, NET_RAW`)
		// The API server's own Pod Security warning names only mesh-init
		// among the injected containers, as the injector said.
		assert.Contains(t, all, "would violate PodSecurity")
		assert.NotContains(t, all, `"mesh-proxy"`)
	})

	t.Run("restricted: everything else the injector adds complies", func(t *testing.T) {
		w.take()
		got, err := cs.CoreV1().Pods("e2e-ps-nocap").Create(ctx, restrictedPod("web"), metav1.CreateOptions{})
		require.NoError(t, err, "Pod Security restricted admits the injected pod")
		st, ok, err := inject.ReadStatus(got)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, "no-capabilities", st.Policy)
		assert.NotNil(t, containerByName(append(got.Spec.InitContainers, got.Spec.Containers...), "mesh-proxy"))
		assert.Empty(t, w.take())
	})
}
