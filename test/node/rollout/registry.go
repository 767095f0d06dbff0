package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Registry is a service registry as the rollout sees it: where the app
// registers (the environment its container and the hook tool read), and
// what a consumer's fetch returns. Any server that speaks the registry's
// public API plugs in by its URL: test/registry's stand-ins served from a
// pod (test/node/cmd/registry), or a real registry. The consumer side here
// is written from the registries' public APIs.
type Registry interface {
	// Name says which registry API and where, for reports.
	Name() string
	// Preset is the hook tool's preset that takes an instance offline in
	// it (sidecar-injector.io/registry).
	Preset() string
	// Env is what the app container needs so that the app registers
	// itself and the hook finds the same instance (the variables a Spring
	// app and the hook tool both read; docs/lifecycle-hooks.md), for the
	// application name app.
	Env(app string) []corev1.EnvVar
	// Instances is what a consumer's fetch of app returns: the instances
	// it would call (Eureka: status UP; Nacos: enabled and healthy).
	Instances(ctx context.Context, app string) ([]netip.AddrPort, error)
}

// RegistryPoll emulates a registry's consumer: it fetches the app's
// instances every Interval and uses the last answer in between, as a
// Eureka client's registry fetch (30s by default, plus the server's
// response cache and the load balancer's list) or a Nacos client's
// subscription and poll do; Interval stands for all of those caches
// together.
type RegistryPoll struct {
	Registry Registry
	App      string
	Interval time.Duration
}

// Name implements Discovery.
func (r *RegistryPoll) Name() string {
	return fmt.Sprintf("%s: consumer fetch of %s every %s", r.Registry.Name(), r.App, r.Interval)
}

// Run implements Discovery. A failed fetch keeps the last view, as
// registry clients do.
func (r *RegistryPoll) Run(ctx context.Context, update func([]netip.AddrPort)) error {
	for {
		fctx, cancel := context.WithTimeout(ctx, r.Interval+time.Second)
		view, err := r.Registry.Instances(fctx, r.App)
		cancel()
		if err == nil {
			update(sorted(view))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.Interval):
		}
	}
}

// fieldEnv is an environment variable from the downward API.
func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

func getJSON(ctx context.Context, u string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusNotFound {
		return errNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %.200s", u, resp.StatusCode, b)
	}
	return json.Unmarshal(b, into)
}

var errNotFound = fmt.Errorf("not found")

// Eureka is a Eureka server's REST API (Netflix Eureka's /eureka/v2 API
// as Spring Cloud Netflix serves it under /eureka): apps register with
// POST {URL}/apps/{APP}, the hook's eureka preset sets
// PUT {URL}/apps/{APP}/{id}/status?value=OUT_OF_SERVICE, and consumers
// fetch GET {URL}/apps/{APP} and call the instances whose status is UP.
type Eureka struct {
	// URL is the service URL, as EUREKA_CLIENT_SERVICEURL_DEFAULTZONE
	// (http://host:8761/eureka).
	URL string
}

// Name implements Registry.
func (e Eureka) Name() string { return "Eureka API at " + e.URL }

// Preset implements Registry.
func (Eureka) Preset() string { return "eureka" }

// Env implements Registry: Spring Cloud Netflix's variables; the instance
// id is the pod's name (EUREKA_INSTANCE_INSTANCEID, from the downward API).
func (e Eureka) Env(app string) []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: "SPRING_APPLICATION_NAME", Value: app},
		{Name: "SERVER_PORT", Value: "8080"},
		{Name: "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE", Value: e.URL},
		fieldEnv("EUREKA_INSTANCE_INSTANCEID", "metadata.name"),
		fieldEnv("POD_IP", "status.podIP"),
	}
}

