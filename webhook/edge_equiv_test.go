package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	jsonpatchv4 "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidecar-injector/injector/test/testkit/podcases"
)

// answer sends one body to a handler and decodes the AdmissionReview.
func answer(t *testing.T, h http.Handler, body []byte, contentType string) admissionv1.AdmissionReview {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, InjectPath, bytes.NewReader(body))
	if body == nil {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code)
	var rev admissionv1.AdmissionReview
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &rev), "%s", rec.Body.Bytes())
	return rev
}

// The Handler's own HTTP edge answers exactly as controller-runtime's
// admission.Webhook wrapping the same Handler: same review type, uid,
// decision, status, warnings, audit annotations, and a patch that produces
// the same pod.
func TestEdgeMatchesControllerRuntime(t *testing.T) {
	cases, err := podcases.LoadCases(fixturesDir)
	require.NoError(t, err)
	type input struct {
		name, contentType string
		body, object      []byte
		c                 podcases.Case
	}
	var inputs []input
	for _, c := range cases {
		for _, ns := range []string{c.Namespace.Name, "elsewhere"} {
			inputs = append(inputs, input{c.Name + "/" + ns, "application/json",
				review("uid-"+c.Name, admissionv1.Create, ns, "Pod", c.Raw, false), c.Raw, c})
		}
	}
	plainCase := cases[0]
	for _, c := range cases {
		if c.Name == "plain" {
			plainCase = c
		}
	}
	plain := plainCase.Raw
	v1beta1 := bytes.Replace(review("b", admissionv1.Create, "shop", "Pod", plain, false), []byte(`admission.k8s.io/v1"`), []byte(`admission.k8s.io/v1beta1"`), 1)
	for _, bad := range []input{
		{name: "empty body", contentType: "application/json"},
		{name: "wrong content type", contentType: "text/plain", body: review("u", admissionv1.Create, "shop", "Pod", plain, false)},
		{name: "undecodable", contentType: "application/json", body: []byte("{not json")},
		{name: "no request", contentType: "application/json", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`)},
		{name: "array object", contentType: "application/json", body: review("u", admissionv1.Create, "shop", "Pod", []byte(`[1]`), false)},
		{name: "string object", contentType: "application/json", body: review("u", admissionv1.Create, "shop", "Pod", []byte(`"x"`), false)},
		{name: "wrong types", contentType: "application/json", body: review("u", admissionv1.Create, "shop", "Pod", []byte(`{"spec":{"containers":"app"}}`), false)},
		{name: "other kind in object", contentType: "application/json", body: review("u", admissionv1.Create, "shop", "Pod", []byte(`{"apiVersion":"apps/v1","kind":"Deployment"}`), false)},
		{name: "deployment", contentType: "application/json", body: review("u", admissionv1.Create, "shop", "Deployment", []byte(`{"apiVersion":"apps/v1","kind":"Deployment","spec":{"replicas":"x"}}`), false)},
		{name: "update", contentType: "application/json", body: review("u", admissionv1.Update, "shop", "Pod", plain, false)},
		{name: "dry run", contentType: "application/json", body: review("u", admissionv1.Create, "shop", "Pod", plain, true), object: plain},
		{name: "v1beta1 review", contentType: "application/json", body: v1beta1, object: plain},
		// managedFields is skipped as one value (podview.go).
		{name: "managed fields null", contentType: "application/json", body: review("u", admissionv1.Create, "shop", "Pod", withManagedFields(t, plain, `null`), false)},
		{name: "managed fields empty", contentType: "application/json", body: review("u", admissionv1.Create, "shop", "Pod", withManagedFields(t, plain, `[]`), false)},
		{name: "managed fields", contentType: "application/json", body: review("u", admissionv1.Create, "shop", "Pod",
			withManagedFields(t, plain, `[{"manager":"kubectl","operation":"Update","apiVersion":"v1","time":"2026-11-21T05:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{}}}}}}]`), false)},
	} {
		bad.c = plainCase
		inputs = append(inputs, bad)
	}
	ns := StaticNamespaces{}
	for _, c := range cases {
		ns[c.Namespace.Name] = c.Namespace.Labels
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			c := in.c
			h := NewHandler(c.Engine(t), ns, nil, nil)
			ours := answer(t, h, in.body, in.contentType)
			theirs := answer(t, &admission.Webhook{Handler: h, RecoverPanic: ptr.To(true)}, in.body, in.contentType)
			if theirs.TypeMeta.Kind == "" {
				// controller-runtime leaves apiVersion and kind out when it
				// fails before decoding; ours always names the review type,
				// which the API server requires of a response.
				assert.Equal(t, "AdmissionReview", ours.Kind)
				assert.Equal(t, "admission.k8s.io/v1", ours.APIVersion)
			} else {
				assert.Equal(t, theirs.TypeMeta, ours.TypeMeta)
			}
			require.NotNil(t, ours.Response)
			a, b := *theirs.Response, *ours.Response
			if a.Result != nil && b.Result != nil && a.Result.Code == 400 && b.Result.Code == 400 {
				// Both refuse a malformed review; decoder error texts
				// differ between JSON libraries.
				a.Result.Message, b.Result.Message = "", ""
			}
			pa, pb := a.Patch, b.Patch
			a.Patch, b.Patch = nil, nil
			assert.Equal(t, a, b)
			require.Equal(t, pa == nil, pb == nil)
			if pa != nil {
				obj := in.object
				if obj == nil {
					obj = c.Raw
				}
				apply := func(p []byte) string {
					patch, err := jsonpatchv4.DecodePatch(p)
					require.NoError(t, err)
					out, err := patch.Apply(obj)
					require.NoError(t, err)
					return canonical(t, out)
				}
				assert.Equal(t, apply(pa), apply(pb))
			}
		})
	}
}

// withManagedFields is the pod with metadata.managedFields set to the JSON
// value v.
func withManagedFields(t *testing.T, pod []byte, v string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(pod, &m))
	var meta map[string]json.RawMessage
	if m["metadata"] != nil {
		require.NoError(t, json.Unmarshal(m["metadata"], &meta))
	}
	if meta == nil {
		meta = map[string]json.RawMessage{}
	}
	meta["managedFields"] = json.RawMessage(v)
	b, err := json.Marshal(meta)
	require.NoError(t, err)
	m["metadata"] = b
	out, err := json.Marshal(m)
	require.NoError(t, err)
	return out
}
