package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sidecar-injector/injector/webhook/meshinit"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// Namespace is what the core knows about the pod's namespace.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// systemNamespaces are never injected: the control plane must not depend on
// the mesh to start.
var systemNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true}

// otherMeshContainers are sidecars of other meshes; two proxies in one pod
// would capture each other's traffic.
var otherMeshContainers = map[string]string{"istio-proxy": "Istio", "linkerd-proxy": "Linkerd", "istio-init": "Istio", "linkerd-init": "Linkerd"}

// otherMeshAnnotations mark pods another mesh has injected.
var otherMeshAnnotations = map[string]string{"sidecar.istio.io/status": "Istio", "linkerd.io/proxy-version": "Linkerd"}

// Inject decides whether and how to inject pod, which lives in namespace ns.
// It never modifies pod: the returned pod is a new value that shares the
// parts injection did not touch with the input, so callers must treat both
// as read-only. For a skip or a refusal the returned pod is the input.
func (e *Engine) Inject(pod *corev1.Pod, ns Namespace) (*corev1.Pod, Decision) {
	out, d, _ := e.inject(pod, ns)
	return out, d
}

// InjectRendered is Inject that also returns, for an injected pod, the
// rendering the added containers and volumes were copied from (unchanged),
// so callers can reuse its pre-marshalled JSON.
func (e *Engine) InjectRendered(pod *corev1.Pod, ns Namespace) (*corev1.Pod, Decision, *Rendered) {
	out, d, ev := e.inject(pod, ns)
	if d.Result != Injected || ev == nil {
		return out, d, nil
	}
	return out, d, ev.rendered
}

// evaluation carries what explain shows besides the decision.
type evaluation struct {
	selection policy.Selection
	settings  policy.Settings
	applied   []policy.Applied
	rendered  *Rendered
}

