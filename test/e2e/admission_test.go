package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/webhook/inject"
)

// Expected outcomes as the API server stores them.
const (
	injected = "injected" // sent, mutated, stored
	skipped  = "skipped"  // sent, allowed unchanged
	refused  = "refused"  // sent, denied with our message, not stored
	notSent  = "not-sent" // the chart's selectors keep it from the webhook
)

// Images from testdata/e2e-values.yaml: they must reach the pods.
const (
	e2eProxyImage = "registry.example.com/e2e/envoy:v1.36.2-e2e"
	e2eInitImage  = "registry.example.com/e2e/mesh-init:v0.0.0-e2e"
)

// installWebhook renders the chart's MutatingWebhookConfiguration, points
// every entry at the in-process injector, scopes it to the suite's
// namespaces and waits until the API server calls it.
func installWebhook(t testing.TB, c *harness.ControlPlane, in *injector, suite, probeNS string) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	ctx := t.Context()
	rendered, err := harness.Render(ctx, helmBin(t), release, releaseNamespace, []string{e2eValues()})
	require.NoError(t, err)
	objs, err := harness.Manifests(rendered)
	require.NoError(t, err)
	mwc, err := harness.WebhookConfiguration(objs)
	require.NoError(t, err)
	mwc.Name = "e2e-" + suite
	harness.PointAt(mwc, in.URL, in.CABundle)
	harness.Scope(mwc, suiteLabel, suite)
	require.NoError(t, harness.ApplyWebhookConfiguration(ctx, c.Clientset, mwc))
	t.Cleanup(func() {
		_ = c.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), mwc.Name, metav1.DeleteOptions{})
	})
	waitUntilInjecting(t, c.Clientset, probeNS)
	return mwc
}

// waitUntilInjecting dry-runs a pod until the API server has picked up the
// webhook configuration (its informer lags the write by a moment).
func waitUntilInjecting(t testing.TB, cs kubernetes.Interface, ns string) {
	t.Helper()
	harness.WaitFor(t, "the API server calls the webhook", func() error {
		p, err := cs.CoreV1().Pods(ns).Create(context.Background(), harness.AppPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if _, ok := p.Annotations["sidecar-injector.io/status"]; !ok {
			return fmt.Errorf("dry-run pod not injected yet")
		}
		return nil
	})
}

func with(p *corev1.Pod, f func(*corev1.Pod)) *corev1.Pod { f(p); return p }

func annotate(p *corev1.Pod, kv ...string) *corev1.Pod {
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		p.Annotations[kv[i]] = kv[i+1]
	}
	return p
}

func labelPod(p *corev1.Pod, kv ...string) *corev1.Pod {
	for i := 0; i+1 < len(kv); i += 2 {
		p.Labels[kv[i]] = kv[i+1]
	}
	return p
}

type podCase struct {
	name   string
	ns     string
	pod    *corev1.Pod
	want   string
	reason inject.Reason
	// native: the proxy is a native sidecar (init container, restartPolicy
	// Always); otherwise a classic first container.
	native bool
	policy string
	errSub string
}

