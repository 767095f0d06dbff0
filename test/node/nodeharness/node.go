// Package nodeharness runs a real Kubernetes node for tests, on this
// machine, from the project's own files: Debian's containerd, runc and CNI
// plugins, a kubelet built from k8s.io/kubernetes, the kube-apiserver and
// etcd of test/e2e/harness, and, when built, kube-controller-manager and
// kube-scheduler. Images are built by test/node/images and loaded into
// containerd. Everything it creates on the host (a bridge, FORWARD rules,
// cgroups, mounts, processes) is removed by Stop, also after a failed
// test, a signal or a test timeout (Main), and a run that was killed is
// cleaned up by the next one. docs/node.md.
package nodeharness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/test/node/images"
	"github.com/sidecar-injector/injector/test/testkit"
)

// Deadline bounds every wait of the node tier: each bring-up step, a pod
// becoming ready, the teardown. It is stated once, here, and generous (an
// idle run needs seconds per wait; a machine under heavy load many times
// that): a test that hits it says what it was waiting for and what the
// kubelet and containerd said. Waits that can no longer succeed (a process
// exited, an image cannot be found) end at once instead.
// TEST_DEADLINE_SCALE raises it, and the one below, on a slower machine.
var Deadline = testkit.Deadline(5 * time.Minute)

// LockWait bounds waiting for another node-tier run on this machine (one
// node per machine): long enough for a whole other run, the full
// measurements included (docs/lossless.md), since waiting is the point.
const LockWait = 30 * time.Minute

// BuildDeadline bounds building the images' binaries: a cold Go build
// cache compiles the injector and its Kubernetes dependencies (about 4
// minutes on an idle 2-core machine), which is not a wait.
var BuildDeadline = testkit.Deadline(20 * time.Minute)

// NodeName is the node's name.
const NodeName = "node-tier"

// lockPath serialises nodes on one machine: one bridge, one kubelet port.
const lockPath = "/run/lock/sidecar-injector-node.lock"

// dirPrefix names the node's temporary folder; a folder with this prefix
// and no live owner is a killed run's, cleaned up by the next Start.
const dirPrefix = "sidecar-injector-node-"

// Options configure Start.
type Options struct {
	// Controllers runs kube-controller-manager and kube-scheduler when
	// they are built (ControllersBuilt); false never runs them.
	Controllers bool
	// Logf receives progress lines (nil: discarded).
	Logf func(format string, args ...any)
	// KubeletFlags are added to the kubelet's command line, after the
	// node's own (fault tests: a kubelet that cannot start).
	KubeletFlags []string
	// NoImages skips building and importing the node's images (fault
	// tests that never run a pod).
	NoImages bool
}

// Node is a running node.
type Node struct {
	// Dir holds every file of the node (configurations, logs, state).
	Dir string
	CP  *harness.ControlPlane
	// Clientset talks to the API server as an administrator.
	Clientset kubernetes.Interface
	// Images are the images loaded into containerd.
	Images *images.Set
	// Binaries are the static binaries the images were built from (the
	// injector, mesh-init, the stand-in, the test programs).
	Binaries images.Binaries
	// Controllers is true when kube-controller-manager and kube-scheduler
	// run.
	Controllers bool
	// BringUp is how long Start took.
	BringUp time.Duration
	// Timings are the bring-up steps' durations, in order.
	Timings []Timing

	containerd *containerd
	kubelet    *kubelet
	ctrls      *controllers
	injectors  []*Injector
	logf       func(string, ...any)
	lock       *os.File
	undo       []undoStep
	pids       []int
	before     Snapshot
	stopOnce   sync.Once
	stopErr    error
}

// Timing is one bring-up step.
type Timing struct {
	Step string
	Took time.Duration
}

type undoStep struct {
	what string
	fn   func() error
}

func (n *Node) push(what string, fn func() error) { n.undo = append(n.undo, undoStep{what, fn}) }

func (n *Node) step(name string, start time.Time) {
	d := time.Since(start)
	n.Timings = append(n.Timings, Timing{name, d})
	n.logf("node: %s in %s", name, d.Round(time.Millisecond))
}

