package nodeharness

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// kubeletConfig is the KubeletConfiguration for this machine (facts
// checked on it, docs/node.md):
//   - failCgroupV1: false, cgroupDriver: cgroupfs: cgroup v1, no systemd;
//   - failSwapOn: false: the VM may have swap;
//   - address on the bridge: the kubelet refuses a loopback node IP;
//   - anonymous access with AlwaysAllow, so the API server (which has no
//     kubelet client certificate here) can read logs; the port is only on
//     the node's bridge;
//   - image GC off (imageGCHighThresholdPercent 100): an image removed
//     could not be pulled back, there is no registry; eviction thresholds
//     low, so a busy disk does not evict test pods;
//   - makeIPTablesUtilChains: false: the kubelet leaves the host's
//     iptables alone (KUBE-FIREWALL, KUBE-IPTABLES-HINT);
//   - cgroupRoot of our own, removed afterwards; podLogsDir under the
//     node's folder.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://%[2]s
cgroupDriver: cgroupfs
cgroupRoot: /%[3]s
failCgroupV1: false
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
makeIPTablesUtilChains: false
podLogsDir: %[4]s
resolvConf: /etc/resolv.conf
serializeImagePulls: false
registerNode: true
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
shutdownGracePeriod: 0s
rotateCertificates: false
serverTLSBootstrap: false
`

type kubelet struct {
	proc *Proc
	dir  string
}

func startKubelet(dir, nodeName, kubeconfig, runtimeSocket, bin string, extra ...string) (*kubelet, error) {
	k := &kubelet{dir: filepath.Join(dir, "kubelet")}
	logs := filepath.Join(dir, "pod-logs")
	for _, d := range []string{k.dir, logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	cfg := fmt.Sprintf(kubeletConfig, NodeIP4, runtimeSocket, cgroupName, logs)
	cfgPath := filepath.Join(dir, "kubelet-config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	var err error
	k.proc, err = startProc("kubelet", filepath.Join(dir, "kubelet.log"), nil, bin, append([]string{
		"--config=" + cfgPath,
		"--kubeconfig=" + kubeconfig,
		"--root-dir=" + k.dir,
		"--cert-dir=" + filepath.Join(k.dir, "pki"),
		"--hostname-override=" + nodeName,
		"--node-ip=" + NodeIP4.String() + "," + NodeIP6.String(),
		"--v=2",
	}, extra...)...)
	return k, err
}

func (k *kubelet) stop() error { return k.proc.Stop(30 * time.Second) }
