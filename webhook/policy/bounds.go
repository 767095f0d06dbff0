package policy

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Bounds limit what a pod may change with annotations. They are written
// under `podOverrides` in the policy file.
type Bounds struct {
	// AllowedAnnotations lists the override names (such as "proxy-cpu",
	// without the prefix) pods may use; "*" allows all. Istio aliases count
	// as the override they stand for.
	AllowedAnnotations []string `json:"allowedAnnotations"`
	// MaxProxyCPU and MaxProxyMemory cap the proxy's requests and limits.
	MaxProxyCPU    *resource.Quantity `json:"maxProxyCPU,omitempty"`
	MaxProxyMemory *resource.Quantity `json:"maxProxyMemory,omitempty"`
	// AllowedProxyImages lists image prefixes (such as
	// "registry.example.com/mesh/") a pod may choose; empty allows any.
	AllowedProxyImages []string `json:"allowedProxyImages,omitempty"`
	// AllowOptOut lets pods refuse injection in an enabled namespace.
	AllowOptOut bool `json:"allowOptOut"`
	// MinDrainSeconds and MaxDrainSeconds bound lifecycle.drainSeconds.
	MinDrainSeconds int32 `json:"minDrainSeconds"`
	MaxDrainSeconds int32 `json:"maxDrainSeconds"`
}

// DefaultBounds allow every override, any proxy image and opt-out, and a
// drain sleep up to an hour.
func DefaultBounds() Bounds {
	return Bounds{AllowedAnnotations: []string{"*"}, AllowOptOut: true, MinDrainSeconds: 0, MaxDrainSeconds: maxSeconds}
}

// Validate checks the bounds themselves; each problem is at its field
// path under path.
func (b *Bounds) Validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, name := range b.AllowedAnnotations {
		if name == "*" {
			continue
		}
		if _, ok := LookupOverride(Prefix + strings.TrimPrefix(name, Prefix)); !ok {
			names := make([]string, len(Overrides))
			for i := range Overrides {
				names[i] = Overrides[i].Name
			}
			errs = append(errs, problem(field.ErrorTypeNotSupported, path.Child("allowedAnnotations"), name,
				fmt.Sprintf("%q is not an override annotation (known: *, %s)", name, strings.Join(names, ", "))))
		}
	}
	if b.MaxProxyCPU != nil && b.MaxProxyCPU.Sign() <= 0 {
		errs = append(errs, field.Invalid(path.Child("maxProxyCPU"), b.MaxProxyCPU.String(), fmt.Sprintf("%s is not positive (leave it unset for no cap)", b.MaxProxyCPU.String())))
	}
	if b.MaxProxyMemory != nil && b.MaxProxyMemory.Sign() <= 0 {
		errs = append(errs, field.Invalid(path.Child("maxProxyMemory"), b.MaxProxyMemory.String(), fmt.Sprintf("%s is not positive (leave it unset for no cap)", b.MaxProxyMemory.String())))
	}
	if b.MinDrainSeconds < 0 || b.MaxDrainSeconds < b.MinDrainSeconds {
		errs = append(errs, field.Invalid(path.Child("minDrainSeconds"), b.MinDrainSeconds, fmt.Sprintf("the range %d-%d is empty or negative", b.MinDrainSeconds, b.MaxDrainSeconds)))
	}
	return sortProblems(errs)
}

// Allows reports whether pods may use the override.
func (b *Bounds) Allows(o *Override) bool {
	for _, name := range b.AllowedAnnotations {
		if name == "*" || strings.TrimPrefix(name, Prefix) == o.Name {
			return true
		}
	}
	return false
}

// BoundError is an override outside the policy's bounds.
type BoundError struct {
	// Field is the settings path that is out of bounds.
	Field string
	// Problem names the value and the bound.
	Problem string
}

func (e *BoundError) Error() string { return e.Problem }

// Check reports the first effective setting outside the bounds.
func (b *Bounds) Check(s *Settings) *BoundError {
	over := func(field string, v, max *resource.Quantity, bound string) *BoundError {
		if v != nil && max != nil && v.Cmp(*max) > 0 {
			return &BoundError{Field: field, Problem: fmt.Sprintf("%s %s exceeds %s %s", field, v.String(), bound, max.String())}
		}
		return nil
	}
	r := s.Proxy.Resources
	// A missing or zero limit means "unlimited" to the kubelet, so a cap
	// needs a limit at or under it.
	unlimited := func(field string, lim, max *resource.Quantity, bound string) *BoundError {
		if max != nil && (lim == nil || lim.IsZero()) {
			return &BoundError{Field: field, Problem: fmt.Sprintf("%s is unset or 0, which means unlimited, but %s is %s", field, bound, max.String())}
		}
		return nil
	}
	for _, e := range []*BoundError{
		unlimited("proxy.resources.limits.cpu", r.Limits.CPU, b.MaxProxyCPU, "maxProxyCPU"),
		unlimited("proxy.resources.limits.memory", r.Limits.Memory, b.MaxProxyMemory, "maxProxyMemory"),
		over("proxy.resources.requests.cpu", r.Requests.CPU, b.MaxProxyCPU, "maxProxyCPU"),
		over("proxy.resources.limits.cpu", r.Limits.CPU, b.MaxProxyCPU, "maxProxyCPU"),
		over("proxy.resources.requests.memory", r.Requests.Memory, b.MaxProxyMemory, "maxProxyMemory"),
		over("proxy.resources.limits.memory", r.Limits.Memory, b.MaxProxyMemory, "maxProxyMemory"),
	} {
		if e != nil {
			return e
		}
	}
	if len(b.AllowedProxyImages) > 0 {
		ok := false
		for _, prefix := range b.AllowedProxyImages {
			if strings.HasPrefix(s.Proxy.Image, prefix) {
				ok = true
				break
			}
		}
		if !ok {
			prefixes := append([]string(nil), b.AllowedProxyImages...)
			sort.Strings(prefixes)
			return &BoundError{Field: "proxy.image", Problem: fmt.Sprintf("proxy.image %q does not start with an allowed prefix (allowedProxyImages: %s)",
				s.Proxy.Image, strings.Join(prefixes, ", "))}
		}
	}
	if d := s.Lifecycle.Drain(); d < b.MinDrainSeconds || d > b.MaxDrainSeconds {
		return &BoundError{Field: "lifecycle.drainSeconds", Problem: fmt.Sprintf("lifecycle.drainSeconds %d is outside minDrainSeconds-maxDrainSeconds %d-%d",
			d, b.MinDrainSeconds, b.MaxDrainSeconds)}
	}
	return nil
}
