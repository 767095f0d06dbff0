package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/tools/record"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/sidecar-injector/injector/webhook/inject"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// InjectPath is where the mutating webhook is served.
const InjectPath = "/inject"

// ServeOptions configure `injector serve`.
type ServeOptions struct {
	// Listen is the HTTPS address (":9443").
	Listen string
	// CertDir holds tls.crt and tls.key; changes are picked up without a
	// restart.
	CertDir string
	// MetricsListen is the plain-HTTP address of /metrics and the debug
	// endpoints ("" disables it).
	MetricsListen string
	// Loader builds the engine from the configuration (file or built-in).
	Loader *inject.Loader
	// Namespaces is where labels come from.
	Namespaces NamespaceSource
	// ReadyChecks must all pass for /readyz (the namespace cache sync, ...).
	ReadyChecks map[string]func() error
	// ShutdownDelay keeps serving after SIGTERM, while endpoints are
	// removed, before the server stops accepting.
	ShutdownDelay time.Duration
	// EnablePprof serves /debug/pprof on the metrics address.
	EnablePprof bool
	// HTTP1Only offers only HTTP/1.1 in TLS's ALPN, so the API server
	// calls over a pool of HTTP/1.1 keep-alive connections instead of
	// multiplexing on HTTP/2 (docs/performance.md has the measurements;
	// kubebuilder's webhooks are HTTP/1.1-only by default too).
	HTTP1Only bool
	Log       *slog.Logger
	// OnReady is called once the server is ready (tests, the demo).
	OnReady func()
	// Events, when set, records an Event on the owner of each pod of an
	// enabled namespace that is skipped or refused (events.go).
	Events record.EventRecorder
}

