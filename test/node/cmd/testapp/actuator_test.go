package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidecar-injector/injector/test/registry"
	"github.com/sidecar-injector/injector/test/testkit"
)

func send(t *testing.T, h http.Handler, method, contentType, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, "/actuator/serviceregistry", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

// Spring Cloud Commons' endpoint with Spring Cloud Netflix behind it, on
// test/registry's Eureka peer: GET reads the server's instance, POST puts
// or deletes the status override there; Spring's own refusals first.
func TestServiceRegistryEndpointNetflix(t *testing.T) {
	c := registry.NewEurekaCluster(1)
	c.Register(0, "WEB", "web-1")
	srv := httptest.NewServer(c.Peers[0])
	defer srv.Close()
	h := serviceRegistryEndpoint(&eurekaRegistrar{registrar: newRegistrar("eureka", request{}, request{}),
		instance: srv.URL + "/eureka/apps/WEB/web-1", dirty: 1})
	if code, b := send(t, h, http.MethodGet, "", ""); code != 200 || b != `{"overriddenStatus":"UNKNOWN","status":"UP"}` {
		t.Errorf("GET: %d %s", code, b)
	}
	if code, _ := send(t, h, http.MethodPost, "text/plain", `{"status":"DOWN"}`); code != http.StatusUnsupportedMediaType {
		t.Errorf("POST text/plain: %d, want 415", code)
	}
	if code, b := send(t, h, http.MethodPost, "application/json", `{}`); code != http.StatusBadRequest || !strings.Contains(b, "Missing parameters: status") {
		t.Errorf("POST without status: %d %s", code, b)
	}
	if code, b := send(t, h, http.MethodPost, "application/json", `{"status":"OUT_OF_SERVICE"}`); code != 200 || b != "" {
		t.Errorf("POST OUT_OF_SERVICE: %d %q, want 200 and no body", code, b)
	}
	if st, over, _ := c.Status(0, "WEB", "web-1"); st != "OUT_OF_SERVICE" || over != "OUT_OF_SERVICE" {
		t.Errorf("after OUT_OF_SERVICE the server holds %s/%s", st, over)
	}
	if code, b := send(t, h, http.MethodGet, "", ""); code != 200 || b != `{"overriddenStatus":"OUT_OF_SERVICE","status":"OUT_OF_SERVICE"}` {
		t.Errorf("GET after: %d %s", code, b)
	}
	if code, _ := send(t, h, http.MethodPost, "application/json", `{"status":"CANCEL_OVERRIDE"}`); code != 200 {
		t.Errorf("CANCEL_OVERRIDE: %d", code)
	}
	if st, over, _ := c.Status(0, "WEB", "web-1"); st != "UNKNOWN" || over != "" {
		t.Errorf("after CANCEL_OVERRIDE (DELETE without value) the server holds %s/%q, want UNKNOWN until the next heartbeat", st, over)
	}
	// Without a registration both verbs say so.
	none := serviceRegistryEndpoint(nil)
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if code, b := send(t, none, m, "application/json", `{"status":"DOWN"}`); code != 404 || b != "no registration found" {
			t.Errorf("%s without a registration: %d %s", m, code, b)
		}
	}
}

