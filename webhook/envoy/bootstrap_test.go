package envoy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sidecar-injector/injector/templates"
	"github.com/sidecar-injector/injector/test/testkit"
	"github.com/sidecar-injector/injector/webhook/envoy"
	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/meshinit"
	"github.com/sidecar-injector/injector/webhook/policy"
)

const goldenDefault = "testdata/bootstrap-default.golden.yaml"

// render renders the built-in bootstrap template for s.
func render(t testing.TB, s policy.Settings) []byte {
	t.Helper()
	set, err := templates.Parse("builtin", nil)
	require.NoError(t, err)
	b, err := set.Render(templates.EnvoyBootstrap, inject.TemplateData{
		Settings: s, Names: inject.DefaultNames, Paths: inject.DefaultPaths,
	})
	require.NoError(t, err)
	return b
}

// parse validates a bootstrap and returns the decoded proto.
func parse(t testing.TB, y []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	b, err := envoy.Parse(y)
	require.NoError(t, err)
	return b
}

func cluster(t testing.TB, b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	t.Helper()
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("no cluster %q", name)
	return nil
}

func listener(t testing.TB, b *bootstrapv3.Bootstrap, name string) *listenerv3.Listener {
	t.Helper()
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetName() == name {
			return l
		}
	}
	t.Fatalf("no listener %q", name)
	return nil
}

func filterChain(t testing.TB, l *listenerv3.Listener, name string) *listenerv3.FilterChain {
	t.Helper()
	for _, fc := range l.GetFilterChains() {
		if fc.GetName() == name {
			return fc
		}
	}
	t.Fatalf("listener %q has no filter chain %q", l.GetName(), name)
	return nil
}

func unpack[T proto.Message](t testing.TB, a *anypb.Any, into T) T {
	t.Helper()
	require.NoError(t, a.UnmarshalTo(into), "typed_config %s", a.GetTypeUrl())
	return into
}

func hcm(t testing.TB, fc *listenerv3.FilterChain) *hcmv3.HttpConnectionManager {
	t.Helper()
	require.Len(t, fc.GetFilters(), 1)
	return unpack(t, fc.GetFilters()[0].GetTypedConfig(), &hcmv3.HttpConnectionManager{})
}

func tcpProxy(t testing.TB, fc *listenerv3.FilterChain) *tcpproxyv3.TcpProxy {
	t.Helper()
	require.Len(t, fc.GetFilters(), 1)
	return unpack(t, fc.GetFilters()[0].GetTypedConfig(), &tcpproxyv3.TcpProxy{})
}

func httpOptions(t testing.TB, c *clusterv3.Cluster) *upstreamhttpv3.HttpProtocolOptions {
	t.Helper()
	a, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	require.True(t, ok, "cluster %q has no HttpProtocolOptions", c.GetName())
	return unpack(t, a, &upstreamhttpv3.HttpProtocolOptions{})
}

func TestDefaultBootstrapGolden(t *testing.T) {
	y := render(t, policy.Defaults())
	require.NoError(t, envoy.Validate(y))
	testkit.Golden(t, goldenDefault, y)
}

func TestMain(m *testing.M) { os.Exit(testkit.Main(m, "testdata/*.golden.yaml")) }

