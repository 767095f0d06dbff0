package validate

import (
	"math/rand"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/sidecar-injector/injector/cmd/mesh-init/capture"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// The property the validator rests on, over generated settings (every
// combination of included and excluded ports and CIDRs of both families a
// policy or a pod's annotations can produce): whenever the rules mesh-init
// writes redirect a connection that leaves the pod, Candidates offers one,
// and every candidate it offers is redirected by those rules. "The rules"
// are ChainRules' own output, evaluated by a small interpreter of the
// MESH_OUTPUT chain, so the test does not share the validator's reasoning.

// outputRule is one MESH_OUTPUT rule: its matches and target.
type outputRule struct {
	never    bool // matches only the proxy's UID/GID, or traffic over lo
	from, to int  // destination ports, 0 when any
	dst      netip.Prefix
	target   string
}

// compile parses ChainRules' MESH_OUTPUT rules.
func compile(t *testing.T, rules []string) []outputRule {
	t.Helper()
	var out []outputRule
	for _, r := range rules {
		rest, ok := strings.CutPrefix(r, "-A "+capture.ChainOutput+" ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		var o outputRule
		for i := 0; i < len(f); i++ {
			switch f[i] {
			case "-p", "-m":
				i++ // tcp; the tcp and owner matches' modules
			case "--uid-owner", "--gid-owner", "-o":
				o.never = true // the proxy's identity, or over lo: not a connection this test makes
				i++
			case "--dport":
				i++
				from, to, _ := strings.Cut(f[i], ":")
				if to == "" {
					to = from
				}
				o.from, _ = strconv.Atoi(from)
				o.to, _ = strconv.Atoi(to)
			case "-d":
				i++
				o.dst = netip.MustParsePrefix(f[i])
			case "-j":
				i++
				o.target = f[i]
			default:
				t.Fatalf("the interpreter does not know %q in %q", f[i], r)
			}
		}
		out = append(out, o)
	}
	return out
}

// redirects evaluates MESH_OUTPUT for a connection to (a, port) from a
// process that is not the proxy, to a destination not routed over lo: the
// first matching rule decides; none means not redirected.
func redirects(rules []outputRule, a netip.Addr, port uint16) bool {
	for _, r := range rules {
		if r.never || r.from != 0 && (int(port) < r.from || int(port) > r.to) || r.dst.IsValid() && !r.dst.Contains(a) {
			continue
		}
		return r.target == capture.ChainRedirect
	}
	return false
}

// leaves reports whether a TCP connection to a can leave the pod through
// its interface: not loopback, not the pod's own address, not multicast or
// broadcast, not "this network", not IPv4-mapped; IPv6 link-local leaves,
// but needs a zone (counted separately).
func leaves(a netip.Addr, own []netip.Prefix) bool {
	for _, p := range own {
		if p.Addr() == a {
			return false
		}
	}
	if a.Is4() {
		b := a.As4()
		return b[0] != 0 && b[0] != 127 && b[0]&0xf0 != 0xe0 && a != netip.MustParseAddr("255.255.255.255")
	}
	return !a.IsUnspecified() && !a.IsLoopback() && !a.Is4In6() && !a.IsMulticast() && !a.IsLinkLocalUnicast()
}

var (
	pool4 = []string{"10.96.0.10/32", "10.96.0.10/31", "10.96.0.8/30", "10.96.0.0/12", "0.0.0.0/0", "0.0.0.0/1", "128.0.0.0/1",
		"192.0.2.0/24", "192.0.2.1/32", "198.51.100.0/24", "203.0.113.0/24", "10.244.0.0/24", "10.244.0.0/16", "10.244.0.7/32",
		"10.244.0.254/31", "127.0.0.0/8", "126.0.0.0/7", "224.0.0.0/3", "169.254.169.254/32", "255.255.255.255/32", "10.0.0.0/8", "0.0.0.0/8"}
	pool6 = []string{"fd00::10/128", "fd00::10/127", "fd00::/8", "::/0", "::/1", "8000::/1", "fe80::/10", "fe80::1/128", "2001:db8::/32",
		"2001:db8::1/128", "fd00:10:244::/64", "fd00:10:244::7/128", "fd00:10:244:0:ffff:ffff:ffff:fffe/127", "::1/128", "ff00::/8",
		"::ffff:0:0/96", "fc00::/7"}
	portPool = []meshinit.PortRange{{From: 443, To: 443}, {From: 8080, To: 8081}, {From: TestPort, To: TestPort}, {From: 1, To: 65535},
		{From: 20000, To: 22000}, {From: 65535, To: 65535}, {From: 1, To: 1}, {From: 1, To: 20000}, {From: 21002, To: 65535},
		{From: 15001, To: 15001}, {From: 1, To: TestPort}, {From: TestPort, To: 65535}}
)

func randPrefix(rng *rand.Rand, v6 bool) netip.Prefix {
	if rng.Intn(3) > 0 {
		if v6 {
			return netip.MustParsePrefix(pool6[rng.Intn(len(pool6))]).Masked()
		}
		return netip.MustParsePrefix(pool4[rng.Intn(len(pool4))]).Masked()
	}
	var b []byte
	if v6 {
		b = make([]byte, 16)
		b[0] = 0xfd
	} else {
		b = []byte{10, 0, 0, 0}
	}
	for i := 1; i < len(b); i++ {
		b[i] = byte(rng.Intn(256))
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(a, 8+rng.Intn(a.BitLen()-7)).Masked()
}

func randPorts(rng *rand.Rand) meshinit.PortList {
	var l meshinit.PortList
	for n := rng.Intn(4); n > 0; n-- {
		if rng.Intn(3) > 0 {
			l = append(l, portPool[rng.Intn(len(portPool))])
			continue
		}
		a, b := uint16(1+rng.Intn(65535)), uint16(1+rng.Intn(65535))
		l = append(l, meshinit.PortRange{From: min(a, b), To: max(a, b)})
	}
	return l.Normalize()
}

func randCIDRs(rng *rand.Rand, max int) meshinit.CIDRList {
	var l meshinit.CIDRList
	for n := rng.Intn(max + 1); n > 0; n-- {
		l = append(l, randPrefix(rng, rng.Intn(2) == 1))
	}
	return l
}

func randSettings(rng *rand.Rand) meshinit.CaptureConfig {
	c := meshinit.DefaultCaptureConfig()
	switch rng.Intn(6) {
	case 0, 1:
		c.IncludeOutboundCIDRs = meshinit.CIDRSet{All: true}
	case 2:
		c.IncludeOutboundCIDRs = meshinit.CIDRSet{}
	default:
		c.IncludeOutboundCIDRs = meshinit.CIDRSet{CIDRs: randCIDRs(rng, 3)}
	}
	c.ExcludeOutboundCIDRs = randCIDRs(rng, 3)
	c.IncludeOutboundPorts = randPorts(rng)
	c.ExcludeOutboundPorts = randPorts(rng)
	return c
}

// witnesses are addresses worth trying for c: the edges of every prefix
// involved and their neighbours, addresses inside them, and random ones.
func witnesses(rng *rand.Rand, c meshinit.CaptureConfig, f capture.Family, own []netip.Prefix) []netip.Addr {
	is6 := f == capture.IPv6
	var ps []netip.Prefix
	ps = append(ps, c.IncludeOutboundCIDRs.CIDRs.Family(is6)...)
	ps = append(ps, c.ExcludeOutboundCIDRs.Family(is6)...)
	for _, p := range own {
		if p.Addr().Is6() == is6 {
			ps = append(ps, p.Masked(), netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
		}
	}
	for _, s := range append(append([]string{}, pool4...), pool6...) {
		if p := netip.MustParsePrefix(s); p.Addr().Is6() == is6 {
			ps = append(ps, p)
		}
	}
	var out []netip.Addr
	for _, p := range ps {
		first, last := p.Masked().Addr(), lastAddr(p)
		out = append(out, first, first.Next(), first.Prev(), last, last.Prev(), last.Next())
		for i := 0; i < 2; i++ {
			b := first.AsSlice()
			for bit := p.Bits(); bit < len(b)*8; bit++ {
				if rng.Intn(2) == 1 {
					b[bit/8] |= 0x80 >> (bit % 8)
				}
			}
			a, _ := netip.AddrFromSlice(b)
			out = append(out, a)
		}
	}
	valid := out[:0]
	for _, a := range out {
		if a.IsValid() {
			valid = append(valid, a)
		}
	}
	return valid
}

func witnessPorts(rng *rand.Rand, c meshinit.CaptureConfig) []uint16 {
	set := map[int]bool{1: true, 65535: true, TestPort: true, 80: true, 443: true, rng.Intn(65535) + 1: true}
	for _, r := range append(append(meshinit.PortList{}, c.IncludeOutboundPorts...), c.ExcludeOutboundPorts...) {
		for _, p := range []int{int(r.From) - 1, int(r.From), int(r.To), int(r.To) + 1} {
			if p >= 1 && p <= 65535 {
				set[p] = true
			}
		}
	}
	var out []uint16
	for p := range set {
		out = append(out, uint16(p))
	}
	return out
}

func TestCandidatesProperty(t *testing.T) {
	rng := rand.New(rand.NewSource(17))
	pods := [][]netip.Prefix{podPrefixes, {
		// Calico-like: a /32 and a /128, a default route via a link-local gateway.
		netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.244.0.7/32"), netip.MustParsePrefix("fd00:10:244::7/128"),
	}}
	n := 600
	if testing.Short() {
		n = 300
	}
	found := map[capture.Family]int{}
	for i := 0; i < n; i++ {
		c := randSettings(rng)
		if err := c.Validate(); err != nil {
			continue
		}
		own := pods[i%2]
		for _, f := range []capture.Family{capture.IPv4, capture.IPv6} {
			text := capture.ChainRules(c, f)
			rules := compile(t, text)
			cands := Candidates(c, f, own)
			for _, ap := range cands {
				if !leaves(ap.Addr(), own) || ap.Addr().Is6() != (f == capture.IPv6) || !redirects(rules, ap.Addr(), ap.Port()) {
					t.Fatalf("%s, settings %s: the candidate %s is not a redirected destination that leaves the pod\nrules %q",
						f, c.AnnotationValue(), ap, text)
				}
			}
			ports := witnessPorts(rng, c)
			var linkLocal bool
			for _, a := range witnesses(rng, c, f, own) {
				for _, port := range ports {
					if !redirects(rules, a, port) {
						continue
					}
					switch {
					case leaves(a, own):
						if len(cands) == 0 {
							t.Fatalf("%s, settings %s: the rules redirect %s, yet no candidate\nrules %q",
								f, c.AnnotationValue(), netip.AddrPortFrom(a, port), text)
						}
						found[f]++
					case a.Is6() && a.IsLinkLocalUnicast():
						linkLocal = true
					}
				}
			}
			if linkLocal && len(cands) == 0 && !capturesUntestable(c, f) {
				t.Fatalf("%s, settings %s: the rules redirect link-local destinations only, yet the check would pass unchecked", f, c.AnnotationValue())
			}
		}
	}
	if found[capture.IPv4] == 0 || found[capture.IPv6] == 0 {
		t.Errorf("the generator found no redirected destination: %v", found)
	}
}
