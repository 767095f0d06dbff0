package meshinit

import "strconv"

// The proxy's defaults: its UID and GID, whose traffic capture never
// redirects, and its ports. The policy's built-in settings, mesh-init's
// capture defaults and the hooks' default URLs all start from these.
const (
	ProxyUID = 1337
	ProxyGID = 1337

	// ProxyAdminPort is Envoy's admin interface (loopback only).
	ProxyAdminPort = 15000
	// ProxyOutboundPort and ProxyInboundPort receive redirected
	// connections.
	ProxyOutboundPort = 15001
	ProxyInboundPort  = 15006
	// ProxyReadinessPort serves ReadinessPath; ProxyStatsPort the
	// Prometheus metrics.
	ProxyReadinessPort = 15021
	ProxyStatsPort     = 15090

	// ReadinessPath is the proxy's readiness endpoint.
	ReadinessPath = "/healthz/ready"
)

// The proxy's default URLs, as the hooks call them from inside the pod.
var (
	DefaultAdminURL = "http://127.0.0.1:" + strconv.Itoa(ProxyAdminPort)
	DefaultReadyURL = "http://127.0.0.1:" + strconv.Itoa(ProxyReadinessPort) + ReadinessPath
	DefaultQuitURL  = DefaultAdminURL + "/quitquitquit"
)

// MinPort and MaxPort bound a TCP port number; PortRangeText is that range
// as messages and documentation write it.
const (
	MinPort       = 1
	MaxPort       = 65535
	PortRangeText = "1-65535"
)

// IsPort reports whether n is a TCP port number.
func IsPort(n int64) bool { return n >= MinPort && n <= MaxPort }
