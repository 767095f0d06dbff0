package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// registration is the app's own registry client, as a Spring Cloud (or
// Dubbo) app has one: it registers the instance when the app starts
// (registries have no readiness gate, seeds/002) and deregisters it when
// the app is told to stop. Its settings come from the same environment
// variables the hook tool reads (docs/lifecycle-hooks.md), so the app and
// the hook agree on the instance, as they do in a real pod.
type registration interface {
	// start registers in the background, retried until the registry
	// accepts (or registerFor passes, or deregister is called).
	start()
	// deregister stops a registration in progress and removes the
	// instance (once: a second call while deregistered does nothing).
	deregister()
	// state is "registering", "registered", "register-failed" or
	// "deregistered".
	state() string
}

// statusRegistry is what Spring Cloud Commons' ServiceRegistry adds for
// the service-registry actuator endpoint: setStatus and getStatus, as
// the registry's Spring Cloud implementation does them (actuator.go).
type statusRegistry interface {
	setStatus(ctx context.Context, status string) error
	// getStatus returns the body's value; nil is an empty 200.
	getStatus(ctx context.Context) (any, error)
}

// registerFor bounds how long registration is retried (the registry may be
// reached through the proxy, or start after the app).
const registerFor = 2 * time.Minute

func newRegistration(kind string, getenv func(string) string) (registration, error) {
	port := getenv("SERVER_PORT")
	if port == "" {
		port = "8080"
	}
	ip := getenv("POD_IP")
	if ip == "" {
		return nil, fmt.Errorf("--register=%s needs POD_IP (the downward API's status.podIP)", kind)
	}
	app := getenv("SPRING_APPLICATION_NAME")
	if app == "" && kind != "dubbo" {
		return nil, fmt.Errorf("--register=%s needs SPRING_APPLICATION_NAME", kind)
	}
	switch kind {
	case "eureka":
		// Eureka REST: POST /apps/{APP}, DELETE /apps/{APP}/{id}.
		zones := strings.Split(getenv("EUREKA_CLIENT_SERVICEURL_DEFAULTZONE"), ",")
		base := strings.TrimSuffix(strings.TrimSpace(zones[0]), "/")
		id := getenv("EUREKA_INSTANCE_INSTANCEID")
		if base == "" || id == "" {
			return nil, fmt.Errorf("--register=eureka needs EUREKA_CLIENT_SERVICEURL_DEFAULTZONE and EUREKA_INSTANCE_INSTANCEID")
		}
		APP := strings.ToUpper(app)
		portNum, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("SERVER_PORT %q is not a port", port)
		}
		body, _ := json.Marshal(map[string]any{"instance": map[string]any{
			"instanceId": id, "hostName": ip, "app": APP, "ipAddr": ip, "status": "UP",
			"port":           map[string]any{"$": portNum, "@enabled": "true"},
			"dataCenterInfo": map[string]any{"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
		}})
		instance := base + "/apps/" + url.PathEscape(APP) + "/" + url.PathEscape(id)
		return &eurekaRegistrar{registrar: newRegistrar(kind,
			request{http.MethodPost, base + "/apps/" + url.PathEscape(APP), string(body), "application/json"},
			request{http.MethodDelete, instance, "", ""}),
			instance: instance, dirty: time.Now().UnixMilli()}, nil
	case "nacos":
		// Nacos open API v1: POST and DELETE /v1/ns/instance.
		server, err := nacosServer(getenv("SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR"))
		if err != nil {
			return nil, fmt.Errorf("--register=nacos needs SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR: %v", err)
		}
		add, remove := nacosInstance(server, app, ip, port)
		return &nacosRegistrar{registrar: newRegistrar(kind, add, remove), server: server, app: app, ip: ip, port: port}, nil
	case "consul":
		// Consul agent API, as Spring Cloud Consul registers
		// (ConsulServiceRegistry): PUT /v1/agent/service/register, and
		// PUT /v1/agent/service/deregister/{id} on shutdown.
		host, agentPort := getenv("SPRING_CLOUD_CONSUL_HOST"), getenv("SPRING_CLOUD_CONSUL_PORT")
		if host == "" {
			host = "localhost"
		}
		if agentPort == "" {
			agentPort = "8500"
		}
		id := getenv("SPRING_CLOUD_CONSUL_DISCOVERY_INSTANCEID")
		if id == "" {
			id = app + ":" + port
		}
		id = normalizeForDNS(id)
		portNum, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("SERVER_PORT %q is not a port", port)
		}
		base := "http://" + host + ":" + agentPort
		body, _ := json.Marshal(map[string]any{"ID": id, "Name": app, "Address": ip, "Port": portNum})
		return newRegistrar(kind, request{http.MethodPut, base + "/v1/agent/service/register", string(body), "application/json"},
			request{http.MethodPut, base + "/v1/agent/service/deregister/" + url.PathEscape(id), "", ""}), nil
	case "dubbo":
		return newDubbo(getenv, ip)
	}
	return nil, fmt.Errorf("--register: unknown registry %q (eureka, nacos, consul or dubbo)", kind)
}

