package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidecar-injector/injector/test/testkit"
	"github.com/sidecar-injector/injector/webhook"
)

func TestPercentilesOnKnownData(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	shuffled := func(n int) []time.Duration {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = ms(i + 1)
		}
		rand.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
		return d
	}
	for _, c := range []struct {
		n                                  int
		min, p50, p90, p99, p999, max, avg time.Duration
	}{
		// Nearest rank: p of n values is the ceil(p/100 × n)-th smallest.
		{n: 1000, min: ms(1), p50: ms(500), p90: ms(900), p99: ms(990), p999: ms(999), max: ms(1000), avg: 500500 * time.Microsecond},
		{n: 10000, min: ms(1), p50: ms(5000), p90: ms(9000), p99: ms(9900), p999: ms(9990), max: ms(10000), avg: 5000500 * time.Microsecond},
		{n: 10, min: ms(1), p50: ms(5), p90: ms(9), p99: ms(10), p999: ms(10), max: ms(10), avg: 5500 * time.Microsecond},
		{n: 1, min: ms(1), p50: ms(1), p90: ms(1), p99: ms(1), p999: ms(1), max: ms(1), avg: ms(1)},
		// 1,001 values: p99.9 is rank ceil(999.999) = 1000.
		{n: 1001, min: ms(1), p50: ms(501), p90: ms(901), p99: ms(991), p999: ms(1000), max: ms(1001), avg: ms(501)},
	} {
		got := summarize(shuffled(c.n))
		want := Summary{Count: c.n, Min: c.min, Mean: c.avg, P50: c.p50, P90: c.p90, P99: c.p99, P999: c.p999, Max: c.max}
		if got != want {
			t.Errorf("n=%d:\n got %+v\nwant %+v", c.n, got, want)
		}
	}
	if got := summarize(nil); got != (Summary{}) {
		t.Errorf("no data: %+v", got)
	}
	// A skewed distribution: 990 fast answers and 10 slow ones. p99 is the
	// last fast one, p99.9 (rank 999) the ninth slow one: the tail is not averaged away.
	var d []time.Duration
	for range 990 {
		d = append(d, ms(1))
	}
	for i := range 10 {
		d = append(d, ms(100+i))
	}
	s := summarize(d)
	if s.P99 != ms(1) || s.P999 != ms(108) || s.Max != ms(109) || s.P50 != ms(1) {
		t.Errorf("skewed: %+v", s)
	}
}

