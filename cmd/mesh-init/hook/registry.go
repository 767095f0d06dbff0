package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// environment is what the hook learns about the app container it runs in.
// The hook runs inside the app container, so it sees the app's variables.
type environment struct {
	getenv   func(string) string
	hostname func() (string, error)
	addrs    func() ([]net.Addr, error)
	readFile func(string) ([]byte, error)
}

// lookup returns the first non-empty variable among names and its name.
func (e environment) lookup(names ...string) (value, name string) {
	for _, n := range names {
		if v := strings.TrimSpace(e.getenv(n)); v != "" {
			return v, n
		}
	}
	return "", ""
}

// port returns the first variable among names that holds a port. Values that
// are not ports are skipped with a note: Kubernetes service links put
// SERVER_PORT=tcp://10.0.0.1:80 into pods when a Service is named "server".
func (e environment) port(notes *[]string, names ...string) (int, string) {
	for _, n := range names {
		v := strings.TrimSpace(e.getenv(n))
		if v == "" {
			continue
		}
		p, err := strconv.Atoi(v)
		if err != nil || !meshinit.IsPort(int64(p)) {
			*notes = append(*notes, fmt.Sprintf("ignored %s=%q (not a port)", n, v))
			continue
		}
		return p, n
	}
	return 0, ""
}

// podIPs lists the pod's addresses: POD_IP first when set (the downward API
// is authoritative), then the interfaces' global unicast addresses, IPv4
// before IPv6 as Spring Cloud's InetUtils and the Nacos client prefer.
func (e environment) podIPs() []string {
	var ips []string
	if v := strings.TrimSpace(e.getenv("POD_IP")); net.ParseIP(v) != nil {
		ips = append(ips, v)
	}
	var v4, v6 []string
	if e.addrs != nil {
		addrs, _ := e.addrs()
		for _, a := range addrs {
			var ip net.IP
			switch a := a.(type) {
			case *net.IPNet:
				ip = a.IP
			case *net.IPAddr:
				ip = a.IP
			}
			if ip == nil || !ip.IsGlobalUnicast() {
				continue
			}
			if ip.To4() != nil {
				v4 = append(v4, ip.String())
			} else {
				v6 = append(v6, ip.String())
			}
		}
	}
	for _, ip := range append(v4, v6...) {
		if !slices.Contains(ips, ip) {
			ips = append(ips, ip)
		}
	}
	return ips
}

// hostsName is the first name /etc/hosts gives the pod's IPv4 address: what
// Java's InetAddress.getHostName returns for it, and so what Spring Cloud
// uses as spring.cloud.client.hostname. Kubelet writes the pod's FQDN there
// first when the pod has a subdomain (StatefulSets behind a headless
// Service), and the plain hostname otherwise.
func (e environment) hostsName() string {
	if e.readFile == nil {
		return ""
	}
	b, err := e.readFile("/etc/hosts")
	if err != nil {
		return ""
	}
	for _, ip := range e.podIPs() {
		if net.ParseIP(ip).To4() == nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == ip {
				return f[1]
			}
		}
	}
	return ""
}

// offlineRequest resolves a preset into the request that takes the instance
// offline, filling defaults from the environment. It returns nil for none.
func (e environment) offlineRequest(r meshinit.Registry) (*request, error) {
	switch r.Preset {
	case meshinit.PresetNone, "":
		return nil, nil
	case meshinit.PresetDubbo:
		return e.dubbo(r.Dubbo), nil
	case meshinit.PresetSpringCloud:
		return e.springCloud(r.SpringCloud), nil
	case meshinit.PresetEureka:
		return e.eureka(r.Eureka)
	case meshinit.PresetNacos:
		return e.nacos(r.Nacos)
	case meshinit.PresetEDAS:
		u := r.EDAS.URL
		if u == "" {
			u = "http://localhost:54199/offline"
		}
		return &request{what: "edas offline", method: http.MethodGet, bases: []string{u}, paths: []string{""}}, nil
	case meshinit.PresetHTTP:
		return httpOffline(r.HTTP), nil
	}
	return nil, fmt.Errorf("unknown registry preset %q", r.Preset)
}

