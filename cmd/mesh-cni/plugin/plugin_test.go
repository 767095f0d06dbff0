package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// These tests hold the plugin to the CNI spec's rules with the CNI
// library's own types: ADD's output is the prevResult, in the
// configuration's cniVersion; DEL and CHECK print nothing on success;
// errors are the spec's JSON (cniVersion, code, msg, details) on standard
// output with a non-zero exit. The rules themselves are a fake here; the
// node tier runs the real ones in real pods.

type call struct {
	op    string
	netns string
	c     meshinit.CaptureConfig
}

type fakeRules struct {
	calls []call
	err   error
	// applyErr, when set, fails Apply alone.
	applyErr error
}

func (f *fakeRules) Apply(_ context.Context, netns string, c meshinit.CaptureConfig, log io.Writer) error {
	f.calls = append(f.calls, call{"apply", netns, c})
	io.WriteString(log, "mesh-init: IPv4: wrote 12 rules\n")
	if f.applyErr != nil {
		return f.applyErr
	}
	return f.err
}
func (f *fakeRules) Cleanup(_ context.Context, netns string, c meshinit.CaptureConfig, _ io.Writer) error {
	f.calls = append(f.calls, call{"cleanup", netns, c})
	return f.err
}
func (f *fakeRules) Check(_ context.Context, netns string, c meshinit.CaptureConfig, _ io.Writer) error {
	f.calls = append(f.calls, call{"check", netns, c})
	return f.err
}

// prevResult is what the bridge plugin returns for a dual-stack pod.
const prevResult = `{"cniVersion":"1.0.0","interfaces":[{"name":"sinode0","mac":"aa:bb:cc:dd:ee:01"},{"name":"veth1","mac":"aa:bb:cc:dd:ee:02"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:03","sandbox":"/run/netns/cni-1"}],` +
	`"ips":[{"interface":2,"address":"10.244.0.7/24","gateway":"10.244.0.1"},{"interface":2,"address":"fd00:10:244::7/64","gateway":"fd00:10:244::1"}],"dns":{}}`

