package hooks

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
		{Registry: Registry{Preset: PresetNacos, Timeout: d("10s"), Nacos: Nacos{ServerURL: "http://nacos:8848", ServiceName: "orders", GroupName: "PAY", NamespaceID: "prod", ClusterName: "east", Port: 20880}}, Sleep: d("10s")},
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
			if !strings.Contains(commandUsage[cmd], name) {
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

func TestRegistryValidate(t *testing.T) {
	t.Parallel()
	ok := []Registry{
		{Preset: PresetNacos, Nacos: Nacos{ServerURL: "nacos-0.nacos:8848, nacos-1.nacos:8848"}},
		{Preset: PresetNacos, Nacos: Nacos{ServerURL: "https://nacos.example:8848/nacos"}},
		{Preset: PresetNacos},
		{Preset: PresetSpringCloud, SpringCloud: SpringCloud{BasePath: "/manage"}},
	}
	bad := []Registry{
		{Preset: PresetNacos, Nacos: Nacos{ServerURL: "nacos"}},
		{Preset: PresetNacos, Nacos: Nacos{ServerURL: "ftp://nacos:21"}},
		{Preset: PresetSpringCloud, SpringCloud: SpringCloud{BasePath: "manage"}},
		{Preset: PresetEureka, Eureka: Eureka{ServerURL: "eureka:8761"}},
		{Preset: PresetHTTP, HTTP: HTTPCall{URL: "http://x/", Method: "post"}},
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
