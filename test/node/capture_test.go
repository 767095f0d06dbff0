package node

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/test/node/nodeharness"
	"github.com/sidecar-injector/injector/test/node/standin"
)

// TestCaptureMatrix runs injected pods whose annotations exclude ports and
// CIDRs from capture, in our keys and in Istio's, and checks inside each
// running pod, for IPv4 and IPv6, in both directions:
//   - a captured inbound port and a captured outbound destination go
//     through the Envoy STAND-IN (the app sees the proxy's connection; the
//     stand-in logs the original destination);
//   - the excluded inbound port, the excluded outbound port and the
//     excluded CIDR bypass it (the far ends see the app's own connection;
//     the stand-in logs nothing for them);
//   - the proxy's own connections (UID 1337) are not captured again: each
//     outbound connection is logged once, and the stand-in's inbound
//     upstream connections to the pod's own address never come back to
//     its outbound listener;
//   - mesh-init wrote the rules with NET_ADMIN and NET_RAW only: its own
//     log line from /proc/self/status, and the OCI spec containerd
//     generated from the kubelet's request.
func TestCaptureMatrix(t *testing.T) {
	n := nodeharness.Shared(t)
	injector(t, n)
	ctx := t.Context()
	const peersNS, meshNS = "capture-peers", "capture"
	if err := n.EnsureNamespace(ctx, peersNS, nil); err != nil {
		t.Fatal(err)
	}
	if err := n.EnsureNamespace(ctx, meshNS, map[string]string{nodeharness.InjectionLabel: "enabled"}); err != nil {
		t.Fatal(err)
	}
	// Two peers outside the mesh: A serves a captured (8080) and an
	// excluded (9090) port, B's addresses are excluded as CIDRs.
	peerAPod := appPod(peersNS, "peer-a")
	peerAPod.Spec.Containers[0].Args = []string{"serve", "--listen=8080,9090"}
	peerA, _, err := n.RunPod(ctx, peerAPod)
	if err != nil {
		t.Fatal(err)
	}
	peerB, _, err := n.RunPod(ctx, appPod(peersNS, "peer-b"))
	if err != nil {
		t.Fatal(err)
	}
	cidrs := fmt.Sprintf("%s/32,%s/128", mustIP(t, peerB, false), mustIP(t, peerB, true))

	for _, tc := range []struct {
		name string
		ann  map[string]string
	}{
		{"ours", map[string]string{
			"sidecar-injector.io/exclude-inbound-ports":  "9091",
			"sidecar-injector.io/exclude-outbound-ports": "9090",
			"sidecar-injector.io/exclude-outbound-cidrs": cidrs,
		}},
		{"istio-aliases", map[string]string{
			"traffic.sidecar.istio.io/excludeInboundPorts":     "9091",
			"traffic.sidecar.istio.io/excludeOutboundPorts":    "9090",
			"traffic.sidecar.istio.io/excludeOutboundIPRanges": cidrs,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pod := appPod(meshNS, tc.name)
			pod.Annotations = tc.ann
			pod.Spec.Containers[0].Args = []string{"serve", "--listen=8080,9091"}
			p, _, err := n.RunPod(ctx, pod)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := p.Annotations[nodeharness.StatusAnnotation]; !ok {
				t.Fatalf("not injected: %v", p.Annotations)
			}
			for _, v6 := range []bool{false, true} {
				fam := family(v6)
				self, node := mustIP(t, p, v6), nodeIP(v6)
				if who := inbound(t, ctx, p, v6, 8080); addrOf(who.Peer) != self {
					t.Errorf("%s inbound to captured port 8080: the app saw %s, want the stand-in's connection from %s", fam, who.Peer, self)
				}
				if who := inbound(t, ctx, p, v6, 9091); addrOf(who.Peer) != node {
					t.Errorf("%s inbound to excluded port 9091: the app saw %s, want the node %s itself", fam, who.Peer, node)
				}
				a, b := mustIP(t, peerA, v6), mustIP(t, peerB, v6)
				for _, c := range []struct {
					dst     string
					through bool
					why     string
				}{
					{hostPort(a, 8080), true, "captured"},
					{hostPort(a, 9090), false, "excluded port"},
					{hostPort(b, 8080), false, "excluded CIDR"},
				} {
					res := outbound(t, ctx, p, v6, c.dst)
					if res.viaProxy() != c.through {
						t.Errorf("%s outbound to %s (%s): the app's connection %s, the peer saw %s; through the stand-in %t, want %t",
							fam, c.dst, c.why, res.Local, res.Far.Peer, res.viaProxy(), c.through)
					}
					if addrOf(res.Far.Peer) != self {
						t.Errorf("%s outbound to %s: the peer saw %s, want the pod's address %s", fam, c.dst, res.Far.Peer, self)
					}
				}
			}

			// The stand-in's own log, once it shows the captured
			// connections (its last lines reach the API a moment later).
			lines, err := n.WaitProxyLog(ctx, meshNS, tc.name, "the captured outbound connections", func(lines []standin.LogLine) bool {
				c := connections(lines)
				return c["outbound "+hostPort(mustIP(t, peerA, false), 8080)] > 0 && c["outbound "+hostPort(mustIP(t, peerA, true), 8080)] > 0
			})
			if err != nil {
				t.Fatal(err)
			}
			conns := connections(lines)
			for _, v6 := range []bool{false, true} {
				self, a, b := mustIP(t, p, v6), mustIP(t, peerA, v6), mustIP(t, peerB, v6)
				for key, want := range map[string]int{
					"outbound " + hostPort(a, 8080):   1, // once: its upstream connection is not captured again
					"outbound " + hostPort(a, 9090):   0,
					"outbound " + hostPort(b, 8080):   0,
					"inbound " + hostPort(self, 9091): 0,
					// The stand-in's inbound upstream connections go to the
					// pod's own address from UID 1337: never recaptured.
					"outbound " + hostPort(self, 8080): 0,
				} {
					if conns[key] != want {
						t.Errorf("%s: the Envoy STAND-IN logged %d connections %q, want %d", family(v6), conns[key], key, want)
					}
				}
				if conns["inbound "+hostPort(self, 8080)] == 0 {
					t.Errorf("%s: the Envoy STAND-IN logged no inbound connection to %s", family(v6), hostPort(self, 8080))
				}
			}
			for _, l := range lines {
				if strings.Contains(l.Msg, "loop") {
					t.Errorf("the stand-in saw a connection loop: %+v", l)
				}
			}

			// mesh-init's privileges, from the kernel and from the spec.
			initLog, err := n.Logs(ctx, meshNS, tc.name, "mesh-init")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(initLog, "effective capabilities: NET_ADMIN,NET_RAW (0x3000)") {
				t.Errorf("mesh-init's log does not say it ran with exactly NET_ADMIN and NET_RAW:\n%s", initLog)
			}
			assertCaps(t, n, p, "mesh-init", []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}, 0)
			assertCaps(t, n, p, "mesh-proxy", nil, 1337)
			t.Logf("%s: inbound 8080 and outbound to %s went through the Envoy STAND-IN on both families; port 9091 in, port 9090 out and %s bypassed it; stand-in connections %v",
				tc.name, hostPort(mustIP(t, peerA, false), 8080), cidrs, conns)
		})
	}
}

