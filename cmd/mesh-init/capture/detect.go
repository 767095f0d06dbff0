package capture

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// This file holds the decisions mesh-init makes from what it observes —
// which iptables backend, whether the pod has IPv6, whether it holds the
// capabilities it needs — as pure functions of the observations, so each
// heuristic is tested without a kernel.

// Observation is what mesh-init saw of one iptables backend (nft or legacy)
// in the pod's network namespace, over the families it looked at.
type Observation struct {
	// Available is true when the backend's binaries exist and its save
	// command ran.
	Available bool
	// Rules counts the rules its save commands printed, all tables.
	Rules int
	// Hint is true when a Kubernetes backend marker chain was seen
	// (KUBE-IPTABLES-HINT or KUBE-KUBELET-CANARY).
	Hint bool
	// Ours is true when mesh-init's chains or jumps are there already.
	Ours bool
}

// ChooseBackend picks the backend for --iptables-mode=auto, returning it and
// a sentence saying why. The heuristic is the one Kubernetes'
// iptables-wrapper and Istio use, because both backends can be present in a
// kernel at once and rules written with the wrong one are either invisible
// to the node's tools or, worse, evaluated alongside another set:
//
//  0. a re-run stays on the backend the first run chose: when exactly one
//     backend holds mesh-init's chains, it is that one (whatever else was
//     added to the other since, so two copies of our rules never coexist);
//  1. a backend holding a Kubernetes marker chain is the one the node's
//     components use;
//  2. otherwise the backend that already holds more rules wins;
//  3. on a tie (typically a fresh pod namespace with no rules anywhere),
//     nft, the default of every current distribution and kernel;
//  4. a backend whose binaries are missing is never chosen.
func ChooseBackend(nft, legacy Observation) (meshinit.Mode, string, error) {
	switch {
	case !nft.Available && !legacy.Available:
		return "", "", errors.New("neither iptables-nft nor iptables-legacy could be used")
	case !legacy.Available:
		return meshinit.ModeNFT, "only the nft backend is available", nil
	case !nft.Available:
		return meshinit.ModeLegacy, "only the legacy backend is available", nil
	case nft.Ours && !legacy.Ours:
		return meshinit.ModeNFT, "mesh-init's chains are in the nft backend already", nil
	case legacy.Ours && !nft.Ours:
		return meshinit.ModeLegacy, "mesh-init's chains are in the legacy backend already", nil
	case nft.Hint && !legacy.Hint:
		return meshinit.ModeNFT, "the nft backend holds a Kubernetes marker chain", nil
	case legacy.Hint && !nft.Hint:
		return meshinit.ModeLegacy, "the legacy backend holds a Kubernetes marker chain", nil
	case legacy.Rules > nft.Rules:
		return meshinit.ModeLegacy, fmt.Sprintf("the legacy backend holds more rules (%d legacy, %d nft)", legacy.Rules, nft.Rules), nil
	case nft.Rules > legacy.Rules:
		return meshinit.ModeNFT, fmt.Sprintf("the nft backend holds more rules (%d nft, %d legacy)", nft.Rules, legacy.Rules), nil
	}
	return meshinit.ModeNFT, fmt.Sprintf("both backends hold %d rules; nft is the default", nft.Rules), nil
}

// legacyTablesEmpty reports whether the legacy (x_tables) backend has no
// table at all in this network namespace, read from
// /proc/net/ip_tables_names and ip6_tables_names (per namespace). Listing
// them needs no capability and no program, and when both are empty or
// absent running iptables-legacy-save is pointless: it would print nothing.
func legacyTablesEmpty(readFile func(string) ([]byte, error)) bool {
	for _, p := range []string{"/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"} {
		b, err := readFile(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return false // cannot tell; let the save command decide
		}
		if strings.TrimSpace(string(b)) != "" {
			return false
		}
	}
	return true
}

// IPv6Status is what mesh-init found out about IPv6 in the pod.
type IPv6Status struct {
	// Module is true when the kernel has IPv6 at all (/proc/net/if_inet6
	// exists), even if disabled by sysctl: ip6tables works then.
	Module bool
	// Kernel is true when the network namespace has IPv6 at all
	// (/proc/net/if_inet6 exists and net.ipv6.conf.all.disable_ipv6 is 0).
	Kernel bool
	// Routable is true when an interface other than lo has an IPv6 address
	// of global scope (ULAs included): the pod can exchange IPv6 traffic
	// with anything outside itself.
	Routable bool
	// Reason says, for a log line, what the decision rests on.
	Reason string
}

