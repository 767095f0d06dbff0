package standin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Banner is in the stand-in's first log line, so nobody mistakes its log
// for Envoy's.
const Banner = "envoy STAND-IN"

// dialTimeout bounds connecting to an original destination (the
// bootstrap's passthrough clusters use 1-2s connect timeouts).
const dialTimeout = 5 * time.Second

// Server is a running stand-in.
type Server struct {
	opts Options
	boot *Bootstrap
	log  *slog.Logger

	healthFailed atomic.Bool
	draining     atomic.Bool
	// initializing: /ready answers 503 PRE_INITIALIZING, as Envoy does
	// before its listeners and clusters are ready (ReadyDelayEnv).
	initializing atomic.Bool
	quit         chan struct{}
	quitOnce     sync.Once

	mu        sync.Mutex
	listeners []*proxyListener
	servers   []*http.Server
	admin     *http.Server
	counts    map[string]int64 // "direction/family" -> connections

	// drainSleep waits out a graceful drain (time.Sleep); the tests hold
	// the drain open and check the duration it was asked for.
	drainSleep func(time.Duration)
}

type proxyListener struct {
	cfg    Listener
	ln     net.Listener
	closed atomic.Bool
}

// New prepares a stand-in from its options and bootstrap; Start binds.
func New(opts Options, boot *Bootstrap, log *slog.Logger) *Server {
	return &Server{opts: opts, boot: boot, log: log.With("proxy", Banner), quit: make(chan struct{}), counts: map[string]int64{}, drainSleep: time.Sleep}
}

// SetInitializing makes /ready answer 503 PRE_INITIALIZING (true) or
// serve as usual (false).
func (s *Server) SetInitializing(v bool) { s.initializing.Store(v) }

// ReadyDelayEnv, when set to a Go duration, keeps the stand-in not ready
// (/ready: 503 PRE_INITIALIZING) for that long after its listeners are up:
// a slow Envoy, for the node tier's proof that the injected pod's app
// waits for the proxy.
const ReadyDelayEnv = "ENVOY_STANDIN_READY_DELAY"

// Quit is closed when /quitquitquit was called.
func (s *Server) Quit() <-chan struct{} { return s.quit }

func listen(l Listener) (net.Listener, error) {
	lc := net.ListenConfig{}
	host, _, _ := net.SplitHostPort(l.Address)
	network := "tcp"
	if ip, err := netip.ParseAddr(host); err == nil {
		switch {
		case ip.Is6() && ip.IsUnspecified() && l.V4Compat:
			lc.Control = dualStack
			network = "tcp6"
		case ip.Is6():
			network = "tcp6"
		default:
			network = "tcp4"
		}
	}
	return lc.Listen(context.Background(), network, l.Address)
}

// Start binds every listener, then the admin interface: once the admin
// answers, every listener is accepting (Envoy's /ready says LIVE only
// after its listeners are initialised, too).
func (s *Server) Start() error {
	mux := s.adminMux()
	for _, l := range s.boot.Listeners {
		switch {
		case l.AdminRoutes != nil:
			ln, err := listen(l)
			if err != nil {
				return fmt.Errorf("listener %s on %s: %w", l.Name, l.Address, err)
			}
			srv := &http.Server{Handler: s.routes(l, mux), ReadHeaderTimeout: 10 * time.Second}
			s.servers = append(s.servers, srv)
			pl := &proxyListener{cfg: l, ln: ln}
			s.listeners = append(s.listeners, pl)
			go func() { _ = srv.Serve(ln) }()
			s.log.Info("listening", "listener", l.Name, "address", l.Address, "kind", "admin routes", "routes", l.AdminRoutes)
		case l.Passthrough:
			ln, err := listen(l)
			if err != nil {
				return fmt.Errorf("listener %s on %s: %w", l.Name, l.Address, err)
			}
			pl := &proxyListener{cfg: l, ln: ln}
			s.listeners = append(s.listeners, pl)
			go s.accept(pl)
			s.log.Info("listening", "listener", l.Name, "address", l.Address, "kind", "TCP passthrough to the original destination",
				"direction", string(l.Direction), "ipv4_compat", l.V4Compat)
		default:
			s.log.Warn("listener not served by the stand-in (neither passthrough nor admin routes)", "listener", l.Name, "address", l.Address)
		}
	}
	ln, err := net.Listen("tcp", s.boot.AdminAddress)
	if err != nil {
		return fmt.Errorf("admin on %s: %w", s.boot.AdminAddress, err)
	}
	s.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.admin.Serve(ln) }()
	s.log.Info("admin listening", "address", s.boot.AdminAddress)
	return nil
}

// Close stops every listener and the admin interface.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if l.closed.CompareAndSwap(false, true) {
			_ = l.ln.Close()
		}
	}
	for _, srv := range s.servers {
		_ = srv.Close()
	}
	if s.admin != nil {
		_ = s.admin.Close()
	}
}

