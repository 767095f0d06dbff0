package nodeharness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/test/node/images"
	"github.com/sidecar-injector/injector/webhook"
)

// InjectionLabel enables injection for a namespace.
const InjectionLabel = "sidecar-injector.io/injection"

// StatusAnnotation is what the injector writes on every pod it injects.
const StatusAnnotation = "sidecar-injector.io/status"

// InjectorOptions configure StartInjector.
type InjectorOptions struct {
	// Release and Namespace are what the chart is rendered as (defaults
	// sidecar-injector, mesh-system).
	Release, Namespace string
	// ValuesFiles and Set are passed to helm template after the node's own
	// values (the images of this node).
	ValuesFiles []string
	Set         []string
	// NamespaceLabels, when set, narrow every webhook entry to namespaces
	// that also carry these labels (and the readiness probe's namespace
	// carries them): a test's own injector serves only its namespaces.
	// The shared injector must then leave those namespaces alone
	// (ExcludeNamespaceLabels): since issue 16 an injector refuses a pod
	// whose status annotation records another policy's injection
	// (status_mismatch), as it must in a cluster, where one injector
	// serves a namespace.
	NamespaceLabels map[string]string
	// ExcludeNamespaceLabels narrow every webhook entry to namespaces
	// that carry none of these label keys.
	ExcludeNamespaceLabels []string
}

// Injector is `injector serve` running as the chart's Deployment would run
// it, registered on the API server with the chart's webhook configuration.
type Injector struct {
	Process *harness.Process
	// Policy is the policy file from the chart's ConfigMap.
	Policy  []byte
	Webhook *admissionregistrationv1.MutatingWebhookConfiguration
}

// NodeValues point the chart at the node's images: the Envoy STAND-IN as
// the proxy and the mesh-init image built from the Dockerfile's recipe.
func NodeValues() []string {
	repo := func(ref string) string { return strings.TrimSuffix(ref, ":"+images.Tag) }
	return []string{
		"proxy.image.repository=" + repo(images.ProxyRef), "proxy.image.tag=" + images.Tag,
		"meshInit.image.repository=" + repo(images.MeshInitRef), "meshInit.image.tag=" + images.Tag,
		"proxy.pullPolicy=IfNotPresent", "meshInit.pullPolicy=IfNotPresent",
	}
}

// StartInjector renders the chart with `helm template`, runs the injector
// binary with the Deployment's TLS arguments (self-managed TLS: the
// injector creates its Secret and patches the caBundle) and registers the
// chart's MutatingWebhookConfiguration, pointed at it by URL (the API
// server cannot reach a Service here). It returns once the API server
// injects a dry-run pod.
func (n *Node) StartInjector(ctx context.Context, o InjectorOptions) (*Injector, error) {
	if o.Release == "" {
		o.Release = "sidecar-injector"
	}
	if o.Namespace == "" {
		o.Namespace = "mesh-system"
	}
	helm, err := harness.Helm()
	if err != nil {
		return nil, err
	}
	rendered, err := harness.Render(ctx, helm, o.Release, o.Namespace, o.ValuesFiles, append(NodeValues(), o.Set...)...)
	if err != nil {
		return nil, err
	}
	objs, err := harness.Manifests(rendered)
	if err != nil {
		return nil, err
	}
	in := &Injector{}
	if in.Webhook, err = harness.WebhookConfiguration(objs); err != nil {
		return nil, err
	}
	if in.Policy, err = harness.PolicyFile(objs); err != nil {
		return nil, err
	}
	dep := &appsv1.Deployment{}
	if err := harness.Decode(harness.Find(objs, "Deployment"), dep); err != nil {
		return nil, err
	}
	dir := filepath.Join(n.Dir, "injector-"+o.Release)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	configPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configPath, in.Policy, 0o644); err != nil {
		return nil, err
	}
	if err := n.EnsureNamespace(ctx, o.Namespace, nil); err != nil {
		return nil, err
	}
	args := []string{"--kubeconfig=" + n.CP.Kubeconfig, "--namespace=" + o.Namespace, "--config=" + configPath,
		"--cert-dir=" + filepath.Join(dir, "tls"), "--tls-hosts=127.0.0.1"}
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
		for _, keep := range []string{"--tls-mode=", "--tls-secret=", "--webhook-configuration=", "--service="} {
			if strings.HasPrefix(a, keep) {
				args = append(args, a)
			}
		}
	}
	in.Process, err = harness.StartServe(n.Binaries["injector"], "injector "+o.Release, args...)
	if err != nil {
		return nil, err
	}
	n.injectors = append(n.injectors, in)
	// Registered once the process has its address, with no caBundle: the
	// self-managed mode fills it in, as in a cluster.
	harness.PointAt(in.Webhook, "https://"+in.Process.Addr+webhook.InjectPath, nil)
	for k, v := range o.NamespaceLabels {
		harness.Scope(in.Webhook, k, v)
	}
	for _, k := range o.ExcludeNamespaceLabels {
		harness.Exclude(in.Webhook, k)
	}
	if err := harness.ApplyWebhookConfiguration(ctx, n.Clientset, in.Webhook); err != nil {
		return nil, err
	}
	if err := in.Process.WaitReady(Deadline); err != nil {
		return nil, fmt.Errorf("%w\ninjector output:\n%s", err, in.Process.Out.Tail(4096))
	}
	probeNS, probeLabels := "node-tier-webhook-probe", map[string]string{InjectionLabel: "enabled"}
	if len(o.NamespaceLabels) > 0 {
		probeNS += "-" + o.Release
		for k, v := range o.NamespaceLabels {
			probeLabels[k] = v
		}
	}
	if err := n.EnsureNamespace(ctx, probeNS, probeLabels); err != nil {
		return nil, err
	}
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: probeNS},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: images.AppRef}}}}
	err = Poll(ctx, "the API server to call the injector (a dry-run pod injected)", func(ctx context.Context) (bool, string, error) {
		got, err := n.Clientset.CoreV1().Pods(probeNS).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err.Error(), nil
		}
		_, ok := got.Annotations[StatusAnnotation]
		return ok, "not injected yet", nil
	}, func() string { return "injector output:\n" + in.Process.Out.Tail(4096) })
	if err != nil {
		return nil, err
	}
	return in, nil
}

func (in *Injector) stop() { in.Process.Stop() }
