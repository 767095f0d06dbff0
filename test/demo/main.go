// Command demo is `make run`: the injector installed the way the chart
// installs it, on a local control plane, with no cluster and no Docker.
//
// It starts a real kube-apiserver and etcd (the binaries test/tools/install.sh
// builds; KUBEBUILDER_ASSETS), renders the chart's webhook configuration and
// policy file with helm, runs the injector in this process the real way
// (self-managed TLS: a CA and a serving certificate in a Secret, the
// caBundle patched into the webhook configuration; the Namespace watch),
// labels a demo namespace, creates sample workload pods through the API
// server, and prints what was injected and why.
//
//	make run                         # builds the binaries on first use
//	go run ./test/demo -full         # print the whole stored pods
//
// `injector demo` (cmd/injector/demo.go) is the fallback without a control
// plane.
package main

import (
	"context"
	"embed"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/injector/certs"
	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/webhook"
	"github.com/sidecar-injector/injector/webhook/inject"
)

//go:embed pods/*.yaml
var pods embed.FS

const (
	release   = "sidecar-injector"
	namespace = "mesh-system"
)

func main() {
	full := flag.Bool("full", false, "print every stored pod in full (the Envoy bootstrap included)")
	verbose := flag.Bool("v", false, "print the API server's and the injector's logs")
	flag.Parse()
	if err := run(os.Stdout, *full, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, full, verbose bool) error {
	helm, err := harness.Helm()
	if err != nil {
		return err
	}
	if _, err := harness.ControlPlaneAssets(); err != nil {
		return err
	}
	var cpOut io.Writer
	if verbose {
		cpOut = os.Stderr
	}
	fmt.Fprintf(out, "Starting kube-apiserver %s and etcd %s (local, no cluster, no Docker)...\n", harness.KubeVersion, harness.EtcdVersion)
	start := time.Now()
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{Output: cpOut})
	if err != nil {
		return err
	}
	defer cp.Stop()
	fmt.Fprintf(out, "  API server %s ready in %s\n\n", cp.Config.Host, time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Warnings the API server returns (kubectl prints them) are collected
	// and shown with each pod.
	warnings := &warningLog{}
	wcfg := rest.CopyConfig(cp.Config)
	wcfg.WarningHandler = warnings
	cs, err := kubernetes.NewForConfig(wcfg)
	if err != nil {
		return err
	}

	// The chart, rendered as `helm install` would render it.
	rendered, err := harness.Render(ctx, helm, release, namespace, nil)
	if err != nil {
		return err
	}
	objs, err := harness.Manifests(rendered)
	if err != nil {
		return err
	}
	mwc, err := harness.WebhookConfiguration(objs)
	if err != nil {
		return err
	}
	policy, err := harness.PolicyFile(objs)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sidecar-injector-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	configPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configPath, policy, 0o644); err != nil {
		return err
	}
	if err := harness.EnsureNamespace(ctx, cs, namespace, nil); err != nil {
		return err
	}
	addr, err := harness.FreeAddr()
	if err != nil {
		return err
	}
	// In a cluster the API server calls the Service; here the injector
	// runs in this process, so every entry points at it by URL. The
	// caBundle is left empty: self-managed TLS fills it in.
	harness.PointAt(mwc, "https://"+addr+webhook.InjectPath, nil)
	if err := harness.ApplyWebhookConfiguration(ctx, cs, mwc); err != nil {
		return err
	}
	fmt.Fprintf(out, "helm template %s charts/sidecar-injector -n %s: MutatingWebhookConfiguration %q with %d webhooks:\n", release, namespace, mwc.Name, len(mwc.Webhooks))
	for _, w := range mwc.Webhooks {
		fmt.Fprintf(out, "  %-34s namespaces %s; pods %s\n", w.Name, selector(w.NamespaceSelector), selector(w.ObjectSelector))
	}
	fmt.Fprintln(out)

	// The injector, as `injector serve --tls-mode=self-managed` runs it.
	logs := &harness.SyncBuffer{}
	decisions := &decisionLog{}
	var logOut io.Writer = logs
	if verbose {
		logOut = io.MultiWriter(logs, os.Stderr)
	}
	handler := decisions.wrap(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	log := slog.New(handler)
	ctrllog.SetLogger(logr.FromSlogHandler(handler))
	certDir := filepath.Join(dir, "tls")
	tlsMgr, err := certs.NewSelfManaged(certs.SelfManagedOptions{
		Client: cs, Namespace: namespace, SecretName: release + "-tls", WebhookConfiguration: mwc.Name,
		Hosts: certs.ServiceHosts(release, namespace), CertDir: certDir, Log: log,
	})
	if err != nil {
		return err
	}
	if err := tlsMgr.Start(ctx); err != nil {
		return err
	}
	cached, err := webhook.NewCachedNamespaces(cp.Config)
	if err != nil {
		return err
	}
	go func() { _ = cached.Start(ctx) }()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- webhook.Serve(ctx, webhook.ServeOptions{
			Listen:  addr,
			CertDir: certDir,
			Loader: inject.NewLoader(configPath, inject.Options{
				NativeSidecarsSupported: true, InjectorNamespace: namespace}),
			Namespaces:  cached,
			ReadyChecks: map[string]func() error{"namespaces": cached.Ready, "self-managed-tls": tlsMgr.Ready},
			Log:         log,
			OnReady:     func() { close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		return fmt.Errorf("the injector did not start: %v\n%s", err, logs.Tail(4096))
	case <-time.After(harness.Deadline):
		return fmt.Errorf("the injector is not ready (OnReady not called) after %s\n%s", harness.Deadline, logs.Tail(4096))
	}
	st := tlsMgr.Status()
	secret, err := cs.CoreV1().Secrets(namespace).Get(ctx, release+"-tls", metav1.GetOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "injector serving https://%s%s (self-managed TLS)\n", addr, webhook.InjectPath)
	fmt.Fprintf(out, "  Secret %s/%s: keys %s\n", namespace, secret.Name, strings.Join(keys(secret.Data), ", "))
	fmt.Fprintf(out, "  CA %q until %s; serving certificate for %s until %s\n", st.CASubject, st.CANotAfter.Format(time.DateOnly),
		release+"."+namespace+".svc", st.ServingNotAfter.Format(time.DateOnly))
	got, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, mwc.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  caBundle patched into all %d webhooks (%d bytes each)\n", len(got.Webhooks), len(got.Webhooks[0].ClientConfig.CABundle))
	fmt.Fprintf(out, "  policy file: the chart's ConfigMap (proxy %s, init %s)\n\n", imageOf(policy, "proxy"), imageOf(policy, "init"))

	for ns, labels := range map[string]map[string]string{"shop": {"sidecar-injector.io/injection": "enabled"}, "legacy": nil} {
		if err := harness.EnsureNamespace(ctx, cs, ns, labels); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, `namespace "shop" is labelled sidecar-injector.io/injection=enabled; namespace "legacy" is not`)
	// The API server's webhook configuration informer lags the write.
	if err := waitInjecting(ctx, cs, "shop"); err != nil {
		return err
	}
	fmt.Fprintln(out)

	entries, err := pods.ReadDir("pods")
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	var summary [][3]string
	for _, e := range entries {
		row, err := createOne(ctx, out, cs, decisions, warnings, path.Join("pods", e.Name()), full)
		if err != nil {
			return err
		}
		summary = append(summary, row)
	}
	fmt.Fprintln(out, "Summary (what the API server stored):")
	for _, r := range summary {
		fmt.Fprintf(out, "  %-28s %-9s %s\n", r[0], r[1], r[2])
	}
	fmt.Fprintf(out, "\nOn a cluster: helm install %s charts/sidecar-injector -n %s --create-namespace (docs/install.md).\n", release, namespace)
	cancel()
	if err := <-done; err != nil {
		return err
	}
	return nil
}

func createOne(ctx context.Context, out io.Writer, cs kubernetes.Interface, decisions *decisionLog, warnings *warningLog, name string, full bool) ([3]string, error) {
	raw, err := pods.ReadFile(name)
	if err != nil {
		return [3]string{}, err
	}
	pod := &corev1.Pod{}
	if err := yaml.UnmarshalStrict(raw, pod); err != nil {
		return [3]string{}, fmt.Errorf("%s: %w", name, err)
	}
	comment := strings.TrimPrefix(strings.SplitN(string(raw), "\napiVersion", 2)[0], "# ")
	comment = strings.ReplaceAll(comment, "\n# ", " ")
	label := pod.Namespace + "/" + firstNonEmpty(pod.Name, pod.GenerateName+"*")
	fmt.Fprintf(out, "=== %s  %s\n", path.Base(name), label)
	fmt.Fprintf(out, "    %s\n", comment)
	mark := decisions.count()
	warnings.take()
	stored, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	d, called := decisions.since(mark)
	if err != nil {
		fmt.Fprintf(out, "    refused by the API server: %v\n", err)
		if called {
			fmt.Fprintf(out, "    decision: %s (%s)\n\n", d.result, d.reason)
		}
		return [3]string{label, "refused", d.reason}, nil
	}
	label = stored.Namespace + "/" + stored.Name
	if !called {
		fmt.Fprintf(out, "    created %s; the webhook was not called: the chart's selectors do not send this pod\n\n", stored.Name)
		return [3]string{label, "untouched", "not sent to the webhook"}, nil
	}
	fmt.Fprintf(out, "    created %s; decision: %s (%s)", stored.Name, d.result, d.reason)
	if d.policy != "" {
		fmt.Fprintf(out, ", policy %q", d.policy)
	}
	fmt.Fprintln(out)
	if d.message != "" {
		fmt.Fprintf(out, "    why: %s\n", d.message)
	}
	for _, w := range warnings.take() {
		fmt.Fprintf(out, "    Warning (from the API server, as kubectl prints it): %s\n", w)
	}
	if d.result == "skipped" {
		fmt.Fprintln(out, "    stored as sent: no sidecar, no init container")
	}
	if st, ok, _ := inject.ReadStatus(stored); ok {
		describeInjected(out, stored, st)
	}
	if full {
		b, _ := json.Marshal(stored)
		y, _ := yaml.JSONToYAML(b)
		fmt.Fprintf(out, "%s\n", indent(string(y), "      "))
	}
	fmt.Fprintln(out)
	return [3]string{label, d.result, d.reason}, nil
}

func describeInjected(out io.Writer, pod *corev1.Pod, st *inject.Status) {
	mode := "classic sidecar (first container)"
	if st.Native {
		mode = "native sidecar (init container, restartPolicy Always)"
	}
	fmt.Fprintf(out, "    injected: %s\n", mode)
	for _, c := range pod.Spec.InitContainers {
		fmt.Fprintf(out, "      initContainer %-12s %s%s\n", c.Name, c.Image, restart(c))
	}
	for _, c := range pod.Spec.Containers {
		extra := ""
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Exec != nil {
			extra = "  preStop: " + strings.Join(c.Lifecycle.PreStop.Exec.Command, " ")
		}
		fmt.Fprintf(out, "      container     %-12s %s%s\n", c.Name, c.Image, extra)
	}
	fmt.Fprintf(out, "      volumes added: %s\n", strings.Join(st.Volumes, ", "))
	if st.GracePeriod != nil {
		fmt.Fprintf(out, "      terminationGracePeriodSeconds raised to %d\n", st.GracePeriod.To)
	}
}

func restart(c corev1.Container) string {
	if c.RestartPolicy != nil {
		return "  (restartPolicy " + string(*c.RestartPolicy) + ")"
	}
	return ""
}

// warningLog collects the API server's warnings.
type warningLog struct {
	mu   sync.Mutex
	list []string
}

func (w *warningLog) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warningLog) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

// decisionLog records the injector's admission log lines, to say why.
type decisionLog struct {
	mu   sync.Mutex
	list []decision
}

type decision struct {
	result, reason, policy, message string
}

func (l *decisionLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.list)
}

// since returns the last decision after mark; the demo creates one pod at
// a time.
func (l *decisionLog) since(mark int) (decision, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.list) <= mark {
		return decision{}, false
	}
	return l.list[len(l.list)-1], true
}

