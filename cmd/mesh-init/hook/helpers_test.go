package hook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain doubles as the helper process the exec tests run as an original
// preStop handler or a Job command: "hooks.test hooks-helper <steps...>".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "hooks-helper" {
		os.Exit(helperMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// helperMain runs steps in order:
//
//	stamp FILE  write the current time (UnixNano) to FILE
//	say TEXT    print TEXT on stdout
//	trap FILE   on SIGTERM exit 42; write FILE once the handler is set, then wait
//	exit N      exit with N
func helperMain(args []string) int {
	for len(args) >= 2 {
		step, arg := args[0], args[1]
		args = args[2:]
		switch step {
		case "stamp":
			if err := os.WriteFile(arg, []byte(strconv.FormatInt(time.Now().UnixNano(), 10)), 0o644); err != nil {
				return 99
			}
		case "say":
			fmt.Println(arg)
		case "trap":
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM)
			if err := os.WriteFile(arg, []byte("ready"), 0o644); err != nil {
				return 99
			}
			select {
			case <-sig:
				return 42
			case <-time.After(10 * time.Second):
				return 98
			}
		case "exit":
			n, _ := strconv.Atoi(arg)
			return n
		}
	}
	return 0
}

// helperCommand is the argv of the helper process running steps.
func helperCommand(t *testing.T, steps ...string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{exe, "hooks-helper"}, steps...)
}

// readStamp reads a helper's stamp file.
func readStamp(t *testing.T, file string) time.Time {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("the helper left no stamp: %v", err)
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(0, n)
}

// recorded is one request a fake server received.
type recorded struct {
	Method string
	Host   string // the Host the client asked for
	Path   string
	Query  url.Values
	Raw    string // raw query
	Header http.Header
	Body   string
	At     time.Time
}

// fake is a real HTTP server standing in for a registry, the proxy's admin
// API or an app endpoint. It records every request and answers through
// handle, which gets the request's index (0 for the first).
type fake struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []recorded
	handle func(w http.ResponseWriter, r *http.Request, n int)
}

func newFake(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int)) *fake {
	t.Helper()
	f := &fake{handle: handle}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		n := len(f.reqs)
		f.reqs = append(f.reqs, recorded{
			Method: r.Method, Host: r.Host, Path: r.URL.Path, Query: r.URL.Query(), Raw: r.URL.RawQuery,
			Header: r.Header.Clone(), Body: string(b), At: time.Now(),
		})
		f.mu.Unlock()
		f.handle(w, r, n)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fake) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// hostPort is the server's address without a scheme, as NACOS_SERVER_ADDR
// usually holds it.
func (f *fake) hostPort() string { return strings.TrimPrefix(f.URL, "http://") }

func (f *fake) port(t *testing.T) string {
	t.Helper()
	_, p, err := net.SplitHostPort(f.hostPort())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// answer writes a plain-text answer.
func answerText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// slow holds the answer for d (or until the client gives up).
func slow(d time.Duration, then func(w http.ResponseWriter, r *http.Request, n int)) func(w http.ResponseWriter, r *http.Request, n int) {
	return func(w http.ResponseWriter, r *http.Request, n int) {
		select {
		case <-time.After(d):
			then(w, r, n)
		case <-r.Context().Done():
		}
	}
}

// status always answers status with body.
func status(code int, body string) func(w http.ResponseWriter, r *http.Request, n int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) { answerText(w, code, body) }
}

// refusedURL is an http URL nothing listens on.
func refusedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

// fakeClock is the hook's clock in tests: Sleep returns at once and moves
// the fake time on, recording each duration asked for; WithTimeout's
// contexts end when the fake time passes their deadline (by a Sleep, or
// the test's Advance/FireNext). So a test proves retries, pauses, budgets
// and the drain by what the hook asked for, whatever the machine's load.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
	timers []*fakeTimer
}

type fakeTimer struct {
	at     time.Time
	cancel context.CancelCauseFunc
	ctx    *fakeDeadlineCtx
}

// fakeDeadlineCtx ends with context.DeadlineExceeded like a real timeout,
// but reports no Deadline: the network stack compares deadlines with the
// wall clock, and the fake time is not the wall clock.
type fakeDeadlineCtx struct {
	context.Context
	mu  sync.Mutex
	err error
}

func (c *fakeDeadlineCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

func (c *fakeDeadlineCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return c.Context.Err()
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) bool {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.mu.Unlock()
	if ctx.Err() != nil {
		return false
	}
	c.Advance(d)
	return ctx.Err() == nil
}

func (c *fakeClock) WithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	inner, cancel := context.WithCancelCause(parent)
	ctx := &fakeDeadlineCtx{Context: inner}
	c.mu.Lock()
	t := &fakeTimer{at: c.now.Add(d), cancel: cancel, ctx: ctx}
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	c.Advance(0) // a timeout of 0 or less has already passed
	return ctx, func() {
		c.mu.Lock()
		for i, x := range c.timers {
			if x == t {
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
				break
			}
		}
		c.mu.Unlock()
		cancel(context.Canceled)
	}
}