// With Spring Cloud Alibaba behind it, on test/registry's Nacos 2.5.1:
// only UP and DOWN do anything (OUT_OF_SERVICE answers 200 and is
// ignored), through the Java client's v1 PUT; GET reads the service's
// list for this ip and port, empty when it is not there.
func TestServiceRegistryEndpointAlibaba(t *testing.T) {
	n := registry.NewNacos("2.5.1")
	n.Register(registry.NacosInstance{Service: "web", IP: "10.0.0.1", Port: 8080})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/nacos/v1/ns/instance/list" {
			n.ServeHTTP(w, r)
			return
		}
		// As Nacos 2.x lists a service: enabled instances only.
		var hosts []map[string]any
		for _, i := range n.Instances() {
			if i.Enabled {
				hosts = append(hosts, map[string]any{"ip": i.IP, "port": i.Port, "enabled": i.Enabled})
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"hosts": hosts})
	}))
	defer srv.Close()
	reg := &nacosRegistrar{registrar: newRegistrar("nacos", request{}, request{}), server: srv.URL + "/nacos", app: "web", ip: "10.0.0.1", port: "8080"}
	h := serviceRegistryEndpoint(reg)
	enabled := func() bool {
		i, _ := n.Instance(registry.NacosInstance{Service: "web", IP: "10.0.0.1", Port: 8080})
		return i.Enabled
	}
	if code, b := send(t, h, http.MethodGet, "", ""); code != 200 || b != `"UP"` {
		t.Errorf("GET: %d %s", code, b)
	}
	if code, _ := send(t, h, http.MethodPost, "application/json", `{"status":"OUT_OF_SERVICE"}`); code != 200 || !enabled() {
		t.Errorf("OUT_OF_SERVICE: %d, enabled %t; want 200 and nothing done", code, enabled())
	}
	if code, _ := send(t, h, http.MethodPost, "application/json", `{"status":"down"}`); code != 200 || enabled() {
		t.Errorf("down: %d, enabled %t", code, enabled())
	}
	if ua := n.Requests()[len(n.Requests())-1].UserAgent; !strings.HasPrefix(ua, "Nacos-Java-Client") {
		t.Errorf("the update went with User-Agent %q, not the Java client's", ua)
	}
	// Disabled, the instance is no longer listed, so getStatus finds
	// nothing (the hook takes that as DOWN, since it was listed before).
	if code, b := send(t, h, http.MethodGet, "", ""); code != 200 || b != "" {
		t.Errorf("GET after DOWN: %d %q, want 200 and nothing", code, b)
	}
	if code, _ := send(t, h, http.MethodPost, "application/json", `{"status":"UP"}`); code != 200 || !enabled() {
		t.Errorf("UP: %d, enabled %t", code, enabled())
	}
	reg.ip = "10.0.0.9"
	if code, b := send(t, h, http.MethodGet, "", ""); code != 200 || b != "" {
		t.Errorf("GET for an instance not listed: %d %q, want 200 and nothing", code, b)
	}
}

// Dubbo QoS offline: the interface-level registration goes at once, the
// application-level one after the metadata refresh, and ls says N.
func TestDubboQoSOfflineUnregisters(t *testing.T) {
	var mu sync.Mutex
	deleted := map[string]time.Time{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			mu.Lock()
			deleted[r.URL.Query().Get("serviceName")] = time.Now()
			mu.Unlock()
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	env := map[string]string{"DUBBO_REGISTRY_ADDRESS": "nacos://" + strings.TrimPrefix(srv.URL, "http://"), "DUBBO_APPLICATION_NAME": "web"}
	d, err := newDubbo(func(k string) string { return env[k] }, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	d.start()
	// A bound on the wait, not on the registry's speed.
	deadline := time.Now().Add(testkit.Deadline(time.Minute))
	for d.app.state() != "registered" || d.iface.state() != "registered" {
		if time.Now().After(deadline) {
			t.Fatalf("not registered: %s %s", d.app.state(), d.iface.state())
		}
		time.Sleep(10 * time.Millisecond)
	}
	qos := httptest.NewServer(d.qos)
	defer qos.Close()
	at := time.Now()
	resp, err := http.Get(qos.URL + "/offline")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "OK" {
		t.Errorf("offline answered %q", b)
	}
	mu.Lock()
	_, iface := deleted["providers:"+dubboInterface+"::"]
	_, app := deleted["web"]
	mu.Unlock()
	if !iface || app {
		t.Errorf("right after offline: interface-level unregistered %t (want true), application-level %t (want false: after the refresh)", iface, app)
	}
	for {
		mu.Lock()
		when, app := deleted["web"]
		mu.Unlock()
		if app {
			if when.Sub(at) < dubboMetadataDelay {
				t.Errorf("application-level unregistered %s after offline, before the refresh", when.Sub(at))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the application-level instance was never unregistered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err = http.Get(qos.URL + "/ls")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "nacos-A(N)/nacos-I(N)") {
		t.Errorf("ls after offline:\n%s", b)
	}
}
