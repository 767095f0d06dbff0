package nodeharness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/test/testkit"
)

// InstallHint says how to get everything the node tier needs.
const InstallHint = "run `bash test/tools/install.sh` as root (apt: containerd runc containernetworking-plugins iptables iproute2; " +
	"builds kube-apiserver, etcd, the kubelet and helm, cached under ~/.cache/sidecar-injector; docs/node.md)"

// CNIBinDir is where Debian's containernetworking-plugins installs.
const CNIBinDir = "/usr/lib/cni"

// NodeCommands are built by install.sh's node part.
var NodeCommands = []string{"kubelet", "kube-controller-manager", "kube-scheduler"}

// NodeAssets is the folder with the kubelet (and, when built,
// kube-controller-manager and kube-scheduler):
// $SIDECAR_INJECTOR_NODE_ASSETS, else install.sh's cache folder.
func NodeAssets() string {
	if d := os.Getenv("SIDECAR_INJECTOR_NODE_ASSETS"); d != "" {
		return d
	}
	return filepath.Join(harness.CacheDir(), "node-k8s-"+harness.KubeVersion)
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Missing lists what this machine lacks to run a node; empty when
// everything is there.
func Missing() []string {
	if runtime.GOOS != "linux" {
		return []string{"Linux"}
	}
	var out []string
	if os.Geteuid() != 0 {
		out = append(out, "root")
	}
	for _, c := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "ip", "iptables", "ip6tables", "dpkg", "ldd"} {
		if _, err := exec.LookPath(c); err != nil {
			out = append(out, c)
		}
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if !executable(filepath.Join(CNIBinDir, p)) {
			out = append(out, "CNI plugin "+filepath.Join(CNIBinDir, p))
		}
	}
	if !executable(filepath.Join(NodeAssets(), "kubelet")) {
		out = append(out, "kubelet "+harness.KubeVersion+" in "+NodeAssets())
	}
	if _, err := harness.ControlPlaneAssets(); err != nil {
		out = append(out, "kube-apiserver and etcd")
	}
	if _, err := harness.Helm(); err != nil {
		out = append(out, "helm")
	}
	if _, err := exec.LookPath("go"); err != nil {
		out = append(out, "go (the images are built from source)")
	}
	if _, err := os.Stat(filepath.Join(cgroupFS, "memory")); err != nil {
		if _, err2 := os.Stat(filepath.Join(cgroupFS, "cgroup.controllers")); err2 != nil {
			out = append(out, "cgroups")
		}
	}
	return out
}

// Require fails the test when CI is set and something is missing, and
// skips it with a one-line reason otherwise (testkit.Need, the one rule
// every tier follows).
func Require(t testing.TB) {
	t.Helper()
	if missing := Missing(); len(missing) > 0 {
		testkit.Need(t, fmt.Errorf("the node tier cannot run: missing %s (%s)", strings.Join(missing, ", "), InstallHint))
	}
}

// ControllersBuilt reports whether kube-controller-manager and
// kube-scheduler are in NodeAssets.
func ControllersBuilt() bool {
	return executable(filepath.Join(NodeAssets(), "kube-controller-manager")) &&
		executable(filepath.Join(NodeAssets(), "kube-scheduler"))
}
