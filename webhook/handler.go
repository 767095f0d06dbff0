package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/sidecar-injector/injector/webhook/inject"
)

// NamespaceSource tells the handler a namespace's labels.
type NamespaceSource interface {
	// Labels returns the namespace's labels. It never calls the API server
	// per request.
	Labels(ctx context.Context, name string) (map[string]string, error)
}

// Handler answers pod admissions. The engine is swapped atomically on
// reload, so a request sees one whole configuration or the next, never a mix.
type Handler struct {
	engine     atomic.Pointer[inject.Engine]
	namespaces NamespaceSource
	log        *slog.Logger
	metrics    *Metrics
	// events records why pods of enabled namespaces were not injected, on
	// their owners (nil: no events).
	events record.EventRecorder
}

// SetEventRecorder makes the handler record an Event on the owner of each
// pod of an enabled namespace it skips or refuses (events.go).
func (h *Handler) SetEventRecorder(r record.EventRecorder) { h.events = r }

// NewHandler returns a handler serving with engine.
func NewHandler(engine *inject.Engine, namespaces NamespaceSource, log *slog.Logger, metrics *Metrics) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{namespaces: namespaces, log: log, metrics: metrics}
	h.engine.Store(engine)
	return h
}

// SetEngine swaps in a new compiled configuration.
func (h *Handler) SetEngine(e *inject.Engine) { h.engine.Store(e) }

// Engine returns the configuration in force.
func (h *Handler) Engine() *inject.Engine { return h.engine.Load() }

var podResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}

// Handle implements admission.Handler, for embedding in controller-runtime's
// admission.Webhook. `injector serve` mounts the Handler itself (ServeHTTP),
// which answers identically without the generic decoder's cost.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	in := admissionInput{
		uid: req.UID, kind: req.Kind, resource: req.Resource, subResource: req.SubResource,
		namespace: req.Namespace, operation: req.Operation, dryRun: req.DryRun != nil && *req.DryRun,
		raw: req.Object.Raw,
	}
	resp, d, pod := h.decide(ctx, &in)
	h.record(&in, d, pod, time.Since(start))
	return resp
}

// admissionInput is what the handler needs from an AdmissionRequest. pod is
// set when the HTTP edge decoded the object along with the review; raw when
// it is still to be decoded.
type admissionInput struct {
	uid         types.UID
	kind        metav1.GroupVersionKind
	resource    metav1.GroupVersionResource
	subResource string
	namespace   string
	operation   admissionv1.Operation
	dryRun      bool
	pod         *corev1.Pod
	raw         []byte
	noRequest   bool
	// nsLabels are the namespace's labels, once known.
	nsLabels map[string]string
}

// decide answers one admission. The patch is built from the core's record
// of what injection changes; the added containers and volumes go into it as
// the JSON marshalled when the policy loaded.
func (h *Handler) decide(ctx context.Context, in *admissionInput) (admission.Response, inject.Decision, *corev1.Pod) {
	if in.noRequest || (in.uid == "" && in.kind.Kind == "" && in.operation == "") {
		return refuse400(inject.ReasonMalformedRequest, "the AdmissionReview has no request")
	}
	resourceOK := in.resource == podResource || in.resource == (metav1.GroupVersionResource{})
	if in.kind.Group != "" || in.kind.Kind != "Pod" || !resourceOK || in.subResource != "" {
		msg := fmt.Sprintf("%s %s/%s is not a pod; allowed unchanged", in.kind.Kind, in.resource.Resource, in.subResource)
		return admission.Allowed(msg), inject.Decision{Result: inject.Skipped, Reason: inject.ReasonNotAPod, Message: msg}, nil
	}
	if in.operation != admissionv1.Create {
		msg := fmt.Sprintf("operation %s is not CREATE; allowed unchanged", in.operation)
		return admission.Allowed(msg), inject.Decision{Result: inject.Skipped, Reason: inject.ReasonNotCreate, Message: msg}, nil
	}
	pod := in.pod
	if pod == nil {
		raw := in.raw
		if len(raw) == 0 {
			return refuse400(inject.ReasonMalformedRequest, "request.object is empty")
		}
		if !isJSONObject(raw) {
			return refuse400(inject.ReasonMalformedRequest, "request.object is not a JSON object")
		}
		pod = &corev1.Pod{}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, pod); err != nil {
			return refuse400(inject.ReasonMalformedRequest, "request.object is not a valid Pod: "+err.Error())
		}
	}
	if pod.Kind != "" && (pod.Kind != "Pod" || pod.APIVersion != "v1") {
		return refuse400(inject.ReasonMalformedRequest, fmt.Sprintf("request.object is a %s %s, not a v1 Pod", pod.APIVersion, pod.Kind))
	}
	nsName := in.namespace
	if nsName == "" {
		nsName = pod.Namespace
	}
	labels, err := h.namespaces.Labels(ctx, nsName)
	if err != nil {
		d := inject.Decision{Result: inject.Refused, Reason: inject.ReasonNamespaceUnknown, Message: "namespace labels are not available: " + err.Error()}
		return admission.Errored(http.StatusServiceUnavailable, errors.New(d.Message)), d, pod
	}
	in.nsLabels = labels
	d, changes := h.engine.Load().Decide(pod, inject.Namespace{Name: nsName, Labels: labels})
	var resp admission.Response
	switch d.Result {
	case inject.Injected:
		resp = admission.Patched(d.Message, buildPatch(pod, changes)...)
	case inject.Skipped:
		resp = admission.Allowed(d.Message)
	default:
		resp = admission.Denied(d.Message)
	}
	resp.Warnings = d.Warnings
	resp.AuditAnnotations = map[string]string{"decision": string(d.Result), "reason": string(d.Reason)}
	if d.Policy != "" {
		resp.AuditAnnotations["policy"] = d.Policy
	}
	return resp, d, pod
}

func refuse400(reason inject.Reason, msg string) (admission.Response, inject.Decision, *corev1.Pod) {
	return admission.Errored(http.StatusBadRequest, errors.New(msg)), inject.Decision{Result: inject.Refused, Reason: reason, Message: msg}, nil
}

func isJSONObject(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return true
		default:
			return false
		}
	}
	return false
}

// record writes the log line and the metric for one admission.
func (h *Handler) record(in *admissionInput, d inject.Decision, pod *corev1.Pod, took time.Duration) {
	if h.metrics != nil {
		h.metrics.Observe(d.Result, d.Reason)
	}
	h.event(in, d, pod)
	level := slog.LevelInfo
	if d.Result == inject.Refused {
		level = slog.LevelWarn
	}
	if !h.log.Enabled(context.Background(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("uid", string(in.uid)),
		slog.String("namespace", in.namespace),
		slog.String("result", string(d.Result)),
		slog.String("reason", string(d.Reason)),
		slog.Duration("took", took),
	}
	if pod != nil {
		name := pod.Name
		if name == "" {
			name = pod.GenerateName
		}
		attrs = append(attrs, slog.String("pod", name))
	}
	if d.Policy != "" {
		attrs = append(attrs, slog.String("policy", d.Policy))
	}
	if d.Result != inject.Injected {
		attrs = append(attrs, slog.String("message", d.Message))
	}
	if len(d.Warnings) > 0 {
		attrs = append(attrs, slog.Any("warnings", d.Warnings))
	}
	if in.dryRun {
		attrs = append(attrs, slog.Bool("dryRun", true))
	}
	h.log.LogAttrs(context.Background(), level, "admission", attrs...)
}
