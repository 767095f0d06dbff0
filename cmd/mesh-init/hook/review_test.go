package hook

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidecar-injector/injector/test/registry"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// Tests of behaviours an independent review of issue 15 found missing,
// one per finding, each against the stand-ins of test/registry.

const record = "/var/run/mesh-state/app.offline.json"

// No secret reaches a log line: not the accessToken in the URLs (success
// and failure lines alike), not the login answer, not the access-key
// signature's parameters.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	for _, mode := range []registry.Mode{registry.OK, registry.Error500} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			n := registry.NewNacos("2.5.1")
			n.Auth = true
			n.Users = map[string]string{"svc": "s3cr3t-pw"}
			n.Register(registry.NacosInstance{Service: "orders", IP: podIP, Port: 8080})
			if mode == registry.Error500 {
				n.SetFault(registry.Fault{Mode: mode, Method: http.MethodPatch})
			}
			srv := serve(t, n)
			r := harness{vars: map[string]string{"NACOS_SERVER_ADDR": hostPortOf(srv), "SPRING_APPLICATION_NAME": "orders", "POD_IP": podIP,
				"SPRING_CLOUD_NACOS_USERNAME": "svc", "SPRING_CLOUD_NACOS_PASSWORD": "s3cr3t-pw"}}.run("prestop", "--sleep=1s", "--registry=nacos")
			all := r.stdout + r.stderr
			want := map[registry.Mode]int{registry.OK: ExitOK, registry.Error500: ExitFailed}[mode]
			if r.code != want {
				t.Fatalf("exit %d, want %d\n%s", r.code, want, all)
			}
			for _, secret := range []string{"standin-token", "s3cr3t-pw"} {
				if strings.Contains(all, secret) {
					t.Errorf("%q is on a log line:\n%s", secret, all)
				}
			}
			if !strings.Contains(all, "accessToken=xxxxx") || !strings.Contains(all, "(not shown: it holds credentials)") {
				t.Errorf("want the token hidden in the URLs and the login answer not shown:\n%s", all)
			}
			if mode == registry.Error500 && !strings.Contains(r.stderr, "accessToken=xxxxx") {
				t.Errorf("the FAILED line should show the URL, token hidden: %s", r.stderr)
			}
		})
	}
	t.Run("a token cut at the end of what a line shows", func(t *testing.T) {
		t.Parallel()
		a := answer{status: 200, body: strings.Repeat(" ", shownMax-20) + `{"accessToken":"` + strings.Repeat("a", 100) + `"}`}
		if strings.Contains(a.String(), "aaaa") || strings.Contains(a.shownBody(), "aaaa") {
			t.Errorf("the cut token shows: %q", a.shownBody()[shownMax-40:])
		}
	})
	t.Run("access key", func(t *testing.T) {
		t.Parallel()
		n := registry.NewNacos("2.5.1")
		n.Register(registry.NacosInstance{Service: "orders", IP: podIP, Port: 8080})
		srv := serve(t, n)
		r := harness{vars: map[string]string{"NACOS_SERVER_ADDR": hostPortOf(srv), "SPRING_APPLICATION_NAME": "orders", "POD_IP": podIP,
			"SPRING_CLOUD_NACOS_DISCOVERY_ACCESSKEY": "AKID", "SPRING_CLOUD_NACOS_DISCOVERY_SECRETKEY": "sk"}}.run("prestop", "--sleep=1s", "--registry=nacos")
		if r.code != ExitOK {
			t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, p := range regexp.MustCompile(`[?&](ak|data|signature)=([^&\s"]*)`).FindAllStringSubmatch(r.stdout, -1) {
			if p[2] != "xxxxx" {
				t.Errorf("%s=%s is on a log line", p[1], p[2])
			}
		}
		if !strings.Contains(r.stdout, "signature=xxxxx") {
			t.Errorf("no signed request logged:\n%s", r.stdout)
		}
	})
}

// restarted is the undo after a restart in place: prestop took the
// instance offline on clk, the process died without deregistering (its
// registration stays, offline), time passed, and poststart runs.
func runPostStart(h harness, args ...string) outcome {
	h.clock.Advance(time.Minute)
	return h.run(append([]string{"poststart", "--record=" + record}, args...)...)
}

