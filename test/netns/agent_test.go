package netns

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"
)

// The helper roles below run in a re-executed copy of this test binary,
// started inside a namespace with `ip netns exec` (as root, which setns
// needs) and then dropping to the UID/GID the role asks for before opening
// any socket. The owner match in the OUTPUT chain sees the socket's owner,
// so a helper running as 1337 is, to the kernel, exactly the proxy.

const (
	envRole   = "MESH_NETNS_ROLE"   // which helper role to run
	envConfig = "MESH_NETNS_CONFIG" // its JSON configuration
)

// agentConfig configures the "agent" role: a process in one namespace, as
// one UID/GID, that serves TCP ports, may act as the stand-in proxy, and
// dials addresses on request.
type agentConfig struct {
	Name string
	NS   string `json:"-"` // the namespace to start it in
	UID  int
	GID  int
	// Servers are addresses ("0.0.0.0:8080", "[::]:8080") where the agent
	// answers every connection with one line naming itself and the
	// connection's addresses, then closes it.
	Servers []string
	// Proxies are the stand-in proxy's capture listeners.
	Proxies []proxyListener
}

// proxyListener is one capture port of the stand-in proxy. On each
// connection it recovers the original destination (SO_ORIGINAL_DST for
// IPv4, IP6T_SO_ORIGINAL_DST for IPv6), writes "proxy <kind> orig=<addr>",
// then dials the original destination as the proxy's UID and copies
// whatever it answers, so the client sees the whole path.
type proxyListener struct {
	Addr string // "0.0.0.0:15001" or "[::]:15001"
	Kind string // "outbound" or "inbound"
}

// execConfig configures the "exec" role: drop to UID/GID and exec Argv.
type execConfig struct {
	UID, GID int
	Argv     []string
}

// dialResult is the agent's answer to "dial <addr>": every line the far end
// wrote before closing, or the error that stopped it.
type dialResult struct {
	Lines []string `json:"lines"`
	Local string   `json:"local,omitempty"`
	Err   string   `json:"err,omitempty"`
}

// helperMain runs the role named in the environment, or returns false when
// this process is the test binary proper.
func helperMain() (int, bool) {
	switch os.Getenv(envRole) {
	case "":
		return 0, false
	case "agent":
		var cfg agentConfig
		if err := json.Unmarshal([]byte(os.Getenv(envConfig)), &cfg); err != nil {
			fmt.Fprintln(os.Stderr, "agent:", err)
			return 2, true
		}
		if err := runAgent(cfg, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "agent %s: %v\n", cfg.Name, err)
			return 1, true
		}
		return 0, true
	case "exec":
		var cfg execConfig
		if err := json.Unmarshal([]byte(os.Getenv(envConfig)), &cfg); err != nil {
			fmt.Fprintln(os.Stderr, "exec:", err)
			return 2, true
		}
		if err := dropPrivileges(cfg.UID, cfg.GID); err != nil {
			fmt.Fprintln(os.Stderr, "exec:", err)
			return 2, true
		}
		env := []string{}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, envRole+"=") && !strings.HasPrefix(kv, envConfig+"=") {
				env = append(env, kv)
			}
		}
		err := syscall.Exec(cfg.Argv[0], cfg.Argv, env)
		fmt.Fprintln(os.Stderr, "exec:", err)
		return 2, true
	}
	fmt.Fprintln(os.Stderr, "unknown helper role", os.Getenv(envRole))
	return 2, true
}

func dropPrivileges(uid, gid int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	return nil
}

func runAgent(cfg agentConfig, in io.Reader, out io.Writer) error {
	if err := dropPrivileges(cfg.UID, cfg.GID); err != nil {
		return err
	}
	ownPorts := map[uint16]bool{}
	for _, p := range cfg.Proxies {
		ap, err := netip.ParseAddrPort(p.Addr)
		if err != nil {
			return err
		}
		ownPorts[ap.Port()] = true
	}
	for _, addr := range cfg.Servers {
		ln, err := listen(addr)
		if err != nil {
			return err
		}
		go serve(ln, func(c net.Conn) {
			fmt.Fprintf(c, "server %s local=%s remote=%s\n", cfg.Name, c.LocalAddr(), c.RemoteAddr())
		})
	}
	for _, p := range cfg.Proxies {
		ln, err := listen(p.Addr)
		if err != nil {
			return err
		}
		kind := p.Kind
		go serve(ln, func(c net.Conn) { proxyConn(c, kind, ownPorts) })
	}
	fmt.Fprintln(out, "ready")
	sc := bufio.NewScanner(in)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "dial":
			if err := enc.Encode(dial(arg)); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown command %q", cmd)
		}
	}
	return sc.Err()
}

