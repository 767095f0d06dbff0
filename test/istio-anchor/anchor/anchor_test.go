package anchor

import (
	"encoding/json"
	"os"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	istiolog "istio.io/istio/pkg/log"

	"github.com/sidecar-injector/injector/test/istio-anchor/anchor/anchortest"
)

func benchReview(tb testing.TB) []byte { return anchortest.BenchReview(tb, "../../..") }

func TestMain(m *testing.M) {
	// istiod's level (info: one line per injection), written nowhere, so
	// the line is still formatted but the benchmark output stays readable.
	lo := istiolog.DefaultOptions()
	lo.OutputPaths = []string{os.DevNull}
	if err := istiolog.Configure(lo); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// istio returns Istio's injector with the default install's configuration.
// The native-sidecar mode is a process-wide switch in Istio (features), so
// the last one built decides; tests build one mode at a time.
func istio(tb testing.TB, native bool) *Anchor {
	tb.Helper()
	a, err := New(Options{NativeSidecars: native})
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// TestIstioInjectsBenchReview: Istio's default install injects the bench
// pod, as a native sidecar (an init container that restarts Always, after
// istio-init) on Kubernetes >= 1.33, as a plain container otherwise.
func TestIstioInjectsBenchReview(t *testing.T) {
	body := benchReview(t)
	for _, native := range []bool{true, false} {
		a := istio(t, native)
		inj := anchortest.Admit(t, a.Handler, "/inject", body)
		if inj.PatchOps == 0 {
			t.Fatalf("native=%v: no patch: %+v", native, inj.Response)
		}
		init := anchortest.Find(inj.Injected.Spec.InitContainers, "istio-init")
		if init == nil {
			t.Fatalf("native=%v: no istio-init: %v", native, inj.InitNames)
		}
		proxyInit := anchortest.Find(inj.Injected.Spec.InitContainers, "istio-proxy")
		proxy := anchortest.Find(inj.Injected.Spec.Containers, "istio-proxy")
		if native {
			if proxyInit == nil || proxy != nil || proxyInit.RestartPolicy == nil || *proxyInit.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Fatalf("native: want istio-proxy as an init container restarting Always: init %v, containers %v", inj.InitNames, inj.ContainerNames)
			}
		} else if proxy == nil || proxyInit != nil {
			t.Fatalf("not native: want istio-proxy among containers: init %v, containers %v", inj.InitNames, inj.ContainerNames)
		}
		p := proxy
		if native {
			p = proxyInit
		}
		if p.Image != "docker.io/istio/proxyv2:"+DefaultTag {
			t.Errorf("proxy image %q", p.Image)
		}
		if inj.Injected.Annotations["sidecar.istio.io/status"] == "" {
			t.Error("no sidecar.istio.io/status annotation")
		}
		t.Logf("native=%v: answer %d bytes, patch %d bytes in %d operations, pod %d -> %d bytes; init %v, containers %v",
			native, inj.AnswerBytes, len(inj.Response.Patch), inj.PatchOps, inj.PodBytes, inj.InjectedPodBytes, inj.InitNames, inj.ContainerNames)
	}
}

// TestIstioSkipsOptOut: a pod that opts out is allowed unchanged, so the
// handler really decides per pod.
func TestIstioSkipsOptOut(t *testing.T) {
	body := benchReview(t)
	var rev map[string]any
	if err := json.Unmarshal(body, &rev); err != nil {
		t.Fatal(err)
	}
	obj := rev["request"].(map[string]any)["object"].(map[string]any)
	obj["metadata"].(map[string]any)["annotations"].(map[string]any)["sidecar.istio.io/inject"] = "false"
	out, err := json.Marshal(rev)
	if err != nil {
		t.Fatal(err)
	}
	inj := anchortest.Admit(t, istio(t, true).Handler, "/inject", out)
	if inj.PatchOps != 0 {
		t.Fatalf("opted-out pod patched with %d operations", inj.PatchOps)
	}
}

// TestWebhookConfigurationSelectsBenchNamespace: the API server calls
// Istio's injector only where its MutatingWebhookConfiguration's selectors
// match. The bench pod's namespace "shop" must carry istio-injection=enabled
// (Istio's usual opt-in; istio.io/rev=default works too), or the pod the
// label sidecar.istio.io/inject=true; the handler itself then injects every
// pod that does not opt out (policy: enabled).
func TestWebhookConfigurationSelectsBenchNamespace(t *testing.T) {
	a := istio(t, true)
	y, err := a.WebhookConfigurationFor("https://127.0.0.1:15017/inject", []byte("ca"))
	if err != nil {
		t.Fatal(err)
	}
	var mwc admissionregv1.MutatingWebhookConfiguration
	if err := yaml.Unmarshal(y, &mwc); err != nil {
		t.Fatal(err)
	}
	var rev admissionv1.AdmissionReview
	if err := json.Unmarshal(benchReview(t), &rev); err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(rev.Request.Object.Raw, &pod); err != nil {
		t.Fatal(err)
	}
	matching := func(nsLabels map[string]string) []string {
		var names []string
		for _, w := range mwc.Webhooks {
			ns, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
			if err != nil {
				t.Fatal(err)
			}
			obj, err := metav1.LabelSelectorAsSelector(w.ObjectSelector)
			if err != nil {
				t.Fatal(err)
			}
			if ns.Matches(labels.Set(nsLabels)) && obj.Matches(labels.Set(pod.Labels)) {
				names = append(names, w.Name)
			}
		}
		return names
	}
	if got := matching(map[string]string{"kubernetes.io/metadata.name": "shop"}); len(got) != 0 {
		t.Fatalf("an unlabelled namespace is selected by %v", got)
	}
	if got := matching(map[string]string{"kubernetes.io/metadata.name": "shop", "istio-injection": "enabled"}); len(got) != 1 || got[0] != "namespace.sidecar-injector.istio.io" {
		t.Fatalf("istio-injection=enabled: selected by %v", got)
	}
	if got := matching(map[string]string{"kubernetes.io/metadata.name": "shop", "istio.io/rev": "default"}); len(got) != 1 || got[0] != "rev.namespace.sidecar-injector.istio.io" {
		t.Fatalf("istio.io/rev=default: selected by %v", got)
	}
	for _, w := range mwc.Webhooks {
		if w.ClientConfig.URL == nil || *w.ClientConfig.URL != "https://127.0.0.1:15017/inject" || string(w.ClientConfig.CABundle) != "ca" {
			t.Fatalf("%s: client config not pointed at the anchor: %+v", w.Name, w.ClientConfig)
		}
	}
	t.Logf("%d webhooks: %s", len(mwc.Webhooks), y)
}