func TestDefaultBootstrap(t *testing.T) {
	s := policy.Defaults()
	b := parse(t, render(t, s))

	t.Run("admin on loopback only", func(t *testing.T) {
		sa := b.GetAdmin().GetAddress().GetSocketAddress()
		assert.Equal(t, "127.0.0.1", sa.GetAddress())
		assert.Equal(t, uint32(15000), sa.GetPortValue())
		assert.False(t, sa.GetIpv4Compat())
		assert.Empty(t, b.GetAdmin().GetAccessLog())
		for _, l := range b.GetStaticResources().GetListeners() {
			assert.NotEqual(t, uint32(15000), l.GetAddress().GetSocketAddress().GetPortValue(), "listener %s", l.GetName())
		}
	})

	t.Run("listeners bind both families on one socket", func(t *testing.T) {
		want := map[string]uint32{"outbound": 15001, "inbound": 15006, "readiness": 15021, "stats": 15090}
		require.Len(t, b.GetStaticResources().GetListeners(), len(want))
		for name, port := range want {
			sa := listener(t, b, name).GetAddress().GetSocketAddress()
			assert.Equal(t, "::", sa.GetAddress(), name)
			assert.True(t, sa.GetIpv4Compat(), name)
			assert.Equal(t, port, sa.GetPortValue(), name)
			assert.Equal(t, corev3.SocketAddress_TCP, sa.GetProtocol(), name)
		}
	})

	for _, dir := range []string{"outbound", "inbound"} {
		t.Run(dir+" listener", func(t *testing.T) {
			l := listener(t, b, dir)
			port := l.GetAddress().GetSocketAddress().GetPortValue()
			require.Len(t, l.GetListenerFilters(), 2)
			unpack(t, l.GetListenerFilters()[0].GetTypedConfig(), &originaldstv3.OriginalDst{})
			unpack(t, l.GetListenerFilters()[1].GetTypedConfig(), &httpinspectorv3.HttpInspector{})
			assert.Equal(t, 100*time.Millisecond, l.GetListenerFiltersTimeout().AsDuration())
			assert.True(t, l.GetContinueOnListenerFiltersTimeout())

			loop := filterChain(t, l, dir+"_loop")
			assert.Equal(t, port, loop.GetFilterChainMatch().GetDestinationPort().GetValue())
			assert.Equal(t, "blackhole", tcpProxy(t, loop).GetCluster())

			h := filterChain(t, l, dir+"_http")
			assert.Equal(t, []string{"http/1.1", "h2c"}, h.GetFilterChainMatch().GetApplicationProtocols())
			m := hcm(t, h)
			assert.Equal(t, hcmv3.HttpConnectionManager_AUTO, m.GetCodecType())
			assert.Equal(t, time.Duration(0), m.GetStreamIdleTimeout().AsDuration())
			assert.NotNil(t, m.GetStreamIdleTimeout(), "stream_idle_timeout must be set to 0 explicitly")
			vh := m.GetRouteConfig().GetVirtualHosts()
			require.Len(t, vh, 1)
			assert.Equal(t, []string{"*"}, vh[0].GetDomains())
			require.Len(t, vh[0].GetRoutes(), 2)
			for _, r := range vh[0].GetRoutes() {
				assert.Equal(t, dir+"_http_passthrough", r.GetRoute().GetCluster())
				require.NotNil(t, r.GetRoute().GetTimeout(), "route timeout must be set (Envoy's default is 15s)")
				assert.Equal(t, time.Duration(0), r.GetRoute().GetTimeout().AsDuration())
			}
			assert.NotNil(t, vh[0].GetRoutes()[0].GetMatch().GetConnectMatcher())
			assert.Equal(t, "/", vh[0].GetRoutes()[1].GetMatch().GetPrefix())
			require.Len(t, m.GetHttpFilters(), 1)
			assert.True(t, unpack(t, m.GetHttpFilters()[0].GetTypedConfig(), &routerv3.Router{}).GetSuppressEnvoyHeaders())

			if dir == "outbound" {
				assert.Equal(t, 60*time.Second, m.GetCommonHttpProtocolOptions().GetMaxConnectionDuration().AsDuration())
				assert.True(t, m.GetHttp1SafeMaxConnectionDuration())
			} else {
				assert.Nil(t, m.GetCommonHttpProtocolOptions())
			}

			def := l.GetDefaultFilterChain()
			assert.Equal(t, dir+"_tcp_passthrough", tcpProxy(t, def).GetCluster())
		})
	}

	t.Run("readiness and stats are routed to admin, not passed through", func(t *testing.T) {
		for name, want := range map[string][2]string{
			"readiness": {inject.DefaultPaths.Readiness, "/ready"},
			"stats":     {inject.DefaultPaths.Stats, "/stats/prometheus"},
		} {
			l := listener(t, b, name)
			assert.Empty(t, l.GetListenerFilters(), name)
			assert.Nil(t, l.GetDefaultFilterChain(), name)
			require.Len(t, l.GetFilterChains(), 1, name)
			routes := hcm(t, l.GetFilterChains()[0]).GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
			require.Len(t, routes, 1, name)
			assert.Equal(t, want[0], routes[0].GetMatch().GetPath(), name)
			assert.Equal(t, "admin", routes[0].GetRoute().GetCluster(), name)
			assert.Equal(t, want[1], routes[0].GetRoute().GetPrefixRewrite(), name)
		}
		admin := cluster(t, b, "admin")
		assert.Equal(t, clusterv3.Cluster_STATIC, admin.GetType())
		ep := admin.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		assert.Equal(t, "127.0.0.1", ep.GetAddress())
		assert.Equal(t, uint32(15000), ep.GetPortValue())
	})

	t.Run("passthrough clusters", func(t *testing.T) {
		for _, name := range []string{"outbound_http_passthrough", "outbound_tcp_passthrough", "inbound_http_passthrough", "inbound_tcp_passthrough"} {
			c := cluster(t, b, name)
			assert.Equal(t, clusterv3.Cluster_ORIGINAL_DST, c.GetType(), name)
			assert.Equal(t, clusterv3.Cluster_CLUSTER_PROVIDED, c.GetLbPolicy(), name)
			ka := c.GetUpstreamConnectionOptions().GetTcpKeepalive()
			assert.Equal(t, uint32(60), ka.GetKeepaliveTime().GetValue(), name)
			if strings.Contains(name, "_http_") {
				opts := httpOptions(t, c)
				assert.NotNil(t, opts.GetUseDownstreamProtocolConfig().GetHttp2ProtocolOptions(), "h2c must stay h2c")
				assert.NotNil(t, opts.GetUseDownstreamProtocolConfig().GetHttpProtocolOptions())
				assert.Nil(t, opts.GetCommonHttpProtocolOptions(), "0 requests per connection means unlimited")
			} else {
				assert.Empty(t, c.GetTypedExtensionProtocolOptions(), name)
				assert.True(t, c.GetCloseConnectionsOnHostHealthFailure(), name)
			}
		}
		// The built-in defaults land in their fields.
		def := policy.Defaults().Envoy
		out := cluster(t, b, "outbound_http_passthrough")
		assert.Equal(t, time.Duration(def.Outbound.ConnectTimeout), out.GetConnectTimeout().AsDuration())
		th := out.GetCircuitBreakers().GetThresholds()[0]
		assert.Equal(t, corev3.RoutingPriority_DEFAULT, th.GetPriority())
		assert.Equal(t, def.Outbound.CircuitBreakers.MaxConnections, th.GetMaxConnections().GetValue())
		assert.Equal(t, def.Outbound.CircuitBreakers.MaxRetries, th.GetMaxRetries().GetValue())
		od := out.GetOutlierDetection()
		require.NotNil(t, od)
		assert.Equal(t, uint32(5), od.GetConsecutive_5Xx().GetValue())
		assert.Equal(t, uint32(100), od.GetEnforcingConsecutiveGatewayFailure().GetValue(),
			"Envoy enforces gateway-failure ejection at 0% unless told otherwise")
		assert.Equal(t, uint32(0), od.GetEnforcingSuccessRate().GetValue())
		assert.NotNil(t, od.GetEnforcingSuccessRate())
		assert.Equal(t, def.Outbound.OutlierDetection.MaxEjectionPercent, od.GetMaxEjectionPercent().GetValue())

		in := cluster(t, b, "inbound_http_passthrough")
		assert.Equal(t, time.Duration(def.Inbound.ConnectTimeout), in.GetConnectTimeout().AsDuration())
		assert.Equal(t, def.Inbound.CircuitBreakers.MaxConnections, in.GetCircuitBreakers().GetThresholds()[0].GetMaxConnections().GetValue())
		assert.Nil(t, in.GetOutlierDetection(), "inbound outlier detection is disabled by default")
		assert.Nil(t, cluster(t, b, "inbound_tcp_passthrough").GetOutlierDetection())
		assert.Empty(t, cluster(t, b, "blackhole").GetLoadAssignment().GetEndpoints())
	})

	t.Run("overload manager", func(t *testing.T) {
		rm := b.GetOverloadManager().GetResourceMonitors()
		require.Len(t, rm, 1)
		assert.Equal(t, "envoy.resource_monitors.global_downstream_max_connections", rm[0].GetName())
	})
}

