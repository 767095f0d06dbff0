// Package validate is `mesh-init validate`: in the cni capture mode, where
// the node's mesh-cni plugin wrote the capture rules when the pod's network
// was set up, it proves from inside the pod, without any privilege, that
// they are there, and fails the pod with a clear message when they are not
// (a pod started before the plugin was installed on its node, or on a node
// without it), instead of letting it run uncaptured.
//
// How (docs/capture.md): for each family the rules capture, it listens on
// the loopback address of that family at the proxy's outbound port, before
// the proxy runs, and connects to a destination the rules must redirect (a
// documentation address, RFC 5737 and RFC 3849, or one on the pod's own
// subnet when the pod has no default route). A redirected connection lands
// on its own listener, whose SO_ORIGINAL_DST is the destination it dialled,
// and receives a random token; anything else (a timeout, a refusal, another
// host's answer) means the rules are missing. The outbound rules are
// written in the same iptables-restore transaction as the inbound ones, so
// they stand for both. It must run as a UID and GID other than the proxy's:
// the proxy's own connections are never redirected.
package validate

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/sidecar-injector/injector/cmd/mesh-init/capture"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// Exit codes of `mesh-init validate` besides capture's 0 (ok), 1
// (failure), 2 (usage).
const (
	// ExitNotCaptured: the capture rules are missing from the pod's network
	// namespace (the message says which family and what to do).
	ExitNotCaptured = 4
)

// TestPort is the port the probe connections go to, unless the settings
// exclude it (then the next one they do not exclude).
const TestPort = 20001

// DefaultTimeout bounds each family's probe connection: a redirected one
// is accepted at once, locally.
const DefaultTimeout = 5 * time.Second

// Options are one run's inputs.
type Options struct {
	Capture meshinit.CaptureConfig
	// Timeout bounds each probe connection (DefaultTimeout when 0).
	Timeout time.Duration
	// ReadFile reads /proc files (the IPv6 decision, the same as capture's).
	ReadFile func(string) ([]byte, error)
	// Prefixes lists the pod's interface addresses with their prefix
	// lengths, loopback included or not (it is ignored).
	Prefixes func() ([]netip.Prefix, error)
	// Log receives one line per decision.
	Log io.Writer
}

// NotCapturedError is a family whose probe connection was not redirected.
type NotCapturedError struct {
	Family   capture.Family
	Target   netip.AddrPort
	Listener netip.AddrPort
	// What happened instead.
	Err error
}

func (e *NotCapturedError) Error() string {
	return fmt.Sprintf("%s: a connection to %s was not redirected to the proxy's port (%s): %v; "+
		"the capture rules are missing in this pod's network namespace. In the cni capture mode the mesh-cni plugin "+
		"writes them when the pod's network is set up: is the mesh-cni node agent running on this pod's node, and was it "+
		"ready before the pod was created? Delete the pod to have it created again (docs/capture.md)",
		e.Family, e.Target, e.Listener, e.Err)
}

// Run checks every family the settings capture outbound and the pod can
// reach; see the package documentation.
func Run(ctx context.Context, o Options) error {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "mesh-init validate: "+format+"\n", args...)
		}
	}
	c := o.Capture
	if err := c.Validate(); err != nil {
		return &meshinit.UsageError{Err: err}
	}
	prefixes, err := o.Prefixes()
	if err != nil {
		return fmt.Errorf("listing the pod's addresses: %w", err)
	}
	fams := []capture.Family{capture.IPv4}
	switch st := capture.DetectIPv6(o.ReadFile); {
	case c.IPv6 == meshinit.IPv6Off:
		logf("IPv6: not checked (--ipv6=off)")
	case st.Routable || (c.IPv6 == meshinit.IPv6Required && st.Kernel):
		fams = append(fams, capture.IPv6)
	default:
		logf("IPv6: not checked (%s)", st.Reason)
	}
	verified, unroutable := 0, 0
	for _, f := range fams {
		cands := Candidates(c, f, prefixes)
		if len(cands) == 0 {
			logf("%s: not checked: the settings capture no outbound %s connection", f, f)
			continue
		}
		target, ok := routed(cands)
		if !ok {
			unroutable++
			logf("%s: not checked: no route to any of %v (the pod cannot send %s traffic, so none can bypass the proxy)", f, cands, f)
			continue
		}
		if err := probe(ctx, f, c.OutboundPort, target, o.Timeout); err != nil {
			return err
		}
		verified++
		logf("%s: a connection to %s arrived at the proxy's port with its original destination: the capture rules are in place", f, target)
	}
	if verified == 0 && unroutable > 0 {
		return fmt.Errorf("found no routed destination to test the capture rules with (addresses %v): the pod's routes are unusual; "+
			"exclude nothing the test needs or use the init capture mode", prefixes)
	}
	if verified == 0 {
		logf("nothing to check: the settings capture no outbound traffic")
	}
	return nil
}

