package policy

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// Settings is the complete, effective configuration of one injection.
// Its JSON form (camelCase) is what the policy file's `defaults` and each
// policy's `settings` are written in.
type Settings struct {
	Proxy     Proxy     `json:"proxy"`
	Init      Init      `json:"init"`
	Capture   Capture   `json:"capture"`
	Lifecycle Lifecycle `json:"lifecycle"`
	Envoy     Envoy     `json:"envoy"`
	Checks    Checks    `json:"checks"`
}

// Proxy is the Envoy sidecar container.
type Proxy struct {
	Image           string            `json:"image"`
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	Resources       Resources         `json:"resources"`
	// LogLevel is Envoy's --log-level.
	LogLevel string `json:"logLevel"`
	// Concurrency is Envoy's worker thread count (--concurrency).
	Concurrency int32 `json:"concurrency"`
	// UID and GID the proxy runs as; capture never redirects their traffic.
	UID int64 `json:"uid"`
	GID int64 `json:"gid"`
	// Ports the proxy listens on. They are fixed per policy, never per pod.
	Ports ProxyPorts `json:"ports"`
	// EnvoyVersion is the Envoy release the image runs, such as "1.37",
	// for an image whose tag does not say (a digest, a mirror's own
	// tags). Bootstraps are validated with Envoy 1.36's rules either way;
	// it only decides whether the load warns (docs/envoy.md "Version
	// pairing").
	EnvoyVersion string `json:"envoyVersion,omitempty"`
}

// ProxyPorts are the proxy's listening ports.
type ProxyPorts struct {
	Admin     int32 `json:"admin"`
	Outbound  int32 `json:"outbound"`
	Inbound   int32 `json:"inbound"`
	Readiness int32 `json:"readiness"`
	Stats     int32 `json:"stats"`
}

// All returns the ports in a fixed order, for conflict checks.
func (p ProxyPorts) All() []int32 {
	return []int32{p.Admin, p.Outbound, p.Inbound, p.Readiness, p.Stats}
}

// Init is the mesh-init init container.
type Init struct {
	Image           string            `json:"image"`
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	Resources       Resources         `json:"resources"`
	// IPTablesMode forces the iptables backend: auto, nft or legacy.
	IPTablesMode meshinit.Mode `json:"iptablesMode"`
	// IPv6 is auto, required or off.
	IPv6 meshinit.IPv6Mode `json:"ipv6"`
}

// Resources are a container's CPU and memory requests and limits.
type Resources struct {
	Requests ResourceValues `json:"requests"`
	Limits   ResourceValues `json:"limits"`
}

// ResourceValues are CPU and memory quantities; nil means unset.
type ResourceValues struct {
	CPU    *resource.Quantity `json:"cpu,omitempty"`
	Memory *resource.Quantity `json:"memory,omitempty"`
}

// Requirements converts to the Kubernetes type.
func (r Resources) Requirements() corev1.ResourceRequirements {
	conv := func(v ResourceValues) corev1.ResourceList {
		if v.CPU == nil && v.Memory == nil {
			return nil
		}
		l := corev1.ResourceList{}
		if v.CPU != nil {
			l[corev1.ResourceCPU] = v.CPU.DeepCopy()
		}
		if v.Memory != nil {
			l[corev1.ResourceMemory] = v.Memory.DeepCopy()
		}
		return l
	}
	return corev1.ResourceRequirements{Requests: conv(r.Requests), Limits: conv(r.Limits)}
}

