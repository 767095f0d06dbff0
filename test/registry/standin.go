// Package registry holds stand-ins for the service registries the
// lifecycle hooks talk to: Nacos 1.x, 2.x and 3.x (with and without auth),
// a Eureka cluster of peers, Spring Boot's service-registry actuator
// endpoint in front of Netflix, Alibaba and Consul registrations, a Consul
// agent, Dubbo QoS 2.7 and 3.x, and the EDAS agent. Each is written from
// the registry's public API and server source (docs/lifecycle-hooks.md
// cites them), is an http.Handler with state a test can set and inspect,
// and can be disturbed with the Modes below. They are stand-ins, not the
// registries: every answer says so in a Server header, and tests name them
// as such.
//
// The package imports the standard library only, so the hook tool's unit
// tests and the node tier (cmd/registry-standin in a pod) use the same.
package registry

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Mode is how a stand-in answers the requests a Fault selects.
type Mode string

// The modes every stand-in supports.
const (
	// OK answers as the registry would.
	OK Mode = "ok"
	// Slow holds the answer for Fault.Delay, or until Release, then
	// answers as the registry would.
	Slow Mode = "slow"
	// Error500 answers 500 with a Java exception's text.
	Error500 Mode = "500"
	// Hang accepts the request and never answers; the request is held
	// until the client gives up.
	Hang Mode = "hang"
	// StalledBody sends the status, headers and part of the body, then
	// holds the rest until the client gives up.
	StalledBody Mode = "stalled-body"
	// Reset closes the connection without an answer.
	Reset Mode = "reset"
	// IgnoreWrites answers writes as the registry answers a successful
	// one and changes nothing: the lying registry a read-back must catch.
	IgnoreWrites Mode = "ignore-writes"
)

// Fault disturbs the requests it matches.
type Fault struct {
	Mode Mode
	// Method and PathPrefix select requests; empty matches all.
	Method     string
	PathPrefix string
	// Times is how many matching requests are disturbed (0: all).
	Times int
	// Delay is how long Slow holds an answer (0: until Release).
	Delay time.Duration
}

// Request is one request a stand-in received.
type Request struct {
	Method, Host, Path, RawQuery, Body, UserAgent string
	Header                                        http.Header
	At                                            time.Time
	// Mode is what the stand-in did with it.
	Mode Mode
}

// Standin is the part every stand-in shares: its faults, the requests it
// received, and notifications a test can wait on.
type Standin struct {
	// Name appears in the Server header and in messages.
	Name string

	mu       sync.Mutex
	faults   []*Fault
	requests []Request
	release  chan struct{}
	held     chan Request
}

func newStandin(name string) *Standin {
	return &Standin{Name: name, release: make(chan struct{}), held: make(chan Request, 64)}
}

// SetFault adds a fault; the first matching fault applies.
func (s *Standin) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every fault.
func (s *Standin) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Release lets every request Slow is holding (and every later one) answer.
func (s *Standin) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.release:
	default:
		close(s.release)
	}
}

// Held delivers each request the stand-in starts holding (Slow, Hang,
// StalledBody): a test waits on it before moving its clock.
func (s *Standin) Held() <-chan Request { return s.held }

// Requests returns the requests received so far, in order.
func (s *Standin) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Count counts the requests received with method and path.
func (s *Standin) Count(method, path string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

func (s *Standin) fault(r *http.Request) Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if (f.Method == "" || f.Method == r.Method) && strings.HasPrefix(r.URL.Path, f.PathPrefix) {
			if f.Times < 0 {
				continue
			}
			if f.Times > 0 {
				f.Times--
				if f.Times == 0 {
					f.Times = -1 // used up
				}
			}
			return f.Mode
		}
	}
	return OK
}

func (s *Standin) delay(r *http.Request) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Mode == Slow && (f.Method == "" || f.Method == r.Method) && strings.HasPrefix(r.URL.Path, f.PathPrefix) {
			return f.Delay
		}
	}
	return 0
}

// serve records r, applies the faults and otherwise calls next, which
// answers as the registry would. ignored reports IgnoreWrites to next.
func (s *Standin) serve(w http.ResponseWriter, r *http.Request, next func(w http.ResponseWriter, r *http.Request, ignoreWrites bool)) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	mode := s.fault(r)
	rec := Request{Method: r.Method, Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Body: string(body), UserAgent: r.UserAgent(),
		Header: r.Header.Clone(), At: time.Now(), Mode: mode}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	release := s.release
	s.mu.Unlock()
	w.Header().Set("Server", "registry-standin ("+s.Name+")")
	hold := func() {
		select {
		case s.held <- rec:
		default:
		}
	}
	switch mode {
	case Slow:
		hold()
		var after <-chan time.Time
		if d := s.delay(r); d > 0 {
			after = time.After(d)
		}
		select {
		case <-after:
		case <-release:
		case <-r.Context().Done():
			return
		}
		next(w, r, false)
	case Error500:
		w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, "java.lang.IllegalStateException: the stand-in was told to fail")
	case Hang:
		hold()
		<-r.Context().Done()
	case StalledBody:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "4096")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `{"partial":`)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		hold()
		<-r.Context().Done()
	case Reset:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	default:
		next(w, r, mode == IgnoreWrites)
	}
}

// text writes a plain-text answer, as the Java registries do.
func text(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}

// jsonAnswer writes a JSON answer.
func jsonAnswer(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}

// springError is Spring Boot's error document, as sendError produces it.
func springError(w http.ResponseWriter, r *http.Request, status int, message string) {
	jsonAnswer(w, status, fmt.Sprintf(`{"timestamp":"2025-01-01T00:00:00.000+00:00","status":%d,"error":%q,"message":%q,"path":%q}`,
		status, http.StatusText(status), message, r.URL.Path))
}

// RefusedAddr returns a loopback address nothing listens on: the
// "refused" mode is a server that is not there.
func RefusedAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()
	return addr, nil
}

// form reads a parameter from the query or the form body, as Spring binds
// @RequestParam.
func form(r *http.Request, name string) string {
	if v := r.URL.Query().Get(name); v != "" {
		return v
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		if q, err := url.ParseQuery(string(b)); err == nil {
			return q.Get(name)
		}
	}
	return ""
}
