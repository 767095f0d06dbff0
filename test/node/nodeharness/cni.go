package nodeharness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/cmd/mesh-cni/install"
	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/test/node/images"
)

// The cni capture mode on the node: the node's CNI folders, the chart's
// mesh-cni node agent, and a look into a pod's network namespace.

// CNIConfDir is the node's CNI configuration folder (containerd's
// conf_dir), holding the bridge conflist the harness writes.
func (n *Node) CNIConfDir() string { return filepath.Join(n.Dir, "cni", "net.d") }

// CNIBinDir is the node's CNI bin folder (containerd's bin_dir): Debian's
// plugins from CNIBinDir linked in, so a plugin installed there (mesh-cni)
// lives and dies with the node, never in the host's /usr/lib/cni.
func (n *Node) CNIBinDir() string { return filepath.Join(n.Dir, "cni", "bin") }

func linkCNIPlugins(binDir string) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(CNIBinDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if err := os.Symlink(filepath.Join(CNIBinDir, e.Name()), filepath.Join(binDir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// CNIAgent is the chart's mesh-cni DaemonSet (cni.enabled) running on the
// node.
type CNIAgent struct {
	n         *Node
	DaemonSet *appsv1.DaemonSet
	// Pod is set when the harness created the agent's pod itself (no
	// kube-controller-manager to run the DaemonSet).
	Pod *corev1.Pod
}

// CNIAgentOptions configure InstallCNIAgent.
type CNIAgentOptions struct {
	// Release and Namespace are what the chart is rendered as (defaults
	// sidecar-injector, mesh-system).
	Release, Namespace string
	// Set are more values for helm template.
	Set []string
}

// InstallCNIAgent renders the chart with cni.enabled (the node's image and
// CNI folders), creates its DaemonSet, and waits until the agent has
// installed mesh-cni into CNIBinDir and chained it into the configuration
// (mesh-cni install --check, the DaemonSet's readiness probe). Without
// kube-controller-manager it creates the DaemonSet's pod itself.
func (n *Node) InstallCNIAgent(ctx context.Context, o CNIAgentOptions) (*CNIAgent, error) {
	if o.Release == "" {
		o.Release = "sidecar-injector"
	}
	if o.Namespace == "" {
		o.Namespace = "mesh-system"
	}
	helm, err := harness.Helm()
	if err != nil {
		return nil, err
	}
	repo := strings.TrimSuffix(images.MeshCNIRef, ":"+images.Tag)
	set := append([]string{"cni.enabled=true", "cni.image.repository=" + repo, "cni.image.tag=" + images.Tag, "cni.pullPolicy=IfNotPresent",
		"cni.binDir=" + n.CNIBinDir(), "cni.confDir=" + n.CNIConfDir(), "cni.interval=1s"}, o.Set...)
	rendered, err := harness.Render(ctx, helm, o.Release, o.Namespace, nil, append(NodeValues(), set...)...)
	if err != nil {
		return nil, err
	}
	objs, err := harness.Manifests(rendered)
	if err != nil {
		return nil, err
	}
	a := &CNIAgent{n: n, DaemonSet: &appsv1.DaemonSet{}}
	if err := harness.Decode(harness.Find(objs, "DaemonSet"), a.DaemonSet); err != nil {
		return nil, err
	}
	if err := n.EnsureNamespace(ctx, o.Namespace, nil); err != nil {
		return nil, err
	}
	if n.Controllers {
		if a.DaemonSet, err = n.Clientset.AppsV1().DaemonSets(o.Namespace).Create(ctx, a.DaemonSet, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	} else {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: a.DaemonSet.Name + "-" + NodeName, Namespace: o.Namespace,
			Labels: a.DaemonSet.Spec.Template.Labels}, Spec: a.DaemonSet.Spec.Template.Spec}
		if a.Pod, err = n.CreatePod(ctx, pod); err != nil {
			return nil, err
		}
	}
	opts := install.Options{BinDir: n.CNIBinDir(), ConfDir: n.CNIConfDir()}
	err = Poll(ctx, "the mesh-cni agent to install and chain the plugin", func(ctx context.Context) (bool, string, error) {
		if err := install.Check(opts); err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	}, func() string { return a.diagnose(ctx) })
	if err != nil {
		return nil, err
	}
	return a, nil
}

func (a *CNIAgent) pods(ctx context.Context) []corev1.Pod {
	l, err := a.n.Clientset.CoreV1().Pods(a.DaemonSet.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: metav1.FormatLabelSelector(a.DaemonSet.Spec.Selector)})
	if err != nil {
		return nil
	}
	return l.Items
}

func (a *CNIAgent) diagnose(ctx context.Context) string {
	var b strings.Builder
	for _, p := range a.pods(ctx) {
		b.WriteString(a.n.DiagnosePod(p.Namespace, p.Name))
		if out, err := a.n.Logs(ctx, p.Namespace, p.Name, "install-cni"); err == nil {
			b.WriteString("\nagent log:\n" + out)
		}
	}
	return b.String()
}

// Logs returns the agent's log.
func (a *CNIAgent) Logs(ctx context.Context) string {
	var b strings.Builder
	for _, p := range a.pods(ctx) {
		out, _ := a.n.Logs(ctx, p.Namespace, p.Name, "install-cni")
		b.WriteString(out)
	}
	return b.String()
}

// Uninstall deletes the DaemonSet and its pod and waits until the agent
// has removed the plugin (SIGTERM: the entry, then the binary).
func (a *CNIAgent) Uninstall(ctx context.Context) error {
	ns := a.DaemonSet.Namespace
	if a.Pod == nil {
		err := a.n.Clientset.AppsV1().DaemonSets(ns).Delete(ctx, a.DaemonSet.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	for _, p := range a.pods(ctx) {
		if err := a.n.DeletePod(ctx, p.Namespace, p.Name, nil); err != nil {
			return err
		}
	}
	return Poll(ctx, "the mesh-cni agent to remove the plugin", func(ctx context.Context) (bool, string, error) {
		if _, err := os.Stat(filepath.Join(a.n.CNIBinDir(), "mesh-cni")); err == nil {
			return false, "the binary is still there", nil
		}
		return true, "", nil
	}, nil)
}

// PodNetNS returns a path to the network namespace of a running pod:
// /proc/<pid>/ns/net of one of its processes, found by the kubelet's
// cgroup for the pod (cgroupfs driver: .../pod<uid>/...).
func (n *Node) PodNetNS(pod *corev1.Pod) (string, error) {
	want := "pod" + string(pod.UID)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "cgroup"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		found := false
		for sc.Scan() {
			if strings.Contains(sc.Text(), "/"+cgroupName+"/") && strings.Contains(sc.Text(), want) {
				found = true
				break
			}
		}
		f.Close()
		if found {
			return fmt.Sprintf("/proc/%d/ns/net", pid), nil
		}
	}
	return "", fmt.Errorf("no process of pod %s/%s (cgroup %s) on the node", pod.Namespace, pod.Name, want)
}

// InNetNS runs a program in the network namespace at path (nsenter) and
// returns its standard output.
func InNetNS(ctx context.Context, path, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + path, "--", name}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("nsenter --net=%s %s %s: %v: %s", path, name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}
