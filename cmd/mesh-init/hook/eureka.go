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
// as "ask the next one".
func notHere404(a answer) verdict {
	if a.status == http.StatusNotFound {
		return notHere
	}
	return judgeStatus(a.status)
}

// offline sets the override on the first server that knows the instance.
// Every server is asked for every candidate id (a 404 moves on to the next
// id at once); a server that fails is left for a later round, after a
// pause, so one peer that is down costs one try per round, not the
// candidates the other peers could have answered. Only a 404 for every id
// from every server that answered means the id is unknown.
func (r *eureka) offline(s *step) (bool, string) {
	pending := append([]string(nil), r.servers...)
	unknown := map[string]bool{} // server+" "+id answered 404
	failures := map[string]string{}
	backoff := backoffStart
	for round := 1; ; round++ {
		var retry []string
		for i, server := range pending {
			for _, id := range r.ids {
				if unknown[server+" "+id] {
					continue
				}
				c := call{method: http.MethodPut, bases: []string{server}, path: r.path(id) + "/status?value=OUT_OF_SERVICE", header: jsonAccept,
					judge: notHere404, attempts: 1, keep: s.budget / 5}
				// Leave the servers after this one a share of the time.
				c.perTry = s.perTry(c, len(pending)-1-i)
				res, readBack := s.write(c)
				switch {
				case res.v == notHere:
					unknown[server+" "+id] = true
					continue
				case res.v == rejected:
					return false, s.last
				case readBack:
					writeLine := s.lostAnswer(res)
					if writeLine != "" {
						// The server got the request; its registry says
						// whether it knows the id and took the change.
						if _, found, err := r.get(s, server, id); err == nil && !found {
							unknown[server+" "+id] = true
							continue
						}
					}
					r.id, r.server = id, server
					ok, said := r.confirm(s, func(st eurekaStatus) bool {
						return st.overridden() == "OUT_OF_SERVICE" && st.Status == "OUT_OF_SERVICE"
					}, "OUT_OF_SERVICE")
					return ok, withWrite(writeLine, said)
				}
				// Transient: this server is asked again next round.
				failures[server] = s.last
				retry = append(retry, server)
				break
			}
		}
		if len(retry) == 0 {
			break
		}
		if round >= 3 || s.left()-s.budget/5 <= backoff || !s.t.clock.Sleep(s.ctx, backoff) {
			var failed []string
			for _, srv := range retry {
				failed = append(failed, failures[srv])
			}
			return false, fmt.Sprintf("no server took the change: %s", strings.Join(failed, "; "))
		}
		backoff *= 2
		pending = retry
	}
	return false, fmt.Sprintf("every server answered 404 for %s: Eureka knows no such instance; set --eureka-instance-id (annotation sidecar-injector.io/eureka-instance-id) or EUREKA_INSTANCE_INSTANCEID to the registered id", strings.Join(r.ids, " and "))
}

// eurekaStatus is the part of GET /apps/{app}/{id} the hook reads. Eureka's
// JSON codec writes overriddenStatus; its XML and legacy codecs write
// overriddenstatus. The timestamps tell one registration from the next:
// lastDirtyTimestamp is set by the client (the app's own clock, which is
// this container's) whenever its instance info changes, a new process's
// first one included; leaseInfo.registrationTimestamp is set by the server
// at each registration. The codec writes the instance's timestamps as
// strings and the lease's as numbers; both are read either way.
type eurekaStatus struct {
	Status             string     `json:"status"`
	OverriddenStatus   string     `json:"overriddenStatus"`
	OverriddenStatus2  string     `json:"overriddenstatus"`
	LastDirtyTimestamp flexMillis `json:"lastDirtyTimestamp"`
	LeaseInfo          struct {
		RegistrationTimestamp flexMillis `json:"registrationTimestamp"`
	} `json:"leaseInfo"`
	// Port is the registered port ({"$":8080,"@enabled":"true"}).
	Port struct {
		Value int `json:"$"`
	} `json:"port"`
	// date is the server's clock when it answered.
	date time.Time
}

func (st eurekaStatus) overridden() string {
	if st.OverriddenStatus != "" {
		return st.OverriddenStatus
	}
	return st.OverriddenStatus2
}

// flexMillis is a time in Unix milliseconds, as a JSON number or string.
type flexMillis int64

func (m *flexMillis) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseInt(strings.Trim(string(b), `"`), 10, 64)
	if err != nil {
		return nil // not a time: as if absent
	}
	*m = flexMillis(v)
	return nil
}

func (m flexMillis) time() time.Time { return time.UnixMilli(int64(m)) }

