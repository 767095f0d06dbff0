package envoy

import (
	"fmt"
	"net/netip"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

var unmarshalAny = proto.UnmarshalOptions{}

// The checks Envoy makes only when it builds its objects from a static
// bootstrap (listener manager, cluster manager, route tables), for the
// shapes a sidecar bootstrap has: listeners with socket addresses, HTTP
// connection managers with inline route tables, tcp_proxy, static and
// ORIGINAL_DST clusters, the admin listener. Each message says what Envoy
// says at start (docs/envoy.md "What validation checks beyond the schema").

// semantic runs those checks on a bootstrap that satisfies the schema.
func (c *checker) semantic(b *bootstrapv3.Bootstrap) {
	sr := b.GetStaticResources()
	clusters := map[string]int{}
	for i, cl := range sr.GetClusters() {
		p := fmt.Sprintf("static_resources.clusters[%d]", i)
		if j, dup := clusters[cl.GetName()]; dup {
			c.add(p+".name", fmt.Sprintf("%q is also the name of static_resources.clusters[%d] (Envoy: cluster manager: duplicate cluster '%s')", cl.GetName(), j, cl.GetName()))
			continue
		}
		clusters[cl.GetName()] = i
		c.cluster(cl, p)
	}

	type bound struct {
		what string
		addr netip.Addr
		port uint32
	}
	var bounds []bound
	listeners := map[string]int{}
	for i, l := range sr.GetListeners() {
		p := fmt.Sprintf("static_resources.listeners[%d]", i)
		if j, dup := listeners[l.GetName()]; dup {
			// Envoy keeps the first static listener of a name and drops
			// the second without an error: silently missing.
			c.add(p+".name", fmt.Sprintf("%q is also the name of static_resources.listeners[%d]; Envoy would silently keep only one of them", l.GetName(), j))
		} else {
			listeners[l.GetName()] = i
		}
		if l.GetAddress() == nil {
			if l.GetApiListener() == nil && l.GetInternalListener() == nil {
				c.add(p+".address", fmt.Sprintf("is missing (Envoy: error adding listener named '%s': address is necessary)", l.GetName()))
			}
		} else if a, port, ok := c.socketAddress(l.GetAddress(), p+".address"); ok {
			bounds = append(bounds, bound{fmt.Sprintf("static_resources.listeners[%d] (%s)", i, l.GetName()), a, port})
		}
		c.listenerFilters(l, p, clusters)
	}
	if adm := b.GetAdmin().GetAddress(); adm != nil {
		if a, port, ok := c.socketAddress(adm, "admin.address"); ok {
			bounds = append(bounds, bound{"admin", a, port})
		}
	}
	for i, x := range bounds {
		for _, y := range bounds[:i] {
			if x.port != y.port || x.port == 0 || !overlap(x.addr, y.addr) {
				continue
			}
			path := x.what
			if k, _, ok := strings.Cut(path, " ("); ok {
				path = k
			}
			c.add(path+".address.socket_address.port_value", fmt.Sprintf(
				"%s binds %s, which %s already binds (%s); one of them could not start (Envoy: duplicate address, or cannot bind)",
				x.what, hostPort(x.addr, x.port), y.what, hostPort(y.addr, y.port)))
		}
	}
}

// cluster checks what Envoy's cluster factories check.
func (c *checker) cluster(cl *clusterv3.Cluster, p string) {
	if cl.GetClusterType() != nil {
		return // an extension cluster type checks its own configuration
	}
	t, lb := cl.GetType(), cl.GetLbPolicy()
	switch {
	case t == clusterv3.Cluster_ORIGINAL_DST && lb != clusterv3.Cluster_CLUSTER_PROVIDED:
		what := lb.String()
		if !hasLBPolicy(cl) {
			what = "ROUND_ROBIN (the default when lb_policy is left out)"
		}
		c.add(p+".lb_policy", fmt.Sprintf("%s is not valid for an ORIGINAL_DST cluster: set lb_policy: CLUSTER_PROVIDED (Envoy: cluster: LB policy %s is not valid for Cluster type ORIGINAL_DST. Only 'CLUSTER_PROVIDED' is allowed with cluster type 'ORIGINAL_DST')", what, lb.String()))
	case t != clusterv3.Cluster_ORIGINAL_DST && lb == clusterv3.Cluster_CLUSTER_PROVIDED:
		c.add(p+".lb_policy", fmt.Sprintf("CLUSTER_PROVIDED needs a cluster type that provides its load balancer, such as ORIGINAL_DST, not %s (Envoy: cluster provided LB specified but cluster '%s' did not provide one)", t, cl.GetName()))
	}
	if t == clusterv3.Cluster_ORIGINAL_DST && cl.GetLoadAssignment() != nil {
		c.add(p+".load_assignment", "an ORIGINAL_DST cluster takes its hosts from each connection's original destination (Envoy: ORIGINAL_DST clusters must have no load assignment configured)")
	}
}

// hasLBPolicy tells an lb_policy written as ROUND_ROBIN from one left out
// (proto3 enums have no presence: both read as ROUND_ROBIN, so a policy
// author who wrote nothing is told what Envoy assumed).
func hasLBPolicy(cl *clusterv3.Cluster) bool {
	return cl.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN
}

// socketAddress checks a listener's or the admin's address and returns it.
func (c *checker) socketAddress(a *corev3.Address, p string) (netip.Addr, uint32, bool) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return netip.Addr{}, 0, false
	}
	p += ".socket_address"
	if sa.GetProtocol() != corev3.SocketAddress_TCP || sa.GetResolverName() != "" {
		return netip.Addr{}, 0, false
	}
	addr, err := netip.ParseAddr(sa.GetAddress())
	if err != nil || addr.Zone() != "" {
		c.add(p+".address", fmt.Sprintf("%q is not an IP address (Envoy: malformed IP address: %s)", sa.GetAddress(), sa.GetAddress()))
		return netip.Addr{}, 0, false
	}
	if sa.GetIpv4Compat() && !(addr.Is6() && (addr.IsUnspecified() || addr.Is4In6())) {
		c.add(p+".ipv4_compat", fmt.Sprintf("%s cannot accept IPv4 on an IPv6 socket; only \"::\" or an IPv4-mapped IPv6 address can set ipv4_compat (Envoy: Only IPv6 address '::' or valid IPv4-mapped IPv6 address can set ipv4_compat)", sa.GetAddress()))
	}
	return addr, sa.GetPortValue(), true
}

