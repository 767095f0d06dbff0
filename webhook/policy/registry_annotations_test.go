package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// Registry annotations are refused at admission with a message naming the
// annotation, the value and why, when the hook tool would refuse them or
// the registry would fail on them at every stop; and what the hook tool
// accepts is accepted.
func TestRegistryAnnotationMessages(t *testing.T) {
	for _, c := range []struct {
		key, val, says string
	}{
		{"sidecar-injector.io/nacos-server-url", "ftp://nacos", "the scheme ftp is not http or https"},
		{"sidecar-injector.io/nacos-server-url", "http://", "names no host"},
		{"sidecar-injector.io/nacos-server-url", "nacos:99999", "the port 99999 is not a port"},
		{"sidecar-injector.io/nacos-cluster", "HZ,SH", `"," is not allowed in a Nacos cluster name, which has only letters, digits and '-'`},
		{"sidecar-injector.io/nacos-cluster", "east_1", `"_" is not allowed in a Nacos cluster name`},
		{"sidecar-injector.io/nacos-service-name", "orders svc", `" " is not allowed in a Nacos service name`},
		{"sidecar-injector.io/nacos-group", "PAY/EU", `"/" is not allowed in a Nacos group name`},
		{"sidecar-injector.io/nacos-namespace", "prod.eu", `"." is not allowed in a Nacos namespace id`},
	} {
		t.Run(c.key+"="+c.val, func(t *testing.T) {
			s := Defaults()
			_, _, err := ApplyAnnotations(&s, map[string]string{c.key: c.val})
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.key+": \""+c.val+"\" is invalid")
			assert.Contains(t, err.Error(), c.says)
		})
	}
	for key, val := range map[string]string{
		"sidecar-injector.io/nacos-server-url":   "127.0.0.1:18848,[::1]:18848",
		"sidecar-injector.io/nacos-cluster":      "HZ-1",
		"sidecar-injector.io/nacos-service-name": "PAY@@orders.v2:grpc",
		"sidecar-injector.io/nacos-namespace":    "9f1c-prod_eu",
	} {
		s := Defaults()
		_, _, err := ApplyAnnotations(&s, map[string]string{key: val})
		assert.NoError(t, err, "%s: %q", key, val)
		if key == "sidecar-injector.io/nacos-server-url" {
			s.Lifecycle.Registry.Preset = meshinit.PresetNacos
			assert.NoError(t, s.Lifecycle.Registry.Validate(), "the hook tool reads it too")
		}
	}
	// The http preset without its URL names the annotation that sets it.
	s := Defaults()
	_, _, err := ApplyAnnotations(&s, map[string]string{"sidecar-injector.io/registry": "http"})
	require.NoError(t, err)
	errs := s.Validate(nil)
	require.NotEmpty(t, errs)
	assert.Contains(t, errs.ToAggregate().Error(), "sidecar-injector.io/offline-http-url")
}
