package hook

import (
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

const testSleep = 300 * time.Millisecond

// checkOfflineThenSleep asserts the ordering every prestop run must have:
// the (last) offline request arrives before the sleep starts, and the whole
// sleep still follows it.
func checkOfflineThenSleep(t *testing.T, r result, req recorded, offlineBound time.Duration) {
	t.Helper()
	within(t, "reaching the registry", req.At.Sub(r.start), 0, offlineBound)
	within(t, "the sleep after the offline call", r.end.Sub(req.At), testSleep, testSleep+time.Second)
}

// TestPreStopPresets takes the instance offline against a look-alike of each
// registry and checks the exact request, that it comes before the sleep, and
// that the sleep lasts what was asked.
func TestPreStopPresets(t *testing.T) {
	t.Parallel()
	type preset struct {
		name   string
		server func(w http.ResponseWriter, r *http.Request, n int)
		args   func(f *fake) []string
		vars   func(f *fake) map[string]string
		h      harness
		check  func(t *testing.T, reqs []recorded)
	}
	cases := []preset{{
		name:   "dubbo",
		server: dubboQoS,
		args:   func(f *fake) []string { return []string{"--registry=dubbo", "--dubbo-port=" + f.port(t)} },
		check: func(t *testing.T, reqs []recorded) {
			expectRequest(t, reqs[0], http.MethodGet, "/offline", "")
		},
	}, {
		name:   "dubbo port from DUBBO_APPLICATION_QOS_PORT",
		server: dubboQoS,
		args:   func(*fake) []string { return []string{"--registry=dubbo"} },
		vars:   func(f *fake) map[string]string { return map[string]string{"DUBBO_APPLICATION_QOS_PORT": f.port(t)} },
		check: func(t *testing.T, reqs []recorded) {
			expectRequest(t, reqs[0], http.MethodGet, "/offline", "")
		},
	}, {
		name:   "spring-cloud",
		server: actuator("serviceregistry"),
		args:   func(f *fake) []string { return []string{"--registry=spring-cloud", "--spring-port=" + f.port(t)} },
		check: func(t *testing.T, reqs []recorded) {
			expectRequest(t, reqs[0], http.MethodPost, "/actuator/serviceregistry", "")
			expectJSONStatus(t, reqs[0], "OUT_OF_SERVICE")
		},
	}, {
		name:   "spring-cloud before 2020.0 (service-registry), port from SERVER_PORT, status DOWN for Nacos",
		server: actuator("service-registry"),
		args:   func(*fake) []string { return []string{"--registry=spring-cloud", "--spring-status=DOWN"} },
		vars:   func(f *fake) map[string]string { return map[string]string{"SERVER_PORT": f.port(t)} },
		check: func(t *testing.T, reqs []recorded) {
			if len(reqs) != 2 {
				t.Fatalf("want the new endpoint name, then the old one; got %d requests", len(reqs))
			}
			expectRequest(t, reqs[0], http.MethodPost, "/actuator/serviceregistry", "")
			expectRequest(t, reqs[1], http.MethodPost, "/actuator/service-registry", "")
			expectJSONStatus(t, reqs[1], "DOWN")
		},
	}, {
		name:   "eureka from the app's environment",
		server: eurekaServer("CHECKOUT", "checkout-7f9c-x2:checkout:9000"),
		args:   func(*fake) []string { return []string{"--registry=eureka"} },
		vars: func(f *fake) map[string]string {
			return map[string]string{
				"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": f.URL + "/eureka/, http://eureka-1:8761/eureka/",
				"SPRING_APPLICATION_NAME":              "checkout",
				"HOSTNAME":                             "checkout-7f9c-x2",
				"SERVER_PORT":                          "9000",
			}
		},
		check: func(t *testing.T, reqs []recorded) {
			expectRequest(t, reqs[0], http.MethodPut, "/eureka/apps/CHECKOUT/checkout-7f9c-x2:checkout:9000/status", "value=OUT_OF_SERVICE")
		},
	}, {
		name:   "eureka without SERVER_PORT tries host:app, then host:app:8080",
		server: eurekaServer("CHECKOUT", "checkout-7f9c-x2:checkout:8080"),
		args:   func(*fake) []string { return []string{"--registry=eureka"} },
		vars: func(f *fake) map[string]string {
			return map[string]string{
				"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": f.URL + "/eureka",
				"SPRING_APPLICATION_NAME":              "checkout",
				"HOSTNAME":                             "checkout-7f9c-x2",
			}
		},
		check: func(t *testing.T, reqs []recorded) {
			if len(reqs) != 2 {
				t.Fatalf("got %d requests, want 2", len(reqs))
			}
			expectRequest(t, reqs[0], http.MethodPut, "/eureka/apps/CHECKOUT/checkout-7f9c-x2:checkout/status", "value=OUT_OF_SERVICE")
			expectRequest(t, reqs[1], http.MethodPut, "/eureka/apps/CHECKOUT/checkout-7f9c-x2:checkout:8080/status", "value=OUT_OF_SERVICE")
		},
	}, {
		name:   "eureka StatefulSet pod: /etc/hosts gives the FQDN Java sees",
		server: eurekaServer("LEDGER", "ledger-0.ledger.pay.svc.cluster.local:ledger:8080"),
		args:   func(*fake) []string { return []string{"--registry=eureka"} },
		vars: func(f *fake) map[string]string {
			return map[string]string{
				"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": f.URL + "/eureka/",
				"SPRING_APPLICATION_NAME":              "ledger",
				"HOSTNAME":                             "ledger-0",
				"SERVER_PORT":                          "8080",
				"POD_IP":                               "10.1.2.3",
			}
		},
		h: harness{hosts: "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n10.1.2.3\tledger-0.ledger.pay.svc.cluster.local\tledger-0\n"},
		check: func(t *testing.T, reqs []recorded) {
			expectRequest(t, reqs[0], http.MethodPut, "/eureka/apps/LEDGER/ledger-0.ledger.pay.svc.cluster.local:ledger:8080/status", "value=OUT_OF_SERVICE")
		},
	}, {
		name:   "eureka with EUREKA_INSTANCE_INSTANCE_ID",
		server: eurekaServer("CART", "10.0.0.9:8080"),
		args:   func(*fake) []string { return []string{"--registry=eureka"} },
		vars: func(f *fake) map[string]string {
			return map[string]string{
				"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": f.URL + "/eureka/",
				"SPRING_APPLICATION_NAME":              "cart",
				"EUREKA_INSTANCE_INSTANCE_ID":          "10.0.0.9:8080",
			}
		},
		check: func(t *testing.T, reqs []recorded) {
			expectRequest(t, reqs[0], http.MethodPut, "/eureka/apps/CART/10.0.0.9:8080/status", "value=OUT_OF_SERVICE")
		},
	}, {
		name:   "eureka from flags",
		server: eurekaServer("BILLING", "billing-1"),
		args: func(f *fake) []string {
			return []string{"--registry=eureka", "--eureka-server-url=" + f.URL + "/eureka", "--eureka-app-name=billing", "--eureka-instance-id=billing-1"}
		},
		check: func(t *testing.T, reqs []recorded) {
			expectRequest(t, reqs[0], http.MethodPut, "/eureka/apps/BILLING/billing-1/status", "value=OUT_OF_SERVICE")
		},
	}, {
		name:   "nacos from the app's environment",
		server: nacosServer,
		args:   func(*fake) []string { return []string{"--registry=nacos"} },
		vars: func(f *fake) map[string]string {
			return map[string]string{
				"NACOS_SERVER_ADDR":       f.hostPort(),
				"SPRING_APPLICATION_NAME": "orders",
				"POD_IP":                  "10.0.0.7",
				"SERVER_PORT":             "8081",
			}
		},
		check: func(t *testing.T, reqs []recorded) {
			expectRequest(t, reqs[0], http.MethodPut, "/nacos/v1/ns/instance", "")
			expectQuery(t, reqs[0], map[string]string{
				"serviceName": "orders", "groupName": "DEFAULT_GROUP", "clusterName": "DEFAULT",
				"ip": "10.0.0.7", "port": "8081", "enabled": "false", "ephemeral": "true", "namespaceId": "",
			})
		},
	}, {
		name:   "nacos ip from the interfaces, Spring Cloud Alibaba variables",
		server: nacosServer,
		args:   func(*fake) []string { return []string{"--registry=nacos"} },
		vars: func(f *fake) map[string]string {
			return map[string]string{
				"SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR": f.URL,
				"NACOS_SERVER_ADDR":                        "http://not-this:8848",
				"SPRING_APPLICATION_NAME":                  "orders",
				"SPRING_CLOUD_NACOS_DISCOVERY_NAMESPACE":   "prod",
				"SPRING_CLOUD_NACOS_DISCOVERY_GROUP":       "PAY",
			}
		},
		h: harness{addrs: []net.Addr{ipNet("127.0.0.1/8"), ipNet("fe80::1/64"), ipNet("fd00::5/64"), ipNet("10.9.8.7/24")}},
		check: func(t *testing.T, reqs []recorded) {
			expectQuery(t, reqs[0], map[string]string{
				"serviceName": "orders", "groupName": "PAY", "namespaceId": "prod",
				"ip": "10.9.8.7", "port": "8080", "enabled": "false",
			})
		},
	}, {
		name:   "nacos from flags",
		server: nacosServer,
		args: func(f *fake) []string {
			return []string{"--registry=nacos", "--nacos-server-url=" + f.URL + "/nacos", "--nacos-service-name=stock",
				"--nacos-group=G1", "--nacos-namespace=ns-1", "--nacos-cluster=east", "--nacos-port=20880"}
		},
		vars: func(*fake) map[string]string { return map[string]string{"POD_IP": "fd00::7"} },
		check: func(t *testing.T, reqs []recorded) {
			expectQuery(t, reqs[0], map[string]string{
				"serviceName": "stock", "groupName": "G1", "namespaceId": "ns-1", "clusterName": "east",
				"ip": "fd00::7", "port": "20880", "enabled": "false", "ephemeral": "true",
			})
		},
	}, {
		name:   "edas",
		server: status(http.StatusOK, "offline success"),
		args:   func(f *fake) []string { return []string{"--registry=edas", "--edas-url=" + f.URL + "/offline"} },
		check: func(t *testing.T, reqs []recorded) {
			expectRequest(t, reqs[0], http.MethodGet, "/offline", "")
		},
	}, {
		name:   "http",
		server: status(http.StatusAccepted, ""),
		args: func(f *fake) []string {
			return []string{"--registry=http", "--http-method=PUT", "--http-url=" + f.URL + "/registry/self?state=down",
				"--http-header=Authorization: Bearer t0k", "--http-header=Content-Type: text/plain", "--http-body=down", "--http-expect-status=202"}
		},
		check: func(t *testing.T, reqs []recorded) {
			expectRequest(t, reqs[0], http.MethodPut, "/registry/self", "state=down")
			if got := reqs[0].Header.Get("Authorization"); got != "Bearer t0k" {
				t.Errorf("Authorization = %q", got)
			}
			if reqs[0].Body != "down" {
				t.Errorf("body = %q, want down", reqs[0].Body)
			}
		},
	}, {
		name:   "http defaults to POST and any 2xx",
		server: status(http.StatusNoContent, ""),
		args:   func(f *fake) []string { return []string{"--registry=http", "--http-url=" + f.URL + "/down"} },
		check: func(t *testing.T, reqs []recorded) {
			expectRequest(t, reqs[0], http.MethodPost, "/down", "")
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, c.server)
			h := c.h
			if c.vars != nil {
				h.vars = c.vars(f)
			}
			r := h.run(append([]string{"prestop", "--sleep=" + testSleep.String()}, c.args(f)...)...)
			if r.code != ExitOK {
				t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			reqs := f.requests()
			if len(reqs) == 0 {
				t.Fatalf("the registry got no request\nstdout:\n%s", r.stdout)
			}
			c.check(t, reqs)
			checkOfflineThenSleep(t, r, reqs[len(reqs)-1], 250*time.Millisecond)
			if !strings.Contains(r.stdout, "sleeping 300ms") || !strings.Contains(r.stdout, "done in") || r.stderr != "" {
				t.Errorf("unexpected output\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			}
		})
	}
}

func expectRequest(t *testing.T, r recorded, method, path, rawQuery string) {
	t.Helper()
	if r.Method != method || r.Path != path || (rawQuery != "" && r.Raw != rawQuery) {
		t.Errorf("got %s %s?%s, want %s %s?%s", r.Method, r.Path, r.Raw, method, path, rawQuery)
	}
}

func expectJSONStatus(t *testing.T, r recorded, want string) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(r.Body), &body); err != nil || len(body) != 1 || body["status"] != want {
		t.Errorf("body = %s, want {\"status\":%q}", r.Body, want)
	}
}

func expectQuery(t *testing.T, r recorded, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := r.Query.Get(k); got != v {
			t.Errorf("query %s = %q, want %q (query %s)", k, got, v, r.Raw)
		}
	}
}

