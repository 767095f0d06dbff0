package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/cmd/mesh-cni/plugin"
	"github.com/sidecar-injector/injector/cmd/mesh-init/capture"
	"github.com/sidecar-injector/injector/cmd/mesh-init/validate"
	"github.com/sidecar-injector/injector/test/node/images"
	"github.com/sidecar-injector/injector/test/node/nodeharness"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// The cni capture mode on the real node (docs/capture.md): the chart's
// mesh-cni agent installs the plugin into the node's CNI folders and
// chains it into the bridge conflist; containerd runs it for every pod
// sandbox with the pod's annotations; pods injected in the cni mode carry
// no privileged init container and run in a namespace that enforces Pod
// Security restricted, captured in both families.

// cniLabel selects this file's namespaces for its own injector (release
// "cni", policy capture.mode cni); the shared injector excludes them.
const cniLabel = "node-tier/capture-mode"

// restrictedAppPod is appPod written for Pod Security restricted.
func restrictedAppPod(ns, name string, ports string) *corev1.Pod {
	p := appPod(ns, name)
	p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(1000)),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	c := &p.Spec.Containers[0]
	c.SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	c.Args = []string{"serve", "--listen=" + ports}
	return p
}

func TestCNICaptureMode(t *testing.T) {
	n := nodeharness.Shared(t)
	ctx := t.Context()
	const cniNS, plainNS = "cni-restricted", "cni-plain"
	cniInj, err := n.StartInjector(ctx, nodeharness.InjectorOptions{Release: "cni", NamespaceLabels: map[string]string{cniLabel: "cni"},
		Set: []string{"config.defaults.settings.capture.mode=cni"}})
	if err != nil {
		t.Fatalf("starting the cni-mode injector: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cni-mode injector output (tail):\n%s", cniInj.Process.Out.Tail(4000))
		}
	})
	if err := n.EnsureNamespace(ctx, cniNS, map[string]string{nodeharness.InjectionLabel: "enabled", cniLabel: "cni",
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}); err != nil {
		t.Fatal(err)
	}
	if err := n.EnsureNamespace(ctx, plainNS, nil); err != nil {
		t.Fatal(err)
	}
	conflist := filepath.Join(n.CNIConfDir(), "10-"+nodeharness.NetworkName+".conflist")
	original, err := os.ReadFile(conflist)
	if err != nil {
		t.Fatal(err)
	}

	// The race istio-cni and linkerd2-cni users hit: a pod created before
	// the plugin is on the node is not left uncaptured; its validation
	// container fails it, saying why.
	t.Run("a pod started before the plugin is installed fails its validation", func(t *testing.T) {
		pod, err := n.CreatePod(ctx, restrictedAppPod(cniNS, "early", "8080"))
		if err != nil {
			t.Fatal(err)
		}
		if pod.Annotations[meshinit.CNIAnnotation] == "" {
			t.Fatalf("not injected in the cni mode: %v", pod.Annotations)
		}
		var term *corev1.ContainerStateTerminated
		_, err = n.WaitPod(ctx, cniNS, "early", "to fail its validation", func(p *corev1.Pod) (bool, error) {
			for _, s := range p.Status.InitContainerStatuses {
				if s.Name != "mesh-init" {
					continue
				}
				for _, st := range []*corev1.ContainerStateTerminated{s.State.Terminated, s.LastTerminationState.Terminated} {
					if st != nil && st.ExitCode != 0 {
						term = st
						return true, nil
					}
				}
				if s.State.Terminated != nil && s.State.Terminated.ExitCode == 0 {
					return false, fmt.Errorf("the validation passed without the plugin: %+v", s.State.Terminated)
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if term.ExitCode != validate.ExitNotCaptured {
			t.Errorf("exit code %d, want %d", term.ExitCode, validate.ExitNotCaptured)
		}
		for _, want := range []string{"IPv4: a connection to", "was not redirected", "mesh-cni", "Delete the pod"} {
			if !strings.Contains(term.Message, want) {
				t.Errorf("the termination message does not say %q:\n%s", want, term.Message)
			}
		}
		t.Logf("the pod started before the plugin: mesh-init exited %d: %s", term.ExitCode, strings.TrimSpace(term.Message))
		if err := n.DeletePod(ctx, cniNS, "early", ptr(int64(0))); err != nil {
			t.Fatal(err)
		}
	})

	agent, err := n.InstallCNIAgent(ctx, nodeharness.CNIAgentOptions{Release: "cni"})
	if err != nil {
		t.Fatalf("installing the mesh-cni agent: %v", err)
	}
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			_ = agent.Uninstall(context.Background())
		}
	})
	t.Run("the agent chains the plugin with the pod-annotations capability", func(t *testing.T) {
		var c struct {
			Plugins []map[string]any `json:"plugins"`
		}
		b, _ := os.ReadFile(conflist)
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		var typesSeen []string
		for _, p := range c.Plugins {
			typesSeen = append(typesSeen, p["type"].(string))
		}
		if !reflect.DeepEqual(typesSeen, []string{"bridge", "portmap", plugin.Type}) {
			t.Errorf("plugins %v", typesSeen)
		}
		if caps, _ := c.Plugins[len(c.Plugins)-1]["capabilities"].(map[string]any); caps[plugin.PodAnnotationsCapability] != true {
			t.Errorf("our entry lacks the capability: %v", c.Plugins[len(c.Plugins)-1])
		}
		t.Logf("agent log:\n%s", agent.Logs(ctx))
	})

	t.Run("a malformed annotation fails the sandbox naming it", func(t *testing.T) {
		pod := appPod(plainNS, "malformed")
		pod.Annotations = map[string]string{meshinit.CNIAnnotation: "--exclude-outbound-ports=80,abc"}
		if _, err := n.CreatePod(ctx, pod); err != nil {
			t.Fatal(err)
		}
		var msg string
		err := nodeharness.Poll(ctx, "a FailedCreatePodSandBox event for cni-plain/malformed", func(ctx context.Context) (bool, string, error) {
			evs, err := n.Clientset.CoreV1().Events(plainNS).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=malformed"})
			if err != nil {
				return false, err.Error(), nil
			}
			for _, e := range evs.Items {
				if e.Reason == "FailedCreatePodSandBox" {
					msg = e.Message
					return true, "", nil
				}
			}
			return false, fmt.Sprintf("%d events", len(evs.Items)), nil
		}, func() string { return n.DiagnosePod(plainNS, "malformed") })
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{plugin.Type, meshinit.CNIAnnotation, "--exclude-outbound-ports", `"abc"`} {
			if !strings.Contains(msg, want) {
				t.Errorf("the event does not say %q:\n%s", want, msg)
			}
		}
		t.Logf("malformed annotation: %s", msg)
		if err := n.DeletePod(ctx, plainNS, "malformed", ptr(int64(0))); err != nil {
			t.Fatal(err)
		}
	})

	// The capture matrix in real pods: both families, outbound and
	// inbound, port and CIDR exclusions, the proxy's own connections never
	// captured again, the rules exactly mesh-init's, a re-run changing
	// nothing, and DEL removing them.
	peerPod := appPod(plainNS, "peer")
	peerPod.Spec.Containers[0].Image = images.DistrolessRef
	peerPod.Spec.Containers[0].Args = []string{"serve", "--listen=8080,8081"}
	peer, _, err := n.RunPod(ctx, peerPod)
	if err != nil {
		t.Fatal(err)
	}
	peer4, _ := nodeharness.PodIP(peer, false)
	peer6, _ := nodeharness.PodIP(peer, true)
	app, took, err := n.RunPod(ctx, restrictedAppPod(cniNS, "app", "8080"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cni mode, Pod Security restricted: create -> Ready %s", took.Round(time.Millisecond))
	exclPod := restrictedAppPod(cniNS, "excl", "8080,8082")
	exclPod.Annotations = map[string]string{
		"sidecar-injector.io/exclude-outbound-ports": "8081",
		"sidecar-injector.io/exclude-outbound-cidrs": peer6.String() + "/128",
		"sidecar-injector.io/exclude-inbound-ports":  "8082",
	}
	excl, _, err := n.RunPod(ctx, exclPod)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("no privileged container; the validation passed in both families", func(t *testing.T) {
		for _, c := range append(append([]corev1.Container{}, app.Spec.InitContainers...), app.Spec.Containers...) {
			sc := c.SecurityContext
			if sc != nil && sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
				t.Errorf("container %s adds %v", c.Name, sc.Capabilities.Add)
			}
			if sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				t.Errorf("container %s runs as root", c.Name)
			}
		}
		out, err := n.Logs(ctx, cniNS, "app", "mesh-init")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"IPv4: a connection to", "IPv6: a connection to", "the capture rules are in place"} {
			if !strings.Contains(out, want) {
				t.Errorf("the validation log does not say %q:\n%s", want, out)
			}
		}
	})

	// through reports whether the app's call to target went through the
	// proxy: the far end sees another source port than the app's socket.
	call := func(t *testing.T, pod *corev1.Pod, target netip.AddrPort) (proxied bool) {
		t.Helper()
		u, err := nodeharness.PodURL(pod, false, 8080, "/call?addr="+url.QueryEscape(target.String()))
		if err != nil {
			t.Fatal(err)
		}
		var res callResult
		get(t, ctx, u, &res)
		if res.Error != "" || res.Far == nil {
			t.Fatalf("%s -> %s: %+v", pod.Name, target, res)
		}
		far, _ := netip.ParseAddrPort(res.Far.Peer)
		local, _ := netip.ParseAddrPort(res.Local)
		return far.Port() != local.Port()
	}
	inbound := func(t *testing.T, pod *corev1.Pod, v6 bool, port uint16) (proxied bool) {
		t.Helper()
		u, err := nodeharness.PodURL(pod, v6, port, "/whoami")
		if err != nil {
			t.Fatal(err)
		}
		var who whoami
		get(t, ctx, u, &who)
		seen, _ := netip.ParseAddrPort(who.Peer)
		ip, _ := nodeharness.PodIP(pod, v6)
		return seen.Addr().Unmap() == ip // through the proxy: from the pod's own address
	}
	t.Run("capture matrix", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			got     func(t *testing.T) bool
			proxied bool
		}{
			{"IPv4 outbound", func(t *testing.T) bool { return call(t, app, netip.AddrPortFrom(peer4, 8080)) }, true},
			{"IPv6 outbound", func(t *testing.T) bool { return call(t, app, netip.AddrPortFrom(peer6, 8080)) }, true},
			{"IPv4 inbound", func(t *testing.T) bool { return inbound(t, app, false, 8080) }, true},
			{"IPv6 inbound", func(t *testing.T) bool { return inbound(t, app, true, 8080) }, true},
			{"IPv4 outbound, excluded port", func(t *testing.T) bool { return call(t, excl, netip.AddrPortFrom(peer4, 8081)) }, false},
			{"IPv4 outbound, other port", func(t *testing.T) bool { return call(t, excl, netip.AddrPortFrom(peer4, 8080)) }, true},
			{"IPv6 outbound, excluded CIDR", func(t *testing.T) bool { return call(t, excl, netip.AddrPortFrom(peer6, 8080)) }, false},
			{"IPv4 inbound, excluded port", func(t *testing.T) bool { return inbound(t, excl, false, 8082) }, false},
			{"IPv6 inbound, excluded port", func(t *testing.T) bool { return inbound(t, excl, true, 8082) }, false},
			{"IPv6 inbound, other port", func(t *testing.T) bool { return inbound(t, excl, true, 8080) }, true},
		} {
			if got := tc.got(t); got != tc.proxied {
				t.Errorf("%s: through the proxy %t, want %t", tc.name, got, tc.proxied)
			}
		}
		// The stand-in's log lists exactly the captured ones; its own
		// upstream connections reached the peer (UID 1337 is never
		// redirected, or they would loop back into it).
		lines, err := n.ProxyLog(ctx, cniNS, "app")
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, l := range lines {
			if l.Msg == "connection" {
				seen[l.Direction+" "+l.OriginalDst] = true
			}
		}
		for _, want := range []string{"outbound " + netip.AddrPortFrom(peer4, 8080).String(), "outbound " + netip.AddrPortFrom(peer6, 8080).String()} {
			if !seen[want] {
				t.Errorf("the stand-in did not proxy %s: %v", want, keys(seen))
			}
		}
	})

	path, err := n.PodNetNS(app)
	if err != nil {
		t.Fatal(err)
	}
	nat := func(t *testing.T, netns string) map[string][]string {
		t.Helper()
		out := map[string][]string{}
		for _, tool := range []string{"iptables-nft-save", "ip6tables-nft-save"} {
			s, err := nodeharness.InNetNS(ctx, netns, tool, "-t", "nat")
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(s, "\n") {
				if strings.Contains(l, "MESH_") {
					out[tool] = append(out[tool], strings.TrimSpace(l))
				}
			}
			slices.Sort(out[tool])
		}
		return out
	}
	t.Run("the rules in the pod are mesh-init's for the annotation", func(t *testing.T) {
		cfg, err := meshinit.ParseCaptureAnnotation(app.Annotations[meshinit.CNIAnnotation])
		if err != nil {
			t.Fatal(err)
		}
		got := nat(t, path)
		for tool, fam := range map[string]capture.Family{"iptables-nft-save": capture.IPv4, "ip6tables-nft-save": capture.IPv6} {
			want := append([]string{"-A PREROUTING -p tcp -j MESH_INBOUND", "-A OUTPUT -p tcp -j MESH_OUTPUT"}, capture.ChainRules(cfg, fam)...)
			for _, c := range capture.OwnedChains() {
				want = append(want, ":"+c+" - [0:0]")
			}
			slices.Sort(want)
			if !reflect.DeepEqual(got[tool], want) {
				t.Errorf("%s in the pod:\n got %q\nwant %q", tool, got[tool], want)
			}
			if !slices.Contains(got[tool], "-A MESH_OUTPUT -m owner --uid-owner 1337 -j RETURN") {
				t.Errorf("%s: no proxy UID bypass", tool)
			}
		}
	})

	t.Run("a second ADD changes nothing and CHECK passes", func(t *testing.T) {
		before := nat(t, path)
		conf, err := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": nodeharness.NetworkName, "type": plugin.Type,
			"prevResult":    map[string]any{"cniVersion": "1.0.0", "interfaces": []any{map[string]any{"name": "eth0", "sandbox": path}}},
			"runtimeConfig": map[string]any{plugin.PodAnnotationsCapability: app.Annotations}})
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(n.CNIBinDir(), plugin.Type)
		args := func(cmd string) *invoke.Args {
			return &invoke.Args{Command: cmd, ContainerID: "rerun", NetNS: path, IfName: "eth0", Path: n.CNIBinDir(),
				PluginArgsStr: "K8S_POD_NAMESPACE=" + cniNS + ";K8S_POD_NAME=app"}
		}
		if _, err := invoke.ExecPluginWithResult(ctx, bin, conf, args("ADD"), nil); err != nil {
			t.Fatalf("ADD again: %v", err)
		}
		if after := nat(t, path); !reflect.DeepEqual(before, after) {
			t.Errorf("a second ADD changed the rules:\n%v\n%v", before, after)
		}
		if err := invoke.ExecPluginWithoutResult(ctx, bin, conf, args("CHECK"), nil); err != nil {
			t.Errorf("CHECK: %v", err)
		}
	})

	t.Run("DEL removes the rules while the namespace still exists", func(t *testing.T) {
		// Hold the pod's network namespace open past the sandbox's end.
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		held := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd())
		if len(nat(t, held)["iptables-nft-save"]) == 0 {
			t.Fatal("no rules to remove")
		}
		if err := n.DeletePod(ctx, cniNS, "app", nil); err != nil {
			t.Fatal(err)
		}
		if left := nat(t, held); len(left["iptables-nft-save"])+len(left["ip6tables-nft-save"]) > 0 {
			t.Errorf("after the pod's DEL the namespace still holds %v", left)
		}
		log, _ := os.ReadFile(filepath.Join(n.Dir, "containerd.log"))
		if !strings.Contains(string(log), plugin.Type+": pod "+cniNS+"/app: capture rules removed") {
			t.Errorf("containerd's log has no DEL line of the plugin for the pod")
		}
	})

	t.Run("uninstalling the agent restores the configuration and removes the binary", func(t *testing.T) {
		if err := agent.Uninstall(ctx); err != nil {
			t.Fatal(err)
		}
		uninstalled = true
		now, err := os.ReadFile(conflist)
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		_ = json.Unmarshal(original, &a)
		_ = json.Unmarshal(now, &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("the conflist after the agent left:\n%s\nbefore it came:\n%s", now, original)
		}
		if _, err := os.Stat(filepath.Join(n.CNIBinDir(), plugin.Type)); !os.IsNotExist(err) {
			t.Errorf("the plugin binary is still there: %v", err)
		}
	})
}
