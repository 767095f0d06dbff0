// Package e2e tests the injector against a real kube-apiserver and etcd
// (controller-runtime's envtest, binaries built by test/tools/install.sh)
// with the webhook configuration rendered from the Helm chart.
//
// Prerequisites: kube-apiserver and etcd in $KUBEBUILDER_ASSETS (or
// install.sh's cache) and helm. Missing ones skip the tests with a one-line
// reason, or fail them when $CI is set.
//
//	eval "$(bash test/tools/install.sh --print-env)"
//	go test -race ./test/e2e/
//	go test -run '^$' -bench PodCreation -benchtime 500x ./test/e2e/   # pods/s, docs/e2e.md
package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	kversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/discovery"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sidecar-injector/injector/certs"
	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/test/testkit"
	"github.com/sidecar-injector/injector/webhook"
	"github.com/sidecar-injector/injector/webhook/inject"
)

// Names shared by the tests.
const (
	// release and releaseNamespace are what the chart is rendered as.
	release          = "sidecar-injector"
	releaseNamespace = "mesh-system"
	// suiteLabel scopes each test's webhook configuration to its own
	// namespaces (harness.Scope), on top of the chart's selectors.
	suiteLabel   = "e2e.sidecar-injector.io/suite"
	injectionKey = "sidecar-injector.io/injection"
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopShared()
	harness.RemoveBuilt()
	os.Exit(code)
}

func helmBin(t testing.TB) string {
	t.Helper()
	p, err := harness.Helm()
	testkit.Need(t, err)
	return p
}

var (
	cpOnce sync.Once
	cp     *harness.ControlPlane
	cpErr  error

	injOnce sync.Once
	inj     *injector
	injErr  error
)

// controlPlane starts (once per package) kube-apiserver and etcd, with
// cert-manager's CRDs installed from its Go module.
func controlPlane(t testing.TB) *harness.ControlPlane {
	t.Helper()
	_, err := harness.ControlPlaneAssets()
	testkit.Need(t, err)
	cpOnce.Do(func() {
		start := time.Now()
		var crds string
		if crds, cpErr = harness.CertManagerCRDs(); cpErr != nil {
			return
		}
		cp, cpErr = harness.StartControlPlane(harness.ControlPlaneOptions{CRDDirs: []string{crds}})
		if cpErr == nil {
			fmt.Fprintf(os.Stderr, "e2e: kube-apiserver %s and etcd %s started in %s\n", harness.KubeVersion, harness.EtcdVersion, time.Since(start).Round(time.Millisecond))
		}
	})
	if cpErr != nil {
		t.Fatalf("control plane: %v", cpErr)
	}
	return cp
}

// injector is the webhook server running in this test process, the real
// way: webhook.Serve with the Namespace watch (webhook.NewCachedNamespaces)
// and the chart's policy file rendered with testdata/e2e-values.yaml.
// webhook.Serve registers process-wide metrics, so there is one per
// process; TestSelfManagedTLS runs the built binary instead.
type injector struct {
	Addr     string
	URL      string
	CABundle []byte
	ca       *certs.CA
	logs     *harness.SyncBuffer
	cancel   context.CancelFunc
	done     chan error
	dir      string // the policy file and TLS pair, removed by stopShared
}

func sharedInjector(t testing.TB) *injector {
	t.Helper()
	c := controlPlane(t)
	helm := helmBin(t)
	injOnce.Do(func() { inj, injErr = startInjector(c, helm) })
	if injErr != nil {
		t.Fatalf("injector: %v", injErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("injector log (last 8 KiB):\n%s", inj.logs.Tail(8<<10))
		}
	})
	return inj
}

