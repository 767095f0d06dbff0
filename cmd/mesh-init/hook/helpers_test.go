package hook

import (
	"bytes"
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

// Registry look-alikes: what each real registry answers.

// dubboQoS answers like Dubbo's QoS HTTP handler: 200 "OK" for offline, 404
// with an empty body for an unknown command.
func dubboQoS(w http.ResponseWriter, r *http.Request, _ int) {
	if r.URL.Path == "/offline" {
		answerText(w, http.StatusOK, "OK")
		return
	}
	answerText(w, http.StatusNotFound, "")
}

// actuator answers like a Spring Boot app whose service-registry endpoint
// is named endpoint: 200 with an empty body, or Spring's JSON 404 for
// unknown paths.
func actuator(endpoint string) func(w http.ResponseWriter, r *http.Request, n int) {
	return func(w http.ResponseWriter, r *http.Request, _ int) {
		if r.Method == http.MethodPost && r.URL.Path == "/actuator/"+endpoint {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"timestamp":"2024-01-01T00:00:00.000+00:00","status":404,"error":"Not Found","path":%q}`, r.URL.Path)
	}
}

// eurekaServer answers like Eureka's InstanceResource.statusUpdate: 200
// with an empty body for a known instance, 404 for an unknown one.
func eurekaServer(app string, ids ...string) func(w http.ResponseWriter, r *http.Request, n int) {
	return func(w http.ResponseWriter, r *http.Request, _ int) {
		for _, id := range ids {
			if r.Method == http.MethodPut && r.URL.Path == "/eureka/apps/"+app+"/"+id+"/status" {
				w.WriteHeader(http.StatusOK)
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
	}
}

// nacosServer answers like Nacos's InstanceController.update: "ok".
func nacosServer(w http.ResponseWriter, r *http.Request, _ int) {
	if r.Method == http.MethodPut && r.URL.Path == "/nacos/v1/ns/instance" {
		answerText(w, http.StatusOK, "ok")
		return
	}
	answerText(w, http.StatusNotFound, "")
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

// harness runs the tool as mesh-init would, with a fake environment.
type harness struct {
	vars    map[string]string
	addrs   []net.Addr
	hosts   string
	signals chan os.Signal
}

// result is one run of the tool.
type result struct {
	code           int
	stdout, stderr string
	start, end     time.Time
}

func (r result) took() time.Duration { return r.end.Sub(r.start) }

func (h harness) env() environment {
	return environment{
		getenv:   func(k string) string { return h.vars[k] },
		hostname: func() (string, error) { return "os-hostname", nil },
		addrs:    func() ([]net.Addr, error) { return h.addrs, nil },
		readFile: func(name string) ([]byte, error) {
			if name == "/etc/hosts" && h.hosts != "" {
				return []byte(h.hosts), nil
			}
			return nil, fs.ErrNotExist
		},
	}
}

func (h harness) run(args ...string) result {
	var stdout, stderr bytes.Buffer
	t := &tool{
		out:     &syncWriter{w: &stdout},
		errOut:  &syncWriter{w: &stderr},
		signals: h.signals,
		env:     h.env(),
	}
	r := result{start: time.Now()}
	r.code = t.main(args)
	r.end = time.Now()
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

// within fails unless lo <= d < hi.
func within(t *testing.T, what string, d, lo, hi time.Duration) {
	t.Helper()
	if d < lo || d >= hi {
		t.Errorf("%s took %v, want at least %v and under %v", what, d, lo, hi)
	}
}

func ipNet(s string) net.Addr {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}
