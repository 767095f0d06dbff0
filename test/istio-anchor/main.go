// Command istio-anchor serves Istio's sidecar injection webhook (istiod's
// /inject handler from istio.io/istio pkg/kube/inject) over HTTPS, with
// Istio's default install configuration, so benchmarks can register it on a
// kube-apiserver beside the project's injector. Test-only: it lives in its
// own Go module and never enters the product's go.mod or binaries.
//
//	istio-anchor --listen 127.0.0.1:15017 --cert-dir DIR --ca-out ca.pem --ready ready
//
// TLS: tls.crt and tls.key from --cert-dir when both exist; otherwise a
// self-signed CA and serving certificate for --san are made (and written to
// --cert-dir when given). --ca-out receives the CA a client must trust (when
// the pair was read from files, ca.crt beside them if present).
// Paths: /inject (and /inject/...) is Istio's handler, /healthz and /ready
// answer 200 once it serves. --ready FILE is written (with the bound
// address) once the listener accepts connections. --webhook-config FILE
// receives Istio's own MutatingWebhookConfiguration (its four webhooks,
// namespace and object selectors), pointed at --url with the CA.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sidecar-injector/injector/test/istio-anchor/anchor"
	istiolog "istio.io/istio/pkg/log"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "istio-anchor:", err)
		os.Exit(1)
	}
}

type config struct {
	listen, certDir, caOut, ready, webhookConfig, url string
	sans, set                                         string
	hub, tag, revision, logTarget                     string
	nativeSidecars, version, printConfig              bool
}

// run serves until ctx ends.
func run(ctx context.Context, args []string) error {
	var c config
	fs := flag.NewFlagSet("istio-anchor", flag.ContinueOnError)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:15017", "address to serve HTTPS on (port 0: any free port, see --ready)")
	fs.StringVar(&c.certDir, "cert-dir", "", "directory with tls.crt and tls.key; when they are missing a self-signed pair (and ca.crt) is written there")
	fs.StringVar(&c.caOut, "ca-out", "", "write the PEM CA that signs the serving certificate here")
	fs.StringVar(&c.ready, "ready", "", "write this file (content: the bound host:port) once the listener accepts connections")
	fs.StringVar(&c.sans, "san", "127.0.0.1,localhost,::1", "comma-separated IPs/DNS names for a generated serving certificate")
	fs.StringVar(&c.webhookConfig, "webhook-config", "", "write Istio's MutatingWebhookConfiguration, pointed at --url, here (YAML)")
	fs.StringVar(&c.url, "url", "", "the URL for --webhook-config (default https://<bound address>/inject)")
	fs.StringVar(&c.hub, "hub", "docker.io/istio", "image hub (istioctl install --set hub=)")
	fs.StringVar(&c.tag, "tag", anchor.DefaultTag, "image tag (istioctl install --set tag=)")
	fs.StringVar(&c.revision, "revision", "", "istio.io/rev served; empty is the default revision")
	fs.StringVar(&c.set, "set", "", "further install values, ';'-separated, as istioctl install --set takes them")
	fs.BoolVar(&c.nativeSidecars, "native-sidecars", true, "inject istio-proxy as a native sidecar (what istiod's ENABLE_NATIVE_SIDECARS=auto decides on Kubernetes >= 1.33)")
	fs.StringVar(&c.logTarget, "log-target", "stdout", "where Istio's log goes (stdout, stderr, a file, /dev/null); the level is istiod's default (info: one line per injection)")
	fs.BoolVar(&c.printConfig, "print-config", false, "print the rendered injector config, values and mesh config and exit")
	fs.BoolVar(&c.version, "version", false, "print the istio.io/istio module version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.version {
		fmt.Println("istio.io/istio", anchor.IstioModuleVersion)
		return nil
	}
	lo := istiolog.DefaultOptions()
	lo.OutputPaths = []string{c.logTarget}
	if err := istiolog.Configure(lo); err != nil {
		return fmt.Errorf("configure logging: %w", err)
	}
	opts := anchor.Options{Hub: c.hub, Tag: c.tag, Revision: c.revision, NativeSidecars: c.nativeSidecars}
	if c.set != "" {
		opts.Set = strings.Split(c.set, ";")
	}
	start := time.Now()
	a, err := anchor.New(opts)
	if err != nil {
		return err
	}
	if c.printConfig {
		fmt.Printf("# config\n%s\n# values\n%s\n# mesh\n%s\n", a.InjectorConfig, a.InjectorValues, a.Mesh)
		return nil
	}
	var sans []string
	for _, s := range strings.Split(c.sans, ",") {
		if s = strings.TrimSpace(s); s != "" {
			sans = append(sans, s)
		}
	}
	pair, err := loadOrGenerate(c.certDir, sans)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if c.caOut != "" {
		if pair.caPEM == nil {
			return errors.New("--ca-out: the pair in --cert-dir has no ca.crt beside it")
		}
		if err := os.WriteFile(c.caOut, pair.caPEM, 0o644); err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/inject", a.Handler)
	mux.Handle("/inject/", a.Handler)
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }
	mux.HandleFunc("/healthz", ok)
	mux.HandleFunc("/ready", ok)

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	if c.webhookConfig != "" {
		u := c.url
		if u == "" {
			u = "https://" + addr + "/inject"
		}
		y, err := a.WebhookConfigurationFor(u, pair.caPEM)
		if err != nil {
			return err
		}
		if err := os.WriteFile(c.webhookConfig, y, 0o644); err != nil {
			return err
		}
	}
	// istiod's webhook server (pilot/pkg/bootstrap/webhook.go): TLS 1.2 or
	// newer, Go's default suites, HTTP/2 offered by ALPN (ServeTLS's
	// default), the same timeouts.
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{pair.cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       90 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	if c.ready != "" {
		if err := os.WriteFile(c.ready, []byte(addr+"\n"), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "istio-anchor: istio.io/istio %s serving https://%s/inject (ready in %v)\n", anchor.IstioModuleVersion, addr, time.Since(start).Round(time.Millisecond))

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