func (e *Engine) inject(pod *corev1.Pod, ns Namespace) (*corev1.Pod, Decision, *evaluation) {
	if pod == nil {
		return pod, decide(Refused, ReasonInvalidPod, "the request carries no pod"), nil
	}
	if ns.Name == "" {
		ns.Name = pod.Namespace
	}
	if d, done := e.preflight(pod, ns); done {
		if d.Reason == ReasonOtherMesh && ns.Labels[policy.NamespaceLabel] == "enabled" {
			// Another mesh's marker keeps our proxy out, which is an
			// opt-out as far as the policy is concerned.
			if p := e.config.Select(ns.Name, ns.Labels).Policy; !p.Bounds.AllowOptOut {
				return pod, withPolicy(decide(Refused, ReasonOptOutNotAllowed, fmt.Sprintf(
					"%s; policy %q does not let pods in namespace %q go without this mesh's proxy (podOverrides.allowOptOut is false)",
					d.Message, p.Name, ns.Name)), p), nil
			}
		}
		return pod, d, nil
	}
	sel := e.config.Select(ns.Name, ns.Labels)
	ev := &evaluation{selection: sel}
	pol := sel.Policy

	// Opt-in and opt-out. A namespace labelled disabled wins over
	// everything; a pod's opt-out only matters where it would otherwise be
	// injected, so only there can a policy refuse it.
	podChoice, key, choiceWarnings, err := podInjectChoice(pod)
	if err != nil {
		return pod, withPolicy(decide(Refused, ReasonInvalidAnnotation, err.Error()), pol), ev
	}
	nsValue := ns.Labels[policy.NamespaceLabel]
	var reason Reason
	switch {
	case nsValue == "disabled":
		return pod, withPolicy(decide(Skipped, ReasonNamespaceDisabled, fmt.Sprintf(
			"namespace %q is labelled %s=disabled, which pods cannot override", ns.Name, policy.NamespaceLabel)), pol), ev
	case podChoice == "false" && nsValue != "enabled":
		return pod, withPolicy(decide(Skipped, ReasonPodOptedOut, fmt.Sprintf("the pod opts out with %s", key)), pol), ev
	case podChoice == "false":
		if !pol.Bounds.AllowOptOut {
			return pod, withPolicy(decide(Refused, ReasonOptOutNotAllowed, fmt.Sprintf(
				"%s opts out, which policy %q does not allow in namespace %q (podOverrides.allowOptOut is false); remove the key or ask the platform team",
				key, pol.Name, ns.Name)), pol), ev
		}
		return pod, withPolicy(decide(Skipped, ReasonPodOptedOut, fmt.Sprintf("the pod opts out with %s", key)), pol), ev
	case nsValue == "enabled":
		reason = ReasonNamespaceEnabled
	case podChoice == "true":
		reason = ReasonPodOptedIn
	default:
		return pod, withPolicy(decide(Skipped, ReasonNamespaceNotEnabled, fmt.Sprintf(
			"namespace %q is not labelled %s=enabled and the pod does not opt in", ns.Name, policy.NamespaceLabel)), pol), ev
	}

	// Effective settings: the policy, then the pod's annotations within the
	// policy's bounds.
	s := pol.Settings
	applied, warnings, err := policy.ApplyAnnotations(&s, pod.Annotations)
	warnings = append(choiceWarnings, warnings...)
	ev.settings, ev.applied = s, applied
	if err != nil {
		return pod, withPolicy(decide(Refused, ReasonInvalidAnnotation, err.Error()), pol), ev
	}
	for _, a := range applied {
		o, _ := policy.LookupOverride(a.Key)
		if !pol.Bounds.Allows(o) {
			return pod, withPolicy(decide(Refused, ReasonOverrideNotAllowed, fmt.Sprintf(
				"%s is not allowed by policy %q (podOverrides.allowedAnnotations: %s)",
				a.Key, pol.Name, strings.Join(pol.Bounds.AllowedAnnotations, ", "))), pol), ev
		}
	}
	if len(applied) > 0 {
		if berr := pol.Bounds.Check(&s); berr != nil {
			return pod, withPolicy(decide(Refused, ReasonOverrideOutOfBounds, fmt.Sprintf("%s: %s (policy %q)",
				annotationFor(applied, berr.Field), berr.Problem, pol.Name)), pol), ev
		}
		if verr := s.Validate(); verr != nil {
			return pod, withPolicy(decide(Refused, ReasonInvalidAnnotation, fmt.Sprintf(
				"the pod's annotations make the settings invalid: %s", strings.ReplaceAll(verr.Error(), "\n", "; "))), pol), ev
		}
	}

	cp := e.policies[pol.Name]
	r, err := cp.rendering(e, overrideKey(applied), s)
	if err != nil {
		return pod, withPolicy(decide(Refused, ReasonPolicyRenderingError, fmt.Sprintf(
			"the pod's annotations do not render with policy %q: %v", pol.Name, err)), pol), ev
	}

	ev.rendered = r

	// Pods that would break the mesh.
	conflicts, refusal := checkConflicts(pod, s, r.Native)
	if refusal != nil {
		return pod, withPolicy(*refusal, pol), ev
	}
	warnings = append(warnings, conflicts...)

	out, more, err := e.mutate(pod, r, pol.Name)
	if err != nil {
		var ce *conflictError
		reason := ReasonMountPathConflict
		if errors.As(err, &ce) {
			reason = ce.reason
		}
		return pod, withPolicy(decide(Refused, reason, err.Error()), pol), ev
	}
	warnings = append(warnings, more...)
	msg := fmt.Sprintf("namespace %q is labelled %s=enabled", ns.Name, policy.NamespaceLabel)
	if reason == ReasonPodOptedIn {
		msg = fmt.Sprintf("the pod opts in with %s", key)
	}
	d := withPolicy(decide(Injected, reason, msg+"; injected with policy "+fmt.Sprintf("%q", pol.Name)), pol)
	d.Warnings = warnings
	return out, d, ev
}

func withPolicy(d Decision, p *policy.Policy) Decision {
	if p != nil {
		d.Policy = p.Name
	}
	return d
}

