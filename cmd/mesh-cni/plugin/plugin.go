// Package plugin is mesh-cni's CNI side: a chained plugin (CNI spec 1.0:
// ADD, DEL, CHECK, VERSION; STATUS and GC of 1.1 answered as no-ops) that,
// for pods the injector marked with meshinit.CNIAnnotation, writes the
// capture rules in the pod's network namespace with mesh-init's own
// runtime (cmd/mesh-init/capture), and passes the previous plugin's result
// through unchanged. Other pods are left alone.
//
// The pod's annotations come from the container runtime, not the API
// server: containerd (1.5 and newer) passes every pod annotation to a
// plugin whose configuration entry declares the capability
// io.kubernetes.cri.pod-annotations, in runtimeConfig. So the plugin needs
// no credentials and no network in the sandbox-creation path.
//
// The protocol is implemented here rather than with the CNI library's skel
// package, which ignores VERSION's input and leaves cniVersion out of
// error results; the library's types (types.Error, the result types and
// their version conversion) are used for everything else.
package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// Type is the plugin's name: its binary in the CNI bin dir and its "type"
// in the configuration.
const Type = "mesh-cni"

// PodAnnotationsCapability is the capability a plugin entry declares to
// receive the pod's annotations from containerd.
const PodAnnotationsCapability = "io.kubernetes.cri.pod-annotations"

// SupportedVersions are the CNI spec versions the plugin accepts: the
// node's configuration may be older than 1.0.0 (bridge configurations
// often are), and the result is converted to the configuration's version.
var SupportedVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// The plugin's own error codes (the spec reserves 0-99).
const (
	// ErrMalformedAnnotation: the pod's cni-capture annotation does not
	// parse; the sandbox fails naming it.
	ErrMalformedAnnotation uint = 100
	// ErrNoAnnotations: the runtime passed no pod annotations (the
	// capability is not declared, or the runtime does not support it), so
	// the plugin cannot tell whether the pod is meshed.
	ErrNoAnnotations uint = 101
	// ErrRules: writing the rules failed.
	ErrRules uint = 102
	// ErrCheck: CHECK found the rules missing or different.
	ErrCheck uint = 103
)

// Timeout bounds one invocation.
const Timeout = time.Minute

// Rules acts in a pod's network namespace (NetNS in production; tests
// replace it).
type Rules interface {
	// Apply writes the rules for c in the network namespace at netns.
	Apply(ctx context.Context, netns string, c meshinit.CaptureConfig, log io.Writer) error
	// Cleanup removes our chains; a network namespace that is gone is
	// ErrNetNSGone.
	Cleanup(ctx context.Context, netns string, c meshinit.CaptureConfig, log io.Writer) error
	// Check verifies the rules for c.
	Check(ctx context.Context, netns string, c meshinit.CaptureConfig, log io.Writer) error
}

// ErrNetNSGone is a network namespace that no longer exists.
var ErrNetNSGone = errors.New("the network namespace no longer exists")

// Plugin is one invocation's collaborators.
type Plugin struct {
	Rules Rules
	// Log receives one line per meshed pod (the runtime keeps the
	// plugin's standard error in its own log).
	Log io.Writer
}

// netConf is the plugin's configuration as the runtime sends it: the
// conflist entry plus cniVersion, name, runtimeConfig and prevResult.
type netConf struct {
	types.PluginConf
	RuntimeConfig map[string]json.RawMessage `json:"runtimeConfig,omitempty"`
}

// errorResult is the error JSON of the spec: types.Error with the
// configuration's cniVersion, which the library's type leaves out.
type errorResult struct {
	CNIVersion string `json:"cniVersion"`
	*types.Error
}

