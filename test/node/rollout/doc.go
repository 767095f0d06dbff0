// Package rollout measures what a client loses while a Deployment's pods
// are replaced: a client calls the app at a steady rate, one new
// connection per request, to the instances a pluggable Discovery says are
// there, while kube-controller-manager rolls the Deployment out; the
// Report counts requests sent and failed and the failure window
// (docs/lossless.md).
//
// Two kinds of discovery, each emulating a kind of consumer:
//   - EndpointSlices: a Service's consumers behind kube-proxy (the ready
//     endpoints of its EndpointSlices, a fixed delay after the API server
//     published them);
//   - RegistryPoll over a Registry: consumers of a service registry that
//     the app registers in itself (Eureka, Nacos), fetching it every
//     interval. A Registry is its public API at a URL, so any registry
//     plugs in; the node tier serves test/registry's stand-ins from a pod
//     (test/node/cmd/registry).
//
// The package uses only the Kubernetes API (client-go); it runs against
// the node tier (test/node) or any cluster whose pods the test process can
// reach.
package rollout