// overlap reports whether two addresses bound on one port collide: the
// same address, or a wildcard of either family against anything (Envoy
// sets SO_REUSEPORT, so the second bind may even succeed and steal
// connections instead of failing).
func overlap(a, b netip.Addr) bool {
	return a == b || a.IsUnspecified() || b.IsUnspecified()
}

func hostPort(a netip.Addr, port uint32) string {
	return netip.AddrPortFrom(a, uint16(port)).String()
}

// listenerFilters checks the clusters the listener's network filters name.
func (c *checker) listenerFilters(l *listenerv3.Listener, p string, clusters map[string]int) {
	chains := l.GetFilterChains()
	for i, fc := range chains {
		c.filters(fc.GetFilters(), fmt.Sprintf("%s.filter_chains[%d]", p, i), clusters)
	}
	if d := l.GetDefaultFilterChain(); d != nil {
		c.filters(d.GetFilters(), p+".default_filter_chain", clusters)
	}
}

const (
	hcmType      = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	tcpProxyType = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
)

func (c *checker) filters(fs []*listenerv3.Filter, p string, clusters map[string]int) {
	for i, f := range fs {
		tc := f.GetTypedConfig()
		if tc == nil {
			continue
		}
		fp := fmt.Sprintf("%s.filters[%d].typed_config", p, i)
		switch tc.GetTypeUrl() {
		case hcmType:
			m := &hcmv3.HttpConnectionManager{}
			if anypb.UnmarshalTo(tc, m, unmarshalAny) == nil && m.GetRouteConfig() != nil {
				c.routes(m.GetRouteConfig(), anyPath(fp, "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")+"route_config", clusters)
			}
		case tcpProxyType:
			m := &tcpproxyv3.TcpProxy{}
			if anypb.UnmarshalTo(tc, m, unmarshalAny) != nil {
				continue
			}
			tp := anyPath(fp, "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy")
			// Envoy accepts a missing cluster here at start and then
			// refuses every connection: refused here all the same.
			if name := m.GetCluster(); name != "" {
				c.clusterRef(clusters, name, tp+"cluster", "tcp_proxy would refuse every connection")
			}
			for j, w := range m.GetWeightedClusters().GetClusters() {
				c.clusterRef(clusters, w.GetName(), fmt.Sprintf("%sweighted_clusters.clusters[%d].name", tp, j), "tcp_proxy would refuse its share of connections")
			}
		}
	}
}