// annotationFor names the annotation that set a field, for bound messages.
func annotationFor(applied []policy.Applied, field string) string {
	for _, a := range applied {
		if a.Field == field || strings.HasPrefix(field, a.Field+".") {
			return a.Key
		}
	}
	if len(applied) > 0 {
		return applied[0].Key
	}
	return field
}

// overrideKey identifies a pod's overrides for the rendering cache. Fields
// and values are length-prefixed, so no annotation value, whatever bytes it
// holds, can make two different sets of overrides share a key.
func overrideKey(applied []policy.Applied) string {
	if len(applied) == 0 {
		return ""
	}
	var b strings.Builder
	for _, a := range applied {
		fmt.Fprintf(&b, "%d:%s%d:%s", len(a.Field), a.Field, len(a.Value), a.Value)
	}
	return b.String()
}

// preflight handles the skips that need no policy.
func (e *Engine) preflight(pod *corev1.Pod, ns Namespace) (Decision, bool) {
	switch {
	case systemNamespaces[ns.Name]:
		return decide(Skipped, ReasonSystemNamespace, fmt.Sprintf("namespace %q is a Kubernetes system namespace and is never injected", ns.Name)), true
	case e.opts.InjectorNamespace != "" && ns.Name == e.opts.InjectorNamespace:
		return decide(Skipped, ReasonInjectorNamespace, fmt.Sprintf("namespace %q runs the injector itself and is never injected", ns.Name)), true
	}
	if _, ok := pod.Annotations[policy.StatusAnnotation]; ok {
		// Only a status that describes this pod means "injected": a
		// copied or hand-written annotation must not become a way around
		// injection.
		if problem := statusProblem(pod); problem != "" {
			return decide(Refused, ReasonInvalidPod, fmt.Sprintf("the pod carries %s, but %s; remove the annotation (uninject restores an injected pod's spec)",
				policy.StatusAnnotation, problem)), true
		}
		return decide(Skipped, ReasonAlreadyInjected, "the pod already carries "+policy.StatusAnnotation), true
	}
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == DefaultNames.Proxy || c.Name == DefaultNames.Init {
				return decide(Refused, ReasonContainerNameConflict, fmt.Sprintf(
					"the pod has a container named %q, the name of the injector's own, but no %s annotation; rename that container",
					c.Name, policy.StatusAnnotation)), true
			}
			if mesh, ok := otherMeshContainers[c.Name]; ok {
				return decide(Skipped, ReasonOtherMesh, fmt.Sprintf("the pod already has %s's %q container; two proxies would capture each other's traffic", mesh, c.Name)), true
			}
		}
	}
	for k, mesh := range otherMeshAnnotations {
		if _, ok := pod.Annotations[k]; ok {
			return decide(Skipped, ReasonOtherMesh, fmt.Sprintf("the pod is already injected by %s (%s)", mesh, k)), true
		}
	}
	if pod.Spec.HostNetwork {
		return decide(Skipped, ReasonHostNetwork, "the pod uses the host's network; capture rules would redirect the node's traffic"), true
	}
	if pod.Spec.OS != nil && pod.Spec.OS.Name == corev1.Windows {
		return decide(Skipped, ReasonWindowsPod, "the pod runs on Windows; the proxy and its iptables capture are Linux only"), true
	}
	if len(pod.Spec.Containers) == 0 {
		return decide(Skipped, ReasonNoContainers, "the pod has no containers"), true
	}
	// Injection keys everything it records by container name; a pod the
	// API server would reject anyway is refused here with a clear reason.
	seen := map[string]bool{}
	for _, list := range []struct {
		field string
		cs    []corev1.Container
	}{{"spec.initContainers", pod.Spec.InitContainers}, {"spec.containers", pod.Spec.Containers}} {
		for i, c := range list.cs {
			switch {
			case c.Name == "":
				return decide(Refused, ReasonInvalidPod, fmt.Sprintf("%s[%d] has no name; every container needs a unique name", list.field, i)), true
			case seen[c.Name]:
				return decide(Refused, ReasonInvalidPod, fmt.Sprintf("%s[%d]: the container name %q is used twice", list.field, i, c.Name)), true
			}
			seen[c.Name] = true
		}
	}
	return Decision{}, false
}

