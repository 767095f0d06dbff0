package hook

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// springCloud sets the instance's status through Spring Cloud's
// service-registry actuator endpoint. What status takes the instance
// offline depends on the registry behind it (research table "What each
// registry does with the status"):
//
//   - Spring Cloud Netflix (Eureka): any InstanceStatus, OUT_OF_SERVICE;
//     its GET answers a JSON object with "status" and "overriddenStatus".
//   - Spring Cloud Consul: OUT_OF_SERVICE (maintenance on) or UP; anything
//     else is an error (500); its GET answers the bare status.
//   - Spring Cloud Alibaba (Nacos): UP or DOWN only; anything else is
//     logged and ignored, and the endpoint still answers 200; its GET
//     answers the bare status, or nothing when the client no longer lists
//     the instance.
//
// So the hook reads the endpoint first: an object means Netflix; a bare
// status gets OUT_OF_SERVICE, and if the read-back still says UP, the
// registry is Nacos and gets DOWN. Consul rejects DOWN and Nacos ignores
// OUT_OF_SERVICE, so this order never does harm. --spring-status skips the
// detection.
type springCloud struct {
	base      string
	paths     []string
	status    string
	notesList []string
	path      string // the endpoint path that answered
	flavour   string // what was detected
}

func (e environment) springCloud(c meshinit.SpringCloud) *springCloud {
	var notes []string
	mgmtPort, _ := e.propPort(&notes, "management.server.port")
	serverPort, _ := e.propPort(&notes, "server.port")
	port, from := int(c.Port), "--spring-port"
	switch {
	case port != 0:
	case mgmtPort != 0:
		port, from = mgmtPort, "MANAGEMENT_SERVER_PORT"
	case serverPort != 0:
		port, from = serverPort, "SERVER_PORT"
	default:
		port, from = 8080, "default"
	}
	base, baseFrom := c.BasePath, "--spring-base-path"
	if base == "" {
		base, baseFrom = e.prop("management.endpoints.web.base-path")
		if base == "" {
			base, baseFrom = "/actuator", "default"
		}
		if !strings.HasPrefix(base, "/") {
			// Spring Boot itself refuses such a value at startup ("Base
			// path must start with '/' or be empty"); reading it as the
			// path it can only mean keeps the URL well-formed.
			notes = append(notes, fmt.Sprintf("%s=%q does not start with / (Spring Boot refuses that at startup); using %q", baseFrom, base, "/"+base))
			base = "/" + base
		}
		// Actuator sits behind the context path of whichever server it is
		// on: the management server's own (management.server.base-path,
		// Boot 2.0-2.3's servlet.context-path), or, on the app's port, the
		// servlet context path or WebFlux base path, plus the
		// DispatcherServlet path (spring.mvc.servlet.path).
		var parts []string
		var froms []string
		add := func(v, n string) {
			if v = strings.Trim(v, "/"); v != "" {
				parts = append(parts, v)
				froms = append(froms, n)
			}
		}
		if mgmtPort != 0 && mgmtPort != serverPort {
			add(e.prop("management.server.base-path", "management.server.servlet.context-path"))
		} else {
			add(e.prop("server.servlet.context-path", "spring.webflux.base-path"))
			add(e.prop("spring.mvc.servlet.path"))
		}
		if len(parts) > 0 {
			base = "/" + strings.Join(parts, "/") + "/" + strings.TrimLeft(base, "/")
			baseFrom += " behind " + strings.Join(froms, " and ")
		}
	}
	base = strings.TrimRight(base, "/")
	// The endpoint is "serviceregistry" since Spring Cloud 2020.0 and was
	// "service-registry" before; a path mapping renames it.
	names := []string{"serviceregistry", "service-registry"}
	if m, n := e.prop("management.endpoints.web.path-mapping.serviceregistry"); m != "" {
		names = []string{strings.Trim(m, "/")}
		notes = append(notes, fmt.Sprintf("endpoint mapped to %q (%s)", m, n))
	}
	s := &springCloud{base: "http://127.0.0.1:" + strconv.Itoa(port), status: c.Status}
	for _, n := range names {
		s.paths = append(s.paths, base+"/"+n)
	}
	status := c.Status
	if status == "" {
		status = "detected from the endpoint"
	}
	s.notesList = append(notes, fmt.Sprintf("actuator port %d (%s), base path %s (%s), status %s", port, from, base+"/", baseFrom, status))
	return s
}

func (r *springCloud) notes() []string { return r.notesList }

func (r *springCloud) key() string {
	p := r.path
	if p == "" {
		p = r.paths[0]
	}
	what := "this app's registration"
	if r.flavour != "" {
		what += " (" + r.flavour + ")"
	}
	return what + " at " + r.base + p
}

// springState is what the endpoint's GET says.
type springState struct {
	netflix    bool
	status     string // bare status, or Netflix's status
	overridden string // Netflix only
	empty      bool   // 200 with nothing: the client does not list it
}

func (st springState) String() string {
	switch {
	case st.netflix:
		return fmt.Sprintf("status %s, override %s", st.status, orNone(st.overridden))
	case st.empty:
		return "no status (the registry client no longer lists this instance)"
	}
	return "status " + st.status
}