// TestPreStopFailingRegistry: a registry answering 500 is tried three times
// with growing pauses, the failure is reported, and the sleep is kept.
func TestPreStopFailingRegistry(t *testing.T) {
	t.Parallel()
	f := newFake(t, status(http.StatusInternalServerError, "java.lang.RuntimeException: boom"))
	h := harness{vars: map[string]string{"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": f.URL + "/eureka/", "SPRING_APPLICATION_NAME": "pay", "HOSTNAME": "pay-1", "SERVER_PORT": "8080"}}
	r := h.run("prestop", "--registry=eureka", "--sleep="+testSleep.String())
	reqs := f.requests()
	if len(reqs) != 3 {
		t.Fatalf("got %d requests, want 3 tries", len(reqs))
	}
	within(t, "the first pause", reqs[1].At.Sub(reqs[0].At), 200*time.Millisecond, 700*time.Millisecond)
	within(t, "the second pause", reqs[2].At.Sub(reqs[1].At), 400*time.Millisecond, 900*time.Millisecond)
	checkOfflineThenSleep(t, r, reqs[2], meshinit.DefaultOfflineTimeout)
	if r.code != ExitFailed {
		t.Errorf("exit %d, want %d", r.code, ExitFailed)
	}
	want := "mesh-init prestop: FAILED: eureka offline failed after 3 requests, last PUT " + f.URL + "/eureka/apps/PAY/pay-1:pay:8080/status?value=OUT_OF_SERVICE -> 500 \"java.lang.RuntimeException: boom\""
	if !strings.HasPrefix(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "the 300ms sleep was kept") {
		t.Errorf("stderr = %q\nwant one line starting %q", r.stderr, want)
	}
	if n := strings.Count(r.stdout, "eureka offline PUT"); n != 3 {
		t.Errorf("want one line per request, got %d:\n%s", n, r.stdout)
	}
}

