package inject

import (
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/webhook/policy"
)

// StatusVersion is the format version of the status annotation.
const StatusVersion = 1

// Status is the content of the status annotation: exactly what injection
// added or changed, so that a second pass is a no-op, tools can tell an
// injected pod, and uninject can restore the original.
type Status struct {
	Version int    `json:"version"`
	Policy  string `json:"policy"`
	Native  bool   `json:"native"`
	// InitContainers, Containers and Volumes were added, by name.
	InitContainers []string `json:"initContainers,omitempty"`
	Containers     []string `json:"containers,omitempty"`
	Volumes        []string `json:"volumes,omitempty"`
	// Apps records the changes to each app container.
	Apps []AppChange `json:"apps,omitempty"`
	// GracePeriod is set when terminationGracePeriodSeconds was raised.
	GracePeriod *GraceChange `json:"gracePeriod,omitempty"`
	// PodResources is set when pod-level resources were raised.
	PodResources *PodResourcesChange `json:"podResources,omitempty"`
	// Annotations were added (besides the status itself).
	Annotations []string `json:"annotations,omitempty"`
}

// AppChange is what injection changed in one app container.
type AppChange struct {
	Name string `json:"name"`
	// Mounts were added, by volume name.
	Mounts []string `json:"mounts,omitempty"`
	// SetPreStop: the preStop handler was replaced; PreStop is the original
	// (nil when there was none) and HadLifecycle whether the container had a
	// lifecycle block at all.
	SetPreStop   bool                     `json:"setPreStop,omitempty"`
	PreStop      *corev1.LifecycleHandler `json:"preStop,omitempty"`
	HadLifecycle bool                     `json:"hadLifecycle,omitempty"`
	// SetPostStart: the postStart handler was replaced (the registry undo
	// after a restart in place); PostStart is the original, nil when none.
	SetPostStart bool                     `json:"setPostStart,omitempty"`
	PostStart    *corev1.LifecycleHandler `json:"postStart,omitempty"`
	// SetCommand: the command was wrapped; Command is the original.
	SetCommand bool     `json:"setCommand,omitempty"`
	Command    []string `json:"command,omitempty"`
}

// GraceChange records a raised grace period; From is nil when the pod did
// not set one.
type GraceChange struct {
	From *int64 `json:"from"`
	To   int64  `json:"to"`
}

// PodResourcesChange records pod-level resources before injection raised
// them.
type PodResourcesChange struct {
	From *corev1.ResourceRequirements `json:"from"`
}

// Marshal renders the annotation value.
func (s *Status) Marshal() (string, error) {
	b, err := json.Marshal(s)
	return string(b), err
}

// ReadStatus parses a pod's status annotation; ok is false when absent.
func ReadStatus(pod *corev1.Pod) (st *Status, ok bool, err error) {
	v, present := pod.Annotations[policy.StatusAnnotation]
	if !present {
		return nil, false, nil
	}
	st = &Status{}
	if err := json.Unmarshal([]byte(v), st); err != nil {
		return nil, true, fmt.Errorf("%s is not valid JSON: %w", policy.StatusAnnotation, err)
	}
	if st.Version != StatusVersion {
		return nil, true, fmt.Errorf("%s has format version %d; this injector understands version %d", policy.StatusAnnotation, st.Version, StatusVersion)
	}
	return st, true, nil
}

// ErrNotInjected is returned by Uninject for a pod without status.
var ErrNotInjected = errors.New("the pod carries no " + policy.StatusAnnotation + " annotation")

// Uninject removes exactly what the status annotation says was added and
// restores what was changed. Like Inject it never modifies its input.
func Uninject(pod *corev1.Pod) (*corev1.Pod, error) {
	st, ok, err := ReadStatus(pod)
	if err != nil {
		return nil, err
	}
	if !ok {
		return pod, ErrNotInjected
	}
	out := pod.DeepCopy()
	remove := func(list []corev1.Container, names []string) []corev1.Container {
		if len(names) == 0 {
			return list
		}
		drop := map[string]bool{}
		for _, n := range names {
			drop[n] = true
		}
		var kept []corev1.Container
		for _, c := range list {
			if !drop[c.Name] {
				kept = append(kept, c)
			}
		}
		return kept
	}
	out.Spec.InitContainers = remove(out.Spec.InitContainers, st.InitContainers)
	out.Spec.Containers = remove(out.Spec.Containers, st.Containers)
	if len(st.Volumes) > 0 {
		drop := map[string]bool{}
		for _, n := range st.Volumes {
			drop[n] = true
		}
		var kept []corev1.Volume
		for _, v := range out.Spec.Volumes {
			if !drop[v.Name] {
				kept = append(kept, v)
			}
		}
		out.Spec.Volumes = kept
	}
	for _, ch := range st.Apps {
		for i := range out.Spec.Containers {
			c := &out.Spec.Containers[i]
			if c.Name != ch.Name {
				continue
			}
			if len(ch.Mounts) > 0 {
				drop := map[string]bool{}
				for _, n := range ch.Mounts {
					drop[n] = true
				}
				var kept []corev1.VolumeMount
				for _, m := range c.VolumeMounts {
					if !drop[m.Name] {
						kept = append(kept, m)
					}
				}
				c.VolumeMounts = kept
			}
			if ch.SetPreStop || ch.SetPostStart {
				if !ch.HadLifecycle {
					c.Lifecycle = nil
				} else if c.Lifecycle != nil {
					if ch.SetPreStop {
						c.Lifecycle.PreStop = ch.PreStop
					}
					if ch.SetPostStart {
						c.Lifecycle.PostStart = ch.PostStart
					}
				}
			}
			if ch.SetCommand {
				c.Command = ch.Command
			}
		}
	}
	// A container added or edited after injection may use a volume the
	// injector added: removing the volume would leave a pod the API server
	// refuses, so say so instead.
	for _, n := range st.Volumes {
		if c, ok := usesVolume(out, n); ok {
			return nil, fmt.Errorf("container %q mounts the volume %q, which injection added and uninject removes; remove that mount first", c, n)
		}
	}
	if st.GracePeriod != nil {
		out.Spec.TerminationGracePeriodSeconds = st.GracePeriod.From
	}
	if st.PodResources != nil {
		out.Spec.Resources = st.PodResources.From
	}
	for _, k := range st.Annotations {
		delete(out.Annotations, k)
	}
	delete(out.Annotations, policy.StatusAnnotation)
	if len(out.Annotations) == 0 {
		out.Annotations = nil
	}
	return out, nil
}
