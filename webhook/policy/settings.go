package policy

import (
	"fmt"
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

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
	// endpoints controllers and registry consumers forget the pod.
	DrainSeconds int32 `json:"drainSeconds"`
	// ShutdownSeconds is the app's own shutdown allowance after SIGTERM; it
	// counts towards the grace period and the proxy's listener drain.
	ShutdownSeconds int32 `json:"shutdownSeconds"`
	// Registry is the offline step.
	Registry meshinit.Registry `json:"registry"`
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
			UID:         1337,
			GID:         1337,
			Ports:       ProxyPorts{Admin: 15000, Outbound: 15001, Inbound: 15006, Readiness: 15021, Stats: 15090},
		},
		Init: Init{
			Image:           DefaultInitImage,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Resources: Resources{
				Requests: ResourceValues{CPU: q("10m"), Memory: q("16Mi")},
				Limits:   ResourceValues{CPU: q("100m"), Memory: q("64Mi")},
			},
			IPTablesMode: meshinit.ModeAuto,
			IPv6:         meshinit.IPv6Auto,
		},
		Capture: Capture{
			IncludeInboundPorts:  meshinit.PortSet{All: true},
			IncludeOutboundCIDRs: meshinit.CIDRSet{All: true},
		},
		Lifecycle: Lifecycle{
			NativeSidecar:                  NativeAuto,
			HoldApplicationUntilProxyReady: true,
			ProxyReadyTimeout:              meshinit.Duration(60e9),
			DrainSeconds:                   5,
			ShutdownSeconds:                20,
			Registry:                       meshinit.Registry{Preset: meshinit.PresetNone, Timeout: meshinit.Duration(5e9)},
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
		Checks: Checks{ProxyUIDConflict: Refuse, ProxyPortConflict: Refuse},
	}
}

// Validate checks every value that a policy or annotation could get wrong,
// with the field path in each message.
func (s *Settings) Validate() error {
	var errs fieldErrors
	for path, img := range map[string]string{"proxy.image": s.Proxy.Image, "init.image": s.Init.Image} {
		if img == "" {
			errs.add(path, "must not be empty")
		} else if err := checkImage(img); err != nil {
			errs.add(path, fmt.Sprintf("%q is %s", img, err))
		}
	}
	for path, p := range map[string]corev1.PullPolicy{"proxy.imagePullPolicy": s.Proxy.ImagePullPolicy, "init.imagePullPolicy": s.Init.ImagePullPolicy} {
		switch p {
		case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
		default:
			errs.add(path, fmt.Sprintf("%q is not Always, IfNotPresent or Never", p))
		}
	}
	if !validLogLevel(s.Proxy.LogLevel) {
		errs.add("proxy.logLevel", fmt.Sprintf("%q is not one of %s", s.Proxy.LogLevel, logLevelList))
	}
	if s.Proxy.Concurrency < 0 || s.Proxy.Concurrency > maxConcurrency {
		errs.add("proxy.concurrency", fmt.Sprintf("%d is not between 0 (all cores) and %d", s.Proxy.Concurrency, maxConcurrency))
	}
	// Kubernetes takes user and group ids up to 2147483647.
	if s.Proxy.UID <= 0 || s.Proxy.UID > math.MaxInt32 {
		errs.add("proxy.uid", fmt.Sprintf("%d is not between 1 and %d (the proxy must not run as root)", s.Proxy.UID, math.MaxInt32))
	}
	if s.Proxy.GID <= 0 || s.Proxy.GID > math.MaxInt32 {
		errs.add("proxy.gid", fmt.Sprintf("%d is not between 1 and %d (the proxy must not run as root)", s.Proxy.GID, math.MaxInt32))
	}
	seen := map[int32]string{}
	for name, p := range map[string]int32{"admin": s.Proxy.Ports.Admin, "outbound": s.Proxy.Ports.Outbound,
		"inbound": s.Proxy.Ports.Inbound, "readiness": s.Proxy.Ports.Readiness, "stats": s.Proxy.Ports.Stats} {
		if p < 1 || p > 65535 {
			errs.add("proxy.ports."+name, fmt.Sprintf("%d is not a port (1-65535)", p))
		} else if other, dup := seen[p]; dup {
			errs.add("proxy.ports."+name, fmt.Sprintf("%d is also the %s port", p, other))
		}
		seen[p] = name
	}
	errs.addErr("proxy.resources", s.Proxy.Resources.validate())
	errs.addErr("init.resources", s.Init.Resources.validate())
	switch s.Init.IPTablesMode {
	case meshinit.ModeAuto, meshinit.ModeNFT, meshinit.ModeLegacy:
	default:
		errs.add("init.iptablesMode", fmt.Sprintf("%q is not auto, nft or legacy", s.Init.IPTablesMode))
	}
	switch s.Init.IPv6 {
	case meshinit.IPv6Auto, meshinit.IPv6Required, meshinit.IPv6Off:
	default:
		errs.add("init.ipv6", fmt.Sprintf("%q is not auto, required or off", s.Init.IPv6))
	}
	switch s.Lifecycle.NativeSidecar {
	case NativeAuto, NativeTrue, NativeFalse:
	default:
		errs.add("lifecycle.nativeSidecar", fmt.Sprintf("%q is not auto, true or false", s.Lifecycle.NativeSidecar))
	}
	if s.Lifecycle.ProxyReadyTimeout < meshinit.Duration(time.Second) {
		errs.add("lifecycle.proxyReadyTimeout", fmt.Sprintf("%s is under 1s: the proxy could never be ready in time", s.Lifecycle.ProxyReadyTimeout))
	} else if s.Lifecycle.ProxyReadyTimeout > meshinit.Duration(time.Hour) {
		errs.add("lifecycle.proxyReadyTimeout", fmt.Sprintf("%s is over 1h", s.Lifecycle.ProxyReadyTimeout))
	}
	if s.Lifecycle.DrainSeconds < 0 || s.Lifecycle.DrainSeconds > 3600 {
		errs.add("lifecycle.drainSeconds", fmt.Sprintf("%d is not between 0 and 3600", s.Lifecycle.DrainSeconds))
	}
	if s.Lifecycle.ShutdownSeconds < 0 || s.Lifecycle.ShutdownSeconds > 3600 {
		errs.add("lifecycle.shutdownSeconds", fmt.Sprintf("%d is not between 0 and 3600", s.Lifecycle.ShutdownSeconds))
	}
	errs.addErr("lifecycle.registry", s.Lifecycle.Registry.Validate())
	errs.addErr("envoy.outbound", s.Envoy.Outbound.validate())
	errs.addErr("envoy.inbound", s.Envoy.Inbound.validate())
	if s.Envoy.ListenAddress != "::" && s.Envoy.ListenAddress != "0.0.0.0" {
		errs.add("envoy.listenAddress", fmt.Sprintf("%q is not \"::\" (both families) or \"0.0.0.0\" (IPv4 only)", s.Envoy.ListenAddress))
	}
	if s.Envoy.ProtocolDetectionTimeout <= 0 {
		errs.add("envoy.protocolDetectionTimeout", "must be positive, such as 100ms (0 would stall server-first protocols forever)")
	} else {
		errs.addErr("envoy.protocolDetectionTimeout", wholeMillis(s.Envoy.ProtocolDetectionTimeout))
	}
	if s.Envoy.MaxConnectionDuration < 0 {
		errs.add("envoy.maxConnectionDuration", "must not be negative (0 disables it)")
	} else {
		errs.addErr("envoy.maxConnectionDuration", wholeMillis(s.Envoy.MaxConnectionDuration))
	}
	if s.Envoy.DrainSeconds < 0 {
		errs.add("envoy.drainSeconds", "must not be negative")
	}
	for path, a := range map[string]ConflictAction{"checks.proxyUIDConflict": s.Checks.ProxyUIDConflict,
		"checks.proxyPortConflict": s.Checks.ProxyPortConflict} {
		if a != Refuse && a != Warn {
			errs.add(path, fmt.Sprintf("%q is not refuse or warn", a))
		}
	}
	return errs.err()
}

