// Package manifest applies the injection core to Kubernetes manifests: Pods
// and the pod templates of workloads, in multi-document YAML or JSON, with
// Lists. It is what `injector inject` and `injector uninject` run, and it
// uses the same core and settings as the webhook, so a template injected
// here gives exactly what the webhook gives the pods created from it.
//
// It is the CLI's logic, not its flags (cmd/injector): it reads and writes
// YAML and JSON and imports the core and the policy, never the HTTP edge.
package manifest
