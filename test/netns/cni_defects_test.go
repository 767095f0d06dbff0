package netns

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/sidecar-injector/injector/cmd/mesh-cni/plugin"
	"github.com/sidecar-injector/injector/cmd/mesh-init/validate"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// Settings a policy or a pod's annotations can produce that capture
// outbound traffic somewhere other than the validator's first guess: in a
// pod namespace without rules the validator fails the pod (exit 4), with
// mesh-init's rules for the same settings it passes, both families.
func TestValidateSettings(t *testing.T) {
	requirePrerequisites(t)
	for _, tc := range []struct {
		name string
		args []string
		want string // the destination the probe used
	}{
		{"the ports around the test port excluded", []string{"--exclude-outbound-ports=20000-22000"}, "10.200.0.254:22001"},
		{"one IPv4 address included (/32)", []string{"--include-outbound-cidrs=" + peerB4 + "/32"}, peerB4 + ":20001"},
		{"one IPv6 address included (/128)", []string{"--include-outbound-cidrs=" + peerB6 + "/128"}, "[" + peerB6 + "]:20001"},
		{"every port but one excluded", []string{"--exclude-outbound-ports=1-21000,21002-65535"}, "10.200.0.254:21001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t, true)
			// The peer refuses at once what it does not serve.
			res := runAs(t, tp.pod, 65534, 65534, append([]string{meshInit, "validate"}, tc.args...)...)
			if res.code != validate.ExitNotCaptured || !strings.Contains(res.output, tc.want+" was not redirected") {
				t.Errorf("without rules: exit %d, want %d naming %s\n%s", res.code, validate.ExitNotCaptured, tc.want, res.output)
			}
			mustMeshInit(t, tp.pod, tc.args...)
			res = runAs(t, tp.pod, 65534, 65534, append([]string{meshInit, "validate"}, tc.args...)...)
			if res.code != 0 || !strings.Contains(res.output, "a connection to "+tc.want+" arrived at the proxy's port") {
				t.Errorf("with the rules: exit %d\n%s", res.code, res.output)
			}
		})
	}
}

// SIGTERM while the validator waits on its probe (the pod deleted during
// its start): exit 5 and "interrupted", never the missing-rules message.
func TestValidateInterrupted(t *testing.T) {
	requirePrerequisites(t)
	tp := newTopo(t, false)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// No rules and nobody at the subnet's top address: the connection
	// waits for neighbour resolution (about 3 s) until the signal.
	b, _ := json.Marshal(execConfig{UID: 65534, GID: 65534, Argv: []string{meshInit, "validate"}})
	cmd := exec.Command("ip", "netns", "exec", tp.pod, self)
	cmd.Env = append(os.Environ(), envRole+"=exec", envConfig+"="+string(b))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "IPv6: not checked") { // logged after the signal handler is set, before the IPv4 probe
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != validate.ExitInterrupted || !strings.Contains(out.String(), "interrupted (terminated received)") ||
		strings.Contains(out.String(), "capture rules are missing") {
		t.Errorf("after SIGTERM: %v, want exit %d and the interruption said\n%s", err, validate.ExitInterrupted, out.String())
	}
}