// Start brings a node up. On error everything already set up is torn
// down again.
func Start(ctx context.Context, o Options) (n *Node, err error) {
	start := time.Now()
	n = &Node{logf: o.Logf}
	if n.logf == nil {
		n.logf = func(string, ...any) {}
	}
	defer func() {
		if err != nil {
			// Everything set up so far is torn down, and the host compared
			// with the snapshot, before the lock is released: a failed
			// start leaves nothing behind, or says what it left.
			serr := n.stop()
			var left []string
			if n.lock != nil {
				left = n.before.Leftovers(TakeSnapshot(), n.PIDs(), n.Markers()...)
			}
			n.unlock()
			if serr != nil {
				err = fmt.Errorf("%w\n(and tearing down: %v)", err, serr)
			}
			if len(left) > 0 {
				err = fmt.Errorf("%w\n(and the failed start left this behind:\n  %s)", err, strings.Join(left, "\n  "))
			}
			n = nil
		}
	}()
	t := time.Now()
	if err := n.takeLock(ctx); err != nil {
		return n, err
	}
	if removed := sweepLeftovers(); len(removed) > 0 {
		n.logf("node: removed leftovers of an earlier run that did not finish:\n  %s", strings.Join(removed, "\n  "))
	}
	// What the host looks like without a node: taken with the lock held,
	// so no other node-tier run is half-way through.
	n.before = TakeSnapshot()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return n, err
	}
	n.Dir = dir
	n.push("removing "+dir, func() error { return os.RemoveAll(dir) })
	_, restore := saveSysctls()
	n.push("restoring the forwarding sysctls", restore)
	n.push("removing the FORWARD rules", removeForwardRules)
	if err := setupForwardRules(); err != nil {
		return n, err
	}
	n.push("removing the bridge "+BridgeName, removeBridge)
	if err := setupBridge(); err != nil {
		return n, err
	}
	n.push("unmounting what the node mounted under "+dir, func() error { return unmountUnder(dir) })
	for _, d := range fixedHostDirs {
		if _, err := os.Lstat(d); err != nil {
			n.push("removing "+d, func() error { return removeIfOnlyDirs(d) })
		}
	}
	n.push("removing the cgroups", removeCgroups)
	if err := setupCgroups(); err != nil {
		return n, err
	}
	n.step("host network, rules and cgroups", t)

	// The images build (CPU) while the control plane starts.
	t = time.Now()
	type built struct {
		bins images.Binaries
		set  *images.Set
		tar  string
		err  error
	}
	imgs := make(chan built, 1)
	bctx, bcancel := context.WithTimeout(ctx, BuildDeadline)
	defer bcancel()
	go func() {
		var b built
		defer func() { imgs <- b }()
		if o.NoImages {
			return
		}
		binDir := filepath.Join(dir, "bin")
		if b.err = os.MkdirAll(binDir, 0o755); b.err != nil {
			return
		}
		if b.bins, b.err = images.BuildBinaries(bctx, harness.RepoRoot(), binDir); b.err != nil {
			return
		}
		if b.set, b.err = images.NewSet(b.bins); b.err != nil {
			return
		}
		b.tar = filepath.Join(dir, "images.tar")
		b.err = images.WriteTarball(b.tar, b.set.All()...)
	}()

	cpLog, err := os.Create(filepath.Join(dir, "control-plane.log"))
	if err != nil {
		return n, err
	}
	n.push("closing the control plane's log", cpLog.Close)
	// The node's Hostname address (its name) resolves nowhere: the API
	// server reaches the kubelet (logs, exec) by its InternalIP.
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{Output: cpLog,
		APIServerFlags: map[string]string{"kubelet-preferred-address-types": "InternalIP,Hostname"}})
	if err != nil {
		<-imgs
		return n, fmt.Errorf("control plane: %w", err)
	}
	n.CP, n.Clientset = cp, cp.Clientset
	n.push("stopping kube-apiserver and etcd", cp.Stop)
	n.pids = append(n.pids, childPIDs()...)
	n.step("kube-apiserver and etcd", t)

	t = time.Now()
	b := <-imgs
	if b.err != nil {
		return n, fmt.Errorf("building the images: %w", b.err)
	}
	n.Binaries, n.Images = b.bins, b.set
	if o.NoImages {
		n.step("images skipped (NoImages)", t)
	} else {
		n.step("images built (go build + go-containerregistry)", t)
	}

	t = time.Now()
	if n.containerd, err = startContainerd(dir, images.PauseRef); err != nil {
		return n, err
	}
	n.pids = append(n.pids, n.containerd.proc.PID())
	n.push("stopping containerd and its shims", n.containerd.stop)
	if err := n.containerd.waitReady(ctx); err != nil {
		return n, err
	}
	ictx, icancel := context.WithTimeout(ctx, Deadline)
	defer icancel()
	if !o.NoImages {
		if err := n.containerd.importImages(ictx, b.tar); err != nil {
			return n, err
		}
	}
	n.step("containerd up, images imported", t)

	t = time.Now()
	rootCA := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(rootCA, cp.Config.CAData, 0o644); err != nil {
		return n, err
	}
	if n.kubelet, err = startKubelet(dir, NodeName, cp.Kubeconfig, n.containerd.Socket, filepath.Join(NodeAssets(), "kubelet"), o.KubeletFlags...); err != nil {
		return n, err
	}
	n.pids = append(n.pids, n.kubelet.proc.PID())
	n.push("stopping the kubelet", n.kubelet.stop)
	if err := n.waitNodeReady(ctx); err != nil {
		return n, err
	}
	n.step("kubelet registered, node Ready", t)

	if o.Controllers && ControllersBuilt() {
		t = time.Now()
		if n.ctrls, err = startControllers(dir, cp.Kubeconfig, rootCA); err != nil {
			return n, err
		}
		n.Controllers = true
		n.pids = append(n.pids, n.ctrls.kcm.PID(), n.ctrls.scheduler.PID())
		n.push("stopping kube-controller-manager and kube-scheduler", n.ctrls.stop)
		if err := n.waitControllers(ctx); err != nil {
			return n, err
		}
		n.step("kube-controller-manager and kube-scheduler", t)
	}
	n.BringUp = time.Since(start)
	n.logf("node: up in %s (dir %s)", n.BringUp.Round(time.Millisecond), dir)
	return n, nil
}