func startInjector(c *harness.ControlPlane, helm string) (*injector, error) {
	ctx := context.Background()
	rendered, err := harness.Render(ctx, helm, release, releaseNamespace, []string{e2eValues()})
	if err != nil {
		return nil, err
	}
	objs, err := harness.Manifests(rendered)
	if err != nil {
		return nil, err
	}
	policy, err := harness.PolicyFile(objs)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "e2e-injector-")
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			os.RemoveAll(dir)
		}
	}()
	configPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configPath, policy, 0o644); err != nil {
		return nil, err
	}
	ca, err := certs.NewCA("e2e-ca", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	pair, err := ca.IssueServing([]string{"127.0.0.1", "localhost"}, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "tls")
	if err := certs.WriteDir(certDir, pair, ca.CertPEM); err != nil {
		return nil, err
	}
	native, err := nativeSidecars(c)
	if err != nil {
		return nil, err
	}
	cached, err := webhook.NewCachedNamespaces(c.Config)
	if err != nil {
		return nil, err
	}
	if cached.Ready() == nil {
		return nil, fmt.Errorf("the namespace cache reports ready before it started")
	}
	addr, err := harness.FreeAddr()
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	go func() {
		if err := cached.Start(sctx); err != nil && sctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "e2e: namespace watch failed:", err)
		}
	}()
	// Events on the owners of pods that are not injected, as `injector
	// serve` records them.
	events, err := webhook.NewEventRecorder(sctx, c.Config)
	if err != nil {
		cancel()
		return nil, err
	}
	in := &injector{Addr: addr, URL: "https://" + addr + webhook.InjectPath, CABundle: ca.CertPEM, ca: ca,
		logs: &harness.SyncBuffer{}, cancel: cancel, done: make(chan error, 1), dir: dir}
	handler := slog.NewTextHandler(in.logs, &slog.HandlerOptions{Level: slog.LevelInfo})
	// controller-runtime's webhook server and certwatcher log through it,
	// as in `injector serve`.
	ctrllog.SetLogger(logr.FromSlogHandler(handler))
	ready := make(chan struct{})
	go func() {
		in.done <- webhook.Serve(sctx, webhook.ServeOptions{
			Listen:  addr,
			CertDir: certDir,
			Loader: inject.NewLoader(configPath, inject.Options{
				NativeSidecarsSupported: native, InjectorNamespace: releaseNamespace}),
			Namespaces:  cached,
			ReadyChecks: map[string]func() error{"namespaces": cached.Ready},
			Log:         slog.New(handler),
			OnReady:     func() { close(ready) },
			Events:      events,
		})
	}()
	select {
	case <-ready:
	case err := <-in.done:
		cancel()
		return nil, fmt.Errorf("webhook.Serve: %v\n%s", err, in.logs.Tail(4096))
	case <-time.After(harness.Deadline):
		cancel()
		return nil, fmt.Errorf("the injector is not ready (OnReady not called) after %s (namespace watch not synced?)\n%s", harness.Deadline, in.logs.Tail(4096))
	}
	started = true
	return in, nil
}

func stopShared() {
	istioInst.stop()
	if inj != nil {
		inj.cancel()
		select {
		case <-inj.done:
		case <-time.After(harness.Deadline):
			fmt.Fprintf(os.Stderr, "e2e: the injector did not stop within %s\n", harness.Deadline)
		}
		os.RemoveAll(inj.dir)
	}
	if cp != nil {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stopping the control plane:", err)
		}
	}
}

// nativeSidecars asks the API server its version, as `injector serve` does.
func nativeSidecars(c *harness.ControlPlane) (bool, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		return false, err
	}
	info, err := dc.ServerVersion()
	if err != nil {
		return false, err
	}
	v, err := kversion.ParseGeneric(info.GitVersion)
	if err != nil {
		return false, err
	}
	return v.AtLeast(kversion.MustParseGeneric("1.29.0")), nil
}

func e2eValues() string {
	return filepath.Join(harness.RepoRoot(), "test", "e2e", "testdata", "e2e-values.yaml")
}

// httpsClient trusts the given CA bundle.
func httpsClient(caPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: harness.Deadline, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// injections reads sidecar_injector_injections_total{result,reason} from
// the in-process injector's registry.
func injections(t testing.TB, result, reason string) float64 {
	t.Helper()
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sidecar_injector_injections_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "result") == result && label(m, "reason") == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// admissionsTotal is every admission the in-process injector answered.
func admissionsTotal(t testing.TB) float64 {
	t.Helper()
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "sidecar_injector_injections_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
