// Package capture is the in-pod half of traffic capture: it turns a
// meshinit.CaptureCommand into the nat rules that send the pod's TCP
// traffic through the proxy (rules.go), picks the iptables backend and
// checks the pod's IPv6 and capabilities from /proc (detect.go), and runs
// iptables-restore and ip6tables-restore, copies mesh-init into the shared
// volume and writes the proxy's bootstrap (exec.go).
//
// `mesh-init capture` runs it; it is a plain package rather than an
// internal one so that another binary on the node (a CNI plugin) can write
// exactly the same rules. What the flags mean and how they are spelled is
// the contract in webhook/meshinit, which the injector renders.
//
// It imports the standard library and webhook/meshinit only: mesh-init
// ships in every pod's init container image (test/walls_test.go checks it).
package capture
