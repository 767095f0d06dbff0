// Command registry serves one of test/registry's registry stand-ins
// (issue 15: written from each registry's public API and server source)
// in a pod of the node tier, for the rollout measurements
// (docs/lossless.md). It is a stand-in, not the registry.
//
// test/registry's stand-ins answer what the hook tool asks (status
// override, read-back, Nacos's version detection, catalog and PATCH) and
// take their registrations through their Go API. A rollout also needs
// what apps and consumers ask, so this command adds, on top of the same
// stand-in's state:
//
//	eureka: POST /eureka/apps/{APP} (register), DELETE /eureka/apps/{APP}/{id}
//	        (cancel), GET /eureka/apps/{APP} (the consumers' fetch: every
//	        instance with its status, the override applied)
//	nacos:  POST and DELETE /nacos/v1/ns/instance (register, deregister),
//	        GET /nacos/v1/ns/instance/list (the consumers' list: the
//	        enabled instances, the override applied, as 2.x lists them:
//	        InstanceOperatorClientImpl.listInstance selects enabled ones
//	        only)
//	consul: PUT /v1/agent/service/register (the app's registration with
//	        its agent; deregistration is the stand-in's own), GET
//	        /v1/health/service/{name}[?passing] (the consumers' health
//	        query: every instance with its checks, maintenance included;
//	        ?passing keeps those whose checks all pass). One agent that
//	        also answers the catalog: a single-node Consul.
//
// Everything else goes to the stand-in itself. GET /healthz answers ok.
//
//	registry --kind=eureka --listen=:8080
//	registry --kind=nacos --version=2.5.1 --listen=:8080
//	registry --kind=consul --listen=:8080
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/sidecar-injector/injector/test/registry"
)

func main() {
	kind := flag.String("kind", "", "eureka, nacos or consul")
	version := flag.String("version", "2.5.1", "nacos: the version the stand-in behaves as")
	listen := flag.String("listen", ":8080", "address to serve on")
	flag.Parse()
	var h http.Handler
	switch *kind {
	case "eureka":
		h = newEureka()
	case "nacos":
		h = newNacos(*version)
	case "consul":
		h = newConsul()
	default:
		fmt.Fprintf(os.Stderr, "registry: --kind must be eureka, nacos or consul, not %q\n", *kind)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("/", h)
	log.SetFlags(log.LstdFlags | log.Lmicroseconds | log.LUTC)
	log.Printf("registry STAND-IN (test/registry %s %s, with the apps' and consumers' API) on %s", *kind, *version, *listen)
	log.Fatal(http.ListenAndServe(*listen, mux))
}

// eureka is a one-peer test/registry EurekaCluster plus the register,
// cancel and fetch calls of Eureka's REST API (the peer keeps no
// addresses, so they are kept here by APP/id).
type eureka struct {
	cluster *registry.EurekaCluster
	mu      sync.Mutex
	addrs   map[string]map[string]eurekaAddr // APP -> id -> address
}

type eurekaAddr struct {
	ip   string
	port int
}

func newEureka() *eureka {
	return &eureka{cluster: registry.NewEurekaCluster(1), addrs: map[string]map[string]eurekaAddr{}}
}

func (e *eureka) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/eureka/apps/")
	parts := strings.Split(rest, "/")
	switch {
	case ok && len(parts) == 1 && r.Method == http.MethodPost:
		var body struct {
			Instance struct {
				InstanceID string          `json:"instanceId"`
				IPAddr     string          `json:"ipAddr"`
				Port       json.RawMessage `json:"port"`
			} `json:"instance"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Instance.InstanceID == "" {
			http.Error(w, "bad instance", http.StatusBadRequest)
			return
		}
		var port struct {
			Value json.RawMessage `json:"$"`
		}
		_ = json.Unmarshal(body.Instance.Port, &port)
		p, _ := strconv.Atoi(strings.Trim(string(port.Value), `"`))
		app := strings.ToUpper(parts[0])
		e.mu.Lock()
		if e.addrs[app] == nil {
			e.addrs[app] = map[string]eurekaAddr{}
		}
		e.addrs[app][body.Instance.InstanceID] = eurekaAddr{body.Instance.IPAddr, p}
		e.mu.Unlock()
		e.cluster.Register(0, app, body.Instance.InstanceID)
		log.Printf("eureka: registered %s/%s at %s:%d", app, body.Instance.InstanceID, body.Instance.IPAddr, p)
		w.WriteHeader(http.StatusNoContent)
	case ok && len(parts) == 2 && r.Method == http.MethodDelete:
		app := strings.ToUpper(parts[0])
		e.mu.Lock()
		delete(e.addrs[app], parts[1])
		e.mu.Unlock()
		e.cluster.Cancel(app, parts[1])
		log.Printf("eureka: cancelled %s/%s", app, parts[1])
	case ok && len(parts) == 1 && r.Method == http.MethodGet:
		app := strings.ToUpper(parts[0])
		e.mu.Lock()
		ids := make([]string, 0, len(e.addrs[app]))
		for id := range e.addrs[app] {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		var list []map[string]any
		for _, id := range ids {
			st, over, known := e.cluster.Status(0, app, id)
			if !known {
				continue
			}
			if over == "" {
				over = "UNKNOWN"
			}
			a := e.addrs[app][id]
			list = append(list, map[string]any{"instanceId": id, "app": app, "ipAddr": a.ip, "status": st, "overriddenStatus": over,
				"port": map[string]any{"$": a.port, "@enabled": "true"}})
		}
		e.mu.Unlock()
		if len(list) == 0 {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"application": map[string]any{"name": app, "instance": list}})
	default:
		e.cluster.Peers[0].ServeHTTP(w, r)
	}
}

// nacos is a test/registry Nacos plus the register, deregister and list
// calls of Nacos's open API v1.
type nacos struct{ n *registry.Nacos }

func newNacos(version string) *nacos { return &nacos{registry.NewNacos(version)} }

// key reads an instance's key as Nacos binds @RequestParam (query or
// form body).
func nacosKey(r *http.Request) registry.NacosInstance {
	_ = r.ParseForm()
	port, _ := strconv.Atoi(r.Form.Get("port"))
	group, service := r.Form.Get("groupName"), r.Form.Get("serviceName")
	if g, s, ok := strings.Cut(service, "@@"); ok {
		group, service = g, s
	}
	if group == "" {
		group = "DEFAULT_GROUP"
	}
	cluster := r.Form.Get("clusterName")
	if cluster == "" {
		cluster = "DEFAULT"
	}
	return registry.NacosInstance{Namespace: r.Form.Get("namespaceId"), Group: group, Service: service, Cluster: cluster, IP: r.Form.Get("ip"), Port: port}
}

func (s *nacos) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/nacos/v1/ns/instance" && r.Method == http.MethodPost:
		k := nacosKey(r)
		if k.Service == "" || k.IP == "" || k.Port == 0 {
			http.Error(w, "caused: Param 'serviceName', 'ip' and 'port' are required.;", http.StatusBadRequest)
			return
		}
		s.n.Register(k)
		log.Printf("nacos: registered %s", k.Key())
		fmt.Fprint(w, "ok")
	case r.URL.Path == "/nacos/v1/ns/instance" && r.Method == http.MethodDelete:
		k := nacosKey(r)
		s.n.Deregister(k)
		log.Printf("nacos: deregistered %s", k.Key())
		fmt.Fprint(w, "ok")
	case r.URL.Path == "/nacos/v1/ns/instance/list" && r.Method == http.MethodGet:
		k := nacosKey(r)
		hosts := []map[string]any{}
		for _, i := range s.n.Instances() {
			if i.Service == k.Service && i.Group == k.Group && (i.Namespace == k.Namespace || (i.Namespace == "" && k.Namespace == "public")) && i.Enabled {
				hosts = append(hosts, map[string]any{"ip": i.IP, "port": i.Port, "healthy": true, "enabled": i.Enabled,
					"weight": i.Weight, "clusterName": i.Cluster, "serviceName": i.Group + "@@" + i.Service})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"name": k.Group + "@@" + k.Service, "hosts": hosts})
	default:
		s.n.ServeHTTP(w, r)
	}
}