// registeredSince reports whether the registration Eureka shows was made
// at or after since (the poststart's start, on this container's clock),
// and how it knows. The client's lastDirtyTimestamp is on this
// container's clock; a server's registrationTimestamp is compared through
// that server's Date header, to the second.
func (st eurekaStatus) registeredSince(since, now time.Time) (bool, string) {
	if st.LastDirtyTimestamp > 0 {
		return !st.LastDirtyTimestamp.time().Before(since), "lastDirtyTimestamp " + st.LastDirtyTimestamp.time().UTC().Format(time.RFC3339Nano)
	}
	if st.LeaseInfo.RegistrationTimestamp > 0 && !st.date.IsZero() {
		// The server's clock at since, less a second for the Date
		// header's resolution.
		serverSince := st.date.Add(-now.Sub(since)).Add(-time.Second)
		return !st.LeaseInfo.RegistrationTimestamp.time().Before(serverSince), "registrationTimestamp on the server's clock"
	}
	return false, ""
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
	body.Instance.date = res.a.date
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
			said = "the read-back failed: " + err.Error()
		case !found:
			said = "the read-back finds no instance (404)"
		case done(st):
			return true, fmt.Sprintf("Eureka at %s shows status %s, override %s", meshinit.RedactURL(r.server), st.Status, orNone(st.overridden()))
		default:
			said = fmt.Sprintf("Eureka still shows status %s, override %s (want %s)", st.Status, orNone(st.overridden()), want)
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

// online removes the override once the restarted app has registered
// again, on every server.
//
//   - It waits for the new registration: one made since the hook started
//     (lastDirtyTimestamp, see registeredSince), or one that appears after
//     a look found none. Until then the instance Eureka lists is the dead
//     process's, and lifting its override would send traffic to it.
//   - Every server keeps its own override map, and a peer that learns the
//     registration later takes the override from its own map; so each
//     server that shows the new registration with the override gets
//     DELETE .../status?value=UP (idempotent; UP at once, where a DELETE
//     without value means UNKNOWN until the next heartbeat), and each is
//     read back. Servers that cannot be reached are named in the result.
func (r *eureka) online(s *step) (bool, string) {
	since := s.t.clock.Now()
	absent := map[string]bool{} // server+" "+id found absent since the start
	deleted := map[string]bool{}
	said := "no server knows the instance yet"
	settle := 0
	for {
		var fresh, old, unreachable, lifted, missing []string
		overridden := false
		for _, server := range r.servers {
			name := meshinit.RedactURL(server)
			seen := false
			for _, id := range r.ids {
				st, found, err := r.get(s, server, id)
				if err != nil {
					unreachable = append(unreachable, name+" ("+err.Error()+")")
					seen = true
					break
				}
				if !found {
					absent[server+" "+id] = true
					continue
				}
				seen = true
				isNew, how := st.registeredSince(since, s.t.clock.Now())
				if how == "" {
					// A server that shows no registration time: the
					// restarted app answering on its port in this pod is
					// the sign (the dead process listens on nothing).
					addrs := r.appAddrs(s.t.env, st.Port.Value)
					isNew, how = s.t.env.listening(addrs), "no registration time shown; the app on "+strings.Join(addrs, " or ")
				}
				if !isNew && !absent[server+" "+id] {
					old = append(old, fmt.Sprintf("%s shows the registration from before the restart (%s), status %s", name, how, st.Status))
					break
				}
				r.id, r.server = id, server
				if st.overridden() != "OUT_OF_SERVICE" && st.Status != "OUT_OF_SERVICE" {
					fresh = append(fresh, fmt.Sprintf("%s %s (override %s)", name, st.Status, orNone(st.overridden())))
					if deleted[server] {
						lifted = append(lifted, name)
					}
					break
				}
				overridden = true
				if deleted[server] {
					said = fmt.Sprintf("%s still shows status %s, override %s after the DELETE", name, st.Status, orNone(st.overridden()))
				}
				res := s.do(call{method: http.MethodDelete, bases: []string{server}, path: r.path(id) + "/status?value=UP", header: jsonAccept, attempts: 1})
				if res.v == rejected {
					return false, s.last
				}
				deleted[server] = true
				break
			}
			if !seen {
				missing = append(missing, name)
			}
		}
		switch {
		case len(fresh) > 0 && len(old) == 0 && !overridden:
			// Peers that do not list it yet get it by replication; give
			// them a moment, then take what is known.
			if len(missing) == 0 || settle >= 2 {
				out := "the restarted app registered again; " + strings.Join(fresh, ", ")
				if len(lifted) > 0 {
					out += "; override removed on " + strings.Join(lifted, ", ")
				} else {
					out += "; nothing was written"
				}
				if len(missing) > 0 {
					out += "; not listed yet on " + strings.Join(missing, ", ")
				}
				if len(unreachable) > 0 {
					out += "; not reachable: " + strings.Join(unreachable, "; ")
				}
				return true, out
			}
			settle++
		case len(old) > 0:
			said = "waiting for the restarted app to register: " + strings.Join(old, "; ")
		case len(unreachable) > 0 && len(fresh) == 0:
			said = "no server could be asked: " + strings.Join(unreachable, "; ")
		}
		if s.left() <= time.Second || !s.t.clock.Sleep(s.ctx, time.Second) {
			return false, "not done in time: " + said
		}
	}
}

// appAddrs are where the app serves in this pod: the registered port (else
// the app's server port, else 8080) on the pod's IPs and loopback.
func (r *eureka) appAddrs(e environment, port int) []string {
	if port <= 0 {
		var ignored []string
		if port, _ = e.propPort(&ignored, "server.port"); port == 0 {
			port = 8080
		}
	}
	var addrs []string
	for _, ip := range append(e.podIPs(), "127.0.0.1") {
		if a := net.JoinHostPort(ip, strconv.Itoa(port)); !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	return addrs
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
