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
)

// registration is the app's own registry client, as a Spring Cloud app
// has one: it registers the instance when the app starts (registries have
// no readiness gate, seeds/002) and deregisters it when the app is told to
// stop. Its settings come from the same environment variables the hook
// tool reads (docs/lifecycle-hooks.md), so the app and the hook agree on
// the instance, as they do in a real pod.
type registration interface {
	register()
	deregister()
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
	if app == "" {
		return nil, fmt.Errorf("--register=%s needs SPRING_APPLICATION_NAME", kind)
	}
	r := &registrar{kind: kind, stop: make(chan struct{})}
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
		r.add = request{http.MethodPost, base + "/apps/" + url.PathEscape(APP), string(body), "application/json"}
		r.remove = request{http.MethodDelete, base + "/apps/" + url.PathEscape(APP) + "/" + url.PathEscape(id), "", ""}
	case "nacos":
		// Nacos open API v1: POST and DELETE /v1/ns/instance.
		server := getenv("SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR")
		if server == "" {
			return nil, fmt.Errorf("--register=nacos needs SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR")
		}
		server = strings.TrimSpace(strings.Split(server, ",")[0])
		if !strings.Contains(server, "://") {
			if !strings.Contains(server, ":") {
				server += ":8848"
			}
			server = "http://" + server
		}
		if u, err := url.Parse(server); err == nil && (u.Path == "" || u.Path == "/") {
			server = strings.TrimSuffix(server, "/") + "/nacos"
		}
		q := url.Values{"serviceName": {app}, "groupName": {"DEFAULT_GROUP"}, "clusterName": {"DEFAULT"},
			"ip": {ip}, "port": {port}, "ephemeral": {"true"}}
		addQ := url.Values{"healthy": {"true"}, "enabled": {"true"}, "weight": {"1.0"}}
		for k, v := range q {
			addQ[k] = v
		}
		r.add = request{http.MethodPost, server + "/v1/ns/instance?" + addQ.Encode(), "", ""}
		r.remove = request{http.MethodDelete, server + "/v1/ns/instance?" + q.Encode(), "", ""}
	default:
		return nil, fmt.Errorf("--register: unknown registry %q (eureka or nacos)", kind)
	}
	return r, nil
}

type request struct{ method, url, body, contentType string }

type registrar struct {
	kind        string
	add, remove request
	stop        chan struct{}
	stopOnce    sync.Once
	done        sync.WaitGroup
}

func (r *registrar) do(ctx context.Context, q request) (string, error) {
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
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	answer := fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	if resp.StatusCode/100 != 2 {
		return answer, fmt.Errorf("%s %s -> %s", q.method, q.url, answer)
	}
	return answer, nil
}

// register tries until the registry accepts, registerFor passes or the
// app is told to stop.
func (r *registrar) register() {
	r.done.Add(1)
	defer r.done.Done()
	ctx, cancel := context.WithTimeout(context.Background(), registerFor)
	defer cancel()
	var last error
	for {
		answer, err := r.do(ctx, r.add)
		if err == nil {
			record("registered", fmt.Sprintf("%s: %s %s -> %s", r.kind, r.add.method, r.add.url, answer))
			return
		}
		last = err
		select {
		case <-r.stop:
			record("register-failed", fmt.Sprintf("%s: stopped before the registry accepted: %v", r.kind, last))
			return
		case <-ctx.Done():
			record("register-failed", fmt.Sprintf("%s: gave up after %s: %v", r.kind, registerFor, last))
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// deregister is what a Spring app's registry client does on shutdown:
// one request, best effort.
func (r *registrar) deregister() {
	r.stopOnce.Do(func() { close(r.stop) })
	r.done.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	answer, err := r.do(ctx, r.remove)
	if err != nil {
		record("deregister-failed", fmt.Sprintf("%s: %v", r.kind, err))
		return
	}
	record("deregistered", fmt.Sprintf("%s: %s %s -> %s", r.kind, r.remove.method, r.remove.url, answer))
}