func TestLocateRequestUID(t *testing.T) {
	start, end, err := locateRequestUID(defaultReview)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(defaultReview[start:end]); got != "0df28fbd-5f5f-11e8-bc74-36e6bb280816" {
		t.Fatalf("request.uid located as %q", got)
	}
	// Other uids come first, and whitespace: only request.uid counts.
	doc := []byte(`{ "x": {"uid": "a"}, "request" : { "object": {"metadata": {"uid": "b"}, "list": ["uid", {"uid": "c"}]},
	   "userInfo": {"uid": "d"}, "uid" :  "the-uid" , "n": 1 } }`)
	start, end, err = locateRequestUID(doc)
	if err != nil || string(doc[start:end]) != "the-uid" {
		t.Fatalf("got %q, %v", doc[start:end], err)
	}
	for _, bad := range []string{`{"request":{"object":{"uid":"x"}}}`, `{"request":{"uid":5}}`, `[1]`, `{"request":`, `{"request":{"uid":"a\u0062"}}`} {
		if _, _, err := locateRequestUID([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestBodiesCarryUniqueUIDs(t *testing.T) {
	rv, err := newReview(defaultReview)
	if err != nil {
		t.Fatal(err)
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 20000 {
		u := rv.nextUID()
		if !uuid.Match(u[:]) || seen[string(u[:])] {
			t.Fatalf("uid %s: malformed or repeated", u)
		}
		seen[string(u[:])] = true
	}
	u := rv.nextUID()
	b, err := io.ReadAll(rv.body(&u))
	if err != nil || len(b) != rv.size() {
		t.Fatalf("read %d bytes, want %d: %v", len(b), rv.size(), err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if got := doc["request"].(map[string]any)["uid"]; got != string(u[:]) {
		t.Fatalf("request.uid %v, want %s", got, u)
	}
	// Everything else is the original review.
	want := bytes.Replace(defaultReview, []byte(rv.origUID), u[:], 1)
	if !bytes.Equal(b, want) {
		t.Fatal("the body differs from the review beyond request.uid")
	}
	// The shared parts are never consumed by a read.
	b2, _ := io.ReadAll(rv.body(&u))
	if !bytes.Equal(b, b2) {
		t.Fatal("a second body differs")
	}
}

// realHandler is the injector's admission handler (webhook.Handler with the
// built-in configuration) mounted at /inject as `injector serve` mounts it,
// counting the requests it receives.
func realHandler(t testing.TB, received *atomic.Int64) http.Handler {
	t.Helper()
	wh, err := injectorHandler(webhook.StaticNamespaces{"shop": {"sidecar-injector.io/injection": "enabled"}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(webhook.InjectPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received.Add(1)
		wh.ServeHTTP(w, r)
	}))
	return mux
}

// deadline bounds every wait of this tier: a request's answer (the
// client's --timeout), a spawned server becoming ready and stopping. It is
// stated once, here, and generous: an idle run answers in milliseconds
// and starts a server in about a second; these tests count and classify,
// they do not time. TEST_DEADLINE_SCALE raises it on a slower machine.
var deadline = testkit.Deadline(time.Minute)

func baseConfig(srv *testkit.TLSServer) Config {
	return Config{
		URL:     srv.URL + webhook.InjectPath,
		TLS:     srv.Client.Transport.(*http.Transport).TLSClientConfig,
		Body:    defaultReview,
		Timeout: deadline,
	}
}

func TestRunAgainstTheRealHandler(t *testing.T) {
	for _, c := range []struct {
		name, proto string
		rate        float64
		conc, conns int
	}{
		{name: "h2 open loop", proto: "h2", rate: 100},
		{name: "h2 open loop two connections", proto: "h2", rate: 100, conns: 2},
		{name: "h1 open loop", proto: "h1", rate: 100},
		{name: "h2 saturation", proto: "h2", conc: 4},
		{name: "h1 saturation", proto: "h1", conc: 4, conns: 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			var received atomic.Int64
			srv := testkit.NewTLSServer(t, realHandler(t, &received))
			cfg := baseConfig(srv)
			cfg.Proto, cfg.Rate, cfg.Concurrency, cfg.Conns = c.proto, c.rate, c.conc, c.conns
			cfg.Warmup, cfg.Duration = 200*time.Millisecond, 500*time.Millisecond
			// The test process stands in for the server's process.
			cfg.ServerPID = os.Getpid()
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if rep.ErrorsTotal != 0 || rep.WarmupErrors != 0 {
				t.Fatalf("errors: %v %v", rep.Errors, rep.ErrorSamples)
			}
			if c.rate > 0 {
				// The timetable is exact: rate × duration requests, whatever
				// the latency.
				if rep.Requests != 50 || rep.WarmupRequests != 20 {
					t.Errorf("open loop sent %d (+%d warm-up), want 50 (+20)", rep.Requests, rep.WarmupRequests)
				}
				if rep.SendLag == nil || rep.SendLag.Count != rep.Requests {
					t.Errorf("send lag: %+v", rep.SendLag)
				}
			} else if rep.Requests == 0 {
				t.Error("closed loop sent nothing")
			}
			if rep.OK != rep.Requests || rep.Latency.Count != rep.OK {
				t.Errorf("%d sent, %d ok, %d latencies", rep.Requests, rep.OK, rep.Latency.Count)
			}
			// One preflight request per client, then warm-up and measured.
			clients := 1
			if c.proto == "h2" {
				clients = max(1, c.conns)
			}
			if got, want := received.Load(), int64(clients+rep.WarmupRequests+rep.Requests); got != want {
				t.Errorf("the server received %d requests, the tool accounts for %d", got, want)
			}
			wantProto := map[string]string{"h2": "HTTP/2.0", "h1": "HTTP/1.1"}[c.proto]
			if rep.Protocol != wantProto {
				t.Errorf("negotiated %q, want %q", rep.Protocol, wantProto)
			}
			if c.proto == "h1" && c.conns > 0 && rep.Connections > int64(c.conns) {
				t.Errorf("%d connections with a pool of %d", rep.Connections, c.conns)
			}
			if c.proto == "h2" && rep.Connections < int64(clients) {
				t.Errorf("%d connections for %d HTTP/2 clients", rep.Connections, clients)
			}
			s := rep.Server
			if s == nil || s.RSSPeakKiB <= 0 || s.HWMEndKiB <= 0 || s.RSSSamples < 1 || s.Error != "" {
				t.Errorf("server stats: %+v", s)
			}
			if rep.Throughput <= 0 || rep.Latency.P50 <= 0 || rep.Latency.P999 < rep.Latency.P99 {
				t.Errorf("report: %+v", rep)
			}
			var text bytes.Buffer
			rep.WriteText(&text)
			for _, want := range []string{"p99.9", "errors:     none", "load avg:", "nproc"} {
				if !strings.Contains(text.String(), want) {
					t.Errorf("the table has no %q:\n%s", want, text.String())
				}
			}
		})
	}
}

// fakeAnswer is a well-formed allowed answer with a patch, for uid.
func fakeAnswer(uid string) map[string]any {
	return map[string]any{
		"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
		"response": map[string]any{
			"uid": uid, "allowed": true, "patchType": "JSONPatch",
			"patch": base64.StdEncoding.EncodeToString([]byte(`[{"op":"add","path":"/metadata/labels/x","value":"y"}]`)),
		},
	}
}

// faultyServer answers the first request correctly (the preflight) and
// then, request by request, each fault in turn (nil: a correct answer),
// counting what it did.
type faultyServer struct {
	faults []string
	stop   chan struct{} // closed when the test ends (errTimeout)
	mu     sync.Mutex
	n      int
	done   map[string]int
}

func newFaultyServer(t *testing.T, faults ...string) (*faultyServer, *testkit.TLSServer) {
	fs := &faultyServer{faults: faults, stop: make(chan struct{})}
	srv := testkit.NewTLSServer(t, fs)
	// Registered after the server's own cleanup, so it runs first: the
	// held requests end before the server waits for them.
	t.Cleanup(func() { close(fs.stop) })
	return fs, srv
}

func (f *faultyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Request struct {
			UID string `json:"uid"`
		} `json:"request"`
	}
	_ = json.NewDecoder(r.Body).Decode(&in)
	f.mu.Lock()
	fault := ""
	if f.n > 0 {
		fault = f.faults[(f.n-1)%len(f.faults)]
	}
	f.n++
	if f.done == nil {
		f.done = map[string]int{}
	}
	f.done[fault]++
	f.mu.Unlock()

	out := fakeAnswer(in.Request.UID)
	resp := out["response"].(map[string]any)
	switch fault {
	case "":
	case "http_500":
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	case errUIDMismatch:
		resp["uid"] = "0df28fbd-5f5f-11e8-bc74-36e6bb280816"
	case errNotAllowed:
		resp["allowed"] = false
		delete(resp, "patch")
		delete(resp, "patchType")
		resp["status"] = map[string]any{"code": 403, "message": "refused"}
	case errNoPatch:
		delete(resp, "patch")
		delete(resp, "patchType")
	case "empty_patch": // counted as no_patch
		resp["patch"] = base64.StdEncoding.EncodeToString([]byte(`[]`))
	case errBadReview:
		_, _ = w.Write([]byte(`{"kind":"Status"`))
		return
	case "no_response": // counted as bad_review
		delete(out, "response")
	case errTimeout:
		// Slow on purpose by a margin no client timeout can race: no
		// answer until the client gives up (or the test ends), and then
		// none either (a handler that returned normally would still send
		// an empty 200, which an HTTP/1.1 client cancelling at that moment
		// can read).
		select {
		case <-r.Context().Done():
		case <-f.stop:
		}
		panic(http.ErrAbortHandler)
	default:
		panic(fault)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// TestRunDetectsErrorsByKind: every kind of wrong answer is counted as
// its kind, and only the wrong ones. The client's timeout is the tier's
// deadline, so no correct answer, however slow the machine, is taken for
// a timeout; timeouts have their own test below.
func TestRunDetectsErrorsByKind(t *testing.T) {
	faults := []string{"", "http_500", errUIDMismatch, "", errNotAllowed, errNoPatch, "empty_patch", errBadReview, "no_response", ""}
	for _, proto := range []string{"h2", "h1"} {
		t.Run(proto, func(t *testing.T) {
			fs, srv := newFaultyServer(t, faults...)
			cfg := baseConfig(srv)
			cfg.Proto, cfg.Rate, cfg.Duration, cfg.Warmup = proto, 100, time.Second, 0
			cfg.ErrorSamples = 100
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			fs.mu.Lock()
			defer fs.mu.Unlock()
			want := map[string]int{}
			for fault, n := range fs.done {
				switch fault {
				case "":
				case "empty_patch":
					want[errNoPatch] += n
				case "no_response":
					want[errBadReview] += n
				default:
					want[fault] += n
				}
			}
			wantOK := fs.done[""] - 1 // the preflight
			if fmt.Sprint(rep.Errors) != fmt.Sprint(want) || rep.OK != wantOK || rep.Requests != 100 || rep.OK+rep.ErrorsTotal != rep.Requests {
				t.Errorf("errors %v, %d ok of %d; the server did %v", rep.Errors, rep.OK, rep.Requests, fs.done)
			}
			if rep.Latency.Count != rep.OK {
				t.Errorf("%d latencies for %d successes", rep.Latency.Count, rep.OK)
			}
			joined := strings.Join(rep.ErrorSamples, "\n")
			for _, s := range []string{"http_500: internal error", "uid_mismatch: sent ", "not_allowed: 403 refused", "no_patch: patchType <none>", "no_patch: patchType JSONPatch, 2 patch bytes"} {
				if !strings.Contains(joined, s) {
					t.Errorf("no %q in the error samples:\n%s", s, joined)
				}
			}
		})
	}
}

// TestRunCountsTimeouts: a request the server never answers is counted as
// a timeout, on either protocol, and nothing else is. The server holds
// every request after the preflight until the client gives up, so the
// client's timeout cannot race an answer. The one bound on the machine's
// speed left is the preflight's answer within timeout: a few milliseconds
// on an idle machine (TLS handshake included), so timeout is hundreds of
// times that, and the run costs timeout once.
func TestRunCountsTimeouts(t *testing.T) {
	const timeout = 3 * time.Second
	for _, proto := range []string{"h2", "h1"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			fs, srv := newFaultyServer(t, errTimeout)
			cfg := baseConfig(srv)
			cfg.Proto, cfg.Rate, cfg.Duration, cfg.Warmup = proto, 10, time.Second, 0
			cfg.Timeout = testkit.Deadline(timeout)
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			fs.mu.Lock()
			defer fs.mu.Unlock()
			if rep.Requests != 10 || rep.OK != 0 || fmt.Sprint(rep.Errors) != "map[timeout:10]" {
				t.Errorf("errors %v, %d ok of %d; the server held %d: %v", rep.Errors, rep.OK, rep.Requests, fs.done[errTimeout], rep.ErrorSamples)
			}
		})
	}
}

func TestPreflightFailureStopsTheRun(t *testing.T) {
	srv := testkit.NewTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	cfg := baseConfig(srv)
	cfg.Duration = time.Second
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "http_500") {
		t.Fatalf("got %v", err)
	}
	// A client that does not trust the server's certificate (the server
	// would log the failed handshake).
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	cfg = baseConfig(srv)
	cfg.TLS = nil
	cfg.Duration = time.Second
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("got %v", err)
	}
}

// TestOpenLoopDoesNotHideAStall: a server that takes 20 ms per request,
// one request at a time (MaxInFlight 1), is offered 200/s. A closed-loop
// tool would report 20 ms; the open loop's requests queue behind the
// schedule, are reported late, and their latency counts from when they were
// due, so the tail shows the queue.
func TestOpenLoopDoesNotHideAStall(t *testing.T) {
	srv := testkit.NewTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Request struct {
				UID string `json:"uid"`
			} `json:"request"`
		}
		_ = json.NewDecoder(r.Body).Decode(&in)
		time.Sleep(20 * time.Millisecond)
		_ = json.NewEncoder(w).Encode(fakeAnswer(in.Request.UID))
	}))
	cfg := baseConfig(srv)
	cfg.Rate, cfg.Duration, cfg.Warmup, cfg.MaxInFlight = 200, 500*time.Millisecond, 0, 1
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 100 || rep.OK != 100 {
		t.Fatalf("%d sent, %d ok: %v", rep.Requests, rep.OK, rep.ErrorSamples)
	}
	// 100 requests of at least 20 ms each, in sequence, take at least 2 s;
	// the last was due at 0.495 s. These are lower bounds, so a slow machine
	// cannot fail them.
	if rep.Late < 90 {
		t.Errorf("%d of 100 late, want nearly all", rep.Late)
	}
	if rep.Latency.Max < 1500*time.Millisecond {
		t.Errorf("max latency %s: the time spent waiting for the schedule is not counted", rep.Latency.Max)
	}
	if rep.Elapsed < 2*time.Second || rep.Throughput > 50 {
		t.Errorf("elapsed %s, throughput %.1f/s", rep.Elapsed, rep.Throughput)
	}
}

func TestMainRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},                                 // neither --spawn nor --url
		{"--spawn", "--url", "https://x/"}, // both
		{"--url", "https://x/", "--spawn=false", "--server-arg", "--x"},
		{"--url", "https://x/", "extra"},
		{"--url", "https://x/", "--server-env", "GOGC=50"},
		{"--spawn", "--server-env", "GOGC"},
		{"--spawn", "--server-env", "=50"},
	} {
		var out, errb bytes.Buffer
		if code := mainWithArgs(args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d (%s)", args, code, errb.String())
		}
	}
}

// TestSpawn is the one-command path: certificates, `go build
// ./cmd/injector`, `injector serve` on a free port, the run, the report
// (JSON), the server stopped.
func TestSpawn(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the injector")
	}
	// Build the injector the way this test binary was built (race or
	// not, default cgo), so its packages come from the build cache instead
	// of a second full compile; --injector then skips the tool's own build.
	bin := filepath.Join(t.TempDir(), "injector")
	args := []string{"build", "-o", bin}
	if testkit.RaceEnabled {
		args = append(args, "-race")
	}
	root, err := moduleRoot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", append(args, "./cmd/injector")...)
	build.Dir = root
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	var out, errb bytes.Buffer
	code := mainWithArgs([]string{"--spawn", "--injector", bin, "--server-env", "GOMAXPROCS=1", "--json", "--rate", "100", "--duration", "1s", "--warmup", "200ms", "--timeout", deadline.String()}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if rep.Requests != 100 || rep.OK != 100 || rep.ErrorsTotal != 0 || rep.WarmupRequests != 20 {
		t.Errorf("%d sent, %d ok, errors %v %v", rep.Requests, rep.OK, rep.Errors, rep.ErrorSamples)
	}
	if rep.Protocol != "HTTP/2.0" || rep.Config.Spawned == "" {
		t.Errorf("protocol %q, spawned %q", rep.Protocol, rep.Config.Spawned)
	}
	if len(rep.Config.ServerEnv) != 1 || rep.Config.ServerEnv[0] != "GOMAXPROCS=1" {
		t.Errorf("server env %q", rep.Config.ServerEnv)
	}
	if rep.Response == nil || rep.Response.Count != rep.OK || rep.Response.P50 > rep.Latency.P50 {
		// Each request's time from its actual send is at most its time
		// from its scheduled send.
		t.Errorf("from send %+v, latency %+v", rep.Response, rep.Latency)
	}
	s := rep.Server
	if s == nil || s.PID <= 0 || s.RSSStartKiB <= 0 || s.RSSPeakKiB <= 0 || s.HWMEndKiB <= 0 || s.Error != "" {
		t.Errorf("server: %+v", s)
	}
	if s != nil {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", s.PID)); err == nil {
			t.Errorf("the injector (pid %d) still runs", s.PID)
		}
	}
	if rep.Host.NumCPU <= 0 || rep.Host.GoVersion == "" {
		t.Errorf("host: %+v", rep.Host)
	}
}

