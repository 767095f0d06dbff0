package hook

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// dubbo takes a provider offline with QoS "offline" (Dubbo 2.7 and 3.x
// both have it; 3.x unregisters from interface- and application-level
// registries alike) and reads back "ls": every provider service's PUB
// column must say it is no longer registered. QoS answers on loopback with
// full permission.
//
// Dubbo 3 registers an application-level instance too (service discovery,
// the "-A" column of ls), and ls shows it unregistered at once, but the
// instance leaves the registry only at the next metadata refresh, which
// runs every dubbo.application.metadata.publish.delay (1000 ms by default:
// MetadataConstants.DEFAULT_METADATA_PUBLISH_DELAY; DefaultApplicationDeployer
// schedules the refresh, AbstractServiceDiscovery.update unregisters an
// instance left with no service). Consumers that discover by application
// (Dubbo 3's default APPLICATION_FIRST) see it until then, so the step is
// done only after that period too.
type dubbo struct {
	base         string
	publishDelay time.Duration
	notesList    []string
}

// defaultDubboPublishDelay is Dubbo 3's default metadata refresh period.
const defaultDubboPublishDelay = time.Second

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
	delay := defaultDubboPublishDelay
	if v, n := e.prop("dubbo.application.metadata.publish.delay"); v != "" {
		if ms, err := strconv.Atoi(v); err == nil && ms >= 0 {
			delay = time.Duration(ms) * time.Millisecond
			notes = append(notes, fmt.Sprintf("Dubbo 3 metadata refresh every %s (%s)", delay, n))
		} else {
			notes = append(notes, fmt.Sprintf("ignored %s=%q (not milliseconds); Dubbo 3 metadata refresh every %s (default)", n, v, delay))
		}
	}
	return &dubbo{base: "http://127.0.0.1:" + strconv.Itoa(port), publishDelay: delay, notesList: notes}
}

func (r *dubbo) notes() []string { return r.notesList }
func (r *dubbo) key() string     { return "every provider service exported through QoS at " + r.base }

// dubboPublished reads "ls": the provider services still registered. In
// 2.7 the PUB column is Y or N; in 3.x it is one <registry>-A(Y|N) or
// <registry>-I(Y|N) per registry, joined by '/'; Dubbo's internal
// MetadataService has none. appLevel says a provider is registered at
// application level ("-A(") in some registry.
func dubboPublished(ls string) (published, all []string, appLevel bool) {
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
		appLevel = appLevel || strings.Contains(pub, "-A(")
		if pub == "Y" || strings.Contains(pub, "(Y)") {
			published = append(published, name)
		}
	}
	return published, all, appLevel
}

func (r *dubbo) offline(s *step) (bool, string) {
	res, readBack := s.write(call{method: http.MethodGet, bases: []string{r.base}, path: "/offline", keep: s.budget / 5})
	if !readBack {
		return false, s.last
	}
	writeLine := s.lostAnswer(res)
	if res.v == accepted && oneOf(res.a.body, "service not found") {
		return true, "QoS says \"service not found\": the app exports no provider service, so nothing was registered"
	}
	for {
		ls := s.do(call{method: http.MethodGet, bases: []string{r.base}, path: "/ls", quiet: true})
		if ls.v != accepted {
			return false, withWrite(writeLine, "the ls read-back failed: "+s.last)
		}
		published, all, appLevel := dubboPublished(ls.a.body)
		if len(published) == 0 {
			done := fmt.Sprintf("QoS ls shows no provider service registered (%d listed)", len(all))
			if !appLevel || r.publishDelay == 0 {
				return true, done
			}
			// The application-level instance leaves the registry at
			// the next metadata refresh (see dubbo): wait for it, so
			// that the drain sleep starts when the registry no longer
			// lists it. Dubbo has unregistered it already, so a step
			// without the time for that still succeeds, and says the
			// refresh falls into the drain sleep.
			refresh := "Dubbo 3's metadata refresh (every " + r.publishDelay.String() + ", dubbo.application.metadata.publish.delay), which removes the application-level instance from the registry"
			if s.left() <= r.publishDelay {
				return true, done + "; " + refresh + ", comes within the drain sleep: the step had no time left to wait for it"
			}
			if !s.t.clock.Sleep(s.ctx, r.publishDelay) {
				return false, withWrite(writeLine, done+"; interrupted while waiting for "+refresh)
			}
			return true, done + "; waited for " + refresh
		}
		// Still listed as registered: ask again while the budget lasts
		// (an offline that is still being applied).
		if s.left() <= backoffStart || !s.t.clock.Sleep(s.ctx, backoffStart) {
			return false, withWrite(writeLine, "ls still shows registered: "+strings.Join(published, ", "))
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
	return "the EDAS agent offers no read-back, so this is only the agent's word"
}

// httpCall is any request the user configures; success is a listed status
// (or any 2xx). It confirms only when a check URL is given: a GET that
// must answer 2xx (and contain the check body, when one is set).
type httpCall struct {
	c         call
	checkURL  string
	checkBody string
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
	return &httpCall{checkURL: h.CheckURL, checkBody: h.CheckBody, c: call{method: method, bases: []string{h.URL}, header: header, body: h.Body, keep: 0,
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

func (r *httpCall) notes() []string {
	if r.checkURL == "" {
		return []string{"no check URL: the answer cannot be confirmed (set --http-check-url, annotation sidecar-injector.io/offline-http-check-url)"}
	}
	return []string{"check " + meshinit.RedactURL(r.checkURL)}
}
func (r *httpCall) key() string { return r.c.method + " " + meshinit.RedactURL(r.c.bases[0]) }
func (r *httpCall) offline(s *step) (bool, string) {
	c := r.c
	if r.checkURL != "" {
		c.keep = s.budget / 5
	}
	res, readBack := s.write(c)
	if r.checkURL == "" {
		if res.v != accepted {
			return false, s.last
		}
		return true, "answered " + s.last
	}
	if !readBack {
		return false, s.last
	}
	writeLine := s.lostAnswer(res)
	var got string
	for {
		chk := s.do(call{method: http.MethodGet, bases: []string{r.checkURL}, quiet: true})
		if chk.v == accepted && strings.Contains(chk.a.body, r.checkBody) {
			return true, "the check " + s.last
		}
		got = s.last
		if s.left() <= backoffStart || !s.t.clock.Sleep(s.ctx, backoffStart) {
			want := "2xx"
			if r.checkBody != "" {
				want = fmt.Sprintf("2xx containing %q", r.checkBody)
			}
			return false, withWrite(writeLine, fmt.Sprintf("the check wants %s and got %s", want, got))
		}
	}
}
func (r *httpCall) online(*step) (bool, string) {
	return noUndo("the http preset has no known way back; make the app's own start bring it online")
}
func (r *httpCall) unconfirmed() string {
	if r.checkURL != "" {
		return ""
	}
	return "the http preset without --http-check-url has no read-back, so this is only the endpoint's word"
}
