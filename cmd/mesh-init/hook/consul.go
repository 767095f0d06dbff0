package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
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

// registered reports whether the agent has the service (GET
// /v1/agent/service/{id}: 200, or 404 "unknown service ID").
func (r *consul) registered(s *step, id string) (bool, error) {
	res := s.do(call{method: http.MethodGet, bases: []string{r.base}, path: "/v1/agent/service/" + url.PathEscape(id), header: r.header, quiet: true,
		judge: func(a answer) verdict {
			if a.status == http.StatusNotFound {
				return accepted
			}
			return judgeStatus(a.status)
		}})
	if res.v != accepted {
		return false, errors.New(s.last)
	}
	return res.a.status == http.StatusOK, nil
}

// inMaintenance reads the agent's checks: maintenance mode is the check
// "_service_maintenance:<id>".
func (r *consul) inMaintenance(s *step) (bool, error) {
	res := s.do(call{method: http.MethodGet, bases: []string{r.base}, path: "/v1/agent/checks", header: r.header, quiet: true})
	if res.v != accepted {
		return false, errors.New(s.last)
	}
	var checks map[string]json.RawMessage
	if err := decodeJSON(res.a, &checks); err != nil {
		return false, fmt.Errorf("the checks read-back is %v", err)
	}
	_, ok := checks["_service_maintenance:"+r.id]
	return ok, nil
}

// find picks the candidate id the agent has.
func (r *consul) find(s *step) (bool, string) {
	for _, id := range r.ids {
		ok, err := r.registered(s, id)
		if err != nil {
			return false, err.Error()
		}
		if ok {
			r.id = id
			return true, ""
		}
	}
	return false, fmt.Sprintf("the agent has no service %s (404); set --consul-service-id (annotation sidecar-injector.io/consul-service-id) to the registered id, and make sure this is the agent the app registered with", strings.Join(r.ids, " or "))
}

func (r *consul) maintenance(s *step, enable bool) bool {
	q := url.Values{"enable": {strconv.FormatBool(enable)}}
	if enable {
		q.Set("reason", "mesh-init prestop: taken offline before the pod stops")
	}
	res := s.do(call{method: http.MethodPut, bases: []string{r.base}, path: "/v1/agent/service/maintenance/" + url.PathEscape(r.id) + "?" + q.Encode(), header: r.header, keep: s.budget / 5})
	return res.v == accepted
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
		res := s.do(call{method: http.MethodPut, bases: []string{r.base}, path: "/v1/agent/service/deregister/" + url.PathEscape(r.id), header: r.header, keep: s.budget / 5})
		if res.v != accepted {
			return false, s.last
		}
		ok, err := r.until(s, false, func() (bool, error) { return r.registered(s, r.id) })
		if !ok {
			return false, "the agent accepted the deregistration but still has the service" + errSuffix(err)
		}
		return true, "the agent no longer has the service (404)"
	}
	if !r.maintenance(s, true) {
		return false, s.last
	}
	ok, err := r.until(s, true, func() (bool, error) { return r.inMaintenance(s) })
	if !ok {
		return false, fmt.Sprintf("the agent accepted maintenance mode but still lists no _service_maintenance:%s check%s", r.id, errSuffix(err))
	}
	return true, "the agent lists the check _service_maintenance:" + r.id
}

// online turns maintenance off once the restarted app has registered again
// (maintenance is persistent: it can survive the service's
// re-registration). A deregistered service comes back by itself when the
// app registers at start.
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
	if !r.maintenance(s, false) {
		return false, s.last
	}
	ok, err := r.until(s, false, func() (bool, error) { return r.inMaintenance(s) })
	if !ok {
		return false, "the agent accepted maintenance off but still lists the check" + errSuffix(err)
	}
	return true, "the agent no longer lists _service_maintenance:" + r.id
}

// errSuffix adds the last read error, if any, to a message.
func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (last read: " + err.Error() + ")"
}
