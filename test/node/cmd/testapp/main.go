// Command testapp is the node tier's application: a static program with no
// shell, so the same binary serves the ordinary app image and the
// "distroless" one. It reports what it sees, so tests observe pods from the
// host over the pod bridge, without exec:
//
//	testapp serve [--listen=8080,9090] [--term-delay=0s]
//	    GET /whoami          JSON: pod, peer and local addresses, time
//	    GET /call?addr=H:P   dials H:P from inside the pod, asks its /whoami,
//	                         and returns both ends' view of that connection
//	    GET /events          JSON: lifecycle events with timestamps (start,
//	                         signals), also logged one JSON line each
//	    * /offline           records an "offline" event (method, query and
//	                         caller) and answers 200 "ok": the far end of a
//	                         registry offline call (the hook's http preset);
//	                         with --register the app also deregisters, as an
//	                         app's own offline endpoint does
//	    GET /registration    JSON: the registration's state (with --register)
//	  --register=eureka|nacos|consul|dubbo registers the pod in a Eureka-,
//	                         Nacos- or Consul-like registry when it starts
//	                         and deregisters it on SIGTERM, from the
//	                         environment a Spring (or Dubbo) app reads
//	                         (register.go); dubbo also serves QoS on
//	                         127.0.0.1:22222 (dubbo.go)
//	  MANAGEMENT_ENDPOINTS_WEB_EXPOSURE_INCLUDE=serviceregistry serves
//	                         Spring Cloud's service-registry actuator
//	                         endpoint, on MANAGEMENT_SERVER_PORT or behind
//	                         SERVER_SERVLET_CONTEXT_PATH (actuator.go)
//	  --edas-agent           the EDAS agent's 127.0.0.1:54199 /offline
//	testapp call [--count=1] [--interval=1s] URL...
//	    GETs each URL, logs one JSON line per request; exit 1 if any failed
//
// Every log line is JSON with an RFC 3339 nanosecond "time", so ordering
// tests can compare timestamps across containers.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Event is one lifecycle event.
type Event struct {
	Time   string `json:"time"`
	Event  string `json:"event"`
	Detail string `json:"detail,omitempty"`
}

var (
	mu     sync.Mutex
	events []Event
	out    = json.NewEncoder(os.Stdout)
)

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func record(event, detail string) {
	e := Event{Time: now(), Event: event, Detail: detail}
	mu.Lock()
	events = append(events, e)
	_ = out.Encode(e)
	mu.Unlock()
}