// realAnswer is the real handler's answer to the default review.
func realAnswer(t testing.TB) (answer []byte, uid string) {
	t.Helper()
	rv, err := newReview(defaultReview)
	if err != nil {
		t.Fatal(err)
	}
	var received atomic.Int64
	h := realHandler(t, &received)
	u := rv.nextUID()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, webhook.InjectPath, rv.body(&u))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	return rec.Body.Bytes(), string(u[:])
}

// TestVerifyFastPathAgreesWithFullDecode: the cut-out-the-patch shortcut
// gives the same verdict as decoding everything, and steps aside whenever
// the cut might not be response.patch.
func TestVerifyFastPathAgreesWithFullDecode(t *testing.T) {
	answer, uid := realAnswer(t)
	full := func(body []byte) (string, []byte) {
		var r admissionResponse
		if err := json.Unmarshal(body, &r); err != nil {
			return errBadReview, nil
		}
		kind, _ := check(&r, uid)
		if r.Response == nil {
			return kind, nil
		}
		return kind, r.Response.Patch
	}
	var doc map[string]any
	if err := json.Unmarshal(answer, &doc); err != nil {
		t.Fatal(err)
	}
	variant := func(edit func(resp map[string]any)) []byte {
		var d map[string]any
		_ = json.Unmarshal(answer, &d)
		edit(d["response"].(map[string]any))
		b, _ := json.Marshal(d)
		return b
	}
	indented, _ := json.MarshalIndent(doc, "", "  ")
	for _, c := range []struct {
		name     string
		body     []byte
		fast     bool
		wantKind string
	}{
		{"real answer", answer, true, ""},
		{"indented", indented, false, ""},
		{"a map key named patch", variant(func(r map[string]any) {
			r["auditAnnotations"] = map[string]any{"patch": "W10="}
		}), false, ""},
		{"another uid", variant(func(r map[string]any) { r["uid"] = "x" }), true, errUIDMismatch},
		{"empty patch", variant(func(r map[string]any) { r["patch"] = "W10=" }), true, errNoPatch},
		{"not base64", variant(func(r map[string]any) { r["patch"] = "!!" }), false, errBadReview},
		{"patch not a string", variant(func(r map[string]any) { r["patch"] = 5 }), false, errBadReview},
		{"denied", variant(func(r map[string]any) { r["allowed"] = false; delete(r, "patch") }), false, errNotAllowed},
		{"truncated", answer[:len(answer)/2], false, errBadReview},
	} {
		_, fastOK := decodeFast(c.body)
		if fastOK != c.fast {
			t.Errorf("%s: fast path taken %v, want %v", c.name, fastOK, c.fast)
		}
		kind, _ := verify(c.body, uid)
		fullKind, fullPatch := full(c.body)
		if kind != c.wantKind || fullKind != c.wantKind {
			t.Errorf("%s: verify says %q, full decode %q, want %q", c.name, kind, fullKind, c.wantKind)
		}
		if r, ok := decodeFast(c.body); ok && !bytes.Equal(r.Response.Patch, fullPatch) {
			t.Errorf("%s: the fast path decoded another patch", c.name)
		}
	}
}