// Documentation addresses (RFC 5737, RFC 3849): never a real host.
var (
	doc4 = netip.MustParseAddr("192.0.2.1")
	doc6 = netip.MustParseAddr("2001:db8::1")
)

// Candidates are destinations the settings redirect for family f, best
// first: the documentation address (routed when the pod has a default
// route), then an unused-looking host on each of the pod's subnets (routed
// on the link), then a host in each included CIDR. Each is paired with a
// port the settings capture.
func Candidates(c meshinit.CaptureConfig, f capture.Family, prefixes []netip.Prefix) []netip.AddrPort {
	is6 := f == capture.IPv6
	var addrs []netip.Addr
	if is6 {
		addrs = append(addrs, doc6)
	} else {
		addrs = append(addrs, doc4)
	}
	own := map[netip.Addr]bool{}
	for _, p := range prefixes {
		own[p.Addr().Unmap()] = true
	}
	for _, p := range prefixes {
		a := p.Addr().Unmap()
		if a.Is6() != is6 || a.IsLoopback() || a.IsLinkLocalUnicast() {
			continue
		}
		if h, ok := hostIn(netip.PrefixFrom(a, p.Bits()).Masked(), own); ok {
			addrs = append(addrs, h)
		}
	}
	for _, p := range c.IncludeOutboundCIDRs.CIDRs.Family(is6) {
		if h, ok := hostIn(p, own); ok {
			addrs = append(addrs, h)
		}
	}
	var out []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	for _, a := range addrs {
		if port, ok := capturedPort(c, f, a); ok {
			ap := netip.AddrPortFrom(a, port)
			if !seen[ap] {
				seen[ap] = true
				out = append(out, ap)
			}
		}
	}
	return out
}

