package hook

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// Exit codes shared by the hook commands. A failed original exec handler
// passes its own code through instead, and a hook stopped by a signal exits
// with 128 + the signal number, as shells do.
const (
	ExitOK     = 0 // everything asked for was done
	ExitFailed = 1 // a step failed (offline call, original httpGet, drain, readiness)
	ExitUsage  = 2 // the arguments could not be parsed; nothing was done
)

const usage = `usage: mesh-init hook <command> [flags]

commands:
  prestop     take the instance offline in its service registry, confirm it,
              sleep, then run the app's original preStop handler (app
              container preStop)
  poststart   after a restart in place, bring the instance back online; then
              run the app's original postStart handler (app container postStart)
  wait-ready  wait until the proxy reports ready (proxy postStart)
  proxy-stop  keep the proxy serving, then drain its inbound listeners
              (proxy preStop in classic sidecar mode)
  run         wait for the proxy, run a command, then tell the proxy to quit
              (wraps a Job's command in classic sidecar mode)

Run "mesh-init hook <command> -h" for the command's flags.
`

// Main runs the hook tool: args are everything after "mesh-init hook". It
// returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	t := &tool{
		out:     &syncWriter{w: stdout},
		errOut:  &syncWriter{w: stderr},
		stdin:   os.Stdin,
		signals: sig,
		clock:   realClock{},
		env: environment{
			getenv:   os.Getenv,
			hostname: os.Hostname,
			addrs:    net.InterfaceAddrs,
			readFile: os.ReadFile,
			writeFile: func(name string, b []byte) error {
				// The state volume is shared by the pod's app containers,
				// which may run as different users.
				return os.WriteFile(name, b, 0o666)
			},
			rename: os.Rename,
			remove: os.Remove,
			appLog: writeAppLog,
		},
	}
	return t.main(args)
}

// tool carries everything the hook commands touch outside the process, so
// tests can hand in their own environment, streams and signals.
type tool struct {
	out, errOut *syncWriter
	// log receives the progress lines: stdout, except for run, whose
	// stdout belongs to the command it runs.
	log     *syncWriter
	stdin   io.Reader
	signals <-chan os.Signal
	env     environment
	clock   clock
	cmd     string // the command running, for log prefixes
	// onHeaders, when set, is called when an answer's status and headers
	// have arrived: tests of a stalled body wait for it before letting
	// the request's time run out.
	onHeaders func(method, hostPath string)
}

func (t *tool) main(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(t.errOut, usage)
		return ExitUsage
	}
	cmd, rest := args[0], args[1:]
	t.cmd = cmd
	if t.log == nil {
		t.log = t.out
	}
	var run func([]string) (int, error)
	switch cmd {
	case "prestop":
		run = t.preStop
	case "poststart":
		run = t.postStart
	case "wait-ready":
		run = t.waitReady
	case "proxy-stop":
		run = t.proxyStop
	case "run":
		run = t.run
	case "help", "-h", "-help", "--help":
		fmt.Fprint(t.out, usage)
		return ExitOK
	default:
		fmt.Fprintf(t.errOut, "mesh-init hook: unknown command %q\n\n%s", cmd, usage)
		return ExitUsage
	}
	code, err := run(rest)
	if err != nil { // only argument errors come back this way
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(t.out, meshinit.HookUsage[cmd])
			return ExitOK
		}
		// One line: it ends up in a FailedPreStopHook/FailedPostStartHook
		// event, where a whole usage text would be cut.
		fmt.Fprintf(t.errOut, "mesh-init %s: bad arguments: %v (see mesh-init hook %s -h)\n", cmd, err, cmd)
		return ExitUsage
	}
	return code
}

// logf writes one progress line.
func (t *tool) logf(format string, a ...any) {
	fmt.Fprintf(t.log, "mesh-init %s: %s\n", t.cmd, fmt.Sprintf(format, a...))
}

// errorf writes one line to stderr; kubelet appends stderr after stdout in
// a failed hook's event, so the summary written here is what reads last.
func (t *tool) errorf(format string, a ...any) {
	fmt.Fprintf(t.errOut, "mesh-init %s: %s\n", t.cmd, fmt.Sprintf(format, a...))
}

// interrupt turns the first SIGTERM or SIGINT into a cancelled context and
// remembers which signal it was. Kubelet kills a hook that outlives the
// grace period; the hook should say so and go rather than be cut mid-line.
type interrupt struct {
	mu  sync.Mutex
	sig os.Signal
}

// signalContext watches the signals until the returned stop is called; once
// stop returns, the watcher is gone, so a later signal stays in the channel
// for whoever reads it next (run forwards it to its command).
func (t *tool) signalContext() (context.Context, *interrupt, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	in := &interrupt{}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case s := <-t.signals:
			in.mu.Lock()
			in.sig = s
			in.mu.Unlock()
			cancel()
		case <-done:
		}
	}()
	return ctx, in, func() { close(done); <-exited; cancel() }
}

func (in *interrupt) signal() os.Signal {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.sig
}

// stopped reports the signal line and exit code when a signal arrived.
func (t *tool) stopped(in *interrupt, during string) (int, bool) {
	s := in.signal()
	if s == nil {
		return 0, false
	}
	t.errorf("received %s while %s; exiting without finishing", signalName(s), during)
	return signalExitCode(s), true
}

func signalName(s os.Signal) string {
	if ss, ok := s.(syscall.Signal); ok {
		switch ss {
		case syscall.SIGTERM:
			return "SIGTERM"
		case syscall.SIGINT:
			return "SIGINT"
		}
	}
	return s.String()
}

func signalExitCode(s os.Signal) int {
	if ss, ok := s.(syscall.Signal); ok {
		return 128 + int(ss)
	}
	return ExitFailed
}

// syncWriter serialises the tool's lines with a child's output when both
// share a stream that is not a file.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// forChild is the writer to give a child process: the file itself when the
// stream is one (the child then writes to it directly, with no copying
// goroutine), else the serialising wrapper.
func (s *syncWriter) forChild() io.Writer {
	if f, ok := s.w.(*os.File); ok {
		return f
	}
	return s
}

// fmtDuration keeps log lines short and ASCII: <1ms, 12ms, 1.23s, 30s.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return "<1ms"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

// oneLine trims and flattens a response body for a log line.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "..."
	}
	return s
}
