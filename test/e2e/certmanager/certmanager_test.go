// Package certmanager proves the chart's cert-manager TLS mode end to end:
// cert-manager's own controllers (certificates, the self-signed and CA
// issuers, the approver) and its cainjector run in this process against a
// real kube-apiserver and etcd, the way cert-manager's integration tests run
// them; the chart's Issuers and Certificates are created with cert-manager's
// Go types; the injector binary serves the issued certificate; cainjector
// fills the caBundle of every webhook; the API server then admits pods
// through it, across a renewal.
//
// It is its own package (and process) because it imports cert-manager's
// controllers, which the rest of the suite does not need.
package certmanager

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	"github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/sidecar-injector/injector/certs"
	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/test/testkit"
)

// The cert-manager controllers the chart's objects need.
var controllers = []string{
	issuers.ControllerName,
	trigger.ControllerName, keymanager.ControllerName, requestmanager.ControllerName,
	issuing.ControllerName, readiness.ControllerName, revisionmanager.ControllerName,
	approver.ControllerName, crselfsigned.CRControllerName, crca.CRControllerName,
}

// startCertManager runs cert-manager's controllers and cainjector until
// ctx ends.
func startCertManager(ctx context.Context, t *testing.T, cp *harness.ControlPlane, logs *harness.SyncBuffer) {
	t.Helper()
	logger := logr.FromSlogHandler(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	klog.SetLogger(logger)
	ctrllog.SetLogger(logger)
	logf.Log = logger.WithName("cert-manager")
	ctx = logf.NewContext(ctx, logger)

	factory, err := controllerpkg.NewContextFactory(ctx, controllerpkg.ContextOptions{
		Kubeconfig:         cp.Kubeconfig,
		KubernetesAPIQPS:   200,
		KubernetesAPIBurst: 400,
		IssuerOptions:      controllerpkg.IssuerOptions{ClusterResourceNamespace: "cert-manager"},
		CertificateOptions: controllerpkg.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: time.Second,
			CertificateRequestMaximumBackoffDuration: 5 * time.Second,
		},
	})
	require.NoError(t, err)
	for _, name := range controllers {
		ctor, ok := controllerpkg.Known()[name]
		require.True(t, ok, "cert-manager controller %s is registered", name)
		c, err := ctor(factory)
		require.NoError(t, err, name)
		go func() {
			if err := c.Run(2, ctx); err != nil && ctx.Err() == nil {
				fmt.Fprintf(logs, "controller %s: %v\n", name, err)
			}
		}()
	}
	shared, err := factory.Build()
	require.NoError(t, err)
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.SharedInformerFactory.Start(ctx.Done())

	// cainjector, as cert-manager's cainjector binary sets it up.
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, cmapi.AddToScheme} {
		require.NoError(t, add(scheme))
	}
	// cainjector's field manager comes from the user agent.
	cfg := rest.CopyConfig(cp.Config)
	cfg.UserAgent = "cainjector/v1.21.2 (e2e)"
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, Logger: logger, LeaderElection: false,
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
	})
	require.NoError(t, err)
	require.NoError(t, cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor:        map[string]bool{cainjector.MutatingWebhookConfigurationName: true},
	}))
	go func() {
		if err := mgr.Start(ctx); err != nil && ctx.Err() == nil {
			fmt.Fprintf(logs, "cainjector: %v\n", err)
		}
	}()
}