// Main runs one invocation: env reads the CNI_* variables, stdin is the
// configuration, stdout receives the result. It returns the exit code.
func (p *Plugin) Main(env func(string) string, stdin io.Reader, stdout io.Writer) int {
	cniVersion := "1.0.0" // for errors before the configuration is read
	fail := func(e *types.Error) int {
		b, _ := json.Marshal(errorResult{CNIVersion: cniVersion, Error: e})
		_, _ = stdout.Write(append(b, '\n'))
		return 1
	}
	command := env("CNI_COMMAND")
	input, err := io.ReadAll(stdin)
	if err != nil {
		return fail(types.NewError(types.ErrIOFailure, "reading the configuration from standard input failed", err.Error()))
	}
	if command == "VERSION" {
		var v struct {
			CNIVersion string `json:"cniVersion"`
		}
		// The spec gives VERSION {"cniVersion": …}; older runtimes give
		// nothing, which is answered too. Anything else is an error.
		if len(bytes.TrimSpace(input)) > 0 {
			if err := json.Unmarshal(input, &v); err != nil {
				return fail(types.NewError(types.ErrDecodingFailure, "the VERSION input on standard input is not a JSON object with a cniVersion", err.Error()))
			}
		}
		if v.CNIVersion == "" {
			v.CNIVersion = cniVersion
		}
		b, _ := json.Marshal(struct {
			CNIVersion        string   `json:"cniVersion"`
			SupportedVersions []string `json:"supportedVersions"`
		}{v.CNIVersion, SupportedVersions})
		_, _ = stdout.Write(append(b, '\n'))
		return 0
	}
	var conf netConf
	if err := json.Unmarshal(input, &conf); err != nil {
		return fail(decodingError(input, err))
	}
	if conf.CNIVersion != "" {
		cniVersion = conf.CNIVersion
	}
	if !slices.Contains(SupportedVersions, conf.CNIVersion) {
		return fail(types.NewError(types.ErrIncompatibleCNIVersion, "incompatible CNI versions",
			fmt.Sprintf("the configuration's cniVersion is %q; %s supports %s", conf.CNIVersion, Type, strings.Join(SupportedVersions, ", "))))
	}
	required := map[string][]string{
		"ADD":   {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"},
		"CHECK": {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"},
		"DEL":   {"CNI_CONTAINERID", "CNI_IFNAME"},
	}
	switch command {
	case "ADD", "DEL":
	case "CHECK":
		if !atLeast(conf.CNIVersion, "0.4.0") {
			// CHECK came with spec 0.4.0 (the library's skel says the same).
			return fail(types.NewError(types.ErrIncompatibleCNIVersion, "config version does not allow CHECK",
				fmt.Sprintf("the configuration's cniVersion is %s; CHECK needs 0.4.0 or newer", conf.CNIVersion)))
		}
	case "STATUS", "GC":
		if !atLeast(conf.CNIVersion, "1.1.0") {
			return fail(types.NewError(types.ErrIncompatibleCNIVersion, "config version does not allow "+command,
				fmt.Sprintf("the configuration's cniVersion is %s; %s needs 1.1.0 or newer", conf.CNIVersion, command)))
		}
		// CNI 1.1: the plugin keeps no state outside the pods' network
		// namespaces and is ready whenever its binary runs.
		return 0
	default:
		return fail(types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_COMMAND is %q, not ADD, DEL, CHECK or VERSION", command), ""))
	}
	var missing []string
	for _, v := range required[command] {
		if env(v) == "" {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 {
		return fail(types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("%s needs the environment variable(s) %s", command, strings.Join(missing, ", ")), ""))
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return fail(types.NewError(types.ErrDecodingFailure, "the prevResult in the configuration cannot be read", err.Error()))
	}
	inv := invocation{p: p, conf: &conf, netns: env("CNI_NETNS"), containerID: env("CNI_CONTAINERID"), args: parseArgs(env("CNI_ARGS"))}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	var e *types.Error
	switch command {
	case "ADD":
		e = inv.add(ctx)
		if e == nil {
			r, err := conf.PrevResult.GetAsVersion(conf.CNIVersion)
			if err == nil {
				err = r.PrintTo(stdout)
			}
			if err != nil {
				e = types.NewError(types.ErrIOFailure, "printing the result failed", err.Error())
			}
		}
	case "DEL":
		inv.del(ctx)
	case "CHECK":
		e = inv.check(ctx)
	}
	if e != nil {
		return fail(e)
	}
	return 0
}

// invocation is one ADD, DEL or CHECK.
type invocation struct {
	p           *Plugin
	conf        *netConf
	netns       string
	containerID string
	args        map[string]string
}

// pod names the pod for messages.
func (in invocation) pod() string {
	if n := in.args["K8S_POD_NAME"]; n != "" {
		return "pod " + in.args["K8S_POD_NAMESPACE"] + "/" + n
	}
	return "container " + in.containerID
}

func (in invocation) logf(format string, args ...any) {
	if in.p.Log != nil {
		fmt.Fprintf(in.p.Log, "%s: %s: "+format+"\n", append([]any{Type, in.pod()}, args...)...)
	}
}

// settings reads the pod's capture settings: ok is false for a pod that is
// not meshed in cni mode. A runtime that passed no annotations for a
// Kubernetes pod is an error: the pod may be meshed, and skipping it would
// leave it uncaptured silently.
func (in invocation) settings() (c meshinit.CaptureConfig, ok bool, e *types.Error) {
	raw, present := in.conf.RuntimeConfig[PodAnnotationsCapability]
	if !present {
		if in.args["K8S_POD_NAME"] == "" {
			return c, false, nil // not a Kubernetes pod: nothing can be meshed
		}
		return c, false, types.NewError(ErrNoAnnotations,
			fmt.Sprintf("%s: the container runtime passed no pod annotations to %s, so it cannot tell whether the pod is meshed", in.pod(), Type),
			fmt.Sprintf(`the plugin's entry in the CNI configuration must declare "capabilities": {%q: true} (the mesh-cni node agent writes it so), `+
				"and the runtime must pass them (containerd 1.5 or newer)", PodAnnotationsCapability))
	}
	var ann map[string]string
	if err := json.Unmarshal(raw, &ann); err != nil {
		return c, false, types.NewError(types.ErrDecodingFailure,
			fmt.Sprintf("%s: runtimeConfig[%q] is not an object of strings", in.pod(), PodAnnotationsCapability), err.Error())
	}
	v, has := ann[meshinit.CNIAnnotation]
	if !has {
		return c, false, nil
	}
	c, err := meshinit.ParseCaptureAnnotation(v)
	if err != nil {
		return c, false, types.NewError(ErrMalformedAnnotation, fmt.Sprintf("%s: %v", in.pod(), err),
			"the injector writes this annotation in the cni capture mode; create the pod from its own spec again (a pod must not set it itself)")
	}
	return c, true, nil
}

func (in invocation) add(ctx context.Context) *types.Error {
	if in.conf.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("%s is a chained plugin: it must follow the plugin that creates the pod's interface in the configuration's plugins list (there is no prevResult)", Type), "")
	}
	c, ok, e := in.settings()
	if e != nil || !ok {
		return e
	}
	var log bytes.Buffer
	if err := in.p.Rules.Apply(ctx, in.netns, c, &log); err != nil {
		if e := netnsError(err); e != nil {
			return e
		}
		// One family's rules may be in place and the other's not: remove
		// ours, so a failed ADD leaves no half capture behind (the
		// runtime's DEL would too, but need not come).
		var clog bytes.Buffer
		undo := "the rules it wrote before failing were removed"
		if cerr := in.p.Rules.Cleanup(ctx, in.netns, c, &clog); cerr != nil {
			undo = fmt.Sprintf("removing the rules it wrote before failing failed too: %v", cerr)
		}
		in.logf("ADD failed: %v; %s", err, undo)
		return types.NewError(ErrRules, fmt.Sprintf("%s: writing the capture rules in the pod's network namespace %s failed: %v; %s", in.pod(), in.netns, err, undo),
			oneLine(log.String()+"\n"+clog.String()))
	}
	in.logf("capture rules written (%s)", oneLine(log.String()))
	return nil
}

// del removes our chains when the network namespace still exists. It
// never fails: the namespace and its rules go with the sandbox anyway, and
// a failing DEL would keep the pod's sandbox from being removed; a problem
// is logged.
func (in invocation) del(ctx context.Context) {
	if in.netns == "" {
		return
	}
	c, ok, e := in.settings()
	if e != nil && e.Code == ErrMalformedAnnotation {
		c, ok = meshinit.DefaultCaptureConfig(), true // ADD failed; remove whatever it may have left
	}
	if !ok {
		return
	}
	var log bytes.Buffer
	err := in.p.Rules.Cleanup(ctx, in.netns, c, &log)
	switch {
	case errors.Is(err, ErrNetNSGone):
	case err != nil:
		in.logf("DEL: removing the capture rules failed (ignored, the network namespace goes with the sandbox): %v", err)
	default:
		in.logf("capture rules removed (%s)", oneLine(log.String()))
	}
}

func (in invocation) check(ctx context.Context) *types.Error {
	if in.conf.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("%s is a chained plugin: CHECK needs the prevResult of the plugins before it", Type), "")
	}
	c, ok, e := in.settings()
	if e != nil || !ok {
		return e
	}
	var log bytes.Buffer
	if err := in.p.Rules.Check(ctx, in.netns, c, &log); err != nil {
		if e := netnsError(err); e != nil {
			return e
		}
		return types.NewError(ErrCheck, fmt.Sprintf("%s: %v", in.pod(), err), oneLine(log.String()))
	}
	return nil
}