func config(t *testing.T, cniVersion string, annotations map[string]string, withCapability bool) []byte {
	t.Helper()
	prev := map[string]any{}
	if err := json.Unmarshal([]byte(prevResult), &prev); err != nil {
		t.Fatal(err)
	}
	if cniVersion != "1.0.0" {
		// What the previous plugin prints for an older configuration.
		r, err := types100.NewResult([]byte(prevResult))
		if err != nil {
			t.Fatal(err)
		}
		old, err := r.GetAsVersion(cniVersion)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := old.PrintTo(&buf); err != nil {
			t.Fatal(err)
		}
		prev = map[string]any{}
		if err := json.Unmarshal(buf.Bytes(), &prev); err != nil {
			t.Fatal(err)
		}
	}
	conf := map[string]any{
		"cniVersion": cniVersion, "name": "pods", "type": Type,
		// libcni leaves the capabilities in (the spec says to remove them).
		"capabilities": map[string]bool{PodAnnotationsCapability: true},
		"prevResult":   prev,
	}
	if withCapability {
		conf["runtimeConfig"] = map[string]any{PodAnnotationsCapability: annotations}
	}
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func envOf(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func podEnv(command string) map[string]string {
	return map[string]string{
		"CNI_COMMAND": command, "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/run/netns/cni-1", "CNI_IFNAME": "eth0",
		"CNI_PATH": "/opt/cni/bin", "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=orders-0;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u1",
	}
}

func runPlugin(t *testing.T, rules Rules, env map[string]string, stdin []byte) (int, string, string) {
	t.Helper()
	var out, log bytes.Buffer
	code := (&Plugin{Rules: rules, Log: &log}).Main(envOf(env), bytes.NewReader(stdin), &out)
	return code, out.String(), log.String()
}

var meshed = map[string]string{"app": "orders", meshinit.CNIAnnotation: func() string {
	c := meshinit.DefaultCaptureConfig()
	c.ExcludeOutboundPorts = meshinit.PortList{{From: 8761, To: 8761}}
	return c.AnnotationValue()
}()}

// ADD passes the previous result through, converted to nothing: the
// output equals prevResult in the configuration's version, for every
// version a node's configuration may have, meshed pod or not.
func TestAddPassesPrevResultThrough(t *testing.T) {
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		for _, ann := range []map[string]string{nil, {"app": "x"}, meshed} {
			rules := &fakeRules{}
			stdin := config(t, v, ann, true)
			code, out, _ := runPlugin(t, rules, podEnv("ADD"), stdin)
			if code != 0 {
				t.Fatalf("%s: exit %d: %s", v, code, out)
			}
			// The output parses as a result of the configuration's version.
			got, err := version.NewResult(v, []byte(out))
			if err != nil {
				t.Fatalf("%s: the output is not a %s result: %v\n%s", v, v, err, out)
			}
			var echoed struct {
				CNIVersion string `json:"cniVersion"`
			}
			_ = json.Unmarshal([]byte(out), &echoed)
			if echoed.CNIVersion != v {
				t.Errorf("%s: cniVersion %q in the output", v, echoed.CNIVersion)
			}
			// ... and equals the prevResult it was given.
			var conf types.PluginConf
			if err := json.Unmarshal(stdin, &conf); err != nil {
				t.Fatal(err)
			}
			if err := version.ParsePrevResult(&conf); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(asJSON(t, got), asJSON(t, conf.PrevResult)) {
				t.Errorf("%s: ADD's output differs from prevResult:\n%s\n%s", v, asJSON(t, got), asJSON(t, conf.PrevResult))
			}
			wantCalls := 0
			if ann[meshinit.CNIAnnotation] != "" {
				wantCalls = 1
			}
			if len(rules.calls) != wantCalls {
				t.Errorf("%s %v: rules called %d times, want %d", v, ann, len(rules.calls), wantCalls)
			}
		}
	}
}

func asJSON(t *testing.T, r types.Result) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	if err := r.PrintTo(&buf); err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// A meshed pod's rules are written in its network namespace with exactly
// the settings of its annotation.
func TestAddWritesTheAnnotatedSettings(t *testing.T) {
	rules := &fakeRules{}
	code, out, log := runPlugin(t, rules, podEnv("ADD"), config(t, "1.0.0", meshed, true))
	if code != 0 {
		t.Fatal(out)
	}
	want, _ := meshinit.ParseCaptureAnnotation(meshed[meshinit.CNIAnnotation])
	if len(rules.calls) != 1 || rules.calls[0].op != "apply" || rules.calls[0].netns != "/run/netns/cni-1" || !reflect.DeepEqual(rules.calls[0].c, want) {
		t.Errorf("calls %+v", rules.calls)
	}
	if !strings.Contains(log, "mesh-cni: pod shop/orders-0: capture rules written (IPv4: wrote 12 rules)") {
		t.Errorf("log %q", log)
	}
}

// cniError decodes an error result with the library's type and checks the
// spec's shape: exit code non-zero, cniVersion, code, msg.
func cniError(t *testing.T, code int, out, cniVersion string) *types.Error {
	t.Helper()
	if code == 0 {
		t.Fatalf("exit 0, want an error; output %s", out)
	}
	var e types.Error
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatalf("the error output is not CNI error JSON: %v: %s", err, out)
	}
	var shape map[string]any
	_ = json.Unmarshal([]byte(out), &shape)
	if shape["cniVersion"] != cniVersion {
		t.Errorf("error cniVersion %v, want %s", shape["cniVersion"], cniVersion)
	}
	for k := range shape {
		switch k {
		case "cniVersion", "code", "msg", "details":
		default:
			t.Errorf("error JSON has the key %q the spec does not define", k)
		}
	}
	if e.Msg == "" {
		t.Error("empty msg")
	}
	return &e
}

