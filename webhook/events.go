package webhook

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// A pod of an enabled namespace that is not injected is news to whoever
// owns it: a Kubernetes Event on the pod's controller (its ReplicaSet,
// StatefulSet, Job, DaemonSet...) says why, so `kubectl describe` shows
// it beside the controller's own events, as Linkerd's injector does.
//
// The owner, because the pod does not exist yet when it is admitted: most
// have no name (generateName), none has a UID, and a refused one never
// will; an event on it would match nothing `kubectl describe pod` looks
// for. A pod without a controller gets no event: whoever created it gets
// the answer directly (the refusal, or the admitted pod).
//
// client-go's event broadcaster sends them asynchronously (never on the
// admission's path: a full queue drops events, it does not block), and its
// correlator keeps them bounded: identical events become one with a count,
// ten similar ones in ten minutes are combined, and a token bucket per
// involved object (burst 25, then one per five minutes) drops the rest.

// Event reasons (CamelCase, as Kubernetes components write them); the
// message carries the injector's stable reason.
const (
	EventInjectionSkipped = "InjectionSkipped"
	EventInjectionRefused = "InjectionRefused"
)

// EventComponent is the source of the events.
const EventComponent = "sidecar-injector"

// maxEventMessage bounds an event's message (the API's limit for a note).
const maxEventMessage = 1024

// NewEventRecorder starts client-go's event broadcaster writing to the API
// server of cfg; it stops when ctx ends. RBAC: create and patch events.
func NewEventRecorder(ctx context.Context, cfg *rest.Config) (record.EventRecorder, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: EventComponent}), nil
}

// event records why a pod of an enabled namespace was not injected, on
// its controller. Dry-run admissions record nothing; nor does a pod that
// is already injected (nothing to explain).
func (h *Handler) event(in *admissionInput, d inject.Decision, pod *corev1.Pod) {
	if h.events == nil || in.dryRun || pod == nil || in.nsLabels[policy.NamespaceLabel] != "enabled" {
		return
	}
	eventType, reason := corev1.EventTypeNormal, EventInjectionSkipped
	switch {
	case d.Result == inject.Refused:
		eventType, reason = corev1.EventTypeWarning, EventInjectionRefused
	case d.Result != inject.Skipped || d.Reason == inject.ReasonAlreadyInjected:
		return
	}
	owner := controllerOf(pod)
	if owner == nil {
		return
	}
	ns := in.namespace
	if ns == "" {
		ns = pod.Namespace
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	msg := fmt.Sprintf("pod %s: %s (%s): %s", name, d.Result, d.Reason, d.Message)
	if len(msg) > maxEventMessage {
		msg = msg[:maxEventMessage-3] + "..."
	}
	h.events.Event(&corev1.ObjectReference{
		APIVersion: owner.APIVersion, Kind: owner.Kind, Name: owner.Name, UID: owner.UID, Namespace: ns,
	}, eventType, reason, msg)
}

// controllerOf is the pod's controlling owner, or nil.
func controllerOf(pod *corev1.Pod) *corev1.ObjectReference {
	for _, o := range pod.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			return &corev1.ObjectReference{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, UID: o.UID}
		}
	}
	return nil
}
