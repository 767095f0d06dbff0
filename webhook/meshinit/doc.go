// Package meshinit is the contract between the injector and mesh-init, the
// binary that runs inside every injected pod. The injector renders the
// init container's and the hooks' arguments with the Args methods here;
// mesh-init reads them back with the Parse functions here. One definition
// serves both sides, so they cannot disagree about a flag's name, an
// environment variable, a default or a value's format.
//
// It owns:
//   - capture settings: CaptureConfig and CaptureCommand (`mesh-init
//     capture`), ports and CIDRs (PortList, PortSet, CIDRList, CIDRSet),
//     Mode and IPv6Mode, their flags and MESH_INIT_* variables, and the
//     encoding of the Envoy bootstrap argument with its frozen
//     dictionaries (EncodeFile, DecodeFile);
//   - hook settings (`mesh-init hook`): the registry presets and their
//     settings (Registry), Duration, PreStop, WaitReady, ProxyStop, Run,
//     OriginalHandler, their Args and Parse functions and usage texts, and
//     the rules both sides apply to URLs and headers (CheckHTTPURL,
//     ParseHeader).
//
// What the flags do at run time (iptables, registry calls, signals) lives
// with the binary: cmd/mesh-init/capture and cmd/mesh-init/hook.
//
// It must import nothing but the standard library, and of that no
// net/http or os/exec: the pure injection core and the policy package
// import it, and mesh-init stays small (test/walls_test.go checks both).
package meshinit