func TestErrors(t *testing.T) {
	malformed := map[string]string{meshinit.CNIAnnotation: "--exclude-outbound-ports=80,abc"}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		stdin   []byte
		version string
		code    uint
		want    []string
	}{
		{"malformed annotation fails the sandbox naming it", podEnv("ADD"), config(t, "0.4.0", malformed, true), "0.4.0", ErrMalformedAnnotation,
			[]string{"pod shop/orders-0", meshinit.CNIAnnotation, "--exclude-outbound-ports", `"abc"`}},
		{"no annotations passed: the capability is named", podEnv("ADD"), config(t, "1.0.0", nil, false), "1.0.0", ErrNoAnnotations,
			[]string{"passed no pod annotations", PodAnnotationsCapability}},
		{"the same on CHECK", podEnv("CHECK"), config(t, "1.0.0", nil, false), "1.0.0", ErrNoAnnotations,
			[]string{PodAnnotationsCapability}},
		{"unsupported version", podEnv("ADD"), []byte(`{"cniVersion":"9.9.9","name":"pods","type":"mesh-cni"}`), "9.9.9", types.ErrIncompatibleCNIVersion,
			[]string{"incompatible CNI versions", "9.9.9", "1.0.0"}},
		{"not JSON", podEnv("ADD"), []byte(`{`), "1.0.0", types.ErrDecodingFailure, []string{"not valid JSON"}},
		{"missing variables are named", map[string]string{"CNI_COMMAND": "ADD", "CNI_IFNAME": "eth0"}, config(t, "1.0.0", nil, true), "1.0.0",
			types.ErrInvalidEnvironmentVariables, []string{"CNI_CONTAINERID, CNI_NETNS"}},
		{"unknown command", map[string]string{"CNI_COMMAND": "FROB"}, config(t, "1.0.0", nil, true), "1.0.0",
			types.ErrInvalidEnvironmentVariables, []string{`"FROB"`}},
		{"not chained", podEnv("ADD"), []byte(`{"cniVersion":"1.0.0","name":"pods","type":"mesh-cni","runtimeConfig":{}}`), "1.0.0",
			types.ErrInvalidNetworkConfig, []string{"chained plugin"}},
		{"CHECK in a 0.3.1 configuration (CHECK is 0.4.0's)", podEnv("CHECK"), config(t, "0.3.1", meshed, true), "0.3.1",
			types.ErrIncompatibleCNIVersion, []string{"config version does not allow CHECK"}},
		{"CHECK in a 0.3.0 configuration", podEnv("CHECK"), config(t, "0.3.0", meshed, true), "0.3.0",
			types.ErrIncompatibleCNIVersion, []string{"config version does not allow CHECK"}},
		{"STATUS in a 1.0.0 configuration (STATUS is 1.1.0's)", podEnv("STATUS"), config(t, "1.0.0", nil, true), "1.0.0",
			types.ErrIncompatibleCNIVersion, []string{"config version does not allow STATUS"}},
		{"GC in a 0.4.0 configuration", podEnv("GC"), config(t, "0.4.0", nil, true), "0.4.0",
			types.ErrIncompatibleCNIVersion, []string{"config version does not allow GC"}},
		{"VERSION with input that is not JSON", map[string]string{"CNI_COMMAND": "VERSION"}, []byte("not json"), "1.0.0",
			types.ErrDecodingFailure, []string{"VERSION input", "not a JSON object"}},
		{"a prevResult that is a list", podEnv("ADD"),
			[]byte(`{"cniVersion":"1.0.0","name":"pods","type":"mesh-cni","prevResult":[1,2],"runtimeConfig":{}}`), "1.0.0",
			types.ErrDecodingFailure, []string{`"prevResult" is a JSON array`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules := &fakeRules{}
			code, out, _ := runPlugin(t, rules, tc.env, tc.stdin)
			e := cniError(t, code, out, tc.version)
			if e.Code != tc.code {
				t.Errorf("code %d, want %d", e.Code, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(e.Error(), w) {
					t.Errorf("%q does not say %q", e.Error(), w)
				}
			}
			if len(rules.calls) != 0 {
				t.Errorf("rules touched: %+v", rules.calls)
			}
		})
	}
	// Writing the rules fails: the message carries mesh-init's.
	rules := &fakeRules{err: errors.New("writing the IPv6 rules (nft backend) failed: no nat table")}
	code, out, _ := runPlugin(t, rules, podEnv("ADD"), config(t, "1.0.0", meshed, true))
	e := cniError(t, code, out, "1.0.0")
	if e.Code != ErrRules || !strings.Contains(e.Msg, "no nat table") || !strings.Contains(e.Details, "IPv4: wrote 12 rules") {
		t.Errorf("%+v", e)
	}
}