// listen opens a TCP listener of the address's own family only ("tcp4"
// for 0.0.0.0, "tcp6" with IPV6_V6ONLY for [::]), so an IPv4 connection
// never arrives on an IPv6 socket and each family's original destination is
// read with its own socket option.
func listen(addr string) (net.Listener, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	network := "tcp4"
	if ap.Addr().Is6() {
		network = "tcp6"
	}
	return net.Listen(network, addr)
}

func serve(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(deadline))
			handle(c)
		}()
	}
}

func proxyConn(c net.Conn, kind string, ownPorts map[uint16]bool) {
	orig, err := originalDst(c.(*net.TCPConn))
	if err != nil {
		fmt.Fprintf(c, "proxy %s error=%v\n", kind, err)
		return
	}
	fmt.Fprintf(c, "proxy %s orig=%s\n", kind, orig)
	if ownPorts[orig.Port()] {
		// Not redirected at all (a direct connection to a capture port):
		// forwarding would connect to ourselves.
		fmt.Fprintf(c, "proxy %s loop\n", kind)
		return
	}
	up, err := net.DialTimeout("tcp", orig.String(), deadline)
	if err != nil {
		fmt.Fprintf(c, "proxy %s dial-error=%v\n", kind, err)
		return
	}
	defer up.Close()
	_ = up.SetDeadline(time.Now().Add(deadline))
	_, _ = io.Copy(c, up)
}

// originalDst reads the destination a connection had before REDIRECT
// rewrote it, from conntrack: getsockopt(SOL_IP, SO_ORIGINAL_DST=80) fills
// a sockaddr_in, getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST=80) a
// sockaddr_in6. The syscall package has no getter of those types, so the
// IPv6Mreq (20 bytes >= sockaddr_in's 16) and IPv6MTUInfo (32 bytes >=
// sockaddr_in6's 28) getters serve as buffers of the right size.
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	const soOriginalDst = 80
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	is6 := c.LocalAddr().(*net.TCPAddr).IP.To4() == nil
	var out netip.AddrPort
	var serr error
	err = raw.Control(func(fd uintptr) {
		if !is6 {
			m, err := syscall.GetsockoptIPv6Mreq(int(fd), syscall.SOL_IP, soOriginalDst)
			if err != nil {
				serr = fmt.Errorf("SO_ORIGINAL_DST: %w", err)
				return
			}
			b := m.Multiaddr // sockaddr_in: family, port (big endian), addr
			out = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]))
			return
		}
		m, err := syscall.GetsockoptIPv6MTUInfo(int(fd), syscall.SOL_IPV6, soOriginalDst)
		if err != nil {
			serr = fmt.Errorf("IP6T_SO_ORIGINAL_DST: %w", err)
			return
		}
		// RawSockaddrInet6.Port holds the network-order bytes as stored;
		// read it back out in memory order to get them.
		var pb [2]byte
		binary.NativeEndian.PutUint16(pb[:], m.Addr.Port)
		port := binary.BigEndian.Uint16(pb[:])
		out = netip.AddrPortFrom(netip.AddrFrom16(m.Addr.Addr), port)
	})
	if err == nil {
		err = serr
	}
	return out, err
}

// dial connects to addr and returns every line the far end writes.
func dial(addr string) dialResult {
	c, err := net.DialTimeout("tcp", addr, deadline)
	if err != nil {
		return dialResult{Err: err.Error()}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(deadline))
	res := dialResult{Local: c.LocalAddr().String()}
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		res.Lines = append(res.Lines, sc.Text())
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		res.Err = err.Error()
	}
	return res
}
