package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	jsonpatchv4 "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"

	"github.com/sidecar-injector/injector/test/testkit/podcases"
	"github.com/sidecar-injector/injector/webhook/inject"
)

// benchReview is ../shared/bench/admission-review.json: a 7.8 KB
// AdmissionReview of a ReplicaSet-created pod in namespace "shop".
func benchReview(b *testing.B) []byte {
	body, err := os.ReadFile(filepath.Join("testdata", "bench", "admission-review.json"))
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// everyFeature is a policy that uses every feature the bench pod can meet:
// its own images, resources, capture exclusions in both families, a
// registry preset with a long drain (grace period raised), tight circuit
// breakers and outlier detection, and bounds.
const everyFeature = `apiVersion: sidecar-injector.io/v1alpha1
kind: InjectorConfig
defaults:
  settings:
    proxy: {image: registry.example.com/mesh/envoy:v1.36.2}
    init: {image: registry.example.com/mesh/mesh-init:v1}
policies:
- name: shop
  namespaceSelector: {matchLabels: {sidecar-injector.io/injection: enabled}}
  settings:
    proxy:
      logLevel: info
      resources: {requests: {cpu: 200m, memory: 256Mi}, limits: {cpu: "1", memory: 512Mi}}
    capture:
      excludeInboundPorts: [9090]
      excludeOutboundPorts: [8761, "5432-5433"]
      excludeOutboundCIDRs: "169.254.169.254/32,fd00:ec2::254/128"
    lifecycle:
      drainSeconds: 30
      shutdownSeconds: 20
      registry: {preset: eureka, timeout: 5s, eureka: {serverURL: "http://eureka.shop:8761/eureka"}}
    envoy:
      outbound:
        connectTimeout: 500ms
        maxRequestsPerConnection: 100
        circuitBreakers: {maxConnections: 100, maxPendingRequests: 50, maxRequests: 200, maxRetries: 2}
        outlierDetection: {enabled: true, consecutive5xx: 3, consecutiveGatewayFailure: 3, consecutiveLocalOriginFailure: 3, interval: 5s, baseEjectionTime: 15s, maxEjectionPercent: 50}
  podOverrides: {maxProxyCPU: "2", maxProxyMemory: 1Gi, allowedProxyImages: [registry.example.com/], minDrainSeconds: 5, maxDrainSeconds: 120}
`

// discardWriter is a ResponseWriter that keeps nothing but the size, so the
// benchmark measures the handler, not a recorder.
type discardWriter struct {
	h http.Header
	n int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

func benchHandler(b *testing.B, policy string) http.Handler {
	e, err := inject.Compile([]byte(policy), podcases.Options(true))
	if err != nil {
		b.Fatal(err)
	}
	return NewHandler(e, shopNS, nil, nil)
}

// BenchmarkAdmission is one admission in-process: AdmissionReview bytes in,
// response bytes out, through the same handler `injector serve` mounts.
func BenchmarkAdmission(b *testing.B) {
	body := benchReview(b)
	for _, tc := range []struct{ name, policy string }{{"default", ""}, {"every-feature", everyFeature}} {
		b.Run(tc.name, func(b *testing.B) {
			h := benchHandler(b, tc.policy)
			rd := bytes.NewReader(body)
			req, _ := http.NewRequest(http.MethodPost, InjectPath, rd)
			req.Header.Set("Content-Type", "application/json")
			// Check once that this is a real injection.
			var first bytes.Buffer
			h.ServeHTTP(&bufWriter{h: http.Header{}, buf: &first}, req)
			var rev admissionv1.AdmissionReview
			if err := json.Unmarshal(first.Bytes(), &rev); err != nil || rev.Response == nil || !rev.Response.Allowed || len(rev.Response.Patch) == 0 {
				b.Fatalf("the bench review was not injected: %v %s", err, first.Bytes())
			}
			rd.Reset(body)
			req.Body = io.NopCloser(rd)
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rd.Reset(body)
				req.Body = io.NopCloser(rd)
				w.n = 0
				h.ServeHTTP(w, req)
			}
		})
	}
}

// BenchmarkJSONFloor is the least any webhook must do with the same bytes:
// decode the review and the pod, encode a response carrying a ready patch.
func BenchmarkJSONFloor(b *testing.B) {
	body := benchReview(b)
	// The patch the injector would return, prepared once.
	h := benchHandler(b, "")
	rec := &bytes.Buffer{}
	req, _ := http.NewRequest(http.MethodPost, InjectPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(&bufWriter{h: http.Header{}, buf: rec}, req)
	var answered admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Bytes(), &answered); err != nil {
		b.Fatal(err)
	}
	patch := answered.Response.Patch
	w := &discardWriter{h: http.Header{}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var rev admissionv1.AdmissionReview
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &rev); err != nil {
			b.Fatal(err)
		}
		var pod corev1.Pod
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(rev.Request.Object.Raw, &pod); err != nil {
			b.Fatal(err)
		}
		pt := admissionv1.PatchTypeJSONPatch
		out := admissionv1.AdmissionReview{TypeMeta: rev.TypeMeta, Response: &admissionv1.AdmissionResponse{
			UID: rev.Request.UID, Allowed: true, PatchType: &pt, Patch: patch}}
		w.n = 0
		if err := json.NewEncoder(w).Encode(&out); err != nil {
			b.Fatal(err)
		}
	}
}