// A failed ADD removes whatever part of the rules it wrote (one family's,
// say) before it answers with the error.
func TestFailedAddCleansUp(t *testing.T) {
	rules := &fakeRules{applyErr: errors.New("writing the IPv6 rules (nft backend) failed: no nat table")}
	code, out, log := runPlugin(t, rules, podEnv("ADD"), config(t, "1.0.0", meshed, true))
	e := cniError(t, code, out, "1.0.0")
	if e.Code != ErrRules || !strings.Contains(e.Msg, "no nat table") || !strings.Contains(e.Msg, "were removed") {
		t.Errorf("%+v", e)
	}
	if len(rules.calls) != 2 || rules.calls[0].op != "apply" || rules.calls[1].op != "cleanup" || !reflect.DeepEqual(rules.calls[1].c, rules.calls[0].c) {
		t.Errorf("calls %+v", rules.calls)
	}
	if !strings.Contains(log, "ADD failed") {
		t.Errorf("log %q", log)
	}
	rules = &fakeRules{applyErr: errors.New("no nat table"), err: errors.New("iptables gone")}
	code, out, _ = runPlugin(t, rules, podEnv("ADD"), config(t, "1.0.0", meshed, true))
	if e := cniError(t, code, out, "1.0.0"); !strings.Contains(e.Msg, "failed too: iptables gone") {
		t.Errorf("%+v", e)
	}
}

// CNI_NETNS that is not a pod's network namespace: error 8 (the library's
// ErrInvalidNetNS) on ADD and CHECK, with the real namespace code (these
// are refused before any privilege is needed); DEL succeeds and touches
// nothing.
func TestInvalidNetNS(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hostname")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ netns, want string }{
		{file, "not a namespace file"},
		{t.TempDir(), "not a namespace file"},
		{"/proc/self/ns/mnt", "not a network namespace"},
		{"/proc/self/ns/net", "the plugin's own network namespace"},
		{filepath.Join(t.TempDir(), "gone"), "no longer exists"},
	} {
		for _, cmd := range []string{"ADD", "CHECK"} {
			env := podEnv(cmd)
			env["CNI_NETNS"] = tc.netns
			code, out, _ := runPlugin(t, NetNS{}, env, config(t, "1.0.0", meshed, true))
			e := cniError(t, code, out, "1.0.0")
			if e.Code != types.ErrInvalidNetNS || !strings.Contains(e.Msg, tc.want) || !strings.Contains(e.Msg, tc.netns) {
				t.Errorf("%s %s: %+v", cmd, tc.netns, e)
			}
		}
		env := podEnv("DEL")
		env["CNI_NETNS"] = tc.netns
		if code, out, _ := runPlugin(t, NetNS{}, env, config(t, "1.0.0", meshed, true)); code != 0 || out != "" {
			t.Errorf("DEL %s: exit %d %q", tc.netns, code, out)
		}
	}
}

