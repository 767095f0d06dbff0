package hook

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// consul takes the service out of the local Consul agent it is registered
// with (agent services are local to their agent): maintenance mode by
// default, or deregistration. Spring Cloud Consul's default discovery
// client does not filter by health (query-passing=false), so for Spring
// consumers only deregistration stops traffic; DNS and ?passing queries
// honour maintenance.
type consul struct {
	base      string
	ids       []string
	id        string
	svc       agentService
	mode      string
	header    http.Header
	notesList []string
}

func (e environment) consul(c meshinit.Consul) (*consul, error) {
	r := &consul{mode: c.Mode, header: http.Header{"Accept": {"application/json"}}}
	if r.mode == "" {
		r.mode = meshinit.ConsulMaintenance
	}
	ssl := strings.EqualFold(strings.TrimSpace(e.getenv("CONSUL_HTTP_SSL")), "true")
	addr, from := c.Address, "--consul-address"
	if addr == "" {
		addr, from = e.lookup("CONSUL_HTTP_ADDR")
	}
	if addr == "" {
		if host, hn := e.prop("spring.cloud.consul.host"); host != "" {
			port, _ := e.prop("spring.cloud.consul.port")
			if port == "" {
				port = meshinit.ConsulDefaultPort
			}
			scheme, _ := e.prop("spring.cloud.consul.scheme")
			addr, from = host+":"+port, hn
			if scheme != "" {
				addr = scheme + "://" + addr
			}
		}
	}
	if addr == "" {
		// Spring Cloud Consul's and Consul's own default.
		addr, from = "127.0.0.1:8500", "default; set --consul-address or CONSUL_HTTP_ADDR (often status.hostIP:8500)"
	}
	base, err := meshinit.ConsulBaseURL(addr, ssl)
	if err != nil {
		return nil, fmt.Errorf("consul address from %s: %w", from, err)
	}
	r.base = base
	token, tokenFrom := e.named(c.TokenEnv, "spring.cloud.consul.discovery.acl-token")
	if c.TokenEnv == "" && token == "" {
		token, tokenFrom = e.lookup("CONSUL_HTTP_TOKEN")
		if token == "" {
			if f, fn := e.lookup("CONSUL_HTTP_TOKEN_FILE"); f != "" && e.readFile != nil {
				if b, err := e.readFile(f); err == nil {
					token, tokenFrom = strings.TrimSpace(string(b)), fn
				}
			}
		}
		if token == "" {
			token, tokenFrom = e.lookup("CONSUL_TOKEN")
		}
		if token == "" {
			token, tokenFrom = e.prop("spring.cloud.consul.token")
		}
	}
	tokenNote := "no ACL token"
	if token != "" {
		r.header.Set("X-Consul-Token", token)
		tokenNote = "ACL token from " + tokenFrom
	}
	idFrom := "--consul-service-id"
	if c.ServiceID != "" {
		r.ids = []string{c.ServiceID}
	} else if v, n := e.prop("spring.cloud.consul.discovery.instance-id"); v != "" {
		r.ids, idFrom = []string{normalizeForDNS(v)}, n
	} else {
		r.ids, idFrom = e.consulServiceIDs()
	}
	if len(r.ids) == 0 {
		return nil, errors.New("no Consul service id: set --consul-service-id (annotation sidecar-injector.io/consul-service-id) or SPRING_APPLICATION_NAME in the app container")
	}
	r.notesList = []string{fmt.Sprintf("agent %s (%s), service id %s (%s), mode %s, %s",
		meshinit.RedactURL(r.base), from, strings.Join(r.ids, " or "), idFrom, r.mode, tokenNote)}
	return r, nil
}

// consulServiceIDs is Spring Cloud Consul's default service id
// (ConsulAutoRegistration.getInstanceId): normalizeForDns of
// spring.application.name + ":" + (spring.application.instance_id, else
// server.port). Without either, "app" and then "app-8080" are tried, since
// server.port may be in a file the hook cannot read.
func (e environment) consulServiceIDs() ([]string, string) {
	if v, n := e.prop("vcap.application.instance_id"); v != "" {
		return []string{normalizeForDNS(v)}, n
	}
	app, _ := e.prop("spring.application.name")
	if app == "" {
		return nil, ""
	}
	index, _ := e.prop("spring.application.instance_id")
	if index == "" {
		var ignored []string
		if p, _ := e.propPort(&ignored, "server.port"); p != 0 {
			index = strconv.Itoa(p)
		}
	}
	if index != "" {
		return []string{normalizeForDNS(app + ":" + index)}, "SPRING_APPLICATION_NAME:SPRING_APPLICATION_INSTANCE_ID or SERVER_PORT, as Spring Cloud Consul"
	}
	return []string{normalizeForDNS(app), normalizeForDNS(app + ":8080")}, "SPRING_APPLICATION_NAME[:8080], as Spring Cloud Consul"
}

