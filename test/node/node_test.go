package node

import (
	"context"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sidecar-injector/injector/test/node/images"
	"github.com/sidecar-injector/injector/test/node/nodeharness"
	"github.com/sidecar-injector/injector/test/node/standin"
)

var (
	injOnce sync.Once
	inj     *nodeharness.Injector
	injErr  error
)

// injector runs the chart's injector on the shared node, once.
func injector(t *testing.T, n *nodeharness.Node) *nodeharness.Injector {
	t.Helper()
	injOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), nodeharness.Deadline)
		defer cancel()
		inj, injErr = n.StartInjector(ctx, nodeharness.InjectorOptions{ExcludeNamespaceLabels: []string{cniLabel}})
	})
	if injErr != nil {
		t.Fatalf("starting the injector: %v", injErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("injector output (tail):\n%s", inj.Process.Out.Tail(6000))
		}
	})
	return inj
}

// appPod is a pod of the test app serving HTTP on 8080.
func appPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr(int64(5)),
			Containers: []corev1.Container{{
				Name: "app", Image: images.AppRef, ImagePullPolicy: corev1.PullIfNotPresent,
				Args:  []string{"serve", "--listen=8080"},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
					FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/whoami", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
			}},
		},
	}
}

// whoami mirrors testapp's answer.
type whoami struct {
	Pod   string `json:"pod"`
	Peer  string `json:"peer"`
	Local string `json:"local"`
}

type callResult struct {
	Target string  `json:"target"`
	Local  string  `json:"local"`
	Remote string  `json:"remote"`
	Far    *whoami `json:"far"`
	Error  string  `json:"error"`
}

func get(t *testing.T, ctx context.Context, u string, into any) {
	t.Helper()
	if err := nodeharness.GetJSON(ctx, u, into); err != nil {
		t.Fatal(err)
	}
}

func hostPort(a netip.Addr, port int) string { return netip.AddrPortFrom(a, uint16(port)).String() }

