package node

import (
	"os"
	"strings"
	"testing"
	"time"

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

// TestKubeletThatCannotStartFailsAtOnce runs after the package's node is
// gone (it needs the machine-wide lock): a node whose kubelet refuses to
// start (here: told to refuse cgroup v1, which this machine has, as it
// would without the node's `failCgroupV1: false`) fails its start at
// once, not after the deadline, with what the kubelet said, and leaves
// nothing behind (Start compares the host with its snapshot before it
// releases the lock, and says what is left).
func TestKubeletThatCannotStartFailsAtOnce(t *testing.T) {
	nodeharness.Require(t)
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		t.Skip("this host has cgroup v2; the fault injected here (--fail-cgroupv1) needs cgroup v1")
	}
	start := time.Now()
	n, err := nodeharness.Start(t.Context(), nodeharness.Options{NoImages: true, KubeletFlags: []string{"--fail-cgroupv1=true"}, Logf: t.Logf})
	took := time.Since(start)
	if err == nil {
		nodeharness.StopAndAssertClean(t, n)
		t.Fatal("a node whose kubelet refuses to start came up")
	}
	// What the kubelet said comes first, before the tail of its log.
	head, _, _ := strings.Cut(err.Error(), "kubelet log (tail)")
	for _, want := range []string{"kubelet", "exited", "it said", "cgroup v1"} {
		if !strings.Contains(head, want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "left this behind") || strings.Contains(err.Error(), "tearing down") {
		t.Errorf("the failed start did not clean up:\n%v", err)
	}
	if took > nodeharness.Deadline/2 {
		t.Errorf("the failure took %s; it should end the wait as soon as the kubelet exits", took)
	}
	t.Logf("failed after %s with:\n%s", took.Round(time.Millisecond), head)
}