// aggressive is seeds/001's DestinationRule pushed to the limits, on the
// outbound side; the inbound side gets different values so a mix-up of the
// two directions shows.
func aggressive() policy.Settings {
	s := policy.Defaults()
	s.Envoy.Outbound = policy.ClusterPolicy{
		ConnectTimeout:           meshinit.Duration(250 * time.Millisecond),
		MaxRequestsPerConnection: 1,
		CircuitBreakers:          policy.CircuitBreakers{MaxConnections: 1, MaxPendingRequests: 1, MaxRequests: 1, MaxRetries: 0},
		OutlierDetection: policy.OutlierDetection{
			Enabled: true, Consecutive5xx: 1, ConsecutiveGatewayFailure: 1, ConsecutiveLocalOriginFailure: 1,
			Interval: meshinit.Duration(time.Second), BaseEjectionTime: meshinit.Duration(time.Second), MaxEjectionPercent: 100,
		},
	}
	s.Envoy.Inbound = policy.ClusterPolicy{
		ConnectTimeout:           meshinit.Duration(1500 * time.Millisecond),
		MaxRequestsPerConnection: 7,
		CircuitBreakers:          policy.CircuitBreakers{MaxConnections: 11, MaxPendingRequests: 12, MaxRequests: 13, MaxRetries: 14},
		OutlierDetection: policy.OutlierDetection{
			Enabled: true, Consecutive5xx: 21, ConsecutiveGatewayFailure: 22, ConsecutiveLocalOriginFailure: 23,
			Interval: meshinit.Duration(90 * time.Second), BaseEjectionTime: meshinit.Duration(3 * time.Minute), MaxEjectionPercent: 50,
		},
	}
	return s
}

