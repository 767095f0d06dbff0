package nodeharness

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The node's network: a bridge of ours with the node's addresses on it
// (the kubelet refuses a loopback node IP), dual-stack pod subnets handed
// out by host-local, no default route in pods and FORWARD drops for
// anything leaving the pod subnets, so pod traffic stays on this machine.
const (
	// BridgeName is the CNI bridge (cni0 elsewhere).
	BridgeName = "sinode0"
	// NetworkName is the CNI network's name.
	NetworkName = "sidecar-injector-node"
	// fwdChain holds the FORWARD rules, in the filter table of both
	// families.
	fwdChain = "SINODE-FORWARD"
)

// Addresses of the node and its pods.
var (
	PodSubnet4 = netip.MustParsePrefix("10.244.0.0/24")
	PodSubnet6 = netip.MustParsePrefix("fd00:10:244::/64")
	NodeIP4    = netip.MustParseAddr("10.244.0.1")
	NodeIP6    = netip.MustParseAddr("fd00:10:244::1")
)

// forwardingSysctls are saved before the node starts and restored after:
// CNI plugins may switch forwarding on (the bridge plugin does with
// isGateway), and bridged pod traffic passes the FORWARD chain when
// br_netfilter is loaded.
var forwardingSysctls = []string{
	"net/ipv4/ip_forward",
	"net/ipv6/conf/all/forwarding",
	"net/ipv6/conf/default/forwarding",
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
}

func sysctlPath(name string) string { return filepath.Join("/proc/sys", name) }

// saveSysctls returns the current values (absent ones are left out) and a
// function that writes back those that changed.
func saveSysctls() (map[string]string, func() error) {
	saved := map[string]string{}
	for _, n := range forwardingSysctls {
		if b, err := os.ReadFile(sysctlPath(n)); err == nil {
			saved[n] = strings.TrimSpace(string(b))
		}
	}
	return saved, func() error {
		var errs []error
		for n, v := range saved {
			b, err := os.ReadFile(sysctlPath(n))
			if err == nil && strings.TrimSpace(string(b)) == v {
				continue
			}
			if err := os.WriteFile(sysctlPath(n), []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restoring %s=%s: %w", n, v, err))
			}
		}
		return errors.Join(errs...)
	}
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// setupBridge creates the bridge with the node's addresses. The address
// is nodad: usable at once, before any pod is attached.
func setupBridge() error {
	steps := [][]string{
		{"link", "add", "name", BridgeName, "type", "bridge"},
		{"addr", "add", NodeIP4.String() + "/" + fmt.Sprint(PodSubnet4.Bits()), "dev", BridgeName},
		{"-6", "addr", "add", NodeIP6.String() + "/" + fmt.Sprint(PodSubnet6.Bits()), "dev", BridgeName, "nodad"},
		{"link", "set", BridgeName, "up"},
	}
	for _, s := range steps {
		if err := run("ip", s...); err != nil {
			return err
		}
	}
	_ = os.WriteFile(sysctlPath("net/ipv6/conf/"+BridgeName+"/disable_ipv6"), []byte("0"), 0o644)
	return nil
}

func removeBridge() error {
	if !linkExists(BridgeName) {
		return nil
	}
	return run("ip", "link", "del", BridgeName)
}

// forwardRules are the rules of fwdChain for one family. Traffic bridged
// between pods (it passes FORWARD with br_netfilter, in and out on the
// bridge, including IPv6 neighbour discovery to multicast addresses) is
// accepted; anything routed out of the bridge or into it is dropped, so
// no pod traffic leaves the machine (pods have no default route either).
func forwardRules(subnet netip.Prefix) [][]string {
	s := subnet.String()
	return [][]string{
		{"-A", fwdChain, "-i", BridgeName, "-o", BridgeName, "-j", "ACCEPT"},
		{"-A", fwdChain, "-i", BridgeName, "-j", "DROP"},
		{"-A", fwdChain, "-o", BridgeName, "-j", "DROP"},
		{"-A", fwdChain, "-s", s, "-j", "DROP"},
		{"-A", fwdChain, "-d", s, "-j", "DROP"},
	}
}

var families = []struct {
	tool   string
	subnet *netip.Prefix
}{{"iptables", &PodSubnet4}, {"ip6tables", &PodSubnet6}}

func setupForwardRules() error {
	for _, f := range families {
		if err := run(f.tool, "-w", "-N", fwdChain); err != nil {
			return err
		}
		for _, r := range forwardRules(*f.subnet) {
			if err := run(f.tool, append([]string{"-w"}, r...)...); err != nil {
				return err
			}
		}
		if err := run(f.tool, "-w", "-I", "FORWARD", "1", "-j", fwdChain); err != nil {
			return err
		}
	}
	return nil
}

// removeForwardRules deletes the jump (every copy) and the chain; a
// missing chain is fine.
func removeForwardRules() error {
	var errs []error
	for _, f := range families {
		for exec.Command(f.tool, "-w", "-C", "FORWARD", "-j", fwdChain).Run() == nil {
			if err := run(f.tool, "-w", "-D", "FORWARD", "-j", fwdChain); err != nil {
				errs = append(errs, err)
				break
			}
		}
		if exec.Command(f.tool, "-w", "-n", "-L", fwdChain).Run() == nil {
			if err := run(f.tool, "-w", "-F", fwdChain); err != nil {
				errs = append(errs, err)
			}
			if err := run(f.tool, "-w", "-X", fwdChain); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
