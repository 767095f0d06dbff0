package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/templates"
	"github.com/sidecar-injector/injector/webhook/envoy"
	"github.com/sidecar-injector/injector/webhook/meshinit"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// This file turns a policy's settings into the values injection adds: the
// templates (package templates) render into typed containers, volumes and
// the app's preStop handler, and the Envoy bootstrap, validated against
// Envoy's schema (package envoy) and encoded for mesh-init's argument
// (package meshinit). It runs when a policy loads, and again only for a
// pod whose annotations change what renders (cached by the engine).

// TemplateData is what every template is rendered with. Everything in it
// depends on the effective settings only, never on the individual pod, so a
// rendering can be cached per policy and reused for every pod.
type TemplateData struct {
	// Settings are the effective settings (policy plus pod overrides).
	Settings policy.Settings
	// Native is the resolved native-sidecar mode.
	Native bool
	Names  Names
	Paths  Paths

	// InitArgs are mesh-init's arguments: "capture" ("validate" in the cni
	// capture mode), the capture flags, the tool installation and the
	// compressed bootstrap to write (empty while the bootstrap itself is
	// rendered).
	InitArgs []string
	// CNI is true in the cni capture mode (capture_mode.go): the node's
	// plugin writes the rules and the init container only checks them.
	CNI bool
	// ValidatorUID is the UID and GID of that check: non-root and neither
	// the proxy's UID nor its GID, whose connections are never captured.
	ValidatorUID int64
	// Bootstrap is the rendered Envoy bootstrap as compact JSON (empty while
	// the bootstrap itself is rendered).
	Bootstrap string
	// ProxyArgs are Envoy's command-line arguments.
	ProxyArgs []string
	// InitResources and ProxyResources are the containers' resources.
	InitResources  corev1.ResourceRequirements
	ProxyResources corev1.ResourceRequirements
	// WaitReadyCommand holds a classic-mode app until the proxy is ready.
	WaitReadyCommand []string
	// ProxyStopCommand keeps a classic-mode proxy serving while the app drains.
	ProxyStopCommand []string
	// AppPreStopCommand is the app containers' preStop command before any
	// original handler is appended.
	AppPreStopCommand []string
	// HasRegistry is set when the settings have a registry offline step:
	// the state volume and the postStart undo are added then.
	HasRegistry bool
}

// Rendered is what the templates produce for one set of effective settings.
// Its values are shared: callers copy before changing them.
type Rendered struct {
	Init       corev1.Container
	Proxy      corev1.Container
	Volumes    []corev1.Volume
	AppPreStop corev1.LifecycleHandler
	// Bootstrap is the Envoy bootstrap as compact JSON.
	Bootstrap string
	// CNIAnnotation is the value of meshinit.CNIAnnotation in the cni
	// capture mode, "" otherwise.
	CNIAnnotation string
	Native        bool
	Settings      policy.Settings
	// json holds each added container's and volume's JSON, by kind and
	// name, marshalled once here so a webhook response can carry it
	// without encoding the bootstrap again on every request.
	json map[string][]byte
}

