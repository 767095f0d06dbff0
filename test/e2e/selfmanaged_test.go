package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/certs"
	"github.com/sidecar-injector/injector/test/e2e/harness"
)

// TestSelfManagedTLS runs two replicas of the built `injector serve
// --tls-mode=self-managed` (the chart's arguments, with lifetimes of
// seconds) against the real API server. They race to create the Secret,
// patch the caBundle of every entry of the chart's webhook configuration,
// and rotate the serving certificate and then the CA while pods are created
// through the API server in a loop: not one admission may fail, and the
// processes never restart.
func TestSelfManagedTLS(t *testing.T) {
	c := controlPlane(t)
	helm := helmBin(t)
	ctx := t.Context()
	cs := c.Clientset
	const (
		suite  = "self-managed"
		rel    = "sm"
		relNS  = "sm-system"
		appsNS = "sm-apps"
	)
	fullname := rel + "-sidecar-injector"
	secretName := fullname + "-tls"
	require.NoError(t, harness.EnsureNamespace(ctx, cs, relNS, nil))
	require.NoError(t, harness.EnsureNamespace(ctx, cs, appsNS, map[string]string{injectionKey: "enabled", suiteLabel: suite}))

	rendered, err := harness.Render(ctx, helm, rel, relNS, nil)
	require.NoError(t, err)
	objs, err := harness.Manifests(rendered)
	require.NoError(t, err)
	policy, err := harness.PolicyFile(objs)
	require.NoError(t, err)
	dir := t.TempDir()
	configPath := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(configPath, policy, 0o644))

	// The chart's arguments for this mode, with lifetimes of seconds.
	dep := &appsv1.Deployment{}
	require.NoError(t, harness.Decode(harness.Find(objs, "Deployment"), dep))
	args := []string{"--kubeconfig=" + c.Kubeconfig, "--namespace=" + relNS, "--config=" + configPath,
		"--tls-cert-validity=4s", "--tls-ca-validity=12s", "--tls-ca-propagation=2s", "--tls-resync=1s"}
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
		for _, keep := range []string{"--tls-mode=", "--tls-secret=", "--webhook-configuration=", "--service="} {
			if strings.HasPrefix(a, keep) {
				args = append(args, a)
			}
		}
	}
	require.Contains(t, args, "--tls-mode=self-managed")
	require.Contains(t, args, "--tls-secret="+secretName)

	a := startServe(t, "replica-a", append(args, "--cert-dir="+filepath.Join(dir, "a"))...)
	b := startServe(t, "replica-b", append(args, "--cert-dir="+filepath.Join(dir, "b"))...)

	// The chart's webhook configuration, sent to replica A, with no
	// caBundle: the injector must fill it in.
	mwc, err := harness.WebhookConfiguration(objs)
	require.NoError(t, err)
	require.Equal(t, fullname, mwc.Name)
	harness.PointAt(mwc, "https://"+a.Addr+"/inject", nil)
	harness.Scope(mwc, suiteLabel, suite)
	require.NoError(t, harness.ApplyWebhookConfiguration(ctx, cs, mwc))
	t.Cleanup(func() {
		_ = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), mwc.Name, metav1.DeleteOptions{})
	})

	waitReady(t, a)
	waitReady(t, b)
	_, body, err := a.Readyz()
	require.NoError(t, err)
	assert.Contains(t, body, "[+] self-managed-tls ok")
	assert.Contains(t, body, "[+] namespaces ok")

	// The Secret and the caBundle of every entry.
	secret, err := cs.CoreV1().Secrets(relNS).Get(ctx, secretName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, corev1.SecretTypeTLS, secret.Type)
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt", "ca.key", certs.SecretBundleKey} {
		assert.NotEmpty(t, secret.Data[k], "Secret key %s", k)
	}
	harness.WaitFor(t, "caBundle patched into every webhook", func() error {
		_, err := webhookBundle(ctx, t, mwc.Name, len(mwc.Webhooks))
		return err
	})
	waitUntilInjecting(t, cs, appsNS)

	// Admit pods in a loop across serving-certificate and CA rotations.
	type seen struct{ serials, issuers map[string]bool }
	served := map[*harness.Process]*seen{a: {map[string]bool{}, map[string]bool{}}, b: {map[string]bool{}, map[string]bool{}}}
	var created, failed int
	maxBundle, bundleShrank := 1, false
	deadline := time.Now().Add(harness.Deadline)
	nextDial := time.Now()
	for i := 0; ; i++ {
		pod, err := cs.CoreV1().Pods(appsNS).Create(ctx, harness.AppPod(fmt.Sprintf("rotation-%d", i)), metav1.CreateOptions{})
		switch {
		case err != nil:
			failed++
			t.Errorf("admission %d failed during rotation: %v", i, err)
		case pod.Annotations["sidecar-injector.io/status"] == "":
			failed++
			t.Errorf("pod %s was admitted but not injected", pod.Name)
		default:
			created++
		}
		if time.Now().After(nextDial) {
			nextDial = time.Now().Add(150 * time.Millisecond)
			bundle, err := webhookBundle(ctx, t, mwc.Name, len(mwc.Webhooks))
			require.NoError(t, err)
			n := len(parseCerts(bundle))
			if n > maxBundle {
				maxBundle = n
			}
			if maxBundle > 1 && n == 1 {
				bundleShrank = true
			}
			for _, p := range []*harness.Process{a, b} {
				require.NoError(t, p.Exited(), "the server must pick up certificates without restarting")
				st, err := p.ServedCertificate(ctx)
				require.NoError(t, err)
				leaf := st.PeerCertificates[0]
				served[p].serials[leaf.SerialNumber.String()] = true
				served[p].issuers[leaf.Issuer.CommonName] = true
				// What the API server checks on a new connection: the served
				// certificate against the caBundle it holds right now. The
				// bundle is read before the dial, so a certificate newer
				// than the bundle would show here.
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(bundle)
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err != nil {
					t.Errorf("%s serves a certificate the caBundle does not trust: %v", p.Name, err)
				}
			}
		}
		done := len(served[a].serials) >= 4 && len(served[a].issuers) >= 2 && len(served[b].issuers) >= 2 && bundleShrank
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("waited %s for four serving certificates, two CAs on each replica and the old CA leaving the caBundle", harness.Deadline)
			break
		}
		time.Sleep(40 * time.Millisecond)
	}
	t.Logf("%d pods admitted and injected, %d failed; replica A served %d certificates from %d CAs, replica B %d from %d; caBundle peaked at %d CAs",
		created, failed, len(served[a].serials), len(served[a].issuers), len(served[b].serials), len(served[b].issuers), maxBundle)
	assert.Zero(t, failed)
	assert.GreaterOrEqual(t, len(served[a].serials), 4, "serving certificate rotations picked up by the running server")
	assert.GreaterOrEqual(t, len(served[a].issuers), 2, "a CA rotation")
	assert.Equal(t, 2, maxBundle, "old and new CA trusted together during the CA rotation")
	assert.True(t, bundleShrank, "the old CA leaves the caBundle once expired")

	// One lineage: both replicas end up with the Secret's material.
	harness.WaitFor(t, "replicas agree", func() error {
		secret, err := cs.CoreV1().Secrets(relNS).Get(ctx, secretName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, d := range []string{"a", "b"} {
			got, err := os.ReadFile(filepath.Join(dir, d, "tls.crt"))
			if err != nil {
				return err
			}
			if !bytes.Equal(got, secret.Data["tls.crt"]) {
				return fmt.Errorf("replica %s serves another certificate than the Secret's", d)
			}
		}
		return nil
	})
}

// webhookBundle returns the caBundle, which every one of the n entries
// must carry identically.
func webhookBundle(ctx context.Context, t *testing.T, name string, n int) ([]byte, error) {
	mwc, err := controlPlane(t).Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if len(mwc.Webhooks) != n {
		return nil, fmt.Errorf("%d webhooks, want %d", len(mwc.Webhooks), n)
	}
	first := mwc.Webhooks[0].ClientConfig.CABundle
	if len(first) == 0 {
		return nil, fmt.Errorf("webhook %s has no caBundle", mwc.Webhooks[0].Name)
	}
	for _, w := range mwc.Webhooks[1:] {
		if !bytes.Equal(w.ClientConfig.CABundle, first) {
			return nil, fmt.Errorf("webhook %s has another caBundle than %s", w.Name, mwc.Webhooks[0].Name)
		}
	}
	return first, nil
}

func parseCerts(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return out
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			out = append(out, c)
		}
	}
}