// TestAdmissionThroughTheAPIServer creates pods of every kind of decision
// through the real API server with the chart's webhook configuration and
// checks what the API server stored.
func TestAdmissionThroughTheAPIServer(t *testing.T) {
	c := controlPlane(t)
	in := sharedInjector(t)
	ctx := t.Context()
	cs := c.Clientset
	const suite = "admission"
	scoped := func(extra map[string]string) map[string]string {
		l := map[string]string{suiteLabel: suite}
		for k, v := range extra {
			l[k] = v
		}
		return l
	}
	enabled := map[string]string{injectionKey: "enabled"}
	for ns, labels := range map[string]map[string]string{
		"e2e-enabled":  scoped(enabled),
		"e2e-payments": scoped(map[string]string{injectionKey: "enabled", "team": "payments"}),
		"e2e-plain":    scoped(nil),
		"e2e-disabled": scoped(map[string]string{injectionKey: "disabled"}),
		// Labelled for injection by mistake: the chart's selectors must
		// still keep them away from the webhook.
		"kube-system":    scoped(enabled),
		releaseNamespace: scoped(enabled),
	} {
		require.NoError(t, harness.EnsureNamespace(ctx, cs, ns, labels))
	}
	installWebhook(t, c, in, suite, "e2e-enabled")

	// The readiness the chart's probes use, over the injector's own TLS.
	resp, err := httpsClient(in.CABundle).Get("https://" + in.Addr + "/readyz")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), "[+] namespaces ok", "the namespace watch is part of readiness")

	// Owners as the controllers would have them.
	sts, err := cs.AppsV1().StatefulSets("e2e-enabled").Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "eureka"},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: "eureka", Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "eureka"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "eureka"},
					Annotations: map[string]string{"sidecar-injector.io/inject": "false"}},
				Spec: harness.AppPod("").Spec,
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	job, err := cs.BatchV1().Jobs("e2e-enabled").Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "migrate"},
		Spec: batchv1.JobSpec{
			Suspend: ptr.To(true),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "migrate", Image: "registry.example.com/shop/migrate:1.0", Command: []string{"/migrate"}}}}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	cases := []podCase{
		{name: "plain pod, labelled namespace: native sidecar", ns: "e2e-enabled", pod: harness.AppPod("plain"),
			want: injected, reason: inject.ReasonNamespaceEnabled, native: true, policy: "default"},
		{name: "classic sidecar (native-sidecar: false)", ns: "e2e-enabled",
			pod:  annotate(harness.AppPod("classic"), "sidecar-injector.io/native-sidecar", "false"),
			want: injected, reason: inject.ReasonNamespaceEnabled, native: false, policy: "default"},
		{name: "policy added through chart values", ns: "e2e-payments", pod: harness.AppPod("payments"),
			want: injected, reason: inject.ReasonNamespaceEnabled, native: true, policy: "payments"},
		{name: "StatefulSet pod with generateName and the opt-out annotation", ns: "e2e-enabled",
			pod: with(harness.AppPod(""), func(p *corev1.Pod) {
				p.GenerateName = "eureka-"
				p.Labels = map[string]string{"app": "eureka", "apps.kubernetes.io/pod-index": "0"}
				p.Annotations = map[string]string{"sidecar-injector.io/inject": "false"}
				p.Spec.Hostname, p.Spec.Subdomain = "eureka-0", "eureka"
				p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: sts.Name, UID: sts.UID,
					Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
			}),
			want: skipped, reason: inject.ReasonPodOptedOut},
		{name: "Istio alias opt-out annotation", ns: "e2e-enabled",
			pod:  annotate(harness.AppPod("istio-opt-out"), "sidecar.istio.io/inject", "false"),
			want: skipped, reason: inject.ReasonPodOptedOut},
		{name: "opt-out label: never sent", ns: "e2e-enabled",
			pod: labelPod(harness.AppPod("label-opt-out"), "sidecar-injector.io/inject", "false"), want: notSent},
		{name: "Istio opt-out label: never sent", ns: "e2e-enabled",
			pod: labelPod(harness.AppPod("istio-label-opt-out"), "sidecar.istio.io/inject", "false"), want: notSent},
		{name: "our opt-in label wins over Istio's opt-out label", ns: "e2e-enabled",
			pod:  labelPod(harness.AppPod("ours-wins"), "sidecar-injector.io/inject", "true", "sidecar.istio.io/inject", "false"),
			want: injected, reason: inject.ReasonNamespaceEnabled, native: true, policy: "default"},
		{name: "hostNetwork", ns: "e2e-enabled",
			pod: with(harness.AppPod("host-network"), func(p *corev1.Pod) {
				p.Spec.HostNetwork = true
				p.Spec.Containers[0].Ports = nil
			}),
			want: skipped, reason: inject.ReasonHostNetwork},
		{name: "invalid annotation", ns: "e2e-enabled",
			pod:  annotate(harness.AppPod("invalid"), "sidecar-injector.io/exclude-outbound-ports", "80,abc"),
			want: refused, reason: inject.ReasonInvalidAnnotation,
			errSub: `sidecar-injector.io/exclude-outbound-ports: "80,abc" is invalid: "abc" is not a port`},
		{name: "Job pod", ns: "e2e-enabled",
			pod: &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "migrate-",
					Labels: map[string]string{"batch.kubernetes.io/job-name": job.Name, "batch.kubernetes.io/controller-uid": string(job.UID),
						"job-name": job.Name, "controller-uid": string(job.UID)},
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID,
						Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
				Spec: job.Spec.Template.Spec,
			},
			want: injected, reason: inject.ReasonNamespaceEnabled, native: true, policy: "default"},
		{name: "another mesh's sidecar", ns: "e2e-enabled",
			pod: with(harness.AppPod("istio-injected"), func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "docker.io/istio/proxyv2:1.27.0"})
			}),
			want: skipped, reason: inject.ReasonOtherMesh},
		{name: "unlabelled namespace: never sent", ns: "e2e-plain", pod: harness.AppPod("plain"), want: notSent},
		{name: "pod-level opt-in label, unlabelled namespace", ns: "e2e-plain",
			pod:  labelPod(harness.AppPod("opt-in"), "sidecar-injector.io/inject", "true"),
			want: injected, reason: inject.ReasonPodOptedIn, native: true, policy: "default"},
		{name: "Istio opt-in label, unlabelled namespace", ns: "e2e-plain",
			pod:  labelPod(harness.AppPod("istio-opt-in"), "sidecar.istio.io/inject", "true"),
			want: injected, reason: inject.ReasonPodOptedIn, native: true, policy: "default"},
		{name: "Istio opt-in label in another casing (Yes), unlabelled namespace", ns: "e2e-plain",
			pod:  labelPod(harness.AppPod("istio-opt-in-yes"), "sidecar.istio.io/inject", "Yes"),
			want: injected, reason: inject.ReasonPodOptedIn, native: true, policy: "default"},
		{name: "empty Istio label is no choice: the enabled namespace decides", ns: "e2e-enabled",
			pod:  labelPod(harness.AppPod("istio-empty"), "sidecar.istio.io/inject", ""),
			want: injected, reason: inject.ReasonNamespaceEnabled, native: true, policy: "default"},
		{name: "opt-in by annotation only, unlabelled namespace: never sent (a label is needed)", ns: "e2e-plain",
			pod: annotate(harness.AppPod("annotation-opt-in"), "sidecar-injector.io/inject", "true"), want: notSent},
		{name: "disabled namespace wins over the pod's opt-in: never sent", ns: "e2e-disabled",
			pod: labelPod(harness.AppPod("opt-in"), "sidecar-injector.io/inject", "true"), want: notSent},
		{name: "kube-system, even labelled: never sent", ns: "kube-system", pod: harness.AppPod("system"), want: notSent},
		{name: "the injector's namespace, even labelled: never sent", ns: releaseNamespace, pod: harness.AppPod("self"), want: notSent},
	}
	stored := map[string]*corev1.Pod{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := createAndCheck(t, cs, tc)
			if got != nil {
				stored[tc.name] = got
			}
		})
	}

	t.Run("an injected pod submitted again is admitted unchanged", func(t *testing.T) {
		prev := stored[cases[0].name]
		require.NotNil(t, prev)
		again := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain-again", Labels: prev.Labels, Annotations: prev.Annotations}, Spec: *prev.Spec.DeepCopy()}
		// Fields the API server owns for the first pod.
		again.Spec.NodeName = ""
		again.Spec.Volumes = slices.DeleteFunc(again.Spec.Volumes, func(v corev1.Volume) bool { return strings.HasPrefix(v.Name, "kube-api-access-") })
		for _, list := range [][]corev1.Container{again.Spec.Containers, again.Spec.InitContainers} {
			for i := range list {
				list[i].VolumeMounts = slices.DeleteFunc(list[i].VolumeMounts, func(m corev1.VolumeMount) bool {
					return strings.HasPrefix(m.Name, "kube-api-access-")
				})
			}
		}
		createAndCheck(t, cs, podCase{ns: "e2e-enabled", pod: again, want: skipped, reason: inject.ReasonAlreadyInjected})
	})
}