func (r Resources) validate() error {
	var errs fieldErrors
	check := func(name string, req, lim *resource.Quantity) {
		if req != nil && req.Sign() < 0 {
			errs.add("requests."+name, "must not be negative")
		}
		if lim != nil && lim.Sign() < 0 {
			errs.add("limits."+name, "must not be negative")
		}
		if req != nil && lim != nil && req.Cmp(*lim) > 0 {
			errs.add("requests."+name, fmt.Sprintf("%s exceeds the limit %s", req.String(), lim.String()))
		}
	}
	check("cpu", r.Requests.CPU, r.Limits.CPU)
	check("memory", r.Requests.Memory, r.Limits.Memory)
	return errs.err()
}

func (c ClusterPolicy) validate() error {
	var errs fieldErrors
	if c.ConnectTimeout <= 0 {
		errs.add("connectTimeout", "must be positive, such as 2s")
	} else {
		errs.addErr("connectTimeout", wholeMillis(c.ConnectTimeout))
	}
	od := c.OutlierDetection
	// Checked whether or not detection is enabled: a policy that turns
	// it on later inherits these values.
	if od.MaxEjectionPercent > 100 {
		errs.add("outlierDetection.maxEjectionPercent", fmt.Sprintf("%d is over 100", od.MaxEjectionPercent))
	}
	if od.Enabled {
		if od.Interval <= 0 {
			errs.add("outlierDetection.interval", "must be positive, such as 10s")
		}
		if od.BaseEjectionTime <= 0 {
			errs.add("outlierDetection.baseEjectionTime", "must be positive, such as 30s")
		}
	}
	if od.Interval > 0 {
		errs.addErr("outlierDetection.interval", wholeMillis(od.Interval))
	}
	if od.BaseEjectionTime > 0 {
		errs.addErr("outlierDetection.baseEjectionTime", wholeMillis(od.BaseEjectionTime))
	}
	return errs.err()
}

// maxConcurrency is the most Envoy worker threads a policy may ask for,
// the same bound as the proxy-concurrency annotation's.
const maxConcurrency = 64

// wholeMillis refuses a duration Envoy would truncate: it reads these
// timeouts and intervals in whole milliseconds, so 999us becomes 0 — which
// for a listener filter timeout means "wait forever", for a connect
// timeout "fail every connection" and for an ejection interval "run
// constantly".
func wholeMillis(d meshinit.Duration) error {
	if time.Duration(d)%time.Millisecond != 0 {
		return fmt.Errorf("%s is not a whole number of milliseconds (Envoy would read %s)", d, meshinit.Duration(time.Duration(d).Truncate(time.Millisecond)))
	}
	return nil
}

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
