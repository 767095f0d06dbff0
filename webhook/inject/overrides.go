package inject

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sidecar-injector/injector/webhook/envoy"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// effectiveSettings applies the pod's annotations to the policy's settings
// within the policy's bounds. It records the result in ev (explain shows
// it even for a refusal) and returns the annotations' warnings, or the
// refusal.
func effectiveSettings(pod *corev1.Pod, pol *policy.Policy, ev *evaluation) ([]string, *Decision) {
	refuse := func(reason Reason, msg string) ([]string, *Decision) {
		d := withPolicy(decide(Refused, reason, msg), pol)
		return nil, &d
	}
	// The pod's overrides are applied to the evaluation's own copy of the
	// policy's settings: a local copy would escape to the heap (1.2 KB
	// per admission) only to be copied again.
	ev.settings = pol.Settings
	s := &ev.settings
	applied, warnings, err := policy.ApplyAnnotations(s, pod.Annotations)
	ev.applied = applied
	if err != nil {
		return refuse(ReasonInvalidAnnotation, err.Error())
	}
	for _, a := range applied {
		o, _ := policy.LookupOverride(a.Key)
		if !pol.Bounds.Allows(o) {
			return refuse(ReasonOverrideNotAllowed, fmt.Sprintf(
				"%s is not allowed by policy %q (podOverrides.allowedAnnotations: %s)",
				a.Key, pol.Name, strings.Join(pol.Bounds.AllowedAnnotations, ", ")))
		}
	}
	for _, a := range applied {
		// The pod chose its own proxy image: say when its tag names an
		// Envoy older than the rules its bootstrap was validated with.
		if v, ok := envoy.VersionFromImage(s.Proxy.Image); a.Field == "proxy.image" && ok && v.Less(envoy.Rules) {
			warnings = append(warnings, a.Key+": "+olderEnvoy(s.Proxy.Image, v))
		}
	}
	if len(applied) > 0 {
		if berr := pol.Bounds.Check(s); berr != nil {
			return refuse(ReasonOverrideOutOfBounds, fmt.Sprintf("%s: %s (policy %q)",
				annotationFor(applied, berr.Field), berr.Problem, pol.Name))
		}
		if verr := s.Validate(nil); len(verr) > 0 {
			msgs := make([]string, len(verr))
			for i, e := range verr {
				msgs[i] = annotationProblem(applied, pol, e)
			}
			return refuse(ReasonInvalidAnnotation, strings.Join(msgs, "; "))
		}
	}
	return warnings, nil
}

// annotationProblem explains a problem of the effective settings (a rule
// across fields, since each annotation's own value was checked when it
// applied) by the annotations the pod wrote, with their values, and where
// the other fields of the rule come from.
func annotationProblem(applied []policy.Applied, pol *policy.Policy, e *field.Error) string {
	var keys, others []string
	for _, f := range append([]string{e.Field}, policy.RelatedFields(e.Field)...) {
		if a, ok := appliedTo(applied, f); ok {
			keys = append(keys, fmt.Sprintf("%s: %q", a.Key, a.Value))
			continue
		}
		src := pol.Origin[f]
		if src == "" {
			src = policy.SourceBuiltin
		}
		others = append(others, fmt.Sprintf("%s comes from %s", f, src))
	}
	if len(keys) == 0 {
		return fmt.Sprintf("the pod's annotations make the settings invalid: %s: %s", e.Field, e.Detail)
	}
	verb := "is invalid"
	if len(keys) > 1 {
		verb = "are invalid together"
	}
	msg := fmt.Sprintf("%s %s: %s %s", strings.Join(keys, " and "), verb, e.Field, e.Detail)
	if len(others) > 0 {
		msg += fmt.Sprintf(" (%s, policy %q)", strings.Join(others, ", "), pol.Name)
	}
	return msg
}

// appliedTo finds the annotation that set a field.
func appliedTo(applied []policy.Applied, fieldPath string) (policy.Applied, bool) {
	for _, a := range applied {
		if a.Field == fieldPath {
			return a, true
		}
	}
	return policy.Applied{}, false
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