// TestPreStopSlowRegistry: a registry slower than the per-try timeout costs
// no more than the offline timeout, and the sleep still follows in full.
func TestPreStopSlowRegistry(t *testing.T) {
	t.Parallel()
	f := newFake(t, slow(5*time.Second, dubboQoS))
	const timeout = 600 * time.Millisecond
	r := harness{}.run("prestop", "--registry=dubbo", "--dubbo-port="+f.port(t), "--offline-timeout="+timeout.String(), "--sleep="+testSleep.String())
	if r.code != ExitFailed {
		t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	reqs := f.requests()
	if len(reqs) < 2 || len(reqs) > 3 {
		t.Errorf("got %d requests, want 2 or 3 within the bound", len(reqs))
	}
	// offline (bounded by timeout) + the whole sleep.
	within(t, "the hook", r.took(), timeout+testSleep, timeout+testSleep+700*time.Millisecond)
	if !strings.Contains(r.stdout, "-> no answer after ") || !strings.Contains(r.stderr, "FAILED: dubbo offline failed after") {
		t.Errorf("output does not say what happened:\n%s%s", r.stdout, r.stderr)
	}
}

// TestPreStopRefused: nothing listening is retried, reported, and the sleep kept.
func TestPreStopRefused(t *testing.T) {
	t.Parallel()
	r := harness{}.run("prestop", "--registry=edas", "--edas-url="+refusedURL(t)+"/offline", "--sleep="+testSleep.String())
	if r.code != ExitFailed {
		t.Fatalf("exit %d, want 1", r.code)
	}
	// Pauses of 200ms and 400ms between three tries, then the sleep.
	within(t, "the hook", r.took(), 600*time.Millisecond+testSleep, 600*time.Millisecond+testSleep+time.Second)
	if n := strings.Count(r.stdout, "connection refused"); n != 3 {
		t.Errorf("want 3 refused tries, got %d:\n%s", n, r.stdout)
	}
	if n := strings.Count(r.stdout, "; may be transient: try "); n != 2 {
		t.Errorf("want the 2 retries called transient, got %d:\n%s", n, r.stdout)
	}
}

// TestPreStopRejected: answers that will not change are not retried.
func TestPreStopRejected(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		server func(w http.ResponseWriter, r *http.Request, n int)
		args   func(f *fake) []string
		want   string
	}{{
		name: "spring-cloud app registered nowhere",
		server: func(w http.ResponseWriter, r *http.Request, _ int) {
			answerText(w, http.StatusNotFound, "no registration found")
		},
		args: func(f *fake) []string { return []string{"--registry=spring-cloud", "--spring-port=" + f.port(t)} },
		want: `404 "no registration found"`,
	}, {
		name:   "nacos answering something else than ok",
		server: status(http.StatusOK, "<html>login</html>"),
		args: func(f *fake) []string {
			return []string{"--registry=nacos", "--nacos-server-url=" + f.URL, "--nacos-service-name=a", "--nacos-port=1"}
		},
		want: `200 "<html>login</html>"`,
	}, {
		name:   "http with another status than expected",
		server: status(http.StatusOK, ""),
		args: func(f *fake) []string {
			return []string{"--registry=http", "--http-url=" + f.URL, "--http-expect-status=204"}
		},
		want: "-> 200 in",
	}, {
		name:   "eureka not knowing the instance",
		server: eurekaServer("CART", "someone-else"),
		args: func(f *fake) []string {
			return []string{"--registry=eureka", "--eureka-server-url=" + f.URL + "/eureka", "--eureka-app-name=cart", "--eureka-instance-id=cart-1"}
		},
		want: "-> 404 in",
	}, {
		name:   "dubbo QoS refusing the caller",
		server: status(http.StatusForbidden, ""),
		args:   func(f *fake) []string { return []string{"--registry=dubbo", "--dubbo-port=" + f.port(t)} },
		want:   "-> 403 in",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, c.server)
			h := harness{vars: map[string]string{"POD_IP": "10.0.0.1"}}
			r := h.run(append([]string{"prestop", "--sleep=0s"}, c.args(f)...)...)
			if r.code != ExitFailed || len(f.requests()) != 1 {
				t.Fatalf("exit %d after %d requests, want 1 after 1\n%s%s", r.code, len(f.requests()), r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, c.want) {
				t.Errorf("stderr %q does not contain %q", r.stderr, c.want)
			}
			if strings.HasPrefix(c.name, "eureka") && !strings.Contains(r.stderr, "set --eureka-instance-id or EUREKA_INSTANCE_INSTANCEID") {
				t.Errorf("no hint in %q", r.stderr)
			}
		})
	}
}

