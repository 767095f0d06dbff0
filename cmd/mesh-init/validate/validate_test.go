package validate

import (
	"errors"
	"fmt"
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

// The first candidates, for settings a policy or a pod's annotations can
// produce. Each list starts with these (a prefix match); the property test
// below holds the rest to the rules.
func TestCandidates(t *testing.T) {
	def := meshinit.DefaultCaptureConfig()
	cidrs := func(s ...string) meshinit.CIDRSet {
		var l meshinit.CIDRList
		for _, c := range s {
			l = append(l, netip.MustParsePrefix(c))
		}
		return meshinit.CIDRSet{CIDRs: l}
	}
	for _, tc := range []struct {
		name   string
		c      func(c *meshinit.CaptureConfig)
		v4, v6 string
	}{
		{"everything captured: documentation addresses, then the pod's subnet", nil,
			"192.0.2.1:20001 198.51.100.1:20001 203.0.113.1:20001 10.244.0.254:20001 10.244.0.129:20001",
			"[2001:db8::1]:20001 [fd00:10:244:0:ffff:ffff:ffff:fffe]:20001"},
		{"the test port excluded: the next one", func(c *meshinit.CaptureConfig) {
			c.ExcludeOutboundPorts = meshinit.PortList{{From: 20001, To: 20002}}
		}, "192.0.2.1:20003 198.51.100.1:20003", "[2001:db8::1]:20003"},
		{"a range around the test port excluded: the first port above it", func(c *meshinit.CaptureConfig) {
			c.ExcludeOutboundPorts = meshinit.PortList{{From: 20000, To: 22000}}
		}, "192.0.2.1:22001", "[2001:db8::1]:22001"},
		{"every port above the test port excluded: one below", func(c *meshinit.CaptureConfig) {
			c.ExcludeOutboundPorts = meshinit.PortList{{From: 1, To: 20000}, {From: 21002, To: 65535}}
		}, "192.0.2.1:20001", "[2001:db8::1]:20001"},
		{"only port 21001 left", func(c *meshinit.CaptureConfig) {
			c.ExcludeOutboundPorts = meshinit.PortList{{From: 1, To: 21000}, {From: 21002, To: 65535}}
		}, "192.0.2.1:21001", "[2001:db8::1]:21001"},
		{"every port excluded: nothing", func(c *meshinit.CaptureConfig) {
			c.ExcludeOutboundPorts = meshinit.PortList{{From: 1, To: 65535}}
		}, "", ""},
		{"the pod's subnet and one documentation network excluded", func(c *meshinit.CaptureConfig) {
			c.ExcludeOutboundCIDRs = meshinit.CIDRList{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("192.0.2.0/24")}
		}, "198.51.100.1:20001 203.0.113.1:20001", "[2001:db8::1]:20001 [fd00:10:244:0:ffff:ffff:ffff:fffe]:20001"},
		{"only some CIDRs captured: a host in each", func(c *meshinit.CaptureConfig) {
			c.IncludeOutboundCIDRs = cidrs("10.96.0.0/12", "fd00:96::/112")
		}, "10.111.255.254:20001 10.96.0.1:20001", "[fd00:96::fffe]:20001 [fd00:96::1]:20001"},
		{"one service address, /32 and /128: the address itself", func(c *meshinit.CaptureConfig) {
			c.IncludeOutboundCIDRs = cidrs("10.96.0.10/32", "fd00::10/128")
		}, "10.96.0.10:20001", "[fd00::10]:20001"},
		{"a /31: both addresses", func(c *meshinit.CaptureConfig) {
			c.IncludeOutboundCIDRs = cidrs("10.96.0.10/31")
		}, "10.96.0.11:20001 10.96.0.10:20001", ""},
		{"an included CIDR whose usual host is excluded", func(c *meshinit.CaptureConfig) {
			c.IncludeOutboundCIDRs = cidrs("10.96.0.0/12")
			c.ExcludeOutboundCIDRs = meshinit.CIDRList{netip.MustParsePrefix("10.111.255.254/32"), netip.MustParsePrefix("10.96.0.1/32")}
		}, "10.103.255.254:20001 10.100.0.1:20001", ""},
		{"only ports captured: an included port anywhere", func(c *meshinit.CaptureConfig) {
			c.IncludeOutboundCIDRs = meshinit.CIDRSet{}
			c.IncludeOutboundPorts = meshinit.PortList{{From: 443, To: 443}, {From: 8080, To: 8081}}
			c.ExcludeOutboundPorts = meshinit.PortList{{From: 443, To: 443}}
		}, "192.0.2.1:8080 198.51.100.1:8080", "[2001:db8::1]:8080 [fd00:10:244:0:ffff:ffff:ffff:fffe]:8080"},
		{"included ports all excluded, no CIDR: nothing", func(c *meshinit.CaptureConfig) {
			c.IncludeOutboundCIDRs = meshinit.CIDRSet{}
			c.IncludeOutboundPorts = meshinit.PortList{{From: 443, To: 443}}
			c.ExcludeOutboundPorts = meshinit.PortList{{From: 400, To: 500}}
		}, "", ""},
		{"only loopback and the pod's own address captured: nothing leaves the pod", func(c *meshinit.CaptureConfig) {
			c.IncludeOutboundCIDRs = cidrs("127.0.0.0/8", "10.244.0.7/32", "::1/128")
		}, "", ""},
		{"no outbound capture: nothing to check", func(c *meshinit.CaptureConfig) {
			c.IncludeOutboundCIDRs = meshinit.CIDRSet{}
		}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := def
			if tc.c != nil {
				tc.c(&c)
			}
			for _, fc := range []struct {
				f    capture.Family
				want string
			}{{capture.IPv4, tc.v4}, {capture.IPv6, tc.v6}} {
				got := cands(c, fc.f)
				if fc.want == "" && got != "" || !strings.HasPrefix(got+" ", fc.want+" ") {
					t.Errorf("%s: %q, want it to start with %q", fc.f, got, fc.want)
				}
			}
		})
	}
}

// The pieces left by exclusions cover exactly what they should.
func TestSubtract(t *testing.T) {
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	got := subtract(p("10.0.0.0/24"), []netip.Prefix{p("10.0.0.7/32"), p("10.0.0.128/25"), p("fd00::/8")})
	want := "[10.0.0.64/26 10.0.0.32/27 10.0.0.16/28 10.0.0.8/29 10.0.0.0/30 10.0.0.4/31 10.0.0.6/32]"
	if s := fmt.Sprint(got); s != want {
		t.Errorf("got %s, want %s", s, want)
	}
	if got := subtract(p("10.0.0.0/24"), []netip.Prefix{p("10.0.0.0/8")}); len(got) != 0 {
		t.Errorf("covered: %v", got)
	}
	if got := complement(meshinit.PortList{{From: 1, To: 10}, {From: 5, To: 20}, {From: 65535, To: 65535}}); fmt.Sprint(got) != "21-65534" {
		t.Errorf("complement %v", got)
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
