package nodeharness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// Poll calls cond every interval until it returns true, an error, or
// Deadline passes; the timeout error names what was awaited, cond's last
// word and what diag adds (the kubelet's and containerd's view).
func Poll(ctx context.Context, what string, cond func(context.Context) (bool, string, error), diag func() string) error {
	ctx, cancel := context.WithTimeout(ctx, Deadline)
	defer cancel()
	start := time.Now()
	var last string
	for {
		ok, detail, err := cond(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		last = detail
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("timed out after %s waiting for %s", time.Since(start).Round(time.Millisecond), what)
			if last != "" {
				msg += "\nlast seen: " + last
			}
			if diag != nil {
				msg += "\n" + diag()
			}
			return fmt.Errorf("%s", msg)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (n *Node) processDiag() string {
	var b strings.Builder
	for _, p := range []*Proc{n.kubeletProc(), n.containerdProc()} {
		if p == nil {
			continue
		}
		if err := p.exitError(); err != nil {
			fmt.Fprintf(&b, "%v\n", err)
		}
		fmt.Fprintf(&b, "--- %s log (tail) ---\n%s\n", p.Name, p.Tail(3000))
	}
	return b.String()
}

func (n *Node) kubeletProc() *Proc {
	if n.kubelet == nil {
		return nil
	}
	return n.kubelet.proc
}

func (n *Node) containerdProc() *Proc {
	if n.containerd == nil {
		return nil
	}
	return n.containerd.proc
}

func (n *Node) waitNodeReady(ctx context.Context) error {
	return Poll(ctx, "node "+NodeName+" to register and be Ready", func(ctx context.Context) (bool, string, error) {
		if err := n.kubelet.proc.exitError(); err != nil {
			return false, "", fmt.Errorf("%v\nkubelet log (tail):\n%s", err, n.kubelet.proc.Tail(6000))
		}
		node, err := n.Clientset.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, "not registered yet", nil
		}
		if err != nil {
			return false, err.Error(), nil
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message), nil
			}
		}
		return false, "no Ready condition", nil
	}, n.processDiag)
}

func (n *Node) waitControllers(ctx context.Context) error {
	return Poll(ctx, "kube-controller-manager to create the default ServiceAccount and kube-root-ca.crt in namespace default",
		func(ctx context.Context) (bool, string, error) {
			if err := n.ctrls.exited(); err != nil {
				return false, "", fmt.Errorf("%v\nkube-controller-manager log:\n%s\nkube-scheduler log:\n%s", err, n.ctrls.kcm.Tail(4000), n.ctrls.scheduler.Tail(4000))
			}
			if _, err := n.Clientset.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
				return false, err.Error(), nil
			}
			if _, err := n.Clientset.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); err != nil {
				return false, err.Error(), nil
			}
			return true, "", nil
		}, func() string {
			return "--- kube-controller-manager log (tail) ---\n" + n.ctrls.kcm.Tail(4000)
		})
}

// DiagnosePod says what is known about a pod: phase, conditions, each
// container's state, its events, and the kubelet's log lines about it.
func (n *Node) DiagnosePod(ns, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), Deadline)
	defer cancel()
	var b strings.Builder
	p, err := n.Clientset.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		fmt.Fprintf(&b, "pod %s/%s: %v\n", ns, name, err)
	} else {
		fmt.Fprintf(&b, "pod %s/%s: phase %s, node %q, IPs %v\n", ns, name, p.Status.Phase, p.Spec.NodeName, p.Status.PodIPs)
		for _, c := range p.Status.Conditions {
			fmt.Fprintf(&b, "  condition %s=%s %s %s\n", c.Type, c.Status, c.Reason, c.Message)
		}
		for _, group := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
			for _, cs := range group {
				fmt.Fprintf(&b, "  container %s: ready=%t restarts=%d %s\n", cs.Name, cs.Ready, cs.RestartCount, stateString(cs.State))
				if cs.LastTerminationState.Terminated != nil {
					fmt.Fprintf(&b, "    last: %s\n", stateString(cs.LastTerminationState))
				}
			}
		}
	}
	evs, err := n.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String()})
	if err == nil {
		sort.Slice(evs.Items, func(i, j int) bool { return evs.Items[i].LastTimestamp.Before(&evs.Items[j].LastTimestamp) })
		for _, e := range evs.Items {
			fmt.Fprintf(&b, "  event %s %s: %s (x%d)\n", e.Type, e.Reason, e.Message, max(e.Count, 1))
		}
	}
	if n.kubelet != nil {
		fmt.Fprintf(&b, "--- kubelet log lines about %s ---\n%s", name, grepTail(n.kubelet.proc.LogPath, name, 25))
	}
	if n.containerd != nil {
		fmt.Fprintf(&b, "--- containerd log (tail) ---\n%s\n", n.containerd.proc.Tail(2000))
	}
	return b.String()
}

func stateString(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running since " + s.Running.StartedAt.UTC().Format(time.RFC3339)
	case s.Waiting != nil:
		return "waiting: " + s.Waiting.Reason + " " + s.Waiting.Message
	case s.Terminated != nil:
		return fmt.Sprintf("terminated: exit %d %s %s", s.Terminated.ExitCode, s.Terminated.Reason, strings.TrimSpace(s.Terminated.Message))
	}
	return "unknown"
}

// grepTail returns the last n lines of a file that contain s.
func grepTail(path, s string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			lines = append(lines, sc.Text())
			if len(lines) > n {
				lines = lines[1:]
			}
		}
	}
	return strings.Join(lines, "\n")
}
