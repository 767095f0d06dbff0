package standin

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from <linux/netfilter_ipv6/
// ip6_tables.h> (80, the same number as SO_ORIGINAL_DST, at SOL_IPV6);
// golang.org/x/sys/unix does not define it.
const ip6tSOOriginalDst = 80

// originalDst recovers where a REDIRECTed connection was going, as Envoy's
// original_dst listener filter does: SO_ORIGINAL_DST (SOL_IP) for IPv4,
// including IPv4 connections accepted on a dual-stack IPv6 socket, and
// IP6T_SO_ORIGINAL_DST (SOL_IPV6) for IPv6. Both read the connection's
// conntrack entry, so they fail for a connection nobody redirected.
func originalDst(c *net.TCPConn, v4 bool) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var dst netip.AddrPort
	var serr error
	err = raw.Control(func(fd uintptr) {
		if v4 {
			// sockaddr_in fits in IPv6Mreq's 20 bytes.
			m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
			if err != nil {
				serr = fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", err)
				return
			}
			// struct sockaddr_in: family(2) port(2, network order) addr(4)
			port := binary.BigEndian.Uint16(m.Multiaddr[2:4])
			dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(m.Multiaddr[4:8])), port)
			return
		}
		// sockaddr_in6 (28 bytes) fits in IPv6MTUInfo.
		info, err := unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSOOriginalDst)
		if err != nil {
			serr = fmt.Errorf("getsockopt IP6T_SO_ORIGINAL_DST: %w", err)
			return
		}
		a := info.Addr
		var pb [2]byte // the port field holds network-order bytes
		binary.NativeEndian.PutUint16(pb[:], a.Port)
		port := binary.BigEndian.Uint16(pb[:])
		dst = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), port)
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	return dst, serr
}

// dualStack clears IPV6_V6ONLY so a "::" listener with ipv4_compat accepts
// IPv4 connections too (as v4-mapped addresses), like Envoy's.
func dualStack(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	})
	if err != nil {
		return err
	}
	return serr
}
