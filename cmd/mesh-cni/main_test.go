package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/sidecar-injector/injector/cmd/mesh-cni/plugin"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// TestMain lets the CNI library's runtime side (pkg/invoke, what libcni and
// so containerd use) execute this test binary as the plugin: with
// CNI_COMMAND set it is mesh-cni.
func TestMain(m *testing.M) {
	if os.Getenv("CNI_COMMAND") != "" {
		os.Exit(run(nil, os.Getenv, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func self(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const prev = `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"aa:bb:cc:dd:ee:03","sandbox":"/run/netns/x"}],"ips":[{"interface":0,"address":"10.244.0.7/24"}]}`

func netconf(t *testing.T, annotations map[string]string) []byte {
	t.Helper()
	var p any
	_ = json.Unmarshal([]byte(prev), &p)
	b, err := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "pods", "type": plugin.Type, "prevResult": p,
		"runtimeConfig": map[string]any{plugin.PodAnnotationsCapability: annotations}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func podArgs(command string) *invoke.Args {
	return &invoke.Args{Command: command, ContainerID: "c1", NetNS: "/nonexistent/netns", IfName: "eth0",
		PluginArgsStr: "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0", Path: "/opt/cni/bin"}
}

// What a runtime sees, through the CNI library's invoke package: VERSION,
// ADD of a pod that is not meshed (the prevResult back), the error of a
// malformed annotation as a *types.Error, and DEL of a pod whose network
// namespace is gone. None of these enters a namespace, so no root needed.
func TestThroughTheLibrarysInvoke(t *testing.T) {
	ctx := context.Background()
	info, err := invoke.GetVersionInfo(ctx, self(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(info.SupportedVersions(), ","), "1.0.0") {
		t.Errorf("VERSION: %v", info.SupportedVersions())
	}

	r, err := invoke.ExecPluginWithResult(ctx, self(t), netconf(t, map[string]string{"app": "web"}), podArgs("ADD"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version() != "1.0.0" {
		t.Errorf("ADD answered a %s result to a 1.0.0 configuration", r.Version())
	}
	want, _ := types100.NewResult([]byte(prev))
	var a, b bytes.Buffer
	_ = r.PrintTo(&a)
	_ = want.PrintTo(&b)
	if a.String() != b.String() {
		t.Errorf("ADD of a pod that is not meshed:\n%s\nwant\n%s", a.String(), b.String())
	}

	_, err = invoke.ExecPluginWithResult(ctx, self(t), netconf(t, map[string]string{meshinit.CNIAnnotation: "--ipv6=sometimes"}), podArgs("ADD"), nil)
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != plugin.ErrMalformedAnnotation || !strings.Contains(ce.Msg, meshinit.CNIAnnotation) || !strings.Contains(ce.Msg, "--ipv6") {
		t.Errorf("malformed annotation: %#v", err)
	}

	if err := invoke.ExecPluginWithoutResult(ctx, self(t), netconf(t, map[string]string{meshinit.CNIAnnotation: meshinit.DefaultCaptureConfig().AnnotationValue()}), podArgs("DEL"), nil); err != nil {
		t.Errorf("DEL of a pod whose namespace is gone: %v", err)
	}
}

func TestCommands(t *testing.T) {
	var out, errb bytes.Buffer
	getenv := func(string) string { return "" }
	if code := run(nil, getenv, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "Usage: mesh-cni") {
		t.Errorf("no command: %d %q", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"version"}, getenv, nil, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "mesh-cni ") {
		t.Errorf("version: %d %q", code, out.String())
	}
	errb.Reset()
	if code := run([]string{"frob"}, getenv, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown command "frob"`) {
		t.Errorf("unknown: %d %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"install", "--bin-dir=/nonexistent"}, getenv, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "/nonexistent is not a folder") {
		t.Errorf("install without folders: %d %q", code, errb.String())
	}
}
