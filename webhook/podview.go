package webhook

import (
	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podView is the part of a pod the injection core reads (its declared read
// set, inject.PodFields) plus the object's kind, decoded straight from the
// AdmissionReview. Probes, environment, images, resources of containers,
// managed fields and the rest are skipped by the decoder instead of being
// built into Go values: on the bench review that halves the decoding, the
// largest cost of an admission.
//
// The JSON Patch touches only fields this view holds (annotations, the
// added containers and volumes, app containers' mounts, lifecycle and
// command, the grace period, pod-level resources), so a patch computed from
// the view applies to the full object exactly as one computed from a full
// decode. TestPodViewIsTheReadSet keeps the view equal to the read set;
// TestEdgeMatchesControllerRuntime checks the answers on every fixture and
// bad input against controller-runtime's full decode, and FuzzHandlerPod on
// every fuzzed pod.
type podView struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        struct {
		Name            string                  `json:"name"`
		GenerateName    string                  `json:"generateName"`
		Namespace       string                  `json:"namespace"`
		Labels          map[string]string       `json:"labels"`
		Annotations     map[string]string       `json:"annotations"`
		OwnerReferences []metav1.OwnerReference `json:"ownerReferences"`
		// ManagedFields is often half the object: skipped as one value,
		// which costs a tenth of the decode less than the token-by-token
		// skip of an unknown field.
		ManagedFields skipValue `json:"managedFields"`
	} `json:"metadata"`
	Spec struct {
		InitContainers                []containerView              `json:"initContainers"`
		Containers                    []containerView              `json:"containers"`
		Volumes                       []volumeView                 `json:"volumes"`
		RestartPolicy                 corev1.RestartPolicy         `json:"restartPolicy"`
		TerminationGracePeriodSeconds *int64                       `json:"terminationGracePeriodSeconds"`
		HostNetwork                   bool                         `json:"hostNetwork"`
		SecurityContext               *corev1.PodSecurityContext   `json:"securityContext"`
		OS                            *corev1.PodOS                `json:"os"`
		Resources                     *corev1.ResourceRequirements `json:"resources"`
	} `json:"spec"`
}

type containerView struct {
	Name            string                         `json:"name"`
	Command         []string                       `json:"command"`
	Ports           []corev1.ContainerPort         `json:"ports"`
	VolumeMounts    []corev1.VolumeMount           `json:"volumeMounts"`
	VolumeDevices   []corev1.VolumeDevice          `json:"volumeDevices"`
	Lifecycle       *corev1.Lifecycle              `json:"lifecycle"`
	SecurityContext *corev1.SecurityContext        `json:"securityContext"`
	RestartPolicy   *corev1.ContainerRestartPolicy `json:"restartPolicy"`
	// Env tells which app container carries a registry's settings, by
	// the variables' names only: their values (often valueFrom
	// references, a third of the bench pod's allocations when decoded)
	// are skipped.
	Env []envView `json:"env"`
}

type envView struct {
	Name string `json:"name"`
}

type volumeView struct {
	Name string `json:"name"`
}

// pod builds the corev1.Pod the core works on from the view.
func (v *podView) pod() *corev1.Pod {
	p := &corev1.Pod{TypeMeta: v.TypeMeta}
	m := &v.Metadata
	p.Name, p.GenerateName, p.Namespace = m.Name, m.GenerateName, m.Namespace
	p.Labels, p.Annotations, p.OwnerReferences = m.Labels, m.Annotations, m.OwnerReferences
	s := &v.Spec
	p.Spec.InitContainers = containers(s.InitContainers)
	p.Spec.Containers = containers(s.Containers)
	if s.Volumes != nil {
		p.Spec.Volumes = make([]corev1.Volume, len(s.Volumes))
		for i, vol := range s.Volumes {
			p.Spec.Volumes[i].Name = vol.Name
		}
	}
	p.Spec.RestartPolicy = s.RestartPolicy
	p.Spec.TerminationGracePeriodSeconds = s.TerminationGracePeriodSeconds
	p.Spec.HostNetwork = s.HostNetwork
	p.Spec.SecurityContext = s.SecurityContext
	p.Spec.OS = s.OS
	p.Spec.Resources = s.Resources
	return p
}

func containers(in []containerView) []corev1.Container {
	if in == nil {
		return nil
	}
	out := make([]corev1.Container, len(in))
	for i, c := range in {
		out[i] = corev1.Container{
			Name: c.Name, Command: c.Command, Ports: c.Ports, VolumeMounts: c.VolumeMounts,
			VolumeDevices: c.VolumeDevices, Lifecycle: c.Lifecycle, SecurityContext: c.SecurityContext,
			RestartPolicy: c.RestartPolicy,
		}
		if c.Env != nil {
			env := make([]corev1.EnvVar, len(c.Env))
			for j, e := range c.Env {
				env[j].Name = e.Name
			}
			out[i].Env = env
		}
	}
	return out
}

// skipValue is a field the core does not read: its value is checked to be
// JSON and dropped.
type skipValue struct{}

func (*skipValue) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	_, err := dec.ReadValue()
	return err
}