// consul is a test/registry ConsulAgent plus the agent's service
// registration and the health query consumers make (Consul's HTTP API:
// agent/service.mdx, health.mdx). The stand-in keeps no addresses, so they
// are kept here by service id.
type consul struct {
	agent *registry.ConsulAgent
	mu    sync.Mutex
	svcs  map[string]consulService // id -> registration
}

type consulService struct {
	ID      string `json:"ID"`
	Name    string `json:"Name"`
	Address string `json:"Address"`
	Port    int    `json:"Port"`
}

func newConsul() *consul {
	return &consul{agent: registry.NewConsulAgent(), svcs: map[string]consulService{}}
}

func (c *consul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/agent/service/register" && r.Method == http.MethodPut:
		var s consulService
		if err := json.NewDecoder(r.Body).Decode(&s); err != nil || s.Name == "" {
			http.Error(w, fmt.Sprintf("Request decode failed: %v", err), http.StatusBadRequest)
			return
		}
		if s.ID == "" {
			s.ID = s.Name // the agent's rule: the id defaults to the name
		}
		c.mu.Lock()
		c.svcs[s.ID] = s
		c.mu.Unlock()
		// A maintenance check from before stays (the stand-in keeps it,
		// as an agent does without replace-existing-checks).
		c.agent.Register(s.ID, s.Name)
		log.Printf("consul: registered %s (%s) at %s:%d", s.ID, s.Name, s.Address, s.Port)
	case strings.HasPrefix(r.URL.Path, "/v1/health/service/") && r.Method == http.MethodGet:
		name := strings.TrimPrefix(r.URL.Path, "/v1/health/service/")
		_, passing := r.URL.Query()["passing"]
		c.mu.Lock()
		ids := make([]string, 0, len(c.svcs))
		for id := range c.svcs {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		entries := []map[string]any{}
		for _, id := range ids {
			s := c.svcs[id]
			if s.Name != name || !c.agent.Registered(id) {
				continue
			}
			checks := []map[string]string{{"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing"}}
			if c.agent.InMaintenance(id) {
				checks = append(checks, map[string]string{"CheckID": "_service_maintenance:" + id, "Name": "Service Maintenance Mode",
					"Status": "critical", "ServiceID": id})
				if passing {
					continue
				}
			}
			entries = append(entries, map[string]any{"Node": map[string]string{"Node": "registry-standin", "Address": s.Address},
				"Service": map[string]any{"ID": id, "Service": s.Name, "Address": s.Address, "Port": s.Port}, "Checks": checks})
		}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(entries)
	default:
		c.agent.ServeHTTP(w, r)
	}
}