// podInjectChoice reads the pod's opt-in/opt-out: our label, our
// annotation, then Istio's label and annotation. It returns "true", "false"
// or "" (no choice), the key and value that decided (for messages), and a
// warning for every other key that says something else. Our keys take
// exactly "true" or "false"; Istio's are read as Istio reads them (y, yes,
// true or on, any case, inject; anything else does not).
func podInjectChoice(pod *corev1.Pod) (choice, decidedBy string, warnings []string, err error) {
	type src struct {
		m     map[string]string
		key   string
		kind  string
		istio bool
	}
	for _, s := range []src{
		{pod.Labels, policy.InjectKey, "label", false},
		{pod.Annotations, policy.InjectKey, "annotation", false},
		{pod.Labels, policy.IstioInjectKey, "label", true},
		{pod.Annotations, policy.IstioInjectKey, "annotation", true},
	} {
		v, ok := s.m[s.key]
		if !ok {
			continue
		}
		var c string
		switch t := strings.TrimSpace(v); {
		case s.istio:
			c = "false"
			switch strings.ToLower(t) {
			case "y", "yes", "true", "on":
				c = "true"
			}
		case t == "true" || t == "false":
			c = t
		default:
			return "", s.key, nil, &policy.AnnotationError{Key: s.key, Value: v, Problem: "the " + s.kind + " must be \"true\" or \"false\""}
		}
		if choice == "" {
			choice, decidedBy = c, fmt.Sprintf("%s %s %q", s.kind, s.key, v)
		} else if c != choice {
			warnings = append(warnings, fmt.Sprintf("%s %s %q is ignored because the %s decides", s.kind, s.key, v, decidedBy))
		}
	}
	return choice, decidedBy, warnings, nil
}

// checkConflicts finds app containers that would break the mesh. It returns
// warnings, or a refusal when the settings say refuse.
//
// The containers checked are those that run while capture is in place:
// every app container, and the pod's init containers that run after the
// proxy (all of them with native sidecars; in classic mode, only its own
// native sidecars, which keep running beside the proxy).
func checkConflicts(pod *corev1.Pod, s policy.Settings, native bool) ([]string, *Decision) {
	var warnings []string
	proxyPorts := s.Proxy.Ports.All()
	var podUID, podGID *int64
	if psc := pod.Spec.SecurityContext; psc != nil {
		podUID, podGID = psc.RunAsUser, psc.RunAsGroup
	}
	checked := make([]corev1.Container, 0, len(pod.Spec.Containers)+len(pod.Spec.InitContainers))
	for _, c := range pod.Spec.InitContainers {
		restartable := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		if native || restartable {
			checked = append(checked, c)
		}
	}
	checked = append(checked, pod.Spec.Containers...)
	for _, c := range checked {
		uid, gid := podUID, podGID
		if c.SecurityContext != nil {
			if c.SecurityContext.RunAsUser != nil {
				uid = c.SecurityContext.RunAsUser
			}
			if c.SecurityContext.RunAsGroup != nil {
				gid = c.SecurityContext.RunAsGroup
			}
		}
		if (uid != nil && *uid == s.Proxy.UID) || (gid != nil && *gid == s.Proxy.GID) {
			what := fmt.Sprintf("UID %d", s.Proxy.UID)
			if uid == nil || *uid != s.Proxy.UID {
				what = fmt.Sprintf("GID %d", s.Proxy.GID)
			}
			msg := fmt.Sprintf("container %q runs as %s, the proxy's own identity, so its traffic would silently bypass the proxy; run it as another user and group (securityContext.runAsUser/runAsGroup)", c.Name, what)
			if s.Checks.ProxyUIDConflict == policy.Refuse {
				d := decide(Refused, ReasonProxyUIDConflict, msg)
				return nil, &d
			}
			warnings = append(warnings, msg)
		}
		for _, p := range c.Ports {
			for _, pp := range proxyPorts {
				if p.ContainerPort == pp && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
					msg := fmt.Sprintf("container %q declares port %d, which the proxy needs (ports %s are reserved), so the proxy could not start; move the app to another port or opt the pod out with %s: \"false\"",
						c.Name, p.ContainerPort, joinPorts(proxyPorts), policy.InjectKey)
					if s.Checks.ProxyPortConflict == policy.Refuse {
						d := decide(Refused, ReasonProxyPortConflict, msg)
						return nil, &d
					}
					warnings = append(warnings, msg)
				}
			}
		}
	}
	return warnings, nil
}

