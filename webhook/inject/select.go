package inject

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/webhook/policy"
)

// otherMeshContainers are sidecars of other meshes; two proxies in one pod
// would capture each other's traffic.
var otherMeshContainers = map[string]string{"istio-proxy": "Istio", "linkerd-proxy": "Linkerd", "istio-init": "Istio", "linkerd-init": "Linkerd"}

// otherMeshAnnotations mark pods another mesh has injected.
var otherMeshAnnotations = map[string]string{"sidecar.istio.io/status": "Istio", "linkerd.io/proxy-version": "Linkerd"}

// preflight handles the skips and refusals that need no policy. A pod
// that carries the status annotation goes on: whether it is injected is
// decided against what its policy renders (verifyStatus).
func (e *Engine) preflight(pod *corev1.Pod, ns Namespace) (Decision, bool) {
	switch {
	case policy.SystemNamespaces[ns.Name]:
		return decide(Skipped, ReasonSystemNamespace, fmt.Sprintf("namespace %q is a Kubernetes system namespace and is never injected", ns.Name)), true
	case e.opts.InjectorNamespace != "" && ns.Name == e.opts.InjectorNamespace:
		return decide(Skipped, ReasonInjectorNamespace, fmt.Sprintf("namespace %q runs the injector itself and is never injected", ns.Name)), true
	}
	_, hasStatus := pod.Annotations[policy.StatusAnnotation]
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if !hasStatus && (c.Name == DefaultNames.Proxy || c.Name == DefaultNames.Init) {
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

// otherMeshOptOut refuses a pod another mesh has injected where the policy
// does not let pods go without this mesh's proxy: to the policy, another
// mesh's marker is an opt-out.
func (e *Engine) otherMeshOptOut(d Decision, ns Namespace) (Decision, bool) {
	if d.Reason != ReasonOtherMesh || ns.Labels[policy.NamespaceLabel] != "enabled" {
		return d, false
	}
	p := e.config.Select(ns.Name, ns.Labels).Policy
	if p.Bounds.AllowOptOut {
		return d, false
	}
	return withPolicy(decide(Refused, ReasonOptOutNotAllowed, fmt.Sprintf(
		"%s; policy %q does not let pods in namespace %q go without this mesh's proxy (podOverrides.allowOptOut is false)",
		d.Message, p.Name, ns.Name)), p), true
}

// optIn decides whether the pod is injected at all: a namespace labelled
// disabled wins over everything; a pod's opt-out only matters where it
// would otherwise be injected, so only there can a policy refuse it. It
// returns the reason to inject and the sentence that says so, or the
// decision not to.
func optIn(pod *corev1.Pod, ns Namespace, pol *policy.Policy) (Reason, string, []string, *Decision) {
	refuse := func(d Decision) (Reason, string, []string, *Decision) {
		d = withPolicy(d, pol)
		return "", "", nil, &d
	}
	podChoice, key, warnings, err := podInjectChoice(pod)
	if err != nil {
		return refuse(decide(Refused, ReasonInvalidAnnotation, err.Error()))
	}
	nsValue := ns.Labels[policy.NamespaceLabel]
	switch {
	case nsValue == "disabled":
		return refuse(decide(Skipped, ReasonNamespaceDisabled, fmt.Sprintf(
			"namespace %q is labelled %s=disabled, which pods cannot override", ns.Name, policy.NamespaceLabel)))
	case podChoice == "false" && nsValue != "enabled":
		return refuse(decide(Skipped, ReasonPodOptedOut, fmt.Sprintf("the pod opts out with %s", key)))
	case podChoice == "false":
		if !pol.Bounds.AllowOptOut {
			return refuse(decide(Refused, ReasonOptOutNotAllowed, fmt.Sprintf(
				"%s opts out, which policy %q does not allow in namespace %q (podOverrides.allowOptOut is false); remove the key or ask the platform team",
				key, pol.Name, ns.Name)))
		}
		return refuse(decide(Skipped, ReasonPodOptedOut, fmt.Sprintf("the pod opts out with %s", key)))
	case nsValue == "enabled":
		return ReasonNamespaceEnabled, "namespace " + strconv.Quote(ns.Name) + " is labelled " + policy.NamespaceLabel + "=enabled", warnings, nil
	case podChoice == "true":
		return ReasonPodOptedIn, fmt.Sprintf("the pod opts in with %s", key), warnings, nil
	}
	return refuse(decide(Skipped, ReasonNamespaceNotEnabled, fmt.Sprintf(
		"namespace %q is not labelled %s=enabled and the pod does not opt in", ns.Name, policy.NamespaceLabel)))
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
	_, istioLabel := pod.Labels[policy.IstioInjectKey]
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
		case s.istio && s.kind == "annotation" && istioLabel:
			// Istio reads its label, when present, instead of its
			// annotation, whatever the label says.
			if strings.TrimSpace(v) != strings.TrimSpace(pod.Labels[s.key]) {
				warnings = append(warnings, fmt.Sprintf("annotation %s %q is ignored because the label %s is set (Istio reads the label instead)", s.key, v, s.key))
			}
			continue
		case s.istio && t == "":
			// Empty is "no choice" in every Istio release: the namespace
			// decides.
			continue
		case s.istio:
			c = "false"
			if policy.IstioOptIn(t) {
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