func family(a netip.Addr) string {
	if a.Unmap().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	return netip.AddrPort{}
}

func (s *Server) accept(pl *proxyListener) {
	for {
		c, err := pl.ln.Accept()
		if err != nil {
			if pl.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Error("accept", "listener", pl.cfg.Name, "error", err.Error())
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go s.handle(pl, c.(*net.TCPConn))
	}
}

func (s *Server) handle(pl *proxyListener, c *net.TCPConn) {
	defer c.Close()
	local, peer := addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())
	fam := family(local.Addr())
	dir := strings.ToLower(string(pl.cfg.Direction))
	dst, err := originalDst(c, fam == "IPv4")
	if err != nil {
		s.log.Warn("connection without an original destination, closed", "direction", dir, "family", fam,
			"peer", peer.String(), "local", local.String(), "error", err.Error())
		return
	}
	// Envoy's loop guard: the bootstrap sends a connection whose original
	// destination is the listener's own port to the blackhole cluster.
	if _, port, _ := net.SplitHostPort(pl.cfg.Address); port == strconv.Itoa(int(dst.Port())) {
		s.log.Warn("connection to the listener's own port, closed (loop)", "direction", dir, "family", fam,
			"peer", peer.String(), "original_dst", dst.String())
		return
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	s.count(dir, fam)
	s.log.Info("connection", "direction", dir, "family", fam, "peer", peer.String(),
		"local", local.String(), "original_dst", dst.String())
	up, err := net.DialTimeout("tcp", dst.String(), dialTimeout)
	if err != nil {
		s.log.Warn("upstream connect failed", "direction", dir, "family", fam, "original_dst", dst.String(), "error", err.Error())
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(to, from *net.TCPConn) {
		_, _ = io.Copy(to, from)
		_ = to.CloseWrite()
		done <- struct{}{}
	}
	go pipe(up.(*net.TCPConn), c)
	go pipe(c, up.(*net.TCPConn))
	<-done
	<-done
}

func (s *Server) count(dir, fam string) {
	s.mu.Lock()
	s.counts[dir+"/"+fam]++
	s.mu.Unlock()
}

// routes serves a listener whose routes go to the admin cluster: each
// exact path is rewritten (prefix_rewrite) and handed to the admin
// handler, as Envoy's router forwards it to the admin address.
func (s *Server) routes(l Listener, admin http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to, ok := l.AdminRoutes[r.URL.Path]
		if !ok {
			http.Error(w, "", http.StatusNotFound) // Envoy: no route matched
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = to
		r2.RequestURI = r2.URL.RequestURI()
		admin.ServeHTTP(w, r2)
	})
}

// adminMux is the admin interface: the endpoints the hook tool and the
// bootstrap's routes use, with Envoy's semantics.
func (s *Server) adminMux() http.Handler {
	type endpoint struct {
		post bool
		h    func(w http.ResponseWriter, r *http.Request)
	}
	eps := map[string]endpoint{
		// GET /ready: 200 "LIVE" while serving, 503 "DRAINING" after
		// /healthcheck/fail (Envoy's server state).
		"/ready": {false, func(w http.ResponseWriter, r *http.Request) {
			if s.initializing.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, "PRE_INITIALIZING")
				return
			}
			if s.healthFailed.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, "DRAINING")
				return
			}
			fmt.Fprintln(w, "LIVE")
		}},
		"/healthcheck/fail": {true, func(w http.ResponseWriter, r *http.Request) {
			s.healthFailed.Store(true)
			s.log.Info("admin: health check failed (/ready now answers 503 DRAINING)")
			fmt.Fprintln(w, "OK")
		}},
		"/healthcheck/ok": {true, func(w http.ResponseWriter, r *http.Request) {
			s.healthFailed.Store(false)
			s.log.Info("admin: health check ok")
			fmt.Fprintln(w, "OK")
		}},
		// POST /drain_listeners[?inboundonly][&graceful][&skip_exit]:
		// without graceful the listeners stop at once; with it they keep
		// accepting for --drain-time-s and then stop (unless skip_exit).
		// inboundonly limits it to INBOUND listeners. A second graceful
		// call while draining is ignored, as in Envoy.
		"/drain_listeners": {true, func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			inboundOnly, graceful, skipExit := q.Has("inboundonly"), q.Has("graceful"), q.Has("skip_exit")
			s.log.Info("admin: drain_listeners", "inboundonly", inboundOnly, "graceful", graceful, "skip_exit", skipExit,
				"drain_time_s", s.opts.DrainTimeSeconds)
			if graceful {
				if s.draining.CompareAndSwap(false, true) {
					go func() {
						s.drainSleep(time.Duration(s.opts.DrainTimeSeconds) * time.Second)
						if !skipExit {
							s.stopListeners(inboundOnly)
						}
					}()
				}
			} else {
				s.stopListeners(inboundOnly)
			}
			fmt.Fprintln(w, "OK")
		}},
		// POST /quitquitquit: exit cleanly.
		"/quitquitquit": {true, func(w http.ResponseWriter, r *http.Request) {
			s.log.Info("admin: quitquitquit")
			fmt.Fprintln(w, "OK")
			s.quitOnce.Do(func() { close(s.quit) })
		}},
		"/stats/prometheus": {false, func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			defer s.mu.Unlock()
			keys := make([]string, 0, len(s.counts))
			for k := range s.counts {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			fmt.Fprintln(w, "# TYPE envoy_standin_connections_total counter")
			for _, k := range keys {
				d, f, _ := strings.Cut(k, "/")
				fmt.Fprintf(w, "envoy_standin_connections_total{direction=%q,family=%q} %d\n", d, f, s.counts[k])
			}
		}},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ep, ok := eps[r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintln(w, "invalid path. admin commands are:")
			paths := make([]string, 0, len(eps))
			for p := range eps {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			for _, p := range paths {
				fmt.Fprintln(w, "  "+p)
			}
			return
		}
		// Envoy refuses state-changing admin calls that are not POSTs.
		if ep.post && r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			fmt.Fprintf(w, "Method %s not allowed, POST required.\n", r.Method)
			return
		}
		ep.h(w, r)
	})
}

