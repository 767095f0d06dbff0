// Package sidebyside puts Istio's injector, ours and a no-op handler in one
// test binary, on the same review. It is a module of its own because one
// binary holds one version of each dependency: here the product's newer
// k8s.io (v0.37), controller-runtime and go-control-plane win over the
// versions istio.io/istio asks for, so Istio is compiled against them; the
// anchor binary (..) keeps Istio's own versions.
package sidebyside

import (
	"os"
	"testing"

	istiolog "istio.io/istio/pkg/log"

	"github.com/sidecar-injector/injector/test/istio-anchor/anchor"
	"github.com/sidecar-injector/injector/test/istio-anchor/anchor/anchortest"
	"github.com/sidecar-injector/injector/test/testkit/podcases"
	"github.com/sidecar-injector/injector/webhook"
	"github.com/sidecar-injector/injector/webhook/inject"
)

func TestMain(m *testing.M) {
	// istiod's level (info: a line per injection), written nowhere.
	lo := istiolog.DefaultOptions()
	lo.OutputPaths = []string{os.DevNull}
	if err := istiolog.Configure(lo); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// ours is the handler `injector serve` mounts, with the built-in defaults
// and native sidecars, for namespace "shop" labelled for injection (as
// webhook/bench_test.go's BenchmarkAdmission/default).
func ours(tb testing.TB) *webhook.Handler {
	e, err := inject.Compile(nil, podcases.Options(true))
	if err != nil {
		tb.Fatal(err)
	}
	return webhook.NewHandler(e, webhook.StaticNamespaces{"shop": {"sidecar-injector.io/injection": "enabled"}}, nil, nil)
}

func istio(tb testing.TB) *anchor.Anchor {
	a, err := anchor.New(anchor.Options{NativeSidecars: true})
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// TestBothInject: both injectors inject the bench review; sizes logged.
func TestBothInject(t *testing.T) {
	body := anchortest.BenchReview(t, "../../..")
	for _, tc := range []struct {
		name string
		inj  anchortest.Injection
	}{
		{"istio", anchortest.Admit(t, istio(t).Handler, "/inject", body)},
		{"ours", anchortest.Admit(t, ours(t), webhook.InjectPath, body)},
	} {
		if tc.inj.PatchOps == 0 {
			t.Fatalf("%s: not injected", tc.name)
		}
		t.Logf("%s: answer %d bytes, patch %d bytes in %d operations, pod %d -> %d bytes; init %v, containers %v", tc.name,
			tc.inj.AnswerBytes, len(tc.inj.Response.Patch), tc.inj.PatchOps, tc.inj.PodBytes, tc.inj.InjectedPodBytes, tc.inj.InitNames, tc.inj.ContainerNames)
	}
}

// BenchmarkSideBySide: one admission in-process, bytes in, answer bytes
// out, for each handler in turn.
//
//	go test -run '^$' -bench SideBySide -benchmem -count 5
func BenchmarkSideBySide(b *testing.B) {
	body := anchortest.BenchReview(b, "../../..")
	b.Run("istio", func(b *testing.B) { anchortest.Bench(b, istio(b).Handler, "/inject", body, true) })
	b.Run("ours", func(b *testing.B) { anchortest.Bench(b, ours(b), webhook.InjectPath, body, true) })
	b.Run("noop", func(b *testing.B) { anchortest.Bench(b, anchortest.NoOp, "/inject", body, false) })
}
