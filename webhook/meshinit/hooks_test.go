package meshinit

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// fullPreStops has one PreStop per preset with every field of the preset
// set, and each kind of original handler.
func fullPreStops() []PreStop {
	d := func(s string) Duration {
		v, err := time.ParseDuration(s)
		if err != nil {
			panic(err)
		}
		return Duration(v)
	}
	return []PreStop{
		{Registry: Registry{Preset: PresetNone}, Sleep: d("30s")},
		{Registry: Registry{Preset: PresetDubbo, Timeout: d("3s"), Dubbo: Dubbo{Port: 22223}}, Sleep: d("20s"),
			Then: OriginalHandler{Exec: []string{"/bin/sh", "-c", "kill -TERM 1; sleep 5", "--registry=x"}}},
		{Registry: Registry{Preset: PresetSpringCloud, SpringCloud: SpringCloud{Port: 8081, BasePath: "/manage", Status: "DOWN"}}, Sleep: d("1m30s"),
			Then: OriginalHandler{HTTPGet: "http://10.0.0.1:8080/pre-stop?x=1", HTTPHeaders: []string{"X-A: 1", "X-B: two words"}}},
		{Registry: Registry{Preset: PresetEureka, Eureka: Eureka{ServerURL: "http://user:pw@eureka:8761/eureka/", AppName: "checkout", InstanceID: "checkout-0:checkout:8080"}}, Sleep: d("90s"),
			Then: OriginalHandler{Sleep: d("5s")}},
		{Registry: Registry{Preset: PresetNacos, Timeout: d("10s"), Nacos: Nacos{ServerURL: "http://nacos:8848", ServiceName: "orders", GroupName: "PAY", NamespaceID: "prod", ClusterName: "east", Port: 20880,
			UsernameEnv: "NACOS_USER", PasswordEnv: "NACOS_PW", AccessKeyEnv: "AK", SecretKeyEnv: "SK"}}, Sleep: d("10s"), Record: "/var/run/mesh-state/app.json"},
		{Registry: Registry{Preset: PresetConsul, Consul: Consul{Address: "http://10.0.0.1:8500", ServiceID: "orders-8080", Mode: ConsulDeregister, TokenEnv: "CONSUL_TOKEN"}}, Sleep: d("40s")},
		{Registry: Registry{Preset: PresetEDAS, EDAS: EDAS{URL: "http://localhost:54199/offline"}}, Sleep: d("30s")},
		{Registry: Registry{Preset: PresetHTTP, HTTP: HTTPCall{Method: "PUT", URL: "https://registry.local/self?down=1", Headers: map[string]string{"Authorization": "Bearer a:b", "X-Y": "z"}, Body: `{"up":false}`, ExpectStatus: []int{200, 204}}}, Sleep: d("15s")},
	}
}

func TestPreStopArgsRoundTrip(t *testing.T) {
	t.Parallel()
	for _, p := range fullPreStops() {
		got, err := ParsePreStop(p.Args())
		if err != nil {
			t.Errorf("%s: %v (args %q)", p.Registry.Preset, err, p.Args())
			continue
		}
		if !reflect.DeepEqual(got, p) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v\nargs %q", p.Registry.Preset, got, p, p.Args())
		}
	}
	// The zero PreStop renders as preset none rather than an invalid "--registry=".
	got, err := ParsePreStop(PreStop{}.Args())
	if err != nil || got.Registry.Preset != PresetNone {
		t.Errorf("zero PreStop: %+v, %v", got, err)
	}
}

// TestUsageNamesEveryFlag keeps the hand-written usage texts in step with
// the flags the Args methods render.
func TestUsageNamesEveryFlag(t *testing.T) {
	t.Parallel()
	check := func(cmd string, args []string) {
		for _, a := range args {
			if !strings.HasPrefix(a, "--") || a == "--" {
				continue
			}
			name, _, _ := strings.Cut(a, "=")
			if !strings.Contains(HookUsage[cmd], name) {
				t.Errorf("the %s usage does not mention %s", cmd, name)
			}
		}
	}
	for _, p := range fullPreStops() {
		check("prestop", p.Args())
	}
	check("wait-ready", WaitReady{URL: "u", Timeout: 1}.Args())
	check("proxy-stop", ProxyStop{Wait: 1, Drain: 1, AdminURL: "u"}.Args())
	check("run", Run{ReadyURL: "u", ReadyTimeout: 1, QuitURL: "q", Command: []string{"x"}}.Args())
}

