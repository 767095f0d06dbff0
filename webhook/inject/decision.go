package inject

import "github.com/sidecar-injector/injector/webhook/policy"

// Result is the outcome of a decision.
type Result string

// The outcomes.
const (
	// Injected: the pod was changed.
	Injected Result = "injected"
	// Skipped: the pod is admitted unchanged.
	Skipped Result = "skipped"
	// Refused: the pod must not be admitted; the message says how to fix it.
	Refused Result = "refused"
)

// Reason is a stable snake_case code. The same reason appears in the
// admission response, the log line, the metric label and explain, so it
// never changes once released.
type Reason string

// Reasons for injecting.
const (
	ReasonNamespaceEnabled Reason = "namespace_enabled"
	ReasonPodOptedIn       Reason = "pod_opted_in"
)

// Reasons for skipping.
const (
	ReasonNamespaceNotEnabled Reason = "namespace_not_enabled"
	ReasonNamespaceDisabled   Reason = "namespace_disabled"
	ReasonPodOptedOut         Reason = "pod_opted_out"
	ReasonSystemNamespace     Reason = "system_namespace"
	ReasonInjectorNamespace   Reason = "injector_namespace"
	ReasonHostNetwork         Reason = "host_network"
	ReasonAlreadyInjected     Reason = "already_injected"
	ReasonOtherMesh           Reason = "other_mesh_sidecar"
	ReasonNoContainers        Reason = "no_containers"
	ReasonWindowsPod          Reason = "windows_pod"
)

// Reasons for refusing.
const (
	ReasonInvalidAnnotation   Reason = "invalid_annotation"
	ReasonOverrideNotAllowed  Reason = "override_not_allowed"
	ReasonOverrideOutOfBounds Reason = "override_out_of_bounds"
	ReasonOptOutNotAllowed    Reason = "opt_out_not_allowed"
	ReasonProxyUIDConflict    Reason = "proxy_uid_conflict"
	ReasonProxyPortConflict   Reason = "proxy_port_conflict"
	ReasonMountPathConflict   Reason = "mount_path_conflict"
	ReasonVolumeNameConflict  Reason = "volume_name_conflict"
	// ReasonContainerNameConflict: an app container or init container
	// has the name the injector gives its own, without a status
	// annotation that says the injector put it there.
	ReasonContainerNameConflict Reason = "container_name_conflict"
	ReasonInvalidPod            Reason = "invalid_pod"
	// ReasonStatusMismatch: the pod carries a status annotation, but what
	// it records is not in the pod, or is not what the policy renders for
	// it now (hand-written, copied, or injected under another policy).
	ReasonStatusMismatch Reason = "status_mismatch"
	// ReasonPodSecurityViolation: the namespace enforces a Pod Security
	// level that what the injector adds violates; the API server would
	// reject the injected pod.
	ReasonPodSecurityViolation Reason = "pod_security_violation"
	ReasonPolicyRenderingError Reason = "policy_rendering_failed"
	// ReasonInternalError: a bug, in the core or the edge; the message
	// says what went wrong.
	ReasonInternalError Reason = "internal_error"
)

// Reasons the HTTP edge (package webhook) decides before the core sees a
// pod. They live here so every reason has one registry: AllReasons.
const (
	// ReasonMalformedRequest: the AdmissionReview or its object cannot be
	// read.
	ReasonMalformedRequest Reason = "malformed_request"
	// ReasonNotAPod and ReasonNotCreate: the request is not one the
	// injector handles, and is allowed unchanged.
	ReasonNotAPod   Reason = "not_a_pod"
	ReasonNotCreate Reason = "not_create"
	// ReasonNamespaceUnknown: the namespace's labels are not known yet;
	// deciding without them could leave a pod outside the mesh.
	ReasonNamespaceUnknown Reason = "namespace_labels_unavailable"
)

// AllReasons lists every reason with its result, for docs and metrics.
var AllReasons = []struct {
	Reason Reason
	Result Result
}{
	{ReasonNamespaceEnabled, Injected},
	{ReasonPodOptedIn, Injected},
	{ReasonNamespaceNotEnabled, Skipped},
	{ReasonNamespaceDisabled, Skipped},
	{ReasonPodOptedOut, Skipped},
	{ReasonSystemNamespace, Skipped},
	{ReasonInjectorNamespace, Skipped},
	{ReasonHostNetwork, Skipped},
	{ReasonAlreadyInjected, Skipped},
	{ReasonOtherMesh, Skipped},
	{ReasonNoContainers, Skipped},
	{ReasonWindowsPod, Skipped},
	{ReasonNotAPod, Skipped},
	{ReasonNotCreate, Skipped},
	{ReasonInvalidAnnotation, Refused},
	{ReasonOverrideNotAllowed, Refused},
	{ReasonOverrideOutOfBounds, Refused},
	{ReasonOptOutNotAllowed, Refused},
	{ReasonProxyUIDConflict, Refused},
	{ReasonProxyPortConflict, Refused},
	{ReasonMountPathConflict, Refused},
	{ReasonVolumeNameConflict, Refused},
	{ReasonContainerNameConflict, Refused},
	{ReasonInvalidPod, Refused},
	{ReasonStatusMismatch, Refused},
	{ReasonPodSecurityViolation, Refused},
	{ReasonPolicyRenderingError, Refused},
	{ReasonMalformedRequest, Refused},
	{ReasonNamespaceUnknown, Refused},
	{ReasonInternalError, Refused},
}

// Decision says what happened to a pod and why.
type Decision struct {
	Result Result `json:"result"`
	Reason Reason `json:"reason"`
	// Message is a sentence for people; for a refusal it says how to fix
	// the pod.
	Message string `json:"message"`
	// Warnings are returned as admission warnings (kubectl prints them).
	Warnings []string `json:"warnings,omitempty"`
	// Policy is the name of the policy that applied, if any.
	Policy string `json:"policy,omitempty"`
}

func decide(r Result, reason Reason, msg string) Decision {
	return Decision{Result: r, Reason: reason, Message: msg}
}

func withPolicy(d Decision, p *policy.Policy) Decision {
	if p != nil {
		d.Policy = p.Name
	}
	return d
}
