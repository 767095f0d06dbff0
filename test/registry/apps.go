package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// The registrations behind Spring Cloud's service-registry endpoint.
const (
	Netflix = "netflix" // Spring Cloud Netflix: Eureka
	Alibaba = "alibaba" // Spring Cloud Alibaba: Nacos
	Consul  = "consul"  // Spring Cloud Consul
)

// Actuator is a stand-in for a Spring Boot app's service-registry
// actuator endpoint (Spring Cloud Commons' ServiceRegistryEndpoint) at
// ContextPath + BasePath + "/" + Endpoint, with the Flavour of registration
// behind it:
//   - netflix takes any InstanceStatus and CANCEL_OVERRIDE; GET answers an
//     object with status and overriddenStatus;
//   - alibaba takes UP and DOWN only (any case) and answers 200 to
//     anything else without doing it; GET answers the bare status, or
//     nothing when Nacos1x and the instance is disabled (1.x lists only
//     enabled instances to the client);
//   - consul takes OUT_OF_SERVICE and UP; anything else is a 500; GET
//     answers the bare status.
//
// Without a registration both verbs answer 404 "no registration found";
// any other path answers Spring's own 404 document.
type Actuator struct {
	*Standin
	Flavour     string
	ContextPath string // such as "/shop"; "" for none
	BasePath    string // "/actuator" when empty
	Endpoint    string // "serviceregistry" when empty; "service-registry" before 2020.0
	Registered  bool
	Nacos1x     bool

	mu                 sync.Mutex
	status, overridden string
}

// NewActuator returns a registered app of flavour, status UP.
func NewActuator(flavour string) *Actuator {
	return &Actuator{Standin: newStandin("spring actuator, " + flavour), Flavour: flavour, Registered: true, status: "UP"}
}

// Status returns the registration's status (and Netflix's override).
func (a *Actuator) Status() (status, overridden string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status, a.overridden
}

// Restart is the app restarted in place: a Netflix registration keeps the
// server's override (the same id), the others start UP.
func (a *Actuator) Restart() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Flavour == Netflix && a.overridden != "" {
		a.status = a.overridden
		return
	}
	if a.Flavour == Alibaba || a.Flavour == Consul {
		// Nacos 2.x's override and Consul's maintenance survive a restart
		// that registers again at the same key.
		return
	}
	a.status = "UP"
}

// Path is the endpoint's path.
func (a *Actuator) Path() string {
	base, ep := a.BasePath, a.Endpoint
	if base == "" {
		base = "/actuator"
	}
	if ep == "" {
		ep = "serviceregistry"
	}
	return a.ContextPath + base + "/" + ep
}

func (a *Actuator) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.serve(w, r, a.answer) }

