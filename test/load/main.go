// Command load drives a running `injector serve` over TLS the way the
// kube-apiserver does and reports latency percentiles, throughput, errors
// and the server's peak memory. See docs/load.md.
//
//	go run ./test/load --spawn --proto h2 --rate 1000 --duration 10s
//	go run ./test/load --spawn --proto h1 --rate 0 --concurrency 64
//	go run ./test/load --url https://127.0.0.1:9443/inject --ca-file D/ca.crt --server-pid P
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

// defaultReview is /work/shared/bench/admission-review.json: a
// ReplicaSet-created pod in namespace "shop".
//
//go:embed testdata/admission-review.json
var defaultReview []byte

func main() {
	os.Exit(mainWithArgs(os.Args[1:], os.Stdout, os.Stderr))
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// loadToolGOGC is the load tool's GC percentage unless GOGC is set. The
// tool allocates per request like any HTTP client, and each of its GC
// cycles delays the requests due meanwhile: with Go's default of 100 the
// open loop's send lag had a p99 of 0.9-1.0 ms here, with GC off 0.3-0.4 ms
// (docs/load.md). 400 keeps the tool's heap at a few tens of MiB.
const loadToolGOGC = 400

func clientGOGC() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}

func mainWithArgs(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == floorCommand {
		return floorMain(args[1:], stderr)
	}
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(loadToolGOGC))
	}
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.StringVar(&cfg.URL, "url", "", "the webhook, https://HOST:PORT/inject (not with --spawn)")
	fs.StringVar(&cfg.Proto, "proto", "h2", "h2 (multiplexed connections, as the API server) or h1 (HTTP/1.1 keep-alive pool)")
	fs.IntVar(&cfg.Conns, "conns", 0, "h2: connections (default 1); h1: pool maximum (default 0: one per request in flight, kept alive)")
	fs.BoolVar(&cfg.H2Strict, "h2-strict", false, "h2: never open more than --conns connections; requests beyond the server's stream limit wait (default: open more, as Go's and the API server's transport do)")
	fs.Float64Var(&cfg.Rate, "rate", 1000, "open loop: requests per second on a fixed timetable; 0: closed loop at saturation")
	fs.IntVar(&cfg.Concurrency, "concurrency", 0, "closed loop (--rate 0): concurrent requests (default 2×nproc)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured phase")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "warm-up phase before it, same load, not counted")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "per request")
	fs.IntVar(&cfg.MaxInFlight, "max-inflight", 1024, "open loop: outstanding requests at most (the schedule waits, and reports it, beyond)")
	fs.DurationVar(&cfg.LateAfter, "late-after", time.Millisecond, "open loop: a request starting later than this after its scheduled time is reported as not sent on time")
	bodyPath := fs.String("body", "", "AdmissionReview to send (default: the embedded testdata/admission-review.json)")
	caFile := fs.String("ca-file", "", "CA bundle that signed the server's certificate (with --url)")
	insecure := fs.Bool("insecure", false, "do not verify the server's certificate (with --url)")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "server process: sample its VmRSS every --sample-every, report VmHWM at the end and its CPU")
	fs.DurationVar(&cfg.SampleEvery, "sample-every", 100*time.Millisecond, "RSS sampling period")
	doSpawn := fs.Bool("spawn", false, "generate certificates, build and start `injector serve` on a free loopback port, run, stop it")
	injector := fs.String("injector", "", "with --spawn: a built injector binary (default: go build ./cmd/injector)")
	floor := fs.Bool("floor", false, "with --spawn: start the floor server (the same HTTP/TLS stack answering with the injector's pre-computed answer, nothing decoded) instead of the injector: what the machine and the stack cost by themselves")
	nsLabels := fs.String("namespace-labels", "shop=sidecar-injector.io/injection=enabled", "with --spawn: serve --namespace-labels")
	var serverArgs stringList
	fs.Var(&serverArgs, "server-arg", "with --spawn: extra `injector serve` argument (repeatable; wins over the defaults)")
	var serverEnv stringList
	fs.Var(&serverEnv, "server-env", "with --spawn: KEY=VALUE added to the server's environment alone, such as GOMAXPROCS=1 (repeatable)")
	fs.StringVar(&cfg.ProfileURL, "pprof-url", "", "server's pprof base URL (http://HOST:PORT): take a CPU profile of the measured phase")
	fs.StringVar(&cfg.ProfileOut, "profile-out", "", "write the server's CPU profile of the measured phase here (with --spawn, pprof is enabled on a free port)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	clientProfile := fs.String("client-cpuprofile", "", "write the load tool's own CPU profile (whole run) here")
	jsonOut := fs.String("json-out", "", "also write the report as JSON to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "load: unexpected arguments %q\n", fs.Args())
		return 2
	}
	fail := func(code int, err error) int {
		fmt.Fprintln(stderr, "load:", err)
		return code
	}

	cfg.Body = defaultReview
	if *bodyPath != "" {
		b, err := os.ReadFile(*bodyPath)
		if err != nil {
			return fail(2, err)
		}
		cfg.Body = b
	}
	if *doSpawn == (cfg.URL != "") {
		return fail(2, errors.New("give either --spawn or --url"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var srv *spawned
	if *doSpawn {
		if cfg.ServerPID != 0 || *caFile != "" || *insecure || cfg.ProfileURL != "" {
			return fail(2, errors.New("--spawn sets --server-pid, the CA and --pprof-url itself"))
		}
		if *floor && (*injector != "" || cfg.ProfileOut != "") {
			return fail(2, errors.New("--floor starts this tool's floor server: no --injector or --profile-out"))
		}
		for _, kv := range serverEnv {
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
				return fail(2, fmt.Errorf("--server-env %q: want KEY=VALUE", kv))
			}
		}
		var err error
		srv, err = spawn(ctx, spawnOptions{
			Binary:          *injector,
			NamespaceLabels: *nsLabels,
			Pprof:           cfg.ProfileOut != "",
			Args:            serverArgs,
			Stderr:          stderr,
			Floor:           *floor,
			BodyPath:        *bodyPath,
			Env:             serverEnv,
		})
		if err != nil { // spawn cleaned up after itself
			return fail(1, err)
		}
		cfg.URL, cfg.TLS, cfg.ServerPID, cfg.ProfileURL = srv.URL, srv.TLS, srv.PID(), srv.PprofURL
	} else {
		if *injector != "" || len(serverArgs) > 0 || len(serverEnv) > 0 || *floor {
			return fail(2, errors.New("--injector, --server-arg, --server-env and --floor need --spawn"))
		}
		tc := &tls.Config{InsecureSkipVerify: *insecure}
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				return fail(2, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fail(2, fmt.Errorf("%s: no PEM certificate", *caFile))
			}
			tc.RootCAs = pool
		}
		cfg.TLS = tc
	}

	if *clientProfile != "" {
		f, err := os.Create(*clientProfile)
		if err != nil {
			return fail(2, err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(1, err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	rep, err := Run(ctx, cfg)
	if srv != nil {
		if serr := srv.stop(); serr != nil && err == nil {
			fmt.Fprintln(stderr, "load: stopping the server:", serr)
		}
	}
	if err != nil {
		return fail(1, err)
	}
	if srv != nil {
		rep.Config.Spawned = srv.Binary
		rep.Config.ServerArgs = srv.Args
		rep.Config.ServerEnv = serverEnv
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fail(1, err)
	}
	js = append(js, '\n')
	if *jsonOut != "" {
		if err := os.WriteFile(*jsonOut, js, 0o644); err != nil {
			return fail(1, err)
		}
	}
	if *asJSON {
		if _, err := stdout.Write(js); err != nil {
			return fail(1, err)
		}
	} else {
		rep.WriteText(stdout)
	}
	return 0
}