func logLine(v map[string]any) {
	v["time"] = now()
	mu.Lock()
	_ = out.Encode(v)
	mu.Unlock()
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testapp serve|call ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		os.Exit(serve(os.Args[2:]))
	case "call":
		os.Exit(call(os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "testapp: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// Whoami is what /whoami answers.
type Whoami struct {
	Pod   string `json:"pod"`
	Peer  string `json:"peer"`
	Local string `json:"local"`
	Time  string `json:"time"`
}

// CallResult is what /call answers.
type CallResult struct {
	Target string `json:"target"`
	// Local and Remote are this end of the connection.
	Local  string `json:"local,omitempty"`
	Remote string `json:"remote,omitempty"`
	// Far is the other end's /whoami (its view of the same connection).
	Far   *Whoami `json:"far,omitempty"`
	Error string  `json:"error,omitempty"`
}

type ctxKey struct{}

func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "8080", "comma-separated ports to serve on, both families")
	termDelay := fs.Duration("term-delay", 0, "keep serving this long after SIGTERM")
	register := fs.String("register", "", "register in a registry at start, deregister on SIGTERM: eureka, nacos, consul or dubbo (settings from the environment, as a Spring or Dubbo app reads them)")
	edasAgent := fs.Bool("edas-agent", false, "serve the EDAS agent's 127.0.0.1:54199 /offline and /online for the registration (needs --register)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	pod := os.Getenv("POD_NAME")
	if pod == "" {
		pod, _ = os.Hostname()
	}
	var reg registration
	if *register != "" {
		var err error
		if reg, err = newRegistration(*register, os.Getenv); err != nil {
			fmt.Fprintf(os.Stderr, "testapp: %v\n", err)
			return 2
		}
	}
	if *edasAgent && reg == nil {
		fmt.Fprintln(os.Stderr, "testapp: --edas-agent needs --register")
		return 2
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(ctxKey{}).(net.Addr)
		writeJSON(w, Whoami{Pod: pod, Peer: r.RemoteAddr, Local: fmt.Sprint(local), Time: now()})
	})
	mux.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		res := callOnce(r.Context(), r.URL.Query().Get("addr"))
		logLine(map[string]any{"event": "call", "target": res.Target, "local": res.Local, "remote": res.Remote, "error": res.Error})
		writeJSON(w, res)
	})
	mux.HandleFunc("/offline", func(w http.ResponseWriter, r *http.Request) {
		record("offline", fmt.Sprintf("%s %s from %s", r.Method, r.URL.RequestURI(), r.RemoteAddr))
		if reg != nil {
			reg.deregister() // an app's own offline endpoint: it leaves its registry
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/registration", func(w http.ResponseWriter, r *http.Request) {
		if reg == nil {
			http.Error(w, "no registration", http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]string{"registry": *register, "state": reg.state()})
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		writeJSON(w, events)
	})
	mgmtPort, actuator := actuatorPaths(os.Getenv)
	if actuator != "" && mgmtPort == "" {
		mux.HandleFunc(actuator, serviceRegistryEndpoint(reg))
	}
	// server.servlet.context-path: the app's port serves everything
	// behind it, and nothing else.
	var handler http.Handler = mux
	if cp := contextPath(os.Getenv); cp != "" {
		root := http.NewServeMux()
		root.Handle(cp+"/", http.StripPrefix(cp, mux))
		handler = root
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, ctxKey{}, c.LocalAddr())
		}}
	ports := strings.Split(*listen, ",")
	if mgmtPort != "" {
		mgmt := http.NewServeMux()
		mgmt.HandleFunc(actuator, serviceRegistryEndpoint(reg))
		ln, err := net.Listen("tcp", ":"+mgmtPort)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testapp: management port: %v\n", err)
			return 1
		}
		go func() { _ = http.Serve(ln, mgmt) }()
	}
	for _, p := range ports {
		ln, err := net.Listen("tcp", ":"+strings.TrimSpace(p)) // [::] with IPv4 mapped: both families
		if err != nil {
			fmt.Fprintf(os.Stderr, "testapp: %v\n", err)
			return 1
		}
		go func() { _ = srv.Serve(ln) }()
	}
	if d, ok := reg.(*dubboProvider); ok {
		if err := d.serveQoS(); err != nil {
			fmt.Fprintf(os.Stderr, "testapp: Dubbo QoS: %v\n", err)
			return 1
		}
	}
	if *edasAgent {
		if err := serveEDASAgent(reg); err != nil {
			fmt.Fprintf(os.Stderr, "testapp: EDAS agent: %v\n", err)
			return 1
		}
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	detail := "listening on " + *listen
	if actuator != "" {
		detail += fmt.Sprintf("; service-registry endpoint %s on port %s", actuator, map[bool]string{true: mgmtPort, false: "of the app (behind " + contextPath(os.Getenv) + "/)"}[mgmtPort != ""])
	}
	record("start", detail)
	if reg != nil {
		reg.start()
	}
	s := <-sigs
	record("signal", s.String())
	if reg != nil {
		reg.deregister()
	}
	if *termDelay > 0 {
		time.Sleep(*termDelay)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	record("exit", "")
	return 0
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// callOnce connects to addr and asks it /whoami over that one connection.
func callOnce(ctx context.Context, addr string) CallResult {
	res := CallResult{Target: addr}
	if addr == "" {
		res.Error = "no addr"
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Local, res.Remote = conn.LocalAddr().String(), conn.RemoteAddr().String()
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		if conn == nil {
			return nil, errors.New("one connection only")
		}
		c := conn
		conn = nil
		return c, nil
	}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/whoami", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var who Whoami
	if err := json.Unmarshal(b, &who); err != nil {
		res.Error = fmt.Sprintf("HTTP %d: %q", resp.StatusCode, b)
		return res
	}
	res.Far = &who
	return res
}

func call(args []string) int {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	count := fs.Int("count", 1, "rounds")
	interval := fs.Duration("interval", time.Second, "between rounds")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	failed := false
	c := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < *count; i++ {
		if i > 0 {
			time.Sleep(*interval)
		}
		for _, u := range fs.Args() {
			start := time.Now()
			resp, err := c.Get(u)
			line := map[string]any{"event": "request", "url": u, "round": i, "ms": time.Since(start).Milliseconds()}
			if err != nil {
				failed = true
				line["error"] = err.Error()
			} else {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				line["status"] = resp.StatusCode
				line["body"] = strings.TrimSpace(string(b))
				if resp.StatusCode >= 400 {
					failed = true
				}
			}
			logLine(line)
		}
	}
	if failed {
		return 1
	}
	return 0
}
