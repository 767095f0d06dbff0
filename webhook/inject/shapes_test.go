package inject_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// Pod shapes an independent probe sent through a real API server: none of
// them may leave a pod without the proxy where the policy says it must
// have one, or give the app what belongs to the proxy.
func TestPodShapesThatMustNotSlipThrough(t *testing.T) {
	e, err := compile(`apiVersion: sidecar-injector.io/v1alpha1
kind: InjectorConfig
policies:
- name: strict
  namespaces: [strict]
  podOverrides: {allowOptOut: false}
`)
	require.NoError(t, err)
	enabled := map[string]string{policy.NamespaceLabel: "enabled"}
	app := func(mod func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}}
		mod(p)
		return p
	}
	annotate := func(k, v string) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Annotations = map[string]string{k: v} }
	}
	for _, tc := range []struct {
		name   string
		ns     string
		pod    *corev1.Pod
		result inject.Result
		reason inject.Reason
		msg    string
	}{
		{"a hand-written status is not an injection", "shop", app(annotate(policy.StatusAnnotation, "{}")),
			inject.Refused, inject.ReasonStatusMismatch, "format version 0"},
		{"a status naming the app container where opting out is not allowed", "strict", app(annotate(policy.StatusAnnotation, `{"version":1,"containers":["app"]}`)),
			inject.Refused, inject.ReasonStatusMismatch, `it records the init containers (none), the containers "app" and the volumes (none), where the injector adds the init containers "mesh-init", the containers "mesh-proxy" and the volumes "mesh-tools", "mesh-proxy-tmp" (classic sidecars), so it is not what policy "strict" injects`},
		{"a status whose containers are missing", "shop", app(annotate(policy.StatusAnnotation,
			`{"version":1,"initContainers":["mesh-init"],"containers":["mesh-proxy"],"volumes":["mesh-tools","mesh-proxy-tmp"]}`)),
			inject.Refused, inject.ReasonStatusMismatch, `the container "mesh-init" it records is not in spec.initContainers; the container "mesh-proxy" it records is not in spec.containers; the volume "mesh-tools" it records is not in spec.volumes`},
		{"a status that is not JSON", "shop", app(annotate(policy.StatusAnnotation, "yes")),
			inject.Refused, inject.ReasonStatusMismatch, "not JSON"},
		{"an app container named like the proxy", "shop", app(func(p *corev1.Pod) { p.Spec.Containers[0].Name = inject.DefaultNames.Proxy }),
			inject.Refused, inject.ReasonContainerNameConflict, "rename that container"},
		{"an init container named like mesh-init", "shop", app(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: inject.DefaultNames.Init, Image: "busybox"}}
		}), inject.Refused, inject.ReasonContainerNameConflict, "rename that container"},
		{"another mesh's marker where opting out is allowed", "shop", app(annotate("sidecar.istio.io/status", "fake")),
			inject.Skipped, inject.ReasonOtherMesh, "Istio"},
		{"another mesh's marker where opting out is not allowed", "strict", app(annotate("sidecar.istio.io/status", "fake")),
			inject.Refused, inject.ReasonOptOutNotAllowed, `policy "strict"`},
		{"an undeclared mount of the tools volume", "shop", app(func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: inject.DefaultNames.ToolsVolume, MountPath: "/tools"}}
		}), inject.Refused, inject.ReasonVolumeNameConflict, "does not declare"},
		{"an app port named like the proxy's", "shop", app(func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "mesh-stats", ContainerPort: 9090}}
		}), inject.Refused, inject.ReasonProxyPortConflict, `"mesh-stats"`},
		{"an oversized offline body", "shop", app(func(p *corev1.Pod) {
			p.Annotations = map[string]string{"sidecar-injector.io/registry": "http", "sidecar-injector.io/offline-http-url": "http://127.0.0.1:8080/off",
				"sidecar-injector.io/offline-http-body": strings.Repeat("B", 4097)}
		}), inject.Refused, inject.ReasonInvalidAnnotation, "at most 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, d := e.Inject(tc.pod, inject.Namespace{Name: tc.ns, Labels: enabled})
			assert.Equal(t, tc.result, d.Result, d.Message)
			assert.Equal(t, tc.reason, d.Reason, d.Message)
			assert.Contains(t, d.Message, tc.msg)
		})
	}

	// Where the pod would not be injected anyway, its status does not
	// matter.
	_, d := e.Inject(app(annotate(policy.StatusAnnotation, "yes")), inject.Namespace{Name: "elsewhere"})
	assert.Equal(t, inject.ReasonNamespaceNotEnabled, d.Reason, d.Message)

	// An injected pod is still recognised as injected.
	out, d := e.Inject(app(func(*corev1.Pod) {}), inject.Namespace{Name: "strict", Labels: enabled})
	require.Equal(t, inject.Injected, d.Result, d.Message)
	_, d = e.Inject(out, inject.Namespace{Name: "strict", Labels: enabled})
	assert.Equal(t, inject.ReasonAlreadyInjected, d.Reason, d.Message)
	// Not one another version injected (another status format version):
	// what it records is not what this injector would inject now.
	other := out.DeepCopy()
	other.Annotations[policy.StatusAnnotation] = strings.Replace(other.Annotations[policy.StatusAnnotation], `"version":1`, `"version":99`, 1)
	require.Contains(t, other.Annotations[policy.StatusAnnotation], `"version":99`)
	_, d = e.Inject(other, inject.Namespace{Name: "strict", Labels: enabled})
	assert.Equal(t, inject.ReasonStatusMismatch, d.Reason, d.Message)
	assert.Contains(t, d.Message, "it has format version 99, and this injector writes version 1")

	// Nor one whose proxy is not what the policy renders: the whole
	// injection copied, with another proxy image.
	swapped := out.DeepCopy()
	swapped.Spec.Containers[0].Image = "registry.example.com/evil:1"
	_, d = e.Inject(swapped, inject.Namespace{Name: "strict", Labels: enabled})
	assert.Equal(t, inject.ReasonStatusMismatch, d.Reason, d.Message)
	assert.Contains(t, d.Message, `the container "mesh-proxy" has image "registry.example.com/evil:1", where the policy renders "docker.io/envoyproxy/envoy:v1.36.2"`)

	// Nor one injected under another policy's settings.
	loose, err := compile(`apiVersion: sidecar-injector.io/v1alpha1
kind: InjectorConfig
policies:
- {name: strict, namespaces: [strict], podOverrides: {allowOptOut: false}, settings: {capture: {excludeOutboundPorts: "5432"}}}
`)
	require.NoError(t, err)
	_, d = loose.Inject(out, inject.Namespace{Name: "strict", Labels: enabled})
	assert.Equal(t, inject.ReasonStatusMismatch, d.Reason, d.Message)
	assert.Contains(t, d.Message, `the container "mesh-init" has other args than the policy renders (argument 10 is "--exclude-outbound-ports=", not "--exclude-outbound-ports=5432")`)

	// A pod injected offline and then created: the API server's defaults
	// (pull policy, termination message path, probe thresholds, a
	// request from its limit) do not make it a mismatch.
	created := out.DeepCopy()
	for i := range created.Spec.Containers {
		c := &created.Spec.Containers[i]
		c.TerminationMessagePath = "/dev/termination-log"
		if c.ReadinessProbe != nil {
			c.ReadinessProbe.SuccessThreshold = 1
		}
	}
	_, d = e.Inject(created, inject.Namespace{Name: "strict", Labels: enabled})
	assert.Equal(t, inject.ReasonAlreadyInjected, d.Reason, d.Message)

	// A default-container that names no container is kept, with a warning.
	_, d = e.Inject(app(annotate(policy.DefaultContainerAnnotation, "nosuch")), inject.Namespace{Name: "shop", Labels: enabled})
	require.Equal(t, inject.Injected, d.Result, d.Message)
	assert.Contains(t, strings.Join(d.Warnings, "\n"), `names "nosuch", which is not a container`)
	_, d = e.Inject(app(annotate(policy.DefaultContainerAnnotation, inject.DefaultNames.Proxy)), inject.Namespace{Name: "shop", Labels: enabled})
	require.Equal(t, inject.Injected, d.Result, d.Message)
	assert.NotContains(t, strings.Join(d.Warnings, "\n"), "which is not a container")
}

