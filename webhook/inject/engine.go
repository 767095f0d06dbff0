package inject

import (
	"errors"
	"fmt"
	"sync"

	"github.com/sidecar-injector/injector/templates"
	"github.com/sidecar-injector/injector/webhook/envoy"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// Options are the facts about the environment the engine needs.
type Options struct {
	// NativeSidecarsSupported resolves nativeSidecar "auto": true when the
	// API server is 1.29 or newer (discovered once, at start).
	NativeSidecarsSupported bool
	// InjectorNamespace is never injected (the injector must not depend on
	// itself to start).
	InjectorNamespace string
}

// Engine is a compiled configuration: every policy with its templates
// parsed and its default rendering done and validated. It is immutable and
// safe for concurrent use; a reload builds a new Engine and swaps it in.
type Engine struct {
	opts     Options
	config   *policy.Config
	policies map[string]*compiledPolicy
	// warnings are the policy file's and the engine's load-time
	// warnings: legal values that are probably mistakes.
	warnings []policy.Warning
}

type compiledPolicy struct {
	policy *policy.Policy
	set    *templates.Set
	// base is the rendering for the policy's settings as they are.
	base *Rendered
	// overridden caches renderings for pods that override settings, keyed
	// by the overrides they apply (most pods of a workload share them).
	mu         sync.Mutex
	overridden map[string]*Rendered
}

// maxCachedRenderings bounds the per-policy cache of overridden renderings;
// when full it starts again, so odd annotation values cannot grow memory.
const maxCachedRenderings = 512

// New compiles a configuration: parses each template set once, renders and
// validates every policy. Any failure names the policy and the problem, and
// no Engine is returned.
func New(cfg *policy.Config, opts Options) (*Engine, error) {
	if cfg == nil || cfg.Default == nil {
		return nil, errors.New("no configuration")
	}
	e := &Engine{opts: opts, config: cfg, policies: map[string]*compiledPolicy{}}
	sets := map[string]*templates.Set{}
	getSet := func(name string) (*templates.Set, error) {
		if s, ok := sets[name]; ok {
			return s, nil
		}
		var overrides map[string]string
		setName := "builtin"
		if name != "" {
			overrides, setName = cfg.TemplateSets[name], name
		}
		s, err := templates.Parse(setName, overrides)
		if err != nil {
			return nil, err
		}
		sets[name] = s
		return s, nil
	}
	var errs []error
	for _, p := range append([]*policy.Policy{cfg.Default}, cfg.Policies...) {
		set, err := getSet(p.TemplateSet)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", policyPlace(p), err))
			continue
		}
		cp := &compiledPolicy{policy: p, set: set, overridden: map[string]*Rendered{}}
		cp.base, err = e.render(set, p.Settings, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", policyPlace(p), err))
			continue
		}
		// Render the other native mode too, so a pod that flips it cannot
		// meet a template error the load did not see.
		flipped := p.Settings
		flipped.Lifecycle.NativeSidecar = policy.NativeTrue
		if cp.base.Native {
			flipped.Lifecycle.NativeSidecar = policy.NativeFalse
		}
		if _, err := e.render(set, flipped, cp.base); err != nil {
			errs = append(errs, fmt.Errorf("%s (native sidecar %s): %w", policyPlace(p), flipped.Lifecycle.NativeSidecar, err))
			continue
		}
		e.policies[p.Name] = cp
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	e.warnings = append(append([]policy.Warning(nil), cfg.Warnings...), e.loadWarnings()...)
	return e, nil
}

// Warnings are the load-time warnings: values that are legal but probably
// not meant, in the order of the file.
func (e *Engine) Warnings() []policy.Warning { return e.warnings }

// loadWarnings are the warnings that need what the engine knows: the Envoy
// rules bootstraps are validated with, and the injector's namespace.
func (e *Engine) loadWarnings() []policy.Warning {
	var out []policy.Warning
	for _, p := range append([]*policy.Policy{e.config.Default}, e.config.Policies...) {
		if w, ok := envoyVersionWarning(p); ok {
			out = append(out, w)
		}
		for _, ns := range p.Namespaces {
			if ns == e.opts.InjectorNamespace {
				out = append(out, policy.Warning{Path: p.Place() + ": namespaces", Policies: []string{p.Name},
					Message: fmt.Sprintf("%s is the injector's own namespace, which is never injected: the policy has no effect there", ns)})
			}
		}
	}
	return out
}

// envoyVersionWarning says when a policy's proxy image runs an Envoy older
// than the rules its bootstrap was validated with, or does not say which
// Envoy it runs. It is reported where the image (or the declared version)
// was written.
func envoyVersionWarning(p *policy.Policy) (policy.Warning, bool) {
	proxy := p.Settings.Proxy
	if !p.OwnSetting("proxy.image") && !p.OwnSetting("proxy.envoyVersion") {
		return policy.Warning{}, false
	}
	v, ok := envoy.VersionFromImage(proxy.Image)
	if proxy.EnvoyVersion != "" {
		declared, err := envoy.ParseVersion(proxy.EnvoyVersion)
		v, ok = declared, err == nil
	}
	switch {
	case !ok:
		return p.SettingWarning("proxy.image", fmt.Sprintf(
			"%s does not say which Envoy it runs (its tag names no version): its bootstrap is validated with Envoy %s's rules, the oldest supported; set proxy.envoyVersion to the Envoy it runs",
			proxy.Image, envoy.Rules)), true
	case v.Less(envoy.Rules):
		return p.SettingWarning("proxy.image", olderEnvoy(proxy.Image, v)), true
	}
	return policy.Warning{}, false
}

func olderEnvoy(image string, v envoy.Version) string {
	return fmt.Sprintf("%s runs Envoy %s, older than %s, whose rules its bootstrap is validated with: Envoy %s may refuse at start what %s accepts; use an image of Envoy %s or newer",
		image, v, envoy.Rules, v, envoy.Rules, envoy.Rules)
}

// policyPlace names a policy and where it is in the file, as policy file
// errors do.
func policyPlace(p *policy.Policy) string {
	if p.Index < 0 {
		return fmt.Sprintf("policy %q (defaults)", p.Name)
	}
	return fmt.Sprintf("policy %q (policies[%d])", p.Name, p.Index)
}

// Config returns the compiled policy file the engine was built from.
func (e *Engine) Config() *policy.Config { return e.config }

// Options returns the engine's options.
func (e *Engine) Options() Options { return e.opts }

// native resolves the native-sidecar mode.
func (e *Engine) native(m policy.NativeMode) bool {
	switch m {
	case policy.NativeTrue:
		return true
	case policy.NativeFalse:
		return false
	}
	return e.opts.NativeSidecarsSupported
}

// rendering returns the rendering for a policy with the pod's overrides
// applied; key identifies the overrides ("" for none).
func (cp *compiledPolicy) rendering(e *Engine, key string, s policy.Settings) (*Rendered, error) {
	if key == "" {
		return cp.base, nil
	}
	cp.mu.Lock()
	r, ok := cp.overridden[key]
	cp.mu.Unlock()
	if ok {
		return r, nil
	}
	r, err := e.render(cp.set, s, cp.base)
	if err != nil {
		return nil, err
	}
	cp.mu.Lock()
	if len(cp.overridden) >= maxCachedRenderings {
		cp.overridden = map[string]*Rendered{}
	}
	cp.overridden[key] = r
	cp.mu.Unlock()
	return r, nil
}
