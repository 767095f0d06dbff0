package inject

import "github.com/sidecar-injector/injector/webhook/meshinit"

// Names are the names of everything injection adds to a pod.
type Names struct {
	Init        string
	Proxy       string
	ToolsVolume string
	ProxyVolume string
	// StateVolume is the pod-scoped writable volume where an app's preStop
	// records a registry offline step for its postStart after a restart
	// in place (mesh-tools is read-only in app containers).
	StateVolume string
}

// DefaultNames are the names used everywhere (docs, chart, tests).
var DefaultNames = Names{
	Init:        "mesh-init",
	Proxy:       "mesh-proxy",
	ToolsVolume: "mesh-tools",
	ProxyVolume: "mesh-proxy-tmp",
	StateVolume: "mesh-state",
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
	// StateDir is where the state volume is mounted in app containers.
	StateDir string
}

// Record is the offline record of an app container in the state volume.
func (p Paths) Record(container string) string { return p.StateDir + "/" + container + ".offline.json" }

// DefaultPaths are the paths the templates and hooks agree on.
var DefaultPaths = Paths{
	ToolsDir:  "/var/run/mesh",
	Tool:      "/var/run/mesh/mesh-init",
	Bootstrap: "/var/run/mesh/envoy-bootstrap.json",
	Readiness: meshinit.ReadinessPath,
	Stats:     "/stats/prometheus",
	StateDir:  "/var/run/mesh-state",
}