// BenchmarkClientSide is the load tool's own work per request besides TLS
// and HTTP: a body with a fresh uid, and the check of a real answer. It
// shares the machine with the server, so it should stay small.
func BenchmarkClientSide(b *testing.B) {
	rv, err := newReview(defaultReview)
	if err != nil {
		b.Fatal(err)
	}
	answer, uid := realAnswer(b)
	if kind, detail := verify(answer, uid); kind != "" {
		b.Fatalf("%s: %s: %s", kind, detail, snippet(answer))
	}
	b.Logf("answer: %d bytes", len(answer))
	b.Run("body", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 32<<10)
		for b.Loop() {
			u := rv.nextUID()
			r := rv.body(&u)
			for {
				if _, err := r.Read(buf); err != nil {
					break
				}
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if kind, _ := verify(answer, uid); kind != "" {
				b.Fatal(kind)
			}
		}
	})
	b.Run("verify-full-decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r admissionResponse
			if err := json.Unmarshal(answer, &r); err != nil {
				b.Fatal(err)
			}
			if kind, _ := check(&r, uid); kind != "" {
				b.Fatal(kind)
			}
		}
	})
}

// TestWaiter: the timetable never sends early, and a cancellation ends a
// wait that is far from due.
func TestWaiter(t *testing.T) {
	w := newWaiter()
	defer w.release()
	never := make(chan struct{})
	for _, d := range []time.Duration{-time.Millisecond, 0, 30 * time.Microsecond, 300 * time.Microsecond, 3 * time.Millisecond} {
		at := time.Now().Add(d)
		if !w.until(at, never) {
			t.Fatalf("%s: cancelled without a cancellation", d)
		}
		if now := time.Now(); now.Before(at) {
			t.Errorf("%s: returned %s before the due time", d, at.Sub(now))
		}
	}
	done := make(chan struct{})
	close(done)
	if w.until(time.Now().Add(time.Hour), done) {
		t.Error("a cancelled wait for an hour returned as due")
	}
}
