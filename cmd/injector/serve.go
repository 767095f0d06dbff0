package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	kversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/sidecar-injector/injector/certs"
	"github.com/sidecar-injector/injector/webhook"
	"github.com/sidecar-injector/injector/webhook/inject"
)

func serveMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", stderr)
	listen := fs.String("listen", ":9443", "HTTPS address of the webhook")
	certDir := fs.String("cert-dir", "/etc/sidecar-injector/tls", "directory with tls.crt and tls.key (reloaded when they change)")
	configPath := fs.String("config", "", "policy file (built-in defaults when empty); reloaded when it changes")
	configPoll := fs.Duration("config-poll", 2*time.Second, "how often the policy file is checked for changes")
	metricsListen := fs.String("metrics-listen", ":9090", "plain-HTTP address of /metrics and /debug/explain (empty disables)")
	namespace := fs.String("namespace", os.Getenv("POD_NAMESPACE"), "the injector's own namespace, never injected")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)")
	nsLabels := fs.String("namespace-labels", "", `run without a cluster: namespace labels as "ns=key=value,key=value;ns2=..." (no Namespace watch)`)
	kubeVersion := fs.String("kube-version", "", "Kubernetes version that resolves nativeSidecar: auto when there is no cluster to ask (default: assume 1.29 or newer)")
	shutdownDelay := fs.Duration("shutdown-delay", 0, "keep serving this long after SIGTERM while endpoints are removed")
	pprofOn := fs.Bool("enable-pprof", false, "serve /debug/pprof on the metrics address")
	http1Only := fs.Bool("http1-only", false, "offer only HTTP/1.1 (no h2 in ALPN): the API server then calls over keep-alive HTTP/1.1 connections, which cost this server less CPU per admission (docs/performance.md)")
	events := fs.Bool("events", true, "record a Kubernetes Event on the owner of each pod of an enabled namespace that is skipped or refused (needs create and patch on events; not with --namespace-labels)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "json", "json or text")
	var tf tlsFlags
	tf.register(fs)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if err := tf.check(*namespace, *nsLabels != ""); err != nil {
		fmt.Fprintln(stderr, "injector serve:", err)
		return 2
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "injector serve:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	opts := inject.Options{InjectorNamespace: *namespace}
	var source webhook.NamespaceSource
	var recorder record.EventRecorder
	readyChecks := map[string]func() error{}
	if *nsLabels != "" {
		static, err := webhook.ParseNamespaceLabels(*nsLabels)
		if err != nil {
			fmt.Fprintln(stderr, "injector serve: --namespace-labels:", err)
			return 2
		}
		source = static
		log.Info("no Namespace watch: labels come from --namespace-labels", "namespaces", static.String())
		opts.NativeSidecarsSupported, err = nativeFromFlag(*kubeVersion)
		if err != nil {
			fmt.Fprintln(stderr, "injector serve:", err)
			return 2
		}
	} else {
		cfg, err := restConfig(*kubeconfig)
		if err != nil {
			fmt.Fprintln(stderr, "injector serve:", err)
			return 1
		}
		opts.NativeSidecarsSupported, err = nativeFromServer(cfg, *kubeVersion, log)
		if err != nil {
			fmt.Fprintln(stderr, "injector serve:", err)
			return 1
		}
		cached, err := webhook.NewCachedNamespaces(cfg)
		if err != nil {
			fmt.Fprintln(stderr, "injector serve:", err)
			return 1
		}
		go func() {
			if err := cached.Start(ctx); err != nil && ctx.Err() == nil {
				log.Error("namespace watch failed", "error", err.Error())
			}
		}()
		source = cached
		readyChecks["namespaces"] = cached.Ready
		if *events {
			if recorder, err = webhook.NewEventRecorder(ctx, cfg); err != nil {
				fmt.Fprintln(stderr, "injector serve:", err)
				return 1
			}
		}
		if err := tf.start(ctx, cfg, *namespace, *certDir, readyChecks, log); err != nil {
			fmt.Fprintln(stderr, "injector serve:", err)
			return 1
		}
	}
	loader := inject.NewLoader(*configPath, opts)
	loader.Poll = *configPoll
	err = webhook.Serve(ctx, webhook.ServeOptions{
		Listen:        *listen,
		CertDir:       *certDir,
		MetricsListen: *metricsListen,
		Loader:        loader,
		Namespaces:    source,
		ReadyChecks:   readyChecks,
		ShutdownDelay: *shutdownDelay,
		EnablePprof:   *pprofOn,
		HTTP1Only:     *http1Only,
		Log:           log,
		Events:        recorder,
	})
	if err != nil {
		fmt.Fprintln(stderr, "injector serve:", err)
		return 1
	}
	return 0
}

// TLS modes: where the serving certificate comes from.
const (
	tlsModeFiles       = "files"
	tlsModeSelfManaged = "self-managed"
	tlsModeCertManager = "cert-manager"
)

// tlsFlags are the serve flags of the TLS modes (docs/install.md).
type tlsFlags struct {
	mode, secret, webhookConfig, service, hosts, certificate string
	caValidity, certValidity, caPropagation, resync          time.Duration
}

func (f *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.mode, "tls-mode", tlsModeFiles, "where tls.crt/tls.key in --cert-dir come from: files (someone else writes them), self-managed (the injector keeps a CA and certificate in --tls-secret and the caBundle of --webhook-configuration), cert-manager (a mounted cert-manager Secret; --certificate's Ready condition is part of /readyz)")
	fs.StringVar(&f.secret, "tls-secret", "", "self-managed: the Secret in --namespace holding ca.crt, ca.key, tls.crt, tls.key (created when missing)")
	fs.StringVar(&f.webhookConfig, "webhook-configuration", "", "self-managed: the MutatingWebhookConfiguration whose webhooks' caBundle is kept in sync")
	fs.StringVar(&f.service, "service", "", "self-managed: the webhook's Service name; the certificate is issued for <service>.<namespace>.svc and its variants")
	fs.StringVar(&f.hosts, "tls-hosts", "", "self-managed: extra comma-separated DNS names or IPs for the serving certificate")
	fs.DurationVar(&f.caValidity, "tls-ca-validity", certs.DefaultCAValidity, "self-managed: lifetime of a new CA (replaced at 2/3 of it)")
	fs.DurationVar(&f.certValidity, "tls-cert-validity", certs.DefaultCertValidity, "self-managed: lifetime of a serving certificate (renewed at 2/3 of it)")
	fs.DurationVar(&f.caPropagation, "tls-ca-propagation", certs.DefaultCAPropagation, "self-managed: how long a new CA is in the caBundle before it signs")
	fs.DurationVar(&f.resync, "tls-resync", certs.DefaultResync, "self-managed: how often the Secret and the caBundle are re-checked")
	fs.StringVar(&f.certificate, "certificate", "", "cert-manager: the Certificate in --namespace whose Ready condition /readyz reports")
}

