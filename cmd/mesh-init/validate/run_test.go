package validate

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-injector/injector/cmd/mesh-init/capture"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// Run's decisions that need no rules: settings it cannot test fail it,
// settings that capture nothing pass it with a log line, and a stop while a
// probe waits is reported as such, not as missing rules.

// dualStack is /proc as a pod with routable IPv6 shows it.
func dualStack(name string) ([]byte, error) {
	switch name {
	case "/proc/net/if_inet6":
		return []byte("fd000010024400000000000000000007 02 40 00 80 eth0\n"), nil
	case "/proc/sys/net/ipv6/conf/all/disable_ipv6":
		return []byte("0\n"), nil
	}
	return nil, os.ErrNotExist
}

func options(c meshinit.CaptureConfig, log *strings.Builder) Options {
	return Options{Capture: c, ReadFile: dualStack, Log: log, Timeout: 2 * time.Second,
		Prefixes: func() ([]netip.Prefix, error) { return podPrefixes, nil }}
}

func TestRunFailsWhenItCannotTest(t *testing.T) {
	c := meshinit.DefaultCaptureConfig()
	c.IncludeOutboundCIDRs = meshinit.CIDRSet{CIDRs: meshinit.CIDRList{netip.MustParsePrefix("fe80::/10")}}
	var log strings.Builder
	o := options(c, &log)
	o.routed = func([]netip.AddrPort) (netip.AddrPort, bool) { return netip.AddrPort{}, false }
	err := Run(context.Background(), o)
	var ue *UntestableError
	if !errors.As(err, &ue) || ue.Family != capture.IPv6 || ExitCode(err) != capture.ExitFailed || !strings.Contains(err.Error(), "fe80::/10") {
		t.Fatalf("got %v (exit %d), want the IPv6 family reported untestable\n%s", err, ExitCode(err), log.String())
	}
	if strings.Contains(log.String(), "nothing to check") {
		t.Errorf("logged nothing to check:\n%s", log.String())
	}
}

func TestRunNothingCaptured(t *testing.T) {
	for _, set := range []func(c *meshinit.CaptureConfig){
		func(c *meshinit.CaptureConfig) { c.IncludeOutboundCIDRs = meshinit.CIDRSet{} },
		func(c *meshinit.CaptureConfig) { c.ExcludeOutboundPorts = meshinit.PortList{{From: 1, To: 65535}} },
	} {
		c := meshinit.DefaultCaptureConfig()
		set(&c)
		var log strings.Builder
		o := options(c, &log)
		o.routed = func([]netip.AddrPort) (netip.AddrPort, bool) { t.Fatal("probed"); return netip.AddrPort{}, false }
		if err := Run(context.Background(), o); err != nil || !strings.Contains(log.String(), "nothing to check") {
			t.Errorf("%s: %v\n%s", c.AnnotationValue(), err, log.String())
		}
	}
}

// A far end that accepts and never answers: the probe waits for the token.
// Stopped meanwhile, Run says it was interrupted (exit 5); timed out, that
// the rules are missing (exit 4).
func TestRunInterrupted(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(free.Addr().(*net.TCPAddr).Port)
	free.Close()

	c := meshinit.DefaultCaptureConfig()
	c.OutboundPort = port
	c.IPv6 = meshinit.IPv6Off
	target := netip.MustParseAddrPort(silent.Addr().String())
	run := func(ctx context.Context, timeout time.Duration) (error, time.Duration) {
		var log strings.Builder
		o := options(c, &log)
		o.Timeout = timeout
		o.routed = func([]netip.AddrPort) (netip.AddrPort, bool) { return target, true }
		start := time.Now()
		err := Run(ctx, o)
		return err, time.Since(start)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	err, took := run(ctx, time.Minute)
	var ie *InterruptedError
	if !errors.As(err, &ie) || ExitCode(err) != ExitInterrupted || strings.Contains(err.Error(), "missing") || took > 30*time.Second {
		t.Errorf("stopped: %v (exit %d, after %s), want interrupted, exit %d, at once", err, ExitCode(err), took, ExitInterrupted)
	}

	err, _ = run(context.Background(), 300*time.Millisecond)
	var nc *NotCapturedError
	if !errors.As(err, &nc) || ExitCode(err) != ExitNotCaptured {
		t.Errorf("timed out: %v (exit %d), want not captured", err, ExitCode(err))
	}

	// Stopped before a probe started.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err, _ := run(ctx, time.Minute); ExitCode(err) != ExitInterrupted {
		t.Errorf("stopped before: %v", err)
	}
}