// DetectIPv6 inspects /proc of the current network namespace.
//
// A pod counts as having IPv6 when it has a routable (non-loopback,
// non-link-local) IPv6 address: that is when IPv6 traffic can bypass the
// proxy, and so when ip6tables rules are required. A kernel with IPv6
// enabled but only ::1 and fe80:: addresses — every IPv4-only pod on a
// default Linux node — gets no ip6tables rules under --ipv6=auto, so a node
// without the ip6 nat modules does not break IPv4-only pods.
func DetectIPv6(readFile func(string) ([]byte, error)) IPv6Status {
	data, err := readFile("/proc/net/if_inet6")
	if err != nil {
		return IPv6Status{Reason: "/proc/net/if_inet6 is absent: the kernel has IPv6 disabled"}
	}
	if b, err := readFile("/proc/sys/net/ipv6/conf/all/disable_ipv6"); err == nil && strings.TrimSpace(string(b)) == "1" {
		return IPv6Status{Module: true, Reason: "net.ipv6.conf.all.disable_ipv6 is 1"}
	}
	for _, line := range strings.Split(string(data), "\n") {
		// address ifindex prefixlen scope flags ifname
		f := strings.Fields(line)
		if len(f) < 6 || f[5] == "lo" {
			continue
		}
		scope, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			continue
		}
		if scope == 0 { // IPV6_ADDR_SCOPE_GLOBAL (ULAs included)
			return IPv6Status{Module: true, Kernel: true, Routable: true,
				Reason: fmt.Sprintf("%s has the global IPv6 address %s", f[5], formatIfInet6Addr(f[0]))}
		}
	}
	return IPv6Status{Module: true, Kernel: true, Reason: "no interface but lo has a global IPv6 address (only loopback or link-local)"}
}

// formatIfInet6Addr turns if_inet6's 32 hex digits into an address.
func formatIfInet6Addr(hex32 string) string {
	b, err := hex.DecodeString(hex32)
	if err != nil || len(b) != 16 {
		return hex32
	}
	return netip.AddrFrom16([16]byte(b)).String()
}

// The capability bits mesh-init needs (linux/capability.h).
const (
	capNetAdmin = 12
	capNetRaw   = 13
)

// effectiveCaps reads CapEff from /proc/self/status.
func effectiveCaps(readFile func(string) ([]byte, error)) (uint64, error) {
	b, err := readFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}

// capNames are the capabilities by bit (linux/capability.h), for the log
// line that says what the init container really ran with.
var capNames = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
	"SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
	"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
	"LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
	"WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// DescribeCaps names the capabilities of a CapEff mask: "NET_ADMIN,NET_RAW
// (0x3000)"; bits this list does not know are shown as CAP_<n>.
func DescribeCaps(caps uint64) string {
	var names []string
	for bit := 0; bit < 64; bit++ {
		if caps&(1<<bit) == 0 {
			continue
		}
		if bit < len(capNames) {
			names = append(names, capNames[bit])
		} else {
			names = append(names, fmt.Sprintf("CAP_%d", bit))
		}
	}
	if len(names) == 0 {
		names = []string{"none"}
	}
	return fmt.Sprintf("%s (%#x)", strings.Join(names, ","), caps)
}

// capabilityFix is the sentence every permission error ends with.
const capabilityFix = "mesh-init needs NET_ADMIN and NET_RAW: run the init container as root (runAsUser: 0) " +
	"with securityContext.capabilities.add: [NET_ADMIN, NET_RAW]"

// checkCapabilities fails before any program runs when the process lacks
// CAP_NET_ADMIN (every backend) or CAP_NET_RAW (the legacy backend opens a
// raw socket to read and write its tables), naming the missing ones. When
// /proc/self/status cannot be read it says nothing and lets the tools
// decide.
func checkCapabilities(readFile func(string) ([]byte, error), mode meshinit.Mode) error {
	caps, err := effectiveCaps(readFile)
	if err != nil {
		return nil
	}
	var missing []string
	if caps&(1<<capNetAdmin) == 0 {
		missing = append(missing, "NET_ADMIN")
	}
	if mode == meshinit.ModeLegacy && caps&(1<<capNetRaw) == 0 {
		missing = append(missing, "NET_RAW")
	}
	if len(missing) == 0 {
		return nil
	}
	return &PrereqError{
		What: fmt.Sprintf("this process lacks the %s capabilit%s (effective capabilities %#x)",
			strings.Join(missing, " and "), map[bool]string{true: "ies", false: "y"}[len(missing) > 1], caps),
		Fix: capabilityFix,
	}
}
