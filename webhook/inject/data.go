package inject

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/webhook/meshinit"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// Names are the names of everything injection adds to a pod.
type Names struct {
	Init        string
	Proxy       string
	ToolsVolume string
	ProxyVolume string
}

// DefaultNames are the names used everywhere (docs, chart, tests).
var DefaultNames = Names{
	Init:        "mesh-init",
	Proxy:       "mesh-proxy",
	ToolsVolume: "mesh-tools",
	ProxyVolume: "mesh-proxy-tmp",
}

// Paths are fixed paths inside the pod.
type Paths struct {
	// ToolsDir is where the tools volume is mounted in every container.
	ToolsDir string
	// Tool is the hook tool binary mesh-init copies into ToolsDir.
	Tool string
	// Bootstrap is the file mesh-init writes the proxy's bootstrap to and
	// Envoy reads (inside ToolsDir, so every container sees the same file).
	Bootstrap string
	// Readiness is the proxy's readiness path on the readiness port.
	Readiness string
	// Stats is the proxy's Prometheus path on the stats port.
	Stats string
}

// DefaultPaths are the paths the templates and hooks agree on.
var DefaultPaths = Paths{
	ToolsDir:  "/var/run/mesh",
	Tool:      "/var/run/mesh/mesh-init",
	Bootstrap: "/var/run/mesh/envoy-bootstrap.json",
	Readiness: meshinit.ReadinessPath,
	Stats:     "/stats/prometheus",
}

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

	// InitArgs are mesh-init's arguments: "capture", the capture flags, the
	// tool installation and the compressed bootstrap to write (empty while
	// the bootstrap itself is rendered).
	InitArgs []string
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
}