// Capture chooses which traffic is redirected to the proxy.
type Capture struct {
	// Mode chooses who writes the capture rules: the mesh-init init
	// container (init, NET_ADMIN and NET_RAW in the pod) or the node's
	// mesh-cni plugin (cni: the pod gets an unprivileged validation init
	// container instead and passes Pod Security restricted). See
	// capture_mode.go.
	Mode                 CaptureMode       `json:"mode"`
	IncludeInboundPorts  meshinit.PortSet  `json:"includeInboundPorts"`
	ExcludeInboundPorts  meshinit.PortList `json:"excludeInboundPorts"`
	IncludeOutboundPorts meshinit.PortList `json:"includeOutboundPorts"`
	ExcludeOutboundPorts meshinit.PortList `json:"excludeOutboundPorts"`
	IncludeOutboundCIDRs meshinit.CIDRSet  `json:"includeOutboundCIDRs"`
	ExcludeOutboundCIDRs meshinit.CIDRList `json:"excludeOutboundCIDRs"`
}

// NativeMode chooses between native sidecars (an init container with
// restartPolicy Always, Kubernetes 1.29+) and a classic sidecar container.
type NativeMode string

// The native sidecar modes.
const (
	NativeAuto  NativeMode = "auto"
	NativeTrue  NativeMode = "true"
	NativeFalse NativeMode = "false"
)

// Lifecycle is the start and stop behaviour: proxy first in, last out, and
// the app's registry offline + sleep before SIGTERM.
type Lifecycle struct {
	// NativeSidecar is "auto" (native when the API server is 1.29 or newer),
	// "true" or "false".
	NativeSidecar NativeMode `json:"nativeSidecar"`
	// HoldApplicationUntilProxyReady keeps app containers from starting
	// until the proxy reports ready.
	HoldApplicationUntilProxyReady bool `json:"holdApplicationUntilProxyReady"`
	// ProxyReadyTimeout bounds that wait in classic mode.
	ProxyReadyTimeout meshinit.Duration `json:"proxyReadyTimeout"`
	// DrainSeconds is the preStop sleep after the offline step, while
	// endpoints controllers and registry consumers forget the pod. Unset,
	// the registry preset's drain applies (RegistryDrainSeconds).
	DrainSeconds *int32 `json:"drainSeconds,omitempty"`
	// RegistryDrainSeconds is the drain of each registry preset when
	// DrainSeconds is unset, sized to how long that registry's consumers
	// keep using an instance after it went offline (docs/lifecycle-hooks.md).
	RegistryDrainSeconds map[meshinit.Preset]int32 `json:"registryDrainSeconds"`
	// ShutdownSeconds is the app's own shutdown allowance after SIGTERM; it
	// counts towards the grace period and the proxy's listener drain.
	ShutdownSeconds int32 `json:"shutdownSeconds"`
	// Registry is the offline step.
	Registry meshinit.Registry `json:"registry"`
	// RegistryContainer names the app container the offline step is for;
	// empty picks the only app container, or the one whose environment
	// carries the registry's settings.
	RegistryContainer string `json:"registryContainer,omitempty"`
}

// Envoy holds the cluster settings of the proxy's passthrough clusters
// (circuit breakers, outlier detection, timeouts).
type Envoy struct {
	Outbound ClusterPolicy `json:"outbound"`
	Inbound  ClusterPolicy `json:"inbound"`
	// DrainSeconds is Envoy's --drain-time-s.
	DrainSeconds int32 `json:"drainSeconds"`
	// ListenAddress is the wildcard the proxy's listeners bind. "::" with
	// IPv4 compatibility serves both families (seeds/003: an IPv4-only
	// wildcard intercepted nothing on IPv6); "0.0.0.0" is for nodes whose
	// kernel has IPv6 disabled entirely.
	ListenAddress string `json:"listenAddress"`
	// ProtocolDetectionTimeout is how long the outbound and inbound listeners
	// wait for a client's first bytes before treating the connection as
	// plain TCP; server-first protocols (MySQL, SMTP) wait this long once per
	// connection. It must be positive: 0 would make Envoy wait forever.
	ProtocolDetectionTimeout meshinit.Duration `json:"protocolDetectionTimeout"`
	// MaxConnectionDuration bounds how long an outbound HTTP client
	// connection stays pinned to one original destination (seeds/000): the
	// next response after it closes the connection gracefully. 0 disables.
	MaxConnectionDuration meshinit.Duration `json:"maxConnectionDuration"`
}

