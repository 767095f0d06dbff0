package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-injector/injector/certs"
	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// valueSets are the values the chart is linted, rendered and dry-run with:
// the defaults and non-default files.
func valueSets() map[string][]string {
	ci := filepath.Join(harness.ChartDir(), "ci")
	return map[string][]string{
		"defaults":        nil,
		"cert-manager":    {filepath.Join(ci, "cert-manager-values.yaml")},
		"external-issuer": {filepath.Join(ci, "external-issuer-values.yaml")},
		"e2e":             {e2eValues()},
	}
}

func TestChartLintAndTemplate(t *testing.T) {
	helm := helmBin(t)
	ctx := t.Context()
	for name, files := range valueSets() {
		t.Run(name, func(t *testing.T) {
			out, err := harness.Lint(ctx, helm, files...)
			require.NoError(t, err)
			assert.Contains(t, string(out), "0 chart(s) failed")
			rendered, err := harness.Render(ctx, helm, release, releaseNamespace, files)
			require.NoError(t, err)
			objs, err := harness.Manifests(rendered)
			require.NoError(t, err)
			checkRendered(t, objs, name)
		})
	}
}

// checkRendered holds the rendered chart to the install requirements.
func checkRendered(t *testing.T, objs []*unstructured.Unstructured, set string) {
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
	}
	for _, k := range []string{"Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
		"ConfigMap", "PodDisruptionBudget", "MutatingWebhookConfiguration"} {
		assert.Equal(t, 1, kinds[k], "one %s", k)
	}
	certManager := set == "cert-manager" || set == "external-issuer"

	// The Deployment: HA, hardened, probed.
	dep := &appsv1.Deployment{}
	require.NoError(t, harness.Decode(harness.Find(objs, "Deployment"), dep))
	assert.GreaterOrEqual(t, *dep.Spec.Replicas, int32(2))
	ps := dep.Spec.Template.Spec
	assert.NotEmpty(t, ps.TopologySpreadConstraints)
	require.NotNil(t, ps.SecurityContext)
	assert.True(t, *ps.SecurityContext.RunAsNonRoot)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, ps.SecurityContext.SeccompProfile.Type)
	require.Len(t, ps.Containers, 1)
	c := ps.Containers[0]
	assert.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
	assert.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
	assert.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop)
	assert.NotEmpty(t, c.Resources.Requests.Cpu().String())
	assert.False(t, c.Resources.Requests.Memory().IsZero())
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, corev1.URISchemeHTTPS, c.ReadinessProbe.HTTPGet.Scheme)
	args := strings.Join(c.Args, " ")
	assert.Contains(t, args, "--namespace=$(POD_NAMESPACE)")
	assert.Contains(t, args, "--shutdown-delay=")
	assert.Contains(t, args, "--config=/etc/sidecar-injector/config/config.yaml")
	assert.True(t, slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
	}))
	if certManager {
		assert.Contains(t, args, "--tls-mode=cert-manager")
		assert.Contains(t, args, "--certificate=")
	} else {
		assert.Contains(t, args, "--tls-mode=self-managed")
		assert.Contains(t, args, "--webhook-configuration=")
	}

	pdb := &policyv1.PodDisruptionBudget{}
	require.NoError(t, harness.Decode(harness.Find(objs, "PodDisruptionBudget"), pdb))
	assert.Equal(t, dep.Spec.Selector.MatchLabels, pdb.Spec.Selector.MatchLabels)

	// The policy file compiles, with the images from values.
	policy, err := harness.PolicyFile(objs)
	require.NoError(t, err)
	engine, err := inject.Compile(policy, inject.Options{NativeSidecarsSupported: true})
	require.NoError(t, err, "the chart's policy file must compile:\n%s", policy)
	def := engine.Config().Default.Settings
	switch set {
	case "e2e":
		assert.Equal(t, e2eProxyImage, def.Proxy.Image)
		assert.Equal(t, e2eInitImage, def.Init.Image)
	case "cert-manager":
		assert.Equal(t, "registry.example.com/platform/envoy:v1.36.2-hardened", def.Proxy.Image)
		assert.Len(t, engine.Config().Policies, 1)
	default:
		assert.Equal(t, "docker.io/envoyproxy/envoy:v1.36.2", def.Proxy.Image)
	}

	// RBAC: what the mode needs, nothing cluster-wide beyond it.
	cr := &rbacv1.ClusterRole{}
	require.NoError(t, harness.Decode(harness.Find(objs, "ClusterRole"), cr))
	for _, r := range cr.Rules {
		assert.NotContains(t, r.Verbs, "*")
		assert.NotContains(t, r.Resources, "*")
		if slices.Contains(r.Resources, "mutatingwebhookconfigurations") {
			assert.NotEmpty(t, r.ResourceNames, "webhook configurations only by name")
			assert.False(t, certManager, "cert-manager mode does not touch the webhook configuration")
		}
	}

	// The webhook configuration.
	mwc, err := harness.WebhookConfiguration(objs)
	require.NoError(t, err)
	checkWebhookConfiguration(t, mwc, certManager, set)
	if set != "cert-manager" {
		checkSelectorsAgreeWithTheCore(t, mwc)
	}

	if certManager {
		var issuers, certificates int
		for _, o := range objs {
			switch o.GetKind() {
			case "Issuer":
				iss := &cmapi.Issuer{}
				require.NoError(t, harness.Decode(o, iss), "a cert-manager Issuer")
				issuers++
			case "Certificate":
				crt := &cmapi.Certificate{}
				require.NoError(t, harness.Decode(o, crt), "a cert-manager Certificate")
				certificates++
				if !crt.Spec.IsCA {
					assert.Equal(t, mwc.Annotations[certs.InjectCAFromAnnotation], releaseNamespace+"/"+crt.Name)
					assert.Contains(t, crt.Spec.DNSNames, release+"."+releaseNamespace+".svc")
				}
			}
		}
		if set == "external-issuer" {
			assert.Equal(t, 0, issuers)
			assert.Equal(t, 1, certificates)
		} else {
			assert.Equal(t, 2, issuers, "self-signed and CA Issuers")
			assert.Equal(t, 2, certificates, "CA and serving Certificates")
		}
	}
}

