package inject

// PodFields is the read set of the core: every field of a pod that Decide
// (and so Inject and Explain) reads, as a JSON path; "[]" stands for every
// element of a list, and a path that ends at an object covers all of it.
// Nothing outside these fields can change a decision or a change record.
//
// The webhook decodes exactly these fields from an AdmissionReview and
// skips the rest (webhook/podview.go), which halves its decoding. A core
// change that reads another field adds it here; a test in this package
// fails until it does (it decides every fixture from the pod cut down to
// these fields), and a test in the webhook fails until its view decodes
// it.
var PodFields = []string{
	"metadata.name",
	"metadata.generateName",
	"metadata.namespace",
	"metadata.labels",
	"metadata.annotations",
	"metadata.ownerReferences",
	"spec.initContainers[].name",
	"spec.initContainers[].command",
	"spec.initContainers[].ports",
	"spec.initContainers[].volumeMounts",
	"spec.initContainers[].volumeDevices",
	"spec.initContainers[].lifecycle",
	"spec.initContainers[].securityContext",
	"spec.initContainers[].restartPolicy",
	"spec.initContainers[].env",
	"spec.containers[].name",
	"spec.containers[].command",
	"spec.containers[].ports",
	"spec.containers[].volumeMounts",
	"spec.containers[].volumeDevices",
	"spec.containers[].lifecycle",
	"spec.containers[].securityContext",
	"spec.containers[].restartPolicy",
	"spec.containers[].env",
	"spec.volumes[].name",
	"spec.restartPolicy",
	"spec.terminationGracePeriodSeconds",
	"spec.hostNetwork",
	"spec.securityContext",
	"spec.os",
	"spec.resources",
}
