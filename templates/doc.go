// Package templates holds the embedded templates that describe what the
// injector adds to a pod: the mesh-init init container, the Envoy sidecar,
// their volumes, the app containers' preStop hook and the Envoy bootstrap.
//
// Templates are parsed once, with missingkey=error, and rendered into typed
// values (corev1.Container and friends), never into patch text. Operators
// may replace any of them with their own; Parse checks that every template
// of a set exists and parses.
//
// The data the templates see (inject.TemplateData) and the rendering into
// what a pod gets live with the core (webhook/inject/render.go); the Envoy
// bootstrap is validated by webhook/envoy. This package imports nothing
// from this module (test/walls_test.go checks it), so a template set is
// text and nothing else.
package templates