func TestPostStartArgsRoundTrip(t *testing.T) {
	t.Parallel()
	for _, p := range fullPreStops() {
		// The offline timeout is prestop's; poststart has its own bound.
		p.Registry.Timeout = 0
		ps := PostStart{Registry: p.Registry, Record: "/var/run/mesh-state/app.json", Timeout: Duration(90 * time.Second), Then: p.Then}
		got, err := ParsePostStart(ps.Args())
		if err != nil {
			t.Errorf("%s: %v (args %q)", p.Registry.Preset, err, ps.Args())
			continue
		}
		if !reflect.DeepEqual(got, ps) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", p.Registry.Preset, got, ps)
		}
		check := func(args []string) {
			for _, a := range args {
				if name, _, _ := strings.Cut(a, "="); strings.HasPrefix(a, "--") && a != "--" && !strings.Contains(HookUsage["poststart"], name) {
					t.Errorf("the poststart usage does not mention %s", name)
				}
			}
		}
		check(ps.Args())
	}
}

// A prestop whose arguments do not parse still finds its sleep.
func TestSleepFromArgs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want Duration
		ok   bool
	}{
		{[]string{"--registry=zookeeper", "--sleep=30s"}, Duration(30 * time.Second), true},
		{[]string{"--stray", "--sleep", "1m"}, Duration(time.Minute), true},
		{[]string{"-sleep=2s", "--bad"}, Duration(2 * time.Second), true},
		{[]string{"--sleep=soon"}, 0, false},
		{[]string{"--then-exec", "--", "--sleep=9s"}, 0, false},
		{nil, 0, false},
	} {
		d, ok := SleepFromArgs(c.args)
		if d != c.want || ok != c.ok {
			t.Errorf("%q: %v %v, want %v %v", c.args, d, ok, c.want, c.ok)
		}
	}
}

