package validate

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/sidecar-injector/injector/cmd/mesh-init/capture"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// The real probe needs a network namespace with the rules (test/netns and
// the node tier); here, the choice of destinations, which must be ones the
// settings redirect, on the pod's subnets when there is no default route.

var podPrefixes = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("10.244.0.7/24"), netip.MustParsePrefix("fd00:10:244::7/64"),
	netip.MustParsePrefix("fe80::1/64"),
}

func cands(c meshinit.CaptureConfig, f capture.Family) string {
	var s []string
	for _, a := range Candidates(c, f, podPrefixes) {
		s = append(s, a.String())
	}
	return strings.Join(s, " ")
}

func TestCandidates(t *testing.T) {
	def := meshinit.DefaultCaptureConfig()
	for _, tc := range []struct {
		name   string
		c      func(c *meshinit.CaptureConfig)
		v4, v6 string
	}{
		{"everything captured: documentation address, then the pod's subnet", nil,
			"192.0.2.1:20001 10.244.0.254:20001", "[2001:db8::1]:20001 [fd00:10:244:0:ffff:ffff:ffff:fffe]:20001"},
		{"the test port excluded: the next one", func(c *meshinit.CaptureConfig) {
			c.ExcludeOutboundPorts = meshinit.PortList{{From: 20001, To: 20002}}
		}, "192.0.2.1:20003 10.244.0.254:20003", "[2001:db8::1]:20003 [fd00:10:244:0:ffff:ffff:ffff:fffe]:20003"},
		{"the pod's subnet excluded", func(c *meshinit.CaptureConfig) {
			c.ExcludeOutboundCIDRs = meshinit.CIDRList{netip.MustParsePrefix("10.244.0.0/16")}
		}, "192.0.2.1:20001", "[2001:db8::1]:20001 [fd00:10:244:0:ffff:ffff:ffff:fffe]:20001"},
		{"only some CIDRs captured: a host in each", func(c *meshinit.CaptureConfig) {
			c.IncludeOutboundCIDRs = meshinit.CIDRSet{CIDRs: meshinit.CIDRList{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00:96::/112")}}
		}, "10.111.255.254:20001", "[fd00:96::fffe]:20001"},
		{"only ports captured: an included port anywhere", func(c *meshinit.CaptureConfig) {
			c.IncludeOutboundCIDRs = meshinit.CIDRSet{}
			c.IncludeOutboundPorts = meshinit.PortList{{From: 443, To: 443}, {From: 8080, To: 8081}}
			c.ExcludeOutboundPorts = meshinit.PortList{{From: 443, To: 443}}
		}, "192.0.2.1:8080 10.244.0.254:8080", "[2001:db8::1]:8080 [fd00:10:244:0:ffff:ffff:ffff:fffe]:8080"},
		{"no outbound capture: nothing to check", func(c *meshinit.CaptureConfig) {
			c.IncludeOutboundCIDRs = meshinit.CIDRSet{}
		}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := def
			if tc.c != nil {
				tc.c(&c)
			}
			if got := cands(c, capture.IPv4); got != tc.v4 {
				t.Errorf("IPv4: %q, want %q", got, tc.v4)
			}
			if got := cands(c, capture.IPv6); got != tc.v6 {
				t.Errorf("IPv6: %q, want %q", got, tc.v6)
			}
		})
	}
}

// The host picked on a subnet is never the pod's own address.
func TestHostInAvoidsOwnAddresses(t *testing.T) {
	own := map[netip.Addr]bool{netip.MustParseAddr("10.0.0.254"): true, netip.MustParseAddr("10.0.0.253"): true}
	got, ok := hostIn(netip.MustParsePrefix("10.0.0.0/24"), own)
	if !ok || got != netip.MustParseAddr("10.0.0.252") {
		t.Errorf("got %s %v", got, ok)
	}
	if _, ok := hostIn(netip.MustParsePrefix("10.0.0.1/32"), nil); ok {
		t.Error("a /32 has no other host")
	}
}

func TestExitCodes(t *testing.T) {
	nc := &NotCapturedError{Family: capture.IPv6, Target: netip.MustParseAddrPort("[2001:db8::1]:20001"),
		Listener: netip.MustParseAddrPort("[::1]:15001"), Err: errors.New("i/o timeout")}
	if ExitCode(nc) != ExitNotCaptured || ExitCode(nil) != 0 || ExitCode(errors.New("x")) != capture.ExitFailed ||
		ExitCode(&meshinit.UsageError{Err: errors.New("x")}) != capture.ExitUsage {
		t.Error("exit codes")
	}
	for _, want := range []string{"IPv6", "[2001:db8::1]:20001", "[::1]:15001", "i/o timeout", "mesh-cni", "Delete the pod"} {
		if !strings.Contains(nc.Error(), want) {
			t.Errorf("message lacks %q: %s", want, nc)
		}
	}
}
