package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gomodules.xyz/jsonpatch/v2"
	jsonpatchv4 "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/injector/test/testkit"
	"github.com/sidecar-injector/injector/test/testkit/podcases"
	"github.com/sidecar-injector/injector/webhook/inject"
)

var fixturesDir = filepath.Join("inject", "testdata", "pods")

// tlsServer serves the admission webhook over real TLS (HTTP/2 offered)
// at the production path, and returns a client that trusts only the
// server's own CA.
func tlsServer(t *testing.T, h *Handler) (*testkit.TLSServer, *http.Client) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(InjectPath, h) // the production path, as Serve mounts it
	srv := testkit.NewTLSServer(t, mux)
	return srv, srv.Client
}

func review(uid string, op admissionv1.Operation, ns string, kind string, object []byte, dryRun bool) []byte {
	group, version, resource := "", "v1", "pods"
	if kind != "Pod" {
		group, resource = "apps", strings.ToLower(kind)+"s"
	}
	r := map[string]any{
		"apiVersion": "admission.k8s.io/v1",
		"kind":       "AdmissionReview",
		"request": map[string]any{
			"uid":       uid,
			"kind":      map[string]string{"group": group, "version": version, "kind": kind},
			"resource":  map[string]string{"group": group, "version": version, "resource": resource},
			"namespace": ns,
			"operation": string(op),
			"userInfo":  map[string]any{"username": "system:serviceaccount:kube-system:replicaset-controller"},
			"object":    json.RawMessage(object),
			"dryRun":    dryRun,
		},
	}
	b, _ := json.Marshal(r)
	return b
}

func post(t *testing.T, c *http.Client, url string, body []byte, contentType string) (int, *admissionv1.AdmissionReview) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+InjectPath, bytes.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out admissionv1.AdmissionReview
	require.NoError(t, json.Unmarshal(b, &out), "response must be an AdmissionReview: %s", b)
	require.NotNil(t, out.Response, "response must carry a response: %s", b)
	return resp.StatusCode, &out
}

type goldenFile struct {
	Decision inject.Decision `json:"decision"`
	Pod      json.RawMessage `json:"pod"`
}

func canonical(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(b, &v))
	out, err := json.MarshalIndent(v, "", " ")
	require.NoError(t, err)
	return string(out)
}

// The golden pods, sent through HTTPS as an API server would: the patch
// applies to the raw request, yields the golden pod, and equals applying the
// full diff computed by jsonpatch.CreatePatch.
func TestHandlerGoldenOverTLS(t *testing.T) {
	cases, err := podcases.LoadCases(fixturesDir)
	require.NoError(t, err)
	require.NotEmpty(t, cases)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			engine := c.Engine(t)
			h := NewHandler(engine, StaticNamespaces{c.Namespace.Name: c.Namespace.Labels}, nil, nil)
			srv, client := tlsServer(t, h)

			gb, err := os.ReadFile(filepath.Join(fixturesDir, c.Name+".golden.yaml"))
			require.NoError(t, err)
			gj, err := yaml.YAMLToJSON(gb)
			require.NoError(t, err)
			var g goldenFile
			require.NoError(t, json.Unmarshal(gj, &g))

			for _, dry := range []bool{false, true} {
				status, rev := post(t, client, srv.URL, review("uid-"+c.Name, admissionv1.Create, c.Namespace.Name, "Pod", c.Raw, dry), "application/json")
				require.Equal(t, http.StatusOK, status)
				r := rev.Response
				assert.Equal(t, "uid-"+c.Name, string(r.UID))
				assert.Equal(t, string(g.Decision.Reason), r.AuditAnnotations["reason"], "reason in the response")
				assert.Equal(t, g.Decision.Warnings, []string(r.Warnings))
				switch g.Decision.Result {
				case inject.Refused:
					assert.False(t, r.Allowed)
					require.NotNil(t, r.Result)
					assert.Equal(t, g.Decision.Message, r.Result.Message)
					assert.Nil(t, r.Patch)
				case inject.Skipped:
					assert.True(t, r.Allowed)
					assert.Nil(t, r.Patch, "a skipped pod gets no patch")
				case inject.Injected:
					assert.True(t, r.Allowed)
					require.NotNil(t, r.PatchType)
					assert.Equal(t, admissionv1.PatchTypeJSONPatch, *r.PatchType)
					patch, err := jsonpatchv4.DecodePatch(r.Patch)
					require.NoError(t, err)
					patched, err := patch.Apply(c.Raw)
					require.NoError(t, err, "the patch must apply to the raw request object")
					// The golden pod went through the typed structs, which
					// add empty resources/status; compare through them too.
					var viaTyped corev1.Pod
					require.NoError(t, json.Unmarshal(patched, &viaTyped))
					typedJSON, _ := json.Marshal(&viaTyped)
					assert.Equal(t, canonical(t, g.Pod), canonical(t, typedJSON), "patched pod must equal the golden pod")

					// Cross-check against the full diff of the raw request.
					full, err := json.Marshal(&viaTyped)
					require.NoError(t, err)
					diffOps, err := jsonpatch.CreatePatch(c.Raw, full)
					require.NoError(t, err)
					diffJSON, _ := json.Marshal(diffOps)
					diffPatch, err := jsonpatchv4.DecodePatch(diffJSON)
					require.NoError(t, err)
					viaDiff, err := diffPatch.Apply(c.Raw)
					require.NoError(t, err)
					var diffPod corev1.Pod
					require.NoError(t, json.Unmarshal(viaDiff, &diffPod))
					assert.Equal(t, diffPod, viaTyped, "direct patch and full diff must produce the same pod")
				}
			}
		})
	}
}

