package rollout

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func ep(addr string, ready, serving, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{
		Ready: &ready, Serving: &serving, Terminating: &terminating}}
}

// kube-proxy's choice: ready endpoints of the family; the serving
// terminating ones only when none is ready.
func TestEndpointsView(t *testing.T) {
	slice := func(name string, fam discoveryv1.AddressType, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name}, AddressType: fam, Endpoints: eps}
	}
	state := map[string]*discoveryv1.EndpointSlice{
		"a": slice("a", discoveryv1.AddressTypeIPv4, ep("10.0.0.2", true, true, false), ep("10.0.0.1", false, true, true)),
		"b": slice("b", discoveryv1.AddressTypeIPv4, ep("10.0.0.3", false, false, false)),
		"c": slice("c", discoveryv1.AddressTypeIPv6, ep("fd00::1", true, true, false)),
		// A nil Ready condition means ready (the API's rule).
		"d": slice("d", discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"10.0.0.4"}}),
	}
	if got, want := endpointsView(state, discoveryv1.AddressTypeIPv4, 8080), []netip.AddrPort{ap("10.0.0.2:8080"), ap("10.0.0.4:8080")}; !slices.Equal(got, want) {
		t.Errorf("IPv4 view %v, want %v", got, want)
	}
	if got, want := endpointsView(state, discoveryv1.AddressTypeIPv6, 8080), []netip.AddrPort{ap("[fd00::1]:8080")}; !slices.Equal(got, want) {
		t.Errorf("IPv6 view %v, want %v", got, want)
	}
	delete(state, "d")
	state["a"].Endpoints = state["a"].Endpoints[1:] // only the terminating one is left
	if got, want := endpointsView(state, discoveryv1.AddressTypeIPv4, 8080), []netip.AddrPort{ap("10.0.0.1:8080")}; !slices.Equal(got, want) {
		t.Errorf("fallback view %v, want the serving terminating endpoint %v", got, want)
	}
}

// Views are applied in order, each no earlier than the delay after it was
// pushed (a lower bound only: the machine may be busy).
func TestDelayedAppliesInOrderAfterTheDelay(t *testing.T) {
	const delay = 50 * time.Millisecond
	type applied struct {
		view []netip.AddrPort
		at   time.Time
	}
	var mu sync.Mutex
	var got []applied
	all := make(chan struct{})
	d := newDelayed(delay, func(v []netip.AddrPort) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, applied{v, time.Now()})
		if len(got) == 3 {
			close(all)
		}
	})
	defer d.stop()
	pushed := make([]time.Time, 3)
	for i := range 3 {
		pushed[i] = time.Now()
		d.push([]netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(i+1))})
		time.Sleep(5 * time.Millisecond)
	}
	<-all
	mu.Lock()
	defer mu.Unlock()
	for i, a := range got {
		if a.view[0].Port() != uint16(i+1) {
			t.Errorf("view %d applied in position %d", a.view[0].Port(), i)
		}
		if a.at.Sub(pushed[i]) < delay {
			t.Errorf("view %d applied %s after it was pushed, before the %s delay", i, a.at.Sub(pushed[i]), delay)
		}
	}
}

