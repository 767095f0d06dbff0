package hook

import (
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// These check the defaults each preset derives from the app container's
// environment, without a network: the request it would send.

func resolve(t *testing.T, h harness, r meshinit.Registry) *request {
	t.Helper()
	req, err := h.env().offlineRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestDefaultsDubboAndEDAS(t *testing.T) {
	t.Parallel()
	req := resolve(t, harness{}, meshinit.Registry{Preset: meshinit.PresetDubbo})
	if got := req.bases[0] + req.paths[0]; got != "http://127.0.0.1:22222/offline" || req.method != "GET" {
		t.Errorf("dubbo default: %s %s", req.method, got)
	}
	req = resolve(t, harness{}, meshinit.Registry{Preset: meshinit.PresetEDAS})
	if got := req.bases[0] + req.paths[0]; got != "http://localhost:54199/offline" || req.method != "GET" {
		t.Errorf("edas default: %s %s", req.method, got)
	}
	if req := resolve(t, harness{}, meshinit.Registry{Preset: meshinit.PresetNone}); req != nil {
		t.Errorf("none: %+v", req)
	}
}

func TestDefaultsSpringCloud(t *testing.T) {
	t.Parallel()
	cases := []struct {
		vars  map[string]string
		flags meshinit.SpringCloud
		want  string // the first URL tried
		note  string
	}{
		{want: "http://127.0.0.1:8080/actuator/serviceregistry"},
		{vars: map[string]string{"SERVER_PORT": "9000", "SERVER_SERVLET_CONTEXT_PATH": "/shop/"}, want: "http://127.0.0.1:9000/shop/actuator/serviceregistry"},
		{vars: map[string]string{"SERVER_PORT": "9000", "SERVER_SERVLET_CONTEXT_PATH": "/shop", "MANAGEMENT_SERVER_PORT": "9001", "MANAGEMENT_SERVER_BASE_PATH": "/mgmt", "MANAGEMENT_ENDPOINTS_WEB_BASE_PATH": "/ops"},
			want: "http://127.0.0.1:9001/mgmt/ops/serviceregistry"},
		{vars: map[string]string{"SERVER_PORT": "tcp://10.96.0.7:80"}, want: "http://127.0.0.1:8080/actuator/serviceregistry", note: `ignored SERVER_PORT="tcp://10.96.0.7:80" (not a port)`},
		{vars: map[string]string{"SERVER_PORT": "9000", "SERVER_SERVLET_CONTEXT_PATH": "/shop"}, flags: meshinit.SpringCloud{Port: 7000, BasePath: "/admin/"}, want: "http://127.0.0.1:7000/admin/serviceregistry"},
		// A base path without its leading / is read as the path it means.
		{vars: map[string]string{"MANAGEMENT_ENDPOINTS_WEB_BASE_PATH": "manage"}, want: "http://127.0.0.1:8080/manage/serviceregistry",
			note: `MANAGEMENT_ENDPOINTS_WEB_BASE_PATH="manage" does not start with / (Spring Boot refuses that at startup); using "/manage"`},
		{vars: map[string]string{"MANAGEMENT_ENDPOINTS_WEB_BASE_PATH": "manage/", "SERVER_SERVLET_CONTEXT_PATH": "/shop"}, want: "http://127.0.0.1:8080/shop/manage/serviceregistry"},
	}
	for _, c := range cases {
		req := resolve(t, harness{vars: c.vars}, meshinit.Registry{Preset: meshinit.PresetSpringCloud, SpringCloud: c.flags})
		if got := req.bases[0] + req.paths[0]; got != c.want {
			t.Errorf("%v %+v: %s, want %s", c.vars, c.flags, got, c.want)
		}
		if !strings.HasSuffix(req.paths[1], "/service-registry") {
			t.Errorf("no fallback to the old endpoint name: %q", req.paths)
		}
		if c.note != "" && !strings.Contains(strings.Join(req.notes, "; "), c.note) {
			t.Errorf("notes %q lack %q", req.notes, c.note)
		}
	}
}

func TestDefaultsEurekaInstanceIDs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		h    harness
		want []string
	}{
		{h: harness{vars: map[string]string{"SPRING_APPLICATION_NAME": "cart", "HOSTNAME": "cart-1"}},
			want: []string{"cart-1:cart", "cart-1:cart:8080", "os-hostname:cart", "os-hostname:cart:8080"}},
		{h: harness{vars: map[string]string{"SPRING_APPLICATION_NAME": "cart", "HOSTNAME": "os-hostname", "SERVER_PORT": "9090"}},
			want: []string{"os-hostname:cart:9090"}},
		{h: harness{vars: map[string]string{"SPRING_APPLICATION_NAME": "cart", "SPRING_APPLICATION_INSTANCE_ID": "blue", "SERVER_PORT": "9090", "SPRING_CLOUD_CLIENT_HOSTNAME": "10.0.0.4"}},
			want: []string{"10.0.0.4:cart:blue", "os-hostname:cart:blue"}},
		{h: harness{vars: map[string]string{"SPRING_APPLICATION_NAME": "cart", "EUREKA_INSTANCE_INSTANCEID": "a", "EUREKA_INSTANCE_INSTANCE_ID": "b"}},
			want: []string{"a"}},
		{h: harness{vars: map[string]string{"SPRING_APPLICATION_NAME": "cart", "SERVER_PORT": "8080"},
			addrs: []net.Addr{ipNet("10.4.0.9/24")}, hosts: "10.4.0.9 cart-0.cart.ns.svc.cluster.local cart-0\n"},
			want: []string{"cart-0.cart.ns.svc.cluster.local:cart:8080", "os-hostname:cart:8080"}},
	}
	for _, c := range cases {
		got, _ := c.h.env().eurekaInstanceIDs("")
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%v: ids %q, want %q", c.h.vars, got, c.want)
		}
	}
	got, from := harness{}.env().eurekaInstanceIDs("explicit")
	if !reflect.DeepEqual(got, []string{"explicit"}) || from != "--eureka-instance-id" {
		t.Errorf("explicit id: %q from %s", got, from)
	}
}

