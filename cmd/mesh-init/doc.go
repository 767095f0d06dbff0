// Command mesh-init runs inside every injected pod. As the init container
// (`mesh-init capture`) it writes the iptables and ip6tables rules that send
// the pod's TCP traffic through the proxy and installs itself into a shared
// volume; from there the app and sidecar containers run `mesh-init hook`
// for their lifecycle hooks. The command only dispatches to the
// subcommands; their logic lives in cmd/mesh-init/capture and cmd/mesh-init/hook, and
// their flags in the contract webhook/meshinit.
//
// It is the binary in every pod's init container image, so it imports the
// standard library and this module only (the contract and its own
// runtime), and stays under a size budget (test/walls_test.go checks both).
package main