// The consumers' side of Eureka's and Nacos's APIs: only instances that
// are UP (Eureka) or enabled and healthy (Nacos) are called; Eureka's one
// instance as an object and several as an array are both read.
func TestRegistryInstances(t *testing.T) {
	eurekaBody := map[string]string{
		"/eureka/apps/WEB": `{"application":{"name":"WEB","instance":[
			{"instanceId":"a","ipAddr":"10.0.0.1","status":"UP","port":{"$":8080,"@enabled":"true"}},
			{"instanceId":"b","ipAddr":"10.0.0.2","status":"OUT_OF_SERVICE","port":{"$":8080,"@enabled":"true"}},
			{"instanceId":"c","ipAddr":"10.0.0.3","status":"UP","port":{"$":"8081","@enabled":"true"}}]}}`,
		"/eureka/apps/ONE": `{"application":{"name":"ONE","instance":{"instanceId":"a","ipAddr":"10.0.0.9","status":"UP","port":{"$":80}}}}`,
	}
	nacosBody := `{"hosts":[
		{"ip":"10.0.1.1","port":8080,"healthy":true,"enabled":true,"weight":1},
		{"ip":"10.0.1.2","port":8080,"healthy":true,"enabled":false,"weight":1},
		{"ip":"10.0.1.3","port":8080,"healthy":false,"enabled":true,"weight":1}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/nacos/v1/ns/instance/list" {
			if r.URL.Query().Get("serviceName") != "web" {
				http.Error(w, "caused: no service", http.StatusBadRequest)
				return
			}
			_, _ = w.Write([]byte(nacosBody))
			return
		}
		if b, ok := eurekaBody[r.URL.Path]; ok && r.Header.Get("Accept") == "application/json" {
			_, _ = w.Write([]byte(b))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	for _, tc := range []struct {
		reg  Registry
		app  string
		want []netip.AddrPort
	}{
		{Eureka{URL: srv.URL + "/eureka/"}, "web", []netip.AddrPort{ap("10.0.0.1:8080"), ap("10.0.0.3:8081")}},
		{Eureka{URL: srv.URL + "/eureka"}, "one", []netip.AddrPort{ap("10.0.0.9:80")}},
		{Eureka{URL: srv.URL + "/eureka"}, "none", nil}, // 404: nothing registered
		{Nacos{Addr: host}, "web", []netip.AddrPort{ap("10.0.1.1:8080")}},
	} {
		got, err := tc.reg.Instances(ctx, tc.app)
		if err != nil {
			t.Errorf("%s %s: %v", tc.reg.Name(), tc.app, err)
			continue
		}
		if !slices.Equal(sorted(got), tc.want) {
			t.Errorf("%s %s: %v, want %v", tc.reg.Name(), tc.app, got, tc.want)
		}
	}
	// The environment names the same registry the consumer reads.
	for _, tc := range []struct {
		reg       Registry
		key, want string
	}{
		{Eureka{URL: "http://r:8761/eureka"}, "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE", "http://r:8761/eureka"},
		{Nacos{Addr: "r:8848"}, "SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR", "r:8848"},
		{Consul{Addr: "r:8500"}, "SPRING_CLOUD_CONSUL_HOST", "r"},
		{Consul{Addr: "r:8500"}, "SPRING_CLOUD_CONSUL_PORT", "8500"},
		{Dubbo{Nacos: Nacos{Addr: "r:8848"}}, "DUBBO_REGISTRY_ADDRESS", "nacos://r:8848"},
		{Via{Registry: Nacos{Addr: "r:8848"}, Extra: []corev1.EnvVar{{Name: "X", Value: "y"}}}, "X", "y"},
		{Via{Registry: Nacos{Addr: "r:8848"}}, "SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR", "r:8848"},
	} {
		found := false
		for _, e := range tc.reg.Env("web") {
			found = found || (e.Name == tc.key && e.Value == tc.want)
		}
		if !found {
			t.Errorf("%s: Env lacks %s=%s: %+v", tc.reg.Name(), tc.key, tc.want, tc.reg.Env("web"))
		}
	}
}

// fixedView is a Discovery with views the test sets.
type fixedView struct{ views chan []netip.AddrPort }

func (fixedView) Name() string { return "fixed" }

func (f fixedView) Run(ctx context.Context, update func([]netip.AddrPort)) error {
	for {
		select {
		case v := <-f.views:
			update(v)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// The client sends on schedule to the current view, round robin, one
// connection per request, and counts a refused connection and an empty
// view as failures.
func TestClientCountsEveryRequest(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		_ = json.NewEncoder(w).Encode("ok")
	}))
	srv.Start()
	defer srv.Close()
	good := netip.MustParseAddrPort(srv.Listener.Addr().String())
	// A port nothing listens on.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()

	f := fixedView{views: make(chan []netip.AddrPort)}
	c := &Client{Discovery: f, Interval: 5 * time.Millisecond, Timeout: 5 * time.Second, Path: "/"}
	rec := c.Start(context.Background())
	f.views <- []netip.AddrPort{good}
	<-rec.Ready()
	waitRequests(t, rec, 10)
	f.views <- []netip.AddrPort{good, refused}
	waitRequests(t, rec, 30)
	f.views <- []netip.AddrPort{}
	waitRequests(t, rec, 40)
	reqs, err := rec.Stop()
	if err != nil {
		t.Fatal(err)
	}
	rep := summarize(Scenario{Name: "t", Discovery: f}, 1, reqs[0].At, reqs[0].At, time.Second, reqs)
	if rep.Sent != len(reqs) || rep.Warmup != 0 || rep.Failed == 0 || rep.Errors["connection refused"] == 0 || rep.Errors["no instance known"] == 0 {
		t.Errorf("report %+v", rep)
	}
	ok := 0
	for _, r := range reqs {
		switch {
		case r.Err == "" && r.Target != good:
			t.Errorf("a request to %s succeeded", r.Target)
		case r.Err == "":
			ok++
		}
	}
	if ok+rep.Failed != rep.Sent {
		t.Errorf("%d ok + %d failed != %d sent", ok, rep.Failed, rep.Sent)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != ok {
		t.Errorf("%d requests succeeded over %d connections; want one connection each", ok, len(conns))
	}
	if !strings.Contains(Table([]*Report{rep}), "| t | 1 |") {
		t.Errorf("table:\n%s", Table([]*Report{rep}))
	}
}

// TestSummarizeCountsFromTheFullView: the requests a consumer sent before
// its view first held every instance (instances that register after they
// are Ready) are warm-up, not the rollout's; every later one counts.
func TestSummarizeCountsFromTheFullView(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	reqs := []Request{
		{At: at(0), Err: "no instance known"},
		{At: at(50), Err: "no instance known"},
		{At: at(100)},
		{At: at(150)}, // from: the view held every instance
		{At: at(200), Err: "connection refused"},
		{At: at(250)},
		{At: at(300), Err: "timeout"},
	}
	rep := summarize(Scenario{Name: "t", Discovery: fixedView{}}, 2, at(150), at(175), time.Second, reqs)
	if rep.Warmup != 3 || rep.WarmupFailed != 2 || rep.Sent != 4 || rep.Failed != 2 {
		t.Errorf("warm-up %d (failed %d), sent %d (failed %d); want 3 (2), 4 (2)", rep.Warmup, rep.WarmupFailed, rep.Sent, rep.Failed)
	}
	if rep.Errors["no instance known"] != 0 || rep.Errors["connection refused"] != 1 || rep.Errors["timeout"] != 1 {
		t.Errorf("errors %v", rep.Errors)
	}
	if rep.First != 25*time.Millisecond || rep.Window != 100*time.Millisecond {
		t.Errorf("first failure %s after the start, window %s; want 25ms, 100ms", rep.First, rep.Window)
	}
}

func waitRequests(t *testing.T, rec *Recording, n int) {
	t.Helper()
	for range 2000 {
		rec.mu.Lock()
		got := len(rec.requests)
		rec.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("fewer than %d requests recorded", n)
}
