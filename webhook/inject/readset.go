package inject

// PodFields is the read set of the core: every field of a pod that Decide
// (and so Inject and Explain) reads, as a JSON path; "[]" stands for every
// element of a list, and a path that ends at an object covers all of it.
// Nothing outside these fields can change a decision or a change record.
// StatusPodFields among them are read only for a pod that carries the
// status annotation.
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
	"spec.initContainers[].image",
	"spec.initContainers[].command",
	"spec.initContainers[].args",
	"spec.initContainers[].ports",
	"spec.initContainers[].volumeMounts",
	"spec.initContainers[].volumeDevices",
	"spec.initContainers[].lifecycle",
	"spec.initContainers[].securityContext",
	"spec.initContainers[].restartPolicy",
	"spec.initContainers[].env[].name",
	"spec.initContainers[].resources",
	"spec.containers[].name",
	"spec.containers[].image",
	"spec.containers[].command",
	"spec.containers[].args",
	"spec.containers[].ports",
	"spec.containers[].volumeMounts",
	"spec.containers[].volumeDevices",
	"spec.containers[].lifecycle",
	"spec.containers[].securityContext",
	"spec.containers[].restartPolicy",
	"spec.containers[].env[].name",
	"spec.containers[].resources",
	"spec.volumes[].name",
	"spec.volumes[]",
	"spec.restartPolicy",
	"spec.terminationGracePeriodSeconds",
	"spec.hostNetwork",
	"spec.securityContext",
	"spec.os",
	"spec.resources",
}

// StatusPodFields are the fields of PodFields the core reads only for a
// pod that carries the status annotation, to tell whether what it records
// is what the policy renders (verifyStatus). Such pods are rare (injected
// offline, then created), so the webhook's fast view leaves these out and
// decodes a pod with the annotation in full.
var StatusPodFields = []string{
	"spec.initContainers[].image",
	"spec.initContainers[].args",
	"spec.initContainers[].resources",
	"spec.containers[].image",
	"spec.containers[].args",
	"spec.containers[].resources",
	"spec.volumes[]",
}