func joinPorts(ports []int32) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ", ")
}

// mutate builds the injected pod from a rendering. pod itself is not
// changed: every slice or map that differs is new.
func (e *Engine) mutate(pod *corev1.Pod, r *Rendered, policyName string) (*corev1.Pod, []string, error) {
	var warnings []string
	s := r.Settings
	out := *pod
	out.Spec = pod.Spec
	st := Status{Version: StatusVersion, Policy: policyName, Native: r.Native}

	// App containers: the tools volume and the preStop hook.
	toolsDir := DefaultPaths.ToolsDir
	needPreStop := s.Lifecycle.DrainSeconds > 0 || offlineBudget(s) > 0
	isJob := isRunToCompletion(pod)
	apps := make([]corev1.Container, len(pod.Spec.Containers))
	for i := range pod.Spec.Containers {
		c := pod.Spec.Containers[i] // shallow copy: replace, never append in place
		for _, m := range c.VolumeMounts {
			if path.Clean(m.MountPath) == toolsDir {
				return nil, nil, &conflictError{ReasonMountPathConflict, fmt.Sprintf(
					"container %q already mounts %s at %s, where the injector mounts its hook tool; move that mount", c.Name, m.Name, m.MountPath)}
			}
		}
		for _, d := range c.VolumeDevices {
			if path.Clean(d.DevicePath) == toolsDir {
				return nil, nil, &conflictError{ReasonMountPathConflict, fmt.Sprintf(
					"container %q has a device at %s, where the injector mounts its hook tool; move that device", c.Name, d.DevicePath)}
			}
		}
		change := AppChange{Name: c.Name}
		mounts := make([]corev1.VolumeMount, len(c.VolumeMounts), len(c.VolumeMounts)+1)
		copy(mounts, c.VolumeMounts)
		c.VolumeMounts = append(mounts, corev1.VolumeMount{Name: DefaultNames.ToolsVolume, MountPath: toolsDir, ReadOnly: true})
		change.Mounts = []string{DefaultNames.ToolsVolume}

		if needPreStop {
			handler, warn := appPreStop(&c, r.AppPreStop)
			if warn != "" {
				warnings = append(warnings, warn)
			}
			if handler != nil {
				lc := corev1.Lifecycle{}
				if c.Lifecycle != nil {
					lc = *c.Lifecycle
					change.HadLifecycle = true
					change.PreStop = c.Lifecycle.PreStop
				}
				change.SetPreStop = true
				lc.PreStop = handler
				c.Lifecycle = &lc
			}
		}
		if isJob && !r.Native {
			switch {
			case len(pod.Spec.Containers) > 1:
				if i == 0 {
					warnings = append(warnings, fmt.Sprintf(
						"this run-to-completion pod has %d containers; with a classic sidecar none of them can tell the proxy that the last one has finished, so the proxy keeps the pod running; use native sidecars (%snative-sidecar: \"true\", Kubernetes 1.29+)",
						len(pod.Spec.Containers), policy.Prefix))
				}
			case len(c.Command) > 0:
				change.Command = c.Command
				change.SetCommand = true
				c.Command = toolCommand(DefaultPaths.Tool, "run", meshinit.Run{
					ReadyURL:     readyURLIf(s),
					ReadyTimeout: s.Lifecycle.ProxyReadyTimeout,
					QuitURL:      fmt.Sprintf("http://127.0.0.1:%d/quitquitquit", s.Proxy.Ports.Admin),
					// With OnFailure the kubelet reruns a failed command,
					// which needs the proxy: quit only once it succeeded.
					QuitOnFailure: pod.Spec.RestartPolicy == corev1.RestartPolicyNever,
					Command:       c.Command,
				}.Args())
			default:
				warnings = append(warnings, fmt.Sprintf(
					"container %q has no command, so the classic sidecar cannot be told when it exits and will keep this run-to-completion pod running; set the container's command or use native sidecars (%snative-sidecar: \"true\", Kubernetes 1.29+)",
					c.Name, policy.Prefix))
			}
		}
		apps[i] = c
		st.Apps = append(st.Apps, change)
	}

	proxy := r.Proxy
	initc := r.Init
	if r.Native {
		out.Spec.InitContainers = make([]corev1.Container, 0, len(pod.Spec.InitContainers)+2)
		out.Spec.InitContainers = append(out.Spec.InitContainers, initc, proxy)
		out.Spec.InitContainers = append(out.Spec.InitContainers, pod.Spec.InitContainers...)
		out.Spec.Containers = apps
		st.InitContainers = []string{initc.Name, proxy.Name}
	} else {
		// mesh-init runs last, so the app's own init containers keep the
		// network they had before injection (no proxy runs yet).
		out.Spec.InitContainers = make([]corev1.Container, 0, len(pod.Spec.InitContainers)+1)
		out.Spec.InitContainers = append(out.Spec.InitContainers, pod.Spec.InitContainers...)
		out.Spec.InitContainers = append(out.Spec.InitContainers, initc)
		out.Spec.Containers = make([]corev1.Container, 0, len(apps)+1)
		out.Spec.Containers = append(out.Spec.Containers, proxy)
		out.Spec.Containers = append(out.Spec.Containers, apps...)
		st.InitContainers = []string{initc.Name}
		st.Containers = []string{proxy.Name}
	}
	out.Spec.Volumes = make([]corev1.Volume, 0, len(pod.Spec.Volumes)+len(r.Volumes))
	out.Spec.Volumes = append(out.Spec.Volumes, pod.Spec.Volumes...)
	for _, v := range r.Volumes {
		for _, existing := range pod.Spec.Volumes {
			if existing.Name == v.Name {
				return nil, nil, &conflictError{ReasonVolumeNameConflict, fmt.Sprintf(
					"the pod already has a volume named %q, which the injector adds; rename that volume", v.Name)}
			}
		}
		// A mount of a volume the pod does not declare would be refused by
		// the API server; once the injector adds a volume of that name,
		// the app would get the proxy's files instead.
		if c, ok := usesVolume(pod, v.Name); ok {
			return nil, nil, &conflictError{ReasonVolumeNameConflict, fmt.Sprintf(
				"container %q mounts a volume named %q that the pod does not declare; the injector adds a volume of that name for the proxy: declare and rename your volume", c, v.Name)}
		}
		out.Spec.Volumes = append(out.Spec.Volumes, v)
		st.Volumes = append(st.Volumes, v.Name)
	}

	// A port name the proxy uses would make Services and probes that
	// select the port by name reach the proxy instead of the app.
	for _, p := range proxy.Ports {
		if p.Name == "" {
			continue
		}
		for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for _, c := range list {
				for _, cp := range c.Ports {
					if cp.Name != p.Name {
						continue
					}
					msg := fmt.Sprintf("container %q names its port %d %q, the name of the proxy's port %d; Services and probes that select it by name would reach the proxy: rename the port",
						c.Name, cp.ContainerPort, cp.Name, p.ContainerPort)
					if s.Checks.ProxyPortConflict == policy.Refuse {
						return nil, nil, &conflictError{ReasonProxyPortConflict, msg}
					}
					warnings = append(warnings, msg)
				}
			}
		}
	}

	// Pod-level resources (PodLevelResources) bound the containers': the
	// proxy's share is added so the pod still validates, and mesh-init's
	// requests and limits must fit on their own.
	if pr := pod.Spec.Resources; pr != nil {
		grown := raisePodResources(pr, proxy.Resources, initc.Resources)
		if !equalResources(pr, grown) {
			st.PodResources = &PodResourcesChange{From: pr.DeepCopy()}
			out.Spec.Resources = grown
			warnings = append(warnings, fmt.Sprintf("pod-level resources raised to make room for the proxy: %s", describeResources(grown)))
		}
	}

	// Grace period: offline + sleep + the app's shutdown must fit.
	need := int64(offlineBudget(s).Seconds()) + int64(s.Lifecycle.DrainSeconds) + int64(s.Lifecycle.ShutdownSeconds)
	current := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		current = *pod.Spec.TerminationGracePeriodSeconds
	}
	if current < need {
		st.GracePeriod = &GraceChange{From: pod.Spec.TerminationGracePeriodSeconds, To: need}
		out.Spec.TerminationGracePeriodSeconds = &need
		warnings = append(warnings, fmt.Sprintf(
			"terminationGracePeriodSeconds raised from %d to %d so the registry offline step (%ds), the drain sleep (%ds) and the app's shutdown (%ds) fit",
			current, need, offlineBudget(s).Seconds(), s.Lifecycle.DrainSeconds, s.Lifecycle.ShutdownSeconds))
	}

	// Annotations: status, and kubectl's default container when absent.
	ann := make(map[string]string, len(pod.Annotations)+2)
	for k, v := range pod.Annotations {
		ann[k] = v
	}
	if dc, ok := ann[policy.DefaultContainerAnnotation]; ok {
		if _, found := usesContainer(&out, dc); !found {
			warnings = append(warnings, fmt.Sprintf("%s names %q, which is not a container of this pod; kubectl logs and exec will fail until it names one",
				policy.DefaultContainerAnnotation, dc))
		}
	} else {
		ann[policy.DefaultContainerAnnotation] = pod.Spec.Containers[0].Name
		st.Annotations = []string{policy.DefaultContainerAnnotation}
	}
	statusJSON, err := st.Marshal()
	if err != nil {
		return nil, nil, err
	}
	ann[policy.StatusAnnotation] = statusJSON
	if size := annotationsSize(ann); size > maxAnnotationsSize {
		return nil, nil, &conflictError{ReasonInvalidPod, fmt.Sprintf(
			"with the status annotation the pod's annotations would total %d bytes, over Kubernetes' limit of %d (the status records the original commands and preStop handlers of the app containers); shorten them or opt the pod out",
			size, maxAnnotationsSize)}
	}
	out.Annotations = ann
	return &out, warnings, nil
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

