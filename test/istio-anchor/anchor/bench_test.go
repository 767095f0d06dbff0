package anchor

import (
	"testing"

	"github.com/sidecar-injector/injector/test/istio-anchor/anchor/anchortest"
)

// BenchmarkAdmission is one admission in-process, AdmissionReview bytes in
// and response bytes out, on the bench review: Istio's injector (istiod's
// /inject handler, default install, native sidecars) and a no-op handler
// (the e2e's trivial webhook). Ours beside them: ../sidebyside.
//
//	go test ./anchor/ -run '^$' -bench Admission -benchmem -count 5
func BenchmarkAdmission(b *testing.B) {
	body := benchReview(b)
	b.Run("istio", func(b *testing.B) {
		anchortest.Bench(b, istio(b, true).Handler, "/inject", body, true)
	})
	b.Run("noop", func(b *testing.B) {
		anchortest.Bench(b, anchortest.NoOp, "/inject", body, false)
	})
}