func (a *Actuator) answer(w http.ResponseWriter, r *http.Request, ignore bool) {
	if r.URL.Path != a.Path() || (r.Method != http.MethodGet && r.Method != http.MethodPost) {
		springError(w, r, http.StatusNotFound, "No static resource "+strings.TrimPrefix(r.URL.Path, "/")+".")
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.Registered {
		text(w, http.StatusNotFound, "no registration found")
		return
	}
	if r.Method == http.MethodGet {
		switch a.Flavour {
		case Netflix:
			jsonAnswer(w, 200, fmt.Sprintf(`{"status":%q,"overriddenStatus":%q}`, a.status, orUnknown(a.overridden)))
		case Alibaba:
			if a.Nacos1x && a.status == "DOWN" {
				w.WriteHeader(http.StatusOK)
				return
			}
			jsonAnswer(w, 200, fmt.Sprintf("%q", a.status))
		default:
			jsonAnswer(w, 200, fmt.Sprintf("%q", a.status))
		}
		return
	}
	var body struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Status == "" {
		springError(w, r, http.StatusBadRequest, "Missing parameters: status")
		return
	}
	s := body.Status
	switch a.Flavour {
	case Netflix:
		switch {
		case s == "CANCEL_OVERRIDE":
			if !ignore {
				a.status, a.overridden = "UNKNOWN", ""
			}
		case eurekaStatuses[s]:
			if !ignore {
				a.status, a.overridden = s, s
			}
		default:
			if !ignore {
				a.status, a.overridden = "UNKNOWN", "UNKNOWN"
			}
		}
	case Alibaba:
		// NacosServiceRegistry.setStatus: UP or DOWN, else a warning.
		if u := strings.ToUpper(s); (u == "UP" || u == "DOWN") && !ignore {
			a.status = u
		}
	case Consul:
		switch s {
		case "OUT_OF_SERVICE", "UP":
			if !ignore {
				a.status = s
			}
		default:
			springError(w, r, http.StatusInternalServerError, "Unknown status: "+s)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// ConsulAgent is a stand-in for a Consul agent's HTTP API (agent
// endpoints): services registered with this agent, maintenance mode as the
// check _service_maintenance:<id>, deregistration, and an ACL token when
// Token is set (403 "Permission denied" without it).
type ConsulAgent struct {
	*Standin
	Token string

	mu       sync.Mutex
	services map[string]string // id -> name
	maint    map[string]string // id -> reason
}

// NewConsulAgent returns an agent with no services.
func NewConsulAgent() *ConsulAgent {
	return &ConsulAgent{Standin: newStandin("consul agent"), services: map[string]string{}, maint: map[string]string{}}
}

// Register registers a service, as the app's client does at start. A
// maintenance check from before stays: it is persisted by the agent.
func (c *ConsulAgent) Register(id, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.services[id] = name
}

// Deregister removes a service and its maintenance mode.
func (c *ConsulAgent) Deregister(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.services, id)
	delete(c.maint, id)
}

// Registered reports whether the agent has the service.
func (c *ConsulAgent) Registered(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.services[id]
	return ok
}

// InMaintenance reports the service's maintenance mode.
func (c *ConsulAgent) InMaintenance(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.maint[id]
	return ok
}

func (c *ConsulAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.serve(w, r, c.answer) }

func (c *ConsulAgent) answer(w http.ResponseWriter, r *http.Request, ignore bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Token != "" && r.Header.Get("X-Consul-Token") != c.Token && strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") != c.Token {
		text(w, http.StatusForbidden, "Permission denied: token with AccessorID '00000000-0000-0000-0000-000000000002' lacks permission 'service:write'")
		return
	}
	p := r.URL.Path
	unknown := func(id string) {
		text(w, http.StatusNotFound, fmt.Sprintf("Unknown service ID %q. Ensure that the service ID is passed, not the service name.", id))
	}
	switch {
	case strings.HasPrefix(p, "/v1/agent/service/maintenance/") && r.Method == http.MethodPut:
		id, _ := url.PathUnescape(strings.TrimPrefix(p, "/v1/agent/service/maintenance/"))
		if _, ok := c.services[id]; !ok {
			unknown(id)
			return
		}
		switch r.URL.Query().Get("enable") {
		case "true":
			if !ignore {
				c.maint[id] = r.URL.Query().Get("reason")
			}
		case "false":
			if !ignore {
				delete(c.maint, id)
			}
		case "":
			text(w, http.StatusBadRequest, "Missing value for enable")
			return
		default:
			text(w, http.StatusBadRequest, fmt.Sprintf("Invalid value for enable: %q", r.URL.Query().Get("enable")))
			return
		}
		w.WriteHeader(http.StatusOK)
	case strings.HasPrefix(p, "/v1/agent/service/deregister/") && r.Method == http.MethodPut:
		id, _ := url.PathUnescape(strings.TrimPrefix(p, "/v1/agent/service/deregister/"))
		if _, ok := c.services[id]; !ok {
			unknown(id)
			return
		}
		if !ignore {
			delete(c.services, id)
			delete(c.maint, id)
		}
		w.WriteHeader(http.StatusOK)
	case strings.HasPrefix(p, "/v1/agent/service/") && r.Method == http.MethodGet:
		id, _ := url.PathUnescape(strings.TrimPrefix(p, "/v1/agent/service/"))
		name, ok := c.services[id]
		if !ok {
			text(w, http.StatusNotFound, fmt.Sprintf("unknown service ID: %s", id))
			return
		}
		jsonAnswer(w, 200, fmt.Sprintf(`{"ID":%q,"Service":%q,"Port":8080,"ContentHash":"standin"}`, id, name))
	case p == "/v1/agent/checks" && r.Method == http.MethodGet:
		checks := map[string]any{}
		for id, reason := range c.maint {
			if reason == "" {
				reason = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
			}
			checks["_service_maintenance:"+id] = map[string]string{"CheckID": "_service_maintenance:" + id, "Name": "Service Maintenance Mode",
				"Status": "critical", "Notes": reason, "ServiceID": id}
		}
		b, _ := json.Marshal(checks)
		jsonAnswer(w, 200, string(b))
	default:
		text(w, http.StatusNotFound, "404 page not found")
	}
}

// DubboQoS is a stand-in for Dubbo's QoS HTTP port, of Version "2.7" or
// "3" (3.x adds offlineApp/offlineInterface/onlineApp/onlineInterface and
// ready, and shows the PUB column per registry).
type DubboQoS struct {
	*Standin
	Version string
	// Registries names the registries of a 3.x provider (default nacos).
	Registries []string

	mu        sync.Mutex
	providers map[string]bool // service -> registered
}

// NewDubboQoS returns QoS of version with the given provider services
// registered.
func NewDubboQoS(version string, services ...string) *DubboQoS {
	d := &DubboQoS{Standin: newStandin("dubbo qos " + version), Version: version, Registries: []string{"nacos"}, providers: map[string]bool{}}
	for _, s := range services {
		d.providers[s] = true
	}
	return d
}

// Registered reports whether service is registered.
func (d *DubboQoS) Registered(service string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.providers[service]
}

func (d *DubboQoS) v3() bool { return !strings.HasPrefix(d.Version, "2.") }

func (d *DubboQoS) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.serve(w, r, d.answer) }

func (d *DubboQoS) answer(w http.ResponseWriter, r *http.Request, ignore bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cmd := strings.TrimPrefix(r.URL.Path, "/")
	set := func(v bool) {
		if len(d.providers) == 0 {
			text(w, 200, "service not found")
			return
		}
		if !ignore {
			for s := range d.providers {
				d.providers[s] = v
			}
		}
		text(w, 200, "OK")
	}
	switch {
	case cmd == "offline" || (d.v3() && (cmd == "offlineApp" || cmd == "offlineInterface")):
		set(false)
	case cmd == "online" || (d.v3() && (cmd == "onlineApp" || cmd == "onlineInterface")):
		set(true)
	case cmd == "ls":
		text(w, 200, d.ls())
	case cmd == "ready" && d.v3():
		for _, reg := range d.providers {
			if reg {
				text(w, 200, "true")
				return
			}
		}
		if len(d.providers) == 0 {
			text(w, 200, "true")
			return
		}
		text(w, http.StatusServiceUnavailable, "false")
	default:
		text(w, http.StatusNotFound, "")
	}
}

// ls renders QoS's table (TTable) as each version does.
func (d *DubboQoS) ls() string {
	var names []string
	for s := range d.providers {
		names = append(names, s)
	}
	sort.Strings(names)
	rows := [][2]string{{"Provider Service Name", "PUB"}}
	if d.v3() {
		rows = append(rows, [2]string{"DubboInternal - app/org.apache.dubbo.metadata.MetadataService:1.0.0", ""})
	}
	for _, s := range names {
		pub := "N"
		if d.providers[s] {
			pub = "Y"
		}
		if d.v3() {
			var parts []string
			for _, reg := range d.Registries {
				parts = append(parts, fmt.Sprintf("%s-A(%s)/%s-I(%s)", reg, pub, reg, pub))
			}
			pub = strings.Join(parts, "/")
		}
		rows = append(rows, [2]string{s, pub})
	}
	w0, w1 := 0, 3
	for _, r := range rows {
		w0, w1 = max(w0, len(r[0])), max(w1, len(r[1]))
	}
	sep := "+" + strings.Repeat("-", w0) + "+" + strings.Repeat("-", w1) + "+\n"
	var b strings.Builder
	b.WriteString("As Provider side:\n" + sep)
	for _, r := range rows {
		fmt.Fprintf(&b, "|%s|%s|\n%s", center(r[0], w0), center(r[1], w1), sep)
	}
	b.WriteString("As Consumer side:\n+---------------------+---+\n|Consumer Service Name|NUM|\n+---------------------+---+\n")
	return b.String()
}

func center(s string, w int) string {
	left := (w - len(s)) / 2
	return strings.Repeat(" ", left) + s + strings.Repeat(" ", w-len(s)-left)
}

// EDAS is a stand-in for the EDAS/MSE agent's local port (54199): GET
// /offline and /online. Its answers' bodies are not documented publicly;
// the stand-in answers "offline success"/"online success".
type EDAS struct {
	*Standin
	mu      sync.Mutex
	offline bool
}

// NewEDAS returns an online agent.
func NewEDAS() *EDAS { return &EDAS{Standin: newStandin("edas agent")} }

// Offline reports whether the agent took the instance offline.
func (e *EDAS) Offline() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.offline
}

func (e *EDAS) ServeHTTP(w http.ResponseWriter, r *http.Request) { e.serve(w, r, e.answer) }

func (e *EDAS) answer(w http.ResponseWriter, r *http.Request, ignore bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch r.URL.Path {
	case "/offline":
		if !ignore {
			e.offline = true
		}
		text(w, 200, "offline success")
	case "/online":
		if !ignore {
			e.offline = false
		}
		text(w, 200, "online success")
	default:
		text(w, http.StatusNotFound, "")
	}
}