type want struct {
	connect                  time.Duration
	perConn                  uint32
	cx, pending, rq, retries uint32
	c5xx, gw, local          uint32
	interval, ejection       time.Duration
	maxEjection              uint32
}

func TestAggressiveSettingsLandInTheRightFields(t *testing.T) {
	b := parse(t, render(t, aggressive()))
	check := func(name string, w want, http bool) {
		t.Run(name, func(t *testing.T) {
			c := cluster(t, b, name)
			assert.Equal(t, w.connect, c.GetConnectTimeout().AsDuration())

			require.Len(t, c.GetCircuitBreakers().GetThresholds(), 1)
			th := c.GetCircuitBreakers().GetThresholds()[0]
			assert.Equal(t, corev3.RoutingPriority_DEFAULT, th.GetPriority())
			assert.Equal(t, w.cx, th.GetMaxConnections().GetValue())
			assert.Equal(t, w.pending, th.GetMaxPendingRequests().GetValue())
			assert.Equal(t, w.rq, th.GetMaxRequests().GetValue())
			require.NotNil(t, th.GetMaxRetries(), "max_retries 0 (no retries) is meaningful and must be rendered")
			assert.Equal(t, w.retries, th.GetMaxRetries().GetValue())

			od := c.GetOutlierDetection()
			require.NotNil(t, od)
			assert.Equal(t, w.c5xx, od.GetConsecutive_5Xx().GetValue())
			assert.Equal(t, uint32(100), od.GetEnforcingConsecutive_5Xx().GetValue())
			assert.Equal(t, w.gw, od.GetConsecutiveGatewayFailure().GetValue())
			assert.Equal(t, uint32(100), od.GetEnforcingConsecutiveGatewayFailure().GetValue())
			assert.True(t, od.GetSplitExternalLocalOriginErrors())
			assert.Equal(t, w.local, od.GetConsecutiveLocalOriginFailure().GetValue())
			assert.Equal(t, uint32(100), od.GetEnforcingConsecutiveLocalOriginFailure().GetValue())
			assert.Equal(t, w.interval, od.GetInterval().AsDuration())
			assert.Equal(t, w.ejection, od.GetBaseEjectionTime().AsDuration())
			assert.Equal(t, w.maxEjection, od.GetMaxEjectionPercent().GetValue())
			assert.Equal(t, uint32(0), od.GetEnforcingSuccessRate().GetValue())
			assert.Equal(t, uint32(0), od.GetEnforcingLocalOriginSuccessRate().GetValue())

			if http {
				assert.Equal(t, w.perConn, httpOptions(t, c).GetCommonHttpProtocolOptions().GetMaxRequestsPerConnection().GetValue())
			} else {
				assert.Empty(t, c.GetTypedExtensionProtocolOptions())
			}
		})
	}
	out := want{connect: 250 * time.Millisecond, perConn: 1, cx: 1, pending: 1, rq: 1, retries: 0,
		c5xx: 1, gw: 1, local: 1, interval: time.Second, ejection: time.Second, maxEjection: 100}
	in := want{connect: 1500 * time.Millisecond, perConn: 7, cx: 11, pending: 12, rq: 13, retries: 14,
		c5xx: 21, gw: 22, local: 23, interval: 90 * time.Second, ejection: 3 * time.Minute, maxEjection: 50}
	check("outbound_http_passthrough", out, true)
	check("outbound_tcp_passthrough", out, false)
	check("inbound_http_passthrough", in, true)
	check("inbound_tcp_passthrough", in, false)
}

