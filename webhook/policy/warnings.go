package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Warning is a legal value that is probably not what the policy author
// meant. It does not stop the file from loading; the server logs it and
// shows it in /readyz, explain shows it for the policies it concerns.
type Warning struct {
	// Path is where the value is in the file, such as
	// "policies[1] (payments): settings.envoy.outbound.connectTimeout".
	Path string
	// Message says what the value does and what was probably meant.
	Message string
	// Policies are the policies it concerns; empty for the file as a whole.
	Policies []string
	// Field is the settings path when the warning is about a setting a
	// policy may inherit from the file defaults.
	Field string
}

func (w Warning) String() string {
	if w.Path == "" {
		return w.Message
	}
	return w.Path + ": " + w.Message
}

// Concerns reports whether the warning is about p: it names p, or it is
// about a file default p still inherits.
func (w Warning) Concerns(p *Policy) bool {
	if slices.Contains(w.Policies, p.Name) {
		return true
	}
	return w.Field != "" && slices.Contains(w.Policies, DefaultPolicyName) && p.Origin[w.Field] == SourceFileDefaults
}

// SystemNamespaces are never injected: the control plane must not depend
// on the mesh to start.
var SystemNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true}

// Thresholds under or over which a legal value is probably a mistake.
const (
	minSensibleConnectTimeout     = 10 * time.Millisecond
	maxSensibleProtocolDetection  = 30 * time.Second
	envoyDefaultCircuitBreakerMax = 1024
)

// Place names a policy where file problems and warnings do: "defaults" or
// "policies[i] (name)".
func (p *Policy) Place() string {
	if p.Index < 0 {
		return "defaults"
	}
	return fmt.Sprintf("policies[%d] (%s)", p.Index, p.Name)
}

// source is what Origin records for values this policy's own layer set.
func (p *Policy) source() string {
	if p.Index < 0 {
		return SourceFileDefaults
	}
	return SourcePolicy(p.Name)
}

// SettingWarning is a warning about one of p's settings; it concerns p,
// or, for the defaults, every policy that inherits the value.
func (p *Policy) SettingWarning(fieldPath, msg string) Warning {
	return Warning{Path: p.Place() + ": settings." + fieldPath, Message: msg, Policies: []string{p.Name}, Field: fieldPath}
}

// OwnSetting reports whether the value at fieldPath was set by p's own
// layer (not inherited), so a warning about it is reported once, where it
// was written.
func (p *Policy) OwnSetting(fieldPath string) bool {
	return p.Origin[fieldPath] == p.source()
}

// fileWarnings finds legal values that are probably mistakes: harmful
// settings, policies that can never apply, template sets nothing uses.
func fileWarnings(c *Config, sets map[string]map[string]string) []Warning {
	var out []Warning
	for _, p := range append([]*Policy{c.Default}, c.Policies...) {
		out = append(out, settingWarnings(p)...)
	}
	named := map[string]*Policy{}
	for i, p := range c.Policies {
		for _, ns := range p.Namespaces {
			if SystemNamespaces[ns] {
				out = append(out, Warning{Path: p.Place() + ": namespaces", Policies: []string{p.Name},
					Message: fmt.Sprintf("%s is a Kubernetes system namespace, which is never injected: the policy has no effect there", ns)})
			}
			if first, dup := named[ns]; dup {
				out = append(out, Warning{Path: p.Place() + ": namespaces", Policies: []string{first.Name, p.Name},
					Message: fmt.Sprintf("namespace %s is also named by %s, which wins (the first in file order): this policy never applies there", ns, first.Place())})
				continue
			}
			named[ns] = p
		}
		if p.Selector != nil && p.Selector.Empty() {
			var shadowed []string
			for _, later := range c.Policies[i+1:] {
				if later.Selector != nil {
					shadowed = append(shadowed, later.Place())
				}
			}
			if len(shadowed) > 0 {
				out = append(out, Warning{Path: p.Place() + ": namespaceSelector", Policies: []string{p.Name},
					Message: fmt.Sprintf("an empty selector matches every namespace, so the selectors of later policies never choose a namespace: %s; put the catch-all last, or give it labels to match",
						strings.Join(shadowed, ", "))})
			}
		}
	}
	used := map[string]bool{c.Default.TemplateSet: true}
	for _, p := range c.Policies {
		used[p.TemplateSet] = true
	}
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		if !used[name] {
			out = append(out, Warning{Path: "templateSets." + name,
				Message: "no policy uses this template set (templateSet), so it is neither checked nor ever rendered"})
		}
	}
	return out
}

// settingWarnings are the harmful-but-legal values a policy's own layer
// sets.
func settingWarnings(p *Policy) []Warning {
	var out []Warning
	warn := func(fieldPath, msg string) {
		if p.OwnSetting(fieldPath) {
			out = append(out, p.SettingWarning(fieldPath, msg))
		}
	}
	e := p.Settings.Envoy
	for _, dir := range []struct {
		name string
		c    ClusterPolicy
	}{{"outbound", e.Outbound}, {"inbound", e.Inbound}} {
		if t := time.Duration(dir.c.ConnectTimeout); t > 0 && t < minSensibleConnectTimeout {
			warn("envoy."+dir.name+".connectTimeout", fmt.Sprintf(
				"%s is under %s: a healthy destination on another node, or one under load, often takes longer to accept, so connections would fail (Envoy's own default is 5s, this injector's 2s outbound and 1s inbound)",
				t, minSensibleConnectTimeout))
		}
		for _, th := range []struct {
			name  string
			value uint32
		}{{"maxConnections", dir.c.CircuitBreakers.MaxConnections}, {"maxPendingRequests", dir.c.CircuitBreakers.MaxPendingRequests},
			{"maxRequests", dir.c.CircuitBreakers.MaxRequests}} {
			if th.value == 0 {
				warn("envoy."+dir.name+".circuitBreakers."+th.name, fmt.Sprintf(
					"0 does not mean none or unlimited: the threshold is left out and Envoy's default of %d applies to the whole pod's %s traffic; write the number you mean",
					envoyDefaultCircuitBreakerMax, dir.name))
			}
		}
	}
	if t := time.Duration(e.ProtocolDetectionTimeout); t > maxSensibleProtocolDetection {
		warn("envoy.protocolDetectionTimeout", fmt.Sprintf(
			"%s is over %s: every connection of a server-first protocol (MySQL, SMTP, FTP) waits this long before its first byte; the default is 100ms",
			t, maxSensibleProtocolDetection))
	}
	return out
}