// TestPreStopMissingConfig: what cannot be resolved is a failed offline
// step (exit 1 after the sleep), not bad arguments.
func TestPreStopMissingConfig(t *testing.T) {
	t.Parallel()
	r := harness{}.run("prestop", "--registry=nacos", "--sleep="+testSleep.String())
	if r.code != ExitFailed {
		t.Fatalf("exit %d, want 1", r.code)
	}
	within(t, "the hook", r.took(), testSleep, testSleep+time.Second)
	if !strings.Contains(r.stderr, "no Nacos server: set --nacos-server-url or NACOS_SERVER_ADDR") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

// TestPreStopSleepOnly measures the sleep with the real clock.
func TestPreStopSleepOnly(t *testing.T) {
	t.Parallel()
	r := harness{}.run("prestop", "--registry=none", "--sleep=300ms")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	within(t, "a 300ms sleep", r.took(), 300*time.Millisecond, time.Second)
	want := "mesh-init prestop: no registry offline step (registry none)\nmesh-init prestop: sleeping 300ms before the app is stopped\nmesh-init prestop: done in "
	if !strings.HasPrefix(r.stdout, want) {
		t.Errorf("stdout = %q, want it to start %q", r.stdout, want)
	}
}

// TestPreStopOriginalExec: the app's own exec handler runs after the sleep,
// its output passes through and its exit code is the hook's.
func TestPreStopOriginalExec(t *testing.T) {
	t.Parallel()
	f := newFake(t, dubboQoS)
	stamp := filepath.Join(t.TempDir(), "stamp")
	args := append([]string{"prestop", "--registry=dubbo", "--dubbo-port=" + f.port(t), "--sleep=" + testSleep.String(), "--then-exec", "--"},
		helperCommand(t, "stamp", stamp, "say", "app handler output", "exit", "3")...)
	r := harness{}.run(args...)
	if r.code != 3 {
		t.Fatalf("exit %d, want the handler's 3\n%s%s", r.code, r.stdout, r.stderr)
	}
	ran := readStamp(t, stamp)
	within(t, "from the offline call to the original handler", ran.Sub(f.requests()[0].At), testSleep, testSleep+time.Second)
	if !strings.Contains(r.stdout, "app handler output\n") {
		t.Errorf("the handler's output is missing:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "FAILED: original exec handler") || !strings.Contains(r.stderr, "exited 3") {
		t.Errorf("stderr = %q", r.stderr)
	}
}

// TestPreStopOriginalExecOK: a handler exiting 0 after a good offline is a
// clean run; a missing command exits 127.
func TestPreStopOriginalExecOK(t *testing.T) {
	t.Parallel()
	r := harness{}.run(append([]string{"prestop", "--sleep=0s", "--then-exec", "--"}, helperCommand(t, "exit", "0")...)...)
	if r.code != ExitOK || r.stderr != "" {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	r = harness{}.run("prestop", "--sleep=0s", "--then-exec", "--", "/nonexistent/handler")
	if r.code != 127 || !strings.Contains(r.stderr, "could not start") {
		t.Errorf("exit %d, stderr %q; want 127 and a reason", r.code, r.stderr)
	}
}

// TestPreStopOriginalHTTPGet: the app's httpGet handler is called with its
// headers after the sleep; a failing one is reported.
func TestPreStopOriginalHTTPGet(t *testing.T) {
	t.Parallel()
	app := newFake(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		if r.URL.Path == "/shutdown" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	start := time.Now()
	r := harness{}.run("prestop", "--sleep="+testSleep.String(), "--then-http-get="+app.URL+"/shutdown?grace=1", "--then-http-header=X-Drain: yes")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	reqs := app.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests", len(reqs))
	}
	expectRequest(t, reqs[0], http.MethodGet, "/shutdown", "grace=1")
	if reqs[0].Header.Get("X-Drain") != "yes" {
		t.Errorf("headers = %v", reqs[0].Header)
	}
	within(t, "until the httpGet handler", reqs[0].At.Sub(start), testSleep, testSleep+time.Second)

	r = harness{}.run("prestop", "--sleep=0s", "--then-http-get="+app.URL+"/broken")
	if r.code != ExitFailed || !strings.Contains(r.stderr, "FAILED: original httpGet handler GET "+app.URL+"/broken -> 500") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestPreStopOriginalSleep: a sleep handler adds to the hook's own sleep.
func TestPreStopOriginalSleep(t *testing.T) {
	t.Parallel()
	r := harness{}.run("prestop", "--sleep=200ms", "--then-sleep=200ms")
	if r.code != ExitOK {
		t.Fatalf("exit %d", r.code)
	}
	within(t, "two sleeps of 200ms", r.took(), 400*time.Millisecond, 1200*time.Millisecond)
}

// TestPreStopSignal: SIGTERM (kubelet giving up on the hook) ends the sleep
// at once with a line saying so, and is passed on to a running handler.
func TestPreStopSignal(t *testing.T) {
	t.Parallel()
	t.Run("during the sleep", func(t *testing.T) {
		t.Parallel()
		h := harness{signals: make(chan os.Signal, 1)}
		go func() {
			time.Sleep(200 * time.Millisecond)
			h.signals <- syscall.SIGTERM
		}()
		r := h.run("prestop", "--sleep=10s")
		if r.code != 128+int(syscall.SIGTERM) {
			t.Errorf("exit %d, want 143", r.code)
		}
		within(t, "the interrupted hook", r.took(), 200*time.Millisecond, 1500*time.Millisecond)
		if !strings.Contains(r.stderr, "received SIGTERM while sleeping (") {
			t.Errorf("stderr = %q", r.stderr)
		}
	})
	t.Run("during the original handler", func(t *testing.T) {
		t.Parallel()
		ready := filepath.Join(t.TempDir(), "ready")
		h := harness{signals: make(chan os.Signal, 1)}
		go func() {
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(ready); err == nil {
					h.signals <- syscall.SIGTERM
					return
				}
			}
		}()
		r := h.run(append([]string{"prestop", "--sleep=0s", "--then-exec", "--"}, helperCommand(t, "trap", ready)...)...)
		if r.code != 128+int(syscall.SIGTERM) {
			t.Errorf("exit %d, want 143", r.code)
		}
		if !strings.Contains(r.stdout, "original exec handler exited 42") {
			t.Errorf("the handler did not get the signal:\n%s", r.stdout)
		}
	})
}

// TestPreStopBadArguments exits 2 with one line, before doing anything.
func TestPreStopBadArguments(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--registry=zookeeper"},
		{"--sleep=soon"},
		{"--registry=http"},
		{"--then-exec"},
		{"--then-sleep=1s", "--then-http-get=http://x/"},
		{"--stray"},
		// Methods and headers the HTTP client could never send.
		{"--registry=http", "--http-url=http://x/", "--http-method=PO ST"},
		{"--registry=http", "--http-url=http://x/", "--http-header=Bad Name: v"},
		{"--registry=http", "--http-url=http://x/", "--http-header=X-A: v\r\nX-Injected: 1"},
		{"--registry=http", "--http-url=http://x/", "--http-header=X-A: v\n"},
		{"--registry=http", "--http-url=http://x/", "--http-header=: x"},
		{"--then-http-get=http://x/", "--then-http-header=Bad Name: v"},
		{"--then-http-get=http://x/", "--then-http-header=X-A: a\rb"},
		{"--then-http-get=http:///path"},
	} {
		r := harness{}.run(append([]string{"prestop"}, args...)...)
		if r.code != ExitUsage || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "mesh-init prestop: bad arguments: ") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
}

// The app's own HTTPS httpGet handler runs as the kubelet runs it: without
// certificate verification, and on the pod's IP when it names no host.
func TestOriginalHTTPSHandlerLikeKubelet(t *testing.T) {
	t.Parallel()
	var got atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	// The server listens on 127.0.0.1; POD_IP says so too, and the URL
	// carries another loopback host that the flag must replace.
	h := harness{vars: map[string]string{"POD_IP": "127.0.0.1"}}
	r := h.run("prestop", "--registry=none", "--sleep=0s",
		"--then-http-get=https://127.0.0.2:"+u.Port()+"/shutdown", "--then-http-get-pod-ip")
	if r.code != 0 || got.Load() != 1 {
		t.Fatalf("exit %d, %d calls; want 0 and 1 (stderr %q)", r.code, got.Load(), r.stderr)
	}
}

// An offline call answered with a redirect has not reached the registry: it
// fails at once, naming where it was sent, and the redirect is not followed
// (a 302 to a login page that answers 200 is not a success).
func TestPreStopRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	redirectToLogin := func(w http.ResponseWriter, r *http.Request, _ int) {
		if r.URL.Path == "/login" {
			answerText(w, http.StatusOK, "please log in")
			return
		}
		http.Redirect(w, r, "/login", http.StatusFound)
	}
	cases := []struct {
		name string
		args func(f *fake) []string
	}{
		{"http", func(f *fake) []string {
			return []string{"--registry=http", "--http-method=PUT", "--http-url=" + f.URL + "/self/down"}
		}},
		{"eureka", func(f *fake) []string {
			return []string{"--registry=eureka", "--eureka-server-url=" + f.URL + "/eureka", "--eureka-app-name=cart", "--eureka-instance-id=cart-1"}
		}},
		{"nacos", func(f *fake) []string {
			return []string{"--registry=nacos", "--nacos-server-url=" + f.URL, "--nacos-service-name=a", "--nacos-port=1"}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, redirectToLogin)
			r := harness{vars: map[string]string{"POD_IP": "10.0.0.1"}}.run(append([]string{"prestop", "--sleep=0s"}, c.args(f)...)...)
			if r.code != ExitFailed {
				t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
			}
			if reqs := f.requests(); len(reqs) != 1 || reqs[0].Path == "/login" {
				t.Errorf("got %d requests (%+v), want the one offline call and no visit to /login", len(reqs), reqs)
			}
			want := `-> 302 Found redirecting to "/login" (not followed) in `
			if !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "an offline call must be answered by the registry itself") {
				t.Errorf("stderr %q does not contain %q and why", r.stderr, want)
			}
			if !strings.Contains(r.stdout, "not retried: redirects are not followed") {
				t.Errorf("stdout does not say the redirect is not retried:\n%s", r.stdout)
			}
		})
	}
	// A status the user lists as expected is success, redirect or not.
	f := newFake(t, redirectToLogin)
	r := harness{}.run("prestop", "--sleep=0s", "--registry=http", "--http-url="+f.URL+"/self", "--http-expect-status=302")
	if r.code != ExitOK || len(f.requests()) != 1 {
		t.Errorf("expected 302: exit %d after %d requests\n%s%s", r.code, len(f.requests()), r.stdout, r.stderr)
	}
}

