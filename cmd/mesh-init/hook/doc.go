// Package hook is the lifecycle hook tool that runs inside injected pods
// as `mesh-init hook`: take the instance offline in its service registry,
// sleep while consumers forget it, then run the app's original preStop
// handler (prestop); hold a classic-mode app until the proxy is ready
// (wait-ready); keep the proxy serving until the app has drained
// (proxy-stop); tell the proxy to quit when a Job's command is done (run).
//
// It owns what happens at run time: registry HTTP calls and their retries,
// signals, sleeps, running the original handlers. The flags, their parsing
// and the rules both sides apply are the contract in webhook/meshinit.
//
// It imports the standard library and webhook/meshinit only: mesh-init
// ships in every pod's init container image (test/walls_test.go checks it).
package hook
