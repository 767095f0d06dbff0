// Package policy owns what shapes one injection: the settings and their
// built-in defaults, the policy file that layers namespace policies over
// them (parsing, merging, validation, where each value came from), the
// per-pod annotations that tune them within a policy's bounds, and the
// Loader that reads and watches the file.
//
// It is pure data and validation plus reading one file: the injection
// core and the offline commands import it. It must not import net/http,
// os/exec, controller-runtime, client-go or jsonpatch, directly or through
// another package of this module (test/walls_test.go checks it), nor the
// core (webhook/inject), which builds engines from what it returns.
package policy
