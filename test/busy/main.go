// Command busy keeps the machine busy on purpose, so the test suite can be
// shown not to depend on an idle machine (`make test-busy`,
// docs/testing.md).
//
//	go run ./test/busy [-n N] [-for DURATION] [-- COMMAND ARGS...]
//
// It starts N CPU burners (default: twice the cores): N OS threads that
// spin, so the kernel always has N more runnable threads than the tests'
// own and the load average rises by about N. With a command it runs the
// command, stops the burners, prints the command's wall time and the
// 1-minute load average (at the start, its peak, at the end) and exits
// with the command's status. Without one it burns until interrupted
// (SIGINT, SIGTERM) or until -for has passed, for running a whole suite
// beside it in another shell.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, log io.Writer) int {
	fs := flag.NewFlagSet("busy", flag.ContinueOnError)
	fs.SetOutput(log)
	n := fs.Int("n", 2*runtime.NumCPU(), "CPU burners (OS threads spinning)")
	limit := fs.Duration("for", 0, "stop after this long (0: when the command ends, or when interrupted)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *n < 1 {
		fmt.Fprintln(log, "busy: -n must be at least 1")
		return 2
	}
	cmdArgs := fs.Args()

	b := startBurners(*n)
	start := time.Now()
	load := newLoadWatch()
	fmt.Fprintf(log, "busy: %d CPU burners on %d cores; load average %s\n", *n, runtime.NumCPU(), load.start)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	var timeout <-chan time.Time
	if *limit > 0 {
		timeout = time.After(*limit)
	}

	code := 0
	if len(cmdArgs) == 0 {
		select {
		case s := <-sig:
			fmt.Fprintf(log, "busy: %s\n", s)
		case <-timeout:
		}
	} else {
		cmd := exec.Command(cmdArgs[0], cmdArgs[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(log, "busy: %v\n", err)
			b.stop()
			return 1
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
	wait:
		for {
			select {
			case err = <-done:
				break wait
			case s := <-sig:
				// The terminal sends it to the command as well; pass on
				// what came from elsewhere.
				_ = cmd.Process.Signal(s)
			case <-timeout:
				fmt.Fprintf(log, "busy: -for %s passed; stopping %s\n", *limit, cmdArgs[0])
				_ = cmd.Process.Signal(syscall.SIGTERM)
				timeout = nil
			}
		}
		var exit *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exit) && exit.ExitCode() > 0:
			code = exit.ExitCode()
		default:
			fmt.Fprintf(log, "busy: %s: %v\n", cmdArgs[0], err)
			code = 1
		}
	}
	b.stop()
	peak, end := load.finish()
	what := "burned"
	if len(cmdArgs) > 0 {
		what = fmt.Sprintf("%q exited %d after", short(cmdArgs), code)
	}
	fmt.Fprintf(log, "busy: %s %s with %d burners on %d cores; 1-minute load average %s at the start, peak %.2f, %s at the end\n",
		what, time.Since(start).Round(100*time.Millisecond), *n, runtime.NumCPU(), load.start, peak, end)
	return code
}

// burners are n OS threads that spin until stopped.
type burners struct {
	quit atomic.Bool
	wg   sync.WaitGroup
}

func startBurners(n int) *burners {
	// Each burner holds its own thread; the runtime needs one more for
	// everything else.
	runtime.GOMAXPROCS(n + 1)
	b := &burners{}
	for range n {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			runtime.LockOSThread()
			x := uint64(1)
			for !b.quit.Load() {
				for range 1 << 16 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			sink.Add(x)
		}()
	}
	return b
}

var sink atomic.Uint64 // keeps the burners' arithmetic from being optimised away

func (b *burners) stop() {
	b.quit.Store(true)
	b.wg.Wait()
}

// loadWatch samples the 1-minute load average every few seconds and keeps
// its peak.
type loadWatch struct {
	start string
	peak  atomic.Uint64 // in hundredths
	quit  chan struct{}
	done  chan struct{}
}

func newLoadWatch() *loadWatch {
	w := &loadWatch{start: loadAvg(), quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			w.sample()
			select {
			case <-w.quit:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *loadWatch) sample() {
	f := strings.Fields(loadAvg())
	if len(f) == 0 {
		return
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return
	}
	h := uint64(v * 100)
	for {
		old := w.peak.Load()
		if h <= old || w.peak.CompareAndSwap(old, h) {
			return
		}
	}
}

func (w *loadWatch) finish() (peak float64, end string) {
	close(w.quit)
	<-w.done
	w.sample()
	return float64(w.peak.Load()) / 100, loadAvg()
}

// loadAvg is /proc/loadavg's 1-, 5- and 15-minute load averages, or "?"
// where there is none.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// short is the command line, its long tail (a package list) cut.
func short(args []string) string {
	const max = 6
	if len(args) <= max {
		return strings.Join(args, " ")
	}
	return fmt.Sprintf("%s ... (%d more arguments)", strings.Join(args[:max], " "), len(args)-max)
}