// createAndCheck creates the pod and checks what the API server stored
// and what the injector counted.
func createAndCheck(t *testing.T, cs kubernetes.Interface, tc podCase) *corev1.Pod {
	t.Helper()
	ctx := t.Context()
	sent := tc.pod.DeepCopy()
	total := admissionsTotal(t)
	var before float64
	if tc.want != notSent {
		before = injections(t, resultOf(tc.want), string(tc.reason))
	}
	got, err := cs.CoreV1().Pods(tc.ns).Create(ctx, tc.pod, metav1.CreateOptions{})

	switch tc.want {
	case refused:
		require.Error(t, err, "the API server must refuse the pod")
		assert.True(t, apierrors.IsForbidden(err) || apierrors.IsBadRequest(err), "%T %v", err, err)
		assert.Contains(t, err.Error(), tc.errSub)
		assert.Contains(t, err.Error(), `admission webhook "namespace.sidecar-injector.io" denied the request`)
		_, gerr := cs.CoreV1().Pods(tc.ns).Get(ctx, sent.Name, metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(gerr), "a refused pod is not stored")
	default:
		require.NoError(t, err, "the API server must accept the pod")
	}
	if tc.want == notSent {
		assert.Equal(t, total, admissionsTotal(t), "the webhook must not have been called")
	} else {
		assert.Equal(t, before+1, injections(t, resultOf(tc.want), string(tc.reason)), "one %s/%s admission", resultOf(tc.want), tc.reason)
	}
	if err != nil {
		return nil
	}
	// What is stored, read back from etcd through the API server.
	got, err = cs.CoreV1().Pods(tc.ns).Get(ctx, got.Name, metav1.GetOptions{})
	require.NoError(t, err)
	if tc.want == injected {
		checkInjected(t, sent, got, tc)
	} else {
		checkUntouched(t, sent, got)
	}
	return got
}