func (e environment) dubbo(d meshinit.Dubbo) *request {
	var notes []string
	port, from := int(d.Port), "--dubbo-port"
	if port == 0 {
		// Dubbo reads dubbo.application.qos-port from the environment in
		// this OS style itself; the second is Spring Boot's form.
		port, from = e.port(&notes, "DUBBO_APPLICATION_QOS_PORT", "DUBBO_APPLICATION_QOSPORT")
	}
	if port == 0 {
		port, from = 22222, "default"
	}
	notes = append(notes, fmt.Sprintf("QoS port %d (%s)", port, from))
	return &request{
		what:   "dubbo offline",
		method: http.MethodGet,
		bases:  []string{"http://127.0.0.1:" + strconv.Itoa(port)},
		paths:  []string{"/offline"},
		// QoS answers 200 "OK", or 200 "service not found" when the app
		// exports no provider service (nothing to take offline); 404 for an
		// unknown command, 403 when QoS refuses the caller, 500 with the
		// exception message when the command fails: judgeStatus reads
		// these as they are meant.
		notes: notes,
	}
}

func (e environment) springCloud(s meshinit.SpringCloud) *request {
	var notes []string
	mgmtPort, _ := e.port(&notes, "MANAGEMENT_SERVER_PORT")
	serverPort, _ := e.port(&notes, "SERVER_PORT")
	port, from := int(s.Port), "--spring-port"
	switch {
	case port != 0:
	case mgmtPort != 0:
		port, from = mgmtPort, "MANAGEMENT_SERVER_PORT"
	case serverPort != 0:
		port, from = serverPort, "SERVER_PORT"
	default:
		port, from = 8080, "default"
	}
	base, baseFrom := s.BasePath, "--spring-base-path"
	if base == "" {
		base, baseFrom = e.lookup("MANAGEMENT_ENDPOINTS_WEB_BASE_PATH")
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
		// Actuator sits behind the servlet context path of whichever server
		// it is on: the app's, or the management server's own.
		var ctxPath, ctxFrom string
		if mgmtPort != 0 && mgmtPort != serverPort {
			ctxPath, ctxFrom = e.lookup("MANAGEMENT_SERVER_BASE_PATH", "MANAGEMENT_SERVER_SERVLET_CONTEXT_PATH")
		} else {
			ctxPath, ctxFrom = e.lookup("SERVER_SERVLET_CONTEXT_PATH")
		}
		if ctxPath = strings.TrimRight(ctxPath, "/"); ctxPath != "" {
			base = "/" + strings.TrimLeft(ctxPath, "/") + "/" + strings.TrimLeft(base, "/")
			baseFrom += " behind " + ctxFrom
		}
	}
	base = strings.TrimRight(base, "/")
	status := s.Status
	if status == "" {
		status = "OUT_OF_SERVICE"
	}
	body, _ := json.Marshal(map[string]string{"status": status})
	notes = append(notes, fmt.Sprintf("actuator port %d (%s), base path %s (%s), status %s", port, from, base+"/", baseFrom, status))
	return &request{
		what:   "spring-cloud offline",
		method: http.MethodPost,
		bases:  []string{"http://127.0.0.1:" + strconv.Itoa(port)},
		// The endpoint is "serviceregistry" since Spring Cloud 2020.0 and
		// was "service-registry" before.
		paths:  []string{base + "/serviceregistry", base + "/service-registry"},
		header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}},
		body:   string(body),
		hint:   "is the endpoint exposed? management.endpoints.web.exposure.include=serviceregistry, or service-registry before Spring Cloud 2020.0",
		judge: func(status int, body string) verdict {
			if status == http.StatusNotFound {
				// The endpoint itself answers 404 "no registration found"
				// when the app registered nowhere; any other 404 means the
				// endpoint is not there (other name, or not exposed).
				if strings.Contains(body, "no registration found") {
					return rejected
				}
				return notHere
			}
			return judgeStatus(status)
		},
		notes: notes,
	}
}