// Instances implements Registry.
func (e Eureka) Instances(ctx context.Context, app string) ([]netip.AddrPort, error) {
	var doc struct {
		Application struct {
			Instance json.RawMessage `json:"instance"`
		} `json:"application"`
	}
	err := getJSON(ctx, strings.TrimSuffix(e.URL, "/")+"/apps/"+url.PathEscape(strings.ToUpper(app)), &doc)
	if err == errNotFound {
		return nil, nil // no instance registered
	}
	if err != nil {
		return nil, err
	}
	type instance struct {
		IPAddr string          `json:"ipAddr"`
		Status string          `json:"status"`
		Port   json.RawMessage `json:"port"`
	}
	// Eureka's JSON (XStream) gives one instance as an object, several as
	// an array.
	var list []instance
	if raw := strings.TrimSpace(string(doc.Application.Instance)); strings.HasPrefix(raw, "{") {
		var one instance
		if err := json.Unmarshal(doc.Application.Instance, &one); err != nil {
			return nil, err
		}
		list = append(list, one)
	} else if raw != "" && raw != "null" {
		if err := json.Unmarshal(doc.Application.Instance, &list); err != nil {
			return nil, err
		}
	}
	var out []netip.AddrPort
	for _, in := range list {
		if in.Status != "UP" {
			continue
		}
		var port struct {
			Value json.RawMessage `json:"$"`
		}
		if err := json.Unmarshal(in.Port, &port); err != nil {
			continue
		}
		p, err := strconv.Atoi(strings.Trim(string(port.Value), `"`))
		ip, err2 := netip.ParseAddr(in.IPAddr)
		if err != nil || err2 != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(ip, uint16(p)))
	}
	return out, nil
}

// Nacos is a Nacos server's open API v1: apps register with
// POST /nacos/v1/ns/instance, the hook's nacos preset sets enabled=false
// with PUT /nacos/v1/ns/instance, and consumers list
// GET /nacos/v1/ns/instance/list?serviceName=.. and call the hosts that
// are enabled and healthy.
type Nacos struct {
	// Addr is the server address as SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR
	// (host:port; the context path /nacos is implied).
	Addr string
}

// Name implements Registry.
func (n Nacos) Name() string { return "Nacos API at " + n.Addr }

// Preset implements Registry.
func (Nacos) Preset() string { return "nacos" }

// Env implements Registry: Spring Cloud Alibaba's variables.
func (n Nacos) Env(app string) []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: "SPRING_APPLICATION_NAME", Value: app},
		{Name: "SERVER_PORT", Value: "8080"},
		{Name: "SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR", Value: n.Addr},
		fieldEnv("POD_IP", "status.podIP"),
	}
}

// Instances implements Registry.
func (n Nacos) Instances(ctx context.Context, app string) ([]netip.AddrPort, error) {
	var doc struct {
		Hosts []struct {
			IP      string  `json:"ip"`
			Port    int     `json:"port"`
			Healthy bool    `json:"healthy"`
			Enabled bool    `json:"enabled"`
			Weight  float64 `json:"weight"`
		} `json:"hosts"`
	}
	q := url.Values{"serviceName": {app}, "healthyOnly": {"false"}}
	if err := getJSON(ctx, "http://"+n.Addr+"/nacos/v1/ns/instance/list?"+q.Encode(), &doc); err != nil {
		if err == errNotFound {
			return nil, nil
		}
		return nil, err
	}
	var out []netip.AddrPort
	for _, h := range doc.Hosts {
		ip, err := netip.ParseAddr(h.IP)
		if err != nil || !h.Enabled || !h.Healthy || h.Weight <= 0 {
			continue
		}
		out = append(out, netip.AddrPortFrom(ip, uint16(h.Port)))
	}
	return out, nil
}

// Consul is a Consul agent's HTTP API: the app registers its service with
// the agent (PUT /v1/agent/service/register, as Spring Cloud Consul does),
// the hook's consul preset puts it in maintenance
// (PUT /v1/agent/service/maintenance/{id}?enable=true) or deregisters it,
// and consumers ask GET /v1/health/service/{name}?passing and call the
// instances whose checks all pass (DNS and Consul's own clients ask the
// same way; Spring Cloud Consul only with query-passing=true).
type Consul struct {
	// Addr is the agent, host:port.
	Addr string
}

// Name implements Registry.
func (c Consul) Name() string { return "Consul API at " + c.Addr }

// Preset implements Registry.
func (Consul) Preset() string { return "consul" }