// conflictError is a pod that already uses a name or path injection needs.
// usesContainer reports whether the pod has a container (app or init)
// with the name.
func usesContainer(pod *corev1.Pod, name string) (*corev1.Container, bool) {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i], true
			}
		}
	}
	return nil, false
}

// usesVolume returns a container that mounts (or uses as a device) the
// named volume.
func usesVolume(pod *corev1.Pod, name string) (string, bool) {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, m := range c.VolumeMounts {
				if m.Name == name {
					return c.Name, true
				}
			}
			for _, d := range c.VolumeDevices {
				if d.Name == name {
					return c.Name, true
				}
			}
		}
	}
	return "", false
}

// statusProblem says why the pod's status annotation cannot be the
// injector's record of this pod, or "".
func statusProblem(pod *corev1.Pod) string {
	// Read leniently: a status another version of the injector wrote
	// (another format version) still says the pod is injected, as long
	// as what it records is there.
	var st Status
	if err := json.Unmarshal([]byte(pod.Annotations[policy.StatusAnnotation]), &st); err != nil {
		return fmt.Sprintf("it is not a status the injector wrote (not JSON: %v)", err)
	}
	if len(st.InitContainers)+len(st.Containers) == 0 {
		return "it records no added container"
	}
	for _, n := range append(append([]string(nil), st.InitContainers...), st.Containers...) {
		if _, ok := usesContainer(pod, n); !ok {
			return fmt.Sprintf("the container %q it records is not in the pod", n)
		}
	}
	return ""
}

