package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a run; --json prints it as is.
type Report struct {
	Date   string    `json:"date"`
	Host   Host      `json:"host"`
	Config RunConfig `json:"config"`

	// Requests is the number of measured requests sent (warm-up excluded),
	// OK those answered correctly.
	Requests    int            `json:"requests"`
	OK          int            `json:"ok"`
	ErrorsTotal int            `json:"errors_total"`
	Errors      map[string]int `json:"errors"`
	// ErrorSamples are the first few errors with their details.
	ErrorSamples   []string `json:"error_samples,omitempty"`
	WarmupRequests int      `json:"warmup_requests"`
	WarmupErrors   int      `json:"warmup_errors"`

	// Elapsed runs from the start of the measured window to the last
	// measured answer; Throughput is OK/Elapsed, SendRate Requests over the
	// window.
	Elapsed    time.Duration `json:"elapsed_ns"`
	Throughput float64       `json:"throughput_per_s"`
	SendRate   float64       `json:"send_rate_per_s"`

	// Latency is over the successful measured requests: open loop from the
	// scheduled send time, closed loop from the actual send, to the end of
	// the response body.
	Latency Summary `json:"latency"`
	// SendLag (open loop): how late requests actually started. Late is how
	// many started more than LateAfter after their scheduled time.
	SendLag *Summary `json:"send_lag,omitempty"`
	// Response (open loop): the successful requests' time from their actual
	// send to the end of the response body, what a client that does not
	// correct for its own lateness reports (vegeta, hey).
	Response  *Summary      `json:"response,omitempty"`
	Late      int           `json:"late"`
	LateAfter time.Duration `json:"late_after_ns"`

	// Protocol is what the server negotiated ("HTTP/2.0", "HTTP/1.1").
	Protocol string `json:"protocol"`
	// Connections is the number of TCP connections the client opened in
	// all, and during the measured window.
	Connections         int64 `json:"connections"`
	ConnectionsMeasured int64 `json:"connections_measured"`
	// ConnectionsClosed is how many the client closed during the measured
	// window (an HTTP/2 connection that failed, an HTTP/1.1 one not kept
	// alive).
	ConnectionsClosed int64 `json:"connections_closed_measured"`

	Server *ServerStats `json:"server,omitempty"`
	// ClientCPUCores and MachineBusyCores are averages over the measured
	// window: the load tool's own CPU, and the whole machine's (every
	// process, other engineers' jobs included).
	ClientCPUCores   float64 `json:"client_cpu_cores"`
	MachineBusyCores float64 `json:"machine_busy_cores"`

	Profile      string `json:"profile,omitempty"`
	ProfileError string `json:"profile_error,omitempty"`
}

// Host describes the machine the numbers come from.
type Host struct {
	Hostname   string `json:"hostname"`
	CPUModel   string `json:"cpu_model"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"go_version"`
	NumCPU     int    `json:"nproc"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// ClientGOGC is the load tool's own GC percentage (main.go).
	ClientGOGC   int        `json:"client_gogc"`
	LoadAvgStart [3]float64 `json:"loadavg_start"`
	LoadAvgEnd   [3]float64 `json:"loadavg_end"`
}

// RunConfig is the configuration as run.
type RunConfig struct {
	URL         string        `json:"url"`
	Proto       string        `json:"proto"`
	Mode        string        `json:"mode"` // "open" or "closed"
	Rate        float64       `json:"rate,omitempty"`
	Concurrency int           `json:"concurrency,omitempty"`
	Conns       int           `json:"conns"`
	H2Strict    bool          `json:"h2_strict,omitempty"`
	MaxInFlight int           `json:"max_in_flight,omitempty"`
	Duration    time.Duration `json:"duration_ns"`
	Warmup      time.Duration `json:"warmup_ns"`
	Timeout     time.Duration `json:"timeout_ns"`
	BodyBytes   int           `json:"body_bytes"`
	// Spawned is the injector binary the tool started, if it did.
	Spawned    string   `json:"spawned,omitempty"`
	ServerArgs []string `json:"server_args,omitempty"`
	// ServerEnv is what --server-env added to the server's environment.
	ServerEnv []string `json:"server_env,omitempty"`
}

// ServerStats is what /proc says about the server process.
type ServerStats struct {
	PID int `json:"pid"`
	// RSSStartKiB is VmRSS before the load, RSSPeakKiB the highest VmRSS
	// sampled during the run, HWMEndKiB VmHWM at the end (the peak over the
	// process's whole life, start-up included).
	RSSStartKiB int64 `json:"rss_start_kib"`
	RSSPeakKiB  int64 `json:"rss_peak_kib"`
	HWMEndKiB   int64 `json:"vmhwm_end_kib"`
	RSSSamples  int   `json:"rss_samples"`
	// The anonymous (heap, stacks) and file-backed (the binary's pages)
	// parts of VmRSS, before the load and in the peak sample.
	AnonStartKiB int64   `json:"rss_anon_start_kib"`
	FileStartKiB int64   `json:"rss_file_start_kib"`
	AnonPeakKiB  int64   `json:"rss_anon_peak_kib"`
	FilePeakKiB  int64   `json:"rss_file_peak_kib"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	CPUCores     float64 `json:"cpu_cores"`
	Error        string  `json:"error,omitempty"`
}

