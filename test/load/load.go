package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one load run.
type Config struct {
	// URL is the webhook, https://HOST:PORT/inject.
	URL string
	// Proto is "h2" (multiplexed connections, as the API server uses) or
	// "h1" (HTTP/1.1 keep-alive connection pool).
	Proto string
	// Conns is the number of HTTP/2 connections (default 1), or the HTTP/1.1
	// pool's maximum (0: as many as there are requests in flight; idle ones
	// are kept).
	Conns int
	// H2Strict keeps HTTP/2 requests beyond the server's stream limit
	// waiting on the Conns connections instead of opening more (Go's
	// transport, like the API server's, opens more by default).
	H2Strict bool
	// Rate is the open-loop request rate per second; 0 runs closed loop at
	// saturation with Concurrency workers.
	Rate        float64
	Concurrency int
	Duration    time.Duration
	Warmup      time.Duration
	// Timeout bounds each request, from its send to the end of its body.
	Timeout time.Duration
	// MaxInFlight bounds the open loop's outstanding requests; when it is
	// reached the schedule waits, and the wait counts in the latency (it is
	// measured from the scheduled time) and as lateness.
	MaxInFlight int
	// LateAfter: an open-loop request that starts more than this after its
	// scheduled time counts as not sent on time.
	LateAfter time.Duration
	// Body is the AdmissionReview sent; its request.uid is replaced per
	// request.
	Body []byte
	// TLS is the client's TLS configuration (RootCAs, ServerName, ...).
	TLS *tls.Config
	// ServerPID, when set, is the server process whose memory is sampled
	// every SampleEvery and whose CPU time is reported.
	ServerPID   int
	SampleEvery time.Duration
	// ProfileURL is the server's pprof base URL (http://HOST:PORT): a CPU
	// profile of the measured phase is written to ProfileOut.
	ProfileURL string
	ProfileOut string
	// ErrorSamples is how many error details the report keeps.
	ErrorSamples int
}

