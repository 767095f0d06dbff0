package nodeharness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// containerdConfig is containerd 1.6's configuration (version 2) for the
// node: its own root, state and socket under the node's folder, so it
// never touches a containerd the machine may run, and:
//   - restrict_oom_score_adj: this VM drops CAP_SYS_RESOURCE even for root,
//     so runc cannot lower oom_score_adj and every sandbox would fail with
//     "can't get final child's PID from pipe: EOF";
//   - SystemdCgroup = false: cgroupfs, as the kubelet (no systemd here);
//   - sandbox_image: our pause image, loaded before any pod (no registry);
//   - netns_mounts_under_state_dir: pod network namespaces are mounted
//     under the state folder, unmounted with it;
//   - the CNI configuration folder of this node only, and runc's state
//     (Root) under the node's folder too.
const containerdConfig = `version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[9]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
    max_conf_num = 1
`

// cniConfig is the pod network: Debian's bridge plugin on our bridge
// (created before the kubelet, with the node's addresses; isGateway off,
// so the plugin neither re-addresses it nor switches forwarding on),
// host-local with one IPv4 and one IPv6 range and no routes (no default
// route: pods reach only the pod subnets), then portmap for hostPorts.
// containerd adds the loopback plugin itself.
func cniConfig(ipamDir string) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       NetworkName,
		"plugins": []any{
			map[string]any{
				"type":             "bridge",
				"bridge":           BridgeName,
				"isGateway":        false,
				"isDefaultGateway": false,
				"ipMasq":           false,
				"hairpinMode":      true,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": ipamDir,
					"ranges": []any{
						[]any{map[string]any{"subnet": PodSubnet4.String(), "gateway": NodeIP4.String()}},
						[]any{map[string]any{"subnet": PodSubnet6.String(), "gateway": NodeIP6.String()}},
					},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// containerd is the node's container runtime.
type containerd struct {
	dir    string
	Socket string
	proc   *Proc
}

func startContainerd(dir, sandboxImage string) (*containerd, error) {
	c := &containerd{dir: filepath.Join(dir, "containerd")}
	c.Socket = filepath.Join(c.dir, "containerd.sock")
	cniDir := filepath.Join(dir, "cni")
	for _, d := range []string{c.dir, filepath.Join(cniDir, "net.d"), filepath.Join(cniDir, "ipam")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// The node's own CNI bin folder (Debian's plugins linked in), so a
	// plugin installed into it, like mesh-cni, goes with the node (cni.go).
	binDir := filepath.Join(cniDir, "bin")
	if err := linkCNIPlugins(binDir); err != nil {
		return nil, err
	}
	conf, err := cniConfig(filepath.Join(cniDir, "ipam"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cniDir, "net.d", "10-"+NetworkName+".conflist"), conf, 0o644); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(containerdConfig, filepath.Join(c.dir, "root"), filepath.Join(c.dir, "state"), c.Socket,
		c.Socket+".ttrpc", filepath.Join(c.dir, "opt"), sandboxImage, binDir, filepath.Join(cniDir, "net.d"),
		filepath.Join(c.dir, "runc"))
	cfgPath := filepath.Join(c.dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	if c.proc, err = startProc("containerd", filepath.Join(dir, "containerd.log"), nil, "containerd", "--config", cfgPath); err != nil {
		return nil, err
	}
	return c, nil
}

// ctr runs `ctr --address <socket> -n k8s.io args...`.
func (c *containerd) ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.Socket, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// waitReady waits until containerd answers on its socket.
func (c *containerd) waitReady(ctx context.Context) error {
	return Poll(ctx, "containerd to answer on "+c.Socket, func(ctx context.Context) (bool, string, error) {
		if err := c.proc.exitError(); err != nil {
			return false, "", fmt.Errorf("%v\ncontainerd log:\n%s", err, c.proc.Tail(4096))
		}
		if _, err := c.ctr(ctx, "version"); err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	}, func() string { return "containerd log:\n" + c.proc.Tail(4096) })
}

// importImages loads a `docker save`-format tarball into the CRI's
// namespace (and unpacks it for the overlayfs snapshotter).
func (c *containerd) importImages(ctx context.Context, tarball string) error {
	_, err := c.ctr(ctx, "images", "import", tarball)
	return err
}

// stop stops containerd and then any shim it left (shims outlive
// containerd by design; theirs carry our socket in their command line),
// which also ends the container processes under them.
func (c *containerd) stop() error {
	err := c.proc.Stop(15 * time.Second)
	killMatching(c.Socket, c.dir)
	return err
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