func TestRegistryValidate(t *testing.T) {
	t.Parallel()
	ok := []Registry{
		{Preset: PresetNacos, Nacos: Nacos{ServerURL: "nacos-0.nacos:8848, nacos-1.nacos:8848"}},
		{Preset: PresetNacos, Nacos: Nacos{ServerURL: "https://nacos.example:8848/nacos"}},
		{Preset: PresetNacos},
		// No port: the Nacos client's 8848, as for the environment.
		{Preset: PresetNacos, Nacos: Nacos{ServerURL: "nacos"}},
		{Preset: PresetNacos, Nacos: Nacos{ServerURL: "10.0.0.5,[fd00::5]"}},
		{Preset: PresetSpringCloud, SpringCloud: SpringCloud{BasePath: "/manage"}},
		{Preset: PresetEureka, Eureka: Eureka{ServerURL: "http://eureka-0:8761/eureka/,http://eureka-1:8761/eureka/"}},
		{Preset: PresetHTTP, HTTP: HTTPCall{URL: "http://x/", Method: "M-SEARCH", Headers: map[string]string{"X-Token": "a:b c"}}},
		{Preset: PresetConsul, Consul: Consul{Address: "10.0.0.1", Mode: ConsulMaintenance, TokenEnv: "CONSUL_HTTP_TOKEN"}},
		{Preset: PresetConsul, Consul: Consul{Address: "https://consul.local:8501"}},
		{Preset: PresetSpringCloud, SpringCloud: SpringCloud{Status: "DOWN"}},
	}
	bad := []Registry{
		{Preset: PresetNacos, Nacos: Nacos{ServerURL: "ftp://nacos:21"}},
		{Preset: PresetNacos, Nacos: Nacos{ServerURL: "nacos:port"}},
		{Preset: PresetSpringCloud, SpringCloud: SpringCloud{BasePath: "manage"}},
		{Preset: PresetEureka, Eureka: Eureka{ServerURL: "eureka:8761"}},
		{Preset: PresetEureka, Eureka: Eureka{ServerURL: "http://eureka-0:8761/eureka,eureka-1:8761"}},
		{Preset: PresetEureka, Eureka: Eureka{ServerURL: "http://:8761/eureka"}},
		{Preset: PresetHTTP, HTTP: HTTPCall{URL: "http://x/", Method: "post"}},
		{Preset: PresetHTTP, HTTP: HTTPCall{URL: "http://x/", Method: "PO ST"}},
		{Preset: PresetHTTP, HTTP: HTTPCall{URL: "http://x/", Headers: map[string]string{"Bad Name": "v"}}},
		{Preset: PresetHTTP, HTTP: HTTPCall{URL: "http://x/", Headers: map[string]string{"X-A": "v\r\nX-Injected: 1"}}},
		{Preset: PresetHTTP, HTTP: HTTPCall{URL: "http://x/", Headers: map[string]string{"": "v"}}},
		{Preset: PresetConsul, Consul: Consul{Mode: "drain"}},
		{Preset: PresetConsul, Consul: Consul{Address: "ftp://consul"}},
		{Preset: PresetConsul, Consul: Consul{TokenEnv: "1BAD"}},
		{Preset: PresetNacos, Nacos: Nacos{PasswordEnv: "A B"}},
		{Preset: PresetSpringCloud, SpringCloud: SpringCloud{Status: "UNKNOWN"}},
	}
	for _, r := range ok {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	for _, r := range bad {
		if err := r.Validate(); err == nil {
			t.Errorf("%+v: accepted", r)
		}
	}
}

// TestParseHeader pins the "Name: value" rule shared by --http-header and
// --then-http-header.
func TestParseHeader(t *testing.T) {
	t.Parallel()
	ok := []struct{ in, name, value string }{
		{"X-A: 1", "X-A", "1"},
		{"X:Y: z", "X", "Y: z"}, // the first colon ends the name
		{"Authorization: Bearer a:b", "Authorization", "Bearer a:b"},
		{"  X-Pad  :\t v \t", "X-Pad", "v"},
		{"X-Empty:", "X-Empty", ""},
		{"X-Tab: a\tb", "X-Tab", "a\tb"},
	}
	for _, c := range ok {
		name, value, err := ParseHeader(c.in)
		if err != nil || name != c.name || value != c.value {
			t.Errorf("%q: %q, %q, %v; want %q, %q", c.in, name, value, err, c.name, c.value)
		}
	}
	bad := map[string]string{
		"no colon":     `is not "Name: value"`,
		": x":          "the header name is empty",
		"Bad Name: v":  `the header name "Bad Name" is not an HTTP token`,
		"X(1): v":      `the header name "X(1)" is not an HTTP token`,
		"X: a\r\nY: b": `holds the control character '\r'`,
		"X: a\nb":      `holds the control character '\n'`,
		"X: a\x00":     `holds the control character '\x00'`,
	}
	for in, want := range bad {
		if _, _, err := ParseHeader(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want one containing %q", in, err, want)
		}
	}
	// The parser keeps what Args renders.
	p := PreStop{Registry: Registry{Preset: PresetHTTP, HTTP: HTTPCall{URL: "http://x/", Headers: map[string]string{"X": "Y: z"}}}}
	if got, err := ParsePreStop(p.Args()); err != nil || got.Registry.HTTP.Headers["X"] != "Y: z" {
		t.Errorf("round trip: %+v, %v", got.Registry.HTTP.Headers, err)
	}
}

// TestParseURLFlags: the URLs of wait-ready, proxy-stop and run are checked
// when parsed, not found wrong by polling until the timeout.
func TestParseURLFlags(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"127.0.0.1:15021/healthz/ready", "http:///healthz", "ftp://127.0.0.1/x", "http://[::1/x", "/healthz/ready"} {
		if _, err := ParseWaitReady([]string{"--url=" + u}); err == nil || !strings.Contains(err.Error(), "--url: ") {
			t.Errorf("wait-ready --url=%s: %v", u, err)
		}
		if _, err := ParseProxyStop([]string{"--admin-url=" + u}); err == nil || !strings.Contains(err.Error(), "--admin-url: ") {
			t.Errorf("proxy-stop --admin-url=%s: %v", u, err)
		}
		if _, err := ParseRun([]string{"--ready-url=" + u, "--", "x"}); err == nil || !strings.Contains(err.Error(), "--ready-url: ") {
			t.Errorf("run --ready-url=%s: %v", u, err)
		}
		if _, err := ParseRun([]string{"--quit-url=" + u, "--", "x"}); err == nil || !strings.Contains(err.Error(), "--quit-url: ") {
			t.Errorf("run --quit-url=%s: %v", u, err)
		}
	}
	// The defaults, and an empty --quit-url (do not tell the proxy to quit).
	if _, err := ParseWaitReady(nil); err != nil {
		t.Error(err)
	}
	if _, err := ParseRun([]string{"--quit-url=", "--", "x"}); err != nil {
		t.Error(err)
	}
	// The password in a bad URL is not echoed.
	if _, err := ParseWaitReady([]string{"--url=ftp://u:s3cret@h/x"}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("err = %v", err)
	}
}
