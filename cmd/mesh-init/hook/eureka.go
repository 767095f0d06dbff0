package hook

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// eureka sets the instance's status override to OUT_OF_SERVICE on the
// first Eureka server of the list that knows it, then reads it back there.
// A peer that answers 404 may simply not have the registration replicated
// yet, so it moves on to the next server; only a 404 from every server
// means the instance is unknown.
type eureka struct {
	servers   []string
	app       string
	ids       []string
	notesList []string
	// id and server are the ones that answered.
	id, server string
}

func (e environment) eureka(c meshinit.Eureka) (*eureka, error) {
	r := &eureka{}
	servers, from := meshinit.SplitList(c.ServerURL), "--eureka-server-url"
	if len(servers) == 0 {
		v, n := e.prop("eureka.client.service-url.defaultZone")
		servers, from = meshinit.SplitList(v), n
	}
	if len(servers) == 0 {
		// Spring Cloud Netflix's own default (EurekaClientConfigBean).
		servers, from = []string{"http://localhost:8761/eureka/"}, "Spring Cloud Netflix's default; set --eureka-server-url or EUREKA_CLIENT_SERVICEURL_DEFAULTZONE"
	}
	for _, s := range servers {
		if err := meshinit.CheckHTTPURL(s); err != nil {
			return nil, fmt.Errorf("eureka server URL from %s: %w", from, err)
		}
		r.servers = append(r.servers, strings.TrimRight(s, "/"))
	}
	appName, appFrom := c.AppName, "--eureka-app-name"
	if appName == "" {
		// eureka.instance.appname wins over spring.application.name.
		appName, appFrom = e.prop("eureka.instance.appname", "spring.application.name")
	}
	if appName == "" {
		return nil, errors.New("no Eureka app name: set --eureka-app-name (annotation sidecar-injector.io/eureka-app-name) or SPRING_APPLICATION_NAME in the app container")
	}
	// Eureka stores application names upper-cased.
	r.app = strings.ToUpper(appName)
	var idFrom string
	r.ids, idFrom = e.eurekaInstanceIDs(c.InstanceID)
	if len(r.ids) == 0 {
		return nil, errors.New("no Eureka instance id: set --eureka-instance-id or EUREKA_INSTANCE_INSTANCEID in the app container")
	}
	names := make([]string, len(r.servers))
	for i, s := range r.servers {
		names[i] = meshinit.RedactURL(s)
	}
	r.notesList = []string{fmt.Sprintf("servers %s (%s), app %s (%s), instance id %s (%s)",
		strings.Join(names, ", "), from, r.app, appFrom, strings.Join(r.ids, " or "), idFrom)}
	return r, nil
}

func (r *eureka) notes() []string { return r.notesList }

func (r *eureka) key() string {
	id := r.id
	if id == "" {
		id = strings.Join(r.ids, " or ")
	}
	return fmt.Sprintf("instance %s of app %s", id, r.app)
}

func (r *eureka) path(id string) string {
	return "/apps/" + url.PathEscape(r.app) + "/" + url.PathEscape(id)
}

// notHere404 reads Eureka's 404 (this server does not know the instance)
// as "ask the next server".
func notHere404(a answer) verdict {
	if a.status == http.StatusNotFound {
		return notHere
	}
	return judgeStatus(a.status)
}

func (r *eureka) offline(s *step) (bool, string) {
	for _, id := range r.ids {
		res := s.do(call{method: http.MethodPut, bases: r.servers, path: r.path(id) + "/status?value=OUT_OF_SERVICE", header: jsonAccept, judge: notHere404, keep: s.budget / 5})
		switch res.v {
		case notHere:
			continue
		case accepted:
			r.id, r.server = id, res.base
			return r.confirm(s, func(st eurekaStatus) bool {
				return st.overridden() == "OUT_OF_SERVICE" && st.Status == "OUT_OF_SERVICE"
			}, "OUT_OF_SERVICE")
		default:
			return false, s.last
		}
	}
	return false, fmt.Sprintf("every server answered 404 for %s: Eureka knows no such instance; set --eureka-instance-id (annotation sidecar-injector.io/eureka-instance-id) or EUREKA_INSTANCE_INSTANCEID to the registered id", strings.Join(r.ids, " and "))
}

// eurekaStatus is the part of GET /apps/{app}/{id} the hook reads. Eureka's
// JSON codec writes overriddenStatus; its XML and legacy codecs write
// overriddenstatus.
type eurekaStatus struct {
	Status            string `json:"status"`
	OverriddenStatus  string `json:"overriddenStatus"`
	OverriddenStatus2 string `json:"overriddenstatus"`
}

func (st eurekaStatus) overridden() string {
	if st.OverriddenStatus != "" {
		return st.OverriddenStatus
	}
	return st.OverriddenStatus2
}

