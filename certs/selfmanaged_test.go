package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// These tests drive the self-managed mode with a fake clock against
// client-go's fake clientset; test/e2e runs it against a real API server,
// with real replicas racing and a real webhook admitting across rotations.

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func webhookConfig(name string) *admissionregistrationv1.MutatingWebhookConfiguration {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, n := range []string{"namespace.sidecar-injector.io", "object.sidecar-injector.io", "istio-alias.sidecar-injector.io"} {
		mwc.Webhooks = append(mwc.Webhooks, admissionregistrationv1.MutatingWebhook{Name: n})
	}
	return mwc
}

func newManager(t *testing.T, c kubernetes.Interface, clk *clock) *SelfManaged {
	t.Helper()
	m, err := NewSelfManaged(SelfManagedOptions{
		Client: c, Namespace: "mesh-system", SecretName: "injector-tls", WebhookConfiguration: "injector",
		Hosts: ServiceHosts("injector", "mesh-system"), CertDir: t.TempDir(),
		CAValidity: 30 * time.Minute, CertValidity: 6 * time.Minute, CAPropagation: time.Minute,
		Now: clk.now,
	})
	require.NoError(t, err)
	return m
}

// servedVerifies checks the invariant that matters: what a replica serves
// verifies against the caBundle the API server holds, at that moment.
func servedVerifies(t *testing.T, c kubernetes.Interface, m *SelfManaged, now time.Time) *x509.Certificate {
	t.Helper()
	certPEM, err := os.ReadFile(filepath.Join(m.o.CertDir, CertFile))
	require.NoError(t, err)
	keyPEM, err := os.ReadFile(filepath.Join(m.o.CertDir, KeyFile))
	require.NoError(t, err)
	_, err = tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err, "files form a pair")
	cert, err := ParseCertificate(certPEM)
	require.NoError(t, err)
	mwc, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), "injector", metav1.GetOptions{})
	require.NoError(t, err)
	for _, w := range mwc.Webhooks {
		pool := x509.NewCertPool()
		require.True(t, pool.AppendCertsFromPEM(w.ClientConfig.CABundle), "webhook %s has a caBundle", w.Name)
		_, err := cert.Verify(x509.VerifyOptions{DNSName: "injector.mesh-system.svc", Roots: pool, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		require.NoError(t, err, "webhook %s at %s", w.Name, now)
	}
	return cert
}

func TestSelfManagedRotatesWithoutBreakingTrust(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	start := clk.t
	c := fake.NewClientset(webhookConfig("injector"))
	a, b := newManager(t, c, clk), newManager(t, c, clk)

	require.Error(t, a.Ready(), "not ready before the first sync")
	serials := map[string]bool{}
	cas := map[string]bool{}
	maxBundle := 0
	// Two replicas, 45 minutes in 10-second steps: 1.5 CA lifetimes, many
	// serving certificate lifetimes.
	for clk.t.Before(start.Add(45 * time.Minute)) {
		for _, m := range []*SelfManaged{a, b} {
			_, err := m.Sync(ctx)
			require.NoError(t, err, "at %s", clk.t.Sub(start))
			require.NoError(t, m.Ready())
			cert := servedVerifies(t, c, m, clk.t)
			serials[cert.SerialNumber.String()] = true
			cas[cert.Issuer.CommonName] = true
		}
		s, err := c.CoreV1().Secrets("mesh-system").Get(ctx, "injector-tls", metav1.GetOptions{})
		require.NoError(t, err)
		maxBundle = max(maxBundle, len(parseBundle(s.Data[SecretBundleKey])))
		clk.add(10 * time.Second)
	}
	// 45 minutes of 6-minute certificates renewed at 4 minutes.
	assert.GreaterOrEqual(t, len(serials), 10, "serving certificate renewals")
	assert.GreaterOrEqual(t, len(cas), 2, "the CA was rotated")
	assert.Equal(t, 2, maxBundle, "old and new CA were trusted together during the rotation")
	// The replicas agree: one lineage, the same files.
	fa, _ := os.ReadFile(filepath.Join(a.o.CertDir, CertFile))
	fb, _ := os.ReadFile(filepath.Join(b.o.CertDir, CertFile))
	assert.Equal(t, fa, fb)
}

func TestSelfManagedWaitsForThePropagationDelay(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := fake.NewClientset(webhookConfig("injector"))
	m := newManager(t, c, clk)
	_, err := m.Sync(ctx)
	require.NoError(t, err)
	first := m.Status()

	clk.add(20*time.Minute + time.Second) // 2/3 of the CA's 30 minutes
	_, err = m.Sync(ctx)
	require.NoError(t, err)
	staged := m.Status()
	assert.NotEmpty(t, staged.NextCA, "a next CA is staged")
	assert.Equal(t, first.CASubject, staged.CASubject, "the old CA still signs")
	assert.Equal(t, 2, staged.BundleSize)

	clk.add(30 * time.Second)
	_, err = m.Sync(ctx)
	require.NoError(t, err)
	assert.Equal(t, first.CASubject, m.Status().CASubject, "not before the propagation delay")

	clk.add(31 * time.Second)
	_, err = m.Sync(ctx)
	require.NoError(t, err)
	assert.Equal(t, staged.NextCA, m.Status().CASubject, "the next CA signs after the delay")
	assert.Empty(t, m.Status().NextCA)
	assert.Equal(t, 2, m.Status().BundleSize, "the old CA stays trusted until it expires")
	servedVerifies(t, c, m, clk.t)
}

func TestSelfManagedStaleReplicaNeverDowngradesTheBundle(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	mwc := webhookConfig("injector")
	mwc.Annotations = map[string]string{BundleGenerationAnnotation: "99"}
	mwc.Webhooks[0].ClientConfig.CABundle = []byte("newer bundle")
	c := fake.NewClientset(mwc)
	m := newManager(t, c, clk)
	st, err := m.plan(nil, 0, clk.t, false)
	require.NoError(t, err)
	_, err = m.syncBundle(ctx, st)
	require.ErrorIs(t, err, errRetry)
	got, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "injector", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, []byte("newer bundle"), got.Webhooks[0].ClientConfig.CABundle)
}

