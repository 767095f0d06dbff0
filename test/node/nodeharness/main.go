package nodeharness

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

var (
	// stopBy is when Main tears the node down ahead of -test.timeout
	// (zero: no timeout).
	stopBy     time.Time
	sharedMu   sync.Mutex
	shared     *Node
	sharedErr  error
	sharedDone bool
	// interrupted ends a start in progress (a wait for another run's
	// lock, a build, a wait for the kubelet) when the binary gets SIGINT
	// or SIGTERM: the start holds sharedMu, which the teardown needs.
	interrupted, interrupt = context.WithCancel(context.Background())
)

// Shared returns the package's node, started on first use (a missing
// prerequisite skips the test, or fails it when CI is set). Main stops it.
func Shared(t testing.TB) *Node {
	t.Helper()
	Require(t)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if !sharedDone {
		sharedDone = true
		ctx := interrupted
		if !stopBy.IsZero() {
			// Waiting for another run's lock ends before the test
			// binary's own timeout would.
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, stopBy)
			defer cancel()
		}
		shared, sharedErr = Start(ctx, Options{Controllers: true, Logf: func(f string, a ...any) {
			fmt.Fprintf(os.Stderr, f+"\n", a...)
		}})
	}
	if sharedErr != nil {
		t.Fatalf("starting the node: %v", sharedErr)
	}
	return shared
}

// stopShared stops the shared node and returns what it left behind.
func stopShared() (leftovers []string, err error) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil {
		return nil, nil
	}
	n := shared
	shared = nil
	return n.StopAndCheck()
}

// timeoutMargin is how long before the test binary's -test.timeout the
// node is torn down: the timeout's panic skips deferred calls and
// t.Cleanup, so the teardown must not wait for it.
const timeoutMargin = 90 * time.Second

// parallelWaits is how many parallel node-tier tests run at once by
// default.
const parallelWaits = 8

// Main runs the tests (m.Run) and tears the shared node down afterwards,
// on SIGINT or SIGTERM, and shortly before -test.timeout would kill the
// process; then it checks that the host is as it was (links, iptables and
// ip6tables rules of both backends, mounts, sysctls, cgroups, processes)
// and fails the run if not. Use it from TestMain: os.Exit(nodeharness.Main(m)).
func Main(m *testing.M) int {
	flag.Parse()
	// envtest logs through controller-runtime's logger; unset, it prints a
	// goroutine dump ("log.SetLogger(...) was never called") into the test
	// output 30s later, which reads like a crash. The control plane's own
	// output is in the node's control-plane.log.
	ctrllog.SetLogger(logr.Discard())
	// The node tier's parallel tests wait on the kubelet rather than use
	// the CPU: unless -parallel was given, run more of them at once than
	// the default (GOMAXPROCS, 2 here).
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", fmt.Sprint(max(runtime.GOMAXPROCS(0), parallelWaits)))
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "node tier: %v: tearing the node down\n", s)
		interrupt()
		report(stopShared())
		os.Exit(130)
	}()
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, ok := f.Value.(flag.Getter).Get().(time.Duration); ok && d > 2*timeoutMargin {
			stopBy = time.Now().Add(d - timeoutMargin)
			time.AfterFunc(d-timeoutMargin, func() {
				fmt.Fprintf(os.Stderr, "node tier: the test binary's -test.timeout (%s) is %s away: tearing the node down now\n", d, timeoutMargin)
				report(stopShared())
			})
		}
	}
	code := m.Run()
	if !report(stopShared()) && code == 0 {
		code = 1
	}
	return code
}

// report prints teardown errors and leftovers; it returns false if there
// were any.
func report(leftovers []string, err error) bool {
	ok := true
	if err != nil {
		fmt.Fprintf(os.Stderr, "node tier: FAIL: tearing the node down: %v\n", err)
		ok = false
	}
	if len(leftovers) > 0 {
		fmt.Fprintf(os.Stderr, "node tier: FAIL: the node left this behind:\n  %s\n", strings.Join(leftovers, "\n  "))
		ok = false
	}
	return ok
}

// StopShared stops the package's node now and fails t when it left
// anything behind. A package's last test calls it, so the check is a named
// test result (Main checks again, in case it did not run).
func StopShared(t testing.TB) {
	t.Helper()
	leftovers, err := stopShared()
	if err != nil {
		t.Errorf("tearing the node down: %v", err)
	}
	if len(leftovers) > 0 {
		t.Errorf("the node left this behind:\n  %s", strings.Join(leftovers, "\n  "))
	}
}

// StopAndAssertClean stops n and fails t when the host then differs from
// what it was before n started (see Snapshot.Leftovers), for tests that
// run a node of their own.
func StopAndAssertClean(t testing.TB, n *Node) {
	t.Helper()
	l, err := n.StopAndCheck()
	if err != nil {
		t.Errorf("tearing the node down: %v", err)
	}
	if len(l) > 0 {
		t.Errorf("the node left this behind:\n  %s", strings.Join(l, "\n  "))
	}
}
