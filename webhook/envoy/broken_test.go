package envoy_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sidecar-injector/injector/webhook/envoy"
)

const clusterHead = `
static_resources:
  clusters:
  - name: c
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 1s
`

const filterHead = `
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: "::", port_value: 15001, ipv4_compat: true}}
    filter_chains:
    - filters:
      - name: f
        typed_config:
`

const hcmHead = filterHead + `          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          route_config: {}
          http_filters:
          - name: envoy.filters.http.router
`

const (
	filterPath = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
	hcmPath    = filterPath + " (envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager): "
	routerPath = hcmPath + "http_filters[0].typed_config (envoy.extensions.filters.http.router.v3.Router): "
)

// Every way a bootstrap can be wrong is reported with where it is wrong.
func TestBrokenBootstrapsAreRejectedWithTheirPath(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{
			name: "value out of range",
			yaml: clusterHead + "    outlier_detection: {max_ejection_percent: 200}\n",
			want: "static_resources.clusters[0].outlier_detection.max_ejection_percent: value must be less than or equal to 100",
		},
		{
			name: "unknown field",
			yaml: clusterHead + "    max_ejection_percent: 10\n",
			want: `static_resources.clusters[0].max_ejection_percent: unknown field "max_ejection_percent" in envoy.config.cluster.v3.Cluster`,
		},
		{
			name: "unknown field written with JSON names",
			yaml: clusterHead + "    outlierDetection: {maxEjectionPercentage: 1}\n",
			want: `static_resources.clusters[0].outlierDetection.maxEjectionPercentage: unknown field "maxEjectionPercentage" in envoy.config.cluster.v3.OutlierDetection`,
		},
		{
			name: "unknown typed_config type",
			yaml: filterHead + "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.nope.v3.Nope\n",
			want: filterPath + `: unknown type "type.googleapis.com/envoy.extensions.filters.network.nope.v3.Nope": not an Envoy type this validator knows (see webhook/envoy/types.go)`,
		},
		{
			name: "typed_config without @type",
			yaml: filterHead + "          stat_prefix: x\n",
			want: filterPath + `: "@type" is missing`,
		},
		{
			name: "HTTP connection manager with an empty stat_prefix",
			yaml: filterHead + `          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ""
          route_config: {}
`,
			want: hcmPath + "stat_prefix: value length must be at least 1 runes",
		},
		{
			name: "tcp_proxy without a cluster",
			yaml: filterHead + `          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: x
`,
			want: filterPath + " (envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy): cluster_specifier: value is required",
		},
		{
			name: "unknown field two typed_configs deep",
			yaml: hcmHead + "            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router, bogus: 1}\n",
			want: routerPath + `bogus: unknown field "bogus" in envoy.extensions.filters.http.router.v3.Router`,
		},
		{
			name: "invalid value three typed_configs deep",
			yaml: hcmHead + `            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
              upstream_log:
              - name: file
                typed_config: {"@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: ""}
`,
			want: routerPath + "upstream_log[0].typed_config (envoy.extensions.access_loggers.file.v3.FileAccessLog): path: value length must be at least 1 runes",
		},
		{
			name: "typed_config in a map",
			yaml: clusterHead + `    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        common_http_protocol_options: {max_requests_per_connection: 1}
`,
			want: `static_resources.clusters[0].typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] (envoy.extensions.upstreams.http.v3.HttpProtocolOptions): upstream_protocol_options: value is required`,
		},
		{
			name: "negative duration",
			yaml: clusterHead + "    outlier_detection: {interval: -1s}\n",
			want: "static_resources.clusters[0].outlier_detection.interval: value must be greater than 0s",
		},
		{
			name: "negative connect timeout",
			yaml: "static_resources: {clusters: [{name: c, type: STATIC, connect_timeout: -2s}]}\n",
			want: "static_resources.clusters[0].connect_timeout: value must be greater than 0s",
		},
		{
			name: "duration written as a number",
			yaml: clusterHead + "    outlier_detection: {interval: 10}\n",
			want: `static_resources.clusters[0].outlier_detection.interval: Duration must be a string such as "1s", not 10`,
		},
		{
			name: "text for a number",
			yaml: clusterHead + "    circuit_breakers: {thresholds: [{max_connections: lots}]}\n",
			want: "static_resources.clusters[0].circuit_breakers.thresholds[0].max_connections: lots is not an integer",
		},
		{
			name: "negative unsigned number",
			yaml: clusterHead + "    circuit_breakers: {thresholds: [{max_connections: -1}]}\n",
			want: "static_resources.clusters[0].circuit_breakers.thresholds[0].max_connections: -1 is out of range for uint32",
		},
		{
			name: "unknown enum value",
			yaml: clusterHead + "    dns_lookup_family: V5_ONLY\n",
			want: `static_resources.clusters[0].dns_lookup_family: "V5_ONLY" is not a value of envoy.config.cluster.v3.Cluster.DnsLookupFamily`,
		},
		{
			name: "required string empty",
			yaml: "static_resources: {clusters: [{name: \"\", connect_timeout: 1s}]}\n",
			want: "static_resources.clusters[0].name: value length must be at least 1 runes",
		},
		{
			name: "key given twice",
			yaml: clusterHead + "    connect_timeout: 2s\n",
			want: `not valid YAML: yaml: unmarshal errors: line 8: key "connect_timeout" already set in map`,
		},
		{name: "not YAML", yaml: "a: [\n", want: "not valid YAML: yaml: line 1: did not find expected node content"},
		{name: "empty", yaml: "# nothing\n", want: "the bootstrap is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := envoy.Validate([]byte(tc.yaml))
			require.Error(t, err)
			var e *envoy.Error
			require.True(t, errors.As(err, &e), "%T", err)
			assert.Equal(t, tc.want, err.Error())
		})
	}
}

func TestProblemsAreAllReportedInOrder(t *testing.T) {
	err := envoy.Validate([]byte(`
static_resources:
  clusters:
  - name: a
    connect_timeout: 0s
    outlier_detection: {max_ejection_percent: 101}
  - name: ""
    connect_timeout: 1s
`))
	var e *envoy.Error
	require.True(t, errors.As(err, &e))
	assert.Equal(t, []envoy.Problem{
		{Path: "static_resources.clusters[0].connect_timeout", Message: "value must be greater than 0s"},
		{Path: "static_resources.clusters[0].outlier_detection.max_ejection_percent", Message: "value must be less than or equal to 100"},
		{Path: "static_resources.clusters[1].name", Message: "value length must be at least 1 runes"},
	}, e.Problems)
}
