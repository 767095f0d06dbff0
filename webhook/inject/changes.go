package inject

import (
	corev1 "k8s.io/api/core/v1"
)

// Changes is the one record of what injecting a pod changes, built once by
// the core. Everything else is derived from it: the injected pod (Apply),
// the webhook's JSON Patch, the status annotation (Status, which is also
// how Uninject reverses it later, from the pod alone). Its values are
// shared with the policy's rendering and the input pod: read-only.
type Changes struct {
	// Status is what the status annotation records: the names added and
	// the originals replaced.
	Status Status
	// Inserts are the added containers and volumes, by list (init
	// containers, containers, volumes, in that order) and, within a list,
	// by increasing index in the list after injection.
	Inserts []Insert
	// Apps change existing app containers, in the pod's order.
	Apps []AppEdit
	// GracePeriod is the raised terminationGracePeriodSeconds, or nil.
	GracePeriod *int64
	// Resources are the raised pod-level resources, or nil.
	Resources *corev1.ResourceRequirements
	// Annotations are the annotations added, sorted by key: kubectl's
	// default container (when the pod names none) and the status.
	Annotations []Annotation
}

// List names a list of the pod spec that injection inserts into, by its
// JSON name.
type List string

// The lists injection inserts into.
const (
	InitContainers List = "initContainers"
	Containers     List = "containers"
	Volumes        List = "volumes"
)

// Insert is one added container or volume.
type Insert struct {
	List List
	// Index is its position in the list after injection.
	Index int
	// Container is set for the container lists, Volume for volumes.
	Container *corev1.Container
	Volume    *corev1.Volume
	// JSON is the value as JSON, marshalled once when the policy loaded,
	// so an admission response carries it without encoding it again.
	JSON []byte
}

// AppEdit is what injection changes in one existing app container. The
// originals it replaces are in the matching Status.Apps entry.
type AppEdit struct {
	// Index is the container's position in spec.containers before
	// injection.
	Index int
	// Mounts are appended to the container's volumeMounts.
	Mounts []corev1.VolumeMount
	// PreStop, when set, replaces the container's preStop handler (a
	// lifecycle block is added when it had none).
	PreStop *corev1.LifecycleHandler
	// PostStart, when set, replaces the container's postStart handler.
	PostStart *corev1.LifecycleHandler
	// Command, when set, replaces the container's command.
	Command []string
}

// Annotation is one added annotation.
type Annotation struct {
	Key, Value string
}

// Apply returns pod with the changes made. pod itself is not changed:
// every slice or map that differs is new, the rest is shared.
func (c *Changes) Apply(pod *corev1.Pod) *corev1.Pod {
	out := *pod
	if len(c.Apps) > 0 {
		apps := make([]corev1.Container, len(pod.Spec.Containers))
		copy(apps, pod.Spec.Containers)
		for _, a := range c.Apps {
			apps[a.Index] = a.apply(apps[a.Index])
		}
		out.Spec.Containers = apps
	}
	for _, list := range []List{InitContainers, Containers, Volumes} {
		c.insertInto(&out.Spec, list)
	}
	if c.GracePeriod != nil {
		out.Spec.TerminationGracePeriodSeconds = c.GracePeriod
	}
	if c.Resources != nil {
		out.Spec.Resources = c.Resources
	}
	if len(c.Annotations) > 0 {
		ann := make(map[string]string, len(pod.Annotations)+len(c.Annotations))
		for k, v := range pod.Annotations {
			ann[k] = v
		}
		for _, a := range c.Annotations {
			ann[a.Key] = a.Value
		}
		out.Annotations = ann
	}
	return &out
}

func (a AppEdit) apply(c corev1.Container) corev1.Container {
	if len(a.Mounts) > 0 {
		mounts := make([]corev1.VolumeMount, len(c.VolumeMounts), len(c.VolumeMounts)+len(a.Mounts))
		copy(mounts, c.VolumeMounts)
		c.VolumeMounts = append(mounts, a.Mounts...)
	}
	if a.PreStop != nil || a.PostStart != nil {
		lc := corev1.Lifecycle{}
		if c.Lifecycle != nil {
			lc = *c.Lifecycle
		}
		if a.PreStop != nil {
			lc.PreStop = a.PreStop
		}
		if a.PostStart != nil {
			lc.PostStart = a.PostStart
		}
		c.Lifecycle = &lc
	}
	if a.Command != nil {
		c.Command = a.Command
	}
	return c
}

// insertInto puts the inserts of one list at their indices; the existing
// elements keep their order around them.
func (c *Changes) insertInto(spec *corev1.PodSpec, list List) {
	var ins []Insert
	for _, in := range c.Inserts {
		if in.List == list {
			ins = append(ins, in)
		}
	}
	if len(ins) == 0 {
		return
	}
	switch list {
	case Volumes:
		spec.Volumes = insert(spec.Volumes, ins, func(in Insert) corev1.Volume { return *in.Volume })
	case InitContainers:
		spec.InitContainers = insert(spec.InitContainers, ins, func(in Insert) corev1.Container { return *in.Container })
	case Containers:
		spec.Containers = insert(spec.Containers, ins, func(in Insert) corev1.Container { return *in.Container })
	}
}

func insert[T any](orig []T, ins []Insert, value func(Insert) T) []T {
	out := make([]T, 0, len(orig)+len(ins))
	next := 0
	for _, in := range ins {
		for len(out) < in.Index && next < len(orig) {
			out = append(out, orig[next])
			next++
		}
		out = append(out, value(in))
	}
	return append(out, orig[next:]...)
}

// changes builds the record of what injecting pod with rendering r
// changes, section by section: what would clash with what is added
// (refusals), the app containers, the pod-level additions and the status.
// Warnings come in the order people read them: per app container, then
// the pod as a whole.
func (e *Engine) changes(pod *corev1.Pod, r *Rendered, policyName string) (*Changes, []string, error) {
	if err := checkMountPaths(pod); err != nil {
		return nil, nil, err
	}
	if err := checkVolumeNames(pod, r.Volumes); err != nil {
		return nil, nil, err
	}
	portWarnings, err := checkPortNames(pod, r.Proxy, r.Settings.Checks.ProxyPortConflict)
	if err != nil {
		return nil, nil, err
	}
	ch := &Changes{Status: Status{Version: StatusVersion, Policy: policyName, Native: r.Native}}
	warnings, err := editApps(pod, r, ch)
	if err != nil {
		return nil, nil, err
	}
	warnings = append(warnings, portWarnings...)
	addContainersAndVolumes(pod, r, ch)
	warnings = append(warnings, raisePodLevel(pod, r, ch)...)
	more, err := annotate(pod, r, ch)
	if err != nil {
		return nil, nil, err
	}
	return ch, append(warnings, more...), nil
}
