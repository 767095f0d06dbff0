// Package harness runs the injector against a real kube-apiserver and etcd
// (controller-runtime's envtest with the binaries test/tools/install.sh
// builds) and renders the Helm chart with the helm binary. The end-to-end
// tests in test/e2e and `make run` (test/demo) share it.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/injector/test/testkit"
)

// Versions built by test/tools/install.sh; the cache folder is named after
// them.
const (
	KubeVersion = "v1.36.3"
	EtcdVersion = "v3.6.8"
)

// Deadline bounds every wait of the tiers that run a control plane
// (test/e2e, test/e2e/certmanager, `make run`): the control plane and the
// injector starting and stopping, the API server picking up a webhook
// configuration, cert-manager issuing, a rotation being served. It is
// stated once, here, and generous: an idle run needs a second or two for
// most waits and about 20 s for the longest (the control plane's start
// under -race); a wait that runs out fails saying what it waited for.
// TEST_DEADLINE_SCALE raises it on a slower machine. (The node tier has
// its own, nodeharness.Deadline.)
var Deadline = testkit.Deadline(3 * time.Minute)

// BuildHint says how to get the binaries.
const BuildHint = "build them with `bash test/tools/install.sh` (first run 5–14 minutes, then cached under ~/.cache/sidecar-injector), then `eval \"$(bash test/tools/install.sh --print-env)\"`"

// CacheDir is where install.sh puts its builds.
func CacheDir() string {
	if d := os.Getenv("SIDECAR_INJECTOR_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "sidecar-injector")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "sidecar-injector")
}

// ControlPlaneAssets returns the folder with kube-apiserver and etcd:
// $KUBEBUILDER_ASSETS, else install.sh's cache folder.
func ControlPlaneAssets() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join(CacheDir(), "controlplane-k8s-"+KubeVersion+"-etcd-"+EtcdVersion)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		st, err := os.Stat(filepath.Join(dir, b))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("no %s in %s: %s", b, dir, BuildHint)
		}
	}
	return dir, nil
}

// Helm returns the helm binary: on $PATH, else install.sh's cache.
func Helm() (string, error) {
	if p, err := exec.LookPath("helm"); err == nil {
		return p, nil
	}
	p := filepath.Join(CacheDir(), "bin", "helm")
	if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
		return p, nil
	}
	return "", errors.New("helm not found on $PATH or in " + filepath.Dir(p) + ": " + BuildHint)
}