func (c *Config) setDefaults() error {
	if c.URL == "" {
		return errors.New("no URL")
	}
	switch c.Proto {
	case "":
		c.Proto = "h2"
	case "h2", "h1":
	default:
		return fmt.Errorf("--proto %q: h2 or h1", c.Proto)
	}
	if c.Conns < 0 {
		return errors.New("--conns must not be negative")
	}
	if c.Proto == "h2" && c.Conns == 0 {
		c.Conns = 1
	}
	if c.Rate < 0 {
		return errors.New("--rate must not be negative")
	}
	if c.Rate == 0 && c.Concurrency <= 0 {
		c.Concurrency = 2 * runtime.NumCPU()
	}
	if c.Duration <= 0 {
		return errors.New("--duration must be positive")
	}
	if c.Warmup < 0 {
		return errors.New("--warmup must not be negative")
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if c.LateAfter <= 0 {
		c.LateAfter = time.Millisecond
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = 100 * time.Millisecond
	}
	if c.ErrorSamples <= 0 {
		c.ErrorSamples = 5
	}
	if c.ProfileURL != "" && c.ProfileOut == "" {
		return errors.New("a profile URL needs a profile output file")
	}
	return nil
}

// phase accumulates the outcome of the requests of one phase (warm-up or
// measured).
type phase struct {
	sent     atomic.Int64
	ok       atomic.Int64
	late     atomic.Int64
	lastDone atomic.Int64 // UnixNano of the last completion
	latency  samples      // successful requests, from (scheduled) send time
	lag      samples      // open loop: actual send - scheduled send
	response samples      // open loop: successful requests, from the actual send
	errs     errorCounts

	detailMu sync.Mutex
	details  []string
}

func (p *phase) done(t time.Time) {
	n := t.UnixNano()
	for {
		old := p.lastDone.Load()
		if n <= old || p.lastDone.CompareAndSwap(old, n) {
			return
		}
	}
}

func (p *phase) fail(kind, detail string, keep int) {
	p.errs.add(kind)
	p.detailMu.Lock()
	if len(p.details) < keep {
		p.details = append(p.details, kind+": "+detail)
	}
	p.detailMu.Unlock()
}

// loader sends requests and checks their answers.
type loader struct {
	cfg     *Config
	rv      *review
	clients []*http.Client
	dials   atomic.Int64
	closes  atomic.Int64
	proto   atomic.Value // the first negotiated protocol, "HTTP/2.0"
	bufs    sync.Pool
	warm    phase
	meas    phase
}

func newLoader(cfg *Config) (*loader, error) {
	rv, err := newReview(cfg.Body)
	if err != nil {
		return nil, err
	}
	l := &loader{cfg: cfg, rv: rv}
	l.bufs.New = func() any { return bytes.NewBuffer(make([]byte, 0, 32<<10)) }
	// Connecting and the TLS handshake are part of a request (Timeout
	// bounds it from the send), so they have no shorter bound of their own.
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		l.dials.Add(1)
		return &countedConn{Conn: c, closes: &l.closes}, nil
	}
	newTransport := func() *http.Transport {
		tlsCfg := &tls.Config{}
		if cfg.TLS != nil {
			tlsCfg = cfg.TLS.Clone()
		}
		// ALPN comes from Protocols below.
		tlsCfg.NextProtos = nil
		tr := &http.Transport{
			DialContext:         dial,
			TLSClientConfig:     tlsCfg,
			TLSHandshakeTimeout: cfg.Timeout,
			DisableCompression:  true,
			MaxIdleConns:        0, // no global limit
			MaxIdleConnsPerHost: 1 << 16,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   cfg.Proto == "h2",
			Protocols:           new(http.Protocols),
		}
		if cfg.Proto == "h2" {
			tr.Protocols.SetHTTP2(true)
			tr.HTTP2 = &http.HTTP2Config{StrictMaxConcurrentRequests: cfg.H2Strict}
		} else {
			tr.Protocols.SetHTTP1(true)
			tr.MaxConnsPerHost = cfg.Conns
		}
		return tr
	}
	// HTTP/2: one transport per connection (a transport multiplexes every
	// request onto one connection until the server's stream limit), used in
	// turn. HTTP/1.1: one transport, its pool is the connections.
	n := 1
	if cfg.Proto == "h2" {
		n = cfg.Conns
	}
	for range n {
		l.clients = append(l.clients, &http.Client{Transport: newTransport(), Timeout: cfg.Timeout})
	}
	return l, nil
}

func (l *loader) close() {
	for _, c := range l.clients {
		c.CloseIdleConnections()
	}
}

// preflight sends one request on every client, sequentially, so the
// connections exist before the clock starts and a wrong URL, CA or server
// configuration fails the run with its reason instead of thousands of errors.
func (l *loader) preflight() error {
	var p phase
	for i := range l.clients {
		l.one(&p, i, time.Now(), false)
		if _, n := p.errs.snapshot(); n > 0 {
			return fmt.Errorf("first request failed: %s", p.details[0])
		}
	}
	return nil
}