// The app's own httpGet handler follows redirects as the kubelet does: on
// the same host only; a redirect to another host is its answer, and a 3xx
// is below 400, so it counts as success.
func TestOriginalHTTPGetRedirects(t *testing.T) {
	t.Parallel()
	other := newFake(t, status(http.StatusInternalServerError, "should not be reached"))
	app := newFake(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		switch r.URL.Path {
		case "/shutdown":
			http.Redirect(w, r, "/shutdown/now", http.StatusFound)
		case "/shutdown/now":
			answerText(w, http.StatusOK, "stopping")
		case "/elsewhere":
			// Another host name for the same machine: the kubelet
			// compares host names, not addresses.
			http.Redirect(w, r, "http://localhost:"+other.port(t)+"/x", http.StatusFound)
		}
	})
	r := harness{}.run("prestop", "--sleep=0s", "--then-http-get="+app.URL+"/shutdown")
	if r.code != ExitOK {
		t.Fatalf("same host: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if reqs := app.requests(); len(reqs) != 2 || reqs[1].Path != "/shutdown/now" {
		t.Errorf("same host: want the redirect followed, got %+v", reqs)
	}
	if !strings.Contains(r.stdout, "-> 200 (after a redirect to "+app.URL+"/shutdown/now)") {
		t.Errorf("same host: stdout does not show the redirect:\n%s", r.stdout)
	}

	r = harness{}.run("prestop", "--sleep=0s", "--then-http-get="+app.URL+"/elsewhere")
	if r.code != ExitOK {
		t.Fatalf("other host: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := len(other.requests()); n != 0 {
		t.Errorf("other host: the redirect was followed (%d requests)", n)
	}
	if !strings.Contains(r.stdout, "-> 302 Found redirecting to \"http://localhost:"+other.port(t)+"/x\" (not followed)") ||
		!strings.Contains(r.stdout, "as the kubelet does for a redirect to another host") {
		t.Errorf("other host: stdout does not say the redirect was not followed:\n%s", r.stdout)
	}
}

// Client-side errors that another try would repeat fail at once; errors that
// may pass (connection refused, see TestPreStopRefused) are retried.
func TestPreStopPermanentErrorsNotRetried(t *testing.T) {
	t.Parallel()
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake errors are the point
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	plain := newFake(t, status(http.StatusOK, "OK"))
	plain.Config.ErrorLog = log.New(io.Discard, "", 0)
	cases := []struct{ name, url, want string }{
		{"certificate signed by an unknown authority", tlsSrv.URL + "/offline", "not retried: the server's certificate is not trusted"},
		{"https to a plain HTTP server", "https://" + plain.hostPort() + "/offline", "not retried: the server speaks plain HTTP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := harness{}.run("prestop", "--sleep=0s", "--registry=edas", "--edas-url="+c.url)
			if r.code != ExitFailed {
				t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
			}
			if n := strings.Count(r.stdout, "edas offline GET"); n != 1 || !strings.Contains(r.stdout, c.want) {
				t.Errorf("want one try, logged with %q; got %d:\n%s", c.want, n, r.stdout)
			}
			within(t, "the hook", r.took(), 0, 500*time.Millisecond) // the retries alone would take 600ms
			if !strings.Contains(r.stderr, "FAILED: edas offline failed after 1 request") {
				t.Errorf("stderr = %q", r.stderr)
			}
		})
	}
}

