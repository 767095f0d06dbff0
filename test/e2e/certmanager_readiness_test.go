package e2e

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-injector/injector/certs"
	"github.com/sidecar-injector/injector/test/e2e/harness"
)

// TestCertManagerModeReadiness runs the built `injector serve` with the
// chart's cert-manager arguments against the real API server: /readyz
// reports the serving Certificate's Ready condition, message included.
// cert-manager itself is not running here (the status is written by the
// test); test/e2e/certmanager runs its controllers for the whole flow.
func TestCertManagerModeReadiness(t *testing.T) {
	c := controlPlane(t)
	helm := helmBin(t)
	ctx := t.Context()
	const rel, relNS = "cmr", "cmr-system"
	require.NoError(t, harness.EnsureNamespace(ctx, c.Clientset, relNS, nil))
	rendered, err := harness.Render(ctx, helm, rel, relNS, nil, "tls.mode=cert-manager")
	require.NoError(t, err)
	objs, err := harness.Manifests(rendered)
	require.NoError(t, err)

	scheme, err := certs.CertManagerScheme()
	require.NoError(t, err)
	cl, err := client.New(c.Config, client.Options{Scheme: scheme})
	require.NoError(t, err)
	// The chart's serving Certificate, created with cert-manager's types.
	var serving *cmapi.Certificate
	for _, o := range objs {
		if o.GetKind() != "Certificate" {
			continue
		}
		crt := &cmapi.Certificate{}
		require.NoError(t, harness.Decode(o, crt))
		if !crt.Spec.IsCA {
			serving = crt
		}
	}
	require.NotNil(t, serving)
	require.NoError(t, cl.Create(ctx, serving))
	serving.Status.Conditions = []cmapi.CertificateCondition{{
		Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionFalse, Reason: "DoesNotExist",
		Message: "Issuing certificate as Secret does not exist", LastTransitionTime: &metav1.Time{Time: time.Now()},
	}}
	require.NoError(t, cl.Status().Update(ctx, serving))

	// The chart's arguments; the files stand in for the mounted Secret.
	dep := &appsv1.Deployment{}
	require.NoError(t, harness.Decode(harness.Find(objs, "Deployment"), dep))
	args := []string{"--kubeconfig=" + c.Kubeconfig, "--namespace=" + relNS}
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
		if hasPrefix(a, "--tls-mode=", "--certificate=") {
			args = append(args, a)
		}
	}
	require.Contains(t, args, "--tls-mode=cert-manager")
	require.Contains(t, args, "--certificate="+serving.Name)
	dir := t.TempDir()
	ca, err := certs.NewCA("stand-in", time.Hour)
	require.NoError(t, err)
	pair, err := ca.IssueServing([]string{"127.0.0.1"}, time.Hour)
	require.NoError(t, err)
	require.NoError(t, certs.WriteDirAtomic(filepath.Join(dir, "tls"), pair, ca.CertPEM))
	p := startServe(t, "cert-manager-mode", append(args, "--cert-dir="+filepath.Join(dir, "tls"))...)

	harness.WaitFor(t, "/readyz reports the Certificate", func() error {
		if err := p.Exited(); err != nil {
			return err
		}
		_, _, err := p.Readyz()
		return err
	})
	code, body, err := p.Readyz()
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "[-] certificate: Certificate cmr-system/cmr-sidecar-injector-serving is not Ready (DoesNotExist): Issuing certificate as Secret does not exist")

	serving.Status.Conditions[0].Status, serving.Status.Conditions[0].Reason, serving.Status.Conditions[0].Message = cmmeta.ConditionTrue, "Ready", "Certificate is up to date and has not expired"
	require.NoError(t, cl.Status().Update(ctx, serving))
	waitReady(t, p)
	_, body, err = p.Readyz()
	require.NoError(t, err)
	assert.Contains(t, body, "[+] certificate ok")
}

func hasPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if len(s) >= len(p) && s[:len(p)] == p {
			return true
		}
	}
	return false
}