func TestHandlerBadInput(t *testing.T) {
	c, err := podcases.LoadCase(filepath.Join(fixturesDir, "plain.yaml"))
	require.NoError(t, err)
	h := NewHandler(c.Engine(t), StaticNamespaces{"shop": c.Namespace.Labels}, nil, nil)
	srv, client := tlsServer(t, h)

	type expect struct {
		allowed bool
		code    int32
		msg     string
	}
	for _, tc := range []struct {
		name        string
		body        []byte
		contentType string
		want        expect
	}{
		{"empty body", nil, "application/json", expect{false, 400, ""}},
		{"wrong content type", review("u", admissionv1.Create, "shop", "Pod", c.Raw, false), "text/plain", expect{false, 400, "contentType=text/plain"}},
		{"undecodable", []byte("{not json"), "application/json", expect{false, 400, ""}},
		{"no request", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), "application/json", expect{false, 400, "has no request"}},
		{"object is an array", review("u", admissionv1.Create, "shop", "Pod", []byte(`[1,2]`), false), "application/json", expect{false, 400, "not a JSON object"}},
		{"object is a number", review("u", admissionv1.Create, "shop", "Pod", []byte(`42`), false), "application/json", expect{false, 400, "not a JSON object"}},
		{"object is a string", review("u", admissionv1.Create, "shop", "Pod", []byte(`"pod"`), false), "application/json", expect{false, 400, "not a JSON object"}},
		{"object is null", review("u", admissionv1.Create, "shop", "Pod", []byte(`null`), false), "application/json", expect{false, 400, ""}},
		{"object has wrong types", review("u", admissionv1.Create, "shop", "Pod", []byte(`{"spec":{"containers":"app"}}`), false), "application/json", expect{false, 400, "not a valid Pod"}},
		{"object is another kind", review("u", admissionv1.Create, "shop", "Pod", []byte(`{"apiVersion":"apps/v1","kind":"Deployment"}`), false), "application/json", expect{false, 400, "not a v1 Pod"}},
		{"not a pod", review("u", admissionv1.Create, "shop", "Deployment", []byte(`{"apiVersion":"apps/v1","kind":"Deployment"}`), false), "application/json", expect{true, 200, "is not a pod"}},
		{"update", review("u", admissionv1.Update, "shop", "Pod", c.Raw, false), "application/json", expect{true, 200, "not CREATE"}},
		{"delete", review("u", admissionv1.Delete, "shop", "Pod", nil, false), "application/json", expect{true, 200, "not CREATE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, rev := post(t, client, srv.URL, tc.body, tc.contentType)
			assert.Equal(t, http.StatusOK, status, "errors are reported in the AdmissionReview")
			r := rev.Response
			assert.Equal(t, tc.want.allowed, r.Allowed)
			assert.Nil(t, r.Patch, "never a patch for these")
			if !tc.want.allowed {
				require.NotNil(t, r.Result)
				assert.Equal(t, tc.want.code, r.Result.Code)
				assert.Contains(t, r.Result.Message, tc.want.msg)
			} else {
				assert.Contains(t, r.Result.Message, tc.want.msg)
			}
		})
	}

	t.Run("oversized body", func(t *testing.T) {
		big := bytes.Repeat([]byte(" "), 8<<20)
		body := append(review("u", admissionv1.Create, "shop", "Pod", c.Raw, false)[:10], big...)
		status, rev := post(t, client, srv.URL, body, "application/json")
		assert.Equal(t, http.StatusOK, status)
		assert.False(t, rev.Response.Allowed)
		assert.Equal(t, int32(http.StatusRequestEntityTooLarge), rev.Response.Result.Code)
	})

	// The server is still up and injecting after all of that.
	status, rev := post(t, client, srv.URL, review("after", admissionv1.Create, "shop", "Pod", c.Raw, false), "application/json")
	assert.Equal(t, http.StatusOK, status)
	assert.True(t, rev.Response.Allowed)
	assert.NotNil(t, rev.Response.Patch)
}

func TestHandlerNamespaceLabelsUnavailable(t *testing.T) {
	c, err := podcases.LoadCase(filepath.Join(fixturesDir, "plain.yaml"))
	require.NoError(t, err)
	h := NewHandler(c.Engine(t), failingNamespaces{}, nil, nil)
	srv, client := tlsServer(t, h)
	_, rev := post(t, client, srv.URL, review("u", admissionv1.Create, "shop", "Pod", c.Raw, false), "application/json")
	assert.False(t, rev.Response.Allowed, "never inject or skip blindly without the namespace's labels")
	assert.Equal(t, int32(http.StatusServiceUnavailable), rev.Response.Result.Code)
	assert.Contains(t, rev.Response.Result.Message, "namespace labels are not available")
}

type failingNamespaces struct{}

func (failingNamespaces) Labels(context.Context, string) (map[string]string, error) {
	return nil, fmt.Errorf("cache not synced")
}