// Serve runs the injector until ctx ends, then shuts down gracefully: it
// reports not ready, waits ShutdownDelay, stops accepting and finishes the
// requests in flight.
func Serve(ctx context.Context, o ServeOptions) error {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || !meshinit.IsPort(int64(port)) {
		return fmt.Errorf("--listen %q: the port must be %s", o.Listen, meshinit.PortRangeText)
	}
	metrics, err := NewMetrics(ctrlmetrics.Registry)
	if err != nil {
		return err
	}
	engine, err := o.Loader.Load()
	metrics.ConfigReloads.WithLabelValues(loadResult(err)).Inc()
	if err != nil {
		return err
	}
	metrics.ConfigValid.Set(1)
	logWarnings(log, engine)
	handler := NewHandler(engine, o.Namespaces, log, metrics)
	if o.Events != nil {
		handler.SetEventRecorder(o.Events)
	}

	mux := http.NewServeMux()
	srv := crwebhook.NewServer(crwebhook.Options{
		Host:       host,
		Port:       port,
		CertDir:    o.CertDir,
		WebhookMux: mux,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			// h2 first (the API server speaks it), HTTP/1.1 for clients that
			// do not.
			c.NextProtos = []string{"h2", "http/1.1"}
			if o.HTTP1Only {
				c.NextProtos = []string{"http/1.1"}
			}
		}},
	})
	srv.Register(InjectPath, handler)

	var shuttingDown sync.Once
	stopping := make(chan struct{})
	tlsStarted := srv.StartedChecker()
	ready := &readiness{checks: map[string]func() error{
		"tls": func() error {
			return tlsStarted(&http.Request{})
		},
		"shutdown": func() error {
			select {
			case <-stopping:
				return errors.New("shutting down")
			default:
				return nil
			}
		},
	}, warnings: map[string]func() error{
		// A rejected reload keeps the last good configuration serving, so
		// it is reported here without failing readiness: failing it would
		// take every replica out of the Service at once.
		"config": func() error { return o.Loader.LastError() },
	}, notes: map[string]func() []string{
		// Legal values that are probably mistakes, as the log said when
		// the configuration in force loaded.
		"policy warning": func() []string {
			var out []string
			for _, w := range handler.Engine().Warnings() {
				out = append(out, w.String())
			}
			return out
		},
	}}
	for name, c := range o.ReadyChecks {
		ready.checks[name] = c
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("/readyz", ready)

	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	errc := make(chan error, 3)
	go func() { errc <- srv.Start(serveCtx) }()

	var metricsSrv *http.Server
	if o.MetricsListen != "" {
		mmux := http.NewServeMux()
		mmux.Handle("/metrics", promhttp.HandlerFor(ctrlmetrics.Registry, promhttp.HandlerOpts{}))
		mmux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		mmux.Handle("/readyz", ready)
		mmux.Handle("/debug/explain", handler.ExplainHandler())
		if o.EnablePprof {
			mmux.HandleFunc("/debug/pprof/", pprof.Index)
			mmux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mmux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		ln, err := net.Listen("tcp", o.MetricsListen)
		if err != nil {
			return fmt.Errorf("--metrics-listen %q: %w", o.MetricsListen, err)
		}
		metricsSrv = &http.Server{Handler: mmux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		log.Info("serving metrics", "address", ln.Addr().String())
	}
	go o.Loader.Watch(serveCtx, func(e *inject.Engine, err error) {
		if e == nil && err == nil {
			metrics.ConfigValid.Set(1)
			log.Info("configuration file is back to the configuration in force")
			return
		}
		metrics.ConfigReloads.WithLabelValues(loadResult(err)).Inc()
		if err != nil {
			metrics.ConfigValid.Set(0)
			log.Error("configuration reload rejected; the previous configuration stays in force", "error", err.Error())
			return
		}
		metrics.ConfigValid.Set(1)
		handler.SetEngine(e)
		log.Info("configuration reloaded", "policies", len(e.Config().Policies))
		logWarnings(log, e)
	})
	if o.OnReady != nil {
		go func() {
			for serveCtx.Err() == nil {
				if ready.check() == nil {
					o.OnReady()
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		log.Error("server failed", "error", runErr.Error())
	}
	shuttingDown.Do(func() { close(stopping) })
	if runErr == nil && o.ShutdownDelay > 0 {
		log.Info("shutting down: not ready, still serving while endpoints are removed", "delay", o.ShutdownDelay)
		time.Sleep(o.ShutdownDelay)
	}
	log.Info("shutting down: no new connections, finishing requests in flight")
	stopServing()
	if metricsSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = metricsSrv.Shutdown(sctx)
		cancel()
	}
	if runErr == nil {
		// srv.Start returns once its graceful shutdown has finished.
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			runErr = err
		}
	}
	log.Info("stopped")
	return runErr
}

// logWarnings logs each load-time warning of a configuration put in force.
func logWarnings(log *slog.Logger, e *inject.Engine) {
	for _, w := range e.Warnings() {
		log.Warn("policy file warning: the value is legal but probably not meant", "warning", w.String())
	}
}

func loadResult(err error) string {
	if err != nil {
		return "failure"
	}
	return "success"
}

// readiness is /readyz: every check must pass; the body lists them, and
// the warnings, which do not fail it.
type readiness struct {
	checks   map[string]func() error
	warnings map[string]func() error
	// notes are lines shown for information, one "[!] name: line" each.
	notes map[string]func() []string
}

func (r *readiness) check() error {
	var failed []string
	for name, c := range r.checks {
		if err := c(); err != nil {
			failed = append(failed, name+": "+err.Error())
		}
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

func (r *readiness) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	var b strings.Builder
	ok := true
	for _, n := range slices.Sorted(maps.Keys(r.checks)) {
		if err := r.checks[n](); err != nil {
			ok = false
			fmt.Fprintf(&b, "[-] %s: %v\n", n, err)
		} else {
			fmt.Fprintf(&b, "[+] %s ok\n", n)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(r.warnings)) {
		if err := r.warnings[n](); err != nil {
			fmt.Fprintf(&b, "[!] %s: %v (still serving the last good configuration)\n", n, err)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(r.notes)) {
		for _, line := range r.notes[n]() {
			fmt.Fprintf(&b, "[!] %s: %s\n", n, line)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write([]byte(b.String()))
}
