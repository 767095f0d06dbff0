package envoy_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sidecar-injector/injector/webhook/envoy"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// hcmRoutes is an HTTP connection manager whose route table follows.
const hcmRoutes = filterHead + `          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
`

const listenersHead = `
static_resources:
  clusters:
  - {name: pass, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, connect_timeout: 1s}
  listeners:
`

func tcpListener(name, addr string, port int, extra string) string {
	return `  - name: ` + name + `
    address: {socket_address: {address: "` + addr + `", port_value: ` + itoa(port) + extra + `}}
    filter_chains:
    - filters:
      - name: tcp
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: s
          cluster: pass
`
}

func itoa(n int) string {
	b := []byte{}
	for n > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

// What Envoy checks only when it builds its listeners, clusters and
// routes is refused too, with the path of the field and what Envoy says.
func TestSemanticErrorsEnvoyRefusesAtStart(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []envoy.Problem
	}{
		{
			name: "route to a cluster that does not exist",
			yaml: hcmRoutes + `          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - {match: {prefix: /}, route: {cluster: nowhere}}
`,
			want: []envoy.Problem{{Path: hcmPath + "route_config.virtual_hosts[0].routes[0].route.cluster",
				Message: `no cluster is named "nowhere" in static_resources.clusters (Envoy: route: unknown cluster 'nowhere')`}},
		},
		{
			name: "weighted route to a cluster that does not exist",
			yaml: clusterHead + hcmRoutes[len("\nstatic_resources:\n"):] + `          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route: {weighted_clusters: {clusters: [{name: c, weight: 1}, {name: gone, weight: 1}]}}
`,
			want: []envoy.Problem{{Path: hcmPath + "route_config.virtual_hosts[0].routes[0].route.weighted_clusters.clusters[1].name",
				Message: `no cluster is named "gone" in static_resources.clusters (Envoy: route: unknown weighted cluster 'gone')`}},
		},
		{
			name: "a route table that opts out of cluster validation",
			yaml: hcmRoutes + `          route_config:
            validate_clusters: false
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - {match: {prefix: /}, route: {cluster: later}}
`,
		},
		{
			name: "two virtual hosts with one domain",
			yaml: hcmRoutes + `          route_config:
            virtual_hosts:
            - {name: a, domains: ["*"]}
            - {name: b, domains: ["*"]}
`,
			want: []envoy.Problem{{Path: hcmPath + "route_config.virtual_hosts[1].domains[0]",
				Message: `"*" is also a domain of virtual_hosts[0] (Envoy: Only unique values for domains are permitted. Duplicate entry of domain *)`}},
		},
		{
			name: "tcp_proxy to a cluster that does not exist",
			yaml: listenersHead + `  - name: l
    address: {socket_address: {address: "::", port_value: 15001, ipv4_compat: true}}
    filter_chains:
    - filters:
      - name: tcp
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: s
          cluster: passthrough
`,
			want: []envoy.Problem{{Path: filterPath + " (envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy): cluster",
				Message: `no cluster is named "passthrough" in static_resources.clusters (tcp_proxy would refuse every connection)`}},
		},
		{
			name: "two listeners on one port",
			yaml: listenersHead + tcpListener("a", "::", 15001, ", ipv4_compat: true") + tcpListener("b", "::", 15001, ", ipv4_compat: true"),
			want: []envoy.Problem{{Path: "static_resources.listeners[1].address.socket_address.port_value",
				Message: "static_resources.listeners[1] (b) binds [::]:15001, which static_resources.listeners[0] (a) already binds ([::]:15001); one of them could not start (Envoy: duplicate address, or cannot bind)"}},
		},
		{
			name: "0.0.0.0 and :: on one port",
			yaml: listenersHead + tcpListener("a", "0.0.0.0", 15001, "") + tcpListener("b", "::", 15001, ""),
			want: []envoy.Problem{{Path: "static_resources.listeners[1].address.socket_address.port_value",
				Message: "static_resources.listeners[1] (b) binds [::]:15001, which static_resources.listeners[0] (a) already binds (0.0.0.0:15001); one of them could not start (Envoy: duplicate address, or cannot bind)"}},
		},
		{
			name: "loopback listeners of both families may share a port",
			yaml: listenersHead + tcpListener("a", "127.0.0.1", 15001, "") + tcpListener("b", "::1", 15001, ""),
		},
		{
			name: "admin on a listener's port",
			yaml: "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 15001}}}\n" + listenersHead + tcpListener("a", "::", 15001, ", ipv4_compat: true"),
			want: []envoy.Problem{{Path: "admin.address.socket_address.port_value",
				Message: "admin binds 127.0.0.1:15001, which static_resources.listeners[0] (a) already binds ([::]:15001); one of them could not start (Envoy: duplicate address, or cannot bind)"}},
		},
		{
			name: "duplicate listener names",
			yaml: listenersHead + tcpListener("a", "::", 15001, ", ipv4_compat: true") + tcpListener("a", "::", 15006, ", ipv4_compat: true"),
			want: []envoy.Problem{{Path: "static_resources.listeners[1].name",
				Message: `"a" is also the name of static_resources.listeners[0]; Envoy would silently keep only one of them`}},
		},
		{
			name: "duplicate cluster names",
			yaml: clusterHead + "  - {name: c, type: STATIC, connect_timeout: 1s}\n",
			want: []envoy.Problem{{Path: "static_resources.clusters[1].name",
				Message: `"c" is also the name of static_resources.clusters[0] (Envoy: cluster manager: duplicate cluster 'c')`}},
		},
		{
			name: "ORIGINAL_DST without lb_policy",
			yaml: "static_resources:\n  clusters:\n  - {name: c, type: ORIGINAL_DST, connect_timeout: 1s}\n",
			want: []envoy.Problem{{Path: "static_resources.clusters[0].lb_policy",
				Message: "ROUND_ROBIN (the default when lb_policy is left out) is not valid for an ORIGINAL_DST cluster: set lb_policy: CLUSTER_PROVIDED (Envoy: cluster: LB policy ROUND_ROBIN is not valid for Cluster type ORIGINAL_DST. Only 'CLUSTER_PROVIDED' is allowed with cluster type 'ORIGINAL_DST')"}},
		},
		{
			name: "ORIGINAL_DST with another lb_policy",
			yaml: "static_resources:\n  clusters:\n  - {name: c, type: ORIGINAL_DST, lb_policy: LEAST_REQUEST, connect_timeout: 1s}\n",
			want: []envoy.Problem{{Path: "static_resources.clusters[0].lb_policy",
				Message: "LEAST_REQUEST is not valid for an ORIGINAL_DST cluster: set lb_policy: CLUSTER_PROVIDED (Envoy: cluster: LB policy LEAST_REQUEST is not valid for Cluster type ORIGINAL_DST. Only 'CLUSTER_PROVIDED' is allowed with cluster type 'ORIGINAL_DST')"}},
		},
		{
			name: "ORIGINAL_DST with endpoints",
			yaml: clusterHead + "    load_assignment: {cluster_name: c}\n",
			want: []envoy.Problem{{Path: "static_resources.clusters[0].load_assignment",
				Message: "an ORIGINAL_DST cluster takes its hosts from each connection's original destination (Envoy: ORIGINAL_DST clusters must have no load assignment configured)"}},
		},
		{
			name: "CLUSTER_PROVIDED on a static cluster",
			yaml: "static_resources:\n  clusters:\n  - {name: s, type: STATIC, lb_policy: CLUSTER_PROVIDED, connect_timeout: 1s}\n",
			want: []envoy.Problem{{Path: "static_resources.clusters[0].lb_policy",
				Message: "CLUSTER_PROVIDED needs a cluster type that provides its load balancer, such as ORIGINAL_DST, not STATIC (Envoy: cluster provided LB specified but cluster 's' did not provide one)"}},
		},
		{
			name: "0.0.0.0 with ipv4_compat",
			yaml: listenersHead + tcpListener("a", "0.0.0.0", 15001, ", ipv4_compat: true"),
			want: []envoy.Problem{{Path: "static_resources.listeners[0].address.socket_address.ipv4_compat",
				Message: `0.0.0.0 cannot accept IPv4 on an IPv6 socket; only "::" or an IPv4-mapped IPv6 address can set ipv4_compat (Envoy: Only IPv6 address '::' or valid IPv4-mapped IPv6 address can set ipv4_compat)`}},
		},
		{
			name: "an address that is not an IP",
			yaml: listenersHead + tcpListener("a", "localhost", 15001, ""),
			want: []envoy.Problem{{Path: "static_resources.listeners[0].address.socket_address.address",
				Message: `"localhost" is not an IP address (Envoy: malformed IP address: localhost)`}},
		},
		{
			name: "a listener without an address",
			yaml: "static_resources:\n  listeners:\n  - {name: a}\n",
			want: []envoy.Problem{{Path: "static_resources.listeners[0].address",
				Message: "is missing (Envoy: error adding listener named 'a': address is necessary)"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := envoy.Validate([]byte(tc.yaml))
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			var e *envoy.Error
			require.True(t, errors.As(err, &e), "%v", err)
			assert.Equal(t, tc.want, e.Problems)
		})
	}
}

// The capture rules decide which families reach the capture ports; Envoy
// cannot know, so a listener that refuses one of them is caught here.
func TestSidecarListenersAcceptWhatIsCaptured(t *testing.T) {
	ports := []uint32{15001, 15006}
	for _, tc := range []struct {
		name     string
		settings func(*policy.Settings)
		ipv6     bool
		want     string
	}{
		{name: "both families on ::", ipv6: true},
		{name: "0.0.0.0 with IPv6 captured", settings: func(s *policy.Settings) { s.Envoy.ListenAddress = "0.0.0.0" }, ipv6: true,
			want: `static_resources.listeners[0].address.socket_address: port 15001 accepts IPv4 only (0.0.0.0), but the capture rules redirect IPv6 connections there too (init.ipv6 is not off): they would be refused; listen on "::" with ipv4_compat: true, or set init.ipv6: off`},
		{name: "0.0.0.0 with IPv6 off", settings: func(s *policy.Settings) { s.Envoy.ListenAddress = "0.0.0.0" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := policy.Defaults()
			if tc.settings != nil {
				tc.settings(&s)
			}
			_, err := envoy.ValidateSidecar(render(t, s), envoy.Capture{Ports: ports, IPv6: tc.ipv6})
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}

	// IPv6 only, while IPv4 is always captured.
	y := listenersHead + tcpListener("o", "::", 15001, "") + tcpListener("i", "::", 15006, ", ipv4_compat: true")
	_, err := envoy.ValidateSidecar([]byte(y), envoy.Capture{Ports: ports, IPv6: true})
	require.Error(t, err)
	assert.Equal(t, `static_resources.listeners[0].address.socket_address: port 15001 accepts IPv6 only ("::" without ipv4_compat: true), but the capture rules redirect IPv4 connections there: they would be refused`, err.Error())

	// No listener at all on a capture port.
	y = listenersHead + tcpListener("o", "::", 15001, ", ipv4_compat: true")
	_, err = envoy.ValidateSidecar([]byte(y), envoy.Capture{Ports: ports, IPv6: true})
	require.Error(t, err)
	assert.Equal(t, "static_resources.listeners: no listener binds a wildcard address on port 15006, where the capture rules redirect the pod's connections: every captured connection would be refused", err.Error())
}
