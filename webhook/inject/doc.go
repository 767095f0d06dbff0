// Package inject is the pure injection core: given a pod, its namespace
// and the compiled policies (an Engine), it decides whether and how to
// inject and returns a Decision that says why, and for an injected pod one
// record of everything injection changes (Changes). The injected pod
// (Inject, Changes.Apply), the webhook's JSON Patch, the status annotation
// and Uninject are all derived from that record, so the webhook, the CLI
// and explain decide and change identically.
//
// The code follows the decision's sections: selection and opt-in
// (select.go), the pod's overrides within the policy's bounds
// (overrides.go), pods that would break the mesh (conflicts.go), the app
// containers' changes (apps.go), the pod-level changes (pod.go), and the
// status (status.go); render.go renders a policy's templates once, when
// it loads. PodFields (readset.go) lists what of a pod it reads.
//
// It never touches HTTP, Kubernetes clients or JSON patches: it must not
// import net/http, os/exec, controller-runtime, client-go or jsonpatch,
// directly or through another package of this module
// (test/walls_test.go checks it).
package inject
