// Command injector is the sidecar injector: the admission webhook server
// (serve) and the operator's command-line tools (inject, uninject, explain,
// certs, demo).
//
// It holds flags, wiring and exit codes; what the commands do is in
// webhook (serve), webhook/manifest (inject, uninject, explain), certs and
// the core.
package main