func TestCertManagerModeEndToEnd(t *testing.T) {
	_, err := harness.ControlPlaneAssets()
	testkit.Need(t, err)
	helm, err := harness.Helm()
	testkit.Need(t, err)
	crds, err := harness.CertManagerCRDs()
	require.NoError(t, err)
	start := time.Now()
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{CRDDirs: []string{crds}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cp.Stop() })
	t.Logf("control plane started in %s", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	cmLogs := &harness.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			t.Logf("cert-manager log (last 16 KiB):\n%s", cmLogs.Tail(16<<10))
		}
	})
	startCertManager(ctx, t, cp, cmLogs)

	const rel, relNS, appsNS = "cm", "cm-system", "cm-apps"
	fullname := rel + "-sidecar-injector"
	for ns, labels := range map[string]map[string]string{
		relNS:  nil,
		appsNS: {"sidecar-injector.io/injection": "enabled"},
	} {
		require.NoError(t, harness.EnsureNamespace(ctx, cp.Clientset, ns, labels))
	}

	rendered, err := harness.Render(ctx, helm, rel, relNS, nil, "tls.mode=cert-manager", "tls.certManager.duration=1h", "tls.certManager.renewBefore=20m")
	require.NoError(t, err)
	objs, err := harness.Manifests(rendered)
	require.NoError(t, err)

	// The chart's Issuers and Certificates, with cert-manager's types.
	scheme, err := certs.CertManagerScheme()
	require.NoError(t, err)
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	cl, err := client.New(cp.Config, client.Options{Scheme: scheme})
	require.NoError(t, err)
	var serving *cmapi.Certificate
	for _, o := range objs {
		switch o.GetKind() {
		case "Issuer":
			iss := &cmapi.Issuer{}
			require.NoError(t, harness.Decode(o, iss))
			require.NoError(t, cl.Create(ctx, iss))
		case "Certificate":
			crt := &cmapi.Certificate{}
			require.NoError(t, harness.Decode(o, crt))
			if !crt.Spec.IsCA {
				// The API server reaches the injector on loopback here,
				// not through the Service the chart names.
				crt.Spec.IPAddresses = append(crt.Spec.IPAddresses, "127.0.0.1")
				serving = crt
			}
			require.NoError(t, cl.Create(ctx, crt))
		}
	}
	require.NotNil(t, serving)
	harness.WaitFor(t, "cert-manager issues the serving Certificate", func() error {
		crt := &cmapi.Certificate{}
		if err := cl.Get(ctx, client.ObjectKeyFromObject(serving), crt); err != nil {
			return err
		}
		return certs.CertificateReady(crt)
	})
	secretKey := types.NamespacedName{Namespace: relNS, Name: serving.Spec.SecretName}

	// The kubelet's part: the Secret as files in the pod.
	dir := t.TempDir()
	certDir := filepath.Join(dir, "tls")
	syncVolume := func() *corev1.Secret {
		s := &corev1.Secret{}
		require.NoError(t, cl.Get(ctx, secretKey, s))
		require.NoError(t, certs.WriteDirAtomic(certDir, &certs.Pair{CertPEM: s.Data["tls.crt"], KeyPEM: s.Data["tls.key"]}, s.Data["ca.crt"]))
		return s
	}
	secret := syncVolume()

	// The injector with the chart's arguments for this mode.
	policy, err := harness.PolicyFile(objs)
	require.NoError(t, err)
	configPath := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(configPath, policy, 0o644))
	dep := &appsv1.Deployment{}
	require.NoError(t, harness.Decode(harness.Find(objs, "Deployment"), dep))
	args := []string{"--kubeconfig=" + cp.Kubeconfig, "--namespace=" + relNS, "--config=" + configPath, "--cert-dir=" + certDir}
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
		if strings.HasPrefix(a, "--tls-mode=") || strings.HasPrefix(a, "--certificate=") {
			args = append(args, a)
		}
	}
	require.Contains(t, args, "--tls-mode=cert-manager")
	bin, err := harness.BuildInjector(testkit.RaceEnabled)
	require.NoError(t, err)
	p, err := harness.StartServe(bin, "injector", args...)
	require.NoError(t, err)
	t.Cleanup(func() {
		p.Stop()
		harness.RemoveBuilt() // the package's only build
		if strings.Contains(p.Out.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in the injector")
		}
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			t.Logf("injector output (last 12 KiB):\n%s", p.Out.Tail(12<<10))
		}
	})
	require.NoError(t, p.WaitReady(harness.Deadline))
	_, body, err := p.Readyz()
	require.NoError(t, err)
	assert.Contains(t, body, "[+] certificate ok")

	// The chart's webhook configuration, sent to the injector by URL and
	// with no caBundle: cainjector must fill it in from the Certificate.
	mwc, err := harness.WebhookConfiguration(objs)
	require.NoError(t, err)
	require.Equal(t, relNS+"/"+serving.Name, mwc.Annotations[certs.InjectCAFromAnnotation])
	harness.PointAt(mwc, "https://"+p.Addr+"/inject", nil)
	require.NoError(t, harness.ApplyWebhookConfiguration(ctx, cp.Clientset, mwc))
	harness.WaitFor(t, "cainjector fills every webhook's caBundle", func() error {
		return bundlesAre(ctx, cp, mwc.Name, secret.Data["ca.crt"])
	})
	admit := func(name string) {
		t.Helper()
		var pod *corev1.Pod
		harness.WaitFor(t, "the API server admits "+name+" through the webhook", func() error {
			var err error
			pod, err = cp.Clientset.CoreV1().Pods(appsNS).Create(ctx, harness.AppPod(name), metav1.CreateOptions{})
			return err
		})
		assert.NotEmpty(t, pod.Annotations["sidecar-injector.io/status"], "injected")
		assert.Equal(t, "docker.io/envoyproxy/envoy:v1.36.2", proxyImage(pod))
	}
	admit("first")
	first, err := p.ServedCertificate(ctx)
	require.NoError(t, err)

	// A renewal (what `cmctl renew` does): new key (rotationPolicy Always),
	// new certificate, the same CA; the server picks it up without a
	// restart.
	crt := &cmapi.Certificate{}
	require.NoError(t, cl.Get(ctx, client.ObjectKeyFromObject(serving), crt))
	prevRevision := revision(crt)
	crt.Status.Conditions = append(crt.Status.Conditions, cmapi.CertificateCondition{
		Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue, Reason: "ManuallyTriggered",
		Message: "Certificate re-issuance manually triggered", LastTransitionTime: &metav1.Time{Time: time.Now()},
	})
	require.NoError(t, cl.Status().Update(ctx, crt))
	harness.WaitFor(t, "cert-manager re-issues the Certificate", func() error {
		c := &cmapi.Certificate{}
		if err := cl.Get(ctx, client.ObjectKeyFromObject(serving), c); err != nil {
			return err
		}
		if revision(c) <= prevRevision {
			return fmt.Errorf("revision %d", revision(c))
		}
		return certs.CertificateReady(c)
	})
	renewed := syncVolume()
	require.False(t, bytes.Equal(secret.Data["tls.crt"], renewed.Data["tls.crt"]), "a new certificate")
	harness.WaitFor(t, "the server serves the renewed certificate", func() error {
		st, err := p.ServedCertificate(ctx)
		if err != nil {
			return err
		}
		if st.PeerCertificates[0].SerialNumber.Cmp(first.PeerCertificates[0].SerialNumber) == 0 {
			return fmt.Errorf("still the first certificate")
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(renewed.Data["ca.crt"])
		_, err = st.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: fullname + "." + relNS + ".svc"})
		return err
	})
	require.NoError(t, p.Exited(), "no restart")
	require.NoError(t, bundlesAre(ctx, cp, mwc.Name, renewed.Data["ca.crt"]))
	admit("after-renewal")

	// A Certificate that cannot be issued: /readyz says why, in
	// cert-manager's words.
	require.NoError(t, cl.Get(ctx, client.ObjectKeyFromObject(serving), crt))
	crt.Spec.IssuerRef.Name = "missing-issuer"
	crt.Spec.DNSNames = append(crt.Spec.DNSNames, "injector.example.com")
	require.NoError(t, cl.Update(ctx, crt))
	harness.WaitFor(t, "/readyz reports the Certificate not Ready", func() error {
		code, body, err := p.Readyz()
		if err != nil {
			return err
		}
		if code == 200 || !strings.Contains(body, "is not Ready") {
			return fmt.Errorf("HTTP %d: %s", code, body)
		}
		t.Logf("/readyz: %s", strings.TrimSpace(body))
		return nil
	})
}

func revision(c *cmapi.Certificate) int {
	if c.Status.Revision == nil {
		return 0
	}
	return *c.Status.Revision
}

func bundlesAre(ctx context.Context, cp *harness.ControlPlane, name string, want []byte) error {
	mwc, err := cp.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, w := range mwc.Webhooks {
		if !bytes.Equal(bytes.TrimSpace(w.ClientConfig.CABundle), bytes.TrimSpace(want)) {
			return fmt.Errorf("webhook %s: caBundle is %d bytes, want the Certificate's CA (%d bytes)", w.Name, len(w.ClientConfig.CABundle), len(want))
		}
	}
	return nil
}

func proxyImage(p *corev1.Pod) string {
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range list {
			if c.Name == "mesh-proxy" {
				return c.Image
			}
		}
	}
	return ""
}
