package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sidecar-injector/injector/test/node/rollout"
)

func do(t *testing.T, method, u, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// An app registers, the consumers' fetch lists it UP, the hook's status
// override (answered by test/registry's stand-in) takes it out of the
// list, and the app's cancel removes it.
func TestEurekaAppsAndConsumersOnTheStandIn(t *testing.T) {
	srv := httptest.NewServer(newEureka())
	defer srv.Close()
	reg := rollout.Eureka{URL: srv.URL + "/eureka"}
	ctx := context.Background()
	for _, id := range []string{"web-1", "web-2"} {
		ip := map[string]string{"web-1": "10.0.0.1", "web-2": "10.0.0.2"}[id]
		if code, b := do(t, http.MethodPost, srv.URL+"/eureka/apps/web", `{"instance":{"instanceId":"`+id+`","ipAddr":"`+ip+`","port":{"$":8080}}}`); code != http.StatusNoContent {
			t.Fatalf("register %s: %d %s", id, code, b)
		}
	}
	got, err := reg.Instances(ctx, "web")
	if want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:8080"), netip.MustParseAddrPort("10.0.0.2:8080")}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("fetch: %v %v, want %v", got, err, want)
	}
	// The hook's offline call and read-back, as the eureka preset sends them.
	if code, b := do(t, http.MethodPut, srv.URL+"/eureka/apps/WEB/web-1/status?value=OUT_OF_SERVICE", ""); code != http.StatusOK {
		t.Fatalf("status override: %d %s", code, b)
	}
	if code, b := do(t, http.MethodGet, srv.URL+"/eureka/apps/WEB/web-1", ""); code != http.StatusOK || !strings.Contains(b, `"overriddenStatus":"OUT_OF_SERVICE"`) {
		t.Fatalf("read-back: %d %s", code, b)
	}
	if got, _ := reg.Instances(ctx, "web"); !slices.Equal(got, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:8080")}) {
		t.Errorf("after the override the consumers fetch %v, want only web-2", got)
	}
	if code, _ := do(t, http.MethodDelete, srv.URL+"/eureka/apps/WEB/web-2", ""); code != http.StatusOK {
		t.Fatalf("cancel: %d", code)
	}
	if got, _ := reg.Instances(ctx, "web"); len(got) != 0 {
		t.Errorf("after the cancel the consumers fetch %v, want nothing UP", got)
	}
}

// The same for Nacos 2.5.1: register, the hook's PATCH enabled=false
// (answered by the stand-in, as an override), deregister.
func TestNacosAppsAndConsumersOnTheStandIn(t *testing.T) {
	srv := httptest.NewServer(newNacos("2.5.1"))
	defer srv.Close()
	reg := rollout.Nacos{Addr: strings.TrimPrefix(srv.URL, "http://")}
	ctx := context.Background()
	for _, ip := range []string{"10.0.0.1", "10.0.0.2"} {
		if code, b := do(t, http.MethodPost, srv.URL+"/nacos/v1/ns/instance?serviceName=web&groupName=DEFAULT_GROUP&clusterName=DEFAULT&ephemeral=true&port=8080&ip="+ip, ""); code != http.StatusOK || b != "ok" {
			t.Fatalf("register %s: %d %s", ip, code, b)
		}
	}
	if got, err := reg.Instances(ctx, "web"); err != nil || len(got) != 2 {
		t.Fatalf("list: %v %v", got, err)
	}
	if code, b := do(t, http.MethodPatch, srv.URL+"/nacos/v1/ns/instance?serviceName=web&groupName=DEFAULT_GROUP&clusterName=DEFAULT&ip=10.0.0.1&port=8080&enabled=false", ""); code != http.StatusOK {
		t.Fatalf("PATCH: %d %s", code, b)
	}
	if got, _ := reg.Instances(ctx, "web"); !slices.Equal(got, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:8080")}) {
		t.Errorf("after the offline PATCH the consumers list %v, want only 10.0.0.2", got)
	}
	if code, _ := do(t, http.MethodDelete, srv.URL+"/nacos/v1/ns/instance?serviceName=web&clusterName=DEFAULT&ip=10.0.0.2&port=8080", ""); code != http.StatusOK {
		t.Fatalf("deregister: %d", code)
	}
	if got, _ := reg.Instances(ctx, "web"); len(got) != 0 {
		t.Errorf("after the deregistration the consumers list %v, want nothing enabled", got)
	}
}

// Consul: the app registers with the agent, the consumers' passing-only
// health query lists it, the hook's maintenance mode (answered by
// test/registry's agent stand-in) takes it out of that query but not out
// of the unfiltered one, maintenance off brings it back, and the app's
// deregistration removes it.
func TestConsulAppsAndConsumersOnTheStandIn(t *testing.T) {
	srv := httptest.NewServer(newConsul())
	defer srv.Close()
	reg := rollout.Consul{Addr: strings.TrimPrefix(srv.URL, "http://")}
	ctx := context.Background()
	for _, id := range []string{"web-1", "web-2"} {
		ip := map[string]string{"web-1": "10.0.0.1", "web-2": "10.0.0.2"}[id]
		if code, b := do(t, http.MethodPut, srv.URL+"/v1/agent/service/register", `{"ID":"`+id+`","Name":"web","Address":"`+ip+`","Port":8080}`); code != http.StatusOK {
			t.Fatalf("register %s: %d %s", id, code, b)
		}
	}
	both := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:8080"), netip.MustParseAddrPort("10.0.0.2:8080")}
	if got, err := reg.Instances(ctx, "web"); err != nil || !slices.Equal(got, both) {
		t.Fatalf("health query: %v %v, want %v", got, err, both)
	}
	// The hook's find, offline call and read-back, as the consul preset sends them.
	if code, b := do(t, http.MethodGet, srv.URL+"/v1/agent/service/web-1", ""); code != http.StatusOK {
		t.Fatalf("find: %d %s", code, b)
	}
	if code, b := do(t, http.MethodPut, srv.URL+"/v1/agent/service/maintenance/web-1?enable=true&reason=x", ""); code != http.StatusOK {
		t.Fatalf("maintenance: %d %s", code, b)
	}
	if code, b := do(t, http.MethodGet, srv.URL+"/v1/agent/health/service/id/web-1", ""); code != http.StatusServiceUnavailable || !strings.Contains(b, `"AggregatedStatus":"maintenance"`) {
		t.Fatalf("read-back: %d %s", code, b)
	}
	if got, _ := reg.Instances(ctx, "web"); !slices.Equal(got, both[1:]) {
		t.Errorf("in maintenance, the passing-only query lists %v, want only web-2", got)
	}
	if _, b := do(t, http.MethodGet, srv.URL+"/v1/health/service/web", ""); !strings.Contains(b, "web-1") || !strings.Contains(b, `"Status":"critical"`) {
		t.Errorf("the unfiltered query should list web-1 with its critical maintenance check: %s", b)
	}
	if code, _ := do(t, http.MethodPut, srv.URL+"/v1/agent/service/maintenance/web-1?enable=false", ""); code != http.StatusOK {
		t.Fatalf("maintenance off: %d", code)
	}
	if got, _ := reg.Instances(ctx, "web"); !slices.Equal(got, both) {
		t.Errorf("maintenance off: %v, want both", got)
	}
	if code, _ := do(t, http.MethodPut, srv.URL+"/v1/agent/service/deregister/web-2", ""); code != http.StatusOK {
		t.Fatalf("deregister: %d", code)
	}
	if got, _ := reg.Instances(ctx, "web"); !slices.Equal(got, both[:1]) {
		t.Errorf("after the deregistration: %v, want only web-1", got)
	}
}