// TestInjectedPodTrafficGoesThroughTheStandIn is the node tier's first
// proof: a pod created through the API server in a namespace labelled for
// injection is injected by the chart's webhook and the injector, started by
// the real kubelet (mesh-init writes the capture rules with only NET_ADMIN
// and NET_RAW; the proxy runs the Envoy STAND-IN as UID 1337), becomes
// Ready, and its IPv4 and IPv6 connections, outbound to another pod and
// inbound from the host, pass through the stand-in. The same pod without
// injection is the comparison: there the far end sees the real peer.
func TestInjectedPodTrafficGoesThroughTheStandIn(t *testing.T) {
	n := nodeharness.Shared(t)
	injector(t, n)
	ctx := t.Context() // every wait below is bounded by nodeharness.Deadline

	const plainNS, meshNS = "plain", "meshed"
	if err := n.EnsureNamespace(ctx, plainNS, nil); err != nil {
		t.Fatal(err)
	}
	if err := n.EnsureNamespace(ctx, meshNS, map[string]string{nodeharness.InjectionLabel: "enabled"}); err != nil {
		t.Fatal(err)
	}

	// The peer runs the distroless image (the program alone, non-root).
	peerPod := appPod(plainNS, "peer")
	peerPod.Spec.Containers[0].Image = images.DistrolessRef
	peer, peerReady, err := n.RunPod(ctx, peerPod)
	if err != nil {
		t.Fatal(err)
	}
	plain, plainReady, err := n.RunPod(ctx, appPod(plainNS, "app"))
	if err != nil {
		t.Fatal(err)
	}
	meshed, meshReady, err := n.RunPod(ctx, appPod(meshNS, "app"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node bring-up %s; create -> Ready: uninjected %s and %s, injected %s (Envoy STAND-IN as the proxy)",
		n.BringUp.Round(time.Millisecond), peerReady.Round(time.Millisecond), plainReady.Round(time.Millisecond), meshReady.Round(time.Millisecond))

	if _, ok := meshed.Annotations[nodeharness.StatusAnnotation]; !ok {
		t.Fatalf("the pod in %s was not injected: annotations %v", meshNS, meshed.Annotations)
	}
	if _, ok := plain.Annotations[nodeharness.StatusAnnotation]; ok {
		t.Fatalf("the pod in %s was injected", plainNS)
	}
	var proxy *corev1.Container
	for i, c := range append(meshed.Spec.InitContainers, meshed.Spec.Containers...) {
		if c.Name == "mesh-proxy" {
			proxy = &append(meshed.Spec.InitContainers, meshed.Spec.Containers...)[i]
		}
	}
	if proxy == nil || proxy.Image != images.ProxyRef {
		t.Fatalf("the injected proxy is %+v, want the stand-in image %s", proxy, images.ProxyRef)
	}

	for _, v6 := range []bool{false, true} {
		fam := map[bool]string{false: "IPv4", true: "IPv6"}[v6]
		peerIP, err := nodeharness.PodIP(peer, v6)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			pod      *corev1.Pod
			injected bool
		}{{plain, false}, {meshed, true}} {
			ip, err := nodeharness.PodIP(tc.pod, v6)
			if err != nil {
				t.Fatal(err)
			}
			// Inbound: the host calls the app. Through the stand-in the app
			// sees the connection come from its own pod address (the
			// stand-in's upstream connection); directly, from the node.
			var who whoami
			get(t, ctx, "http://"+hostPort(ip, 8080)+"/whoami", &who)
			peerAddr, _ := netip.ParseAddrPort(who.Peer)
			nodeIP := map[bool]netip.Addr{false: nodeharness.NodeIP4, true: nodeharness.NodeIP6}[v6]
			if tc.injected && peerAddr.Addr().Unmap() != ip {
				t.Errorf("%s inbound to the injected pod: the app saw peer %s, want its own address %s (via the stand-in)", fam, who.Peer, ip)
			}
			if !tc.injected && peerAddr.Addr().Unmap() != nodeIP {
				t.Errorf("%s inbound to the plain pod: the app saw peer %s, want the node %s", fam, who.Peer, nodeIP)
			}
			// Outbound: the app calls the peer pod.
			var res callResult
			get(t, ctx, "http://"+hostPort(ip, 8080)+"/call?addr="+url.QueryEscape(hostPort(peerIP, 8080)), &res)
			if res.Error != "" || res.Far == nil {
				t.Errorf("%s outbound from %s/%s to the peer: %+v", fam, tc.pod.Namespace, tc.pod.Name, res)
				continue
			}
			farSaw, _ := netip.ParseAddrPort(res.Far.Peer)
			local, _ := netip.ParseAddrPort(res.Local)
			if farSaw.Addr().Unmap() != ip {
				t.Errorf("%s outbound from %s/%s: the peer saw %s, want the pod's address %s", fam, tc.pod.Namespace, tc.pod.Name, res.Far.Peer, ip)
			}
			// Through the stand-in the peer sees the proxy's own upstream
			// connection (another source port); directly, the app's.
			if tc.injected == (farSaw.Port() == local.Port()) {
				t.Errorf("%s outbound from %s/%s: the app's connection is %s, the peer saw %s (injected %t)", fam, tc.pod.Namespace, tc.pod.Name, res.Local, res.Far.Peer, tc.injected)
			}
			t.Logf("%s %-6s pod: host->app peer seen %s; app->peer local %s remote %s, peer saw %s",
				fam, tc.pod.Namespace, who.Peer, res.Local, res.Remote, res.Far.Peer)
		}
	}

	// The stand-in's own log proves the connections went through it.
	meshIP4, _ := nodeharness.PodIP(meshed, false)
	meshIP6, _ := nodeharness.PodIP(meshed, true)
	peerIP4, _ := nodeharness.PodIP(peer, false)
	peerIP6, _ := nodeharness.PodIP(peer, true)
	wantConns := []string{
		"inbound IPv4 " + hostPort(meshIP4, 8080), "inbound IPv6 " + hostPort(meshIP6, 8080),
		"outbound IPv4 " + hostPort(peerIP4, 8080), "outbound IPv6 " + hostPort(peerIP6, 8080),
	}
	proxied := func(lines []standin.LogLine) map[string]bool {
		seen := map[string]bool{}
		for _, l := range lines {
			if l.Msg == "connection" {
				seen[l.Direction+" "+l.Family+" "+l.OriginalDst] = true
			}
		}
		return seen
	}
	lines, _ := n.WaitProxyLog(ctx, meshNS, "app", "every connection", func(lines []standin.LogLine) bool {
		seen := proxied(lines)
		for _, w := range wantConns {
			if !seen[w] {
				return false
			}
		}
		return true
	})
	var banner bool
	seen := proxied(lines)
	for _, l := range lines {
		if strings.Contains(l.Msg, standin.Banner) && l.UID != nil {
			banner = true
			if *l.UID != 1337 {
				t.Errorf("the stand-in runs as UID %d, want the proxy UID 1337", *l.UID)
			}
		}
	}
	if !banner {
		t.Errorf("no %q start line in the proxy's log", standin.Banner)
	}
	for _, want := range wantConns {
		if !seen[want] {
			t.Errorf("the Envoy STAND-IN did not proxy %q; it proxied %v", want, keys(seen))
		}
	}
	t.Logf("the Envoy STAND-IN proxied: %v", keys(seen))
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// TestPodThatCannotStartFailsWithTheKubeletsReason: a pod whose image is
// not on the node (and may not be pulled) ends the wait at once with the
// kubelet's reason and the pod's events, not after the deadline.
func TestPodThatCannotStartFailsWithTheKubeletsReason(t *testing.T) {
	n := nodeharness.Shared(t)
	ctx := t.Context()
	const ns = "broken"
	if err := n.EnsureNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	pod := appPod(ns, "missing-image")
	pod.Spec.Containers[0].Image = images.Ref("no-such-image")
	pod.Spec.Containers[0].ImagePullPolicy = corev1.PullNever
	start := time.Now()
	_, _, err := n.RunPod(ctx, pod)
	if err == nil {
		t.Fatal("a pod with a missing image became Ready")
	}
	took := time.Since(start)
	for _, want := range []string{"ErrImageNeverPull", images.Ref("no-such-image"), "event"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q:\n%v", want, err)
		}
	}
	// Ended by the kubelet's reason, not by the deadline (nodeharness.Poll
	// words a deadline "timed out after"): a property of the wait, not of
	// the machine's speed.
	if strings.Contains(err.Error(), "timed out after") {
		t.Errorf("the wait ran to its deadline instead of ending when the kubelet reported the failure")
	}
	t.Logf("failed after %s with:\n%v", took.Round(time.Millisecond), err)
	if err := n.DeletePod(ctx, ns, pod.Name, ptr(int64(0))); err != nil {
		t.Fatal(err)
	}
}

