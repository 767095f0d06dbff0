package inject

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/webhook/policy"
)

// Explanation says whether a pod would be injected and why, which policy
// applies, and every effective value with where it came from.
type Explanation struct {
	Namespace Namespace `json:"namespace"`
	Decision  Decision  `json:"decision"`
	// Policy is the policy that applies, Matched every policy that matched
	// the namespace, Rule why Policy won.
	Policy  string   `json:"policy"`
	Matched []string `json:"matched,omitempty"`
	Rule    string   `json:"rule"`
	// Values are the effective settings and bounds, one per leaf.
	Values []Value `json:"values"`
	// PolicyWarnings are the policy file's load-time warnings about this
	// policy: legal values that are probably not meant.
	PolicyWarnings []string `json:"policyWarnings,omitempty"`
}

// Value is one effective setting.
type Value struct {
	Path   string `json:"path"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

// Explain runs the same decision as Inject and reports how it was reached.
// pod may be nil to explain a namespace's policy alone.
func (e *Engine) Explain(pod *corev1.Pod, ns Namespace) Explanation {
	if pod == nil {
		pod = &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
	}
	if ns.Name == "" {
		ns.Name = pod.Namespace
	}
	d, _, ev := e.inject(pod, ns)
	x := Explanation{Namespace: ns, Decision: d}
	sel := e.config.Select(ns.Name, ns.Labels)
	if ev != nil {
		sel = ev.selection
	}
	x.Policy, x.Matched, x.Rule = sel.Policy.Name, sel.Matched, sel.Rule
	settings := sel.Policy.Settings
	var applied []policy.Applied
	if ev != nil && ev.settings.Proxy.Image != "" {
		settings, applied = ev.settings, ev.applied
	}
	x.Values = values(settings, sel.Policy, applied)
	for _, w := range e.warnings {
		if w.Concerns(sel.Policy) {
			x.PolicyWarnings = append(x.PolicyWarnings, w.String())
		}
	}
	return x
}

// values flattens settings and bounds into leaves with their sources.
func values(s policy.Settings, p *policy.Policy, applied []policy.Applied) []Value {
	leaves := map[string]string{}
	flatten("", toGeneric(s), leaves)
	flatten("podOverrides.", toGeneric(p.Bounds), leaves)
	leaves["templateSet"] = p.TemplateSet
	if p.TemplateSet == "" {
		leaves["templateSet"] = "(built-in)"
	}
	out := make([]Value, 0, len(leaves))
	for path, v := range leaves {
		src := sourceOf(path, p.Origin)
		for _, a := range applied {
			if path == a.Field || strings.HasPrefix(path, a.Field+".") {
				src = policy.SourceAnnotation(a.Key)
			}
		}
		out = append(out, Value{Path: path, Value: v, Source: src})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// sourceOf finds the origin of a leaf, or of the nearest parent that a layer
// set as a whole.
func sourceOf(path string, origin map[string]string) string {
	for p := path; p != ""; {
		if src, ok := origin[p]; ok {
			return src
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return policy.SourceBuiltin
}

func toGeneric(v any) map[string]any {
	b, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func flatten(prefix string, m map[string]any, out map[string]string) {
	for k, v := range m {
		switch t := v.(type) {
		case map[string]any:
			if len(t) == 0 {
				out[prefix+k] = "{}"
				continue
			}
			flatten(prefix+k+".", t, out)
		case string:
			out[prefix+k] = t
		default:
			b, _ := json.Marshal(t)
			out[prefix+k] = string(b)
		}
	}
}

// Text renders an explanation for people.
func (x Explanation) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "namespace:  %s", x.Namespace.Name)
	if len(x.Namespace.Labels) > 0 {
		keys := make([]string, 0, len(x.Namespace.Labels))
		for k := range x.Namespace.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		kv := make([]string, len(keys))
		for i, k := range keys {
			kv[i] = k + "=" + x.Namespace.Labels[k]
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(kv, ", "))
	}
	fmt.Fprintf(&b, "\ndecision:   %s (%s)\nmessage:    %s\n", x.Decision.Result, x.Decision.Reason, x.Decision.Message)
	for _, w := range x.Decision.Warnings {
		fmt.Fprintf(&b, "warning:    %s\n", w)
	}
	fmt.Fprintf(&b, "policy:     %s\n", x.Policy)
	if len(x.Matched) > 0 {
		fmt.Fprintf(&b, "matched:    %s\n", strings.Join(x.Matched, ", "))
	}
	fmt.Fprintf(&b, "rule:       %s\n", x.Rule)
	for _, w := range x.PolicyWarnings {
		fmt.Fprintf(&b, "policy warning: %s\n", w)
	}
	fmt.Fprintf(&b, "\neffective values:\n")
	width := 0
	for _, v := range x.Values {
		if len(v.Path) > width {
			width = len(v.Path)
		}
	}
	for _, v := range x.Values {
		fmt.Fprintf(&b, "  %-*s  %-24s  (%s)\n", width, v.Path, v.Value, v.Source)
	}
	return b.String()
}