// TemplateDataFor computes everything templates see for a set of settings.
func (e *Engine) TemplateDataFor(s policy.Settings) TemplateData {
	d := TemplateData{
		Settings:       s,
		Native:         e.native(s.Lifecycle.NativeSidecar),
		Names:          DefaultNames,
		Paths:          DefaultPaths,
		InitResources:  initResources(s),
		ProxyResources: s.Proxy.Resources.Requirements(),
		CNI:            s.Capture.Mode == policy.CaptureCNI,
		ValidatorUID:   validatorUID(s),
	}
	admin := fmt.Sprintf("http://127.0.0.1:%d", s.Proxy.Ports.Admin)
	ready := fmt.Sprintf("http://127.0.0.1:%d%s", s.Proxy.Ports.Readiness, d.Paths.Readiness)
	d.WaitReadyCommand = toolCommand(d.Paths.Tool, "wait-ready",
		meshinit.WaitReady{URL: ready, Timeout: s.Lifecycle.ProxyReadyTimeout}.Args())
	d.HasRegistry = offlineBudget(s) > 0
	d.ProxyStopCommand = toolCommand(d.Paths.Tool, "proxy-stop", meshinit.ProxyStop{
		Wait:     offlineBudget(s) + meshinit.Duration(int64(s.Lifecycle.Drain())*1e9),
		Drain:    meshinit.Duration(int64(s.Lifecycle.ShutdownSeconds) * 1e9),
		AdminURL: admin,
	}.Args())
	reg := s.Lifecycle.Registry
	reg.Timeout = offlineBudget(s)
	d.AppPreStopCommand = toolCommand(d.Paths.Tool, "prestop", meshinit.PreStop{
		Registry: reg,
		Sleep:    meshinit.Duration(int64(s.Lifecycle.Drain()) * 1e9),
	}.Args())
	return d
}

// initResources are the init container's resources with its CPU limit
// at most the proxy's (but not below its own request): a pod's effective
// CPU limit is the larger of the sum over its containers, the proxy
// included, and any one init container's, so the init container never
// raises it, also when a policy or a pod's annotation lowers the proxy's
// limit. mesh-init's default limit is the proxy's default for its start
// time (policy.Defaults).
func initResources(s policy.Settings) corev1.ResourceRequirements {
	r := s.Init.Resources.Requirements()
	limit, ok := r.Limits[corev1.ResourceCPU]
	proxy, pok := s.Proxy.Resources.Requirements().Limits[corev1.ResourceCPU]
	if !ok || !pok || limit.Cmp(proxy) <= 0 {
		return r
	}
	limit = proxy
	if req, ok := r.Requests[corev1.ResourceCPU]; ok && req.Cmp(limit) > 0 {
		limit = req
	}
	r.Limits[corev1.ResourceCPU] = limit
	return r
}

func toolCommand(tool, hook string, args []string) []string {
	return append([]string{tool, "hook", hook}, args...)
}

// offlineBudget is the time the offline step may take: nothing for "none",
// and the preset's own default (sized to its requests, see
// meshinit.DefaultOfflineTimeouts) when the settings leave it at zero.
// The prestop hook is rendered with it, so the hook, the grace period and
// the proxy's wait count the same budget.
func offlineBudget(s policy.Settings) meshinit.Duration {
	return meshinit.Duration(s.Lifecycle.Registry.OfflineTimeout())
}

// captureConfig maps settings onto mesh-init's capture flags.
func captureConfig(s policy.Settings) meshinit.CaptureConfig {
	c := meshinit.DefaultCaptureConfig()
	c.ProxyUID = uint32(s.Proxy.UID)
	c.ProxyGID = uint32(s.Proxy.GID)
	c.OutboundPort = uint16(s.Proxy.Ports.Outbound)
	c.InboundPort = uint16(s.Proxy.Ports.Inbound)
	c.ProxyPorts = meshinit.PortList{
		{From: uint16(s.Proxy.Ports.Admin), To: uint16(s.Proxy.Ports.Admin)},
		{From: uint16(s.Proxy.Ports.Readiness), To: uint16(s.Proxy.Ports.Readiness)},
		{From: uint16(s.Proxy.Ports.Stats), To: uint16(s.Proxy.Ports.Stats)},
	}
	sort.Slice(c.ProxyPorts, func(i, j int) bool { return c.ProxyPorts[i].From < c.ProxyPorts[j].From })
	c.IncludeInboundPorts = s.Capture.IncludeInboundPorts
	c.ExcludeInboundPorts = s.Capture.ExcludeInboundPorts
	c.IncludeOutboundPorts = s.Capture.IncludeOutboundPorts
	c.ExcludeOutboundPorts = s.Capture.ExcludeOutboundPorts
	c.IncludeOutboundCIDRs = s.Capture.IncludeOutboundCIDRs
	c.ExcludeOutboundCIDRs = s.Capture.ExcludeOutboundCIDRs
	c.Mode = s.Init.IPTablesMode
	c.IPv6 = s.Init.IPv6
	return c
}

