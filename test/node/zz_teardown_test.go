package node

import (
	"testing"

	"github.com/sidecar-injector/injector/test/node/nodeharness"
)

// TestTeardownLeavesTheHostAsItWas runs last (its file sorts last): it
// stops the package's node and compares the host with the snapshot taken
// before the node started: links, iptables and ip6tables rules (nft and
// legacy), mounts, sysctls, cgroups, /run/containerd, /var/lib/cni and the
// node's processes.
func TestTeardownLeavesTheHostAsItWas(t *testing.T) {
	nodeharness.Require(t)
	nodeharness.StopShared(t)
}
