package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	jsonpatchv4 "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/certs"
	"github.com/sidecar-injector/injector/test/testkit"
	"github.com/sidecar-injector/injector/test/testkit/podcases"
	"github.com/sidecar-injector/injector/webhook/inject"
)

// deadline bounds every wait of the tests that run Serve: the server
// becoming ready and stopping, an answer, a reload or a rotation being
// picked up. It is stated once, here, and generous (an idle run needs
// milliseconds to a fraction of a second for each); it says how long to
// wait for something that must happen, never how fast it must happen.
// TEST_DEADLINE_SCALE raises it on a slower machine.
var deadline = testkit.Deadline(time.Minute)

// eventually waits, within deadline, until cond holds, and otherwise fails
// the test saying what it waited for.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, deadline, 20*time.Millisecond, "waited %s for %s", deadline, what)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// testServer runs Serve for real: HTTPS with certificates in a directory,
// a policy file, a metrics address.
type testServer struct {
	addr, metrics string
	certDir       string
	configPath    string
	pool          *x509.CertPool
	client        *http.Client
	cancel        context.CancelFunc
	done          chan error
}

func writePolicy(t *testing.T, path, logLevel string, drain int) {
	t.Helper()
	policy := fmt.Sprintf(`apiVersion: sidecar-injector.io/v1alpha1
kind: InjectorConfig
defaults:
  settings:
    proxy: {logLevel: %s}
    lifecycle: {drainSeconds: %d}
`, logLevel, drain)
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(policy), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

// newPair makes a CA and a serving certificate for loopback; the CA goes
// into pool (before any client uses the pool: CertPool is not safe for
// concurrent writes).
func newPair(t *testing.T, pool *x509.CertPool) (*certs.Pair, *certs.CA) {
	t.Helper()
	ca, err := certs.NewCA("test-ca", time.Hour)
	require.NoError(t, err)
	pair, err := ca.IssueServing([]string{"127.0.0.1", "localhost"}, time.Hour)
	require.NoError(t, err)
	pool.AddCert(ca.Cert)
	return pair, ca
}

func install(t *testing.T, dir string, pair *certs.Pair, ca *certs.CA) *x509.Certificate {
	t.Helper()
	require.NoError(t, certs.WriteDir(dir, pair, ca.CertPEM))
	cert, err := certs.ParseCertificate(pair.CertPEM)
	require.NoError(t, err)
	return cert
}

func startServer(t *testing.T, ns NamespaceSource, shutdownDelay time.Duration, opts ...func(*ServeOptions)) *testServer {
	t.Helper()
	s := &testServer{addr: freePort(t), metrics: freePort(t), certDir: t.TempDir(), pool: x509.NewCertPool(), done: make(chan error, 1)}
	pair, ca := newPair(t, s.pool)
	install(t, s.certDir, pair, ca)
	s.configPath = filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy(t, s.configPath, "info", 11)
	s.client = &http.Client{Timeout: deadline, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.pool}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 16}}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	ready := make(chan struct{})
	var once sync.Once
	loader := inject.NewLoader(s.configPath, podcases.Options(false))
	loader.Poll = 50 * time.Millisecond
	o := ServeOptions{
		Listen: s.addr, CertDir: s.certDir, MetricsListen: s.metrics,
		Loader:        loader,
		Namespaces:    ns,
		ShutdownDelay: shutdownDelay,
		Log:           slog.New(slog.DiscardHandler),
		OnReady:       func() { once.Do(func() { close(ready) }) },
	}
	for _, f := range opts {
		f(&o)
	}
	go func() { s.done <- Serve(ctx, o) }()
	select {
	case <-ready:
	case err := <-s.done:
		t.Fatalf("server stopped: %v", err)
	case <-time.After(deadline):
		t.Fatalf("server not ready (OnReady not called) after %s", deadline)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(deadline):
			t.Errorf("Serve did not return within %s of its context's end", deadline)
		}
	})
	return s
}