// normalizeForDNS is Spring Cloud Consul's normalizeForDns: every run of
// characters that are not letters or digits becomes one '-'.
func normalizeForDNS(s string) string {
	var b strings.Builder
	dash := false
	for _, c := range s {
		if unicode.IsLetter(c) || unicode.IsDigit(c) {
			b.WriteRune(c)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimRight(b.String(), "-")
}

func (r *consul) notes() []string { return r.notesList }

func (r *consul) key() string {
	id := r.id
	if id == "" {
		id = strings.Join(r.ids, " or ")
	}
	return fmt.Sprintf("service id %s on agent %s", id, meshinit.RedactURL(r.base))
}

// agentService is what GET /v1/agent/service/{id} says of the service.
type agentService struct {
	Address string `json:"Address"`
	Port    int    `json:"Port"`
}

// registered reports whether the agent has the service (GET
// /v1/agent/service/{id}: 200, or 404 "unknown service ID").
func (r *consul) registered(s *step, id string) (bool, agentService, error) {
	var svc agentService
	res := s.do(call{method: http.MethodGet, bases: []string{r.base}, path: "/v1/agent/service/" + url.PathEscape(id), header: r.header, quiet: true,
		judge: func(a answer) verdict {
			if a.status == http.StatusNotFound {
				return accepted
			}
			return judgeStatus(a.status)
		}})
	if res.v != accepted {
		return false, svc, errors.New(s.last)
	}
	if res.a.status != http.StatusOK {
		return false, svc, nil
	}
	_ = decodeJSON(res.a, &svc)
	return true, svc, nil
}

// inMaintenance reads the health of this one service (GET
// /v1/agent/health/service/id/{id}, Consul 1.2.3+): maintenance mode is
// its check "_service_maintenance:<id>", and the aggregated status says
// "maintenance". It answers 200, 429 or 503 by that status, with the same
// JSON. Asking for the one service keeps the answer small however many
// services the agent has (its /v1/agent/checks lists them all).
func (r *consul) inMaintenance(s *step) (bool, error) {
	res := s.do(call{method: http.MethodGet, bases: []string{r.base}, path: "/v1/agent/health/service/id/" + url.PathEscape(r.id), header: r.header, quiet: true,
		judge: func(a answer) verdict {
			switch a.status {
			case http.StatusOK, http.StatusTooManyRequests, http.StatusServiceUnavailable:
				return accepted // the status is the service's health
			}
			return judgeStatus(a.status)
		}})
	if res.v != accepted {
		return false, errors.New(s.last)
	}
	var health struct {
		AggregatedStatus string `json:"AggregatedStatus"`
		Checks           []struct {
			CheckID string `json:"CheckID"`
		} `json:"Checks"`
	}
	if err := decodeJSON(res.a, &health); err != nil {
		return false, fmt.Errorf("the service's health read-back is %v", err)
	}
	if health.AggregatedStatus == "maintenance" {
		return true, nil
	}
	for _, c := range health.Checks {
		if c.CheckID == "_service_maintenance:"+r.id {
			return true, nil
		}
	}
	return false, nil
}

// find picks the candidate id the agent has.
func (r *consul) find(s *step) (bool, string) {
	for _, id := range r.ids {
		ok, svc, err := r.registered(s, id)
		if err != nil {
			return false, err.Error()
		}
		if ok {
			r.id, r.svc = id, svc
			return true, ""
		}
	}
	return false, fmt.Sprintf("the agent has no service %s (404); set --consul-service-id (annotation sidecar-injector.io/consul-service-id) to the registered id, and make sure this is the agent the app registered with", strings.Join(r.ids, " or "))
}

// maintenance turns maintenance mode on or off. It reports whether the
// read-back should decide, and the line of a lost answer.
func (r *consul) maintenance(s *step, enable bool) (bool, string) {
	q := url.Values{"enable": {strconv.FormatBool(enable)}}
	if enable {
		q.Set("reason", "mesh-init prestop: taken offline before the pod stops")
	}
	res, readBack := s.write(call{method: http.MethodPut, bases: []string{r.base}, path: "/v1/agent/service/maintenance/" + url.PathEscape(r.id) + "?" + q.Encode(), header: r.header, keep: s.budget / 5})
	if !readBack {
		return false, ""
	}
	return true, s.lostAnswer(res)
}

// until reads with read until it reports want, or the budget ends.
func (r *consul) until(s *step, want bool, read func() (bool, error)) (bool, error) {
	for {
		got, err := read()
		if err == nil && got == want {
			return true, nil
		}
		if s.left() <= backoffStart || !s.t.clock.Sleep(s.ctx, backoffStart) {
			return false, err
		}
	}
}

func (r *consul) offline(s *step) (bool, string) {
	if ok, said := r.find(s); !ok {
		return false, said
	}
	if r.mode == meshinit.ConsulDeregister {
		res, readBack := s.write(call{method: http.MethodPut, bases: []string{r.base}, path: "/v1/agent/service/deregister/" + url.PathEscape(r.id), header: r.header, keep: s.budget / 5})
		if !readBack {
			return false, s.last
		}
		writeLine := s.lostAnswer(res)
		ok, err := r.until(s, false, func() (bool, error) { ok, _, err := r.registered(s, r.id); return ok, err })
		if !ok {
			return false, withWrite(writeLine, "the agent still has the service"+errSuffix(err))
		}
		return true, "the agent no longer has the service (404)"
	}
	readBack, writeLine := r.maintenance(s, true)
	if !readBack {
		return false, s.last
	}
	ok, err := r.until(s, true, func() (bool, error) { return r.inMaintenance(s) })
	if !ok {
		return false, withWrite(writeLine, fmt.Sprintf("the agent lists no _service_maintenance:%s check%s", r.id, errSuffix(err)))
	}
	return true, "the agent lists the check _service_maintenance:" + r.id
}

// online turns maintenance off once the restarted app is back
// (maintenance is persistent: the agent keeps the check when a service
// registers again without replace-existing-checks, as Spring Cloud Consul
// registers). A deregistered service comes back by itself when the app
// registers at start.
//
// The agent shows nothing that tells a re-registration from the dead
// process's registration: the same definition keeps its content hash, and
// the service's checks take their status back from the agent's snapshot
// (agent.go addServiceInternal). What tells the restarted app is up is
// the app itself: its registered port accepts connections again in this
// pod (the dead process is not listening; Spring Cloud Consul registers
// when its web server has started). Since the registration is the same
// either way, maintenance is lifted then.
func (r *consul) online(s *step) (bool, string) {
	if r.mode == meshinit.ConsulDeregister {
		return noUndo("the restarted app registers its service with the agent again")
	}
	for {
		if ok, said := r.find(s); ok {
			break
		} else if s.left() <= time.Second || !s.t.clock.Sleep(s.ctx, time.Second) {
			return false, "the app did not register again in time: " + said
		}
	}
	on, err := r.inMaintenance(s)
	if err != nil {
		return false, err.Error()
	}
	if !on {
		return true, "not in maintenance: nothing was left to undo"
	}
	addrs := r.appAddrs(s.t.env)
	if len(addrs) > 0 {
		for !s.t.env.listening(addrs) {
			if s.left() <= time.Second || !s.t.clock.Sleep(s.ctx, time.Second) {
				return false, fmt.Sprintf("the restarted app does not answer on %s yet, so the registration may still be the dead process's; maintenance is kept", strings.Join(addrs, " or "))
			}
		}
		s.t.logf("%s: the restarted app listens on %s again", s.what, strings.Join(addrs, " or "))
	}
	readBack, writeLine := r.maintenance(s, false)
	if !readBack {
		return false, s.last
	}
	ok, err := r.until(s, false, func() (bool, error) { return r.inMaintenance(s) })
	if !ok {
		return false, withWrite(writeLine, "the agent still lists the check"+errSuffix(err))
	}
	return true, "the agent no longer lists _service_maintenance:" + r.id
}

// appAddrs are where the registered service is served from in this pod:
// its registered address and port, and the same port on loopback and the
// pod's IPs. None when the registration names no port.
func (r *consul) appAddrs(e environment) []string {
	if r.svc.Port <= 0 {
		return nil
	}
	port := strconv.Itoa(r.svc.Port)
	var addrs []string
	add := func(h string) {
		if a := net.JoinHostPort(h, port); h != "" && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	add(r.svc.Address)
	for _, ip := range e.podIPs() {
		add(ip)
	}
	add("127.0.0.1")
	return addrs
}

// errSuffix adds the last read error, if any, to a message.
func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (last read: " + err.Error() + ")"
}
