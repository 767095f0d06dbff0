package nodeharness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/test/node/standin"
)

// EnsureNamespace creates (or relabels) a namespace with what pods need
// in it: the default ServiceAccount and the kube-root-ca.crt ConfigMap
// (the service account token volume projects it). With
// kube-controller-manager running its controllers create both, and this
// waits for them; without it the harness does their part.
func (n *Node) EnsureNamespace(ctx context.Context, name string, labels map[string]string) error {
	cs := n.Clientset
	if n.Controllers {
		ns, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
		case err == nil:
			if ns.Labels == nil {
				ns.Labels = map[string]string{}
			}
			for k, v := range labels {
				ns.Labels[k] = v
			}
			_, err = cs.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("namespace %s: %w", name, err)
		}
		return Poll(ctx, "kube-controller-manager to create the default ServiceAccount and kube-root-ca.crt in "+name,
			func(ctx context.Context) (bool, string, error) {
				if _, err := cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{}); err != nil {
					return false, err.Error(), nil
				}
				if _, err := cs.CoreV1().ConfigMaps(name).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); err != nil {
					return false, err.Error(), nil
				}
				return true, "", nil
			}, nil)
	}
	if err := harness.EnsureNamespace(ctx, cs, name, labels); err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"},
		Data: map[string]string{"ca.crt": string(n.CP.Config.CAData)}}
	if _, err := cs.CoreV1().ConfigMaps(name).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kube-root-ca.crt in %s: %w", name, err)
	}
	return nil
}

// CreatePod creates a pod through the API server and returns what it
// stored (injected or not). Without a scheduler the pod is bound to the
// node directly (nodeName), which is the scheduler's only part here.
func (n *Node) CreatePod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	pod = pod.DeepCopy()
	if !n.Controllers && pod.Spec.NodeName == "" {
		pod.Spec.NodeName = NodeName
	}
	got, err := n.Clientset.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return got, nil
}

// WaitPod waits until cond holds for the pod. A pod that can no longer
// get there (cond says so with a non-nil error) ends the wait at once.
func (n *Node) WaitPod(ctx context.Context, ns, name, what string, cond func(*corev1.Pod) (bool, error)) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := Poll(ctx, fmt.Sprintf("pod %s/%s %s", ns, name, what), func(ctx context.Context) (bool, string, error) {
		p, err := n.Clientset.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		pod = p
		ok, err := cond(p)
		if err != nil {
			return false, "", fmt.Errorf("%w\n%s", err, n.DiagnosePod(ns, name))
		}
		return ok, fmt.Sprintf("phase %s", p.Status.Phase), nil
	}, func() string { return n.DiagnosePod(ns, name) })
	return pod, err
}

// Ready is a WaitPod condition: the pod's Ready condition is True. A pod
// that ended, or a container that keeps failing, is an error.
func Ready(p *corev1.Pod) (bool, error) {
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return false, fmt.Errorf("the pod ended (%s) instead of becoming Ready", p.Status.Phase)
	}
	for _, group := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, cs := range group {
			if w := cs.State.Waiting; w != nil {
				switch w.Reason {
				case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
					return false, fmt.Errorf("container %s cannot start: %s: %s", cs.Name, w.Reason, w.Message)
				case "CrashLoopBackOff":
					if cs.RestartCount >= 3 {
						return false, fmt.Errorf("container %s keeps failing (%d restarts): %s", cs.Name, cs.RestartCount, w.Message)
					}
				}
			}
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue, nil
		}
	}
	return false, nil
}

// RunPod creates a pod and waits until it is Ready; it returns the pod
// and the time from the create call to the kubelet reporting it Ready
// (the Ready condition's transition time, second resolution on the API,
// so it is measured by polling here).
func (n *Node) RunPod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, time.Duration, error) {
	start := time.Now()
	created, err := n.CreatePod(ctx, pod)
	if err != nil {
		return nil, 0, err
	}
	ready, err := n.WaitPod(ctx, created.Namespace, created.Name, "to become Ready", Ready)
	return ready, time.Since(start), err
}

