package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	jsonpatchv4 "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidecar-injector/injector/test/testkit/podcases"
)

// fuzzServer is the handler without TLS (fuzzing needs speed) and without
// panic recovery (a panic must fail the fuzz run, not become a 500), twice:
// the production edge (the Handler, decoding a view of the pod) and
// controller-runtime's admission.Webhook over the same Handler (decoding
// the whole pod), so every fuzzed input also checks that the two agree.
func fuzzServer(f *testing.F) (http.Handler, http.Handler) {
	c, err := podcases.LoadCase(filepath.Join(fixturesDir, "plain.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	e, err := c.Compile()
	if err != nil {
		f.Fatal(err)
	}
	ns := StaticNamespaces{"shop": {"sidecar-injector.io/injection": "enabled"}, "sandbox": {}}
	h := NewHandler(e, ns, nil, nil)
	return h, &admission.Webhook{Handler: h, RecoverPanic: ptr.To(false)}
}

func serveOnce(t *testing.T, h http.Handler, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, InjectPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var rev admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &rev); err != nil || rev.Response == nil {
		t.Fatalf("the answer is not an AdmissionReview with a response: %v: %s", err, rec.Body.Bytes())
	}
	return rev.Response
}

func seedPods(f *testing.F) [][]byte {
	cases, err := podcases.LoadCases(fixturesDir)
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, c := range cases {
		out = append(out, c.Raw)
	}
	return out
}

// FuzzHandlerPod sends arbitrary pod objects inside well-formed reviews:
// the handler never panics, always answers, every patch applies to the
// object as sent, and admitting the patched pod again changes nothing.
func FuzzHandlerPod(f *testing.F) {
	h, full := fuzzServer(f)
	for _, p := range seedPods(f) {
		f.Add(p, "shop")
		f.Add(p, "sandbox")
	}
	f.Add([]byte(`{"metadata":{"annotations":{"sidecar-injector.io/proxy-cpu":"-1"}},"spec":{"containers":[{"name":"a"}]}}`), "shop")
	f.Fuzz(func(t *testing.T, pod []byte, ns string) {
		samePodDecode(t, pod)
		body := review("fuzz", admissionv1.Create, ns, "Pod", rawOrNull(pod), false)
		resp := serveOnce(t, h, body)
		sameAnswer(t, pod, resp, serveOnce(t, full, body))
		if len(resp.Patch) == 0 {
			return
		}
		if !resp.Allowed {
			t.Fatalf("a denied admission carries a patch")
		}
		patch, err := jsonpatchv4.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("patch does not decode: %v", err)
		}
		patched, err := patch.Apply(pod)
		if err != nil {
			t.Fatalf("patch does not apply to the object it was computed for: %v\nobject: %s\npatch: %s", err, pod, resp.Patch)
		}
		again := serveOnce(t, h, review("fuzz-again", admissionv1.Create, ns, "Pod", patched, false))
		if !again.Allowed || len(again.Patch) != 0 {
			t.Fatalf("not idempotent: the injected pod was %v again with patch %s", again.Result, again.Patch)
		}
	})
}

// FuzzHandlerReview sends arbitrary request bodies: the handler never
// panics and always answers with an AdmissionReview.
func FuzzHandlerReview(f *testing.F) {
	h, _ := fuzzServer(f)
	for _, p := range seedPods(f)[:3] {
		f.Add(review("seed", admissionv1.Create, "shop", "Pod", p, false))
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`))
	f.Add([]byte(`{"request":{"uid":"x","kind":{"kind":"Pod","version":"v1"},"operation":"CREATE","object":[]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		resp := serveOnce(t, h, body)
		if len(resp.Patch) > 0 && !resp.Allowed {
			t.Fatalf("a denied admission carries a patch")
		}
	})
}

// rawOrNull keeps invalid JSON from breaking the envelope: the review must
// be well-formed for the pod bytes to reach the handler.
func rawOrNull(b []byte) []byte {
	if !json.Valid(b) {
		return []byte("null")
	}
	return b
}

// sameAnswer fails unless the edge and the full decode agree: the same
// decision and, for an injection, patches that produce the same object.
func sameAnswer(t *testing.T, object []byte, edge, full *admissionv1.AdmissionResponse) {
	t.Helper()
	if edge.Allowed != full.Allowed || (len(edge.Patch) == 0) != (len(full.Patch) == 0) ||
		edge.AuditAnnotations["reason"] != full.AuditAnnotations["reason"] {
		if edge.Result != nil && full.Result != nil && edge.Result.Code == 400 && full.Result.Code == 400 {
			return // both refuse a malformed object, in their decoders' words
		}
		t.Fatalf("the edge and the full decode disagree on %s:\nedge: %+v\nfull: %+v", object, edge, full)
	}
	if len(edge.Patch) == 0 {
		return
	}
	apply := func(p []byte) string {
		patch, err := jsonpatchv4.DecodePatch(p)
		if err != nil {
			t.Fatalf("patch does not decode: %v", err)
		}
		out, err := patch.Apply(object)
		if err != nil {
			t.Fatalf("patch does not apply: %v", err)
		}
		var v any
		_ = json.Unmarshal(out, &v)
		b, _ := json.Marshal(v)
		return string(b)
	}
	if a, b := apply(edge.Patch), apply(full.Patch); a != b {
		t.Fatalf("the edge and the full decode patch %s differently:\nedge: %s\nfull: %s", object, a, b)
	}
}