// ClusterPolicy is what seeds/001 maps from an Istio DestinationRule onto
// Envoy's cluster fields.
type ClusterPolicy struct {
	// ConnectTimeout fails a dead original destination fast (seeds/000).
	ConnectTimeout meshinit.Duration `json:"connectTimeout"`
	// MaxRequestsPerConnection is 0 for unlimited.
	MaxRequestsPerConnection uint32           `json:"maxRequestsPerConnection"`
	CircuitBreakers          CircuitBreakers  `json:"circuitBreakers"`
	OutlierDetection         OutlierDetection `json:"outlierDetection"`
}

// CircuitBreakers are Envoy's default-priority thresholds.
type CircuitBreakers struct {
	MaxConnections     uint32 `json:"maxConnections"`
	MaxPendingRequests uint32 `json:"maxPendingRequests"`
	MaxRequests        uint32 `json:"maxRequests"`
	MaxRetries         uint32 `json:"maxRetries"`
}

// OutlierDetection ejects failing hosts. Enabled false leaves it out of the
// cluster entirely.
type OutlierDetection struct {
	Enabled                       bool              `json:"enabled"`
	Consecutive5xx                uint32            `json:"consecutive5xx"`
	ConsecutiveGatewayFailure     uint32            `json:"consecutiveGatewayFailure"`
	ConsecutiveLocalOriginFailure uint32            `json:"consecutiveLocalOriginFailure"`
	Interval                      meshinit.Duration `json:"interval"`
	BaseEjectionTime              meshinit.Duration `json:"baseEjectionTime"`
	MaxEjectionPercent            uint32            `json:"maxEjectionPercent"`
}

// ConflictAction says what happens when a pod would break the mesh.
type ConflictAction string

// The conflict actions.
const (
	// Refuse denies the admission with a message saying how to fix the pod.
	Refuse ConflictAction = "refuse"
	// Warn injects anyway and returns an admission warning.
	Warn ConflictAction = "warn"
)

// Checks chooses how pods that would break the mesh are treated.
type Checks struct {
	// ProxyUIDConflict: an app container runs as the proxy's UID, so its
	// traffic would silently bypass capture.
	ProxyUIDConflict ConflictAction `json:"proxyUIDConflict"`
	// ProxyPortConflict: an app container declares a port the proxy needs.
	ProxyPortConflict ConflictAction `json:"proxyPortConflict"`
	// PodSecurity: the namespace enforces a Pod Security level that what
	// the injector adds violates, so the API server would reject the pod
	// after injection. warn is for namespaces exempt in the API server's
	// PodSecurity configuration, which the injector cannot see.
	PodSecurity ConflictAction `json:"podSecurity"`
}

func q(s string) *resource.Quantity {
	v := resource.MustParse(s)
	return &v
}

// Default images. The chart overrides them with its own repositories and tags.
const (
	DefaultProxyImage = "docker.io/envoyproxy/envoy:v1.36.2"
	DefaultInitImage  = "ghcr.io/sidecar-injector/mesh-init:latest"
)

