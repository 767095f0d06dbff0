package inject

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/sidecar-injector/injector/webhook/policy"
)

// verifyStatus compares what a pod's status annotation records with the
// pod and with what rendering r (its policy, with its annotations, within
// bounds) adds now. It returns every difference, or none when the pod is
// what this injector would inject for it.
//
// Compared: the format version; the names recorded against the names r
// adds, and in which list; each added container's image, command, args,
// restart policy, security context and resources; each added volume's
// kind. Fields the API server defaults (pull policy, termination message
// path, probe thresholds) are not compared, so a pod injected offline and
// created afterwards still counts.
func verifyStatus(pod *corev1.Pod, r *Rendered) []string {
	var st Status
	if err := json.Unmarshal([]byte(pod.Annotations[policy.StatusAnnotation]), &st); err != nil {
		return []string{fmt.Sprintf("it is not a status this injector writes (not JSON: %v)", err)}
	}
	if st.Version != StatusVersion {
		return []string{fmt.Sprintf("it has format version %d, and this injector writes version %d", st.Version, StatusVersion)}
	}
	wantInit, wantContainers := []string{r.Init.Name}, []string{r.Proxy.Name}
	mode := "classic sidecars"
	if r.Native {
		wantInit, wantContainers, mode = []string{r.Init.Name, r.Proxy.Name}, nil, "native sidecars"
	}
	var wantVolumes []string
	for _, v := range r.Volumes {
		wantVolumes = append(wantVolumes, v.Name)
	}
	if !slices.Equal(st.InitContainers, wantInit) || !slices.Equal(st.Containers, wantContainers) || !slices.Equal(st.Volumes, wantVolumes) {
		return []string{fmt.Sprintf("it records the init containers %s, the containers %s and the volumes %s, where the injector adds the init containers %s, the containers %s and the volumes %s (%s)",
			names(st.InitContainers), names(st.Containers), names(st.Volumes), names(wantInit), names(wantContainers), names(wantVolumes), mode)}
	}
	var diffs []string
	inList := map[string][]corev1.Container{}
	for _, n := range wantInit {
		inList[n] = pod.Spec.InitContainers
	}
	for _, n := range wantContainers {
		inList[n] = pod.Spec.Containers
	}
	for _, want := range []*corev1.Container{&r.Init, &r.Proxy} {
		list := "spec.containers"
		if slices.Contains(wantInit, want.Name) {
			list = "spec.initContainers"
		}
		got := findContainer(inList[want.Name], want.Name)
		if got == nil {
			diffs = append(diffs, fmt.Sprintf("the container %q it records is not in %s", want.Name, list))
			continue
		}
		diffs = append(diffs, containerDiffs(got, want)...)
	}
	for _, want := range r.Volumes {
		got := findVolume(pod.Spec.Volumes, want.Name)
		switch {
		case got == nil:
			diffs = append(diffs, fmt.Sprintf("the volume %q it records is not in spec.volumes", want.Name))
		case volumeKind(got.VolumeSource) != volumeKind(want.VolumeSource):
			diffs = append(diffs, fmt.Sprintf("the volume %q is of kind %s, where the injector adds one of kind %s", want.Name, volumeKind(got.VolumeSource), volumeKind(want.VolumeSource)))
		}
	}
	return diffs
}

// containerDiffs names what differs between an added container as the
// pod has it and as the policy renders it.
func containerDiffs(got, want *corev1.Container) []string {
	var diffs []string
	differs := func(what string, g, w any) {
		diffs = append(diffs, fmt.Sprintf("the container %q has %s %s, where the policy renders %s", want.Name, what, show(g), show(w)))
	}
	if got.Image != want.Image {
		differs("image", got.Image, want.Image)
	}
	if !slices.Equal(got.Command, want.Command) {
		differs("command", got.Command, want.Command)
	}
	if !slices.Equal(got.Args, want.Args) {
		diffs = append(diffs, fmt.Sprintf("the container %q has other args than the policy renders (%s)", want.Name, firstDifference(got.Args, want.Args)))
	}
	if !reflect.DeepEqual(got.RestartPolicy, want.RestartPolicy) {
		differs("restartPolicy", got.RestartPolicy, want.RestartPolicy)
	}
	if !equality.Semantic.DeepEqual(got.SecurityContext, want.SecurityContext) {
		differs("securityContext", got.SecurityContext, want.SecurityContext)
	}
	if !equality.Semantic.DeepEqual(defaultedResources(got.Resources), defaultedResources(want.Resources)) {
		differs("resources", got.Resources, want.Resources)
	}
	return diffs
}

// defaultedResources applies the API server's defaulting: a limit without
// a request is also the request.
func defaultedResources(r corev1.ResourceRequirements) corev1.ResourceRequirements {
	out := *r.DeepCopy()
	for name, q := range out.Limits {
		if _, ok := out.Requests[name]; !ok {
			if out.Requests == nil {
				out.Requests = corev1.ResourceList{}
			}
			out.Requests[name] = q
		}
	}
	return out
}

func firstDifference(got, want []string) string {
	for i := 0; i < len(got) && i < len(want); i++ {
		if got[i] != want[i] {
			return fmt.Sprintf("argument %d is %s, not %s", i+1, show(got[i]), show(want[i]))
		}
	}
	return fmt.Sprintf("%d arguments, not %d", len(got), len(want))
}

// show renders a value for a message, cut short when long (an argument
// may be the whole compressed bootstrap).
func show(v any) string {
	b, err := json.Marshal(v)
	s := string(b)
	if err != nil {
		s = fmt.Sprint(v)
	}
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

func names(l []string) string {
	if len(l) == 0 {
		return "(none)"
	}
	q := make([]string, len(l))
	for i, n := range l {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

func findContainer(list []corev1.Container, name string) *corev1.Container {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

func findVolume(list []corev1.Volume, name string) *corev1.Volume {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// volumeKind names the kind of a volume source (emptyDir, configMap, ...).
func volumeKind(src corev1.VolumeSource) string {
	v := reflect.ValueOf(src)
	for i := 0; i < v.NumField(); i++ {
		if !v.Field(i).IsNil() {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
			return name
		}
	}
	return "sourceless"
}