func checkWebhookConfiguration(t *testing.T, mwc *admissionregistrationv1.MutatingWebhookConfiguration, certManager bool, set string) {
	t.Helper()
	if certManager {
		assert.Contains(t, mwc.Annotations, certs.InjectCAFromAnnotation)
	} else {
		assert.NotContains(t, mwc.Annotations, certs.InjectCAFromAnnotation)
	}
	want := []string{"namespace.sidecar-injector.io", "object.sidecar-injector.io", "istio-object.sidecar-injector.io"}
	if set == "cert-manager" {
		want = want[:2] // istioAlias: false
	}
	var got []string
	for _, w := range mwc.Webhooks {
		got = append(got, w.Name)
		assert.Equal(t, []string{"v1"}, w.AdmissionReviewVersions)
		require.NotNil(t, w.SideEffects)
		assert.Equal(t, admissionregistrationv1.SideEffectClassNone, *w.SideEffects)
		require.NotNil(t, w.FailurePolicy, "explicit failurePolicy")
		require.NotNil(t, w.TimeoutSeconds, "explicit timeoutSeconds")
		require.NotNil(t, w.ReinvocationPolicy, "explicit reinvocationPolicy")
		require.NotNil(t, w.MatchPolicy)
		if set == "cert-manager" {
			assert.Equal(t, admissionregistrationv1.Ignore, *w.FailurePolicy)
			assert.Equal(t, int32(5), *w.TimeoutSeconds)
			assert.Equal(t, admissionregistrationv1.IfNeededReinvocationPolicy, *w.ReinvocationPolicy)
		} else {
			assert.Equal(t, admissionregistrationv1.Fail, *w.FailurePolicy)
			assert.Equal(t, admissionregistrationv1.NeverReinvocationPolicy, *w.ReinvocationPolicy)
		}
		require.Len(t, w.Rules, 1)
		assert.Equal(t, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, w.Rules[0].Operations)
		assert.Equal(t, []string{"pods"}, w.Rules[0].Resources)
		require.NotNil(t, w.ClientConfig.Service)
		assert.Equal(t, "/inject", *w.ClientConfig.Service.Path)
		assert.Empty(t, w.ClientConfig.CABundle, "the caBundle is injected, never rendered")

		// Never kube-system, kube-public, kube-node-lease or the release
		// namespace, whatever their labels.
		sel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
		require.NoError(t, err)
		for _, ns := range []string{"kube-system", "kube-public", "kube-node-lease", releaseNamespace} {
			for _, v := range []string{"enabled", ""} {
				l := labels.Set{"kubernetes.io/metadata.name": ns}
				if v != "" {
					l[injectionKey] = v
				}
				assert.False(t, sel.Matches(l), "%s must never match %s (%v)", w.Name, ns, l)
			}
		}
		assert.False(t, sel.Matches(labels.Set(map[string]string{"kubernetes.io/metadata.name": "shop", injectionKey: "disabled"})),
			"%s must not match a disabled namespace", w.Name)
	}
	assert.Equal(t, want, got)
}

