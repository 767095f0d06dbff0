package webhook

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	jsonpatchv4 "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// appendResponse writes the envelope by hand; it must say what
// json.Marshal of the same struct says, for every shape an answer takes.
func TestAppendResponseMatchesMarshal(t *testing.T) {
	var remaining int64 = 3
	for _, out := range []responseOut{
		{UID: "u-1", Allowed: true, Result: &metav1.Status{Code: 200}},
		{UID: "u-2", Allowed: true, Result: &metav1.Status{Code: 200, Message: `injected with policy "default" <&> é \u2028`},
			PatchType: &jsonPatchType, AuditAnnotations: map[string]string{"reason": "r", "decision": "injected", "policy": "p"},
			Warnings: []string{"one", `two "quoted"`}},
		{UID: "", Allowed: false, Result: &metav1.Status{Code: 403, Reason: metav1.StatusReasonForbidden, Message: "no", Status: "Failure"}},
		{UID: "u-4", Result: &metav1.Status{Code: 500, Details: &metav1.StatusDetails{Name: "x"}}},
		{UID: "u-5", Result: &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status"}, ListMeta: metav1.ListMeta{RemainingItemCount: &remaining}}},
		{UID: "u-6", Allowed: true, Result: &metav1.Status{}, AuditAnnotations: map[string]string{}, Warnings: []string{}},
		{UID: "u-7", Allowed: true, Result: &metav1.Status{Message: "bad \xff utf-8"}},
	} {
		want, err := json.Marshal(&out)
		require.NoError(t, err)
		got, err := appendResponse(nil, &out)
		require.NoError(t, err)
		got = append(got, '}')
		assert.JSONEq(t, string(want), string(got), "%+v", out)
	}
}