// Defaults returns the built-in defaults: the bottom layer of every policy.
func Defaults() Settings {
	return Settings{
		Proxy: Proxy{
			Image:           DefaultProxyImage,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Resources: Resources{
				Requests: ResourceValues{CPU: q("100m"), Memory: q("128Mi")},
				Limits:   ResourceValues{CPU: q("2"), Memory: q("1Gi")},
			},
			LogLevel:    "warning",
			Concurrency: 2,
			UID:         meshinit.ProxyUID,
			GID:         meshinit.ProxyGID,
			Ports: ProxyPorts{Admin: meshinit.ProxyAdminPort, Outbound: meshinit.ProxyOutboundPort, Inbound: meshinit.ProxyInboundPort,
				Readiness: meshinit.ProxyReadinessPort, Stats: meshinit.ProxyStatsPort},
		},
		Init: Init{
			Image:           DefaultInitImage,
			ImagePullPolicy: corev1.PullIfNotPresent,
			// The CPU limit is the proxy's: mesh-init and the iptables
			// programs it runs take about 70ms of CPU, which a 100m CFS
			// quota stretched to 0.5s of wall time, on every pod start
			// (docs/lossless.md, "Start and stop times"). It is rendered at
			// most the proxy's limit (inject.initResources), so the pod's
			// effective CPU limit, the larger of its containers' sum and any
			// one init container's, does not change.
			Resources: Resources{
				Requests: ResourceValues{CPU: q("10m"), Memory: q("16Mi")},
				Limits:   ResourceValues{CPU: q("2"), Memory: q("64Mi")},
			},
			IPTablesMode: meshinit.ModeAuto,
			IPv6:         meshinit.IPv6Auto,
		},
		Capture: Capture{
			Mode:                 CaptureInit,
			IncludeInboundPorts:  meshinit.PortSet{All: true},
			IncludeOutboundCIDRs: meshinit.CIDRSet{All: true},
		},
		Lifecycle: Lifecycle{
			NativeSidecar:                  NativeAuto,
			HoldApplicationUntilProxyReady: true,
			ProxyReadyTimeout:              meshinit.Duration(60e9),
			RegistryDrainSeconds:           DefaultRegistryDrainSeconds(),
			ShutdownSeconds:                20,
			Registry:                       meshinit.Registry{Preset: meshinit.PresetNone}, // timeout 0: the preset's own (meshinit.DefaultOfflineTimeouts)
		},
		Envoy: Envoy{
			Outbound: ClusterPolicy{
				ConnectTimeout: meshinit.Duration(2e9),
				// A passthrough cluster carries all of the pod's outbound
				// traffic to every destination, so its thresholds are a
				// pod-wide ceiling, not per service: policies tighten them.
				CircuitBreakers: CircuitBreakers{
					MaxConnections: 65536, MaxPendingRequests: 65536, MaxRequests: 65536, MaxRetries: 3,
				},
				OutlierDetection: OutlierDetection{
					Enabled:                       true,
					Consecutive5xx:                5,
					ConsecutiveGatewayFailure:     5,
					ConsecutiveLocalOriginFailure: 5,
					Interval:                      meshinit.Duration(10e9),
					BaseEjectionTime:              meshinit.Duration(30e9),
					// Ejection on a passthrough cluster only closes the
					// ejected destination's connections; with fewer than ten
					// destinations a 10% cap would never eject anything.
					MaxEjectionPercent: 100,
				},
			},
			Inbound: ClusterPolicy{
				ConnectTimeout: meshinit.Duration(1e9),
				CircuitBreakers: CircuitBreakers{
					MaxConnections: 65536, MaxPendingRequests: 65536, MaxRequests: 65536, MaxRetries: 3,
				},
			},
			DrainSeconds:             5,
			ListenAddress:            "::",
			ProtocolDetectionTimeout: meshinit.Duration(100 * time.Millisecond),
			MaxConnectionDuration:    meshinit.Duration(60 * time.Second),
		},
		Checks: Checks{ProxyUIDConflict: Refuse, ProxyPortConflict: Refuse, PodSecurity: Refuse},
	}
}