// A Host or User-Agent header given for the offline call or the original
// httpGet handler is sent, as the kubelet sends a handler's headers; the
// User-Agent only defaults to mesh-init-hook.
func TestPreStopHostAndUserAgentHeaders(t *testing.T) {
	t.Parallel()
	f := newFake(t, status(http.StatusOK, ""))
	r := harness{}.run("prestop", "--sleep=0s", "--registry=http", "--http-url="+f.URL+"/down",
		"--http-header=Host: registry.internal", "--http-header=User-Agent: ops-tool/1.0",
		"--then-http-get="+f.URL+"/stop", "--then-http-header=host: app.internal", "--then-http-header=user-agent: probe/2")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	reqs := f.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	for i, want := range []struct{ host, ua string }{{"registry.internal", "ops-tool/1.0"}, {"app.internal", "probe/2"}} {
		if reqs[i].Host != want.host || reqs[i].Header.Get("User-Agent") != want.ua {
			t.Errorf("%s: Host %q, User-Agent %q; want %q, %q", reqs[i].Path, reqs[i].Host, reqs[i].Header.Get("User-Agent"), want.host, want.ua)
		}
	}
	if got := reqs[1].Header.Get("Accept"); got != "*/*" {
		t.Errorf("the original handler's Accept = %q, want the kubelet's */*", got)
	}
	// Without them: the server's own address and the hook's User-Agent.
	r = harness{}.run("prestop", "--sleep=0s", "--registry=http", "--http-url="+f.URL+"/down")
	if last := f.requests()[2]; r.code != ExitOK || last.Host != f.hostPort() || last.Header.Get("User-Agent") != "mesh-init-hook" {
		t.Errorf("defaults: exit %d, Host %q, User-Agent %q", r.code, last.Host, last.Header.Get("User-Agent"))
	}
}