// one sends request i, scheduled at at, and records its outcome in p.
func (l *loader) one(p *phase, i int, at time.Time, openLoop bool) {
	cfg := l.cfg
	p.sent.Add(1)
	uid := l.rv.nextUID()
	req, err := http.NewRequest(http.MethodPost, cfg.URL, l.rv.body(&uid))
	if err != nil {
		p.fail(errTransport, err.Error(), cfg.ErrorSamples)
		return
	}
	req.ContentLength = int64(l.rv.size())
	req.GetBody = func() (io.ReadCloser, error) { return l.rv.body(&uid), nil }
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Accept"] = []string{"application/json, */*"}

	sent := time.Now()
	if openLoop {
		lag := sent.Sub(at)
		p.lag.add(lag)
		if lag > cfg.LateAfter {
			p.late.Add(1)
		}
	}
	resp, err := l.clients[i%len(l.clients)].Do(req)
	if err != nil {
		kind := errTransport
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			kind = errTimeout
		}
		p.fail(kind, err.Error(), cfg.ErrorSamples)
		p.done(time.Now())
		return
	}
	buf := l.bufs.Get().(*bytes.Buffer)
	defer l.bufs.Put(buf)
	buf.Reset()
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
	end := time.Now()
	p.done(end)
	if err != nil {
		kind := errReadBody
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			kind = errTimeout
		}
		p.fail(kind, err.Error(), cfg.ErrorSamples)
		return
	}
	if l.proto.Load() == nil {
		l.proto.CompareAndSwap(nil, resp.Proto)
	}
	if want := protoMajor(cfg.Proto); resp.ProtoMajor != want {
		p.fail(errProtocol, "negotiated "+resp.Proto, cfg.ErrorSamples)
		return
	}
	if resp.StatusCode != http.StatusOK {
		p.fail(httpStatusKind(resp.StatusCode), snippet(buf.Bytes()), cfg.ErrorSamples)
		return
	}
	if kind, detail := verify(buf.Bytes(), string(uid[:])); kind != "" {
		p.fail(kind, detail, cfg.ErrorSamples)
		return
	}
	p.ok.Add(1)
	p.latency.add(end.Sub(at))
	if openLoop {
		p.response.add(end.Sub(sent))
	}
}

func protoMajor(proto string) int {
	if proto == "h2" {
		return 2
	}
	return 1
}

func snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// countedConn counts connections the transport closes (an HTTP/2
// connection that fails, an HTTP/1.1 connection not kept alive).
type countedConn struct {
	net.Conn
	closes *atomic.Int64
	once   sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.closes.Add(1) })
	return c.Conn.Close()
}

// counters are the CPU and connection counters read at the boundaries of
// the measured phase.
type counters struct {
	at         time.Time
	serverCPU  time.Duration
	selfCPU    time.Duration
	systemBusy time.Duration
	dials      int64
	closes     int64
	serverErr  error
}

func (l *loader) readCounters() counters {
	c := counters{at: time.Now(), selfCPU: selfCPU(), dials: l.dials.Load(), closes: l.closes.Load()}
	c.systemBusy, _, _ = systemCPU()
	if l.cfg.ServerPID > 0 {
		c.serverCPU, c.serverErr = procCPU(l.cfg.ServerPID)
	}
	return c
}

// Run drives the server as configured and returns the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	l, err := newLoader(&cfg)
	if err != nil {
		return nil, err
	}
	defer l.close()

	rep := newReport(&cfg, l.rv.size())
	if cfg.ServerPID > 0 {
		m, err := readProcMem(cfg.ServerPID)
		if err != nil {
			return nil, fmt.Errorf("--server-pid %d: %w", cfg.ServerPID, err)
		}
		rep.Server = &ServerStats{PID: cfg.ServerPID, RSSStartKiB: m.RSS, AnonStartKiB: m.Anon, FileStartKiB: m.File}
	}
	if err := l.preflight(); err != nil {
		return nil, err
	}

	var sampler *rssSampler
	if cfg.ServerPID > 0 {
		sampler = startRSSSampler(cfg.ServerPID, cfg.SampleEvery)
	}

	// The measured window starts Warmup after the start, at which point the
	// counters are read (and the profile is started).
	start := time.Now().Add(10 * time.Millisecond)
	measureStart := start.Add(cfg.Warmup)
	var (
		c0      counters
		c0Ready = make(chan struct{})
		profErr = make(chan error, 1)
	)
	boundary := time.AfterFunc(time.Until(measureStart), func() {
		c0 = l.readCounters()
		close(c0Ready)
		if cfg.ProfileURL != "" {
			go func() { profErr <- fetchProfile(cfg.ProfileURL, cfg.ProfileOut, cfg.Duration) }()
		}
	})
	defer boundary.Stop()

	var window time.Duration
	if cfg.Rate > 0 {
		window = l.openLoop(ctx, start)
	} else {
		window = l.closedLoop(ctx, start, measureStart)
	}
	select {
	case <-c0Ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c1 := l.readCounters()

	rep.fill(l, window, c0, c1)
	if sampler != nil {
		peak, n, err := sampler.finish()
		m, err2 := readProcMem(cfg.ServerPID)
		if err := errors.Join(err, err2, c1.serverErr); err != nil {
			rep.Server.Error = err.Error()
		}
		if m.RSS > peak.RSS {
			peak = m
		}
		rep.Server.RSSPeakKiB = peak.RSS
		rep.Server.AnonPeakKiB, rep.Server.FilePeakKiB = peak.Anon, peak.File
		rep.Server.RSSSamples = n
		rep.Server.HWMEndKiB = m.HWM
		cpu := (c1.serverCPU - c0.serverCPU).Seconds()
		rep.Server.CPUSeconds = cpu
		if s := rep.Elapsed.Seconds(); s > 0 {
			rep.Server.CPUCores = cpu / s
		}
	}
	if cfg.ProfileURL != "" {
		if err := <-profErr; err != nil {
			rep.ProfileError = err.Error()
		} else {
			rep.Profile = cfg.ProfileOut
		}
	}
	rep.Host.LoadAvgEnd = loadAvg()
	return rep, nil
}

// waiter waits for the open loop's due times (wait_linux.go, wait_other.go).
type waiter interface {
	// until returns at or just after at, true; or false once done is closed.
	until(at time.Time, done <-chan struct{}) bool
	release()
}

// openLoop sends Rate requests per second on a fixed timetable, whatever the
// answers: request i is due at start + i/Rate. A request that cannot start
// on time (the client fell behind, or MaxInFlight requests are outstanding)
// is sent as soon as possible, and its latency still counts from when it was
// due, so a stalled server shows up in the percentiles instead of slowing
// the schedule down (no coordinated omission). It returns the measured
// window's length.
func (l *loader) openLoop(ctx context.Context, start time.Time) time.Duration {
	cfg := l.cfg
	warmN := int(cfg.Rate * cfg.Warmup.Seconds())
	measN := int(cfg.Rate * cfg.Duration.Seconds())
	interval := float64(time.Second) / cfg.Rate
	sem := make(chan struct{}, cfg.MaxInFlight)
	var wg sync.WaitGroup
	w := newWaiter()
	defer w.release()
loop:
	for i := range warmN + measN {
		at := start.Add(time.Duration(float64(i) * interval))
		if !w.until(at, ctx.Done()) {
			break loop
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		p := &l.warm
		if i >= warmN {
			p = &l.meas
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.one(p, i, at, true)
			<-sem
		}()
	}
	wg.Wait()
	return time.Duration(float64(measN) * interval)
}

// closedLoop runs Concurrency workers that each send the next request as
// soon as the previous one is answered: the server's maximum throughput.
// A request belongs to the phase in which it was sent.
func (l *loader) closedLoop(ctx context.Context, start, measureStart time.Time) time.Duration {
	cfg := l.cfg
	end := measureStart.Add(cfg.Duration)
	time.Sleep(time.Until(start))
	var wg sync.WaitGroup
	for w := range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				now := time.Now()
				if !now.Before(end) {
					return
				}
				p := &l.meas
				if now.Before(measureStart) {
					p = &l.warm
				}
				l.one(p, w, now, false)
			}
		}()
	}
	wg.Wait()
	return cfg.Duration
}

// fetchProfile takes a CPU profile of the server over d.
func fetchProfile(base, out string, d time.Duration) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	c := &http.Client{Timeout: d + 30*time.Second}
	resp, err := c.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("pprof: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
