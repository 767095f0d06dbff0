package anchor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// discardWriter keeps nothing but the size, so the benchmark measures the
// handler, not a recorder (the same as webhook/bench_test.go's).
type discardWriter struct {
	h http.Header
	n int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

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

// BenchmarkAdmission is one admission in-process, AdmissionReview bytes in
// and response bytes out, on the bench review: Istio's injector (istiod's
// /inject handler, default install, native sidecars) and a no-op handler.
//
//	go test ./anchor/ -run '^$' -bench Admission -benchmem -count 5
func BenchmarkAdmission(b *testing.B) {
	body := benchReview(b)
	b.Run("istio", func(b *testing.B) {
		benchHandler(b, istio(b, true).Handler, body, true)
	})
	b.Run("noop", func(b *testing.B) {
		benchHandler(b, NoOp, body, false)
	})
}

// benchHandler sends body to h b.N times, after checking once that the
// answer is allowed (and, when inject, that it carries a patch).
func benchHandler(b *testing.B, h http.Handler, body []byte, inject bool) {
	rd := bytes.NewReader(body)
	req, _ := http.NewRequest(http.MethodPost, "/inject", rd)
	req.Header.Set("Content-Type", "application/json")
	var first bytes.Buffer
	rec := &bufWriter{h: http.Header{}, buf: &first}
	h.ServeHTTP(rec, req)
	inj := Inspect(b, body, first.Bytes())
	if inject && inj.PatchOps == 0 {
		b.Fatalf("the bench review was not injected: %s", first.Bytes())
	}
	b.ReportMetric(float64(len(first.Bytes())), "answer-bytes")
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
}

type bufWriter struct {
	h   http.Header
	buf *bytes.Buffer
}

func (w *bufWriter) Header() http.Header         { return w.h }
func (w *bufWriter) WriteHeader(int)             {}
func (w *bufWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }
