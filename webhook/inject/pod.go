package inject

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/webhook/meshinit"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// addContainersAndVolumes places the rendered containers and volumes.
// Native sidecars: mesh-init, then the proxy, before the pod's own init
// containers, which therefore run inside the mesh. Classic: mesh-init
// after the pod's own init containers, so they keep the network they had
// before injection (no proxy runs yet), and the proxy first of the
// containers. The volumes go last.
func addContainersAndVolumes(pod *corev1.Pod, r *Rendered, ch *Changes) {
	container := func(list List, i int, c *corev1.Container) Insert {
		in := Insert{List: list, Index: i, Container: c}
		if c == &r.Init || c == &r.Proxy {
			// The policy's rendering, marshalled once; a container made
			// for this pod is marshalled with the response.
			in.JSON = r.json["container/"+c.Name]
		}
		return in
	}
	if r.Native {
		ch.Inserts = append(ch.Inserts, container(InitContainers, 0, &r.Init), container(InitContainers, 1, &r.Proxy))
		ch.Status.InitContainers = []string{r.Init.Name, r.Proxy.Name}
	} else {
		ch.Inserts = append(ch.Inserts, container(InitContainers, len(pod.Spec.InitContainers), &r.Init), container(Containers, 0, classicProxy(pod, r, ch)))
		ch.Status.InitContainers = []string{r.Init.Name}
		ch.Status.Containers = []string{r.Proxy.Name}
	}
	for i := range r.Volumes {
		v := &r.Volumes[i]
		ch.Inserts = append(ch.Inserts, Insert{List: Volumes, Index: len(pod.Spec.Volumes) + i, Volume: v, JSON: r.json["volume/"+v.Name]})
		ch.Status.Volumes = append(ch.Status.Volumes, v.Name)
	}
}

// classicProxy is the classic-mode proxy for this pod. Kubelet runs every
// container's preStop at once, and the app's own preStop handler runs
// after the registry offline step and the drain: the proxy must keep
// serving until that handler is done too (it may call out, and the app's
// shutdown after it as well). The policy's rendering waits offline +
// drain, the same for every pod; a pod whose app containers have their
// own preStop gets a copy whose --wait adds the longest of them (a sleep
// exactly, exec and httpGet with the allowance). The rendering and its
// cache stay per policy: only this pod's copy differs.
func classicProxy(pod *corev1.Pod, r *Rendered, ch *Changes) *corev1.Container {
	p := &r.Proxy
	own, _ := originalPreStopSeconds(pod, ch)
	if own == 0 || p.Lifecycle == nil || p.Lifecycle.PreStop == nil || p.Lifecycle.PreStop.Exec == nil {
		return p
	}
	for i, a := range p.Lifecycle.PreStop.Exec.Command {
		v, ok := strings.CutPrefix(a, "--wait=")
		if !ok {
			continue
		}
		var d meshinit.Duration
		if d.UnmarshalText([]byte(v)) != nil {
			return p
		}
		c := p.DeepCopy()
		c.Lifecycle.PreStop.Exec.Command[i] = "--wait=" + (d + meshinit.Duration(own)*meshinit.Duration(time.Second)).String()
		return c
	}
	return p
}

// raisePodLevel makes the pod's own bounds fit what is added: pod-level
// resources (PodLevelResources) gain the proxy's share, and the grace
// period must hold the offline step, the drain sleep and the app's
// shutdown. Either is only ever raised, with a warning.
func raisePodLevel(pod *corev1.Pod, r *Rendered, ch *Changes) []string {
	var warnings []string
	s := r.Settings
	// Pod-level resources bound the containers': the proxy's share is
	// added so the pod still validates, and mesh-init's requests and
	// limits must fit on their own.
	if pr := pod.Spec.Resources; pr != nil {
		grown := raisePodResources(pr, r.Proxy.Resources, r.Init.Resources)
		if !equalResources(pr, grown) {
			ch.Status.PodResources = &PodResourcesChange{From: pr.DeepCopy()}
			ch.Resources = grown
			warnings = append(warnings, fmt.Sprintf("pod-level resources raised to make room for the proxy: %s", describeResources(grown)))
		}
	}

	drain := s.Lifecycle.Drain()
	registry, behind := s.Lifecycle.Registry.Preset, ""
	if registry == meshinit.PresetSpringCloud {
		// The endpoint's propagation is that of the registry behind it,
		// which the registering container's environment shows.
		if name, _, err := registryContainer(pod, s); err == nil {
			if c, ok := usesContainer(pod, name); ok {
				if b := registryBehindSpring(c); b != "" {
					registry, behind = b, fmt.Sprintf(" (behind spring-cloud, as %q's environment shows)", name)
				}
			}
		}
	}
	if p, ok := policy.RegistryPropagation[registry]; ok && drain < p.Seconds && offlineBudget(s) > 0 {
		warnings = append(warnings, fmt.Sprintf(
			"the drain sleep (%ds) is shorter than the %s registry's propagation time%s (%ds: %s); consumers may keep sending requests after the app stops; see docs/lifecycle-hooks.md",
			drain, registry, behind, p.Seconds, p.Why))
	}
	// The app's own preStop handler runs after the drain sleep and before
	// SIGTERM, so its time counts too: a sleep handler exactly, an exec or
	// httpGet handler with an allowance.
	original, originalWarnings := originalPreStopSeconds(pod, ch)
	warnings = append(warnings, originalWarnings...)
	need := int64(offlineBudget(s).Seconds()) + int64(drain) + original + int64(s.Lifecycle.ShutdownSeconds)
	current := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		current = *pod.Spec.TerminationGracePeriodSeconds
	}
	if current < need {
		ch.Status.GracePeriod = &GraceChange{From: pod.Spec.TerminationGracePeriodSeconds, To: need}
		ch.GracePeriod = &need
		own := ""
		if original > 0 {
			own = fmt.Sprintf(", the app's own preStop handler (%ds)", original)
		}
		warnings = append(warnings, fmt.Sprintf(
			"terminationGracePeriodSeconds raised from %d to %d so the registry offline step (%ds), the drain sleep (%ds)%s and the app's shutdown (%ds) fit",
			current, need, offlineBudget(s).Seconds(), drain, own, s.Lifecycle.ShutdownSeconds))
	}
	return warnings
}

// registryBehindSpring names the registry a Spring Cloud app registers
// with, by the variables that configure it: Eureka (EUREKA_*), Nacos
// (SPRING_CLOUD_NACOS_*, NACOS_*) or Consul (SPRING_CLOUD_CONSUL_*,
// CONSUL_*); empty when none or several show.
func registryBehindSpring(c *corev1.Container) meshinit.Preset {
	found := map[meshinit.Preset]bool{}
	for _, e := range c.Env {
		for _, p := range []meshinit.Preset{meshinit.PresetEureka, meshinit.PresetNacos, meshinit.PresetConsul} {
			if hasAnyPrefix(e.Name, registryEnv[p]) {
				found[p] = true
			}
		}
	}
	if len(found) != 1 {
		return ""
	}
	for p := range found {
		return p
	}
	return ""
}

// OriginalHandlerAllowanceSeconds is what the grace period counts for an
// app's own exec or httpGet preStop handler, whose time cannot be known at
// admission (a sleep handler counts exactly).
const OriginalHandlerAllowanceSeconds = 10

// originalPreStopSeconds is the longest time an app container's own
// preStop handler, kept behind the hook, may take.
func originalPreStopSeconds(pod *corev1.Pod, ch *Changes) (int64, []string) {
	var longest int64
	var warnings []string
	for _, a := range ch.Status.Apps {
		if !a.SetPreStop || a.PreStop == nil {
			continue
		}
		var d int64
		switch h := a.PreStop; {
		case h.Sleep != nil:
			d = h.Sleep.Seconds
		case h.Exec != nil, h.HTTPGet != nil:
			d = OriginalHandlerAllowanceSeconds
			warnings = append(warnings, fmt.Sprintf(
				"container %q's own preStop handler runs after the drain sleep; its time cannot be known, so the grace period counts %ds for it: raise terminationGracePeriodSeconds if it takes longer",
				a.Name, OriginalHandlerAllowanceSeconds))
		}
		longest = max(longest, d)
	}
	return longest, warnings
}

// annotate adds kubectl's default container when the pod names none, and
// the status annotation, which records everything else in ch; so it comes
// last.
func annotate(pod *corev1.Pod, r *Rendered, ch *Changes) ([]string, error) {
	var warnings []string
	if dc, ok := pod.Annotations[policy.DefaultContainerAnnotation]; ok {
		if _, found := usesContainer(pod, dc); !found && dc != r.Init.Name && dc != r.Proxy.Name {
			warnings = append(warnings, fmt.Sprintf("%s names %q, which is not a container of this pod; kubectl logs and exec will fail until it names one",
				policy.DefaultContainerAnnotation, dc))
		}
	} else {
		ch.Annotations = append(ch.Annotations, Annotation{policy.DefaultContainerAnnotation, pod.Spec.Containers[0].Name})
		ch.Status.Annotations = []string{policy.DefaultContainerAnnotation}
	}
	more, err := annotateCapture(pod, r, ch)
	if err != nil {
		return nil, err
	}
	warnings = append(warnings, more...)
	status, err := ch.Status.Marshal()
	if err != nil {
		return nil, err
	}
	ch.Annotations = append(ch.Annotations, Annotation{policy.StatusAnnotation, status})
	slices.SortFunc(ch.Annotations, func(a, b Annotation) int { return strings.Compare(a.Key, b.Key) })

	// Every key added is new to the pod (injection never replaces one).
	size := annotationsSize(pod.Annotations)
	for _, a := range ch.Annotations {
		size += len(a.Key) + len(a.Value)
	}
	if size > maxAnnotationsSize {
		return nil, &conflictError{ReasonInvalidPod, fmt.Sprintf(
			"with the status annotation the pod's annotations would total %d bytes, over Kubernetes' limit of %d (the status records the original commands and preStop handlers of the app containers); shorten them or opt the pod out",
			size, maxAnnotationsSize)}
	}
	return warnings, nil
}

// raisePodResources returns pod-level resources with the proxy's requests
// and limits added for every resource the pod bounds, and never below what
// mesh-init asks for on its own.
func raisePodResources(pod *corev1.ResourceRequirements, proxy, initc corev1.ResourceRequirements) *corev1.ResourceRequirements {
	out := pod.DeepCopy()
	grow := func(list corev1.ResourceList, proxyList, initList corev1.ResourceList) {
		for name, q := range list {
			if p, ok := proxyList[name]; ok {
				q.Add(p)
			}
			if i, ok := initList[name]; ok && i.Cmp(q) > 0 {
				q = i.DeepCopy()
			}
			list[name] = q
		}
	}
	grow(out.Requests, proxy.Requests, initc.Requests)
	grow(out.Limits, proxy.Limits, initc.Limits)
	return out
}

func equalResources(a, b *corev1.ResourceRequirements) bool {
	eq := func(x, y corev1.ResourceList) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || v.Cmp(w) != 0 {
				return false
			}
		}
		return true
	}
	return eq(a.Requests, b.Requests) && eq(a.Limits, b.Limits)
}

func describeResources(r *corev1.ResourceRequirements) string {
	var parts []string
	for _, side := range []struct {
		name string
		list corev1.ResourceList
	}{{"requests", r.Requests}, {"limits", r.Limits}} {
		names := make([]string, 0, len(side.list))
		for n := range side.list {
			names = append(names, string(n))
		}
		sort.Strings(names)
		for _, n := range names {
			q := side.list[corev1.ResourceName(n)]
			parts = append(parts, fmt.Sprintf("%s.%s=%s", side.name, n, q.String()))
		}
	}
	return strings.Join(parts, ", ")
}

// maxAnnotationsSize is the API server's limit on a pod's annotations, keys
// and values together.
const maxAnnotationsSize = 256 * 1024

func annotationsSize(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}
