package node

// TEMPORARY registry stand-in. Issue 15 brings full registry stand-ins
// (Eureka, Nacos, ... in every mode) in the package test/registry, served
// from pods; until that lands, the rollout measurements use this minimal
// one, served by the test process on the node's bridge address (pods reach
// it through their outbound capture, like a registry in another pod).
// It speaks only what the rollout needs of each public API, and nothing
// about it is meant to outlive test/registry: replace
// newTempRegistryStandIn with test/registry's stand-ins and delete this
// file.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/sidecar-injector/injector/test/node/nodeharness"
	"github.com/sidecar-injector/injector/test/node/rollout"
)

// tempRegistry is the TEMPORARY stand-in: a Eureka-like API under
// /eureka and a Nacos-like open API v1 under /nacos.
type tempRegistry struct {
	addr netip.AddrPort
	mu   sync.Mutex
	// eureka: APP -> instance id -> instance
	eureka map[string]map[string]*eurekaInstance
	// nacos: service -> "ip:port" -> instance
	nacos map[string]map[string]*nacosInstance
	log   []string
}

type eurekaInstance struct {
	InstanceID       string          `json:"instanceId"`
	HostName         string          `json:"hostName"`
	App              string          `json:"app"`
	IPAddr           string          `json:"ipAddr"`
	Status           string          `json:"status"`
	OverriddenStatus string          `json:"overriddenStatus"`
	Port             json.RawMessage `json:"port"`
}

type nacosInstance struct {
	IP          string  `json:"ip"`
	Port        int     `json:"port"`
	ServiceName string  `json:"serviceName"`
	ClusterName string  `json:"clusterName"`
	Healthy     bool    `json:"healthy"`
	Enabled     bool    `json:"enabled"`
	Ephemeral   bool    `json:"ephemeral"`
	Weight      float64 `json:"weight"`
}