func resultOf(want string) string {
	if want == skipped || want == injected || want == refused {
		return want
	}
	return ""
}

func checkInjected(t *testing.T, sent, got *corev1.Pod, tc podCase) {
	t.Helper()
	st, ok, err := inject.ReadStatus(got)
	require.NoError(t, err)
	require.True(t, ok, "the status annotation is stored")
	assert.Equal(t, tc.policy, st.Policy)
	assert.Equal(t, tc.native, st.Native)

	initC := containerByName(got.Spec.InitContainers, "mesh-init")
	require.NotNil(t, initC, "mesh-init init container")
	assert.Equal(t, e2eInitImage, initC.Image, "the chart's meshInit.image reaches the pod")

	var proxy *corev1.Container
	if tc.native {
		proxy = containerByName(got.Spec.InitContainers, "mesh-proxy")
		require.NotNil(t, proxy, "native sidecar: mesh-proxy is an init container")
		require.NotNil(t, proxy.RestartPolicy)
		assert.Equal(t, corev1.ContainerRestartPolicyAlways, *proxy.RestartPolicy)
		assert.Nil(t, containerByName(got.Spec.Containers, "mesh-proxy"))
	} else {
		require.NotEmpty(t, got.Spec.Containers)
		proxy = &got.Spec.Containers[0]
		assert.Equal(t, "mesh-proxy", proxy.Name, "classic sidecar: mesh-proxy goes first")
		assert.Nil(t, containerByName(got.Spec.InitContainers, "mesh-proxy"))
	}
	assert.Equal(t, e2eProxyImage, proxy.Image, "the chart's proxy.image reaches the pod")
	assert.Equal(t, corev1.PullAlways, proxy.ImagePullPolicy, "the chart's proxy.pullPolicy reaches the pod")
	if tc.policy == "payments" {
		assert.Contains(t, strings.Join(proxy.Args, " "), "--log-level debug", "the payments policy from values sets the log level")
	}
	for _, app := range sent.Spec.Containers {
		c := containerByName(got.Spec.Containers, app.Name)
		require.NotNil(t, c, "app container %s kept", app.Name)
		assert.Equal(t, app.Image, c.Image)
		assert.NotNil(t, c.Lifecycle, "app %s gets the preStop hook", app.Name)
		assert.True(t, slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "mesh-tools" }),
			"app %s mounts the hook tool", app.Name)
	}
}

// checkUntouched compares what was sent with what was stored, ignoring
// what the API server itself adds (defaults, the ServiceAccount token).
func checkUntouched(t *testing.T, sent, got *corev1.Pod) {
	t.Helper()
	assert.Equal(t, nilIfEmpty(sent.Annotations), nilIfEmpty(got.Annotations), "annotations as sent")
	assert.Equal(t, names(sent.Spec.Containers), names(got.Spec.Containers))
	assert.Equal(t, names(sent.Spec.InitContainers), names(got.Spec.InitContainers))
	for _, pair := range [][2][]corev1.Container{{sent.Spec.Containers, got.Spec.Containers}, {sent.Spec.InitContainers, got.Spec.InitContainers}} {
		for i := range pair[0] {
			assert.Equal(t, pair[0][i].Image, pair[1][i].Image)
			assert.Equal(t, pair[0][i].Command, pair[1][i].Command)
			assert.Equal(t, pair[0][i].Args, pair[1][i].Args)
			assert.Equal(t, pair[0][i].Lifecycle, pair[1][i].Lifecycle)
		}
	}
	var vols []string
	for _, v := range got.Spec.Volumes {
		if !strings.HasPrefix(v.Name, "kube-api-access-") {
			vols = append(vols, v.Name)
		}
	}
	var sentVols []string
	for _, v := range sent.Spec.Volumes {
		sentVols = append(sentVols, v.Name)
	}
	assert.Equal(t, sentVols, vols, "volumes as sent")
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func containerByName(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}