// Env implements Registry: Spring Cloud Consul's variables (the agent's
// host and port) and the instance id, the pod's name: one agent serves
// every pod here, where each node has its own in a cluster, so Spring
// Cloud Consul's default id (app-port) would be the same for all.
func (c Consul) Env(app string) []corev1.EnvVar {
	host, port, _ := strings.Cut(c.Addr, ":")
	return []corev1.EnvVar{
		{Name: "SPRING_APPLICATION_NAME", Value: app},
		{Name: "SERVER_PORT", Value: "8080"},
		{Name: "SPRING_CLOUD_CONSUL_HOST", Value: host},
		{Name: "SPRING_CLOUD_CONSUL_PORT", Value: port},
		fieldEnv("SPRING_CLOUD_CONSUL_DISCOVERY_INSTANCEID", "metadata.name"),
		fieldEnv("POD_IP", "status.podIP"),
	}
}

// Instances implements Registry.
func (c Consul) Instances(ctx context.Context, app string) ([]netip.AddrPort, error) {
	var entries []struct {
		Node struct {
			Address string `json:"Address"`
		} `json:"Node"`
		Service struct {
			Address string `json:"Address"`
			Port    int    `json:"Port"`
		} `json:"Service"`
	}
	if err := getJSON(ctx, "http://"+c.Addr+"/v1/health/service/"+url.PathEscape(app)+"?passing", &entries); err != nil {
		if err == errNotFound {
			return nil, nil
		}
		return nil, err
	}
	var out []netip.AddrPort
	for _, e := range entries {
		a := e.Service.Address
		if a == "" {
			a = e.Node.Address // the service's address defaults to its node's
		}
		ip, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(ip, uint16(e.Service.Port)))
	}
	return out, nil
}

// Via is a registry the app's own endpoint changes for the hook: the
// hook's Preset calls the app (Spring Cloud's service-registry actuator
// endpoint, Dubbo's QoS, the EDAS agent in the app's process, an offline
// URL of the app's), and the app changes or removes its registration in
// Registry, where the consumers look.
type Via struct {
	Registry
	// Hook is the preset, What says which endpoint of the app.
	Hook, What string
	// Extra is added to the registry's environment.
	Extra []corev1.EnvVar
}

// Name implements Registry.
func (v Via) Name() string { return v.What + ", then " + v.Registry.Name() }

// Preset implements Registry.
func (v Via) Preset() string { return v.Hook }

// Env implements Registry.
func (v Via) Env(app string) []corev1.EnvVar { return append(v.Registry.Env(app), v.Extra...) }

// Dubbo is a Dubbo 3 provider registered in Nacos: application-level
// (service discovery: the application's name, the instance's ip and
// protocol port) and interface-level (providers:{interface}::), as Dubbo 3
// registers by default (register-mode all). Consumers here read the
// application-level service, as Dubbo 3 consumers prefer it
// (APPLICATION_FIRST). The hook's dubbo preset calls QoS offline in the
// app, which unregisters both.
type Dubbo struct {
	// Nacos is where the provider registers and consumers look.
	Nacos Nacos
}

// Name implements Registry.
func (d Dubbo) Name() string {
	return "Dubbo 3 QoS in the app, application-level discovery in " + d.Nacos.Name()
}

// Preset implements Registry.
func (Dubbo) Preset() string { return "dubbo" }

// Env implements Registry: Dubbo's own variables (dubbo.registry.address,
// dubbo.application.name, dubbo.protocol.port, as Dubbo 3 reads them from
// the environment).
func (d Dubbo) Env(app string) []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: "DUBBO_APPLICATION_NAME", Value: app},
		{Name: "DUBBO_REGISTRY_ADDRESS", Value: "nacos://" + d.Nacos.Addr},
		{Name: "DUBBO_PROTOCOL_PORT", Value: "8080"},
		fieldEnv("POD_IP", "status.podIP"),
	}
}

// Instances implements Registry.
func (d Dubbo) Instances(ctx context.Context, app string) ([]netip.AddrPort, error) {
	return d.Nacos.Instances(ctx, app)
}