// Validate checks every value that a policy or annotation could get wrong.
// Each problem is at its field path under path (nil for the settings
// themselves), in the order of their lines ("path: detail").
func (s *Settings) Validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	invalid := func(p *field.Path, v any, detail string) { errs = append(errs, field.Invalid(p, v, detail)) }
	for _, img := range []struct {
		path  *field.Path
		value string
	}{{path.Child("proxy", "image"), s.Proxy.Image}, {path.Child("init", "image"), s.Init.Image}} {
		if img.value == "" {
			errs = append(errs, field.Required(img.path, "must not be empty"))
		} else if err := checkImage(img.value); err != nil {
			invalid(img.path, img.value, fmt.Sprintf("%q is %s", img.value, err))
		}
	}
	for _, pp := range []struct {
		path  *field.Path
		value corev1.PullPolicy
	}{{path.Child("proxy", "imagePullPolicy"), s.Proxy.ImagePullPolicy}, {path.Child("init", "imagePullPolicy"), s.Init.ImagePullPolicy}} {
		switch pp.value {
		case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
		default:
			errs = append(errs, problem(field.ErrorTypeNotSupported, pp.path, pp.value, fmt.Sprintf("%q is not Always, IfNotPresent or Never", pp.value)))
		}
	}
	if v := s.Proxy.EnvoyVersion; v != "" && !envoyVersion.MatchString(v) {
		invalid(path.Child("proxy", "envoyVersion"), v, fmt.Sprintf("%q is not an Envoy version such as 1.37", v))
	}
	if !validLogLevel(s.Proxy.LogLevel) {
		invalid(path.Child("proxy", "logLevel"), s.Proxy.LogLevel, fmt.Sprintf("%q is not one of %s", s.Proxy.LogLevel, logLevelList))
	}
	if s.Proxy.Concurrency < 0 || s.Proxy.Concurrency > maxConcurrency {
		invalid(path.Child("proxy", "concurrency"), s.Proxy.Concurrency, fmt.Sprintf("%d is not between 0 (all cores) and %d", s.Proxy.Concurrency, maxConcurrency))
	}
	// Kubernetes takes user and group ids up to 2147483647.
	if s.Proxy.UID <= 0 || s.Proxy.UID > math.MaxInt32 {
		invalid(path.Child("proxy", "uid"), s.Proxy.UID, fmt.Sprintf("%d is not between 1 and %d (the proxy must not run as root)", s.Proxy.UID, math.MaxInt32))
	}
	if s.Proxy.GID <= 0 || s.Proxy.GID > math.MaxInt32 {
		invalid(path.Child("proxy", "gid"), s.Proxy.GID, fmt.Sprintf("%d is not between 1 and %d (the proxy must not run as root)", s.Proxy.GID, math.MaxInt32))
	}
	seen := map[int32]string{}
	for _, port := range []struct {
		name  string
		value int32
	}{{"admin", s.Proxy.Ports.Admin}, {"outbound", s.Proxy.Ports.Outbound}, {"inbound", s.Proxy.Ports.Inbound},
		{"readiness", s.Proxy.Ports.Readiness}, {"stats", s.Proxy.Ports.Stats}} {
		p := path.Child("proxy", "ports", port.name)
		if !meshinit.IsPort(int64(port.value)) {
			invalid(p, port.value, fmt.Sprintf("%d is not a port (%s)", port.value, meshinit.PortRangeText))
		} else if other, dup := seen[port.value]; dup {
			errs = append(errs, problem(field.ErrorTypeDuplicate, p, port.value, fmt.Sprintf("%d is also the %s port", port.value, other)))
		}
		seen[port.value] = port.name
	}
	errs = append(errs, s.Proxy.Resources.validate(path.Child("proxy", "resources"))...)
	errs = append(errs, s.Init.Resources.validate(path.Child("init", "resources"))...)
	switch s.Init.IPTablesMode {
	case meshinit.ModeAuto, meshinit.ModeNFT, meshinit.ModeLegacy:
	default:
		invalid(path.Child("init", "iptablesMode"), s.Init.IPTablesMode, fmt.Sprintf("%q is not auto, nft or legacy", s.Init.IPTablesMode))
	}
	switch s.Init.IPv6 {
	case meshinit.IPv6Auto, meshinit.IPv6Required, meshinit.IPv6Off:
	default:
		invalid(path.Child("init", "ipv6"), s.Init.IPv6, fmt.Sprintf("%q is not auto, required or off", s.Init.IPv6))
	}
	errs = append(errs, s.Capture.Mode.validate(path.Child("capture", "mode"))...)
	switch s.Lifecycle.NativeSidecar {
	case NativeAuto, NativeTrue, NativeFalse:
	default:
		invalid(path.Child("lifecycle", "nativeSidecar"), s.Lifecycle.NativeSidecar, fmt.Sprintf("%q is not auto, true or false", s.Lifecycle.NativeSidecar))
	}
	if t := s.Lifecycle.ProxyReadyTimeout; t < meshinit.Duration(time.Second) {
		invalid(path.Child("lifecycle", "proxyReadyTimeout"), t.String(), fmt.Sprintf("%s is under 1s: the proxy could never be ready in time", t))
	} else if t > meshinit.Duration(time.Hour) {
		invalid(path.Child("lifecycle", "proxyReadyTimeout"), t.String(), fmt.Sprintf("%s is over 1h", t))
	}
	if d := s.Lifecycle.DrainSeconds; d != nil && (*d < 0 || *d > maxSeconds) {
		invalid(path.Child("lifecycle", "drainSeconds"), *d, fmt.Sprintf("%d is not between 0 and %d", *d, maxSeconds))
	}
	for _, p := range slices.Sorted(maps.Keys(s.Lifecycle.RegistryDrainSeconds)) {
		d := s.Lifecycle.RegistryDrainSeconds[p]
		if _, err := meshinit.ParsePreset(string(p)); err != nil {
			invalid(path.Child("lifecycle", "registryDrainSeconds").Key(string(p)), d, err.Error())
		} else if d < 0 || d > maxSeconds {
			invalid(path.Child("lifecycle", "registryDrainSeconds").Key(string(p)), d, fmt.Sprintf("%d is not between 0 and %d", d, maxSeconds))
		}
	}
	if d := s.Lifecycle.ShutdownSeconds; d < 0 || d > maxSeconds {
		invalid(path.Child("lifecycle", "shutdownSeconds"), d, fmt.Sprintf("%d is not between 0 and %d", d, maxSeconds))
	}
	if err := s.Lifecycle.Registry.Validate(); err != nil {
		invalid(path.Child("lifecycle", "registry"), s.Lifecycle.Registry.Preset, err.Error())
	}
	errs = append(errs, s.Envoy.Outbound.validate(path.Child("envoy", "outbound"))...)
	errs = append(errs, s.Envoy.Inbound.validate(path.Child("envoy", "inbound"))...)
	if a := s.Envoy.ListenAddress; a != "::" && a != "0.0.0.0" {
		invalid(path.Child("envoy", "listenAddress"), a, fmt.Sprintf("%q is not \"::\" (both families) or \"0.0.0.0\" (IPv4 only)", a))
	} else if a == "0.0.0.0" && s.Init.IPv6 != meshinit.IPv6Off {
		// ip6tables would redirect the pod's IPv6 connections to a port
		// with no IPv6 listener, which refuses them (seeds/003).
		invalid(path.Child("envoy", "listenAddress"), a, fmt.Sprintf(
			"\"0.0.0.0\" accepts IPv4 only, but init.ipv6 is %q, so IPv6 connections would be captured and then refused; use \"::\" (both families), or set init.ipv6: off on nodes without IPv6",
			s.Init.IPv6))
	}
	if t := s.Envoy.ProtocolDetectionTimeout; t <= 0 {
		invalid(path.Child("envoy", "protocolDetectionTimeout"), t.String(), "must be positive, such as 100ms (0 would stall server-first protocols forever)")
	} else {
		errs = append(errs, wholeMillis(path.Child("envoy", "protocolDetectionTimeout"), t)...)
	}
	if t := s.Envoy.MaxConnectionDuration; t < 0 {
		invalid(path.Child("envoy", "maxConnectionDuration"), t.String(), "must not be negative (0 disables it)")
	} else {
		errs = append(errs, wholeMillis(path.Child("envoy", "maxConnectionDuration"), t)...)
	}
	if s.Envoy.DrainSeconds < 0 {
		invalid(path.Child("envoy", "drainSeconds"), s.Envoy.DrainSeconds, "must not be negative")
	}
	for _, c := range []struct {
		name  string
		value ConflictAction
	}{{"proxyUIDConflict", s.Checks.ProxyUIDConflict}, {"proxyPortConflict", s.Checks.ProxyPortConflict}, {"podSecurity", s.Checks.PodSecurity}} {
		if c.value != Refuse && c.value != Warn {
			errs = append(errs, problem(field.ErrorTypeNotSupported, path.Child("checks", c.name), c.value, fmt.Sprintf("%q is not refuse or warn", c.value)))
		}
	}
	return sortProblems(errs)
}