type conflictError struct {
	reason Reason
	msg    string
}

func (e *conflictError) Error() string { return e.msg }

func readyURLIf(s policy.Settings) string {
	if !s.Lifecycle.HoldApplicationUntilProxyReady {
		return ""
	}
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.Proxy.Ports.Readiness, DefaultPaths.Readiness)
}

// isRunToCompletion reports whether the pod ends when its app exits (Job
// and CronJob pods, bare pods with restartPolicy Never or OnFailure).
func isRunToCompletion(pod *corev1.Pod) bool {
	if pod.Spec.RestartPolicy == corev1.RestartPolicyNever || pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure {
		return true
	}
	for _, o := range pod.OwnerReferences {
		if o.Kind == "Job" {
			return true
		}
	}
	return false
}

// appPreStop builds an app container's preStop: the rendered offline +
// sleep command, followed by the container's own handler.
func appPreStop(c *corev1.Container, base corev1.LifecycleHandler) (*corev1.LifecycleHandler, string) {
	cmd := append([]string(nil), base.Exec.Command...)
	var orig *corev1.LifecycleHandler
	if c.Lifecycle != nil {
		orig = c.Lifecycle.PreStop
	}
	if orig != nil {
		then, err := originalHandler(c, orig)
		if err != nil {
			return nil, fmt.Sprintf("container %q keeps its own preStop handler without the registry offline step and drain sleep: %v", c.Name, err)
		}
		cmd = append(cmd, then.Args()...)
	}
	h := base
	h.Exec = &corev1.ExecAction{Command: cmd}
	return &h, ""
}