// PIDs are the processes the node started (kube-apiserver, etcd,
// containerd, the kubelet, the controllers).
func (n *Node) PIDs() []int { return append([]int(nil), n.pids...) }

// Markers are strings in the command line of every process of the node
// (its folder, the containerd socket), for leftover checks.
func (n *Node) Markers() []string {
	m := []string{}
	if n.Dir != "" {
		m = append(m, n.Dir)
	}
	return m
}

// childPIDs are the kube-apiserver and etcd envtest just started (this
// process's children by those names; the images' go build runs meanwhile
// and is not one of them).
func childPIDs() []int {
	self := os.Getpid()
	var out []int
	for _, p := range processes() {
		if p.PPID != self {
			continue
		}
		if f := strings.Fields(p.Cmdline); len(f) > 0 {
			if b := filepath.Base(f[0]); b == "kube-apiserver" || b == "etcd" {
				out = append(out, p.PID)
			}
		}
	}
	return out
}

func (n *Node) takeLock(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, LockWait)
	defer cancel()
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	start, lastLog := time.Now(), time.Time{}
	for {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			break
		}
		if time.Since(lastLog) >= time.Minute {
			lastLog = time.Now()
			n.logf("node: waiting (%s so far, at most %s) for another node-tier run on this machine: %s holds %s",
				time.Since(start).Round(time.Second), LockWait, lockHolder(), lockPath)
		}
		sleep(ctx, time.Second)
		if ctx.Err() != nil {
			f.Close()
			return fmt.Errorf("another node-tier run (%s) still holds %s after %s: %w", lockHolder(), lockPath, time.Since(start).Round(time.Second), ctx.Err())
		}
	}
	// Say who holds it, for whoever waits.
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d: %s\n", os.Getpid(), strings.Join(os.Args, " "))), 0)
	n.lock = f
	return nil
}

