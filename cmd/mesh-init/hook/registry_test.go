package hook

import (
	"io"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// These check the defaults each preset derives from the app container's
// environment, without a network: the request it would send.

func testEnv(h harness) environment {
	return h.env(&memFS{files: map[string]string{}}, &syncWriter{w: io.Discard})
}

func resolve(t *testing.T, h harness, r meshinit.Registry) registrar {
	t.Helper()
	reg, err := testEnv(h).resolve(r)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestDefaultsDubboAndEDAS(t *testing.T) {
	t.Parallel()
	if d := resolve(t, harness{}, meshinit.Registry{Preset: meshinit.PresetDubbo}).(*dubbo); d.base != "http://127.0.0.1:22222" {
		t.Errorf("dubbo default: %s", d.base)
	}
	if e := resolve(t, harness{}, meshinit.Registry{Preset: meshinit.PresetEDAS}).(*edas); e.url != "http://localhost:54199/offline" {
		t.Errorf("edas default: %s", e.url)
	}
	if reg := resolve(t, harness{}, meshinit.Registry{Preset: meshinit.PresetNone}); reg != nil {
		t.Errorf("none: %+v", reg)
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
		// Both of Spring Boot's variable forms, WebFlux and the MVC servlet path.
		{vars: map[string]string{"MANAGEMENT_ENDPOINTS_WEB_BASEPATH": "/ops", "SERVER_SERVLET_CONTEXTPATH": "/shop"}, want: "http://127.0.0.1:8080/shop/ops/serviceregistry"},
		{vars: map[string]string{"SPRING_WEBFLUX_BASEPATH": "/rx"}, want: "http://127.0.0.1:8080/rx/actuator/serviceregistry"},
		{vars: map[string]string{"SERVER_SERVLET_CONTEXT_PATH": "/shop", "SPRING_MVC_SERVLET_PATH": "/api"}, want: "http://127.0.0.1:8080/shop/api/actuator/serviceregistry"},
		{vars: map[string]string{"MANAGEMENT_SERVER_PORT": "9001", "MANAGEMENT_SERVER_BASEPATH": "/m", "SERVER_SERVLET_CONTEXT_PATH": "/shop"}, want: "http://127.0.0.1:9001/m/actuator/serviceregistry"},
	}
	for _, c := range cases {
		sc := resolve(t, harness{vars: c.vars}, meshinit.Registry{Preset: meshinit.PresetSpringCloud, SpringCloud: c.flags}).(*springCloud)
		if got := sc.base + sc.paths[0]; got != c.want {
			t.Errorf("%v %+v: %s, want %s", c.vars, c.flags, got, c.want)
		}
		if !strings.HasSuffix(sc.paths[1], "/service-registry") {
			t.Errorf("no fallback to the old endpoint name: %q", sc.paths)
		}
		if c.note != "" && !strings.Contains(strings.Join(sc.notes(), "; "), c.note) {
			t.Errorf("notes %q lack %q", sc.notes(), c.note)
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
		got, _ := testEnv(c.h).eurekaInstanceIDs("")
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%v: ids %q, want %q", c.h.vars, got, c.want)
		}
	}
	got, from := testEnv(harness{}).eurekaInstanceIDs("explicit")
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
	e := resolve(t, h, meshinit.Registry{Preset: meshinit.PresetEureka}).(*eureka)
	if !reflect.DeepEqual(e.servers, []string{"http://admin:secret@eureka-0:8761/eureka", "http://eureka-1:8761/eureka"}) {
		t.Errorf("servers %q", e.servers)
	}
	if want := "/apps/CART-SERVICE/cart-1:cart:8080"; e.path(e.ids[0]) != want {
		t.Errorf("path %q, want %q", e.path(e.ids[0]), want)
	}
	if notes := strings.Join(e.notes(), " "); strings.Contains(notes, "secret") {
		t.Errorf("the password shows in %q", notes)
	}
	// Without a server the app's own default is used, and said.
	e = resolve(t, harness{vars: map[string]string{"SPRING_APPLICATION_NAME": "cart"}}, meshinit.Registry{Preset: meshinit.PresetEureka}).(*eureka)
	if e.servers[0] != "http://localhost:8761/eureka" || !strings.Contains(e.notes()[0], "Spring Cloud Netflix's default") {
		t.Errorf("default server %q, notes %q", e.servers, e.notes())
	}
	for _, vars := range []map[string]string{
		{"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": "http://e:8761/eureka/"},
		{"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": "eureka:8761", "SPRING_APPLICATION_NAME": "cart"},
	} {
		if _, err := testEnv(harness{vars: vars}).resolve(meshinit.Registry{Preset: meshinit.PresetEureka}); err == nil {
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
	n := resolve(t, h, meshinit.Registry{Preset: meshinit.PresetNacos}).(*nacos)
	if !reflect.DeepEqual(n.servers, []string{"http://nacos-0.nacos:8848/nacos", "http://nacos-1.nacos:8848/nacos"}) {
		t.Errorf("servers %q", n.servers)
	}
	if n.ip != "10.2.0.8" || n.port != 8080 || n.cluster != "DEFAULT" || n.group != "DEFAULT_GROUP" || n.namespace != "" {
		t.Errorf("key %s", n.key())
	}
	// Spring Boot's both forms; the Java client's namespace override;
	// POD_IP over the interfaces and the discovery ip over both.
	h.vars = map[string]string{
		"SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR": "nacos:8848", "SPRING_APPLICATION_NAME": "orders", "POD_IP": "10.2.0.99",
		"SPRING_CLOUD_NACOS_DISCOVERY_CLUSTERNAME": "east", "SPRING_CLOUD_NACOS_DISCOVERY_NAMESPACE": "prod",
		"SPRING_CLOUD_NACOS_DISCOVERY_PORT": "20880", "SPRING_CLOUD_NACOS_DISCOVERY_GROUP": "PAY",
	}
	n = resolve(t, h, meshinit.Registry{Preset: meshinit.PresetNacos}).(*nacos)
	if n.ip != "10.2.0.99" || n.port != 20880 || n.cluster != "east" || n.group != "PAY" || n.namespace != "prod" {
		t.Errorf("key %s", n.key())
	}
	h.vars["ALIBABA_ALIWARE_NAMESPACE"] = "edas-ns"
	h.vars["SPRING_CLOUD_NACOS_DISCOVERY_IP"] = "192.168.0.5"
	h.vars["SPRING_CLOUD_NACOS_DISCOVERY_CLUSTER_NAME"] = "ignored-second-form"
	n = resolve(t, h, meshinit.Registry{Preset: meshinit.PresetNacos}).(*nacos)
	if n.namespace != "edas-ns" || n.ip != "192.168.0.5" || n.cluster != "east" {
		t.Errorf("key %s", n.key())
	}
	// Flags win; credentials come from the variables they name.
	h.vars["APP_NACOS_USER"], h.vars["APP_NACOS_PW"] = "svc", "pw"
	n = resolve(t, h, meshinit.Registry{Preset: meshinit.PresetNacos, Nacos: meshinit.Nacos{NamespaceID: "flag-ns", ClusterName: "west", UsernameEnv: "APP_NACOS_USER", PasswordEnv: "APP_NACOS_PW"}}).(*nacos)
	if n.namespace != "flag-ns" || n.cluster != "west" || n.user != "svc" || n.password != "pw" {
		t.Errorf("key %s, user %q", n.key(), n.user)
	}
	if notes := strings.Join(n.notes(), " "); strings.Contains(notes, "pw") && !strings.Contains(notes, "user svc") {
		t.Errorf("notes %q", notes)
	}
	// Server addresses as the Nacos client reads them.
	for _, c := range []struct {
		h     harness
		flags meshinit.Nacos
		want  []string
	}{
		{h: harness{vars: map[string]string{"NACOS_SERVER_ADDR": "127.0.0.1, nacos-1.nacos:9848,[fd00::5]"}},
			want: []string{"http://127.0.0.1:8848/nacos", "http://nacos-1.nacos:9848/nacos", "http://[fd00::5]:8848/nacos"}},
		{flags: meshinit.Nacos{ServerURL: "nacos,https://nacos.example"}, want: []string{"http://nacos:8848/nacos", "https://nacos.example/nacos"}},
		{want: []string{"http://127.0.0.1:8848/nacos"}},
	} {
		c.h.vars = mergeVars(c.h.vars, map[string]string{"SPRING_APPLICATION_NAME": "orders", "POD_IP": "10.0.0.1"})
		if n := resolve(t, c.h, meshinit.Registry{Preset: meshinit.PresetNacos, Nacos: c.flags}).(*nacos); !reflect.DeepEqual(n.servers, c.want) {
			t.Errorf("%v %+v: servers %q, want %q", c.h.vars, c.flags, n.servers, c.want)
		}
	}
	_, err := testEnv(harness{vars: map[string]string{"NACOS_SERVER_ADDR": "n:8848", "SPRING_APPLICATION_NAME": "o"}}).resolve(meshinit.Registry{Preset: meshinit.PresetNacos})
	if err == nil || !strings.Contains(err.Error(), "POD_IP") {
		t.Errorf("err = %v", err)
	}
}

func TestDefaultsConsul(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		vars      map[string]string
		flags     meshinit.Consul
		base, ids string
		token     string
	}{
		{vars: map[string]string{"SPRING_APPLICATION_NAME": "orders", "SERVER_PORT": "8080"}, base: "http://127.0.0.1:8500", ids: "orders-8080"},
		{vars: map[string]string{"SPRING_APPLICATION_NAME": "Orders_Svc", "CONSUL_HTTP_ADDR": "10.0.0.1", "CONSUL_HTTP_SSL": "true", "CONSUL_HTTP_TOKEN": "t1"},
			base: "https://10.0.0.1:8500", ids: "Orders-Svc Orders-Svc-8080", token: "t1"},
		{vars: map[string]string{"SPRING_CLOUD_CONSUL_HOST": "consul", "SPRING_CLOUD_CONSUL_PORT": "8501", "SPRING_CLOUD_CONSUL_DISCOVERY_INSTANCEID": "orders:blue", "SPRING_CLOUD_CONSUL_DISCOVERY_ACL_TOKEN": "t2"},
			base: "http://consul:8501", ids: "orders-blue", token: "t2"},
		{vars: map[string]string{"MY_TOKEN": "t3"}, flags: meshinit.Consul{Address: "http://agent:8500", ServiceID: "x:1", TokenEnv: "MY_TOKEN"}, base: "http://agent:8500", ids: "x:1", token: "t3"},
	} {
		r := resolve(t, harness{vars: c.vars}, meshinit.Registry{Preset: meshinit.PresetConsul, Consul: c.flags}).(*consul)
		if r.base != c.base || strings.Join(r.ids, " ") != c.ids || r.header.Get("X-Consul-Token") != c.token {
			t.Errorf("%v: base %s ids %q token %q; want %s %q %q", c.vars, r.base, r.ids, r.header.Get("X-Consul-Token"), c.base, c.ids, c.token)
		}
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
