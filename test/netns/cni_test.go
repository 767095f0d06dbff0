package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/sidecar-injector/injector/cmd/mesh-cni/plugin"
	"github.com/sidecar-injector/injector/cmd/mesh-init/capture"
	"github.com/sidecar-injector/injector/cmd/mesh-init/validate"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// The cni capture mode on the real kernel, without a node: the mesh-cni
// binary run the way a runtime runs it (the CNI library's invoke package)
// against a pod namespace, and `mesh-init validate` run in it as nobody,
// with no capability. The node tier repeats this with real pods.

var (
	meshCNIOnce sync.Once
	meshCNI     string
	meshCNIErr  error
)

func buildMeshCNI(t *testing.T) string {
	t.Helper()
	meshCNIOnce.Do(func() {
		meshCNI = filepath.Join(filepath.Dir(meshInit), "mesh-cni")
		cmd := exec.Command("go", "build", "-o", meshCNI, "../../cmd/mesh-cni")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			meshCNIErr = errors.New(string(out))
		}
	})
	if meshCNIErr != nil {
		t.Fatalf("building mesh-cni: %v", meshCNIErr)
	}
	return meshCNI
}

const cniPrev = `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"interface":0,"address":"10.200.0.1/24"}]}`

func cniConf(t *testing.T, annotation string) []byte {
	t.Helper()
	var prev any
	_ = json.Unmarshal([]byte(cniPrev), &prev)
	b, err := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "pods", "type": plugin.Type, "prevResult": prev,
		"capabilities":  map[string]bool{plugin.PodAnnotationsCapability: true},
		"runtimeConfig": map[string]any{plugin.PodAnnotationsCapability: map[string]string{meshinit.CNIAnnotation: annotation, "app": "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cniArgs(command, ns string) *invoke.Args {
	return &invoke.Args{Command: command, ContainerID: "c-" + ns, NetNS: "/run/netns/" + ns, IfName: "eth0",
		PluginArgsStr: "K8S_POD_NAMESPACE=netns;K8S_POD_NAME=" + ns, Path: "/usr/lib/cni"}
}

func TestCNIPlugin(t *testing.T) {
	requirePrerequisites(t)
	bin := buildMeshCNI(t)
	ctx := context.Background()
	tp := newTopo(t, true)
	seed(t, tp.pod, "nft")
	args := []string{"--exclude-outbound-ports=8761", "--exclude-inbound-ports=9090"}
	cmd, err := meshinit.ParseCaptureCommand(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	conf := cniConf(t, cmd.Config.AnnotationValue())

	// Before the plugin ran, the validator fails the pod, naming the family.
	res := runAs(t, tp.pod, 65534, 65534, append([]string{meshInit, "validate"}, args...)...)
	if res.code != validate.ExitNotCaptured || !strings.Contains(res.output, "IPv4: a connection to 10.200.0.254:20001 was not redirected") {
		t.Errorf("validate without rules: exit %d\n%s", res.code, res.output)
	}

	// ADD: the result is the prevResult; the rules are mesh-init's for the
	// annotation's settings, both families; the seeded rules stay.
	r, err := invoke.ExecPluginWithResult(ctx, bin, conf, cniArgs("ADD", tp.pod), nil)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	var got, want bytes.Buffer
	_ = r.PrintTo(&got)
	var prev map[string]any
	_ = json.Unmarshal([]byte(cniPrev), &prev)
	var gotMap map[string]any
	_ = json.Unmarshal(got.Bytes(), &gotMap)
	if !reflect.DeepEqual(gotMap, prev) {
		t.Errorf("ADD's result %s differs from prevResult %s", got.String(), cniPrev)
	}
	_ = want
	afterAdd := saves(t, tp.pod, "nft")
	for i, tool := range tools {
		fam := []capture.Family{capture.IPv4, capture.IPv6}[i]
		if g, w := meshLines(afterAdd[tool]), wantMeshLines(t, fam, args); !reflect.DeepEqual(g, w) {
			t.Errorf("%s after ADD:\n got %q\nwant %q", tool, g, w)
		}
		if !strings.Contains(afterAdd[tool], "KEEP_ME") {
			t.Errorf("%s: the seeded rules are gone", tool)
		}
	}

	// CHECK passes; ADD again changes nothing.
	if err := invoke.ExecPluginWithoutResult(ctx, bin, conf, cniArgs("CHECK", tp.pod), nil); err != nil {
		t.Errorf("CHECK after ADD: %v", err)
	}
	if _, err := invoke.ExecPluginWithResult(ctx, bin, conf, cniArgs("ADD", tp.pod), nil); err != nil {
		t.Fatalf("second ADD: %v", err)
	}
	if again := saves(t, tp.pod, "nft"); !mapsEqual(again, afterAdd) {
		t.Errorf("a second ADD changed the tables:\n%s", diffSaves(afterAdd, again))
	}

	// The validator, as nobody with no capability, finds both families
	// captured.
	res = runAs(t, tp.pod, 65534, 65534, append([]string{meshInit, "validate"}, args...)...)
	if res.code != 0 || !strings.Contains(res.output, "IPv4: a connection to 10.200.0.254:20001 arrived") ||
		!strings.Contains(res.output, "IPv6: a connection to [fd00:200::ffff:ffff:ffff:fffe]:20001 arrived") {
		t.Errorf("validate with the rules: exit %d\n%s", res.code, res.output)
	}

	// DEL removes exactly ours; CHECK then fails; DEL again, and DEL of a
	// namespace that is gone, succeed.
	if err := invoke.ExecPluginWithoutResult(ctx, bin, conf, cniArgs("DEL", tp.pod), nil); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	afterDel := saves(t, tp.pod, "nft")
	for _, tool := range tools {
		if l := meshLines(afterDel[tool]); len(l) > 0 {
			t.Errorf("%s after DEL still has %q", tool, l)
		}
		if !strings.Contains(afterDel[tool], "KEEP_ME") {
			t.Errorf("%s: DEL removed the seeded rules", tool)
		}
	}
	err = invoke.ExecPluginWithoutResult(ctx, bin, conf, cniArgs("CHECK", tp.pod), nil)
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != plugin.ErrCheck || !strings.Contains(ce.Msg, "MESH_") {
		t.Errorf("CHECK after DEL: %v", err)
	}
	if err := invoke.ExecPluginWithoutResult(ctx, bin, conf, cniArgs("DEL", tp.pod), nil); err != nil {
		t.Errorf("second DEL: %v", err)
	}
	if err := invoke.ExecPluginWithoutResult(ctx, bin, conf, cniArgs("DEL", tp.pod+"-gone"), nil); err != nil {
		t.Errorf("DEL of a namespace that is gone: %v", err)
	}
}