// relatedFields are the other fields of a rule across fields, by the
// field its problem is reported at: a request above its limit is reported
// at the request, and the limit is as much to blame.
var relatedFields = map[string][]string{
	"proxy.resources.requests.cpu":    {"proxy.resources.limits.cpu"},
	"proxy.resources.requests.memory": {"proxy.resources.limits.memory"},
	"init.resources.requests.cpu":     {"init.resources.limits.cpu"},
	"init.resources.requests.memory":  {"init.resources.limits.memory"},
	"envoy.listenAddress":             {"init.ipv6"},
}

// RelatedFields are the settings a problem reported at fieldPath (a path
// of Settings.Validate(nil)) involves besides fieldPath itself.
func RelatedFields(fieldPath string) []string { return relatedFields[fieldPath] }

func (r Resources) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	check := func(name string, req, lim *resource.Quantity) {
		if req != nil && req.Sign() < 0 {
			errs = append(errs, field.Invalid(path.Child("requests", name), req.String(), "must not be negative"))
		}
		if lim != nil && lim.Sign() < 0 {
			errs = append(errs, field.Invalid(path.Child("limits", name), lim.String(), "must not be negative"))
		}
		if req != nil && lim != nil && req.Cmp(*lim) > 0 {
			errs = append(errs, field.Invalid(path.Child("requests", name), req.String(), fmt.Sprintf("%s exceeds the limit %s", req.String(), lim.String())))
		}
	}
	check("cpu", r.Requests.CPU, r.Limits.CPU)
	check("memory", r.Requests.Memory, r.Limits.Memory)
	return errs
}

