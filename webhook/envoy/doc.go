// Package envoy checks a rendered Envoy bootstrap against Envoy's own schema
// (the v3 protos and their protoc-gen-validate rules, from go-control-plane)
// and turns it into the compact JSON Envoy is started with.
//
// It is pure: no network, no clients. Bootstraps are validated once per
// policy when the policy loads, never per request.
//
// It must not import this module's other packages or anything that talks
// to a network: the core imports it to validate each policy's bootstrap.
package envoy
