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
	// ExitInterrupted: the check was stopped (SIGTERM, the pod being
	// deleted) before it could conclude; nothing is known about the rules.
	ExitInterrupted = 5
	// ExitSettingsDiffer: the node's plugin wrote rules for settings other
	// than this pod's spec says (its annotation was changed after
	// admission).
	ExitSettingsDiffer = 6
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

	// Record reads the settings record the mesh-cni plugin left in the
	// pod's network namespace ("" for none): capture.ReadLoopbackAlias
	// when nil.
	Record func() (string, error)

	// routed picks the first candidate the pod has a route to (tests
	// replace it; routed by default).
	routed func([]netip.AddrPort) (netip.AddrPort, bool)
}

func (o Options) route(cands []netip.AddrPort) (netip.AddrPort, bool) {
	if o.routed != nil {
		return o.routed(cands)
	}
	return routed(cands)
}

// SettingsDifferError is a settings record other than the one of the
// pod's own settings: the rules in the namespace were written for other
// settings.
type SettingsDifferError struct{ Got, Want string }

func (e *SettingsDifferError) Error() string {
	return fmt.Sprintf("the node's mesh-cni plugin wrote the capture rules for other settings than this pod's spec says (record %q, want %q): "+
		"the pod's annotation %s was changed after the injector wrote it. The pod's network cannot be trusted to go through the proxy; "+
		"delete the pod to have it created and injected again (docs/capture.md)", e.Got, e.Want, meshinit.CNIAnnotation)
}

// NotRecordedError is a pod whose rules nothing can confirm: no settings
// record, and no outbound connection to probe (the settings capture
// inbound traffic only, which cannot be observed from inside the pod).
type NotRecordedError struct{}

func (e *NotRecordedError) Error() string {
	return "the settings capture inbound traffic only, which cannot be probed from inside the pod, and the node's mesh-cni plugin left no " +
		"record of having written the rules for this pod's network namespace: the capture rules are missing (or the plugin on this node " +
		"predates the record). Is the mesh-cni node agent running on this pod's node, and was it ready before the pod was created? " +
		"Delete the pod to have it created again (docs/capture.md)"
}

// InterruptedError is a check stopped before it concluded.
type InterruptedError struct{ Err error }

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("interrupted (%v) before the check concluded; nothing is known about the capture rules", e.Err)
}

// UntestableError is a family whose settings capture outbound connections,
// but only to destinations no probe can be built for. The check fails
// rather than pass without looking.
type UntestableError struct{ Family capture.Family }

func (e *UntestableError) Error() string {
	return fmt.Sprintf("%s: the settings capture outbound connections only to link-local destinations (fe80::/10), which this check "+
		"cannot test (a connection to one needs an interface the settings do not name), so it cannot tell whether the capture rules are "+
		"in place; capture other destinations too (--include-outbound-cidrs, --include-outbound-ports) or use the init capture mode", e.Family)
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
	recorded, err := o.checkRecord(logf)
	if err != nil {
		return err
	}
	verified, unroutable, captured := 0, 0, 0
	for _, f := range fams {
		if ctx.Err() != nil {
			return &InterruptedError{Err: context.Cause(ctx)}
		}
		cands := Candidates(c, f, prefixes)
		if len(cands) == 0 {
			if capturesUntestable(c, f) {
				return &UntestableError{Family: f}
			}
			logf("%s: not checked: the settings redirect no outbound %s connection that can leave the pod", f, f)
			continue
		}
		captured++
		target, ok := o.route(cands)
		if !ok {
			unroutable++
			logf("%s: not checked: no route to any of %v (the pod cannot send %s traffic, so none can bypass the proxy)", f, abbreviate(cands), f)
			continue
		}
		if err := probe(ctx, f, c.OutboundPort, target, o.Timeout); err != nil {
			return err
		}
		verified++
		logf("%s: a connection to %s arrived at the proxy's port with its original destination: the capture rules are in place", f, target)
	}
	switch {
	case verified > 0 || recorded:
	case unroutable > 0:
		return fmt.Errorf("found no routed destination to test the capture rules with (addresses %v): the pod's routes are unusual; "+
			"exclude nothing the test needs or use the init capture mode", prefixes)
	case capturesInbound(c):
		return &NotRecordedError{}
	}
	if captured == 0 && !recorded {
		logf("nothing to check: the settings capture no traffic")
	}
	return nil
}

// checkRecord compares the plugin's settings record with this pod's
// settings: recorded is true when they are the same; a record of other
// settings is an error; no record is logged (a plugin that predates it).
func (o Options) checkRecord(logf func(string, ...any)) (recorded bool, err error) {
	read := o.Record
	if read == nil {
		read = capture.ReadLoopbackAlias
	}
	want := o.Capture.SettingsRecord()
	got, err := read()
	switch {
	case err != nil:
		logf("cannot read the settings record (%v); checking the rules by probing alone", err)
	case got == want:
		logf("the node's mesh-cni plugin recorded writing the rules for exactly these settings (%s)", want)
		return true, nil
	case strings.HasPrefix(got, meshinit.SettingsRecordPrefix):
		return false, &SettingsDifferError{Got: got, Want: want}
	default:
		logf("no settings record in the pod's network namespace (the rules are missing, or the node's mesh-cni predates the record): checking by probing alone")
	}
	return false, nil
}

// capturesInbound reports whether c redirects any inbound connection.
func capturesInbound(c meshinit.CaptureConfig) bool {
	for _, r := range capture.ChainRules(c, capture.IPv4) {
		if strings.HasPrefix(r, "-A "+capture.ChainInbound+" ") && strings.HasSuffix(r, "-j "+capture.ChainInRedirect) {
			return true
		}
	}
	return false
}

// abbreviate shortens a long candidate list for a log line.
func abbreviate(cands []netip.AddrPort) string {
	if len(cands) <= 8 {
		return fmt.Sprint(cands)
	}
	return fmt.Sprintf("%v and %d more", cands[:8], len(cands)-8)
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

	parent := ctx
	notCaptured := func(err error) error {
		if parent.Err() != nil {
			return &InterruptedError{Err: context.Cause(parent)}
		}
		return &NotCapturedError{Family: f, Target: target, Listener: listener, Err: err}
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return notCaptured(err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// A stop while waiting for the token ends the wait at once.
	stop := context.AfterFunc(parent, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
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
	var nr *NotRecordedError
	var sd *SettingsDifferError
	var ie *InterruptedError
	var fe *meshinit.FlagError
	var ue *meshinit.UsageError
	switch {
	case err == nil:
		return capture.ExitOK
	case errors.As(err, &ie):
		return ExitInterrupted
	case errors.As(err, &sd):
		return ExitSettingsDiffer
	case errors.As(err, &nc), errors.As(err, &nr):
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