// get reads the instance from server; found is false on 404.
func (r *eureka) get(s *step, server, id string) (st eurekaStatus, found bool, err error) {
	res := s.do(call{method: http.MethodGet, bases: []string{server}, path: r.path(id), header: jsonAccept, quiet: true,
		judge: func(a answer) verdict {
			if a.status == http.StatusNotFound {
				return accepted
			}
			return judgeStatus(a.status)
		}})
	if res.v != accepted {
		return st, false, errors.New(s.last)
	}
	if res.a.status == http.StatusNotFound {
		return st, false, nil
	}
	var body struct {
		Instance eurekaStatus `json:"instance"`
	}
	if err := decodeJSON(res.a, &body); err != nil {
		return st, false, fmt.Errorf("the instance read-back is %v", err)
	}
	return body.Instance, true, nil
}

// confirm reads the instance back from the server that took the write
// (its GET reads the registry directly, not the response cache).
func (r *eureka) confirm(s *step, done func(eurekaStatus) bool, want string) (bool, string) {
	said := ""
	for {
		st, found, err := r.get(s, r.server, r.id)
		switch {
		case err != nil:
			said = "the status change was accepted but the read-back failed: " + err.Error()
		case !found:
			said = "the status change was accepted but the read-back finds no instance (404)"
		case done(st):
			return true, fmt.Sprintf("Eureka at %s shows status %s, override %s", meshinit.RedactURL(r.server), st.Status, orNone(st.overridden()))
		default:
			said = fmt.Sprintf("Eureka accepted the change but still shows status %s, override %s (want %s)", st.Status, orNone(st.overridden()), want)
		}
		if s.left() <= backoffStart || !s.t.clock.Sleep(s.ctx, backoffStart) {
			return false, said
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// online removes the override once the restarted app has registered again:
// DELETE .../status?value=UP makes it UP at once (without value, Eureka
// sets UNKNOWN until the client's next heartbeat re-registers it).
func (r *eureka) online(s *step) (bool, string) {
	said := "no server knows the instance yet"
	for {
		for _, id := range r.ids {
			for _, server := range r.servers {
				st, found, err := r.get(s, server, id)
				if err != nil {
					said = err.Error()
					continue
				}
				if !found {
					continue
				}
				r.id, r.server = id, server
				if st.overridden() != "OUT_OF_SERVICE" && st.Status != "OUT_OF_SERVICE" {
					return true, fmt.Sprintf("already %s with override %s: nothing was left to undo", st.Status, orNone(st.overridden()))
				}
				res := s.do(call{method: http.MethodDelete, bases: []string{server}, path: r.path(id) + "/status?value=UP", header: jsonAccept, keep: s.budget / 10})
				if res.v != accepted {
					return false, s.last
				}
				return r.confirm(s, func(st eurekaStatus) bool {
					return st.Status == "UP" && st.overridden() != "OUT_OF_SERVICE"
				}, "UP")
			}
		}
		if s.left() <= time.Second || !s.t.clock.Sleep(s.ctx, time.Second) {
			return false, "the app did not register again in time: " + said
		}
	}
}

// eurekaInstanceIDs lists the instance ids to try, most likely first.
// Spring Cloud Netflix's default is
// ${spring.cloud.client.hostname}:${spring.application.name} followed by
// :${spring.application.instance_id:${server.port}} when either is set
// (IdUtils.getDefaultInstanceId). server.port may be set in a config file
// the hook cannot read, so without SERVER_PORT both "host:app" and
// "host:app:8080" are tried.
func (e environment) eurekaInstanceIDs(explicit string) ([]string, string) {
	if explicit != "" {
		return []string{explicit}, "--eureka-instance-id"
	}
	// Spring Boot binds eureka.instance.instance-id from both forms.
	if v, n := e.prop("eureka.instance.instance-id"); v != "" {
		return []string{v}, n
	}
	if v, n := e.prop("vcap.application.instance_id"); v != "" {
		return []string{v}, n
	}
	var hosts []string
	addHost := func(h string) {
		if h = strings.TrimSpace(h); h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	h, _ := e.prop("spring.cloud.client.hostname")
	addHost(h)
	addHost(e.hostsName())
	addHost(e.getenv("HOSTNAME"))
	if e.hostname != nil {
		if h, err := e.hostname(); err == nil {
			addHost(h)
		}
	}
	appName, _ := e.prop("spring.application.name")
	index, indexFrom := e.prop("spring.application.instance_id")
	if index == "" {
		var ignored []string
		if p, _ := e.propPort(&ignored, "server.port"); p != 0 {
			index, indexFrom = strconv.Itoa(p), "SERVER_PORT"
		}
	}
	indexes := []string{index}
	from := "hostname:SPRING_APPLICATION_NAME:" + indexFrom
	if index == "" {
		indexes = []string{"", "8080"}
		from = "hostname:SPRING_APPLICATION_NAME[:8080]"
	}
	join := func(a, b string) string {
		if a != "" && b != "" {
			return a + ":" + b
		}
		return a + b
	}
	var ids []string
	for _, h := range hosts {
		for _, i := range indexes {
			if id := join(join(h, appName), i); id != "" && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	return ids, from
}
