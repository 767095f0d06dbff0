package hook

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// dubbo takes a provider offline with QoS "offline" (Dubbo 2.7 and 3.x
// both have it; 3.x unregisters from interface- and application-level
// registries alike) and reads back "ls": every provider service's PUB
// column must say it is no longer registered. QoS answers on loopback with
// full permission.
type dubbo struct {
	base      string
	notesList []string
}

func (e environment) dubbo(d meshinit.Dubbo) *dubbo {
	var notes []string
	port, from := int(d.Port), "--dubbo-port"
	if port == 0 {
		// Dubbo 3 reads dubbo.application.qos-port from the environment in
		// this OS style itself; the second is the dash-removed form.
		port, from = e.port(&notes, "DUBBO_APPLICATION_QOS_PORT", "DUBBO_APPLICATION_QOSPORT")
	}
	if port == 0 {
		port, from = 22222, "default"
	}
	notes = append(notes, fmt.Sprintf("QoS port %d (%s)", port, from))
	return &dubbo{base: "http://127.0.0.1:" + strconv.Itoa(port), notesList: notes}
}

func (r *dubbo) notes() []string { return r.notesList }
func (r *dubbo) key() string     { return "every provider service exported through QoS at " + r.base }

// dubboPublished reads "ls": the provider services still registered. In
// 2.7 the PUB column is Y or N; in 3.x it is one <registry>-A(Y|N) or
// <registry>-I(Y|N) per registry, joined by '/'; Dubbo's internal
// MetadataService has none.
func dubboPublished(ls string) (published, all []string) {
	provider := false
	for _, line := range strings.Split(ls, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "As Provider side"):
			provider = true
			continue
		case strings.HasPrefix(line, "As Consumer side"):
			provider = false
			continue
		}
		if !provider || !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 2 {
			continue
		}
		name, pub := strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1])
		if name == "Provider Service Name" || strings.HasPrefix(name, "DubboInternal") {
			continue
		}
		all = append(all, name)
		if pub == "Y" || strings.Contains(pub, "(Y)") {
			published = append(published, name)
		}
	}
	return published, all
}

func (r *dubbo) offline(s *step) (bool, string) {
	res := s.do(call{method: http.MethodGet, bases: []string{r.base}, path: "/offline", keep: s.budget / 5})
	if res.v != accepted {
		return false, s.last
	}
	if oneOf(res.a.body, "service not found") {
		return true, "QoS says \"service not found\": the app exports no provider service, so nothing was registered"
	}
	var published, all []string
	for {
		ls := s.do(call{method: http.MethodGet, bases: []string{r.base}, path: "/ls", quiet: true})
		if ls.v != accepted {
			return false, "QoS accepted offline but the ls read-back failed: " + s.last
		}
		published, all = dubboPublished(ls.a.body)
		if len(published) == 0 {
			return true, fmt.Sprintf("QoS ls shows no provider service registered (%d listed)", len(all))
		}
		// 3.x publishes the application-level change about 1s later.
		if s.left() <= backoffStart || !s.t.clock.Sleep(s.ctx, backoffStart) {
			return false, "QoS accepted offline but ls still shows registered: " + strings.Join(published, ", ")
		}
	}
}

func (r *dubbo) online(*step) (bool, string) {
	return noUndo("Dubbo registers its providers from inside the app's process, so the restarted process registered them anew")
}

// edas calls the EDAS/MSE agent's offline endpoint (seeds/002). The agent
// publishes no read-back, so its 2xx is all the hook can know.
type edas struct{ url string }

func (e environment) edas(c meshinit.EDAS) *edas {
	u := c.URL
	if u == "" {
		u = "http://localhost:54199/offline"
	}
	return &edas{url: u}
}

func (r *edas) notes() []string { return []string{"agent " + meshinit.RedactURL(r.url)} }
func (r *edas) key() string {
	return "the instance the EDAS agent at " + meshinit.RedactURL(r.url) + " registered"
}
func (r *edas) offline(s *step) (bool, string) {
	if res := s.do(call{method: http.MethodGet, bases: []string{r.url}}); res.v != accepted {
		return false, s.last
	}
	return true, "the agent answered " + s.last
}
func (r *edas) online(*step) (bool, string) {
	return noUndo("the EDAS agent runs inside the app's process and registers the restarted process anew")
}
func (r *edas) unconfirmed() string {
	return "the EDAS agent offers no read-back, so this is the agent's word"
}

// httpCall is any request the user configures; success is a listed status
// (or any 2xx). There is no generic read-back.
type httpCall struct {
	c call
}

func httpOffline(h meshinit.HTTPCall) *httpCall {
	method := h.Method
	if method == "" {
		method = http.MethodPost
	}
	header := http.Header{}
	for k, v := range h.Headers {
		header.Set(k, v)
	}
	expect := h.ExpectStatus
	return &httpCall{c: call{method: method, bases: []string{h.URL}, header: header, body: h.Body,
		judge: func(a answer) verdict {
			if len(expect) == 0 {
				return judgeStatus(a.status)
			}
			if slices.Contains(expect, a.status) {
				return accepted
			}
			if v := judgeStatus(a.status); v == transient {
				return v
			}
			return rejected
		}}}
}

func (r *httpCall) notes() []string { return nil }
func (r *httpCall) key() string     { return r.c.method + " " + meshinit.RedactURL(r.c.bases[0]) }
func (r *httpCall) offline(s *step) (bool, string) {
	if res := s.do(r.c); res.v != accepted {
		return false, s.last
	}
	return true, "answered " + s.last
}
func (r *httpCall) online(*step) (bool, string) {
	return noUndo("the http preset has no known way back; make the app's own start bring it online")
}
func (r *httpCall) unconfirmed() string {
	return "the http preset has no read-back, so this is the endpoint's word"
}