func (f *tlsFlags) check(namespace string, noCluster bool) error {
	switch f.mode {
	case tlsModeFiles:
		return nil
	case tlsModeSelfManaged:
		if f.secret == "" || f.service == "" {
			return errors.New("--tls-mode=self-managed needs --tls-secret and --service (and usually --webhook-configuration)")
		}
	case tlsModeCertManager:
		if f.certificate == "" {
			return errors.New("--tls-mode=cert-manager needs --certificate")
		}
	default:
		return fmt.Errorf("--tls-mode %q: use files, self-managed or cert-manager", f.mode)
	}
	if noCluster {
		return fmt.Errorf("--tls-mode=%s needs the Kubernetes API; it cannot be combined with --namespace-labels", f.mode)
	}
	if namespace == "" {
		return fmt.Errorf("--tls-mode=%s needs --namespace (or $POD_NAMESPACE)", f.mode)
	}
	return nil
}

// start prepares the certificate before the server reads it and adds the
// mode's readiness check.
func (f *tlsFlags) start(ctx context.Context, cfg *rest.Config, namespace, certDir string, ready map[string]func() error, log *slog.Logger) error {
	switch f.mode {
	case tlsModeSelfManaged:
		cs, err := certs.NewKubeClient(cfg)
		if err != nil {
			return err
		}
		hosts := certs.ServiceHosts(f.service, namespace)
		for _, h := range strings.Split(f.hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hosts = append(hosts, h)
			}
		}
		m, err := certs.NewSelfManaged(certs.SelfManagedOptions{
			Client: cs, Namespace: namespace, SecretName: f.secret, WebhookConfiguration: f.webhookConfig,
			Hosts: hosts, CertDir: certDir, CAValidity: f.caValidity, CertValidity: f.certValidity,
			CAPropagation: f.caPropagation, Resync: f.resync, Log: log,
		})
		if err != nil {
			return err
		}
		log.Info("self-managed TLS: ensuring the CA and serving certificate", "secret", namespace+"/"+f.secret, "webhookConfiguration", f.webhookConfig)
		if err := m.Start(ctx); err != nil {
			return err
		}
		ready["self-managed-tls"] = m.Ready
	case tlsModeCertManager:
		c, err := certs.NewCertificateChecker(cfg, namespace, f.certificate)
		if err != nil {
			return err
		}
		ready["certificate"] = c.Check
	}
	return nil
}

// restConfig finds the API server: --kubeconfig, in-cluster, $KUBECONFIG,
// ~/.kube/config.
func restConfig(path string) (*rest.Config, error) {
	if path != "" {
		return clientcmd.BuildConfigFromFlags("", path)
	}
	if cfg, err := rest.InClusterConfig(); err == nil {
		return cfg, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, errors.New("no Kubernetes API found (not in a cluster, no --kubeconfig, $KUBECONFIG or ~/.kube/config); to run without a cluster pass --namespace-labels")
	}
	return cfg, nil
}

// nativeMin is the first Kubernetes version with native sidecars on by
// default (SidecarContainers beta).
var nativeMin = kversion.MustParseGeneric("1.29.0")

func nativeFromFlag(v string) (bool, error) {
	if v == "" {
		return true, nil
	}
	parsed, err := kversion.ParseGeneric(strings.TrimPrefix(v, "v"))
	if err != nil {
		return false, fmt.Errorf("--kube-version %q: %w", v, err)
	}
	return parsed.AtLeast(nativeMin), nil
}

// nativeFromServer asks the API server its version once, at start.
func nativeFromServer(cfg *rest.Config, override string, log *slog.Logger) (bool, error) {
	if override != "" {
		return nativeFromFlag(override)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false, err
	}
	info, err := dc.ServerVersion()
	if err != nil {
		return false, fmt.Errorf("asking the API server its version: %w", err)
	}
	parsed, err := kversion.ParseGeneric(info.GitVersion)
	if err != nil {
		return false, fmt.Errorf("API server version %q: %w", info.GitVersion, err)
	}
	native := parsed.AtLeast(nativeMin)
	log.Info("API server version discovered", "version", info.GitVersion, "nativeSidecarsSupported", native)
	return native, nil
}