func (l *decisionLog) wrap(h slog.Handler) slog.Handler { return &capture{Handler: h, log: l} }

type capture struct {
	slog.Handler
	log *decisionLog
}

func (c *capture) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "admission" {
		var d decision
		dry := false
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "result":
				d.result = a.Value.String()
			case "reason":
				d.reason = a.Value.String()
			case "policy":
				d.policy = a.Value.String()
			case "message":
				d.message = a.Value.String()
			case "dryRun":
				dry = a.Value.Bool()
			}
			return true
		})
		if !dry {
			c.log.mu.Lock()
			c.log.list = append(c.log.list, d)
			c.log.mu.Unlock()
		}
	}
	return c.Handler.Handle(ctx, r)
}

func (c *capture) WithAttrs(as []slog.Attr) slog.Handler {
	return &capture{Handler: c.Handler.WithAttrs(as), log: c.log}
}

func (c *capture) WithGroup(name string) slog.Handler {
	return &capture{Handler: c.Handler.WithGroup(name), log: c.log}
}

func waitInjecting(ctx context.Context, cs kubernetes.Interface, ns string) error {
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	deadline := time.Now().Add(harness.Deadline)
	for {
		p, err := cs.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && p.Annotations["sidecar-injector.io/status"] != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the API server does not call the webhook (a dry-run pod is not injected) after %s: %v", harness.Deadline, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func selector(s *metav1.LabelSelector) string {
	if s == nil {
		return "all"
	}
	var parts []string
	for _, e := range s.MatchExpressions {
		switch e.Operator {
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			parts = append(parts, fmt.Sprintf("%s %s", e.Key, e.Operator))
		default:
			parts = append(parts, fmt.Sprintf("%s %s [%s]", e.Key, e.Operator, strings.Join(e.Values, ",")))
		}
	}
	return strings.Join(parts, " AND ")
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// imageOf reads defaults.settings.<part>.image from the policy file.
func imageOf(policy []byte, part string) string {
	var f struct {
		Defaults struct {
			Settings map[string]struct {
				Image string `json:"image"`
			} `json:"settings"`
		} `json:"defaults"`
	}
	if err := yaml.Unmarshal(policy, &f); err != nil {
		return "?"
	}
	return f.Defaults.Settings[part].Image
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}