// nacosServer is the first address of a Nacos server-addr list, with
// http:// and the /nacos context path when they are not given.
func nacosServer(addr string) (string, error) {
	server := strings.TrimSpace(strings.Split(addr, ",")[0])
	if server == "" {
		return "", fmt.Errorf("no address")
	}
	if !strings.Contains(server, "://") {
		if !strings.Contains(server, ":") {
			server += ":8848"
		}
		server = "http://" + server
	}
	if u, err := url.Parse(server); err == nil && (u.Path == "" || u.Path == "/") {
		server = strings.TrimSuffix(server, "/") + "/nacos"
	}
	return server, nil
}

// nacosInstance is the register and deregister calls of one instance.
func nacosInstance(server, service, ip, port string) (add, remove request) {
	q := url.Values{"serviceName": {service}, "groupName": {"DEFAULT_GROUP"}, "clusterName": {"DEFAULT"},
		"ip": {ip}, "port": {port}, "ephemeral": {"true"}}
	addQ := url.Values{"healthy": {"true"}, "enabled": {"true"}, "weight": {"1.0"}}
	for k, v := range q {
		addQ[k] = v
	}
	return request{http.MethodPost, server + "/v1/ns/instance?" + addQ.Encode(), "", ""},
		request{http.MethodDelete, server + "/v1/ns/instance?" + q.Encode(), "", ""}
}