// sameBootstrapInputs reports whether the bootstrap rendered for r serves
// settings s too. The built-in template reads only the Envoy block and the
// proxy's ports; an operator's template may read anything (every setting,
// native or classic), so its rendering is reused only for identical input.
func sameBootstrapInputs(set *templates.Set, r *Rendered, s policy.Settings, native bool) bool {
	if !set.Custom(templates.EnvoyBootstrap) {
		return r.Settings.Envoy == s.Envoy && r.Settings.Proxy.Ports == s.Proxy.Ports
	}
	return r.Native == native && reflect.DeepEqual(r.Settings, s)
}

// render runs every template of set for settings s, reusing the bootstrap
// of reuse when it would render the same.
func (e *Engine) render(set *templates.Set, s policy.Settings, reuse *Rendered) (*Rendered, error) {
	d := e.TemplateDataFor(s)
	if reuse != nil && sameBootstrapInputs(set, reuse, s, d.Native) {
		// No pod annotation changes what the bootstrap is made of, so a
		// pod's rendering shares its policy's validated bootstrap.
		d.Bootstrap = reuse.Bootstrap
	} else {
		raw, err := set.Render(templates.EnvoyBootstrap, d)
		if err != nil {
			return nil, err
		}
		// Envoy's own schema, every typed config included, what Envoy
		// checks when it builds listeners, clusters and routes, and that
		// the capture ports accept every family captured: a policy whose
		// bootstrap Envoy would reject, or which would refuse captured
		// connections, never loads.
		if d.Bootstrap, err = envoy.ValidateSidecar(raw, envoy.Capture{
			Ports: []uint32{uint32(s.Proxy.Ports.Outbound), uint32(s.Proxy.Ports.Inbound)},
			IPv6:  s.Init.IPv6 != meshinit.IPv6Off,
		}); err != nil {
			return nil, bootstrapError(set, err)
		}
	}
	initTemplate, initCommand := templates.InitContainer, "capture"
	if d.CNI {
		initTemplate, initCommand = templates.InitContainerCNI, "validate"
	}
	d.InitArgs = append([]string{initCommand}, meshinit.CaptureCommand{
		Config:           captureConfig(s),
		CopySelfTo:       d.Paths.Tool,
		EnvoyBootstrapTo: d.Paths.Bootstrap,
		EnvoyBootstrap:   meshinit.EncodeFile([]byte(d.Bootstrap)),
	}.Args()...)
	d.ProxyArgs = proxyArgs(d)
	r := &Rendered{Bootstrap: d.Bootstrap, Native: d.Native, Settings: s}
	if d.CNI {
		r.CNIAnnotation = captureConfig(s).AnnotationValue()
	}
	if err := set.RenderInto(initTemplate, d, &r.Init); err != nil {
		return nil, err
	}
	if err := set.RenderInto(templates.Sidecar, d, &r.Proxy); err != nil {
		return nil, err
	}
	if err := set.RenderInto(templates.Volumes, d, &r.Volumes); err != nil {
		return nil, err
	}
	if err := set.RenderInto(templates.AppPreStop, d, &r.AppPreStop); err != nil {
		return nil, err
	}
	if err := checkRendered(r, d); err != nil {
		return nil, err
	}
	r.json = map[string][]byte{}
	for _, c := range []corev1.Container{r.Init, r.Proxy} {
		b, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		r.json["container/"+c.Name] = b
	}
	for _, v := range r.Volumes {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		r.json["volume/"+v.Name] = b
	}
	return r, nil
}

