// Package webhook is the injector's HTTP edge: it decodes AdmissionReviews
// (and, in the same pass, the fields of the pod the core reads: podview.go
// holds exactly inject.PodFields), asks the pure core (package inject) for a
// decision and its record of changes, and answers with a JSON Patch built
// from that record (patch.go). It also wires the HTTPS server on
// controller-runtime's webhook.Server, health, metrics, the namespace label
// cache and configuration reloads, and serves explain for the running
// configuration.
//
// Everything that talks HTTP, to the API server or in JSON Patch lives here
// and nowhere below it: the core, the policy and the mesh-init contract
// must not import what this package does (test/walls_test.go checks it).
package webhook