func (s *Server) stopListeners(inboundOnly bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if inboundOnly && l.cfg.Direction != Inbound {
			continue
		}
		if l.closed.CompareAndSwap(false, true) {
			_ = l.ln.Close()
			s.log.Info("listener stopped", "listener", l.cfg.Name, "address", l.cfg.Address)
		}
	}
}

// Main is the stand-in's main: parse, start, wait for a signal or
// /quitquitquit. It returns the exit code.
func Main(args []string, stdout, stderr io.Writer, signals <-chan os.Signal) int {
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{}))
	opts, err := ParseFlags(args, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", Banner, err)
		return 1
	}
	b, err := os.ReadFile(opts.ConfigPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s: reading the bootstrap: %v\n", Banner, err)
		return 1
	}
	boot, err := ParseBootstrap(b)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", Banner, err)
		return 1
	}
	var delay time.Duration
	if v := os.Getenv(ReadyDelayEnv); v != "" {
		if delay, err = time.ParseDuration(v); err != nil || delay < 0 {
			fmt.Fprintf(stderr, "%s: %s=%q is not a duration such as 2s\n", Banner, ReadyDelayEnv, v)
			return 1
		}
	}
	s := New(opts, boot, log)
	s.SetInitializing(delay > 0)
	s.log.Info(Banner+" starting: a test stand-in for Envoy, NOT Envoy (TCP passthrough, readiness, admin)",
		"uid", os.Getuid(), "gid", os.Getgid(), "pid", os.Getpid(),
		"config_path", opts.ConfigPath, "log_level", opts.LogLevel, "concurrency", opts.Concurrency,
		"drain_time_s", opts.DrainTimeSeconds, "drain_strategy", opts.DrainStrategy,
		"service_cluster", opts.ServiceCluster, "service_node", opts.ServiceNode)
	if err := s.Start(); err != nil {
		s.log.Error("start failed", "error", err.Error())
		s.Close()
		return 1
	}
	if delay > 0 {
		s.log.Info("initializing: /ready answers 503 PRE_INITIALIZING", "for", delay.String(), "env", ReadyDelayEnv)
		select {
		case sig := <-signals:
			s.log.Info("signal received, exiting", "signal", sig.String())
			s.Close()
			return 0
		case <-time.After(delay):
		}
	}
	// "ready" is logged before /ready answers 200, so that its time is
	// never later than the readiness a postStart hook or probe sees.
	s.log.Info("ready")
	s.SetInitializing(false)
	select {
	case sig := <-signals:
		s.log.Info("signal received, exiting", "signal", sig.String())
	case <-s.Quit():
		s.log.Info("exiting after /quitquitquit")
	}
	s.Close()
	return 0
}

// LogLine is one line of the stand-in's JSON log, as tests read it.
type LogLine struct {
	Time  time.Time `json:"time"`
	Msg   string    `json:"msg"`
	Proxy string    `json:"proxy"`
	// For "connection" lines: "inbound" or "outbound", "IPv4" or "IPv6".
	Direction   string `json:"direction"`
	Family      string `json:"family"`
	Peer        string `json:"peer"`
	Local       string `json:"local"`
	OriginalDst string `json:"original_dst"`
	// For the start line.
	UID *int `json:"uid"`
	// For admin and signal lines.
	Signal string `json:"signal"`
}

// ParseLog reads the stand-in's log (lines that are not its JSON are
// skipped).
func ParseLog(log string) []LogLine {
	var out []LogLine
	for _, l := range strings.Split(log, "\n") {
		var p LogLine
		if json.Unmarshal([]byte(l), &p) == nil && p.Proxy == Banner {
			out = append(out, p)
		}
	}
	return out
}
