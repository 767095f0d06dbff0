package anchor

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	istiolog "istio.io/istio/pkg/log"
)

// The bench review: ../shared/bench/admission-review.json, of which the
// product keeps a copy at webhook/testdata/bench/ (the same bytes).
// ISTIO_ANCHOR_REVIEW names another file.
func benchReview(tb testing.TB) []byte {
	tb.Helper()
	p := os.Getenv("ISTIO_ANCHOR_REVIEW")
	if p == "" {
		p = filepath.Join("..", "..", "..", "webhook", "testdata", "bench", "admission-review.json")
	}
	body, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

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

// Injection is what one answer did to the pod.
type Injection struct {
	Response               *admissionv1.AdmissionResponse
	AnswerBytes, PatchOps  int
	PodBytes, InjectedPod  int
	Injected               corev1.Pod
	InitNames, ContainerNs []string
}

func admit(tb testing.TB, h http.Handler, body []byte) Injection {
	tb.Helper()
	req := httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		tb.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	return Inspect(tb, body, rec.Body.Bytes())
}

// Inspect decodes an answer to review and applies its patch to the pod.
func Inspect(tb testing.TB, review, answer []byte) Injection {
	tb.Helper()
	var in, out admissionv1.AdmissionReview
	if err := json.Unmarshal(review, &in); err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(answer, &out); err != nil {
		tb.Fatalf("answer: %v: %s", err, answer)
	}
	r := out.Response
	if r == nil || !r.Allowed || r.UID != in.Request.UID {
		tb.Fatalf("not allowed, or another uid: %s", answer)
	}
	inj := Injection{Response: r, AnswerBytes: len(answer), PodBytes: len(in.Request.Object.Raw)}
	if len(r.Patch) == 0 {
		return inj
	}
	if r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
		tb.Fatalf("patch type %v", r.PatchType)
	}
	var ops []map[string]any
	if err := json.Unmarshal(r.Patch, &ops); err != nil {
		tb.Fatal(err)
	}
	inj.PatchOps = len(ops)
	p, err := jsonpatch.DecodePatch(r.Patch)
	if err != nil {
		tb.Fatal(err)
	}
	pod, err := p.Apply(in.Request.Object.Raw)
	if err != nil {
		tb.Fatalf("the patch does not apply: %v", err)
	}
	inj.InjectedPod = len(pod)
	if err := json.Unmarshal(pod, &inj.Injected); err != nil {
		tb.Fatal(err)
	}
	for _, c := range inj.Injected.Spec.InitContainers {
		inj.InitNames = append(inj.InitNames, c.Name)
	}
	for _, c := range inj.Injected.Spec.Containers {
		inj.ContainerNs = append(inj.ContainerNs, c.Name)
	}
	return inj
}

func find(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

// TestIstioInjectsBenchReview: Istio's default install injects the bench
// pod, as a native sidecar (an init container that restarts Always, after
// istio-init) on Kubernetes >= 1.33, as a plain container otherwise.
func TestIstioInjectsBenchReview(t *testing.T) {
	body := benchReview(t)
	for _, native := range []bool{true, false} {
		a := istio(t, native)
		inj := admit(t, a.Handler, body)
		if inj.PatchOps == 0 {
			t.Fatalf("native=%v: no patch: %+v", native, inj.Response)
		}
		init := find(inj.Injected.Spec.InitContainers, "istio-init")
		if init == nil {
			t.Fatalf("native=%v: no istio-init: %v", native, inj.InitNames)
		}
		proxyInit := find(inj.Injected.Spec.InitContainers, "istio-proxy")
		proxy := find(inj.Injected.Spec.Containers, "istio-proxy")
		if native {
			if proxyInit == nil || proxy != nil || proxyInit.RestartPolicy == nil || *proxyInit.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Fatalf("native: want istio-proxy as an init container restarting Always: init %v, containers %v", inj.InitNames, inj.ContainerNs)
			}
		} else if proxy == nil || proxyInit != nil {
			t.Fatalf("not native: want istio-proxy among containers: init %v, containers %v", inj.InitNames, inj.ContainerNs)
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
			native, inj.AnswerBytes, len(inj.Response.Patch), inj.PatchOps, inj.PodBytes, inj.InjectedPod, inj.InitNames, inj.ContainerNs)
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
	inj := admit(t, istio(t, true).Handler, out)
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