// hostIn picks a host address high in p (its last address but one, or
// lower when that is the pod's own), which on a pod subnet is rarely in
// use; ok is false for prefixes too small to hold one.
func hostIn(p netip.Prefix, own map[netip.Addr]bool) (netip.Addr, bool) {
	bits := p.Addr().BitLen() - p.Bits()
	if bits < 2 {
		return netip.Addr{}, false
	}
	b := p.Addr().AsSlice()
	// The last address of the prefix: every host bit set.
	for i := 0; i < bits; i++ {
		b[len(b)-1-i/8] |= 1 << (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	a := last.Prev()
	for n := 0; n < 8 && p.Contains(a); n++ {
		if !own[a] {
			return a, true
		}
		a = a.Prev()
	}
	return netip.Addr{}, false
}

// capturedPort returns a port whose connections to a the rules of family f
// redirect, mirroring capture's rule order: excluded ports and CIDRs are
// never redirected, included ports always, then included CIDRs.
func capturedPort(c meshinit.CaptureConfig, f capture.Family, a netip.Addr) (uint16, bool) {
	is6 := f == capture.IPv6
	for _, p := range c.ExcludeOutboundCIDRs.Family(is6) {
		if p.Contains(a) {
			return 0, false
		}
	}
	excluded := func(port uint16) bool { return inList(c.ExcludeOutboundPorts, port) }
	byCIDR := c.IncludeOutboundCIDRs.All
	for _, p := range c.IncludeOutboundCIDRs.CIDRs.Family(is6) {
		if p.Bits() == 0 || p.Contains(a) {
			byCIDR = true
		}
	}
	if byCIDR {
		for port := uint16(TestPort); port < TestPort+1000; port++ {
			if !excluded(port) {
				return port, true
			}
		}
	}
	for _, r := range c.IncludeOutboundPorts {
		for port := r.From; ; port++ {
			if !excluded(port) {
				return port, true
			}
			if port == r.To {
				break
			}
		}
	}
	return 0, false
}

func inList(l meshinit.PortList, port uint16) bool {
	for _, r := range l {
		if r.From <= port && port <= r.To {
			return true
		}
	}
	return false
}

// routed returns the first candidate the pod has a route to, asking the
// kernel with a UDP socket's connect: it looks the route up and sends
// nothing, and the capture rules (TCP only) do not apply to it.
func routed(cands []netip.AddrPort) (netip.AddrPort, bool) {
	for _, c := range cands {
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(c))
		if err != nil {
			continue
		}
		local := conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		conn.Close()
		if local.IsLoopback() || local == c.Addr() {
			continue // over lo: never redirected, by design
		}
		return c, true
	}
	return netip.AddrPort{}, false
}

// probe listens on the family's loopback address at the outbound port,
// connects to target and checks the connection arrives there with target
// as its original destination.
func probe(ctx context.Context, f capture.Family, port uint16, target netip.AddrPort, timeout time.Duration) error {
	lo := netip.MustParseAddr("127.0.0.1")
	if f == capture.IPv6 {
		lo = netip.IPv6Loopback()
	}
	listener := netip.AddrPortFrom(lo, port)
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(listener))
	if err != nil {
		return fmt.Errorf("%s: listening on %s, the proxy's outbound port, to receive the test connection: %w "+
			"(the proxy must not run yet: this container goes before it)", f, listener, err)
	}
	defer ln.Close()
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	want := hex.EncodeToString(token)
	go serve(ln, f, target, want)

	notCaptured := func(err error) error {
		return &NotCapturedError{Family: f, Target: target, Listener: listener, Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return notCaptured(err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return notCaptured(fmt.Errorf("connected, but the far end sent no token (%v): something other than this pod answered", err))
	}
	line = strings.TrimSpace(line)
	if line != want {
		return notCaptured(fmt.Errorf("connected, but the far end answered %q", line))
	}
	return nil
}

// serve answers each connection with the token if its original
// destination is target, or says what it was.
func serve(ln *net.TCPListener, f capture.Family, target netip.AddrPort, token string) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(DefaultTimeout))
			dst, err := originalDst(c, f == capture.IPv6)
			switch {
			case err != nil:
				fmt.Fprintf(c, "no original destination: %v\n", err)
			case dst.Addr().Unmap() != target.Addr() || dst.Port() != target.Port():
				fmt.Fprintf(c, "original destination %s, not %s\n", dst, target)
			default:
				fmt.Fprintf(c, "%s\n", token)
			}
			// Wait for the client to close first, so the TIME_WAIT is on
			// its side and not on the proxy's port.
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

// soOriginalDst is SO_ORIGINAL_DST (<linux/netfilter_ipv4.h>) and
// IP6T_SO_ORIGINAL_DST (<linux/netfilter_ipv6/ip6_tables.h>): 80 at SOL_IP
// and SOL_IPV6.
const soOriginalDst = 80

// originalDst reads where a redirected connection was going (no
// capability needed: it is the connection's own conntrack entry).
func originalDst(c *net.TCPConn, v6 bool) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var dst netip.AddrPort
	var serr error
	err = raw.Control(func(fd uintptr) {
		if !v6 {
			// struct sockaddr_in (16 bytes) fits IPv6Mreq's 20:
			// family(2) port(2, network order) addr(4).
			m, err := syscall.GetsockoptIPv6Mreq(int(fd), syscall.SOL_IP, soOriginalDst)
			if err != nil {
				serr = fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", err)
				return
			}
			port := uint16(m.Multiaddr[2])<<8 | uint16(m.Multiaddr[3])
			dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(m.Multiaddr[4:8])), port)
			return
		}
		// struct sockaddr_in6 (28 bytes) fits IPv6MTUInfo's.
		info, err := syscall.GetsockoptIPv6MTUInfo(int(fd), syscall.SOL_IPV6, soOriginalDst)
		if err != nil {
			serr = fmt.Errorf("getsockopt IP6T_SO_ORIGINAL_DST: %w", err)
			return
		}
		// The port field holds network-order bytes, read as a native uint16.
		var pb [2]byte
		binary.NativeEndian.PutUint16(pb[:], info.Addr.Port)
		port := binary.BigEndian.Uint16(pb[:])
		dst = netip.AddrPortFrom(netip.AddrFrom16(info.Addr.Addr), port)
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	return dst, serr
}

// ExitCode maps Run's error to the process exit code.
func ExitCode(err error) int {
	var nc *NotCapturedError
	var fe *meshinit.FlagError
	var ue *meshinit.UsageError
	switch {
	case err == nil:
		return capture.ExitOK
	case errors.As(err, &nc):
		return ExitNotCaptured
	case errors.As(err, &fe), errors.As(err, &ue):
		return capture.ExitUsage
	}
	return capture.ExitFailed
}

// Prefixes lists the interface addresses of this network namespace.
func Prefixes() ([]netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ones, _ := n.Mask.Size()
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.Is4() && ones > 32 {
			ones -= 96
		}
		out = append(out, netip.PrefixFrom(ip, ones))
	}
	return out, nil
}
