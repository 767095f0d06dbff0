package envoy_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sidecar-injector/injector/webhook/envoy"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// The validator carries the rules of the oldest Envoy the proxy may run,
// 1.36 (the default image is Envoy 1.36.2): go-control-plane's envoy
// module v1.36.0, pinned by a replace in go.mod because grpc asks for a
// newer one. Newer releases dropped rules Envoy 1.36 still enforces.
func TestEnvoyPairing(t *testing.T) {
	// The module graph as the go command resolves it (test binaries carry
	// no dependency list in their build info).
	out, err := exec.Command("go", "list", "-m", "-f", "{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}",
		"github.com/envoyproxy/go-control-plane/envoy").Output()
	require.NoError(t, err)
	assert.Equal(t, "v1.36.0", strings.TrimSpace(string(out)), "the Envoy API the validator links (docs/envoy.md, Version pairing)")
	assert.Equal(t, envoy.Version{Major: 1, Minor: 36}, envoy.Rules)
	assert.Contains(t, policy.DefaultProxyImage, ":v1.36.", "the default proxy runs the Envoy whose rules are linked")

	overload := func(monitor string) []byte {
		return []byte(`
overload_manager:
  resource_monitors:
  - name: envoy.resource_monitors.fixed_heap
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig
` + monitor)
	}
	// Envoy 1.36 refuses a heap of 0 bytes at start; go-control-plane
	// v1.39 and later no longer carry that rule.
	err = envoy.Validate(overload("      max_heap_size_bytes: 0\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "max_heap_size_bytes: value must be greater than 0")
	require.NoError(t, envoy.Validate(overload("      max_heap_size_bytes: 1073741824\n")))

	// A field Envoy 1.36 does not have is unknown to it: it would refuse
	// the bootstrap at start.
	err = envoy.Validate([]byte(clusterHead + "    per_connection_buffer_high_watermark_timeout: 1s\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown field "per_connection_buffer_high_watermark_timeout"`)
}

func TestVersionFromImage(t *testing.T) {
	for image, want := range map[string]string{
		"docker.io/envoyproxy/envoy:v1.36.2":                                       "1.36",
		"envoyproxy/envoy:distroless-v1.37.0":                                      "1.37",
		"envoyproxy/envoy:contrib-debug-v1.35-latest":                              "1.35",
		"registry.example.com/e2e/envoy:v1.36.2-e2e":                               "1.36",
		"registry.example.com/mesh/envoy:1.38.1@sha256:" + strings.Repeat("a", 64): "1.38",
		"registry.example.com:5000/envoy-hardened:v1.36.0":                         "1.36",
		"registry.example.com/mesh/envoy@sha256:" + strings.Repeat("b", 64):        "",
		"registry.example.com/mesh/envoy:latest":                                   "",
		"docker.io/istio/proxyv2:1.24.0":                                           "",
		"registry.example.com:5000/proxy":                                          "",
	} {
		v, ok := envoy.VersionFromImage(image)
		if want == "" {
			assert.False(t, ok, "%s: %v", image, v)
			continue
		}
		if assert.True(t, ok, image) {
			assert.Equal(t, want, v.String(), image)
		}
	}
	v, err := envoy.ParseVersion("v1.37.1")
	require.NoError(t, err)
	assert.Equal(t, envoy.Version{Major: 1, Minor: 37}, v)
	assert.True(t, envoy.Version{Major: 1, Minor: 35}.Less(envoy.Rules))
	assert.False(t, envoy.Rules.Less(envoy.Rules))
	_, err = envoy.ParseVersion("1.x")
	assert.EqualError(t, err, `"1.x" is not an Envoy version such as 1.36`)
}
