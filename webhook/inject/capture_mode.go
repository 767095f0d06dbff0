package inject

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/templates"
	"github.com/sidecar-injector/injector/webhook/meshinit"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// The cni capture mode (policy capture.mode: cni): the node's mesh-cni
// plugin writes the pod's capture rules from meshinit.CNIAnnotation, which
// injection adds (annotate); the init container is `mesh-init validate`
// from templates.InitContainerCNI, unprivileged, and the proxy declares
// RuntimeDefault seccomp, so the injected pod passes Pod Security
// restricted as far as the injector's containers go. docs/capture.md.

// nobody is the validation container's UID and GID unless the proxy uses
// it.
const nobody = 65534

// validatorUID is a non-root UID that is neither the proxy's UID nor its
// GID: the capture rules never redirect the proxy's connections, so the
// validator's test connection would not be captured under either.
func validatorUID(s policy.Settings) int64 {
	id := int64(nobody)
	for id == s.Proxy.UID || id == s.Proxy.GID {
		id--
	}
	return id
}

// checkUnprivileged holds a custom init-container-cni.yaml to what the cni
// mode promises: no root, no added capability, no privilege escalation.
func checkUnprivileged(r *Rendered, d TemplateData) []string {
	if !d.CNI {
		return nil
	}
	sc := r.Init.SecurityContext
	var problems []string
	switch {
	case sc == nil:
		problems = append(problems, fmt.Sprintf("%s must set a securityContext (cni capture mode: unprivileged)", templates.InitContainerCNI))
	default:
		if sc.RunAsUser == nil || *sc.RunAsUser == 0 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			problems = append(problems, fmt.Sprintf("%s must run as a non-root runAsUser with runAsNonRoot: true (cni capture mode)", templates.InitContainerCNI))
		}
		if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
			problems = append(problems, fmt.Sprintf("%s must add no capability (cni capture mode)", templates.InitContainerCNI))
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			problems = append(problems, fmt.Sprintf("%s must set allowPrivilegeEscalation: false (cni capture mode)", templates.InitContainerCNI))
		}
	}
	return problems
}

// annotateCapture adds meshinit.CNIAnnotation in the cni capture mode,
// recorded in the status so uninject removes it. The annotation is the
// injector's alone in either mode: a pod that brings its own would choose
// the rules the node writes for it (or, in the init mode, have a node's
// plugin write rules mesh-init then rewrites), so it is refused.
//
// With classic sidecars the pod's own init containers run before the
// proxy; in the init mode they also run before the rules, but in the cni
// mode the rules exist before any container starts, so their outbound TCP
// connections go to a proxy that is not running yet: that is warned about.
func annotateCapture(pod *corev1.Pod, r *Rendered, ch *Changes) ([]string, error) {
	if v, ok := pod.Annotations[meshinit.CNIAnnotation]; ok {
		return nil, &conflictError{ReasonInvalidAnnotation, fmt.Sprintf(
			"the pod carries %s=%q, which only the injector writes (the capture settings of the cni capture mode); remove it and set the capture annotations instead",
			meshinit.CNIAnnotation, v)}
	}
	if r.CNIAnnotation == "" {
		return nil, nil
	}
	ch.Annotations = append(ch.Annotations, Annotation{meshinit.CNIAnnotation, r.CNIAnnotation})
	ch.Status.Annotations = append(ch.Status.Annotations, meshinit.CNIAnnotation)
	var warnings []string
	if !r.Native && len(pod.Spec.InitContainers) > 0 {
		names := make([]string, len(pod.Spec.InitContainers))
		for i, c := range pod.Spec.InitContainers {
			names[i] = c.Name
		}
		warnings = append(warnings, fmt.Sprintf(
			"cni capture mode with a classic sidecar: the capture rules exist before any container starts, so the outbound TCP connections of the init containers %v go to the proxy before it runs and fail; use native sidecars (sidecar-injector.io/native-sidecar: \"true\", Kubernetes 1.29+), or exclude their destinations (exclude-outbound-ports or -cidrs)",
			names))
	}
	return warnings, nil
}
