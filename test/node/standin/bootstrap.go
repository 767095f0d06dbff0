// Package standin is the Envoy STAND-IN the node tier runs in the injected
// proxy container. There is no Envoy binary on the machines this project is
// built and tested on (not in Debian, npm or the Go module proxy), so the
// node tier proves everything around the proxy with a small program that
// honours Envoy's observable contract as the injector uses it, and nothing
// more:
//
//   - Envoy's command line as the injector renders it (proxyArgs in
//     webhook/inject/engine.go); an unknown flag is an error, as in Envoy;
//   - the bootstrap mesh-init wrote (--config-path): the admin address and
//     the listeners' addresses, directions and the routes of the listeners
//     that forward to the admin cluster (readiness 15021 -> /ready, stats
//     15090 -> /stats/prometheus);
//   - TCP passthrough on the outbound (15001) and inbound (15006) listeners,
//     on both families, to the original destination (SO_ORIGINAL_DST,
//     IP6T_SO_ORIGINAL_DST), with Envoy's loop guard (a connection whose
//     original destination is the listener's own port is closed);
//   - the admin calls the hook tool makes (/ready, /quitquitquit,
//     /drain_listeners with graceful, inboundonly and skip_exit) and
//     /healthcheck/fail|ok, with Envoy's documented semantics;
//   - SIGTERM and SIGINT: exit at once (Envoy closes its listeners and exits
//     on SIGTERM; the drain is the hooks' job).
//
// It is NOT Envoy: no HTTP parsing (so no HTTP-level draining that adds
// "Connection: close", no retries, no circuit breaking, no outlier
// detection), no TLS, no xDS. Every connection it proxies is logged as one
// JSON line (direction, family, peer, original destination) so tests can
// prove traffic went through it. Its startup line says "envoy STAND-IN".
package standin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Direction is a listener's traffic direction, as in Envoy's
// traffic_direction.
type Direction string

// The directions the bootstrap uses.
const (
	Inbound     Direction = "INBOUND"
	Outbound    Direction = "OUTBOUND"
	Unspecified Direction = ""
)

// Listener is what the stand-in takes from one bootstrap listener.
type Listener struct {
	Name      string
	Address   string // host:port to bind
	V4Compat  bool   // ipv4_compat on "::": accept IPv4 too (IPV6_V6ONLY=0)
	Direction Direction
	// AdminRoutes maps an exact request path to the admin path it is
	// rewritten to (routes to the admin cluster with prefix_rewrite). A
	// listener with AdminRoutes serves HTTP; one without is TCP passthrough.
	AdminRoutes map[string]string
	// Passthrough is true for listeners whose default filter chain is a
	// tcp_proxy (or an HCM) to an ORIGINAL_DST cluster.
	Passthrough bool
}

// Bootstrap is the part of Envoy's bootstrap the stand-in honours.
type Bootstrap struct {
	AdminAddress string
	Listeners    []Listener
}

type socketAddress struct {
	Address    string `json:"address"`
	PortValue  int    `json:"port_value"`
	IPv4Compat bool   `json:"ipv4_compat"`
}

type address struct {
	SocketAddress *socketAddress `json:"socket_address"`
}

type filter struct {
	Name        string          `json:"name"`
	TypedConfig json.RawMessage `json:"typed_config"`
}

type filterChain struct {
	Filters []filter `json:"filters"`
}

type rawBootstrap struct {
	Admin struct {
		Address address `json:"address"`
	} `json:"admin"`
	StaticResources struct {
		Clusters []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"clusters"`
		Listeners []struct {
			Name               string        `json:"name"`
			Address            address       `json:"address"`
			TrafficDirection   string        `json:"traffic_direction"`
			FilterChains       []filterChain `json:"filter_chains"`
			DefaultFilterChain *filterChain  `json:"default_filter_chain"`
		} `json:"listeners"`
	} `json:"static_resources"`
}

type hcm struct {
	RouteConfig struct {
		VirtualHosts []struct {
			Routes []struct {
				Match struct {
					Path   string `json:"path"`
					Prefix string `json:"prefix"`
				} `json:"match"`
				Route struct {
					Cluster       string `json:"cluster"`
					PrefixRewrite string `json:"prefix_rewrite"`
				} `json:"route"`
			} `json:"routes"`
		} `json:"virtual_hosts"`
	} `json:"route_config"`
}

type tcpProxy struct {
	Cluster string `json:"cluster"`
}

func (a address) hostPort() (string, bool, error) {
	if a.SocketAddress == nil {
		return "", false, errors.New("only socket_address is supported")
	}
	s := a.SocketAddress
	if s.PortValue <= 0 || s.PortValue > 65535 {
		return "", false, fmt.Errorf("port_value %d", s.PortValue)
	}
	return net.JoinHostPort(s.Address, strconv.Itoa(s.PortValue)), s.IPv4Compat, nil
}

// ParseBootstrap reads the JSON bootstrap mesh-init writes.
func ParseBootstrap(b []byte) (*Bootstrap, error) {
	var raw rawBootstrap
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	out := &Bootstrap{}
	admin, _, err := raw.Admin.Address.hostPort()
	if err != nil {
		return nil, fmt.Errorf("bootstrap admin.address: %w", err)
	}
	out.AdminAddress = admin
	clusterType := map[string]string{}
	for _, c := range raw.StaticResources.Clusters {
		clusterType[c.Name] = c.Type
	}
	for _, l := range raw.StaticResources.Listeners {
		addr, compat, err := l.Address.hostPort()
		if err != nil {
			return nil, fmt.Errorf("bootstrap listener %q: %w", l.Name, err)
		}
		ln := Listener{Name: l.Name, Address: addr, V4Compat: compat, Direction: Direction(l.TrafficDirection)}
		chains := l.FilterChains
		if l.DefaultFilterChain != nil {
			chains = append(chains, *l.DefaultFilterChain)
		}
		for _, fc := range chains {
			for _, f := range fc.Filters {
				switch f.Name {
				case "envoy.filters.network.tcp_proxy":
					var tp tcpProxy
					if json.Unmarshal(f.TypedConfig, &tp) == nil && clusterType[tp.Cluster] == "ORIGINAL_DST" {
						ln.Passthrough = true
					}
				case "envoy.filters.network.http_connection_manager":
					var h hcm
					if err := json.Unmarshal(f.TypedConfig, &h); err != nil {
						return nil, fmt.Errorf("bootstrap listener %q: %w", l.Name, err)
					}
					for _, vh := range h.RouteConfig.VirtualHosts {
						for _, r := range vh.Routes {
							switch {
							case clusterType[r.Route.Cluster] == "ORIGINAL_DST":
								ln.Passthrough = true
							case r.Route.Cluster == "admin" && r.Match.Path != "":
								if ln.AdminRoutes == nil {
									ln.AdminRoutes = map[string]string{}
								}
								to := r.Route.PrefixRewrite
								if to == "" {
									to = r.Match.Path
								}
								ln.AdminRoutes[r.Match.Path] = to
							}
						}
					}
				}
			}
		}
		out.Listeners = append(out.Listeners, ln)
	}
	return out, nil
}
