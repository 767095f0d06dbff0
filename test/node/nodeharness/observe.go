package nodeharness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
)

// ContainerSpec is the part of a container's OCI runtime spec the tests
// read: what runc was told to run it with.
type ContainerSpec struct {
	Process struct {
		User struct {
			UID uint32 `json:"uid"`
			GID uint32 `json:"gid"`
		} `json:"user"`
		Capabilities struct {
			Bounding    []string `json:"bounding"`
			Effective   []string `json:"effective"`
			Permitted   []string `json:"permitted"`
			Inheritable []string `json:"inheritable"`
			Ambient     []string `json:"ambient"`
		} `json:"capabilities"`
		NoNewPrivileges bool `json:"noNewPrivileges"`
	} `json:"process"`
}

// ContainerSpec reads the OCI spec containerd's CRI plugin generated for a
// container from the kubelet's request (`ctr containers info`), as runc
// ran it. containerID is a container status's containerID
// ("containerd://<id>"); the kubelet keeps an exited init container until
// its pod is deleted, so this works after it ran, too.
func (n *Node) ContainerSpec(ctx context.Context, containerID string) (*ContainerSpec, error) {
	id := strings.TrimPrefix(containerID, "containerd://")
	if id == "" || id == containerID {
		return nil, fmt.Errorf("container id %q is not a containerd one", containerID)
	}
	out, err := n.containerd.ctr(ctx, "containers", "info", id)
	if err != nil {
		return nil, err
	}
	var info struct {
		Spec ContainerSpec `json:"Spec"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		return nil, fmt.Errorf("ctr containers info %s: %w: %.300s", id, err, out)
	}
	return &info.Spec, nil
}

// PodWatch records every version of one pod the API server sends until
// the pod is gone, so a test sees the kubelet's last status (exit codes,
// termination times) after the object was deleted.
type PodWatch struct {
	mu       sync.Mutex
	versions []*corev1.Pod
	arrived  []time.Time
	gone     chan struct{}
	goneAt   time.Time
	err      error
}

// WatchPod starts watching a pod (by name; it may not exist yet).
func (n *Node) WatchPod(ctx context.Context, ns, name string) (*PodWatch, error) {
	w, err := n.Clientset.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		return nil, fmt.Errorf("watching pod %s/%s: %w", ns, name, err)
	}
	pw := &PodWatch{gone: make(chan struct{})}
	go func() {
		defer w.Stop()
		defer close(pw.gone)
		for ev := range w.ResultChan() {
			switch ev.Type {
			case watch.Added, watch.Modified:
				if p, ok := ev.Object.(*corev1.Pod); ok {
					pw.mu.Lock()
					pw.versions = append(pw.versions, p)
					pw.arrived = append(pw.arrived, time.Now())
					pw.mu.Unlock()
				}
			case watch.Deleted:
				pw.mu.Lock()
				pw.goneAt = time.Now()
				if p, ok := ev.Object.(*corev1.Pod); ok {
					pw.versions = append(pw.versions, p)
					pw.arrived = append(pw.arrived, pw.goneAt)
				}
				pw.mu.Unlock()
				return
			case watch.Error:
				pw.mu.Lock()
				pw.err = apierrors.FromObject(ev.Object)
				pw.mu.Unlock()
				return
			}
		}
		pw.mu.Lock()
		if pw.goneAt.IsZero() && pw.err == nil {
			pw.err = fmt.Errorf("the watch of pod %s/%s ended before the pod was deleted", ns, name)
		}
		pw.mu.Unlock()
	}()
	return pw, nil
}

// WaitGone waits (bounded by Deadline) until the pod was deleted and
// returns its last version and when the deletion was seen.
func (pw *PodWatch) WaitGone(ctx context.Context) (*corev1.Pod, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, Deadline)
	defer cancel()
	select {
	case <-pw.gone:
	case <-ctx.Done():
		return pw.Last(), time.Time{}, fmt.Errorf("timed out after %s waiting for the pod to be deleted; last seen: %s", Deadline, describe(pw.Last()))
	}
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.err != nil {
		return pw.last(), time.Time{}, pw.err
	}
	return pw.last(), pw.goneAt, nil
}

// WaitFor waits (bounded by Deadline) until a version of the pod
// satisfies cond and returns when that version arrived (the watch's
// time, not the polling's). cond's error ends the wait at once.
func (pw *PodWatch) WaitFor(ctx context.Context, what string, cond func(*corev1.Pod) (bool, error)) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, Deadline)
	defer cancel()
	checked := 0
	for {
		ended := false
		select {
		case <-pw.gone:
			ended = true // every version has arrived: one last pass
		default:
		}
		pw.mu.Lock()
		versions, arrived := pw.versions[checked:], pw.arrived[checked:]
		werr := pw.err
		pw.mu.Unlock()
		for i, p := range versions {
			ok, err := cond(p)
			if err != nil {
				return time.Time{}, fmt.Errorf("waiting for the pod to be %s: %w", what, err)
			}
			if ok {
				return arrived[i], nil
			}
		}
		checked += len(versions)
		if ended {
			if werr == nil {
				werr = fmt.Errorf("the pod was deleted")
			}
			return time.Time{}, fmt.Errorf("waiting for the pod to be %s: %w; last seen: %s", what, werr, describe(pw.Last()))
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("timed out after %s waiting for the pod to be %s; last seen: %s", Deadline, what, describe(pw.Last()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Last is the latest version seen (nil before the first).
func (pw *PodWatch) Last() *corev1.Pod {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return pw.last()
}

func (pw *PodWatch) last() *corev1.Pod {
	if len(pw.versions) == 0 {
		return nil
	}
	return pw.versions[len(pw.versions)-1]
}

// Terminated returns the last terminated state the kubelet reported for a
// container (init or app) of any version seen, or nil.
func (pw *PodWatch) Terminated(container string) *corev1.ContainerStateTerminated {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	for i := len(pw.versions) - 1; i >= 0; i-- {
		p := pw.versions[i]
		for _, group := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
			for _, cs := range group {
				if cs.Name == container && cs.State.Terminated != nil {
					return cs.State.Terminated
				}
			}
		}
	}
	return nil
}

func describe(p *corev1.Pod) string {
	if p == nil {
		return "nothing"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s, deletionTimestamp %v", p.Status.Phase, p.DeletionTimestamp)
	for _, group := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, cs := range group {
			fmt.Fprintf(&b, "; %s %s", cs.Name, stateString(cs.State))
		}
	}
	return b.String()
}

// Events lists the events about a pod, oldest first.
func (n *Node) Events(ctx context.Context, ns, name string) ([]corev1.Event, error) {
	evs, err := n.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String()})
	if err != nil {
		return nil, err
	}
	return evs.Items, nil
}

// LogStream is a container's log followed through the API server (as
// `kubectl logs -f`): it ends when the container exits.
type LogStream struct {
	done chan struct{}
	text string
	err  error
}

// FollowLogs starts following a running container's log.
func (n *Node) FollowLogs(ctx context.Context, ns, pod, container string) *LogStream {
	ls := &LogStream{done: make(chan struct{})}
	go func() {
		defer close(ls.done)
		rc, err := n.Clientset.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true}).Stream(ctx)
		if err != nil {
			ls.err = fmt.Errorf("following the log of %s/%s %s: %w", ns, pod, container, err)
			return
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		ls.text = string(b)
		if err != nil {
			ls.err = fmt.Errorf("following the log of %s/%s %s: %w", ns, pod, container, err)
		}
	}()
	return ls
}

// Wait returns the whole log once the container has exited (bounded by
// Deadline).
func (ls *LogStream) Wait(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, Deadline)
	defer cancel()
	select {
	case <-ls.done:
		return ls.text, ls.err
	case <-ctx.Done():
		return ls.text, fmt.Errorf("the log stream did not end within %s", Deadline)
	}
}

// KubeletLogAbout returns the last lines (at most n) of the kubelet's log
// that mention s (a pod's name, say): what the kubelet logged of a
// failure whose event carries no detail (FailedPreStopHook's "PreStopHook
// failed" keeps the hook's output out of the API).
func (n *Node) KubeletLogAbout(s string, lines int) string {
	if n.kubelet == nil {
		return "(no kubelet)"
	}
	return grepTail(n.kubelet.proc.LogPath, s, lines)
}