// Advance moves the fake time on by d and ends every timeout it passes.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var fire, keep []*fakeTimer
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			fire = append(fire, t)
		} else {
			keep = append(keep, t)
		}
	}
	c.timers = keep
	c.mu.Unlock()
	for _, t := range fire {
		t.ctx.mu.Lock()
		t.ctx.err = context.DeadlineExceeded
		t.ctx.mu.Unlock()
		t.cancel(context.DeadlineExceeded)
	}
}

// FireNext moves the fake time to the earliest pending timeout: what a
// held request waits for.
func (c *fakeClock) FireNext() {
	c.mu.Lock()
	var next time.Time
	for _, t := range c.timers {
		if next.IsZero() || t.at.Before(next) {
			next = t.at
		}
	}
	now := c.now
	c.mu.Unlock()
	if !next.IsZero() {
		c.Advance(next.Sub(now))
	}
}

// Sleeps are the durations the hook asked to sleep, in order.
func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// harness runs the tool as mesh-init would, with a fake environment and,
// unless real is set, a fake clock.
type harness struct {
	vars    map[string]string
	addrs   []net.Addr
	hosts   string
	files   map[string]string
	signals chan os.Signal
	clock   *fakeClock
	real    bool
	// headers receives "METHOD host/path" each time an answer's headers arrive.
	headers chan string
}

// outcome is one run of the tool.
type outcome struct {
	code           int
	stdout, stderr string
	start, end     time.Time
	// appLog is what the hook wrote to the app's own log.
	appLog string
}

func (r outcome) took() time.Duration { return r.end.Sub(r.start) }

// memFS is the files the hook reads and writes in a test.
type memFS struct {
	mu    sync.Mutex
	files map[string]string
}

func (h harness) env(fsys *memFS, appLog *syncWriter) environment {
	return environment{
		getenv:   func(k string) string { return h.vars[k] },
		hostname: func() (string, error) { return "os-hostname", nil },
		addrs:    func() ([]net.Addr, error) { return h.addrs, nil },
		readFile: func(name string) ([]byte, error) {
			if name == "/etc/hosts" && h.hosts != "" {
				return []byte(h.hosts), nil
			}
			fsys.mu.Lock()
			defer fsys.mu.Unlock()
			if v, ok := fsys.files[name]; ok {
				return []byte(v), nil
			}
			return nil, fs.ErrNotExist
		},
		writeFile: func(name string, b []byte) error {
			fsys.mu.Lock()
			defer fsys.mu.Unlock()
			fsys.files[name] = string(b)
			return nil
		},
		rename: func(from, to string) error {
			fsys.mu.Lock()
			defer fsys.mu.Unlock()
			v, ok := fsys.files[from]
			if !ok {
				return fs.ErrNotExist
			}
			delete(fsys.files, from)
			fsys.files[to] = v
			return nil
		},
		remove: func(name string) error {
			fsys.mu.Lock()
			defer fsys.mu.Unlock()
			if _, ok := fsys.files[name]; !ok {
				return fs.ErrNotExist
			}
			delete(fsys.files, name)
			return nil
		},
		appLog: func(line string) { _, _ = appLog.Write([]byte(line)) },
	}
}

// run runs the tool. Give the harness a clock (and files) to look at them
// afterwards; without, it gets fresh ones.
func (h harness) run(args ...string) outcome {
	var stdout, stderr, appLog bytes.Buffer
	if h.files == nil {
		h.files = map[string]string{}
	}
	fsys := &memFS{files: h.files}
	var clk clock = realClock{}
	if !h.real {
		if h.clock == nil {
			h.clock = newFakeClock()
		}
		clk = h.clock
	}
	al := &syncWriter{w: &appLog}
	t := &tool{
		out:     &syncWriter{w: &stdout},
		errOut:  &syncWriter{w: &stderr},
		signals: h.signals,
		env:     h.env(fsys, al),
		clock:   clk,
	}
	if h.headers != nil {
		t.onHeaders = func(method, hostPath string) {
			select {
			case h.headers <- method + " " + hostPath:
			default:
			}
		}
	}
	r := outcome{start: time.Now()}
	r.code = t.main(args)
	r.end = time.Now()
	r.stdout, r.stderr, r.appLog = stdout.String(), stderr.String(), appLog.String()
	return r
}

func ipNet(s string) net.Addr {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}