// --eureka-server-url takes the comma-separated zones of
// EUREKA_CLIENT_SERVICEURL_DEFAULTZONE, and a failing zone moves on to the
// next one.
func TestPreStopEurekaServerURLZones(t *testing.T) {
	t.Parallel()
	failing := newFake(t, status(http.StatusInternalServerError, "boom"))
	good := newFake(t, eurekaServer("CART", "cart-1"))
	for _, first := range []string{refusedURL(t), failing.URL} {
		zones := first + "/eureka/, " + good.URL + "/eureka/"
		r := harness{}.run("prestop", "--sleep=0s", "--registry=eureka", "--eureka-server-url="+zones,
			"--eureka-app-name=cart", "--eureka-instance-id=cart-1")
		if r.code != ExitOK {
			t.Errorf("%s: exit %d\n%s%s", zones, r.code, r.stdout, r.stderr)
		}
	}
	reqs := good.requests()
	if len(reqs) != 2 {
		t.Fatalf("the second zone got %d requests, want one per run", len(reqs))
	}
	expectRequest(t, reqs[0], http.MethodPut, "/eureka/apps/CART/cart-1/status", "value=OUT_OF_SERVICE")
	if len(failing.requests()) != 1 {
		t.Errorf("the failing zone got %d requests, want 1", len(failing.requests()))
	}
}