// An ADD that writes the IPv4 rules and then fails on IPv6 (here: an
// ip6tables-nft-restore that always fails, first in PATH) leaves no rule
// of ours in either family; the seeded ones stay.
func TestCNIFailedAddLeavesNothing(t *testing.T) {
	requirePrerequisites(t)
	bin := buildMeshCNI(t)
	tp := newTopo(t, true)
	seed(t, tp.pod, "nft")
	before := saves(t, tp.pod, "nft")
	fake := t.TempDir()
	if err := os.WriteFile(filepath.Join(fake, "ip6tables-nft-restore"), []byte("#!/bin/sh\necho 'ip6tables-nft-restore: simulated failure' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", fake+":"+os.Getenv("PATH"))
	c := meshinit.DefaultCaptureConfig()
	c.Mode = meshinit.ModeNFT
	_, err := invoke.ExecPluginWithResult(context.Background(), bin, cniConf(t, c.AnnotationValue()), cniArgs("ADD", tp.pod), nil)
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != plugin.ErrRules || !strings.Contains(ce.Msg, "simulated failure") || !strings.Contains(ce.Msg, "were removed") {
		t.Fatalf("ADD: %v, want error %d saying the partial rules were removed", err, plugin.ErrRules)
	}
	after := saves(t, tp.pod, "nft")
	for _, tool := range tools {
		if l := meshLines(after[tool]); len(l) > 0 {
			t.Errorf("%s after the failed ADD still has %q", tool, l)
		}
	}
	if !mapsEqual(before, after) {
		t.Errorf("the failed ADD changed the tables:\n%s", diffSaves(before, after))
	}
}

// The settings record: ADD leaves it on the pod's loopback interface; the
// validator, unprivileged, passes with the pod's own settings and fails
// (exit 6) when the plugin wrote rules for an annotation changed after
// admission, even one crafted so that the probe alone would pass; an
// inbound-only pod without a record fails (exit 4), with one passes; DEL
// removes it.
func TestCNISettingsRecord(t *testing.T) {
	requirePrerequisites(t)
	bin := buildMeshCNI(t)
	ctx := context.Background()
	tp := newTopo(t, true)
	spec := meshinit.DefaultCaptureConfig()
	// Changed after admission: only the two destinations the validator
	// probes in this topology are captured, everything else goes around
	// the proxy.
	tampered := spec
	tampered.IncludeOutboundCIDRs = meshinit.CIDRSet{CIDRs: meshinit.CIDRList{
		netip.MustParsePrefix("10.200.0.254/32"), netip.MustParsePrefix("fd00:200::ffff:ffff:ffff:fffe/128")}}
	tampered.IncludeInboundPorts = meshinit.PortSet{}
	if _, err := invoke.ExecPluginWithResult(ctx, bin, cniConf(t, tampered.AnnotationValue()), cniArgs("ADD", tp.pod), nil); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	if out := run(t, "ip", "-n", tp.pod, "link", "show", "lo"); !strings.Contains(out, "alias "+tampered.SettingsRecord()) {
		t.Errorf("no record after ADD:\n%s", out)
	}
	res := runAs(t, tp.pod, 65534, 65534, append([]string{meshInit, "validate"}, spec.Args()...)...)
	if res.code != validate.ExitSettingsDiffer || !strings.Contains(res.output, "changed after the injector wrote it") {
		t.Errorf("validate, annotation changed: exit %d, want %d\n%s", res.code, validate.ExitSettingsDiffer, res.output)
	}
	// Probing alone would not notice: without the record the same check passes.
	run(t, "ip", "-n", tp.pod, "link", "set", "lo", "alias", "")
	res = runAs(t, tp.pod, 65534, 65534, append([]string{meshInit, "validate"}, spec.Args()...)...)
	if res.code != 0 {
		t.Errorf("validate by probing alone: exit %d (the tampered rules capture the probe)\n%s", res.code, res.output)
	}
	run(t, "ip", "-n", tp.pod, "link", "set", "lo", "alias", tampered.SettingsRecord())
	res = runAs(t, tp.pod, 65534, 65534, append([]string{meshInit, "validate"}, tampered.Args()...)...)
	if res.code != 0 || !strings.Contains(res.output, "exactly these settings") {
		t.Errorf("validate with the settings the rules were written for: exit %d\n%s", res.code, res.output)
	}
	if err := invoke.ExecPluginWithoutResult(ctx, bin, cniConf(t, tampered.AnnotationValue()), cniArgs("DEL", tp.pod), nil); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if out := run(t, "ip", "-n", tp.pod, "link", "show", "lo"); strings.Contains(out, "alias") {
		t.Errorf("the record outlived DEL:\n%s", out)
	}

	// Inbound capture only: nothing to probe, so the record decides.
	inbound := spec
	inbound.IncludeOutboundCIDRs = meshinit.CIDRSet{}
	res = runAs(t, tp.pod, 65534, 65534, append([]string{meshInit, "validate"}, inbound.Args()...)...)
	if res.code != validate.ExitNotCaptured {
		t.Errorf("inbound only, before ADD: exit %d, want %d\n%s", res.code, validate.ExitNotCaptured, res.output)
	}
	if _, err := invoke.ExecPluginWithResult(ctx, bin, cniConf(t, inbound.AnnotationValue()), cniArgs("ADD", tp.pod), nil); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	res = runAs(t, tp.pod, 65534, 65534, append([]string{meshInit, "validate"}, inbound.Args()...)...)
	if res.code != 0 {
		t.Errorf("inbound only, after ADD: exit %d\n%s", res.code, res.output)
	}
	if err := invoke.ExecPluginWithoutResult(ctx, bin, cniConf(t, inbound.AnnotationValue()), cniArgs("CHECK", tp.pod), nil); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	// CHECK with other settings than the recorded ones fails.
	if err := invoke.ExecPluginWithoutResult(ctx, bin, cniConf(t, spec.AnnotationValue()), cniArgs("CHECK", tp.pod), nil); err == nil {
		t.Error("CHECK with other settings passed")
	}
}