// RepoRoot is the module's root folder.
func RepoRoot() string {
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/sidecar-injector/injector\n")) {
				return d
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// ChartDir is charts/sidecar-injector.
func ChartDir() string { return filepath.Join(RepoRoot(), "charts", "sidecar-injector") }

// CertManagerCRDs returns cert-manager's CRD folder from its Go module.
func CertManagerCRDs() (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("locating the cert-manager module: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	if _, err := os.Stat(filepath.Join(dir, "cert-manager.io_certificates.yaml")); err != nil {
		return "", fmt.Errorf("cert-manager CRDs: %w (run `go mod download github.com/cert-manager/cert-manager`)", err)
	}
	return dir, nil
}

// ControlPlane is a running kube-apiserver and etcd.
type ControlPlane struct {
	Env       *envtest.Environment
	Config    *rest.Config
	Client    client.Client
	Clientset kubernetes.Interface
	// Kubeconfig is a file for `injector serve --kubeconfig`.
	Kubeconfig string
	dir        string
}

// ControlPlaneOptions configure StartControlPlane.
type ControlPlaneOptions struct {
	// CRDDirs are installed at start (cert-manager's, for instance).
	CRDDirs []string
	// Output receives the API server's and etcd's output (nil: discarded).
	Output io.Writer
	// APIServerFlags are set on kube-apiserver in addition to envtest's
	// (the node tier reaches its kubelet by InternalIP, for instance).
	APIServerFlags map[string]string
}

// StartControlPlane starts kube-apiserver and etcd. Unlike envtest's
// default, the ServiceAccount admission plugin is on, as in a real
// cluster: pods get their token volume before the webhook sees them, and
// every namespace needs its default ServiceAccount (EnsureNamespace).
func StartControlPlane(o ControlPlaneOptions) (*ControlPlane, error) {
	assets, err := ControlPlaneAssets()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        o.CRDDirs,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: Deadline,
		ControlPlaneStopTimeout:  Deadline,
	}
	if o.Output != nil {
		env.AttachControlPlaneOutput = true
	}
	api := env.ControlPlane.GetAPIServer()
	api.Configure().Disable("disable-admission-plugins")
	for k, v := range o.APIServerFlags {
		api.Configure().Set(k, v)
	}
	if o.Output != nil {
		api.Out, api.Err = o.Output, o.Output
		if env.ControlPlane.Etcd == nil {
			env.ControlPlane.Etcd = &envtest.Etcd{}
		}
		env.ControlPlane.Etcd.Out, env.ControlPlane.Etcd.Err = o.Output, o.Output
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	cp := &ControlPlane{Env: env, Config: cfg}
	stopOnErr := func(err error) (*ControlPlane, error) {
		_ = cp.Stop()
		return nil, err
	}
	// Many pods in a short time: the default client rate limit (5 QPS)
	// would measure the limiter, not the API server.
	cfg.QPS, cfg.Burst = 2000, 4000
	if cp.Client, err = client.New(cfg, client.Options{}); err != nil {
		return stopOnErr(err)
	}
	if cp.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return stopOnErr(err)
	}
	if cp.dir, err = os.MkdirTemp("", "sidecar-injector-e2e-"); err != nil {
		return stopOnErr(err)
	}
	user, err := env.ControlPlane.AddUser(envtest.User{Name: "e2e-admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		return stopOnErr(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return stopOnErr(err)
	}
	cp.Kubeconfig = filepath.Join(cp.dir, "kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, kc, 0o600); err != nil {
		return stopOnErr(err)
	}
	return cp, nil
}

// Stop stops the control plane and removes its files.
func (cp *ControlPlane) Stop() error {
	err := cp.Env.Stop()
	if cp.dir != "" {
		os.RemoveAll(cp.dir)
	}
	return err
}

// EnsureNamespace creates (or relabels) a namespace and its default
// ServiceAccount, which the ServiceAccount admission plugin needs and no
// controller-manager creates here.
func EnsureNamespace(ctx context.Context, cs kubernetes.Interface, name string, labels map[string]string) error {
	nsAPI := cs.CoreV1().Namespaces()
	ns, err := nsAPI.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = nsAPI.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	case err == nil:
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		for k, v := range labels {
			ns.Labels[k] = v
		}
		_, err = nsAPI.Update(ctx, ns, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	_, err = cs.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("default ServiceAccount in %s: %w", name, err)
	}
	return nil
}

// Render runs `helm template` on the chart.
func Render(ctx context.Context, helm, release, namespace string, valuesFiles []string, set ...string) ([]byte, error) {
	args := []string{"template", release, ChartDir(), "--namespace", namespace}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return runHelm(ctx, helm, args...)
}

// Lint runs `helm lint --strict` on the chart.
func Lint(ctx context.Context, helm string, valuesFiles ...string) ([]byte, error) {
	args := []string{"lint", "--strict", ChartDir()}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	return runHelm(ctx, helm, args...)
}

func runHelm(ctx context.Context, helm string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, helm, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// No user configuration, repositories or plugins leak in.
	tmp, err := os.MkdirTemp("", "helm-home-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+tmp, "HELM_CACHE_HOME="+tmp, "HELM_DATA_HOME="+tmp)
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out, nil
}

// Manifests splits rendered YAML into objects (empty documents dropped).
func Manifests(rendered []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(rendered), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(u.Object) == 0 {
			continue
		}
		out = append(out, u)
	}
}

// Find returns the rendered object of a kind (the first one).
func Find(objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	return nil
}

// Decode converts a rendered object into a typed one, strictly: a field
// the type does not know is an error.
func Decode(u *unstructured.Unstructured, into any) error {
	b, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	return yaml.UnmarshalStrict(b, into)
}

// WebhookConfiguration returns the chart's MutatingWebhookConfiguration.
func WebhookConfiguration(objs []*unstructured.Unstructured) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	u := Find(objs, "MutatingWebhookConfiguration")
	if u == nil {
		return nil, errors.New("the chart renders no MutatingWebhookConfiguration")
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	return mwc, Decode(u, mwc)
}

// PolicyFile returns the policy file from the chart's ConfigMap.
func PolicyFile(objs []*unstructured.Unstructured) ([]byte, error) {
	u := Find(objs, "ConfigMap")
	if u == nil {
		return nil, errors.New("the chart renders no ConfigMap")
	}
	cm := &corev1.ConfigMap{}
	if err := Decode(u, cm); err != nil {
		return nil, err
	}
	data, ok := cm.Data["config.yaml"]
	if !ok {
		return nil, errors.New("the chart's ConfigMap has no config.yaml")
	}
	return []byte(data), nil
}

// PointAt sends every webhook of the configuration to url (the injector
// running in the test instead of the in-cluster Service) with caBundle
// (nil leaves it for the self-managed mode to fill in).
func PointAt(mwc *admissionregistrationv1.MutatingWebhookConfiguration, url string, caBundle []byte) {
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle}
	}
}

// Scope limits every webhook of the configuration to namespaces labelled
// key=value, on top of the chart's selectors, so configurations of several
// tests sharing one API server never see each other's namespaces.
func Scope(mwc *admissionregistrationv1.MutatingWebhookConfiguration, key, value string) {
	requireOfNamespaces(mwc, metav1.LabelSelectorRequirement{Key: key, Operator: metav1.LabelSelectorOpIn, Values: []string{value}})
}

// Exclude narrows every webhook entry to namespaces without the label key.
func Exclude(mwc *admissionregistrationv1.MutatingWebhookConfiguration, key string) {
	requireOfNamespaces(mwc, metav1.LabelSelectorRequirement{Key: key, Operator: metav1.LabelSelectorOpDoesNotExist})
}

func requireOfNamespaces(mwc *admissionregistrationv1.MutatingWebhookConfiguration, r metav1.LabelSelectorRequirement) {
	for i := range mwc.Webhooks {
		w := &mwc.Webhooks[i]
		if w.NamespaceSelector == nil {
			w.NamespaceSelector = &metav1.LabelSelector{}
		}
		w.NamespaceSelector.MatchExpressions = append(w.NamespaceSelector.MatchExpressions, r)
	}
}

// ApplyWebhookConfiguration creates or replaces the configuration.
func ApplyWebhookConfiguration(ctx context.Context, cs kubernetes.Interface, mwc *admissionregistrationv1.MutatingWebhookConfiguration) error {
	api := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cur, err := api.Get(ctx, mwc.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, mwc, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	mwc = mwc.DeepCopy()
	mwc.ResourceVersion = cur.ResourceVersion
	_, err = api.Update(ctx, mwc, metav1.UpdateOptions{})
	return err
}

// WaitFor polls cond until it returns nil, failing the test with what and
// cond's last error once Deadline passes.
func WaitFor(t testing.TB, what string, cond func() error) {
	t.Helper()
	end := time.Now().Add(Deadline)
	var err error
	for time.Now().Before(end) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("waited %s for %s; last: %v", Deadline, what, err)
}