// STATUS and GC of a 1.1.0 configuration: success, nothing printed.
func TestStatusGC(t *testing.T) {
	for _, cmd := range []string{"STATUS", "GC"} {
		if code, out, _ := runPlugin(t, &fakeRules{}, podEnv(cmd), config(t, "1.1.0", nil, true)); code != 0 || out != "" {
			t.Errorf("%s: exit %d %q", cmd, code, out)
		}
	}
	// VERSION with no input at all (older runtimes) still answers.
	if code, out, _ := runPlugin(t, nil, map[string]string{"CNI_COMMAND": "VERSION"}, nil); code != 0 || !strings.Contains(out, "supportedVersions") {
		t.Errorf("VERSION without input: %d %q", code, out)
	}
}

// DEL removes our chains when the pod is meshed, succeeds when the
// namespace is gone or the removal fails, and prints nothing.
func TestDel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ann   map[string]string
		err   error
		netns string
		calls int
	}{
		{"meshed", meshed, nil, "/run/netns/cni-1", 1},
		{"meshed, namespace gone", meshed, ErrNetNSGone, "/run/netns/cni-1", 1},
		{"meshed, removal fails", meshed, errors.New("iptables broke"), "/run/netns/cni-1", 1},
		{"meshed, no namespace given", meshed, nil, "", 0},
		{"malformed: whatever ADD left is removed", map[string]string{meshinit.CNIAnnotation: "--x=1"}, nil, "/run/netns/cni-1", 1},
		{"not meshed", map[string]string{"a": "b"}, nil, "/run/netns/cni-1", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules := &fakeRules{err: tc.err}
			env := podEnv("DEL")
			env["CNI_NETNS"] = tc.netns
			code, out, _ := runPlugin(t, rules, env, config(t, "1.0.0", tc.ann, true))
			if code != 0 || out != "" {
				t.Errorf("exit %d, output %q", code, out)
			}
			if len(rules.calls) != tc.calls || (tc.calls > 0 && rules.calls[0].op != "cleanup") {
				t.Errorf("calls %+v", rules.calls)
			}
		})
	}
	// DEL without prevResult (libcni had none cached) works too.
	rules := &fakeRules{}
	stdin, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "pods", "type": Type,
		"runtimeConfig": map[string]any{PodAnnotationsCapability: meshed}})
	if code, out, _ := runPlugin(t, rules, podEnv("DEL"), stdin); code != 0 || out != "" || len(rules.calls) != 1 {
		t.Errorf("DEL without prevResult: %d %q %+v", code, out, rules.calls)
	}
}

func TestCheck(t *testing.T) {
	rules := &fakeRules{}
	if code, out, _ := runPlugin(t, rules, podEnv("CHECK"), config(t, "1.0.0", meshed, true)); code != 0 || out != "" || len(rules.calls) != 1 || rules.calls[0].op != "check" {
		t.Errorf("CHECK: %d %q %+v", code, out, rules.calls)
	}
	rules = &fakeRules{err: errors.New("the IPv4 capture rules (nft backend) are not the ones the settings write: chain MESH_OUTPUT is missing")}
	code, out, _ := runPlugin(t, rules, podEnv("CHECK"), config(t, "0.4.0", meshed, true))
	if e := cniError(t, code, out, "0.4.0"); e.Code != ErrCheck || !strings.Contains(e.Msg, "MESH_OUTPUT is missing") {
		t.Errorf("%+v", e)
	}
}

// VERSION echoes the cniVersion it was given and lists the versions, as
// the library's own decoder reads them.
func TestVersion(t *testing.T) {
	code, out, _ := runPlugin(t, nil, map[string]string{"CNI_COMMAND": "VERSION"}, []byte(`{"cniVersion":"0.4.0"}`))
	if code != 0 {
		t.Fatal(out)
	}
	info, err := (&version.PluginDecoder{}).Decode([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(info.SupportedVersions(), SupportedVersions) || !strings.Contains(out, `"cniVersion":"0.4.0"`) {
		t.Errorf("VERSION: %s", out)
	}
	for _, v := range []string{"0.3.1", "1.0.0"} {
		if err := (&version.Reconciler{}).Check(v, info); err != nil {
			t.Errorf("the library finds %s incompatible: %v", v, err)
		}
	}
}