// lockHolder is what the lock's holder wrote into it.
func lockHolder() string {
	b, err := os.ReadFile(lockPath)
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return "an unknown process"
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// sweepLeftovers removes what a killed run left: its processes, mounts,
// bridge, rules, cgroups and folder. Only called with the lock held, so
// nothing of ours is running.
func sweepLeftovers() []string {
	var removed []string
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range old {
		for _, k := range killMatching(d) {
			removed = append(removed, "process "+k)
		}
	}
	if len(old) > 0 {
		time.Sleep(200 * time.Millisecond)
	}
	for _, d := range old {
		if err := unmountUnder(d); err != nil {
			removed = append(removed, "unmount: "+err.Error())
		}
	}
	if linkExists(BridgeName) {
		if err := removeBridge(); err == nil {
			removed = append(removed, "bridge "+BridgeName)
		}
	}
	_ = removeForwardRules()
	for _, r := range cgroupRoots() {
		if _, err := os.Stat(r); err == nil {
			_ = removeCgroups()
			removed = append(removed, "cgroups "+cgroupName)
			break
		}
	}
	for _, d := range old {
		if os.RemoveAll(d) == nil {
			removed = append(removed, "folder "+d)
		}
	}
	return removed
}

// Stop tears the node down: pods are deleted through the API server first
// (the kubelet stops their containers and sandboxes, CNI releases their
// addresses), then every step of Start is undone in reverse: the
// controllers, the kubelet, containerd (and its shims), kube-apiserver and
// etcd by PID, cgroups, mounts, the bridge, the FORWARD rules, the
// sysctls, the folder. It goes on after an error and returns all of them.
// Safe to call more than once.
func (n *Node) Stop() error {
	err := n.stop()
	n.unlock()
	return err
}

// StopAndCheck stops the node and compares the host with the snapshot
// Start took once it held the machine-wide lock; the lock is released only
// after the comparison, so no other node-tier run is mistaken for a
// leftover.
func (n *Node) StopAndCheck() (leftovers []string, err error) {
	err = n.stop()
	leftovers = n.before.Leftovers(TakeSnapshot(), n.PIDs(), n.Markers()...)
	n.unlock()
	return leftovers, err
}

func (n *Node) unlock() {
	if n.lock != nil {
		n.lock.Close()
		n.lock = nil
	}
}

func (n *Node) stop() error {
	n.stopOnce.Do(func() {
		var errs []error
		for _, in := range n.injectors {
			in.stop()
		}
		// The controllers go first, so no ReplicaSet or Job recreates
		// the pods deleted next (their undo step is then a no-op).
		if n.ctrls != nil {
			if err := n.ctrls.stop(); err != nil {
				errs = append(errs, err)
			}
		}
		if n.Clientset != nil && n.kubelet != nil && n.kubelet.proc.Exited() == nil {
			if err := n.deleteAllPods(); err != nil {
				errs = append(errs, err)
			}
		}
		for i := len(n.undo) - 1; i >= 0; i-- {
			u := n.undo[i]
			if err := u.fn(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", u.what, err))
			}
		}
		n.stopErr = errors.Join(errs...)
	})
	return n.stopErr
}

// deleteAllPods deletes every pod through the API server (grace period 1s:
// the tests are over), waits until the kubelet has confirmed each one
// gone, and then until containerd runs no container or sandbox any more: a
// pod deleted with no grace period leaves the API at once, while the
// kubelet is still stopping its containers and tearing its sandbox down
// (CNI DEL, the shim), which must finish before the kubelet stops.
func (n *Node) deleteAllPods() error {
	if err := n.deletePodsThroughAPI(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), Deadline)
	defer cancel()
	var last string
	for {
		out, err := n.containerd.ctr(ctx, "tasks", "ls", "-q")
		if err == nil && strings.TrimSpace(out) == "" {
			return nil
		}
		last = strings.TrimSpace(out)
		if ctx.Err() != nil {
			return fmt.Errorf("containerd still runs tasks %s %s after the pods left the API (the kubelet did not stop them)\nkubelet log:\n%s",
				strings.Join(strings.Fields(last), ", "), Deadline, n.kubelet.proc.Tail(4096))
		}
		sleep(ctx, 200*time.Millisecond)
	}
}

func (n *Node) deletePodsThroughAPI() error {
	ctx, cancel := context.WithTimeout(context.Background(), Deadline)
	defer cancel()
	cs := n.Clientset
	grace := int64(1)
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing pods to delete: %w", err)
	}
	for _, p := range pods.Items {
		_ = cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	}
	var left []corev1.Pod
	for {
		l, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err == nil {
			left = l.Items
			if len(left) == 0 {
				return nil
			}
			// Controllers (with kcm) may recreate pods: delete those too.
			for _, p := range left {
				if p.DeletionTimestamp == nil {
					_ = cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
				}
			}
		}
		if ctx.Err() != nil {
			names := make([]string, 0, len(left))
			for _, p := range left {
				names = append(names, p.Namespace+"/"+p.Name)
			}
			return fmt.Errorf("pods not gone after %s (the kubelet did not confirm their end): %s\nkubelet log:\n%s",
				Deadline, strings.Join(names, ", "), n.kubelet.proc.Tail(4096))
		}
		sleep(ctx, 200*time.Millisecond)
	}
}
