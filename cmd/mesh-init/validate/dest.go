package validate

import (
	"net/netip"
	"slices"

	"github.com/sidecar-injector/injector/cmd/mesh-init/capture"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// The destinations the probe may use. The rules of a family redirect a
// connection to (address, port) when the port is not excluded, the address
// is in no excluded CIDR, and either the port is an included one or the
// address is in an included CIDR (or every address is). That set is
// computed here as disjoint prefixes, so every combination the settings
// can express (a /32, a /31, a /128, an exclusion inside an inclusion, a
// port range covering the test port, everything but one port) yields a
// destination whenever there is one, and never one the rules leave alone.

// Documentation addresses (RFC 5737, RFC 3849): never a real host. The
// three IPv4 test networks, so that excluding one leaves another.
var (
	docAddrs4 = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.1")}
	docAddrs6 = []netip.Addr{netip.MustParseAddr("2001:db8::1")}
)

// untestable are destinations a TCP connection from the pod never leaves
// through the pod's interface, or cannot be made to at all: loopback and
// "this host" (routed over lo, which the rules return), multicast and the
// limited broadcast (TCP refuses them), IPv4-mapped IPv6 (that traffic is
// IPv4, under the IPv4 rules).
var untestable = map[capture.Family][]netip.Prefix{
	capture.IPv4: {
		netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("224.0.0.0/4"), netip.MustParsePrefix("255.255.255.255/32"),
	},
	capture.IPv6: {
		netip.MustParsePrefix("::/128"), netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("::ffff:0:0/96"), netip.MustParsePrefix("ff00::/8"),
	},
}

// linkLocal6 is captured like any destination, but a connection to it
// needs an interface (a zone) the settings do not name, so the check
// cannot build one; settings that capture only these fail the check
// rather than pass it unchecked.
var linkLocal6 = netip.MustParsePrefix("fe80::/10")

// redirected is the part of one family's address and port space the rules
// redirect, for addresses outside excluded.
type redirected struct {
	// byCIDR: addresses whose every non-excluded port is redirected (the
	// included CIDRs, or all addresses, minus the exclusions).
	byCIDR []netip.Prefix
	// anywhere: addresses whose included ports are redirected (all
	// addresses minus the exclusions).
	anywhere []netip.Prefix
	// anyPort is a port that is not excluded, TestPort or the first above
	// it, else the first below; incPort is the first included port that is
	// not excluded. okAny and okInc say whether there is one.
	anyPort, incPort uint16
	okAny, okInc     bool
}

// redirection computes what c redirects in family f, leaving out the
// addresses in skip besides the excluded CIDRs.
func redirection(c meshinit.CaptureConfig, f capture.Family, skip []netip.Prefix) redirected {
	is6 := f == capture.IPv6
	ex := append(append([]netip.Prefix{}, c.ExcludeOutboundCIDRs.Family(is6)...), skip...)
	all := netip.MustParsePrefix("0.0.0.0/0")
	if is6 {
		all = netip.MustParsePrefix("::/0")
	}
	var r redirected
	r.anywhere = subtract(all, ex)
	incAll := c.IncludeOutboundCIDRs.All
	var inc []netip.Prefix
	for _, p := range c.IncludeOutboundCIDRs.CIDRs.Family(is6) {
		if p.Bits() == 0 {
			incAll = true
		}
		inc = append(inc, p.Masked())
	}
	if incAll {
		r.byCIDR = r.anywhere
	} else {
		for _, p := range inc {
			r.byCIDR = append(r.byCIDR, subtract(p, ex)...)
		}
	}
	notExcluded := complement(c.ExcludeOutboundPorts)
	r.anyPort, r.okAny = firstPort(notExcluded, TestPort)
	if !r.okAny {
		r.anyPort, r.okAny = firstPort(notExcluded, 1)
	}
	r.incPort, r.okInc = firstPort(intersect(c.IncludeOutboundPorts, notExcluded), 1)
	return r
}

// any reports whether some address and port are redirected.
func (r redirected) any() bool {
	return (r.okAny && len(r.byCIDR) > 0) || (r.okInc && len(r.anywhere) > 0)
}

// port returns a port the rules redirect for a, which must be outside
// the exclusions.
func (r redirected) port(a netip.Addr) (uint16, bool) {
	if r.okAny && containsAddr(r.byCIDR, a) {
		return r.anyPort, true
	}
	return r.incPort, r.okInc
}

// Candidates are destinations the settings redirect for family f, best
// first: a documentation address (routed when the pod has a default
// route), then hosts on each of the pod's subnets (routed on the link),
// then hosts in each part of the included CIDRs the exclusions leave,
// then, when every address or some port is captured, hosts anywhere the
// exclusions leave. Each is paired with a port the settings capture for
// it. None is the pod's own address or one a connection cannot leave the
// pod for. Empty means the settings redirect nothing testable in f.
func Candidates(c meshinit.CaptureConfig, f capture.Family, prefixes []netip.Prefix) []netip.AddrPort {
	is6 := f == capture.IPv6
	skip := append([]netip.Prefix{}, untestable[f]...)
	if is6 {
		skip = append(skip, linkLocal6)
	}
	var subnets []netip.Prefix
	for _, p := range prefixes {
		a := p.Addr().Unmap()
		if a.Is6() != is6 {
			continue
		}
		skip = append(skip, netip.PrefixFrom(a, a.BitLen())) // the pod's own: over lo
		if !a.IsLoopback() && !a.IsLinkLocalUnicast() {
			subnets = append(subnets, netip.PrefixFrom(a, p.Bits()).Masked())
		}
	}
	r := redirection(c, f, skip)
	if !r.any() {
		return nil
	}
	var addrs []netip.Addr
	docs := docAddrs4
	if is6 {
		docs = docAddrs6
	}
	for _, a := range docs {
		if containsAddr(r.anywhere, a) {
			addrs = append(addrs, a)
		}
	}
	for _, s := range subnets {
		for _, p := range subtractAll(s, r.anywhere) {
			addrs = append(addrs, hosts(p)...)
		}
	}
	for _, p := range r.byCIDR {
		addrs = append(addrs, hosts(p)...)
	}
	if r.okInc {
		for _, p := range r.anywhere {
			addrs = append(addrs, hosts(p)...)
		}
	}
	var out []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	for _, a := range addrs {
		port, ok := r.port(a)
		if !ok {
			continue
		}
		ap := netip.AddrPortFrom(a, port)
		if !seen[ap] {
			seen[ap] = true
			out = append(out, ap)
		}
	}
	return out
}

// capturesUntestable reports whether c redirects some connection of
// family f that Candidates cannot offer: one to an IPv6 link-local
// address, which needs a zone.
func capturesUntestable(c meshinit.CaptureConfig, f capture.Family) bool {
	if f != capture.IPv6 {
		return false
	}
	r := redirection(c, f, nil)
	in := func(ps []netip.Prefix) bool {
		for _, p := range ps {
			if p.Overlaps(linkLocal6) {
				return true
			}
		}
		return false
	}
	return (r.okAny && in(r.byCIDR)) || (r.okInc && in(r.anywhere))
}

// hosts picks addresses of p to try: for a single address that address,
// for a pair both, otherwise the last but one (on a pod's subnet the top
// addresses are rarely in use, and the last is often the broadcast) and
// the first but one.
func hosts(p netip.Prefix) []netip.Addr {
	first := p.Masked().Addr()
	last := lastAddr(p)
	switch p.Addr().BitLen() - p.Bits() {
	case 0:
		return []netip.Addr{first}
	case 1:
		return []netip.Addr{last, first}
	}
	return []netip.Addr{last.Prev(), first.Next()}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// subtract returns p minus every prefix of ex (of p's family), as disjoint
// prefixes, largest parts first within each split.
func subtract(p netip.Prefix, ex []netip.Prefix) []netip.Prefix {
	out := []netip.Prefix{p.Masked()}
	for _, e := range ex {
		if e.Addr().Is6() != p.Addr().Is6() {
			continue
		}
		e = e.Masked()
		var next []netip.Prefix
		for _, q := range out {
			next = append(next, minus(q, e)...)
		}
		out = next
	}
	return out
}

// minus returns p without e.
func minus(p, e netip.Prefix) []netip.Prefix {
	switch {
	case !p.Overlaps(e):
		return []netip.Prefix{p}
	case e.Bits() <= p.Bits():
		return nil // e covers p
	}
	// e lies inside p: keep the half without e whole, split the other.
	lo := netip.PrefixFrom(p.Addr(), p.Bits()+1).Masked()
	hi := netip.PrefixFrom(lastAddr(p), p.Bits()+1).Masked()
	if lo.Overlaps(e) {
		return append([]netip.Prefix{hi}, minus(lo, e)...)
	}
	return append([]netip.Prefix{lo}, minus(hi, e)...)
}

// subtractAll returns the parts of p inside the union of within (which
// are disjoint).
func subtractAll(p netip.Prefix, within []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, w := range within {
		switch {
		case !p.Overlaps(w):
		case w.Bits() >= p.Bits():
			out = append(out, w)
		default:
			out = append(out, p)
		}
	}
	return out
}

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// complement returns the ports 1-65535 not in l.
func complement(l meshinit.PortList) meshinit.PortList {
	var out meshinit.PortList
	next := 1 // the lowest port not yet covered
	for _, r := range sortedRanges(l) {
		if int(r.From) > next {
			out = append(out, meshinit.PortRange{From: uint16(next), To: r.From - 1})
		}
		if int(r.To)+1 > next {
			next = int(r.To) + 1
		}
	}
	if next <= 65535 {
		out = append(out, meshinit.PortRange{From: uint16(next), To: 65535})
	}
	return out
}

// intersect returns the ports in both a and b (b sorted and disjoint, as
// complement returns it).
func intersect(a, b meshinit.PortList) meshinit.PortList {
	var out meshinit.PortList
	for _, x := range a {
		for _, y := range b {
			from, to := max(x.From, y.From), min(x.To, y.To)
			if from <= to {
				out = append(out, meshinit.PortRange{From: from, To: to})
			}
		}
	}
	return out
}

// firstPort returns the lowest port of l at or above from.
func firstPort(l meshinit.PortList, from uint16) (uint16, bool) {
	best, ok := uint16(0), false
	for _, r := range l {
		if r.To < from {
			continue
		}
		p := max(r.From, from)
		if !ok || p < best {
			best, ok = p, true
		}
	}
	return best, ok
}

func sortedRanges(l meshinit.PortList) meshinit.PortList {
	s := slices.Clone(l)
	slices.SortFunc(s, func(a, b meshinit.PortRange) int { return int(a.From) - int(b.From) })
	return s
}