// bootstrapError says which template rendered a bootstrap Envoy would
// refuse, with each problem at its path in the bootstrap.
func bootstrapError(set *templates.Set, err error) error {
	where := fmt.Sprintf("the built-in %s", templates.EnvoyBootstrap)
	if set.Custom(templates.EnvoyBootstrap) {
		where = fmt.Sprintf("templateSets.%s[%s]", set.Name(), templates.EnvoyBootstrap)
	}
	var ee *envoy.Error
	if !errors.As(err, &ee) {
		return fmt.Errorf("envoy bootstrap: %s: %w", where, err)
	}
	lines := make([]string, len(ee.Problems))
	for i, p := range ee.Problems {
		lines[i] = "\n  " + p.String()
	}
	return fmt.Errorf("envoy bootstrap: %s renders a bootstrap Envoy %s would refuse:%s", where, envoy.Rules, strings.Join(lines, ""))
}

// proxyArgs are Envoy's command-line arguments. The bootstrap is the file
// mesh-init wrote from its (compressed) argument; the node identity comes
// from the downward API, so the rendering stays the same for every pod.
func proxyArgs(d TemplateData) []string {
	s := d.Settings
	return []string{
		"--config-path", d.Paths.Bootstrap,
		"--log-level", s.Proxy.LogLevel,
		"--concurrency", fmt.Sprint(s.Proxy.Concurrency),
		"--drain-time-s", fmt.Sprint(s.Envoy.DrainSeconds),
		"--drain-strategy", "immediate",
		"--disable-hot-restart",
		"--service-cluster", "$(POD_NAMESPACE)",
		"--service-node", "$(POD_NAME).$(POD_NAMESPACE)",
	}
}

// checkRendered catches custom templates that would produce a broken pod:
// the names the engine relies on must be the ones rendered.
func checkRendered(r *Rendered, d TemplateData) error {
	var problems []string
	if r.Init.Name != d.Names.Init {
		problems = append(problems, fmt.Sprintf("%s must render a container named %q, not %q", templates.InitContainer, d.Names.Init, r.Init.Name))
	}
	if r.Proxy.Name != d.Names.Proxy {
		problems = append(problems, fmt.Sprintf("%s must render a container named %q, not %q", templates.Sidecar, d.Names.Proxy, r.Proxy.Name))
	}
	if r.Init.Image == "" || r.Proxy.Image == "" {
		problems = append(problems, "the init container and the sidecar need an image")
	}
	if r.Native && r.Proxy.RestartPolicy == nil {
		problems = append(problems, fmt.Sprintf("%s must set restartPolicy: Always in native mode", templates.Sidecar))
	}
	if !r.Native && r.Proxy.RestartPolicy != nil {
		problems = append(problems, fmt.Sprintf("%s must not set restartPolicy in classic mode", templates.Sidecar))
	}
	hasTools := false
	for _, v := range r.Volumes {
		if v.Name == d.Names.ToolsVolume {
			hasTools = true
		}
		if !strings.HasPrefix(v.Name, volumePrefix) {
			problems = append(problems, fmt.Sprintf("%s must name its volumes %s*, not %q, so uninject can tell them from the pod's own", templates.Volumes, volumePrefix, v.Name))
		}
	}
	// Uninject recognises the injector's containers by this mount too.
	for _, c := range []struct {
		template string
		c        *corev1.Container
	}{{templates.InitContainer, &r.Init}, {templates.Sidecar, &r.Proxy}} {
		if !mountsTools(c.c) {
			problems = append(problems, fmt.Sprintf("%s must mount the volume %q at %s", c.template, d.Names.ToolsVolume, d.Paths.ToolsDir))
		}
	}
	if !hasTools {
		problems = append(problems, fmt.Sprintf("%s must render the volume %q that holds the hook tool", templates.Volumes, d.Names.ToolsVolume))
	}
	if r.AppPreStop.Exec == nil || len(r.AppPreStop.Exec.Command) == 0 {
		problems = append(problems, fmt.Sprintf("%s must render an exec handler", templates.AppPreStop))
	}
	problems = append(problems, checkUnprivileged(r, d)...)
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}