// originalHandler converts an app's own preStop handler for the hook tool.
func originalHandler(c *corev1.Container, h *corev1.LifecycleHandler) (meshinit.OriginalHandler, error) {
	switch {
	case h.Exec != nil:
		if len(h.Exec.Command) == 0 {
			return meshinit.OriginalHandler{}, fmt.Errorf("its exec handler has no command")
		}
		return meshinit.OriginalHandler{Exec: h.Exec.Command}, nil
	case h.HTTPGet != nil:
		g := h.HTTPGet
		port, err := resolvePort(c, g.Port)
		if err != nil {
			return meshinit.OriginalHandler{}, err
		}
		scheme := strings.ToLower(string(g.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		host := g.Host
		podIP := host == ""
		if podIP {
			// The kubelet calls the pod IP; the hook tool does too (it
			// finds the IP at hook time), with loopback as the fallback.
			// Both are local to the pod and never captured.
			host = "127.0.0.1"
		}
		path := g.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		o := meshinit.OriginalHandler{HTTPGet: fmt.Sprintf("%s://%s%s", scheme, hostPort(host, port), path), HTTPGetPodIP: podIP}
		for _, hd := range g.HTTPHeaders {
			// The hook tool refuses (exit 2, no sleep) a header it cannot
			// send; such a handler stays as it is.
			h := hd.Name + ": " + hd.Value
			if _, _, err := meshinit.ParseHeader(h); err != nil {
				return meshinit.OriginalHandler{}, fmt.Errorf("its preStop httpGet header cannot be sent: %v", err)
			}
			o.HTTPHeaders = append(o.HTTPHeaders, h)
		}
		return o, nil
	case h.Sleep != nil:
		return meshinit.OriginalHandler{Sleep: meshinit.Duration(h.Sleep.Seconds * 1e9)}, nil
	}
	return meshinit.OriginalHandler{}, fmt.Errorf("its preStop handler type cannot be run by the hook tool")
}

func hostPort(host string, port int32) string {
	if strings.Contains(host, ":") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}

func resolvePort(c *corev1.Container, p intstr.IntOrString) (int32, error) {
	if p.Type == intstr.Int {
		if p.IntVal < 1 || p.IntVal > 65535 {
			return 0, fmt.Errorf("its httpGet port %d is not a port", p.IntVal)
		}
		return p.IntVal, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, nil
		}
	}
	names := make([]string, 0, len(c.Ports))
	for _, cp := range c.Ports {
		if cp.Name != "" {
			names = append(names, cp.Name)
		}
	}
	sort.Strings(names)
	return 0, fmt.Errorf("its httpGet port %q names no port of the container (named ports: %s)", p.StrVal, strings.Join(names, ", "))
}