func TestZeroMeansEnvoysDefault(t *testing.T) {
	s := policy.Defaults()
	s.Envoy.Outbound.CircuitBreakers = policy.CircuitBreakers{}
	s.Envoy.Outbound.MaxRequestsPerConnection = 0
	s.Envoy.Outbound.OutlierDetection.MaxEjectionPercent = 0
	s.Envoy.Outbound.OutlierDetection.Consecutive5xx = 0
	s.Envoy.Outbound.OutlierDetection.ConsecutiveGatewayFailure = 0
	s.Envoy.Outbound.OutlierDetection.ConsecutiveLocalOriginFailure = 0
	b := parse(t, render(t, s))
	for _, name := range []string{"outbound_http_passthrough", "outbound_tcp_passthrough"} {
		c := cluster(t, b, name)
		th := c.GetCircuitBreakers().GetThresholds()[0]
		assert.Nil(t, th.GetMaxConnections(), "0 would refuse every connection: leave Envoy's default")
		assert.Nil(t, th.GetMaxPendingRequests())
		assert.Nil(t, th.GetMaxRequests())
		assert.NotNil(t, th.GetMaxRetries())
		od := c.GetOutlierDetection()
		assert.Nil(t, od.GetMaxEjectionPercent())
		assert.Nil(t, od.GetConsecutive_5Xx())
		assert.Nil(t, od.GetConsecutiveGatewayFailure())
		assert.Nil(t, od.GetConsecutiveLocalOriginFailure())
		for what, v := range map[string]interface{ GetValue() uint32 }{
			"5xx": od.GetEnforcingConsecutive_5Xx(), "gateway": od.GetEnforcingConsecutiveGatewayFailure(),
			"local origin": od.GetEnforcingConsecutiveLocalOriginFailure(),
		} {
			require.NotNil(t, v, what)
			assert.Equal(t, uint32(0), v.GetValue(), "a detector with count 0 is switched off: %s", what)
		}
	}
	assert.Nil(t, httpOptions(t, cluster(t, b, "outbound_http_passthrough")).GetCommonHttpProtocolOptions())
}

func TestIPv4OnlyListenAddress(t *testing.T) {
	s := policy.Defaults()
	s.Envoy.ListenAddress = "0.0.0.0"
	b := parse(t, render(t, s))
	for _, l := range b.GetStaticResources().GetListeners() {
		sa := l.GetAddress().GetSocketAddress()
		assert.Equal(t, "0.0.0.0", sa.GetAddress(), l.GetName())
		assert.False(t, sa.GetIpv4Compat(), l.GetName())
	}
	assert.Equal(t, "127.0.0.1", b.GetAdmin().GetAddress().GetSocketAddress().GetAddress())
}