type bufWriter struct {
	h   http.Header
	buf *bytes.Buffer
}

func (w *bufWriter) Header() http.Header         { return w.h }
func (w *bufWriter) WriteHeader(int)             {}
func (w *bufWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }

// BenchmarkDecodeReview is the decoding share of BenchmarkAdmission: the
// review and the view of the pod, one pass.
func BenchmarkDecodeReview(b *testing.B) {
	body := benchReview(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := decodeReview(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAPIServerApply is the share of the API server's work per
// injected pod that the patch's shape decides, reproduced in-process with
// the same libraries: decode the patch and apply it to the object as sent
// (gopkg.in/evanphx/json-patch.v4, as the mutating dispatcher does), then
// decode the patched pod (sigs.k8s.io/json). "ours" is the injector's
// answer to the bench review; "coarse" makes the same pod with fewer,
// larger operations (the app container and the volumes replaced whole),
// to show what a coarser shape would save; "none" is the same work on an
// empty patch (the pod as sent), which a webhook that changes nothing
// does not cause at all.
func BenchmarkAPIServerApply(b *testing.B) {
	body := benchReview(b)
	var rev admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &rev); err != nil {
		b.Fatal(err)
	}
	object := rev.Request.Object.Raw
	var out bytes.Buffer
	req, _ := http.NewRequest(http.MethodPost, InjectPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	benchHandler(b, "").ServeHTTP(&bufWriter{h: http.Header{}, buf: &out}, req)
	var answer admissionv1.AdmissionReview
	if err := json.Unmarshal(out.Bytes(), &answer); err != nil {
		b.Fatal(err)
	}
	ours := answer.Response.Patch
	// The coarse shape of the same result.
	p, err := jsonpatchv4.DecodePatch(ours)
	if err != nil {
		b.Fatal(err)
	}
	patched, err := p.Apply(object)
	if err != nil {
		b.Fatal(err)
	}
	var doc struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			InitContainers []json.RawMessage `json:"initContainers"`
			Containers     []json.RawMessage `json:"containers"`
			Volumes        []json.RawMessage `json:"volumes"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(patched, &doc); err != nil {
		b.Fatal(err)
	}
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	coarse, err := json.Marshal([]op{
		{"add", "/metadata/annotations/sidecar-injector.io~1status", doc.Metadata.Annotations["sidecar-injector.io/status"]},
		{"replace", "/spec/containers/0", doc.Spec.Containers[0]},
		{"add", "/spec/initContainers", doc.Spec.InitContainers},
		{"replace", "/spec/volumes", doc.Spec.Volumes},
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		patch []byte
	}{{"ours", ours}, {"coarse", coarse}, {"none", []byte("[]")}} {
		b.Run(tc.name, func(b *testing.B) {
			var want, got any
			_ = json.Unmarshal(patched, &want)
			p, _ := jsonpatchv4.DecodePatch(tc.patch)
			res, err := p.Apply(object)
			if err != nil {
				b.Fatal(err)
			}
			_ = json.Unmarshal(res, &got)
			if tc.name != "none" && !reflect.DeepEqual(want, got) {
				b.Fatalf("%s makes another pod", tc.name)
			}
			b.ReportAllocs()
			for b.Loop() {
				p, err := jsonpatchv4.DecodePatch(tc.patch)
				if err != nil {
					b.Fatal(err)
				}
				res, err := p.Apply(object)
				if err != nil {
					b.Fatal(err)
				}
				var pod corev1.Pod
				if err := sigsjson.UnmarshalCaseSensitivePreserveInts(res, &pod); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