// Uninject refuses to leave a mount of a volume it removes.
func TestUninjectRefusesADanglingMount(t *testing.T) {
	e, err := compile("apiVersion: sidecar-injector.io/v1alpha1\nkind: InjectorConfig\n")
	require.NoError(t, err)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}}
	out, d := e.Inject(pod, inject.Namespace{Name: "shop", Labels: map[string]string{policy.NamespaceLabel: "enabled"}})
	require.Equal(t, inject.Injected, d.Result, d.Message)
	out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: "debug", Image: "busybox",
		VolumeMounts: []corev1.VolumeMount{{Name: inject.DefaultNames.ToolsVolume, MountPath: "/t"}}})
	_, err = inject.Uninject(out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `container "debug" mounts the volume "mesh-tools"`)
}

// Uninject removes only what is the injector's: a status that names an
// app container, or a container named like the injector's but not shaped
// like it, or a volume not named like the injector's, is refused, and the
// app container is never deleted.
func TestUninjectRemovesOnlyTheInjectorsOwn(t *testing.T) {
	app := corev1.Container{Name: "app", Image: "nginx"}
	for _, tc := range []struct {
		name   string
		status string
		pod    func(*corev1.Pod)
		want   string
	}{
		{"a status naming the app container", `{"version":1,"policy":"strict","containers":["app"]}`, nil,
			`sidecar-injector.io/status records "app" among the containers it added, but the injector adds only mesh-proxy there; uninject removes nothing that is not the injector's: remove the annotation by hand`},
		{"an init container name in the containers", `{"version":1,"containers":["mesh-init"]}`, nil,
			`records "mesh-init" among the containers it added, but the injector adds only mesh-proxy there`},
		{"a container named like the proxy, not shaped like it", `{"version":1,"containers":["mesh-proxy"]}`,
			func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "mesh-proxy", Image: "my-own-proxy"})
			},
			`spec.containers has a container named "mesh-proxy" that does not mount the volume "mesh-tools" at /var/run/mesh, as the injector's always does: it is not the injector's, and uninject does not remove it`},
		{"a volume not named like the injector's", `{"version":1,"volumes":["config"]}`,
			func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{{Name: "config"}} },
			`records the volume "config", but the injector's volumes are named mesh-*`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{policy.StatusAnnotation: tc.status}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{app}}}
			if tc.pod != nil {
				tc.pod(pod)
			}
			out, err := inject.Uninject(pod)
			require.Error(t, err)
			assert.Nil(t, out)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