func newReport(cfg *Config, bodyBytes int) *Report {
	host, _ := os.Hostname()
	r := &Report{
		Date: time.Now().UTC().Format(time.RFC3339),
		Host: Host{
			Hostname:     host,
			CPUModel:     cpuModel(),
			Kernel:       kernelRelease(),
			GoVersion:    runtime.Version(),
			NumCPU:       runtime.NumCPU(),
			GOMAXPROCS:   runtime.GOMAXPROCS(0),
			ClientGOGC:   clientGOGC(),
			LoadAvgStart: loadAvg(),
		},
		Config: RunConfig{
			URL:       cfg.URL,
			Proto:     cfg.Proto,
			Mode:      "open",
			Rate:      cfg.Rate,
			Conns:     cfg.Conns,
			H2Strict:  cfg.H2Strict,
			Duration:  cfg.Duration,
			Warmup:    cfg.Warmup,
			Timeout:   cfg.Timeout,
			BodyBytes: bodyBytes,
		},
		LateAfter: cfg.LateAfter,
	}
	if cfg.Rate > 0 {
		r.Config.MaxInFlight = cfg.MaxInFlight
	} else {
		r.Config.Mode = "closed"
		r.Config.Concurrency = cfg.Concurrency
	}
	return r
}

func (r *Report) fill(l *loader, window time.Duration, c0, c1 counters) {
	m := &l.meas
	r.Requests = int(m.sent.Load())
	r.OK = int(m.ok.Load())
	r.Errors, r.ErrorsTotal = m.errs.snapshot()
	r.ErrorSamples = m.details
	r.WarmupRequests = int(l.warm.sent.Load())
	_, r.WarmupErrors = l.warm.errs.snapshot()

	r.Elapsed = window
	if last := m.lastDone.Load(); last > 0 {
		r.Elapsed = max(window, time.Unix(0, last).Sub(c0.at))
	}
	if s := r.Elapsed.Seconds(); s > 0 {
		r.Throughput = float64(r.OK) / s
	}
	if s := window.Seconds(); s > 0 {
		r.SendRate = float64(r.Requests) / s
	}
	r.Latency = summarize(m.latency.d)
	if l.cfg.Rate > 0 {
		s := summarize(m.lag.d)
		r.SendLag = &s
		rs := summarize(m.response.d)
		r.Response = &rs
		r.Late = int(m.late.Load())
	}
	if p, ok := l.proto.Load().(string); ok {
		r.Protocol = p
	}
	r.Connections = l.dials.Load()
	r.ConnectionsMeasured = c1.dials - c0.dials
	r.ConnectionsClosed = c1.closes - c0.closes
	if s := c1.at.Sub(c0.at).Seconds(); s > 0 {
		r.ClientCPUCores = (c1.selfCPU - c0.selfCPU).Seconds() / s
		r.MachineBusyCores = (c1.systemBusy - c0.systemBusy).Seconds() / s
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func pct(n, of int) string {
	if of == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(n)/float64(of))
}

// WriteText prints the report as a table for people.
func (r *Report) WriteText(w io.Writer) {
	h := r.Host
	c := r.Config
	fmt.Fprintf(w, "sidecar-injector load test, %s\n", r.Date)
	fmt.Fprintf(w, "machine:    %s, nproc %d (GOMAXPROCS %d), %s, Linux %s, load tool %s (GOGC %d)\n",
		h.Hostname, h.NumCPU, h.GOMAXPROCS, h.CPUModel, h.Kernel, h.GoVersion, h.ClientGOGC)
	fmt.Fprintf(w, "load avg:   %.2f %.2f %.2f at start, %.2f %.2f %.2f at end (1/5/15 min)\n",
		h.LoadAvgStart[0], h.LoadAvgStart[1], h.LoadAvgStart[2], h.LoadAvgEnd[0], h.LoadAvgEnd[1], h.LoadAvgEnd[2])
	target := c.URL
	if c.Spawned != "" {
		env := ""
		if len(c.ServerEnv) > 0 {
			env = strings.Join(c.ServerEnv, " ") + " "
		}
		target += fmt.Sprintf(" (spawned %s%s %s)", env, c.Spawned, strings.Join(c.ServerArgs, " "))
	}
	fmt.Fprintf(w, "target:     %s\n", target)
	transport := fmt.Sprintf("HTTP/2 over %d connection(s), more beyond the server's stream limit", c.Conns)
	if c.H2Strict {
		transport = fmt.Sprintf("HTTP/2 over %d connection(s), strictly", c.Conns)
	}
	if c.Proto == "h1" {
		pool := "unbounded pool"
		if c.Conns > 0 {
			pool = fmt.Sprintf("pool of at most %d", c.Conns)
		}
		transport = "HTTP/1.1 keep-alive, " + pool
	}
	if c.Mode == "open" {
		fmt.Fprintf(w, "load:       open loop, %g req/s for %s after %s warm-up; %s; at most %d in flight\n",
			c.Rate, c.Duration, c.Warmup, transport, c.MaxInFlight)
	} else {
		fmt.Fprintf(w, "load:       closed loop (saturation), %d concurrent for %s after %s warm-up; %s\n",
			c.Concurrency, c.Duration, c.Warmup, transport)
	}
	fmt.Fprintf(w, "request:    POST %d-byte AdmissionReview, unique request.uid; negotiated %s\n", c.BodyBytes, r.Protocol)
	fmt.Fprintf(w, "conns:      %d opened in all; during the measurement %d opened, %d closed\n",
		r.Connections, r.ConnectionsMeasured, r.ConnectionsClosed)
	fmt.Fprintln(w)

	fmt.Fprintf(w, "requests:   %d sent, %d ok, %d errors (%s); warm-up: %d sent, %d errors (not counted)\n",
		r.Requests, r.OK, r.ErrorsTotal, pct(r.ErrorsTotal, r.Requests), r.WarmupRequests, r.WarmupErrors)
	fmt.Fprintf(w, "throughput: %.1f ok/s over %.3fs (sent %.1f/s)\n", r.Throughput, r.Elapsed.Seconds(), r.SendRate)
	from := "actual send"
	if c.Mode == "open" {
		from = "scheduled send"
	}
	fmt.Fprintf(w, "latency:    ms, from %s to the last response byte, %d successful requests\n", from, r.Latency.Count)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tmin\tp50\tp90\tp99\tp99.9\tmax\tmean\t")
	row := func(name string, s Summary) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, ms(s.Min), ms(s.P50), ms(s.P90), ms(s.P99), ms(s.P999), ms(s.Max), ms(s.Mean))
	}
	row("latency", r.Latency)
	if r.Response != nil {
		row("from send", *r.Response)
	}
	if r.SendLag != nil {
		row("send lag", *r.SendLag)
	}
	tw.Flush()
	if r.SendLag != nil {
		fmt.Fprintf(w, "on time:    %d of %d requests started more than %s after their scheduled time (%s)\n",
			r.Late, r.Requests, r.LateAfter, pct(r.Late, r.Requests))
	}
	if r.ErrorsTotal == 0 {
		fmt.Fprintln(w, "errors:     none")
	} else {
		fmt.Fprintln(w, "errors:")
		for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
			fmt.Fprintf(w, "  %-16s %d\n", k, r.Errors[k])
		}
		for _, s := range r.ErrorSamples {
			fmt.Fprintf(w, "  e.g. %s\n", s)
		}
	}
	if s := r.Server; s != nil {
		fmt.Fprintf(w, "server:     pid %d, RSS %s before the load, peak %s (%d samples), VmHWM %s at the end; CPU %.2f cores\n",
			s.PID, mib(s.RSSStartKiB), mib(s.RSSPeakKiB), s.RSSSamples, mib(s.HWMEndKiB), s.CPUCores)
		fmt.Fprintf(w, "            RSS = anon + file: %s + %s before, %s + %s at the peak\n",
			mib(s.AnonStartKiB), mib(s.FileStartKiB), mib(s.AnonPeakKiB), mib(s.FilePeakKiB))
		if s.Error != "" {
			fmt.Fprintf(w, "            (reading /proc: %s)\n", s.Error)
		}
	} else {
		fmt.Fprintln(w, "server:     memory not measured (no --server-pid or --spawn)")
	}
	fmt.Fprintf(w, "cpu:        load tool %.2f cores, whole machine %.2f of %d cores busy\n", r.ClientCPUCores, r.MachineBusyCores, h.NumCPU)
	if r.Profile != "" {
		fmt.Fprintf(w, "profile:    %s (go tool pprof -top %s)\n", r.Profile, r.Profile)
	}
	if r.ProfileError != "" {
		fmt.Fprintf(w, "profile:    failed: %s\n", r.ProfileError)
	}
}