func TestDefaultsEureka(t *testing.T) {
	t.Parallel()
	h := harness{vars: map[string]string{
		"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": "http://admin:secret@eureka-0:8761/eureka/,http://eureka-1:8761/eureka/",
		"EUREKA_INSTANCE_APPNAME":              "cart-service",
		"SPRING_APPLICATION_NAME":              "cart",
		"HOSTNAME":                             "cart-1",
		"SERVER_PORT":                          "8080",
	}}
	req := resolve(t, h, meshinit.Registry{Preset: meshinit.PresetEureka})
	if !reflect.DeepEqual(req.bases, []string{"http://admin:secret@eureka-0:8761/eureka", "http://eureka-1:8761/eureka"}) {
		t.Errorf("servers %q", req.bases)
	}
	if want := "/apps/CART-SERVICE/cart-1:cart:8080/status?value=OUT_OF_SERVICE"; req.paths[0] != want {
		t.Errorf("path %q, want %q", req.paths[0], want)
	}
	if notes := strings.Join(req.notes, " "); strings.Contains(notes, "secret") {
		t.Errorf("the password shows in %q", notes)
	}
	for _, vars := range []map[string]string{
		{"SPRING_APPLICATION_NAME": "cart"},
		{"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": "http://e:8761/eureka/"},
		{"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": "eureka:8761", "SPRING_APPLICATION_NAME": "cart"},
	} {
		if _, err := (harness{vars: vars}).env().offlineRequest(meshinit.Registry{Preset: meshinit.PresetEureka}); err == nil {
			t.Errorf("%v: want an error naming what is missing", vars)
		}
	}
}

