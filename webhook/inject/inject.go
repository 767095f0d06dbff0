package inject

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/webhook/policy"
)

// Namespace is what the core knows about the pod's namespace.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Inject decides whether and how to inject pod, which lives in namespace ns.
// It never modifies pod: the returned pod is a new value that shares the
// parts injection did not touch with the input, so callers must treat both
// as read-only. For a skip or a refusal the returned pod is the input.
func (e *Engine) Inject(pod *corev1.Pod, ns Namespace) (*corev1.Pod, Decision) {
	d, ch := e.Decide(pod, ns)
	if ch == nil {
		return pod, d
	}
	return ch.Apply(pod), d
}

// Decide is Inject without building the injected pod: for an injected pod
// it returns the record of what injection changes, from which the webhook
// builds its patch; nil otherwise. It never modifies pod.
func (e *Engine) Decide(pod *corev1.Pod, ns Namespace) (Decision, *Changes) {
	d, ch, _ := e.inject(pod, ns)
	return d, ch
}

// evaluation carries what explain shows besides the decision.
type evaluation struct {
	selection policy.Selection
	settings  policy.Settings
	applied   []policy.Applied
}

// inject runs the decision's sections in order: checks that need no
// policy, opt-in and opt-out, the pod's overrides, the rendering, pods that
// would break the mesh, and the changes themselves.
func (e *Engine) inject(pod *corev1.Pod, ns Namespace) (Decision, *Changes, *evaluation) {
	if pod == nil {
		return decide(Refused, ReasonInvalidPod, "the request carries no pod"), nil, nil
	}
	if ns.Name == "" {
		ns.Name = pod.Namespace
	}
	if d, done := e.preflight(pod, ns); done {
		d, _ = e.otherMeshOptOut(d, ns)
		return d, nil, nil
	}
	sel := e.config.Select(ns.Name, ns.Labels)
	ev := &evaluation{selection: sel}
	pol := sel.Policy

	reason, why, warnings, refusal := optIn(pod, ns, pol)
	if refusal != nil {
		return *refusal, nil, ev
	}
	more, refusal := effectiveSettings(pod, pol, ev)
	if refusal != nil {
		return *refusal, nil, ev
	}
	warnings = append(warnings, more...)

	r, err := e.policies[pol.Name].rendering(e, overrideKey(ev.applied), ev.settings)
	if err != nil {
		return withPolicy(decide(Refused, ReasonPolicyRenderingError, fmt.Sprintf(
			"the pod's annotations do not render with policy %q: %v", pol.Name, err)), pol), nil, ev
	}

	if _, ok := pod.Annotations[policy.StatusAnnotation]; ok {
		// The annotation is input like any other: the pod counts as
		// injected only when what it records is there and is what this
		// policy renders for it now, or a hand-written status would be a
		// way around the policy.
		if diffs := verifyStatus(pod, r); len(diffs) > 0 {
			return withPolicy(decide(Refused, ReasonStatusMismatch, fmt.Sprintf(
				"the pod carries %s, but %s, so it is not what policy %q injects for it now; remove the annotation and create the pod again (for a pod this injector did inject, `injector uninject` removes the annotation with everything it records)",
				policy.StatusAnnotation, strings.Join(diffs, "; "), pol.Name)), pol), nil, ev
		}
		return withPolicy(decide(Skipped, ReasonAlreadyInjected, fmt.Sprintf(
			"the pod is already injected: %s records what policy %q injects for it now", policy.StatusAnnotation, pol.Name)), pol), nil, ev
	}

	more, refusal = podSecurity(pod, ns, r, pol)
	if refusal != nil {
		return withPolicy(*refusal, pol), nil, ev
	}
	warnings = append(warnings, more...)

	more, refusal = checkConflicts(pod, ev.settings, r.Native)
	if refusal != nil {
		return withPolicy(*refusal, pol), nil, ev
	}
	warnings = append(warnings, more...)

	ch, more, err := e.changes(pod, r, pol.Name)
	if err != nil {
		// A conflict says what to fix; anything else is a bug.
		reason := ReasonInternalError
		var ce *conflictError
		if errors.As(err, &ce) {
			reason = ce.reason
		}
		return withPolicy(decide(Refused, reason, err.Error()), pol), nil, ev
	}
	d := withPolicy(decide(Injected, reason, why+"; injected with policy "+strconv.Quote(pol.Name)), pol)
	d.Warnings = append(warnings, more...)
	return d, ch, ev
}
