package webhook

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	jsonpatchv4 "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidecar-injector/injector/test/testkit/podcases"
)

// Odd but decodable pod objects: every answer is either no patch or a patch
// that applies to the object as sent.
func TestHandlerOddObjects(t *testing.T) {
	c, err := podcases.LoadCase(filepath.Join(fixturesDir, "plain.yaml"))
	require.NoError(t, err)
	h := &admission.Webhook{Handler: NewHandler(c.Engine(t), StaticNamespaces{"shop": c.Namespace.Labels}, nil, nil), RecoverPanic: ptr.To(false)}
	for name, obj := range map[string]string{
		"no metadata":            `{"spec":{"containers":[{"name":"a","image":"a"}]}}`,
		"null metadata":          `{"metadata":null,"spec":{"containers":[{"name":"a","image":"a"}]}}`,
		"null annotations":       `{"metadata":{"annotations":null},"spec":{"containers":[{"name":"a","image":"a"}]}}`,
		"empty lists":            `{"metadata":{"name":"x"},"spec":{"initContainers":[],"volumes":[],"containers":[{"name":"a","image":"a","volumeMounts":[]}]}}`,
		"null lists":             `{"metadata":{"name":"x"},"spec":{"initContainers":null,"volumes":null,"containers":[{"name":"a","image":"a","volumeMounts":null,"lifecycle":null}]}}`,
		"null container":         `{"metadata":{"name":"x"},"spec":{"containers":[null]}}`,
		"empty lifecycle":        `{"metadata":{"name":"x"},"spec":{"containers":[{"name":"a","image":"a","lifecycle":{}}]}}`,
		"no spec":                `{"metadata":{"name":"x"}}`,
		"unknown fields kept":    `{"metadata":{"name":"x"},"spec":{"futureField":{"a":1},"containers":[{"name":"a","image":"a","futureContainerField":true}]}}`,
		"escaped annotation key": `{"metadata":{"name":"x","annotations":{"a/b~c":"1"}},"spec":{"containers":[{"name":"a","image":"a"}]}}`,
	} {
		t.Run(name, func(t *testing.T) {
			resp := serveOnce(t, h, review("odd", admissionv1.Create, "shop", "Pod", []byte(obj), false))
			if len(resp.Patch) == 0 {
				return
			}
			patch, err := jsonpatchv4.DecodePatch(resp.Patch)
			require.NoError(t, err)
			out, err := patch.Apply([]byte(obj))
			require.NoError(t, err, "patch %s", resp.Patch)
			if name == "unknown fields kept" {
				assert.Contains(t, string(out), "futureField", "fields this build does not know survive the patch")
				assert.Contains(t, string(out), "futureContainerField")
			}
		})
	}
}
