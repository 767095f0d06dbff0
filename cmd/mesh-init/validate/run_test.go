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
		Prefixes: func() ([]netip.Prefix, error) { return podPrefixes, nil },
		Record:   func() (string, error) { return "", nil }}
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

// Without an outbound connection to probe, the plugin's settings record
// decides: the settings' own record passes, none fails a pod whose
// inbound traffic is captured (it cannot be probed), and settings that
// capture nothing at all have nothing to check.
func TestRunWithoutProbe(t *testing.T) {
	inboundOnly := meshinit.DefaultCaptureConfig()
	inboundOnly.IncludeOutboundCIDRs = meshinit.CIDRSet{}
	allPortsExcluded := meshinit.DefaultCaptureConfig()
	allPortsExcluded.ExcludeOutboundPorts = meshinit.PortList{{From: 1, To: 65535}}
	nothing := inboundOnly
	nothing.IncludeInboundPorts = meshinit.PortSet{}
	for _, tc := range []struct {
		name   string
		c      meshinit.CaptureConfig
		record string
		exit   int
		log    string
	}{
		{"inbound only, no record", inboundOnly, "", ExitNotCaptured, ""},
		{"inbound only, its record", inboundOnly, inboundOnly.SettingsRecord(), 0, "recorded writing the rules for exactly these settings"},
		{"every outbound port excluded, no record", allPortsExcluded, "", ExitNotCaptured, ""},
		{"every outbound port excluded, its record", allPortsExcluded, allPortsExcluded.SettingsRecord(), 0, "exactly these settings"},
		{"nothing captured at all, no record", nothing, "", 0, "nothing to check"},
		{"inbound only, another record", inboundOnly, meshinit.DefaultCaptureConfig().SettingsRecord(), ExitSettingsDiffer, ""},
		{"inbound only, someone else's alias", inboundOnly, "uplink to rack 7", ExitNotCaptured, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log strings.Builder
			o := options(tc.c, &log)
			o.Record = func() (string, error) { return tc.record, nil }
			o.routed = func([]netip.AddrPort) (netip.AddrPort, bool) { t.Fatal("probed"); return netip.AddrPort{}, false }
			err := Run(context.Background(), o)
			if ExitCode(err) != tc.exit || !strings.Contains(log.String(), tc.log) {
				t.Errorf("exit %d (%v), want %d\n%s", ExitCode(err), err, tc.exit, log.String())
			}
		})
	}
}

// Settings the plugin recorded differently fail the pod before any probe,
// naming the annotation: someone changed it after admission.
func TestRunSettingsDiffer(t *testing.T) {
	c := meshinit.DefaultCaptureConfig()
	tampered := c
	tampered.IncludeOutboundCIDRs = meshinit.CIDRSet{CIDRs: meshinit.CIDRList{netip.MustParsePrefix("192.0.2.1/32")}}
	var log strings.Builder
	o := options(c, &log)
	o.Record = func() (string, error) { return tampered.SettingsRecord(), nil }
	o.routed = func([]netip.AddrPort) (netip.AddrPort, bool) { t.Fatal("probed"); return netip.AddrPort{}, false }
	err := Run(context.Background(), o)
	var sd *SettingsDifferError
	if !errors.As(err, &sd) || ExitCode(err) != ExitSettingsDiffer || !strings.Contains(err.Error(), meshinit.CNIAnnotation) {
		t.Errorf("%v (exit %d)", err, ExitCode(err))
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