// checkSelectorsAgreeWithTheCore: for every combination of the labels that
// decide injection, a pod the core would inject or refuse is sent to the
// webhook exactly once, and a pod that is never sent is one the core would
// leave alone; so `injector inject` and `explain` say what the API server
// does with the chart (istioAlias on).
func checkSelectorsAgreeWithTheCore(t *testing.T, mwc *admissionregistrationv1.MutatingWebhookConfiguration) {
	t.Helper()
	engine, err := inject.Compile(nil, inject.Options{NativeSidecarsSupported: true})
	require.NoError(t, err)
	istio := append([]string{"", "false", "False", "no", "off", "n", "2"}, policy.IstioOptInValues()...)
	ours := []string{"", "true", "false"}
	for _, nsLabel := range []string{"", "enabled", "other"} {
		nsLabels := labels.Set{"kubernetes.io/metadata.name": "shop"}
		if nsLabel != "" {
			nsLabels[injectionKey] = nsLabel
		}
		for _, o := range ours {
			for _, i := range append([]string{"<absent>"}, istio...) {
				podLabels := labels.Set{}
				if o != "" {
					podLabels["sidecar-injector.io/inject"] = o
				}
				if i != "<absent>" {
					podLabels["sidecar.istio.io/inject"] = i
				}
				sent := 0
				for _, w := range mwc.Webhooks {
					nsSel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
					require.NoError(t, err)
					objSel, err := metav1.LabelSelectorAsSelector(w.ObjectSelector)
					require.NoError(t, err)
					if nsSel.Matches(nsLabels) && objSel.Matches(podLabels) {
						sent++
					}
				}
				pod := harness.AppPod("p")
				pod.Labels = podLabels
				d, _ := engine.Decide(pod, inject.Namespace{Name: "shop", Labels: nsLabels})
				what := fmt.Sprintf("namespace %q, pod labels %v: the core says %s/%s", nsLabel, podLabels, d.Result, d.Reason)
				assert.LessOrEqual(t, sent, 1, "sent twice: %s", what)
				if d.Result != inject.Skipped {
					assert.Equal(t, 1, sent, "never sent, but %s", what)
				}
			}
		}
	}
}

// TestChartRejectsBadValues: values.schema.json fails the install.
func TestChartRejectsBadValues(t *testing.T) {
	helm := helmBin(t)
	for set, wantErr := range map[string]string{
		"webhook.failurePolicy=Sometimes":  "/webhook/failurePolicy",
		"webhook.timeoutSeconds=31":        "/webhook/timeoutSeconds",
		"webhook.reinvocationPolicy=Twice": "/webhook/reinvocationPolicy",
		"tls.mode=vault":                   "/tls/mode",
		"replicaCount=0":                   "/replicaCount",
		"server.http2=maybe":               "/server/http2",
		"proxy.image.digest=sha256:abc":    "/proxy/image/digest",
		"proxy.image.repository=Bad Repo":  "/proxy/image/repository",
		"webhook.excludeNamespaces[0]=Bad": "/webhook/excludeNamespaces/0",
		"tls.selfManaged.certValidity=90d": "/tls/selfManaged/certValidity",
		"replicas=3":                       "additional properties 'replicas' not allowed",
		// An independent probe of the chart found these passing install
		// and failing only later (or blocking node drains).
		"proxy.image.tag=":                                                                 "proxy.image: set a tag or a digest",
		"podDisruptionBudget.maxUnavailable=0%":                                            "/podDisruptionBudget/maxUnavailable",
		"tls.selfManaged.caValidity=1h,tls.selfManaged.certValidity=2h":                    "tls.selfManaged.certValidity (2h) must not exceed tls.selfManaged.caValidity (1h)",
		"tls.mode=cert-manager,tls.certManager.duration=1h,tls.certManager.renewBefore=2h": "renewBefore (2h) must be shorter than tls.certManager.duration (1h)",
		`podLabels.app\.kubernetes\.io/name=other`:                                         "invalid propertyName 'app.kubernetes.io/name'",
		"serviceAccount.create=false":                                                      "/serviceAccount/name",
	} {
		_, err := harness.Render(t.Context(), helm, release, releaseNamespace, nil, set)
		require.Error(t, err, set)
		assert.Contains(t, err.Error(), wantErr, set)
	}
}