func (c ClusterPolicy) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if c.ConnectTimeout <= 0 {
		errs = append(errs, field.Invalid(path.Child("connectTimeout"), c.ConnectTimeout.String(), "must be positive, such as 2s"))
	} else {
		errs = append(errs, wholeMillis(path.Child("connectTimeout"), c.ConnectTimeout)...)
	}
	od := c.OutlierDetection
	odPath := path.Child("outlierDetection")
	// Checked whether or not detection is enabled: a policy that turns
	// it on later inherits these values.
	if od.MaxEjectionPercent > 100 {
		errs = append(errs, field.Invalid(odPath.Child("maxEjectionPercent"), od.MaxEjectionPercent, fmt.Sprintf("%d is over 100", od.MaxEjectionPercent)))
	}
	if od.Enabled {
		if od.Interval <= 0 {
			errs = append(errs, field.Invalid(odPath.Child("interval"), od.Interval.String(), "must be positive, such as 10s"))
		}
		if od.BaseEjectionTime <= 0 {
			errs = append(errs, field.Invalid(odPath.Child("baseEjectionTime"), od.BaseEjectionTime.String(), "must be positive, such as 30s"))
		}
	}
	if od.Interval > 0 {
		errs = append(errs, wholeMillis(odPath.Child("interval"), od.Interval)...)
	}
	if od.BaseEjectionTime > 0 {
		errs = append(errs, wholeMillis(odPath.Child("baseEjectionTime"), od.BaseEjectionTime)...)
	}
	return errs
}