func TestOtherPortsAndPaths(t *testing.T) {
	s := policy.Defaults()
	s.Proxy.Ports = policy.ProxyPorts{Admin: 9901, Outbound: 9001, Inbound: 9006, Readiness: 9021, Stats: 9090}
	set, err := templates.Parse("builtin", nil)
	require.NoError(t, err)
	paths := inject.DefaultPaths
	paths.Readiness, paths.Stats = "/ready-please", "/metrics"
	y, err := set.Render(templates.EnvoyBootstrap, inject.TemplateData{Settings: s, Names: inject.DefaultNames, Paths: paths})
	require.NoError(t, err)
	b := parse(t, y)
	assert.Equal(t, uint32(9901), b.GetAdmin().GetAddress().GetSocketAddress().GetPortValue())
	assert.Equal(t, uint32(9001), filterChain(t, listener(t, b, "outbound"), "outbound_loop").GetFilterChainMatch().GetDestinationPort().GetValue())
	assert.Equal(t, uint32(9006), filterChain(t, listener(t, b, "inbound"), "inbound_loop").GetFilterChainMatch().GetDestinationPort().GetValue())
	r := hcm(t, listener(t, b, "stats").GetFilterChains()[0]).GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0]
	assert.Equal(t, "/metrics", r.GetMatch().GetPath())
	assert.Equal(t, "/stats/prometheus", r.GetRoute().GetPrefixRewrite())
	assert.Equal(t, uint32(9021), listener(t, b, "readiness").GetAddress().GetSocketAddress().GetPortValue())
	ep := cluster(t, b, "admin").GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint()
	assert.Equal(t, uint32(9901), ep.GetAddress().GetSocketAddress().GetPortValue())
}

// Settings validation refuses a max ejection percent over 100 too; the
// schema is the last line of defence, for custom templates among others.
func TestTemplateWithBadEjectionPercentFails(t *testing.T) {
	s := policy.Defaults()
	s.Envoy.Outbound.OutlierDetection.MaxEjectionPercent = 200
	err := envoy.Validate(render(t, s))
	require.Error(t, err)
	var e *envoy.Error
	require.True(t, errors.As(err, &e))
	assert.Equal(t, []envoy.Problem{
		{Path: "static_resources.clusters[0].outlier_detection.max_ejection_percent", Message: "value must be less than or equal to 100"},
		{Path: "static_resources.clusters[1].outlier_detection.max_ejection_percent", Message: "value must be less than or equal to 100"},
	}, e.Problems)
	assert.Equal(t, "static_resources.clusters[0].outlier_detection.max_ejection_percent: value must be less than or equal to 100; "+
		"static_resources.clusters[1].outlier_detection.max_ejection_percent: value must be less than or equal to 100", err.Error())
}

func TestCompactJSON(t *testing.T) {
	y := render(t, policy.Defaults())
	a, err := envoy.CompactJSON(y)
	require.NoError(t, err)
	b, err := envoy.CompactJSON(y)
	require.NoError(t, err)
	assert.Equal(t, a, b, "deterministic")
	c, err := envoy.ValidateCompact(y)
	require.NoError(t, err)
	assert.Equal(t, a, c)

	var buf bytes.Buffer
	require.NoError(t, json.Compact(&buf, []byte(a)))
	assert.Equal(t, buf.String(), a, "already compact")
	assert.NotContains(t, a, "\n")
	// What Envoy gets is what was validated: the JSON is itself a valid
	// bootstrap with the same content.
	assert.True(t, proto.Equal(parse(t, y), parse(t, []byte(a))))

	_, err = envoy.CompactJSON([]byte("a: [\n"))
	assert.Error(t, err)
}

func TestValidateConcurrently(t *testing.T) {
	y := render(t, policy.Defaults())
	bad := render(t, func() policy.Settings {
		s := policy.Defaults()
		s.Envoy.Inbound.OutlierDetection = s.Envoy.Outbound.OutlierDetection
		s.Envoy.Inbound.OutlierDetection.MaxEjectionPercent = 101
		return s
	}())
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, envoy.Validate(y))
			assert.ErrorContains(t, envoy.Validate(bad), "static_resources.clusters[2].outlier_detection.max_ejection_percent")
		}()
	}
	wg.Wait()
}

func BenchmarkValidateDefault(b *testing.B) {
	y := render(b, policy.Defaults())
	b.SetBytes(int64(len(y)))
	b.ReportAllocs()
	for b.Loop() {
		if err := envoy.Validate(y); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateCompactDefault(b *testing.B) {
	y := render(b, policy.Defaults())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := envoy.ValidateCompact(y); err != nil {
			b.Fatal(err)
		}
	}
}