func TestSelfManagedReplacesAnUnusableSecret(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := fake.NewClientset(webhookConfig("injector"))
	m := newManager(t, c, clk)
	_, err := m.Sync(ctx)
	require.NoError(t, err)
	s, err := c.CoreV1().Secrets("mesh-system").Get(ctx, "injector-tls", metav1.GetOptions{})
	require.NoError(t, err)
	s.Data[SecretCAKeyKey] = []byte("garbage")
	_, err = c.CoreV1().Secrets("mesh-system").Update(ctx, s, metav1.UpdateOptions{})
	require.NoError(t, err)
	_, err = m.Sync(ctx)
	require.NoError(t, err)
	servedVerifies(t, c, m, clk.t)
	assert.Greater(t, m.Status().Generation, int64(1))
}

func TestSelfManagedWithoutWebhookConfiguration(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	c := fake.NewClientset()
	m := newManager(t, c, clk)
	_, err := m.Sync(ctx)
	require.Error(t, err, "the named configuration does not exist")
	assert.ErrorContains(t, m.Ready(), `MutatingWebhookConfiguration "injector"`)
	_, err = os.Stat(filepath.Join(m.o.CertDir, CertFile))
	require.NoError(t, err, "the files are written even so: the server can start")

	m.o.WebhookConfiguration = ""
	_, err = m.Sync(ctx)
	require.NoError(t, err)
	require.NoError(t, m.Ready())
}

func TestSelfManagedOptions(t *testing.T) {
	c := fake.NewClientset()
	for name, o := range map[string]SelfManagedOptions{
		"no client":      {Namespace: "n", SecretName: "s", CertDir: "d", Hosts: []string{"h"}},
		"no secret":      {Client: c, Namespace: "n", CertDir: "d", Hosts: []string{"h"}},
		"no dir":         {Client: c, Namespace: "n", SecretName: "s", Hosts: []string{"h"}},
		"no hosts":       {Client: c, Namespace: "n", SecretName: "s", CertDir: "d"},
		"cert outlives":  {Client: c, Namespace: "n", SecretName: "s", CertDir: "d", Hosts: []string{"h"}, CAValidity: time.Hour, CertValidity: 2 * time.Hour},
		"negative delay": {Client: c, Namespace: "n", SecretName: "s", CertDir: "d", Hosts: []string{"h"}, CAPropagation: -time.Second},
	} {
		_, err := NewSelfManaged(o)
		assert.Error(t, err, name)
	}
}