// TestClassicSidecarPodRuns: in classic mode (the proxy first among the
// containers, its postStart hook `mesh-init hook wait-ready` running the
// hook tool from the shared volume inside the stand-in's image) the pod
// also starts, becomes Ready, and its outbound connection goes through the
// Envoy STAND-IN.
func TestClassicSidecarPodRuns(t *testing.T) {
	n := nodeharness.Shared(t)
	injector(t, n)
	ctx := t.Context()
	const ns = "meshed-classic"
	if err := n.EnsureNamespace(ctx, ns, map[string]string{nodeharness.InjectionLabel: "enabled"}); err != nil {
		t.Fatal(err)
	}
	pod := appPod(ns, "app")
	pod.Annotations = map[string]string{"sidecar-injector.io/native-sidecar": "false"}
	got, took, err := n.RunPod(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Containers) == 0 || got.Spec.Containers[0].Name != "mesh-proxy" || got.Spec.Containers[0].Lifecycle == nil {
		t.Fatalf("not a classic injection: containers %v", got.Spec.Containers)
	}
	u, err := nodeharness.PodURL(got, false, 8080, "/call?addr="+url.QueryEscape(hostPort(nodeharness.NodeIP4, 10250)))
	if err != nil {
		t.Fatal(err)
	}
	// The kubelet's port on the node's bridge address: something that
	// listens on the pod network without being a pod.
	var res callResult
	get(t, ctx, u, &res)
	if _, err := n.WaitProxyLog(ctx, ns, "app", "the outbound connection to the kubelet's port", func(lines []standin.LogLine) bool {
		return connections(lines)["outbound "+hostPort(nodeharness.NodeIP4, 10250)] > 0
	}); err != nil {
		t.Errorf("the classic-mode pod's outbound connection did not go through the stand-in (call result %+v): %v", res, err)
	}
	t.Logf("classic mode: create -> Ready %s", took.Round(time.Millisecond))
}
