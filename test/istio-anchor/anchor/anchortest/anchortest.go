// Package anchortest holds what the anchor's tests and benchmarks share
// with the side-by-side benchmark (../../sidebyside): the bench review, a
// no-op handler, the admission loop and the check of an answer.
package anchortest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
)

// BenchReview reads the bench review: ../shared/bench/admission-review.json,
// of which the product keeps a copy (the same bytes) at
// webhook/testdata/bench/ under repoRoot. ISTIO_ANCHOR_REVIEW names another
// file.
func BenchReview(tb testing.TB, repoRoot string) []byte {
	tb.Helper()
	p := os.Getenv("ISTIO_ANCHOR_REVIEW")
	if p == "" {
		p = filepath.Join(repoRoot, "webhook", "testdata", "bench", "admission-review.json")
	}
	body, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

// NoOp answers every review "allowed" having read only its uid: the same
// handler as test/e2e/perf_test.go's trivial webhook.
var NoOp = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
	var rev struct {
		Request struct {
			UID string `json:"uid"`
		} `json:"request"`
	}
	_ = json.NewDecoder(r.Body).Decode(&rev)
	rw.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(rw, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":%q,"allowed":true}}`, rev.Request.UID)
})

// Injection is what one answer did to the pod.
type Injection struct {
	Response                   *admissionv1.AdmissionResponse
	AnswerBytes, PatchOps      int
	PodBytes, InjectedPodBytes int
	Injected                   corev1.Pod
	InitNames, ContainerNames  []string
}

// Admit sends body to h at path and inspects the answer.
func Admit(tb testing.TB, h http.Handler, path string, body []byte) Injection {
	tb.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		tb.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	return Inspect(tb, body, rec.Body.Bytes())
}

// Inspect decodes an answer to review (allowed, same uid, a JSON patch if
// any) and applies its patch to the pod.
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
	inj.InjectedPodBytes = len(pod)
	if err := json.Unmarshal(pod, &inj.Injected); err != nil {
		tb.Fatal(err)
	}
	for _, c := range inj.Injected.Spec.InitContainers {
		inj.InitNames = append(inj.InitNames, c.Name)
	}
	for _, c := range inj.Injected.Spec.Containers {
		inj.ContainerNames = append(inj.ContainerNames, c.Name)
	}
	return inj
}

// Find returns the container called name, or nil.
func Find(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

// discardWriter keeps nothing but the size, so the benchmark measures the
// handler, not a recorder (the same as webhook/bench_test.go's).
type discardWriter struct {
	h http.Header
	n int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// Bench sends body to h at path b.N times, bytes in and answer bytes out,
// after checking once that the answer is allowed and, when wantPatch, that
// it carries a patch. It reports the answer's size as answer-B.
func Bench(b *testing.B, h http.Handler, path string, body []byte, wantPatch bool) {
	inj := Admit(b, h, path, body)
	if wantPatch && inj.PatchOps == 0 {
		b.Fatalf("the bench review was not injected: %+v", inj.Response)
	}
	rd := bytes.NewReader(body)
	req, _ := http.NewRequest(http.MethodPost, path, rd)
	req.Header.Set("Content-Type", "application/json")
	w := &discardWriter{h: http.Header{}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		w.n = 0
		h.ServeHTTP(w, req)
	}
	b.StopTimer()
	b.ReportMetric(float64(inj.AnswerBytes), "answer-B")
	b.ReportMetric(float64(inj.PatchOps), "patch-ops")
}