// TestChartServerSideDryRun applies every rendered manifest of every value
// set to the real API server with server-side apply and dry-run, after
// installing cert-manager's CRDs from its Go module: schema errors in any
// manifest fail here.
func TestChartServerSideDryRun(t *testing.T) {
	c := controlPlane(t)
	helm := helmBin(t)
	ctx := t.Context()
	require.NoError(t, harness.EnsureNamespace(ctx, c.Clientset, releaseNamespace, nil))
	for name, files := range valueSets() {
		t.Run(name, func(t *testing.T) {
			rendered, err := harness.Render(ctx, helm, release, releaseNamespace, files)
			require.NoError(t, err)
			objs, err := harness.Manifests(rendered)
			require.NoError(t, err)
			require.NotEmpty(t, objs)
			for _, o := range objs {
				err := dryRunApply(t, c.Client, o)
				assert.NoError(t, err, "%s %s", o.GetKind(), o.GetName())
			}
		})
	}
	t.Run("a broken manifest is caught", func(t *testing.T) {
		bad := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
			"metadata": map[string]any{"name": "broken", "namespace": releaseNamespace},
			"spec":     map[string]any{"secretName": "x", "issuerRef": map[string]any{"name": "ca"}, "dnsName": "typo"},
		}}
		assert.Error(t, dryRunApply(t, c.Client, bad), "an unknown field must be refused")
	})
}

func dryRunApply(t *testing.T, c client.Client, o *unstructured.Unstructured) error {
	t.Helper()
	return c.Apply(t.Context(), client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
		client.DryRunAll, client.FieldOwner("e2e"), client.ForceOwnership)
}

// server.http2=false turns h2 off in the injector's ALPN.
func TestChartHTTP2Value(t *testing.T) {
	helm := helmBin(t)
	on, err := harness.Render(t.Context(), helm, release, releaseNamespace, nil)
	require.NoError(t, err)
	assert.NotContains(t, string(on), "--http1-only")
	off, err := harness.Render(t.Context(), helm, release, releaseNamespace, nil, "server.http2=false")
	require.NoError(t, err)
	assert.Contains(t, string(off), "- --http1-only")
	// Absent, as after `helm upgrade --reuse-values` from a release that
	// predates the value: the default.
	absent, err := harness.Render(t.Context(), helm, release, releaseNamespace, nil, "server.http2=null")
	require.NoError(t, err)
	assert.NotContains(t, string(absent), "--http1-only")
}

// The pods' grace period covers --shutdown-delay plus the requests in
// flight, whatever the delay.
func TestChartGracePeriodFollowsShutdownDelay(t *testing.T) {
	helm := helmBin(t)
	for set, want := range map[string]string{
		"server.shutdownDelay=5s":      "terminationGracePeriodSeconds: 30",
		"server.shutdownDelay=2m":      "terminationGracePeriodSeconds: 145",
		"server.shutdownDelay=1m30.5s": "terminationGracePeriodSeconds: 116",
	} {
		out, err := harness.Render(t.Context(), helm, release, releaseNamespace, nil, set)
		require.NoError(t, err, set)
		assert.Contains(t, string(out), want, set)
	}
}