func parseSpringState(body string) springState {
	b := strings.TrimSpace(body)
	if b == "" {
		return springState{empty: true}
	}
	var obj struct {
		Status           string `json:"status"`
		OverriddenStatus string `json:"overriddenStatus"`
	}
	if strings.HasPrefix(b, "{") && json.Unmarshal([]byte(b), &obj) == nil {
		return springState{netflix: true, status: obj.Status, overridden: obj.OverriddenStatus}
	}
	return springState{status: strings.Trim(b, `"`)}
}

// read GETs the endpoint, finding its name on the first call. It returns
// ok false with what was said when there is no registration to read.
func (r *springCloud) read(s *step) (springState, bool, string) {
	paths := r.paths
	if r.path != "" {
		paths = []string{r.path}
	}
	for _, p := range paths {
		res := s.do(call{method: http.MethodGet, bases: []string{r.base}, path: p, header: jsonAccept, quiet: true,
			judge: func(a answer) verdict {
				if a.status == http.StatusNotFound {
					if strings.Contains(a.body, "no registration found") {
						return rejected
					}
					// Spring's own 404: another name, or not exposed.
					return notHere
				}
				return judgeStatus(a.status)
			}})
		switch res.v {
		case accepted:
			r.path = p
			return parseSpringState(res.a.body), true, ""
		case notHere:
			continue
		}
		if strings.Contains(res.a.body, "no registration found") {
			return springState{}, false, "the endpoint says \"no registration found\": the app registered nowhere"
		}
		return springState{}, false, s.last
	}
	return springState{}, false, "no service-registry endpoint answered (" + s.last + "); is it exposed? management.endpoints.web.exposure.include=serviceregistry, or service-registry before Spring Cloud 2020.0"
}

func (r *springCloud) post(s *step, status string) bool {
	body, _ := json.Marshal(map[string]string{"status": status})
	res := s.do(call{method: http.MethodPost, bases: []string{r.base}, path: r.path, body: string(body), keep: s.budget / 5,
		header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}}})
	return res.v == accepted
}

// await reads until done holds or the budget ends.
func (r *springCloud) await(s *step, done func(springState) bool) (springState, bool) {
	var st springState
	for {
		var ok bool
		st, ok, _ = r.read(s)
		if ok && done(st) {
			return st, true
		}
		if s.left() <= backoffStart || !s.t.clock.Sleep(s.ctx, backoffStart) {
			return st, false
		}
	}
}

func isOffline(st springState) bool {
	return st.status == "OUT_OF_SERVICE" || st.status == "DOWN" || st.overridden == "OUT_OF_SERVICE" || st.empty
}

func (r *springCloud) offline(s *step) (bool, string) {
	st, ok, said := r.read(s)
	if !ok {
		return false, said
	}
	send := r.status
	switch {
	case send != "":
		r.flavour = "status " + send + " as configured"
	case st.netflix:
		send, r.flavour = "OUT_OF_SERVICE", "Spring Cloud Netflix: Eureka"
	default:
		// Consul or Nacos: OUT_OF_SERVICE first (Nacos ignores it).
		send = "OUT_OF_SERVICE"
	}
	if !r.post(s, send) {
		return false, s.last
	}
	done := func(st springState) bool {
		if st.netflix {
			return st.status == "OUT_OF_SERVICE" || st.overridden == "OUT_OF_SERVICE"
		}
		return st.status == send || (send == "DOWN" && st.empty)
	}
	if !st.netflix && r.status == "" {
		// A short look decides between Consul and Nacos: Consul shows the
		// maintenance at once; Nacos ignored the status.
		after, _, _ := r.read(s)
		if after.status == "OUT_OF_SERVICE" {
			r.flavour = "Spring Cloud Consul"
			return true, "the endpoint reads back " + after.String()
		}
		r.flavour = "Spring Cloud Alibaba: Nacos, which takes only UP and DOWN"
		s.t.logf("%s: the endpoint still reads %s after OUT_OF_SERVICE, so the registry is Nacos (Spring Cloud Alibaba); sending DOWN", s.what, after)
		send = "DOWN"
		if !r.post(s, send) {
			return false, s.last
		}
	}
	final, ok := r.await(s, done)
	if !ok {
		return false, fmt.Sprintf("the endpoint accepted %s but still reads %s", send, final)
	}
	return true, "the endpoint reads back " + final.String()
}

// online puts the instance back: CANCEL_OVERRIDE for Netflix (its next
// heartbeat makes it UP), UP for Consul (maintenance off) and Nacos
// (enabled again).
func (r *springCloud) online(s *step) (bool, string) {
	var st springState
	for {
		var ok bool
		var said string
		st, ok, said = r.read(s)
		if ok {
			break
		}
		if s.left() <= time.Second || !s.t.clock.Sleep(s.ctx, time.Second) {
			return false, "the app did not answer with its registration in time: " + said
		}
	}
	if !isOffline(st) {
		return true, "already " + st.String() + ": nothing was left to undo"
	}
	send := "UP"
	if st.netflix {
		send = "CANCEL_OVERRIDE"
	}
	if !r.post(s, send) {
		return false, s.last
	}
	final, ok := r.await(s, func(st springState) bool { return !isOffline(st) })
	if !ok {
		return false, fmt.Sprintf("the endpoint accepted %s but still reads %s", send, final)
	}
	return true, "the endpoint reads back " + final.String()
}