// The undo waits until the restarted app has registered again: the
// registration the registry shows at first is the dead process's, and
// bringing it back online sends traffic to a process that is not there.
func TestUndoWaitsForTheNewRegistration(t *testing.T) {
	t.Parallel()
	t.Run("eureka: lastDirtyTimestamp newer than the hook's start", func(t *testing.T) {
		t.Parallel()
		clk := newFakeClock()
		c := registry.NewEurekaCluster(1)
		c.Now = clk.Now
		const app, id = "cart", "cart-1:cart:8080"
		c.Register(0, app, id)
		srv := serve(t, c.Peers[0])
		h := harness{vars: map[string]string{"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": srv.URL + "/eureka", "SPRING_APPLICATION_NAME": app, "HOSTNAME": "cart-1", "SERVER_PORT": "8080"},
			files: map[string]string{}, clock: clk}
		if r := h.run("prestop", "--sleep=30s", "--record="+record, "--registry=eureka"); r.code != ExitOK {
			t.Fatalf("prestop: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		// The new JVM registers while the hook looks for the third time.
		var mu sync.Mutex
		looks, registeredAt := 0, -1
		c.Peers[0].OnRequest(func(req registry.Request) {
			mu.Lock()
			defer mu.Unlock()
			if req.Method == http.MethodGet {
				if looks++; looks == 3 {
					registeredAt = len(c.Peers[0].Requests())
					c.Register(0, app, id)
				}
			}
		})
		r := runPostStart(h, "--registry=eureka")
		logs := r.stdout + r.stderr + r.appLog
		reqs := c.Peers[0].Requests()
		for i, q := range reqs {
			if q.Method == http.MethodDelete && i < registeredAt {
				t.Errorf("request %d (%s %s) lifted the override before the app registered again (request %d)\n%s", i+1, q.Method, q.Path, registeredAt, logs)
			}
		}
		if registeredAt < 0 {
			t.Errorf("the hook finished before the app registered again\n%s", logs)
		}
		if st, ov, _ := c.Status(0, app, id); r.code != ExitOK || st != "UP" || ov != "" || !strings.Contains(r.stdout, "registered again") {
			t.Errorf("exit %d, status %s override %q\n%s", r.code, st, ov, logs)
		}
	})
	t.Run("eureka without registration times: the app's port", func(t *testing.T) {
		t.Parallel()
		clk := newFakeClock()
		c := registry.NewEurekaCluster(1)
		c.NoTimestamps = true
		const app, id = "cart", "cart-1:cart:8080"
		c.Register(0, app, id)
		srv := serve(t, c.Peers[0])
		var mu sync.Mutex
		dials, upAt := 0, -1
		h := harness{vars: map[string]string{"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": srv.URL + "/eureka", "SPRING_APPLICATION_NAME": app, "HOSTNAME": "cart-1", "SERVER_PORT": "8080"},
			files: map[string]string{}, clock: clk,
			dial: func(addr string) bool {
				mu.Lock()
				defer mu.Unlock()
				if dials++; dials == 3 && strings.HasSuffix(addr, ":8080") {
					upAt = len(c.Peers[0].Requests())
				}
				return upAt >= 0
			}}
		if r := h.run("prestop", "--sleep=30s", "--record="+record, "--registry=eureka"); r.code != ExitOK {
			t.Fatalf("prestop: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r := runPostStart(h, "--registry=eureka")
		logs := r.stdout + r.stderr + r.appLog
		for i, q := range c.Peers[0].Requests() {
			if q.Method == http.MethodDelete && i < upAt {
				t.Errorf("the override was lifted (request %d) before the app answered on its port (request %d)\n%s", i+1, upAt, logs)
			}
		}
		if st, _, _ := c.Status(0, app, id); r.code != ExitOK || st != "UP" || upAt < 0 {
			t.Errorf("exit %d, status %s\n%s", r.code, st, logs)
		}
	})
	t.Run("nacos 1.x: the re-registration enables it; nothing is written", func(t *testing.T) {
		t.Parallel()
		clk := newFakeClock()
		n := registry.NewNacos("1.4.8")
		inst := registry.NacosInstance{Service: "orders", IP: podIP, Port: 8080}
		n.Register(inst)
		srv := serve(t, n)
		h := harness{vars: map[string]string{"NACOS_SERVER_ADDR": hostPortOf(srv), "SPRING_APPLICATION_NAME": "orders", "POD_IP": podIP}, files: map[string]string{}, clock: clk}
		if r := h.run("prestop", "--sleep=30s", "--record="+record, "--registry=nacos"); r.code != ExitOK {
			t.Fatalf("prestop: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		before := len(n.Requests())
		var mu sync.Mutex
		looks := 0
		n.OnRequest(func(req registry.Request) {
			mu.Lock()
			defer mu.Unlock()
			if req.Path == "/nacos/v1/ns/catalog/instances" {
				if looks++; looks == 3 {
					n.Register(inst)
				}
			}
		})
		r := runPostStart(h, "--registry=nacos")
		logs := r.stdout + r.stderr + r.appLog
		for _, q := range n.Requests()[before:] {
			if q.Method == http.MethodPatch || q.Method == http.MethodPut {
				t.Errorf("poststart wrote %s %s?%s to Nacos 1.x, whose re-registration enables the instance itself\n%s", q.Method, q.Path, q.RawQuery, logs)
			}
		}
		if got, _ := n.Instance(inst); r.code != ExitOK || !got.Enabled || !strings.Contains(r.stdout, "nothing was written") || looks < 3 {
			t.Errorf("exit %d, enabled %v, looks %d\n%s", r.code, got.Enabled, looks, logs)
		}
	})
	t.Run("consul: maintenance is lifted once the app answers on its port", func(t *testing.T) {
		t.Parallel()
		c := registry.NewConsulAgent()
		c.Port = 9000
		c.Register("orders-9000", "orders")
		srv := serve(t, c)
		var mu sync.Mutex
		dials, upAt := 0, -1
		var dialed []string
		h := harness{vars: map[string]string{"CONSUL_HTTP_ADDR": srv.URL, "SPRING_APPLICATION_NAME": "orders", "SERVER_PORT": "9000", "POD_IP": podIP},
			files: map[string]string{}, clock: newFakeClock(),
			dial: func(addr string) bool {
				mu.Lock()
				defer mu.Unlock()
				dialed = append(dialed, addr)
				if dials++; dials == 5 {
					upAt = len(c.Requests())
				}
				return upAt >= 0
			}}
		if r := h.run("prestop", "--sleep=30s", "--record="+record, "--registry=consul"); r.code != ExitOK || !c.InMaintenance("orders-9000") {
			t.Fatalf("prestop: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r := runPostStart(h, "--registry=consul")
		logs := r.stdout + r.stderr + r.appLog
		for i, q := range c.Requests() {
			if q.Method == http.MethodPut && strings.Contains(q.RawQuery, "enable=false") && i < upAt {
				t.Errorf("maintenance was lifted (request %d) before the app answered on its port (request %d)\n%s", i+1, upAt, logs)
			}
		}
		if r.code != ExitOK || c.InMaintenance("orders-9000") || upAt < 0 || !strings.Contains(strings.Join(dialed, " "), podIP+":9000") {
			t.Errorf("exit %d, maintenance %v, dialed %v\n%s", r.code, c.InMaintenance("orders-9000"), dialed, logs)
		}
	})
}

// Every Eureka peer keeps its own override map: the undo removes the
// override on each peer that shows the new registration, and reads each
// back, not only on the first that answers.
func TestEurekaUndoOnEveryPeer(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	c := registry.NewEurekaCluster(2)
	c.Now = clk.Now
	const app, id = "cart", "cart-1:cart:8080"
	c.Register(0, app, id)
	c.Replicate()
	a, b := serve(t, c.Peers[0]), serve(t, c.Peers[1])
	h := harness{vars: map[string]string{"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": a.URL + "/eureka," + b.URL + "/eureka", "SPRING_APPLICATION_NAME": app, "HOSTNAME": "cart-1", "SERVER_PORT": "8080"},
		files: map[string]string{}, clock: clk}
	if r := h.run("prestop", "--sleep=30s", "--record="+record, "--registry=eureka"); r.code != ExitOK {
		t.Fatalf("prestop: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for p := range c.Peers {
		if st, _, _ := c.Status(p, app, id); st != "OUT_OF_SERVICE" {
			t.Fatalf("peer %d: %s after prestop", p, st)
		}
	}
	// Replication from peer 0 to peer 1 is lost; the restarted app
	// registers on both, each taking its own override back.
	c.Isolate(1, true)
	var once sync.Once
	c.Peers[0].OnRequest(func(registry.Request) {
		once.Do(func() { c.Register(0, app, id); c.Replicate() })
	})
	r := runPostStart(h, "--registry=eureka")
	logs := r.stdout + r.stderr + r.appLog
	for p := range c.Peers {
		if st, ov, _ := c.Status(p, app, id); st != "UP" || ov != "" {
			t.Errorf("peer %d: status %s, override %q after poststart\n%s", p, st, ov, logs)
		}
		if c.Peers[p].Count(http.MethodDelete, "/eureka/apps/CART/"+id+"/status") == 0 {
			t.Errorf("peer %d got no DELETE\n%s", p, logs)
		}
	}
	if r.code != ExitOK {
		t.Errorf("exit %d\n%s", r.code, logs)
	}
}

// Read-backs ask for one instance, one check or one page: a service with
// hundreds of instances and an agent with thousands of checks read back
// as well as small ones, and an answer cut short is never taken whole.
func TestReadBacksOfBigRegistries(t *testing.T) {
	t.Parallel()
	t.Run("nacos catalog of 300 instances", func(t *testing.T) {
		t.Parallel()
		n := registry.NewNacos("2.5.1")
		// Dubbo providers register every method in their metadata: a few
		// KiB an instance, so the whole list is megabytes.
		methods := strings.Repeat("placeOrder,cancelOrder,queryOrder,listOrders,", 100)
		for i := 0; i < 300; i++ {
			n.Register(registry.NacosInstance{Service: "orders", IP: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), Port: 8080,
				Metadata: map[string]string{"preserved.register.source": "SPRING_CLOUD", "methods": methods}})
		}
		// Listed last: on the fourth page of 100.
		inst := registry.NacosInstance{Service: "orders", IP: "10.200.0.7", Port: 8080, Weight: 2}
		n.Register(inst)
		srv := serve(t, n)
		r := harness{vars: map[string]string{"NACOS_SERVER_ADDR": hostPortOf(srv), "SPRING_APPLICATION_NAME": "orders", "POD_IP": inst.IP}}.run("prestop", "--sleep=1s", "--registry=nacos")
		if got, _ := n.Instance(inst); r.code != ExitOK || got.Enabled || got.Weight != 2 {
			t.Errorf("exit %d, enabled %v\n%s%s", r.code, got.Enabled, r.stdout, r.stderr)
		}
	})
	t.Run("consul agent with 6000 checks", func(t *testing.T) {
		t.Parallel()
		c := registry.NewConsulAgent()
		c.OtherServices = 6000
		c.Register("orders-8080", "orders")
		srv := serve(t, c)
		r := harness{vars: map[string]string{"CONSUL_HTTP_ADDR": srv.URL, "SPRING_APPLICATION_NAME": "orders", "SERVER_PORT": "8080"}}.run("prestop", "--sleep=1s", "--registry=consul")
		if r.code != ExitOK || !c.InMaintenance("orders-8080") || c.Count(http.MethodGet, "/v1/agent/checks") != 0 {
			t.Errorf("exit %d, maintenance %v, agent-wide check lists read %d\n%s%s", r.code, c.InMaintenance("orders-8080"), c.Count(http.MethodGet, "/v1/agent/checks"), r.stdout, r.stderr)
		}
	})
	t.Run("an answer longer than the hook reads is not the answer", func(t *testing.T) {
		t.Parallel()
		qos := newFake(t, func(w http.ResponseWriter, r *http.Request, _ int) {
			if r.URL.Path == "/offline" {
				answerText(w, 200, "OK")
				return
			}
			// A provider table whose end, with the registered row, is cut.
			answerText(w, 200, "As Provider side:\n"+strings.Repeat("|x|N|\n", maxBody/6+1)+"|com.example.Orders|Y|\n")
		})
		r := harness{vars: map[string]string{"DUBBO_APPLICATION_QOS_PORT": qos.port(t)}}.run("prestop", "--sleep=1s", "--registry=dubbo")
		if r.code != ExitFailed || !strings.Contains(r.stderr, "longer than") {
			t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
}

// driveEachSlow answers every held request after 2s of fake time, one at
// a time: a registry that takes 2s over every answer.
func driveEachSlow(clk *fakeClock, standins ...*registry.Standin) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range standins {
		wg.Add(1)
		go func(s *registry.Standin) {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case <-s.Held():
					clk.Advance(2 * time.Second)
					if !s.AnswerOne(done) {
						return
					}
				}
			}
		}(s)
	}
	return func() { close(done); wg.Wait() }
}

// Each preset's default budget holds its whole conversation with a
// registry that takes 2s over every answer (issue 15: "a registry
// answering in 2 s" must be waited for).
func TestDefaultBudgetFitsASlowRegistry(t *testing.T) {
	t.Parallel()
	slowAll := registry.Fault{Mode: registry.Slow}
	cases := []struct {
		name  string
		setup func(t *testing.T) ([]string, map[string]string, []*registry.Standin, func() bool)
	}{
		{"nacos 3.0 with login", func(t *testing.T) ([]string, map[string]string, []*registry.Standin, func() bool) {
			su := nacosSetup("3.0.3", true, true)(t)
			return su.args, su.vars, []*registry.Standin{su.standin}, su.offline
		}},
		{"nacos 1.4 with auth", func(t *testing.T) ([]string, map[string]string, []*registry.Standin, func() bool) {
			su := nacosSetup("1.4.8", true, true)(t)
			return su.args, su.vars, []*registry.Standin{su.standin}, su.offline
		}},
		{"eureka, the first peer not replicated", func(t *testing.T) ([]string, map[string]string, []*registry.Standin, func() bool) {
			c := registry.NewEurekaCluster(2)
			c.Register(1, "checkout", "checkout-1:checkout:8080")
			var urls []string
			for _, p := range c.Peers {
				urls = append(urls, serve(t, p).URL+"/eureka/")
			}
			return []string{"--registry=eureka"}, map[string]string{"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": strings.Join(urls, ","), "SPRING_APPLICATION_NAME": "checkout",
					"HOSTNAME": "checkout-1", "SERVER_PORT": "8080"}, []*registry.Standin{c.Peers[0].Standin, c.Peers[1].Standin}, func() bool {
					st, _, _ := c.Status(1, "checkout", "checkout-1:checkout:8080")
					return st == "OUT_OF_SERVICE"
				}
		}},
		{"spring-cloud behind Alibaba", func(t *testing.T) ([]string, map[string]string, []*registry.Standin, func() bool) {
			su := springSetup(registry.Alibaba, true)(t)
			return su.args, su.vars, []*registry.Standin{su.standin}, su.offline
		}},
		{"consul", func(t *testing.T) ([]string, map[string]string, []*registry.Standin, func() bool) {
			su := consulSetup(t)
			return su.args, su.vars, []*registry.Standin{su.standin}, su.offline
		}},
		{"dubbo 3", func(t *testing.T) ([]string, map[string]string, []*registry.Standin, func() bool) {
			su := dubboSetup("3.3.1")(t)
			return su.args, su.vars, []*registry.Standin{su.standin}, su.offline
		}},
		{"edas", func(t *testing.T) ([]string, map[string]string, []*registry.Standin, func() bool) {
			su := edasSetup(t)
			return su.args, su.vars, []*registry.Standin{su.standin}, su.offline
		}},
		{"http with a check", func(t *testing.T) ([]string, map[string]string, []*registry.Standin, func() bool) {
			d := registry.NewDubboQoS("3.3.1", "com.example.Orders")
			srv := serve(t, d)
			return []string{"--registry=http", "--http-method=GET", "--http-url=" + srv.URL + "/offline", "--http-check-url=" + srv.URL + "/ls", "--http-check-body=nacos-A(N)"},
				nil, []*registry.Standin{d.Standin}, func() bool { return !d.Registered("com.example.Orders") }
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			args, vars, standins, offline := c.setup(t)
			for _, s := range standins {
				s.SetFault(slowAll)
			}
			clk := newFakeClock()
			stop := driveEachSlow(clk, standins...)
			r := harness{vars: vars, clock: clk}.run(append([]string{"prestop", "--sleep=30s"}, args...)...)
			stop()
			if r.code != ExitOK || !offline() || strings.Contains(r.stdout, "NOT CONFIRMED") && !strings.HasPrefix(c.name, "edas") {
				t.Errorf("exit %d, offline %v with the preset's default budget\n%s%s", r.code, offline(), r.stdout, r.stderr)
			}
		})
	}
}

// With one Eureka peer down and the instance id a guess, the second
// candidate is still tried on the peer that answers.
func TestEurekaCandidatesAcrossServers(t *testing.T) {
	t.Parallel()
	c := registry.NewEurekaCluster(1)
	// SERVER_PORT is not set, so the id is "host:app" or "host:app:8080";
	// the app registered the second.
	c.Register(0, "checkout", "checkout-1:checkout:8080")
	srv := serve(t, c.Peers[0])
	r := harness{vars: map[string]string{"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": refusedURL(t) + "/eureka," + srv.URL + "/eureka", "SPRING_APPLICATION_NAME": "checkout", "HOSTNAME": "checkout-1"}}.run(
		"prestop", "--sleep=30s", "--registry=eureka")
	if st, _, _ := c.Status(0, "checkout", "checkout-1:checkout:8080"); r.code != ExitOK || st != "OUT_OF_SERVICE" {
		t.Errorf("exit %d, status %s\n%s%s", r.code, st, r.stdout, r.stderr)
	}
}

// Spring Cloud Alibaba answers an empty GET for an instance it cannot
// find: empty before the write is no confirmation after it.
func TestSpringEmptyIsNoConfirmationWhenItWasEmptyBefore(t *testing.T) {
	t.Parallel()
	a := registry.NewActuator(registry.Alibaba)
	a.Unlisted = true
	srv := serve(t, a)
	r := harness{vars: map[string]string{"SERVER_PORT": portOf(srv)}}.run("prestop", "--sleep=30s", "--registry=spring-cloud")
	if r.code != ExitFailed || !strings.Contains(r.stderr, "FAILED") {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// Nacos keeps the IP string the client registered; a Java client writes
// IPv6 in full. The hook compares addresses, writes the registry's own
// string back, and prints the key with brackets.
func TestNacosIPv6(t *testing.T) {
	t.Parallel()
	for _, podIPVar := range []string{"fd00:10:244::7", "[fd00:10:244::7]"} {
		n := registry.NewNacos("2.5.1")
		inst := registry.NacosInstance{Service: "orders", IP: "fd00:10:244:0:0:0:0:7", Port: 8080}
		n.Register(inst)
		srv := serve(t, n)
		r := harness{vars: map[string]string{"NACOS_SERVER_ADDR": hostPortOf(srv), "SPRING_APPLICATION_NAME": "orders", "SPRING_CLOUD_NACOS_DISCOVERY_IP": podIPVar}}.run(
			"prestop", "--sleep=1s", "--registry=nacos")
		if got, _ := n.Instance(inst); r.code != ExitOK || got.Enabled || !strings.Contains(r.stdout, "instance [fd00:10:244::7]:8080 of service DEFAULT_GROUP@@orders") {
			t.Errorf("%s: exit %d, enabled %v\n%s%s", podIPVar, r.code, got.Enabled, r.stdout, r.stderr)
		}
	}
}

// A management port given by flag is a separate management server: the
// app's servlet context path is not put in front of actuator there.
func TestSpringPortFlagIsTheManagementServer(t *testing.T) {
	t.Parallel()
	a := registry.NewActuator(registry.Netflix)
	srv := serve(t, a)
	r := harness{vars: map[string]string{"SERVER_PORT": "8080", "SERVER_SERVLET_CONTEXT_PATH": "/shop"}}.run(
		"prestop", "--sleep=1s", "--registry=spring-cloud", "--spring-port="+portOf(srv))
	if st, _ := a.Status(); r.code != ExitOK || st != "OUT_OF_SERVICE" {
		t.Errorf("exit %d, status %s\n%s%s", r.code, st, r.stdout, r.stderr)
	}
	// The same port as the app's is the app's server, behind its path.
	a = registry.NewActuator(registry.Netflix)
	a.ContextPath = "/shop"
	srv = serve(t, a)
	r = harness{vars: map[string]string{"SERVER_PORT": portOf(srv), "SERVER_SERVLET_CONTEXT_PATH": "/shop"}}.run(
		"prestop", "--sleep=1s", "--registry=spring-cloud", "--spring-port="+portOf(srv))
	if r.code != ExitOK {
		t.Errorf("main port: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// The http preset says plainly when it confirmed nothing, and confirms
// with a check URL.
func TestHTTPPresetCheck(t *testing.T) {
	t.Parallel()
	d := registry.NewDubboQoS("3.3.1", "com.example.Orders")
	srv := serve(t, d)
	r := harness{}.run("prestop", "--sleep=1s", "--registry=http", "--http-method=GET", "--http-url="+srv.URL+"/offline")
	if r.code != ExitOK || !strings.Contains(r.stdout, "http offline: NOT CONFIRMED for GET") || strings.Contains(r.stdout, "confirmed for") {
		t.Errorf("without a check: exit %d\n%s", r.code, r.stdout)
	}
	r = harness{}.run("prestop", "--sleep=1s", "--registry=http", "--http-method=GET", "--http-url="+srv.URL+"/offline", "--http-check-url="+srv.URL+"/ls", "--http-check-body=nacos-A(N)")
	if r.code != ExitOK || !strings.Contains(r.stdout, "http offline: confirmed for GET") {
		t.Errorf("with a check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if resp, err := http.Get(srv.URL + "/online"); err == nil {
		resp.Body.Close()
	}
	d.SetFault(registry.Fault{Mode: registry.IgnoreWrites, PathPrefix: "/offline"})
	r = harness{}.run("prestop", "--sleep=1s", "--registry=http", "--http-method=GET", "--http-url="+srv.URL+"/offline", "--http-check-url="+srv.URL+"/ls", "--http-check-body=nacos-A(N)")
	if r.code != ExitFailed || !strings.Contains(r.stderr, `the check wants 2xx containing "nacos-A(N)"`) {
		t.Errorf("a check that fails: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// A service name that holds its group ("PAY@@orders") names the group once;
// presets with nothing to undo say so rather than "confirmed".
func TestKeyAndUndoWording(t *testing.T) {
	t.Parallel()
	n := resolve(t, harness{vars: map[string]string{"SPRING_APPLICATION_NAME": "PAY@@orders", "POD_IP": podIP}}, nacosRegistry()).(*nacos)
	if k := n.key(); !strings.Contains(k, "of service PAY@@orders,") {
		t.Errorf("key %q", k)
	}
	d := registry.NewDubboQoS("3.3.1", "com.example.Orders")
	srv := serve(t, d)
	files := map[string]string{record: `{"registry":"dubbo","key":"x","state":"offline, confirmed"}`}
	r := harness{vars: map[string]string{"DUBBO_APPLICATION_QOS_PORT": portOf(srv)}, files: files}.run("poststart", "--registry=dubbo", "--record="+record)
	if r.code != ExitOK || !strings.Contains(r.stdout, "dubbo online: nothing to undo for ") || strings.Contains(r.stdout, "online: confirmed") {
		t.Errorf("exit %d\n%s", r.code, r.stdout)
	}
}

// A poststart that cannot undo keeps the record and writes why into it
// (the container's log may be nowhere anyone looks).
func TestPostStartFailureIsRecorded(t *testing.T) {
	t.Parallel()
	addr, err := registry.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{record: `{"registry":"consul","key":"x","state":"offline, confirmed"}`}
	r := harness{vars: map[string]string{"CONSUL_HTTP_ADDR": addr, "SPRING_APPLICATION_NAME": "orders"}, files: files}.run("poststart", "--registry=consul", "--record="+record, "--timeout=5s")
	if r.code != ExitOK || !strings.Contains(files[record], `"undoFailed":"FAILED: consul online`) {
		t.Errorf("exit %d, record %s", r.code, files[record])
	}
}

// The app's log is the stderr of this container's first process: a
// process of the hook's own cgroup, never the hook itself.
func TestAppLogTarget(t *testing.T) {
	t.Parallel()
	target := appLogTarget()
	pid, ok := strings.CutSuffix(strings.TrimPrefix(target, "/proc/"), "/fd/2")
	if !ok {
		t.Fatalf("target %q", target)
	}
	if pid == strconv.Itoa(os.Getpid()) {
		t.Errorf("the target is the hook itself")
	}
	self, err1 := os.ReadFile("/proc/self/cgroup")
	theirs, err2 := os.ReadFile("/proc/" + pid + "/cgroup")
	if err1 == nil && err2 == nil && pid != "1" && string(self) != string(theirs) {
		t.Errorf("process %s is in another cgroup", pid)
	}
}

func nacosRegistry() meshinit.Registry { return meshinit.Registry{Preset: meshinit.PresetNacos} }