func (s *testServer) admit(t *testing.T, ns string, pod []byte) (*admissionv1.AdmissionResponse, error) {
	req, _ := http.NewRequest(http.MethodPost, "https://"+s.addr+InjectPath, strings.NewReader(string(review("u", admissionv1.Create, ns, "Pod", pod, false))))
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var rev admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&rev); err != nil {
		return nil, err
	}
	return rev.Response, nil
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var plainPod = []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"web-","namespace":"shop"},"spec":{"containers":[{"name":"web","image":"web:1"}]}}`)

// configOf reads back which configuration an injected pod was made with.
func configOf(t *testing.T, r *admissionv1.AdmissionResponse) string {
	t.Helper()
	if r == nil || !r.Allowed || len(r.Patch) == 0 {
		return "not injected"
	}
	patch, err := jsonpatchv4.DecodePatch(r.Patch)
	require.NoError(t, err)
	out, err := patch.Apply(plainPod)
	require.NoError(t, err)
	var pod corev1.Pod
	require.NoError(t, json.Unmarshal(out, &pod))
	var level, sleep string
	for _, c := range pod.Spec.Containers {
		for i, a := range c.Args {
			if a == "--log-level" {
				level = c.Args[i+1]
			}
		}
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil {
			for _, a := range c.Lifecycle.PreStop.Exec.Command {
				if strings.HasPrefix(a, "--sleep=") && c.Name == "web" {
					sleep = strings.TrimPrefix(a, "--sleep=")
				}
			}
		}
	}
	return level + "/" + sleep
}

var shopNS = StaticNamespaces{"shop": {"sidecar-injector.io/injection": "enabled"}}

func TestServeHealthMetricsAndTLS(t *testing.T) {
	s := startServer(t, shopNS, 0)

	r, err := s.admit(t, "shop", plainPod)
	require.NoError(t, err)
	assert.Equal(t, "info/11s", configOf(t, r))

	code, body := get(t, "http://"+s.metrics+"/readyz")
	assert.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "[+] tls ok")
	code, _ = get(t, "http://"+s.metrics+"/healthz")
	assert.Equal(t, http.StatusOK, code)
	_, metrics := get(t, "http://"+s.metrics+"/metrics")
	assert.Contains(t, metrics, `sidecar_injector_injections_total{reason="namespace_enabled",result="injected"}`)
	assert.Contains(t, metrics, `controller_runtime_webhook_requests_total{code="200",webhook="/inject"}`)
	assert.Contains(t, metrics, "sidecar_injector_config_valid 1")
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "sidecar_injector_injections_total{") {
			assert.NotContains(t, line, "namespace=", "no namespace label: the series must stay bounded")
			assert.NotContains(t, line, "pod=")
		}
	}
	code, body = get(t, "http://"+s.metrics+"/debug/explain?namespace=shop&format=text")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "policy:     default")
	assert.Regexp(t, `proxy.logLevel\s+info\s+\(file defaults\)`, body)

	// The HTTPS port serves health too, and speaks HTTP/2.
	resp, err := s.client.Get("https://" + s.addr + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, 2, resp.ProtoMajor)

	// TLS 1.2 or newer only.
	_, err = tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool, MaxVersion: tls.VersionTLS11})
	assert.Error(t, err, "TLS 1.1 must be refused")
	conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12})
	require.NoError(t, err)
	conn.Close()
}

// HTTP1Only takes h2 out of ALPN: a client that would use HTTP/2 gets
// HTTP/1.1, and admissions work the same.
func TestServeHTTP1Only(t *testing.T) {
	s := startServer(t, shopNS, 0, func(o *ServeOptions) { o.HTTP1Only = true })
	r, err := s.admit(t, "shop", plainPod)
	require.NoError(t, err)
	assert.Equal(t, "info/11s", configOf(t, r))
	resp, err := s.client.Get("https://" + s.addr + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "HTTP/1.1", resp.Proto)
	conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool, NextProtos: []string{"h2", "http/1.1"}})
	require.NoError(t, err)
	assert.Equal(t, "http/1.1", conn.ConnectionState().NegotiatedProtocol)
	conn.Close()
}

// Rotated certificate files are picked up without a restart, and no request
// fails while they change.
func TestServeCertificateRotation(t *testing.T) {
	s := startServer(t, shopNS, 0)
	nextPair, nextCA := newPair(t, s.pool) // trusted before any client starts
	served := func() *x509.Certificate {
		conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool})
		require.NoError(t, err)
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	before := served()

	var failures, total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// New connections each time, so every handshake meets
				// whichever certificate is current.
				c := &http.Client{Timeout: deadline, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.pool}, DisableKeepAlives: true}}
				req, _ := http.NewRequest(http.MethodPost, "https://"+s.addr+InjectPath, strings.NewReader(string(review("u", admissionv1.Create, "shop", "Pod", plainPod, false))))
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				total.Add(1)
				if err != nil || resp.StatusCode != http.StatusOK {
					failures.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
			}
		}()
	}
	// Requests before, across and after the change, counted rather than
	// timed: a busy machine makes fewer in any given time.
	moreRequests := func(n int64) {
		t.Helper()
		want := total.Load() + n
		eventually(t, fmt.Sprintf("%d more requests", n), func() bool { return total.Load() >= want })
	}
	moreRequests(8)
	after := install(t, s.certDir, nextPair, nextCA)
	eventually(t, "the server to serve the new certificate without a restart", func() bool {
		return served().SerialNumber.Cmp(after.SerialNumber) == 0
	})
	assert.NotEqual(t, before.SerialNumber, after.SerialNumber)
	moreRequests(8)
	close(stop)
	wg.Wait()
	assert.Zero(t, failures.Load(), "no request may fail across a rotation (%d sent)", total.Load())
	assert.Greater(t, total.Load(), int64(10))
}

// A new policy file is swapped in atomically under concurrent admissions:
// every response is wholly the old or wholly the new configuration. An
// invalid file is rejected, the last good one keeps serving, /readyz says
// so and the metric shows it.
func TestServeReloadUnderLoad(t *testing.T) {
	s := startServer(t, shopNS, 0)
	var mu sync.Mutex
	seen := map[string]int{}
	count := func(config string) int { mu.Lock(); defer mu.Unlock(); return seen[config] }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := s.admit(t, "shop", plainPod)
				got := "error"
				if err == nil {
					got = configOf(t, r)
				}
				mu.Lock()
				seen[got]++
				mu.Unlock()
			}
		}()
	}
	// Each write is swapped in while the clients admit: wait until a few
	// answers carry it (counted, not timed, so a busy machine only makes
	// this slower).
	for i := 0; i < 6; i++ {
		level, drain, config := "debug", 22, "debug/22s"
		if i%2 == 1 {
			level, drain, config = "info", 11, "info/11s"
		}
		want := count(config) + 4
		writePolicy(t, s.configPath, level, drain)
		eventually(t, "4 admissions with "+config, func() bool { return count(config) >= want })
	}
	// A configuration not seen before, so waiting for it proves the
	// watcher has caught up with every write.
	writePolicy(t, s.configPath, "debug", 33)
	eventually(t, "the configuration debug/33s", func() bool {
		r, err := s.admit(t, "shop", plainPod)
		return err == nil && configOf(t, r) == "debug/33s"
	})

	// An empty file (as seen in the middle of a non-atomic write) is
	// rejected like any invalid one, never taken for the built-in defaults.
	require.NoError(t, os.WriteFile(s.configPath, nil, 0o644))
	eventually(t, "/readyz to report the empty file", func() bool {
		_, body := get(t, "http://"+s.metrics+"/readyz")
		return strings.Contains(body, "is empty")
	})
	r, err := s.admit(t, "shop", plainPod)
	require.NoError(t, err)
	assert.Equal(t, "debug/33s", configOf(t, r))

	// An invalid file: rejected, the last good configuration stays.
	invalid := s.configPath + ".tmp"
	require.NoError(t, os.WriteFile(invalid, []byte("apiVersion: sidecar-injector.io/v1alpha1\nkind: InjectorConfig\ndefaults: {settings: {proxy: {logLevel: loud}}}\n"), 0o644))
	require.NoError(t, os.Rename(invalid, s.configPath))
	eventually(t, "/readyz to report the invalid file", func() bool {
		_, body := get(t, "http://"+s.metrics+"/readyz")
		return strings.Contains(body, `"loud" is not one of`)
	})
	code, body := get(t, "http://"+s.metrics+"/readyz")
	assert.Equal(t, http.StatusOK, code, "a rejected reload must not take the replica out of service")
	assert.Contains(t, body, `"loud" is not one of`)
	_, metrics := get(t, "http://"+s.metrics+"/metrics")
	assert.Contains(t, metrics, "sidecar_injector_config_valid 0")
	assert.Contains(t, metrics, `sidecar_injector_config_loads_total{result="failure"}`)
	want := count("debug/33s") + 4
	eventually(t, "4 more admissions after the rejected file", func() bool { return count("debug/33s") >= want })
	close(stop)
	wg.Wait()

	r, err = s.admit(t, "shop", plainPod)
	require.NoError(t, err)
	assert.Equal(t, "debug/33s", configOf(t, r), "the last good configuration keeps serving")
	for k := range seen {
		assert.Contains(t, []string{"info/11s", "debug/22s", "debug/33s"}, k, "a response mixed configurations or failed")
	}
	assert.Greater(t, seen["info/11s"]+seen["debug/22s"], 20)
}

// blockingNamespaces holds admissions for the namespace "slow" until
// released, to have a request in flight during shutdown.
type blockingNamespaces struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blockingNamespaces) Labels(_ context.Context, name string) (map[string]string, error) {
	if name == "slow" {
		b.entered <- struct{}{}
		<-b.release
	}
	return map[string]string{"sidecar-injector.io/injection": "enabled"}, nil
}

// On SIGTERM (context cancel) the server reports not ready, stops accepting
// new connections and finishes the requests in flight before Serve returns.
func TestServeGracefulShutdown(t *testing.T) {
	ns := &blockingNamespaces{entered: make(chan struct{}, 1), release: make(chan struct{})}
	s := startServer(t, ns, 300*time.Millisecond)

	result := make(chan error, 1)
	go func() {
		r, err := s.admit(t, "slow", plainPod)
		if err == nil && (r == nil || !r.Allowed || len(r.Patch) == 0) {
			err = fmt.Errorf("in-flight admission was not injected: %+v", r)
		}
		result <- err
	}()
	<-ns.entered
	s.cancel()

	eventually(t, "/readyz to report not ready once shutting down", func() bool {
		resp, err := http.Get("http://" + s.metrics + "/readyz")
		if err != nil {
			return true
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})

	// Past the shutdown delay the listener closes; Serve must still be
	// waiting for the request in flight. The extra half second gives a
	// wrong Serve time to return: a slow machine can only hide that, never
	// fail a right one.
	eventually(t, "the listener to close", func() bool {
		conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool})
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	select {
	case err := <-s.done:
		t.Fatalf("Serve returned with a request in flight: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	close(ns.release)
	require.NoError(t, <-result, "the in-flight request completes")
	select {
	case err := <-s.done:
		assert.NoError(t, err)
		s.done <- err // for the cleanup
	case <-time.After(deadline):
		t.Fatalf("Serve did not return within %s of the last request", deadline)
	}
	_, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool})
	assert.Error(t, err, "no new connections after shutdown")
}

// lockedBuffer is a log destination safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A legal value that is probably a mistake loads, and the server says so
// in its log and in /readyz, without failing readiness.
func TestServeReportsPolicyWarnings(t *testing.T) {
	var logs lockedBuffer
	s := startServer(t, shopNS, 0, func(o *ServeOptions) { o.Log = slog.New(slog.NewJSONHandler(&logs, nil)) })
	_, body := get(t, "http://"+s.metrics+"/readyz")
	assert.NotContains(t, body, "policy warning")

	tmp := s.configPath + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte("apiVersion: sidecar-injector.io/v1alpha1\nkind: InjectorConfig\ndefaults: {settings: {envoy: {outbound: {connectTimeout: 5ms}}}}\n"), 0o644))
	require.NoError(t, os.Rename(tmp, s.configPath))
	const want = "defaults: settings.envoy.outbound.connectTimeout: 5ms is under 10ms"
	require.Eventually(t, func() bool {
		_, body := get(t, "http://"+s.metrics+"/readyz")
		return strings.Contains(body, "[!] policy warning: "+want)
	}, 10*time.Second, 20*time.Millisecond)
	code, _ := get(t, "http://"+s.metrics+"/readyz")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, logs.String(), want)
	assert.Contains(t, logs.String(), `"level":"WARN"`)
}