// netnsError is the spec's error 8 for a CNI_NETNS that is gone, is not
// a network namespace, or is the plugin's own (the host's); nil for any
// other error.
func netnsError(err error) *types.Error {
	var ne *NetNSError
	if errors.As(err, &ne) {
		return types.NewError(types.ErrInvalidNetNS, ne.Error(), "")
	}
	if errors.Is(err, ErrNetNSGone) {
		return types.NewError(types.ErrInvalidNetNS, err.Error(), "")
	}
	return nil
}

// atLeast compares two CNI versions; a version that does not parse is not
// at least anything.
func atLeast(v, min string) bool {
	ok, err := version.GreaterThanOrEqualTo(v, min)
	return err == nil && ok
}

// decodingError says why the configuration did not decode: not JSON at
// all, or JSON with a field of the wrong type (named).
func decodingError(input []byte, err error) *types.Error {
	var te *json.UnmarshalTypeError
	if json.Valid(input) && errors.As(err, &te) {
		field := te.Field
		if i := strings.LastIndex(field, "."); i >= 0 && strings.HasPrefix(field, "PluginConf.") {
			field = field[i+1:]
		}
		return types.NewError(types.ErrDecodingFailure,
			fmt.Sprintf("the plugin configuration's %q is a JSON %s, which the CNI spec does not allow there", field, te.Value), err.Error())
	}
	return types.NewError(types.ErrDecodingFailure, "the plugin configuration on standard input is not valid JSON", err.Error())
}

// parseArgs reads CNI_ARGS ("K=V;K=V").
func parseArgs(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// oneLine joins log lines for a message or a log line.
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(strings.TrimPrefix(l, "mesh-init: ")); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}
