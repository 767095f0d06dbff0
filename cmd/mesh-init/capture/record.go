package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// The settings record (meshinit.SettingsRecord): the mesh-cni plugin sets
// it as the alias of the loopback interface of the pod's network
// namespace after writing the rules, and `mesh-init validate` reads it,
// without privilege, to learn that the rules in the namespace were written
// for exactly the settings of the pod's own spec. Both go through rtnetlink
// in the calling thread's network namespace (the plugin's thread has
// entered the pod's; /sys/class/net would show the host's), with the
// standard library only.

// ReadLoopbackAlias returns the alias of the loopback interface of the
// calling thread's network namespace ("" when it has none).
func ReadLoopbackAlias() (string, error) {
	_, alias, err := loopback()
	return alias, err
}

// WriteLoopbackAlias sets the alias of the loopback interface ("" removes
// it). It needs NET_ADMIN in the namespace.
func WriteLoopbackAlias(alias string) error {
	if len(alias) >= 256 { // IFALIASZ, with its NUL
		return fmt.Errorf("the alias %q is longer than 255 bytes", alias)
	}
	index, _, err := loopback()
	if err != nil {
		return err
	}
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_ROUTE)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return os.NewSyscallError("bind", err)
	}
	// struct nlmsghdr, struct ifinfomsg, then one rtattr IFLA_IFALIAS
	// holding the alias without its NUL (as iproute2 sends it; an empty one
	// removes the alias).
	attrLen := syscall.SizeofRtAttr + len(alias)
	msgLen := syscall.NLMSG_HDRLEN + syscall.SizeofIfInfomsg + rtaAlign(attrLen)
	b := make([]byte, msgLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(msgLen))
	ne.PutUint16(b[4:], syscall.RTM_SETLINK)
	ne.PutUint16(b[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_ACK)
	ne.PutUint32(b[8:], 1) // sequence
	ifi := b[syscall.NLMSG_HDRLEN:]
	ifi[0] = syscall.AF_UNSPEC
	ne.PutUint32(ifi[4:], uint32(index))
	attr := ifi[syscall.SizeofIfInfomsg:]
	ne.PutUint16(attr[0:], uint16(attrLen))
	ne.PutUint16(attr[2:], syscall.IFLA_IFALIAS)
	copy(attr[syscall.SizeofRtAttr:], alias)
	if err := syscall.Sendto(fd, b, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return os.NewSyscallError("sendto", err)
	}
	buf := make([]byte, 4096)
	n, _, err := syscall.Recvfrom(fd, buf, 0)
	if err != nil {
		return os.NewSyscallError("recvfrom", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Header.Type == syscall.NLMSG_ERROR && len(m.Data) >= 4 {
			if code := int32(ne.Uint32(m.Data[:4])); code != 0 {
				return fmt.Errorf("setting the loopback interface's alias: %w", syscall.Errno(-code))
			}
			return nil
		}
	}
	return errors.New("setting the loopback interface's alias: no acknowledgement from the kernel")
}

func rtaAlign(n int) int { return (n + syscall.RTA_ALIGNTO - 1) &^ (syscall.RTA_ALIGNTO - 1) }

// loopback finds the loopback interface (by its flag, whatever its name)
// with a link dump, which needs no privilege.
func loopback() (index int, alias string, err error) {
	tab, err := syscall.NetlinkRIB(syscall.RTM_GETLINK, syscall.AF_UNSPEC)
	if err != nil {
		return 0, "", os.NewSyscallError("netlink RTM_GETLINK", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(tab)
	if err != nil {
		return 0, "", err
	}
	for _, m := range msgs {
		if m.Header.Type != syscall.RTM_NEWLINK || len(m.Data) < syscall.SizeofIfInfomsg {
			continue
		}
		flags := binary.NativeEndian.Uint32(m.Data[8:12])
		if flags&syscall.IFF_LOOPBACK == 0 {
			continue
		}
		index := int(int32(binary.NativeEndian.Uint32(m.Data[4:8])))
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			return 0, "", err
		}
		for _, a := range attrs {
			if a.Attr.Type == syscall.IFLA_IFALIAS {
				alias = strings.TrimRight(string(a.Value), "\x00")
			}
		}
		return index, alias, nil
	}
	return 0, "", errors.New("this network namespace has no loopback interface")
}