// newTempRegistryStandIn serves the TEMPORARY registry stand-in on the
// node's IPv4 bridge address until the test ends.
func newTempRegistryStandIn(t *testing.T) *tempRegistry {
	r := &tempRegistry{eureka: map[string]map[string]*eurekaInstance{}, nacos: map[string]map[string]*nacosInstance{}}
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(nodeharness.NodeIP4, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	r.addr = netip.MustParseAddrPort(ln.Addr().String())
	srv := &http.Server{Handler: r}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	t.Logf("TEMPORARY registry stand-in (Eureka-like and Nacos-like APIs; to be replaced by test/registry, issue 15) on %s", r.addr)
	return r
}

func (r *tempRegistry) Eureka() rollout.Eureka {
	return rollout.Eureka{URL: fmt.Sprintf("http://%s/eureka", r.addr)}
}

func (r *tempRegistry) Nacos() rollout.Nacos { return rollout.Nacos{Addr: r.addr.String()} }

func (r *tempRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Method != http.MethodGet {
		r.log = append(r.log, req.Method+" "+req.URL.RequestURI())
	}
	switch {
	case strings.HasPrefix(req.URL.Path, "/eureka/apps/"):
		r.serveEureka(w, req, strings.Split(strings.TrimPrefix(req.URL.Path, "/eureka/apps/"), "/"))
	case req.URL.Path == "/nacos/v1/ns/instance" || req.URL.Path == "/nacos/v1/ns/instance/list":
		r.serveNacos(w, req)
	default:
		http.NotFound(w, req)
	}
}

// serveEureka: POST apps/{APP} (register), GET apps/{APP} (fetch),
// GET and DELETE apps/{APP}/{id}, PUT and DELETE apps/{APP}/{id}/status
// (status override), as Eureka's REST API.
func (r *tempRegistry) serveEureka(w http.ResponseWriter, req *http.Request, parts []string) {
	app := strings.ToUpper(parts[0])
	insts := r.eureka[app]
	switch {
	case len(parts) == 1 && req.Method == http.MethodPost:
		var body struct {
			Instance eurekaInstance `json:"instance"`
		}
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil || body.Instance.InstanceID == "" {
			http.Error(w, "bad instance", http.StatusBadRequest)
			return
		}
		if insts == nil {
			insts = map[string]*eurekaInstance{}
			r.eureka[app] = insts
		}
		in := body.Instance
		in.App, in.Status, in.OverriddenStatus = app, "UP", "UNKNOWN"
		insts[in.InstanceID] = &in
		w.WriteHeader(http.StatusNoContent)
	case len(parts) == 1 && req.Method == http.MethodGet:
		if len(insts) == 0 {
			http.NotFound(w, req)
			return
		}
		list := []*eurekaInstance{}
		for _, in := range insts {
			list = append(list, in)
		}
		writeJSON(w, map[string]any{"application": map[string]any{"name": app, "instance": list}})
	case len(parts) >= 2:
		in := insts[parts[1]]
		if in == nil {
			http.NotFound(w, req)
			return
		}
		switch {
		case len(parts) == 2 && req.Method == http.MethodGet:
			writeJSON(w, map[string]any{"instance": in})
		case len(parts) == 2 && req.Method == http.MethodDelete:
			delete(insts, parts[1])
		case len(parts) == 3 && parts[2] == "status" && req.Method == http.MethodPut:
			v := req.URL.Query().Get("value")
			if v == "" {
				http.Error(w, "no value", http.StatusBadRequest)
				return
			}
			in.Status, in.OverriddenStatus = v, v
		case len(parts) == 3 && parts[2] == "status" && req.Method == http.MethodDelete:
			in.Status, in.OverriddenStatus = "UP", "UNKNOWN"
		default:
			http.Error(w, "unsupported", http.StatusMethodNotAllowed)
		}
	default:
		http.Error(w, "unsupported", http.StatusMethodNotAllowed)
	}
}

// serveNacos: POST, PUT, DELETE and GET /nacos/v1/ns/instance and GET
// /nacos/v1/ns/instance/list, as Nacos's open API v1 (answers "ok").
func (r *tempRegistry) serveNacos(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	if err := req.ParseForm(); err == nil {
		for k, v := range req.PostForm {
			q[k] = v
		}
	}
	svc := q.Get("serviceName")
	if svc == "" {
		http.Error(w, "caused: Param 'serviceName' is required.", http.StatusBadRequest)
		return
	}
	insts := r.nacos[svc]
	if req.URL.Path == "/nacos/v1/ns/instance/list" {
		hosts := []*nacosInstance{}
		for _, in := range insts {
			hosts = append(hosts, in)
		}
		writeJSON(w, map[string]any{"name": svc, "hosts": hosts})
		return
	}
	key := net.JoinHostPort(q.Get("ip"), q.Get("port"))
	switch req.Method {
	case http.MethodPost:
		var port int
		if _, err := fmt.Sscan(q.Get("port"), &port); err != nil {
			http.Error(w, "caused: bad port", http.StatusBadRequest)
			return
		}
		if insts == nil {
			insts = map[string]*nacosInstance{}
			r.nacos[svc] = insts
		}
		insts[key] = &nacosInstance{IP: q.Get("ip"), Port: port, ServiceName: svc, ClusterName: q.Get("clusterName"),
			Healthy: true, Enabled: q.Get("enabled") != "false", Ephemeral: true, Weight: 1}
	case http.MethodPut:
		in := insts[key]
		if in == nil {
			http.Error(w, "caused: instance not found: "+key, http.StatusBadRequest)
			return
		}
		if v := q.Get("enabled"); v != "" {
			in.Enabled = v == "true"
		}
	case http.MethodDelete:
		delete(insts, key)
	case http.MethodGet:
		in := insts[key]
		if in == nil {
			http.Error(w, "caused: instance not found: "+key, http.StatusNotFound)
			return
		}
		writeJSON(w, in)
		return
	}
	fmt.Fprint(w, "ok")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// calls returns the state-changing requests the stand-in received.
func (r *tempRegistry) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}