// normalizeForDNS is Spring Cloud Consul's normalizeForDns: every run of
// characters that are not letters or digits becomes one '-'. The hook has
// the same rule (cmd/mesh-init/hook's normalizeForDNS) to find the id this
// app registers under; the test app keeps its own copy, written from
// Spring's source, so that the two are checked against each other rather
// than agreeing by construction.
func normalizeForDNS(s string) string {
	var b strings.Builder
	dash := false
	for _, c := range s {
		if unicode.IsLetter(c) || unicode.IsDigit(c) {
			b.WriteRune(c)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimRight(b.String(), "-")
}

type request struct{ method, url, body, contentType string }

// do sends one request (2s at most) and returns "<status> <body>"; an
// answer other than 2xx is an error.
func do(ctx context.Context, q request, header http.Header) (string, error) {
	var body io.Reader
	if q.body != "" {
		body = strings.NewReader(q.body)
	}
	req, err := http.NewRequestWithContext(ctx, q.method, q.url, body)
	if err != nil {
		return "", err
	}
	if q.contentType != "" {
		req.Header.Set("Content-Type", q.contentType)
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	answer := fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	if resp.StatusCode/100 != 2 {
		return answer, fmt.Errorf("%s %s -> %.300s", q.method, q.url, answer)
	}
	return answer, nil
}

// registrar is one registration: a register call retried until accepted,
// and a deregister call.
type registrar struct {
	kind        string
	add, remove request

	mu     sync.Mutex
	st     string
	cancel context.CancelFunc
	done   chan struct{}
}

func newRegistrar(kind string, add, remove request) *registrar {
	return &registrar{kind: kind, add: add, remove: remove, st: "deregistered"}
}

func (r *registrar) state() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

func (r *registrar) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st == "registering" || r.st == "registered" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), registerFor)
	done := make(chan struct{})
	r.st, r.cancel, r.done = "registering", cancel, done
	go func() {
		defer close(done)
		defer cancel()
		var last error
		for {
			answer, err := do(ctx, r.add, nil)
			if err == nil {
				r.set("registered")
				record("registered", fmt.Sprintf("%s: %s %s -> %s", r.kind, r.add.method, r.add.url, answer))
				return
			}
			last = err
			select {
			case <-ctx.Done():
				r.set("register-failed")
				record("register-failed", fmt.Sprintf("%s: stopped or gave up after %s: %v", r.kind, registerFor, last))
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
}

func (r *registrar) set(st string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st == "registering" {
		r.st = st
	}
}

// deregister is what a Spring app's registry client does on shutdown:
// one request, best effort.
func (r *registrar) deregister() {
	r.mu.Lock()
	cancel, done, was := r.cancel, r.done, r.st
	r.st = "deregistered"
	r.mu.Unlock()
	if was == "deregistered" {
		return
	}
	if cancel != nil {
		cancel()
		<-done
	}
	ctx, stop := context.WithTimeout(context.Background(), 3*time.Second)
	defer stop()
	answer, err := do(ctx, r.remove, nil)
	if err != nil {
		record("deregister-failed", fmt.Sprintf("%s: %v", r.kind, err))
		return
	}
	record("deregistered", fmt.Sprintf("%s: %s %s -> %s", r.kind, r.remove.method, r.remove.url, answer))
}

// eurekaRegistrar adds Spring Cloud Netflix's EurekaServiceRegistry
// status calls to the Eureka registration.
type eurekaRegistrar struct {
	*registrar
	instance string // <server>/apps/{APP}/{id}
	dirty    int64  // lastDirtyTimestamp
}

// setStatus is EurekaServiceRegistry.setStatus: CANCEL_OVERRIDE deletes
// the override (CloudEurekaClient.cancelOverrideStatus: DELETE
// .../status, no value); any other status is InstanceStatus.toEnum's
// (UNKNOWN for a name it does not know), PUT .../status?value= through
// the app's Eureka client (CloudEurekaClient.setStatus). The server's
// answer is not looked at; a transport failure is an exception (500).
func (e *eurekaRegistrar) setStatus(ctx context.Context, status string) error {
	ts := "lastDirtyTimestamp=" + strconv.FormatInt(e.dirty, 10)
	if strings.EqualFold(status, "CANCEL_OVERRIDE") {
		_, err := do(ctx, request{http.MethodDelete, e.instance + "/status?" + ts, "", ""}, nil)
		return transportOnly(err)
	}
	s := strings.ToUpper(status)
	switch s {
	case "UP", "DOWN", "STARTING", "OUT_OF_SERVICE", "UNKNOWN":
	default:
		s = "UNKNOWN"
	}
	_, err := do(ctx, request{http.MethodPut, e.instance + "/status?value=" + s + "&" + ts, "", ""}, nil)
	return transportOnly(err)
}

// transportOnly keeps an error only when no answer came (the Eureka
// client's EurekaHttpResponse carries any status without throwing).
func transportOnly(err error) error {
	if err != nil && !strings.Contains(err.Error(), " -> ") {
		return err
	}
	return nil
}

// getStatus is EurekaServiceRegistry.getStatus: the instance as the
// server holds it (CloudEurekaClient.getInstanceInfo: GET
// /apps/{APP}/{id}), its status and overriddenStatus; {"status":"UNKNOWN"}
// when the server does not answer 2xx.
func (e *eurekaRegistrar) getStatus(ctx context.Context) (any, error) {
	answer, err := do(ctx, request{http.MethodGet, e.instance, "", ""}, nil)
	if err != nil {
		if transportOnly(err) != nil {
			return nil, err
		}
		return map[string]string{"status": "UNKNOWN"}, nil
	}
	var doc struct {
		Instance struct {
			Status           string `json:"status"`
			OverriddenStatus string `json:"overriddenStatus"`
		} `json:"instance"`
	}
	_, body, _ := strings.Cut(answer, " ")
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		return nil, fmt.Errorf("GET %s: %v", e.instance, err)
	}
	return map[string]string{"status": doc.Instance.Status, "overriddenStatus": doc.Instance.OverriddenStatus}, nil
}

// nacosRegistrar adds Spring Cloud Alibaba's NacosServiceRegistry status
// calls to the Nacos registration.
type nacosRegistrar struct {
	*registrar
	server, app, ip, port string
}

// setStatus is NacosServiceRegistry.setStatus: UP or DOWN (any case)
// only, anything else is a warning and nothing is done (the endpoint
// still answers 200); the instance, enabled or not, goes to
// NamingMaintainService.updateInstance, which the Java client sends as
// the v1 PUT with its own User-Agent. A failure is a RuntimeException
// ("update nacos instance status fail": 500).
func (n *nacosRegistrar) setStatus(ctx context.Context, status string) error {
	s := strings.ToUpper(status)
	if s != "UP" && s != "DOWN" {
		record("warning", "can't support status "+status+",please choose UP or DOWN")
		return nil
	}
	q := url.Values{"serviceName": {"DEFAULT_GROUP@@" + n.app}, "groupName": {"DEFAULT_GROUP"}, "namespaceId": {"public"},
		"clusterName": {"DEFAULT"}, "ip": {n.ip}, "port": {n.port}, "weight": {"1.0"}, "enabled": {strconv.FormatBool(s == "UP")},
		"healthy": {"true"}, "ephemeral": {"true"}, "metadata": {"{}"}}
	if _, err := do(ctx, request{http.MethodPut, n.server + "/v1/ns/instance?" + q.Encode(), "", ""},
		http.Header{"User-Agent": {"Nacos-Java-Client:v2.4.3"}}); err != nil {
		return fmt.Errorf("update nacos instance status fail: %w", err)
	}
	return nil
}

// getStatus is NacosServiceRegistry.getStatus: this instance (its ip and
// port) in the client's list of the service, "UP" when enabled, "DOWN"
// when not; null (an empty 200) when it is not listed or the list fails.
func (n *nacosRegistrar) getStatus(ctx context.Context) (any, error) {
	q := url.Values{"serviceName": {n.app}, "groupName": {"DEFAULT_GROUP"}}
	answer, err := do(ctx, request{http.MethodGet, n.server + "/v1/ns/instance/list?" + q.Encode(), "", ""}, nil)
	if err != nil {
		record("warning", "get all instance of "+n.app+" error: "+err.Error())
		return nil, nil
	}
	var doc struct {
		Hosts []struct {
			IP      string `json:"ip"`
			Port    int    `json:"port"`
			Enabled bool   `json:"enabled"`
		} `json:"hosts"`
	}
	_, body, _ := strings.Cut(answer, " ")
	if json.Unmarshal([]byte(body), &doc) != nil {
		return nil, nil
	}
	for _, h := range doc.Hosts {
		if strings.EqualFold(h.IP, n.ip) && strconv.Itoa(h.Port) == n.port {
			if h.Enabled {
				return "UP", nil
			}
			return "DOWN", nil
		}
	}
	return nil, nil
}