func (e environment) eureka(c meshinit.Eureka) (*request, error) {
	var notes []string
	// Both are comma-separated zones, tried in turn on retries.
	servers, from := meshinit.SplitList(c.ServerURL), "--eureka-server-url"
	if len(servers) == 0 {
		v, n := e.lookup("EUREKA_CLIENT_SERVICEURL_DEFAULTZONE")
		servers, from = meshinit.SplitList(v), n
	}
	if len(servers) == 0 {
		return nil, errors.New("no Eureka server URL: set --eureka-server-url or EUREKA_CLIENT_SERVICEURL_DEFAULTZONE in the app container")
	}
	for i, s := range servers {
		if err := meshinit.CheckHTTPURL(s); err != nil {
			return nil, fmt.Errorf("eureka server URL from %s: %w", from, err)
		}
		servers[i] = strings.TrimRight(s, "/")
	}
	appName, appFrom := c.AppName, "--eureka-app-name"
	if appName == "" {
		// eureka.instance.appname wins over spring.application.name.
		appName, appFrom = e.lookup("EUREKA_INSTANCE_APPNAME", "SPRING_APPLICATION_NAME")
	}
	if appName == "" {
		return nil, errors.New("no Eureka app name: set --eureka-app-name or SPRING_APPLICATION_NAME in the app container")
	}
	// Eureka stores application names upper-cased.
	app := strings.ToUpper(appName)
	ids, idFrom := e.eurekaInstanceIDs(c.InstanceID)
	if len(ids) == 0 {
		return nil, errors.New("no Eureka instance id: set --eureka-instance-id or EUREKA_INSTANCE_INSTANCEID in the app container")
	}
	paths := make([]string, len(ids))
	for i, id := range ids {
		paths[i] = "/apps/" + url.PathEscape(app) + "/" + url.PathEscape(id) + "/status?value=OUT_OF_SERVICE"
	}
	notes = append(notes, fmt.Sprintf("server %s (%s), app %s (%s), instance id %s (%s)",
		meshinit.RedactURL(servers[0]), from, app, appFrom, strings.Join(ids, " or "), idFrom))
	return &request{
		what:   "eureka offline",
		method: http.MethodPut,
		bases:  servers,
		paths:  paths,
		header: http.Header{"Accept": {"application/json"}},
		hint:   "Eureka knows no such instance; set --eureka-instance-id or EUREKA_INSTANCE_INSTANCEID to the registered id",
		// Eureka answers 200 when the status is set, 404 when it does not
		// know the instance, 500 when the update failed.
		judge: func(status int, _ string) verdict {
			if status == http.StatusNotFound {
				return notHere
			}
			return judgeStatus(status)
		},
		notes: notes,
	}, nil
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
	if v, n := e.lookup("EUREKA_INSTANCE_INSTANCEID", "EUREKA_INSTANCE_INSTANCE_ID"); v != "" {
		return []string{v}, n
	}
	var hosts []string
	addHost := func(h string) {
		if h = strings.TrimSpace(h); h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	addHost(e.getenv("SPRING_CLOUD_CLIENT_HOSTNAME"))
	addHost(e.hostsName())
	addHost(e.getenv("HOSTNAME"))
	if e.hostname != nil {
		if h, err := e.hostname(); err == nil {
			addHost(h)
		}
	}
	appName, _ := e.lookup("SPRING_APPLICATION_NAME")
	index, indexFrom := e.lookup("SPRING_APPLICATION_INSTANCE_ID")
	if index == "" {
		var ignored []string
		if p, _ := e.port(&ignored, "SERVER_PORT"); p != 0 {
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

func (e environment) nacos(c meshinit.Nacos) (*request, error) {
	var notes []string
	servers, from := meshinit.SplitList(c.ServerURL), "--nacos-server-url"
	if len(servers) == 0 {
		var v string
		v, from = e.lookup("SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR", "SPRING_CLOUD_NACOS_SERVER_ADDR", "NACOS_SERVER_ADDR")
		servers = meshinit.SplitList(v)
	}
	if len(servers) == 0 {
		return nil, errors.New("no Nacos server: set --nacos-server-url or NACOS_SERVER_ADDR or SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR in the app container")
	}
	for i, s := range servers {
		base, err := meshinit.NacosBaseURL(s)
		if err != nil {
			return nil, fmt.Errorf("nacos server from %s: %w", from, err)
		}
		servers[i] = base
	}
	service, serviceFrom := c.ServiceName, "--nacos-service-name"
	if service == "" {
		service, serviceFrom = e.lookup("SPRING_CLOUD_NACOS_DISCOVERY_SERVICE", "SPRING_APPLICATION_NAME")
	}
	if service == "" {
		return nil, errors.New("no Nacos service name: set --nacos-service-name or SPRING_APPLICATION_NAME in the app container")
	}
	group := c.GroupName
	if group == "" {
		group, _ = e.lookup("SPRING_CLOUD_NACOS_DISCOVERY_GROUP")
	}
	if group == "" {
		group = "DEFAULT_GROUP"
	}
	namespace := c.NamespaceID
	if namespace == "" {
		namespace, _ = e.lookup("SPRING_CLOUD_NACOS_DISCOVERY_NAMESPACE")
	}
	cluster := c.ClusterName
	if cluster == "" {
		cluster, _ = e.lookup("SPRING_CLOUD_NACOS_DISCOVERY_CLUSTERNAME", "SPRING_CLOUD_NACOS_DISCOVERY_CLUSTER_NAME")
	}
	if cluster == "" {
		cluster = "DEFAULT"
	}
	ip, ipFrom := e.lookup("SPRING_CLOUD_NACOS_DISCOVERY_IP")
	if ip == "" {
		if ips := e.podIPs(); len(ips) > 0 {
			ip, ipFrom = ips[0], "pod address"
			if v := strings.TrimSpace(e.getenv("POD_IP")); v == ip {
				ipFrom = "POD_IP"
			}
		}
	}
	if ip == "" {
		return nil, errors.New("no instance IP: set POD_IP in the app container (downward API status.podIP)")
	}
	port, portFrom := int(c.Port), "--nacos-port"
	if port == 0 {
		port, portFrom = e.port(&notes, "SPRING_CLOUD_NACOS_DISCOVERY_PORT", "SERVER_PORT")
	}
	if port == 0 {
		port, portFrom = 8080, "default"
	}
	q := url.Values{}
	q.Set("serviceName", service)
	q.Set("groupName", group)
	if namespace != "" {
		q.Set("namespaceId", namespace)
	}
	q.Set("clusterName", cluster)
	q.Set("ip", ip)
	q.Set("port", strconv.Itoa(port))
	q.Set("enabled", "false")
	q.Set("ephemeral", "true")
	notes = append(notes, fmt.Sprintf("server %s (%s), service %s (%s), instance %s (%s) port %d (%s)",
		meshinit.RedactURL(servers[0]), from, service, serviceFrom, ip, ipFrom, port, portFrom))
	return &request{
		what:   "nacos offline",
		method: http.MethodPut,
		bases:  servers,
		paths:  []string{"/v1/ns/instance?" + q.Encode()},
		// Nacos answers 200 "ok"; errors come as 400 or 500 with
		// "caused: ..." text.
		judge: func(status int, body string) verdict {
			if status >= 200 && status < 300 && strings.TrimSpace(body) != "ok" {
				return rejected
			}
			return judgeStatus(status)
		},
		notes: notes,
	}, nil
}

func httpOffline(h meshinit.HTTPCall) *request {
	method := h.Method
	if method == "" {
		method = http.MethodPost
	}
	header := http.Header{}
	for k, v := range h.Headers {
		header.Set(k, v)
	}
	expect := h.ExpectStatus
	return &request{
		what:   "http offline",
		method: method,
		bases:  []string{h.URL},
		paths:  []string{""},
		header: header,
		body:   h.Body,
		judge: func(status int, _ string) verdict {
			if len(expect) == 0 {
				return judgeStatus(status)
			}
			if slices.Contains(expect, status) {
				return accepted
			}
			if v := judgeStatus(status); v == transient {
				return v
			}
			return rejected
		},
	}
}