// assertCaps checks the capabilities and user runc was told to run a
// container of p with (containerd's record of the kubelet's request).
func assertCaps(t *testing.T, n *nodeharness.Node, p *corev1.Pod, name string, want []string, uid uint32) {
	t.Helper()
	cur, err := n.Clientset.CoreV1().Pods(p.Namespace).Get(t.Context(), p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := status(cur, name)
	if st == nil || st.ContainerID == "" {
		t.Fatalf("no container %s in %s/%s's status", name, p.Namespace, p.Name)
	}
	spec, err := n.ContainerSpec(t.Context(), st.ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	c := spec.Process.Capabilities
	for set, got := range map[string][]string{"effective": c.Effective, "permitted": c.Permitted, "bounding": c.Bounding} {
		got = slices.Sorted(slices.Values(got))
		if !slices.Equal(got, want) {
			t.Errorf("container %s runs with %s capabilities %v, want %v", name, set, got, want)
		}
	}
	if len(c.Ambient) != 0 || len(c.Inheritable) != 0 {
		t.Errorf("container %s has ambient %v and inheritable %v capabilities, want none", name, c.Ambient, c.Inheritable)
	}
	if spec.Process.User.UID != uid {
		t.Errorf("container %s runs as UID %d, want %d", name, spec.Process.User.UID, uid)
	}
}
