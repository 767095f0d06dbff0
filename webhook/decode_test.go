package webhook

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"

	"github.com/sidecar-injector/injector/webhook/inject/injecttest"
)

// The edge's decoder reads the fields of every fixture's review the core
// uses exactly as the API machinery's own decoder (sigs.k8s.io/json) does.
func TestDecoderMatchesKubernetes(t *testing.T) {
	cases, err := injecttest.LoadCases(fixturesDir)
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
			var wantPod corev1.Pod
			require.NoError(t, sigsjson.UnmarshalCaseSensitivePreserveInts(want.Request.Object.Raw, &wantPod))
			assert.Equal(t, want.APIVersion, apiVersion)
			assert.Equal(t, want.Request.UID, in.uid)
			assert.Equal(t, want.Request.Kind, in.kind)
			assert.Equal(t, want.Request.Resource, in.resource)
			assert.Equal(t, want.Request.Namespace, in.namespace)
			assert.Equal(t, want.Request.Operation, in.operation)
			assert.Equal(t, want.Request.DryRun != nil && *want.Request.DryRun, in.dryRun)
			require.NotNil(t, in.pod)
			proj := projection(&wantPod)
			assert.True(t, reflect.DeepEqual(proj, in.pod), "pods differ:\nwant %+v\ngot  %+v", *proj, *in.pod)
		})
	}
}

// projection keeps, from a fully decoded pod, the fields the edge's view
// holds (written out here independently of podView.pod).
func projection(full *corev1.Pod) *corev1.Pod {
	p := &corev1.Pod{TypeMeta: full.TypeMeta}
	p.Name, p.GenerateName, p.Namespace = full.Name, full.GenerateName, full.Namespace
	p.Labels, p.Annotations, p.OwnerReferences = full.Labels, full.Annotations, full.OwnerReferences
	keep := func(cs []corev1.Container) []corev1.Container {
		if cs == nil {
			return nil
		}
		out := make([]corev1.Container, len(cs))
		for i, c := range cs {
			out[i] = corev1.Container{Name: c.Name, Command: c.Command, Ports: c.Ports, VolumeMounts: c.VolumeMounts,
				VolumeDevices: c.VolumeDevices, Lifecycle: c.Lifecycle, SecurityContext: c.SecurityContext, RestartPolicy: c.RestartPolicy}
		}
		return out
	}
	p.Spec.InitContainers, p.Spec.Containers = keep(full.Spec.InitContainers), keep(full.Spec.Containers)
	if full.Spec.Volumes != nil {
		p.Spec.Volumes = make([]corev1.Volume, len(full.Spec.Volumes))
		for i, v := range full.Spec.Volumes {
			p.Spec.Volumes[i].Name = v.Name
		}
	}
	s := &full.Spec
	p.Spec.RestartPolicy, p.Spec.TerminationGracePeriodSeconds, p.Spec.HostNetwork = s.RestartPolicy, s.TerminationGracePeriodSeconds, s.HostNetwork
	p.Spec.SecurityContext, p.Spec.OS, p.Spec.Resources = s.SecurityContext, s.OS, s.Resources
	return p
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
