package inject

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

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
	s := pol.Settings
	applied, warnings, err := policy.ApplyAnnotations(&s, pod.Annotations)
	ev.settings, ev.applied = s, applied
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
		if berr := pol.Bounds.Check(&s); berr != nil {
			return refuse(ReasonOverrideOutOfBounds, fmt.Sprintf("%s: %s (policy %q)",
				annotationFor(applied, berr.Field), berr.Problem, pol.Name))
		}
		if verr := s.Validate(nil); len(verr) > 0 {
			return refuse(ReasonInvalidAnnotation, fmt.Sprintf(
				"the pod's annotations make the settings invalid: %s", strings.Join(policy.Lines(verr), "; ")))
		}
	}
	return warnings, nil
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
