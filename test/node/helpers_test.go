package node

import (
	"context"
	"encoding/json"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/injector/test/node/nodeharness"
	"github.com/sidecar-injector/injector/test/node/standin"
)

// family names an address family in test output.
func family(v6 bool) string { return map[bool]string{false: "IPv4", true: "IPv6"}[v6] }

// addrOf is the address of "host:port", IPv4-mapped addresses unmapped.
func addrOf(s string) netip.Addr {
	ap, _ := netip.ParseAddrPort(s)
	return ap.Addr().Unmap()
}

// mustIP is the pod's address of one family.
func mustIP(t *testing.T, p *corev1.Pod, v6 bool) netip.Addr {
	t.Helper()
	ip, err := nodeharness.PodIP(p, v6)
	if err != nil {
		t.Fatal(err)
	}
	return ip
}

// nodeIP is the node's address on the pod bridge.
func nodeIP(v6 bool) netip.Addr {
	if v6 {
		return nodeharness.NodeIP6
	}
	return nodeharness.NodeIP4
}

// inbound asks the app in pod, from the host, who it sees calling: the
// stand-in (the pod's own address) when the port is captured, the node
// when it is not.
func inbound(t *testing.T, ctx context.Context, p *corev1.Pod, v6 bool, port int) whoami {
	t.Helper()
	var who whoami
	get(t, ctx, "http://"+hostPort(mustIP(t, p, v6), port)+"/whoami", &who)
	return who
}

// outbound has the app in pod dial dst and reports both ends' view.
func outbound(t *testing.T, ctx context.Context, p *corev1.Pod, v6 bool, dst string) callResult {
	t.Helper()
	var res callResult
	get(t, ctx, "http://"+hostPort(mustIP(t, p, v6), 8080)+"/call?addr="+url.QueryEscape(dst), &res)
	if res.Error != "" || res.Far == nil {
		t.Fatalf("%s: the app in %s/%s could not call %s: %+v", family(v6), p.Namespace, p.Name, dst, res)
	}
	return res
}

// viaProxy says whether a /call went through the proxy: the far end saw
// another connection (the proxy's upstream one) than the app made.
func (r callResult) viaProxy() bool {
	far, _ := netip.ParseAddrPort(r.Far.Peer)
	local, _ := netip.ParseAddrPort(r.Local)
	return far.Port() != local.Port()
}

// connections counts the Envoy STAND-IN's "connection" log lines by
// "direction original_dst".
func connections(lines []standin.LogLine) map[string]int {
	out := map[string]int{}
	for _, l := range lines {
		if l.Msg == "connection" {
			out[l.Direction+" "+l.OriginalDst]++
		}
	}
	return out
}

// appEvent is one line of testapp's log: a lifecycle event or a request.
type appEvent struct {
	Time   time.Time `json:"time"`
	Event  string    `json:"event"`
	Detail string    `json:"detail"`
}

// parseEvents reads testapp's JSON lines from a container log in the
// kubelet's CRI format ("<time> <stream> <tag> <message>") or plain.
func parseEvents(log string) []appEvent {
	var out []appEvent
	for _, l := range strings.Split(log, "\n") {
		if i := strings.Index(l, "{"); i >= 0 {
			l = l[i:]
		}
		var e appEvent
		if json.Unmarshal([]byte(l), &e) == nil && e.Event != "" {
			out = append(out, e)
		}
	}
	return out
}

// first returns the first event of that name, or the zero time.
func first(evs []appEvent, name string) (appEvent, bool) {
	for _, e := range evs {
		if e.Event == name {
			return e, true
		}
	}
	return appEvent{}, false
}

// proxyLine returns the first stand-in line whose message starts with msg.
func proxyLine(lines []standin.LogLine, msg string) (standin.LogLine, bool) {
	for _, l := range lines {
		if strings.HasPrefix(l.Msg, msg) {
			return l, true
		}
	}
	return standin.LogLine{}, false
}

// stamp formats a time relative to a reference for test output.
func stamp(ref, t time.Time) string {
	return "+" + t.Sub(ref).Round(time.Millisecond).String()
}

// container returns the pod's container (init or app) of that name.
func container(p *corev1.Pod, name string) *corev1.Container {
	for _, group := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range group {
			if group[i].Name == name {
				return &group[i]
			}
		}
	}
	return nil
}

// status returns the pod's status of that container (init or app).
func status(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, group := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range group {
			if group[i].Name == name {
				return &group[i]
			}
		}
	}
	return nil
}