// DeletePod deletes a pod (grace nil: the pod's own) and waits until the
// kubelet has confirmed its end.
func (n *Node) DeletePod(ctx context.Context, ns, name string, grace *int64) error {
	err := n.Clientset.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: grace})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return Poll(ctx, fmt.Sprintf("pod %s/%s to be deleted", ns, name), func(ctx context.Context) (bool, string, error) {
		_, err := n.Clientset.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		return false, "still there", nil
	}, func() string { return n.DiagnosePod(ns, name) })
}

// Logs reads a container's log through the API server (which asks the
// kubelet), as kubectl logs does.
func (n *Node) Logs(ctx context.Context, ns, pod, container string) (string, error) {
	rc, err := n.Clientset.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).Stream(ctx)
	if err != nil {
		return "", fmt.Errorf("logs of %s/%s %s: %w", ns, pod, container, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// LogFiles reads a container's log files straight from the kubelet's pod
// log folder (every restart; CRI format: time stream tag message), for
// containers whose pod is already gone from the API.
func (n *Node) LogFiles(ns, pod, container string) (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(n.Dir, "pod-logs", ns+"_"+pod+"_*", container))
	if len(dirs) == 0 {
		return "", fmt.Errorf("no log folder for %s/%s %s", ns, pod, container)
	}
	files, _ := filepath.Glob(filepath.Join(dirs[len(dirs)-1], "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		b.Write(data)
	}
	return b.String(), nil
}

// PodIP returns the pod's address of one family.
func PodIP(p *corev1.Pod, v6 bool) (netip.Addr, error) {
	for _, ip := range p.Status.PodIPs {
		a, err := netip.ParseAddr(ip.IP)
		if err == nil && a.Is6() == v6 {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("pod %s/%s has no IPv%d address (podIPs %v)", p.Namespace, p.Name, map[bool]int{false: 4, true: 6}[v6], p.Status.PodIPs)
}

// PodURL is http://<pod address of one family>:<port><path>, reachable
// from the host over the node's bridge.
func PodURL(p *corev1.Pod, v6 bool, port uint16, path string) (string, error) {
	ip, err := PodIP(p, v6)
	if err != nil {
		return "", err
	}
	return "http://" + netip.AddrPortFrom(ip, port).String() + path, nil
}

// GetJSON fetches u from the host and decodes its JSON answer into into,
// retrying (within Deadline) while the pod cannot be reached or answers
// other than 200: an IPv6 neighbour may still be resolving just after the
// pod became Ready.
func GetJSON(ctx context.Context, u string, into any) error {
	c := &http.Client{Timeout: 10 * time.Second}
	return Poll(ctx, "GET "+u, func(ctx context.Context) (bool, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return false, "", err
		}
		resp, err := c.Do(req)
		if err != nil {
			return false, err.Error(), nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Sprintf("HTTP %d %s", resp.StatusCode, b), nil
		}
		if err := json.Unmarshal(b, into); err != nil {
			return false, "", fmt.Errorf("%w: %s", err, b)
		}
		return true, "", nil
	}, nil)
}

// WaitProxyLog reads the Envoy STAND-IN's log until cond holds for it
// (bounded by Deadline): a line the stand-in has just written reaches the
// kubelet's log file (and so the API) a moment later, longer on a busy
// machine. It returns the last log read.
func (n *Node) WaitProxyLog(ctx context.Context, ns, pod, what string, cond func([]standin.LogLine) bool) ([]standin.LogLine, error) {
	var lines []standin.LogLine
	err := Poll(ctx, fmt.Sprintf("the Envoy STAND-IN's log of %s/%s to show %s", ns, pod, what), func(ctx context.Context) (bool, string, error) {
		l, err := n.ProxyLog(ctx, ns, pod)
		if err != nil {
			return false, err.Error(), nil
		}
		lines = l
		return cond(l), fmt.Sprintf("%d lines: %+v", len(l), l), nil
	}, nil)
	return lines, err
}

// ProxyLog reads the Envoy STAND-IN's log of an injected pod (container
// mesh-proxy) through the API server.
func (n *Node) ProxyLog(ctx context.Context, ns, pod string) ([]standin.LogLine, error) {
	out, err := n.Logs(ctx, ns, pod, "mesh-proxy")
	if err != nil {
		return nil, err
	}
	return standin.ParseLog(out), nil
}