func TestDefaultsNacos(t *testing.T) {
	t.Parallel()
	h := harness{
		vars:  map[string]string{"NACOS_SERVER_ADDR": "nacos-0.nacos:8848,nacos-1.nacos:8848", "SPRING_APPLICATION_NAME": "orders", "SERVER_PORT": "tcp://10.96.0.7:80"},
		addrs: []net.Addr{ipNet("127.0.0.1/8"), ipNet("fd00::9/64"), ipNet("10.2.0.8/24")},
	}
	req := resolve(t, h, meshinit.Registry{Preset: meshinit.PresetNacos})
	if !reflect.DeepEqual(req.bases, []string{"http://nacos-0.nacos:8848/nacos", "http://nacos-1.nacos:8848/nacos"}) {
		t.Errorf("servers %q", req.bases)
	}
	want := "/v1/ns/instance?clusterName=DEFAULT&enabled=false&ephemeral=true&groupName=DEFAULT_GROUP&ip=10.2.0.8&port=8080&serviceName=orders"
	if req.paths[0] != want || req.method != "PUT" {
		t.Errorf("%s %s\nwant PUT %s", req.method, req.paths[0], want)
	}
	// POD_IP wins over the interfaces; Spring Cloud Alibaba's own ip over both.
	h.vars["POD_IP"] = "10.2.0.99"
	if req := resolve(t, h, meshinit.Registry{Preset: meshinit.PresetNacos}); !strings.Contains(req.paths[0], "ip=10.2.0.99&") {
		t.Errorf("POD_IP ignored: %s", req.paths[0])
	}
	h.vars["SPRING_CLOUD_NACOS_DISCOVERY_IP"] = "192.168.0.5"
	if req := resolve(t, h, meshinit.Registry{Preset: meshinit.PresetNacos}); !strings.Contains(req.paths[0], "ip=192.168.0.5&") {
		t.Errorf("SPRING_CLOUD_NACOS_DISCOVERY_IP ignored: %s", req.paths[0])
	}
	// An address without a port gets the Nacos client's default port,
	// from the environment as from the flag; a URL keeps its scheme's.
	for _, c := range []struct {
		h     harness
		flags meshinit.Nacos
		want  []string
	}{
		{h: harness{vars: map[string]string{"NACOS_SERVER_ADDR": "127.0.0.1, nacos-1.nacos:9848,[fd00::5]"}},
			want: []string{"http://127.0.0.1:8848/nacos", "http://nacos-1.nacos:9848/nacos", "http://[fd00::5]:8848/nacos"}},
		{flags: meshinit.Nacos{ServerURL: "nacos,https://nacos.example"}, want: []string{"http://nacos:8848/nacos", "https://nacos.example/nacos"}},
	} {
		c.h.vars = mergeVars(c.h.vars, map[string]string{"SPRING_APPLICATION_NAME": "orders", "POD_IP": "10.0.0.1"})
		if err := (meshinit.Registry{Preset: meshinit.PresetNacos, Nacos: c.flags}).Validate(); err != nil {
			t.Errorf("%+v: the flag is refused: %v", c.flags, err)
		}
		if req := resolve(t, c.h, meshinit.Registry{Preset: meshinit.PresetNacos, Nacos: c.flags}); !reflect.DeepEqual(req.bases, c.want) {
			t.Errorf("%v %+v: servers %q, want %q", c.h.vars, c.flags, req.bases, c.want)
		}
	}
	// A password in the server URL is hidden on the "using" line.
	for _, r := range []meshinit.Registry{
		{Preset: meshinit.PresetNacos},
		{Preset: meshinit.PresetNacos, Nacos: meshinit.Nacos{ServerURL: "http://nacos:s3cret@nacos-0:8848"}},
	} {
		h := harness{vars: map[string]string{"NACOS_SERVER_ADDR": "http://nacos:s3cret@nacos-0:8848", "SPRING_APPLICATION_NAME": "orders", "POD_IP": "10.0.0.1"}}
		req := resolve(t, h, r)
		if notes := strings.Join(req.notes, " "); strings.Contains(notes, "s3cret") || !strings.Contains(notes, "http://nacos:xxxxx@nacos-0:8848/nacos") {
			t.Errorf("the password shows in %q", notes)
		}
	}
	// No address at all is an error that says what to set.
	_, err := harness{vars: map[string]string{"NACOS_SERVER_ADDR": "n:8848", "SPRING_APPLICATION_NAME": "o"}}.env().offlineRequest(meshinit.Registry{Preset: meshinit.PresetNacos})
	if err == nil || !strings.Contains(err.Error(), "POD_IP") {
		t.Errorf("err = %v", err)
	}
}

func mergeVars(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range []map[string]string{b, a} {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