// maxConcurrency is the most Envoy worker threads a policy may ask for,
// the same bound as the proxy-concurrency annotation's.
const maxConcurrency = 64

// maxSeconds bounds the drain and shutdown seconds, in settings, bounds
// and annotations alike.
const maxSeconds = 3600

// wholeMillis refuses a duration Envoy would truncate: it reads these
// timeouts and intervals in whole milliseconds, so 999us becomes 0 — which
// for a listener filter timeout means "wait forever", for a connect
// timeout "fail every connection" and for an ejection interval "run
// constantly".
func wholeMillis(path *field.Path, d meshinit.Duration) field.ErrorList {
	if time.Duration(d)%time.Millisecond != 0 {
		return field.ErrorList{field.Invalid(path, d.String(),
			fmt.Sprintf("%s is not a whole number of milliseconds (Envoy would read %s)", d, meshinit.Duration(time.Duration(d).Truncate(time.Millisecond))))}
	}
	return nil
}

var envoyVersion = regexp.MustCompile(`^v?\d{1,4}\.\d{1,4}(\.\d{1,4})?$`)

var logLevels = []string{"trace", "debug", "info", "warning", "warn", "error", "critical", "off"}

const logLevelList = "trace, debug, info, warning, warn, error, critical, off"

func validLogLevel(s string) bool {
	for _, l := range logLevels {
		if s == l {
			return true
		}
	}
	return false
}

// Drain is the effective drain sleep in seconds: DrainSeconds when set,
// else the registry preset's drain, else that of preset none.
func (l Lifecycle) Drain() int32 {
	if l.DrainSeconds != nil {
		return *l.DrainSeconds
	}
	p := l.Registry.Preset
	if p == "" {
		p = meshinit.PresetNone
	}
	if d, ok := l.RegistryDrainSeconds[p]; ok {
		return d
	}
	return DefaultRegistryDrainSeconds()[p]
}

// DefaultRegistryDrainSeconds are the built-in drains per preset: how long
// consumers of each registry keep using an instance after it went offline,
// with Spring Cloud LoadBalancer's 35s cache on top where Spring consumers
// are the common case (docs/lifecycle-hooks.md, "How long to drain").
func DefaultRegistryDrainSeconds() map[meshinit.Preset]int32 {
	return map[meshinit.Preset]int32{
		meshinit.PresetNone:        5,
		meshinit.PresetDubbo:       20,
		meshinit.PresetSpringCloud: 95,
		meshinit.PresetEureka:      95,
		meshinit.PresetNacos:       40,
		meshinit.PresetConsul:      40,
		meshinit.PresetEDAS:        30,
		meshinit.PresetHTTP:        5,
	}
}

// Propagation is how long a registry itself takes to tell its consumers
// an instance went offline, before any client-side load-balancer cache: a
// drain shorter than this loses traffic whatever the consumers do.
type Propagation struct {
	Seconds int32
	// Why names the delays that add up, with their defaults.
	Why string
}

// RegistryPropagation is Propagation by preset, from each registry's
// documented defaults (docs/lifecycle-hooks.md cites the sources).
var RegistryPropagation = map[meshinit.Preset]Propagation{
	meshinit.PresetEureka:      {60, "the Eureka server's read-only response cache (30s) plus the clients' registry fetch (30s)"},
	meshinit.PresetSpringCloud: {10, "the fastest registry behind Spring Cloud's endpoint (Nacos 1.x clients poll every 10s; Eureka takes 60s)"},
	meshinit.PresetNacos:       {10, "Nacos 1.x clients' fallback poll (10s; 2.x pushes within about 2s)"},
	meshinit.PresetDubbo:       {10, "the registry's notification to subscribed consumers (Nacos 1.x polls every 10s)"},
	meshinit.PresetEDAS:        {30, "the EDAS/MSE agent's own lossless-offline wait (30s in Alibaba Cloud's preStop)"},
}