// routes checks an inline route table as Envoy does at load: its clusters
// exist (validate_clusters defaults to true for a static route table) and
// no domain is served by two virtual hosts.
func (c *checker) routes(rc *routev3.RouteConfiguration, p string, clusters map[string]int) {
	validate := rc.GetValidateClusters() == nil || rc.GetValidateClusters().GetValue()
	domains := map[string]int{}
	for i, vh := range rc.GetVirtualHosts() {
		vp := fmt.Sprintf("%s.virtual_hosts[%d]", p, i)
		for j, d := range vh.GetDomains() {
			key := strings.ToLower(d)
			if k, dup := domains[key]; dup {
				c.add(fmt.Sprintf("%s.domains[%d]", vp, j), fmt.Sprintf("%q is also a domain of virtual_hosts[%d] (Envoy: Only unique values for domains are permitted. Duplicate entry of domain %s)", d, k, d))
				continue
			}
			domains[key] = i
		}
		if !validate {
			continue
		}
		for j, r := range vh.GetRoutes() {
			ra := r.GetRoute()
			if ra == nil {
				continue
			}
			rp := fmt.Sprintf("%s.routes[%d].route", vp, j)
			if name := ra.GetCluster(); name != "" {
				c.clusterRef(clusters, name, rp+".cluster", fmt.Sprintf("Envoy: route: unknown cluster '%s'", name))
			}
			for k, w := range ra.GetWeightedClusters().GetClusters() {
				c.clusterRef(clusters, w.GetName(), fmt.Sprintf("%s.weighted_clusters.clusters[%d].name", rp, k), fmt.Sprintf("Envoy: route: unknown weighted cluster '%s'", w.GetName()))
			}
		}
	}
}

func (c *checker) clusterRef(clusters map[string]int, name, p, consequence string) {
	if _, ok := clusters[name]; !ok {
		c.add(p, fmt.Sprintf("no cluster is named %q in static_resources.clusters (%s)", name, consequence))
	}
}

// capture checks that every redirect target has a listener for every
// redirected family.
func (c *checker) capture(b *bootstrapv3.Bootstrap, want Capture) {
	for _, port := range want.Ports {
		v4, v6 := false, false
		var where []string
		for i, l := range b.GetStaticResources().GetListeners() {
			sa := l.GetAddress().GetSocketAddress()
			if sa == nil || sa.GetPortValue() != port || sa.GetProtocol() != corev3.SocketAddress_TCP {
				continue
			}
			addr, err := netip.ParseAddr(sa.GetAddress())
			if err != nil || !addr.IsUnspecified() {
				continue
			}
			where = append(where, fmt.Sprintf("static_resources.listeners[%d].address.socket_address", i))
			if addr.Is4() {
				v4 = true
			} else {
				v6 = true
				v4 = v4 || sa.GetIpv4Compat()
			}
		}
		switch {
		case len(where) == 0:
			c.add("static_resources.listeners", fmt.Sprintf("no listener binds a wildcard address on port %d, where the capture rules redirect the pod's connections: every captured connection would be refused", port))
		case !v4:
			c.add(where[0], fmt.Sprintf("port %d accepts IPv6 only (\"::\" without ipv4_compat: true), but the capture rules redirect IPv4 connections there: they would be refused", port))
		case want.IPv6 && !v6:
			c.add(where[0], fmt.Sprintf("port %d accepts IPv4 only (0.0.0.0), but the capture rules redirect IPv6 connections there too (init.ipv6 is not off): they would be refused; listen on \"::\" with ipv4_compat: true, or set init.ipv6: off", port))
		}
	}
}
