package webhook

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"

	"github.com/sidecar-injector/injector/test/testkit/podcases"
	"github.com/sidecar-injector/injector/webhook/inject"
)

// The edge's decoder reads the fields of every fixture's review the core
// uses exactly as the API machinery's own decoder (sigs.k8s.io/json) does.
func TestDecoderMatchesKubernetes(t *testing.T) {
	cases, err := podcases.LoadCases(fixturesDir)
	require.NoError(t, err)
	bodies := map[string][]byte{}
	for _, c := range cases {
		bodies[c.Name] = review("uid-"+c.Name, admissionv1.Create, c.Namespace.Name, "Pod", c.Raw, true)
	}
	bench, err := os.ReadFile(filepath.Join("testdata", "bench", "admission-review.json"))
	require.NoError(t, err)
	bodies["bench"] = bench
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			in, apiVersion, err := decodeReview(body)
			require.NoError(t, err)
			var want admissionv1.AdmissionReview
			require.NoError(t, sigsjson.UnmarshalCaseSensitivePreserveInts(body, &want))
			assert.Equal(t, want.APIVersion, apiVersion)
			assert.Equal(t, want.Request.UID, in.uid)
			assert.Equal(t, want.Request.Kind, in.kind)
			assert.Equal(t, want.Request.Resource, in.resource)
			assert.Equal(t, want.Request.Namespace, in.namespace)
			assert.Equal(t, want.Request.Operation, in.operation)
			assert.Equal(t, want.Request.DryRun != nil && *want.Request.DryRun, in.dryRun)
			var obj corev1.Pod
			require.NoError(t, sigsjson.UnmarshalCaseSensitivePreserveInts(want.Request.Object.Raw, &obj))
			if _, ok := obj.Annotations["sidecar-injector.io/status"]; ok {
				// Decoded in full by the core's path instead.
				assert.Nil(t, in.pod)
				assert.JSONEq(t, string(want.Request.Object.Raw), string(in.raw))
				return
			}
			require.NotNil(t, in.pod)
			proj := projection(t, want.Request.Object.Raw)
			assert.True(t, reflect.DeepEqual(proj, in.pod), "pods differ:\nwant %+v\ngot  %+v", *proj, *in.pod)
		})
	}
}

// edgeFields are the fields the edge's view decodes for itself, besides
// the core's read set: the object's kind, checked before the core runs.
var edgeFields = []string{"apiVersion", "kind"}

// viewFields are the fields the edge's view decodes: its own and the
// core's read set, but those read only for a pod with the status
// annotation, which is decoded in full instead.
func viewFields() []string {
	out := append([]string(nil), edgeFields...)
	for _, f := range inject.PodFields {
		if !slices.Contains(inject.StatusPodFields, f) {
			out = append(out, f)
		}
	}
	return out
}

// projection keeps, from an object as sent, the fields the edge's view is
// declared to hold: the core's read set and the edge's own fields.
func projection(t *testing.T, object []byte) *corev1.Pod {
	t.Helper()
	b, err := podcases.Project(object, viewFields())
	require.NoError(t, err)
	var p corev1.Pod
	require.NoError(t, sigsjson.UnmarshalCaseSensitivePreserveInts(b, &p))
	return &p
}

// The edge's view of a pod holds exactly the core's declared read set and
// its own fields: a field the core starts reading is decoded, and nothing
// else is (managedFields, often half the object, is skipped as one value).
func TestPodViewIsTheReadSet(t *testing.T) {
	var got []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			ft := f.Type
			switch {
			case f.Anonymous && name == "":
				walk(prefix, ft)
				continue
			case ft == reflect.TypeFor[skipValue]():
				continue
			}
			path := prefix + name
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && ft.Elem().PkgPath() == reflect.TypeFor[podView]().PkgPath() {
				walk(path+"[].", ft.Elem())
				continue
			}
			if ft.Kind() == reflect.Struct && ft.Name() == "" {
				walk(path+".", ft)
				continue
			}
			got = append(got, path)
		}
	}
	walk("", reflect.TypeFor[podView]())
	assert.ElementsMatch(t, viewFields(), got)
	for _, f := range inject.StatusPodFields {
		assert.Contains(t, inject.PodFields, f)
	}
}

// samePodDecode compares the two decoders on arbitrary bytes: both fail, or
// both produce the same pod. Used by the fuzzer.
func samePodDecode(t *testing.T, b []byte) {
	var a, c corev1.Pod
	errA := unmarshal(b, &a)
	errC := sigsjson.UnmarshalCaseSensitivePreserveInts(b, &c)
	if (errA == nil) != (errC == nil) {
		// The decoders may disagree on what is malformed (duplicate keys in
		// odd places, number formats); what matters is that a pod both
		// accept decodes identically.
		return
	}
	if errA == nil && !reflect.DeepEqual(a, c) {
		t.Fatalf("decoders disagree on %s:\nv2:   %+v\nsigs: %+v", b, a, c)
	}
}
