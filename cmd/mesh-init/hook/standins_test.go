package hook

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-injector/injector/test/registry"
)

// The registry stand-ins of test/registry, in every mode: the hook reports
// success only when the stand-in's state says the instance is offline, the
// drain is asked for in full after the offline step whatever happened, and
// the offline step stays within its budget (on the fake clock).

const (
	testDrain  = 30 * time.Second
	testBudget = 5 * time.Second
	podIP      = "10.0.0.7"
)

// standinSetup is one registry stand-in ready for the hook.
type standinSetup struct {
	args []string
	vars map[string]string
	// standin is the server to disturb; write selects its offline write.
	standin *registry.Standin
	write   registry.Fault
	// offline reads the stand-in's own state.
	offline func() bool
	// unknown makes the registry not know the instance.
	unknown func()
	// unconfirmable presets cannot read back: their success is the
	// registry's word.
	unconfirmable bool
	// urlVar, urlFlag or portVar locate the server, replaced by one where
	// nothing listens for "refused".
	urlVar, urlFlag, portVar string
}

func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func hostPortOf(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

func portOf(srv *httptest.Server) string {
	hp := hostPortOf(srv)
	return hp[strings.LastIndex(hp, ":")+1:]
}

func nacosSetup(version string, auth bool, creds bool) func(t *testing.T) standinSetup {
	return func(t *testing.T) standinSetup {
		n := registry.NewNacos(version)
		n.Auth = auth
		inst := registry.NacosInstance{Service: "orders", IP: podIP, Port: 8080, Weight: 3}
		n.Register(inst)
		n.Register(registry.NacosInstance{Service: "orders", IP: "10.0.0.9", Port: 8080})
		srv := serve(t, n)
		vars := map[string]string{"SPRING_CLOUD_NACOS_DISCOVERY_SERVERADDR": hostPortOf(srv), "SPRING_APPLICATION_NAME": "orders", "POD_IP": podIP, "SERVER_PORT": "8080"}
		if creds {
			vars["SPRING_CLOUD_NACOS_USERNAME"], vars["SPRING_CLOUD_NACOS_PASSWORD"] = "nacos", "nacos"
		}
		write := registry.Fault{Method: http.MethodPatch, PathPrefix: "/nacos/v1/ns/instance"}
		if strings.HasPrefix(version, "3.") {
			write = registry.Fault{Method: http.MethodPut, PathPrefix: "/nacos/v3/admin/ns/instance/partial"}
		}
		return standinSetup{
			args: []string{"--registry=nacos"}, vars: vars, standin: n.Standin, write: write,
			offline: func() bool {
				got, ok := n.Instance(inst)
				// The weight the app registered is kept.
				return ok && !got.Enabled && got.Weight == 3
			},
			unknown: func() { n.Deregister(inst) },
			urlVar:  "SPRING_CLOUD_NACOS_DISCOVERY_SERVERADDR",
		}
	}
}

func eurekaSetup(t *testing.T) standinSetup {
	c := registry.NewEurekaCluster(3)
	// Registered with peer 1 only: peer 0 has not had it replicated yet
	// and answers 404; peer 1 accepts.
	c.Register(1, "checkout", "checkout-1:checkout:8080")
	var urls []string
	for _, p := range c.Peers {
		urls = append(urls, serve(t, p).URL+"/eureka/")
	}
	return standinSetup{
		args: []string{"--registry=eureka"},
		vars: map[string]string{"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": strings.Join(urls, ","), "SPRING_APPLICATION_NAME": "checkout",
			"HOSTNAME": "checkout-1", "SERVER_PORT": "8080"},
		standin: c.Peers[1].Standin, write: registry.Fault{Method: http.MethodPut, PathPrefix: "/eureka/apps/"},
		offline: func() bool {
			st, ov, ok := c.Status(1, "checkout", "checkout-1:checkout:8080")
			return ok && st == "OUT_OF_SERVICE" && ov == "OUT_OF_SERVICE"
		},
		unknown: func() { c.Cancel("checkout", "checkout-1:checkout:8080") },
		urlVar:  "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE",
	}
}

func springSetup(flavour string, contextPath bool) func(t *testing.T) standinSetup {
	return func(t *testing.T) standinSetup {
		a := registry.NewActuator(flavour)
		vars := map[string]string{}
		srv := serve(t, a)
		portVar := "MANAGEMENT_SERVER_PORT"
		if contextPath {
			// Actuator on the app's port, behind the servlet context path,
			// in the dash-removed form Spring Boot binds too.
			a.ContextPath = "/shop"
			portVar = "SERVER_PORT"
			vars["SERVER_PORT"], vars["SERVER_SERVLET_CONTEXTPATH"] = portOf(srv), "/shop/"
		} else {
			vars["SERVER_PORT"], vars["MANAGEMENT_SERVER_PORT"] = "8080", portOf(srv)
		}
		return standinSetup{
			args: []string{"--registry=spring-cloud"}, vars: vars, standin: a.Standin, portVar: portVar,
			write: registry.Fault{Method: http.MethodPost, PathPrefix: a.Path()},
			offline: func() bool {
				st, _ := a.Status()
				return st == "OUT_OF_SERVICE" || st == "DOWN"
			},
			unknown: func() { a.Registered = false },
		}
	}
}

func consulSetup(t *testing.T) standinSetup {
	c := registry.NewConsulAgent()
	c.Token = "s3cret"
	c.Register("orders-8080", "orders")
	srv := serve(t, c)
	return standinSetup{
		args:    []string{"--registry=consul"},
		vars:    map[string]string{"CONSUL_HTTP_ADDR": hostPortOf(srv), "CONSUL_HTTP_TOKEN": "s3cret", "SPRING_APPLICATION_NAME": "orders", "SERVER_PORT": "8080"},
		standin: c.Standin, write: registry.Fault{Method: http.MethodPut, PathPrefix: "/v1/agent/service/maintenance/"},
		offline: func() bool { return c.InMaintenance("orders-8080") },
		unknown: func() { c.Deregister("orders-8080"); c.Register("orders-9090", "orders") },
		urlVar:  "CONSUL_HTTP_ADDR",
	}
}

func dubboSetup(version string) func(t *testing.T) standinSetup {
	return func(t *testing.T) standinSetup {
		d := registry.NewDubboQoS(version, "com.example.OrderService", "com.example.StockService")
		srv := serve(t, d)
		return standinSetup{
			args: []string{"--registry=dubbo"}, vars: map[string]string{"DUBBO_APPLICATION_QOS_PORT": portOf(srv)}, portVar: "DUBBO_APPLICATION_QOS_PORT",
			standin: d.Standin, write: registry.Fault{Method: http.MethodGet, PathPrefix: "/offline"},
			offline: func() bool {
				return !d.Registered("com.example.OrderService") && !d.Registered("com.example.StockService")
			},
		}
	}
}

func edasSetup(t *testing.T) standinSetup {
	e := registry.NewEDAS()
	srv := serve(t, e)
	return standinSetup{
		args: []string{"--registry=edas", "--edas-url=" + srv.URL + "/offline"}, standin: e.Standin,
		write: registry.Fault{Method: http.MethodGet, PathPrefix: "/offline"}, offline: e.Offline, unconfirmable: true,
		urlFlag: "--edas-url=",
	}
}

var standinRegistries = []struct {
	name  string
	setup func(t *testing.T) standinSetup
}{
	{"nacos 1.4 stand-in", nacosSetup("1.4.8", false, false)},
	{"nacos 2.5 stand-in", nacosSetup("2.5.1", false, false)},
	{"nacos 2.5 stand-in with auth", nacosSetup("2.5.1", true, true)},
	{"nacos 3.0 stand-in (admin auth by default)", nacosSetup("3.0.3", false, true)},
	{"nacos 3.0 stand-in with auth", nacosSetup("3.0.3", true, true)},
	{"eureka stand-in, 3 peers, one not replicated", eurekaSetup},
	{"spring actuator stand-in, netflix, management port", springSetup(registry.Netflix, false)},
	{"spring actuator stand-in, alibaba, context path", springSetup(registry.Alibaba, true)},
	{"spring actuator stand-in, consul, context path", springSetup(registry.Consul, true)},
	{"consul agent stand-in with ACL", consulSetup},
	{"dubbo qos 2.7 stand-in", dubboSetup("2.7.23")},
	{"dubbo qos 3 stand-in", dubboSetup("3.3.1")},
	{"edas agent stand-in", edasSetup},
}

// drive plays the network's part on the fake clock: a held request waits
// for its timeout (hang, stalled body), or is answered after 2s of fake
// time (slow) — well within the 5s budget, which a per-try split into
// thirds would not have waited for.
func drive(clk *fakeClock, s *registry.Standin, mode registry.Mode, headers chan string) (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case held := <-s.Held():
				switch mode {
				case registry.Slow:
					clk.Advance(2 * time.Second)
					s.Release()
					continue
				case registry.StalledBody, registry.AppliedThenStalled:
					// The status and headers must have reached the hook
					// before its time runs out, or this is "no answer".
					for got := ""; got != held.Method+" "+held.Host+held.Path; {
						select {
						case got = <-headers:
						case <-done:
							return
						}
					}
				}
				clk.FireNext()
			}
		}
	}()
	return func() { close(done) }
}

func TestPreStopAgainstStandins(t *testing.T) {
	t.Parallel()
	modes := []registry.Mode{registry.OK, registry.Slow, registry.Error500, "refused", registry.Hang, registry.StalledBody, "unknown", registry.IgnoreWrites, registry.Reset,
		registry.AppliedThenStalled}
	for _, reg := range standinRegistries {
		for _, mode := range modes {
			t.Run(reg.name+"/"+string(mode), func(t *testing.T) {
				t.Parallel()
				su := reg.setup(t)
				switch mode {
				case "refused":
					addr, err := registry.RefusedAddr()
					if err != nil {
						t.Fatal(err)
					}
					switch {
					case su.urlVar == "EUREKA_CLIENT_SERVICEURL_DEFAULTZONE":
						su.vars[su.urlVar] = "http://" + addr + "/eureka/"
					case su.urlVar != "":
						su.vars[su.urlVar] = addr
					case su.urlFlag != "":
						su.args = []string{su.args[0], su.urlFlag + "http://" + addr + "/offline"}
					default:
						su.vars[su.portVar] = addr[strings.LastIndex(addr, ":")+1:]
					}
				case "unknown":
					if su.unknown == nil {
						t.Skip("this registry has no instance key to get wrong")
					}
					su.unknown()
				case registry.OK:
				default:
					f := su.write
					f.Mode = mode
					if mode == registry.Slow {
						// One slow answer (2s of the 5s budget); a budget
						// split into thirds would have given up on it.
						f.Times = 1
					}
					su.standin.SetFault(f)
				}
				clk := newFakeClock()
				headers := make(chan string, 64)
				stop := drive(clk, su.standin, mode, headers)
				start := clk.Now()
				r := harness{vars: su.vars, clock: clk, headers: headers}.run(append([]string{"prestop", "--sleep=" + testDrain.String(), "--offline-timeout=" + testBudget.String()}, su.args...)...)
				stop()
				logs := "\nstdout:\n" + r.stdout + "stderr:\n" + r.stderr

				// The drain is asked for in full, after the offline step,
				// whatever happened; the whole offline step stays within
				// its budget.
				sleeps := clk.Sleeps()
				if len(sleeps) == 0 || sleeps[len(sleeps)-1] != testDrain {
					t.Errorf("the last sleep asked for is not the %s drain: %v%s", testDrain, sleeps, logs)
				}
				if took := clk.Now().Sub(start); took > testBudget+testDrain {
					t.Errorf("the hook took %s on the fake clock, over the %s budget plus the %s drain%s", took, testBudget, testDrain, logs)
				}

				// A write applied whose answer then stalls is confirmed by
				// the read-back, which decides (only presets without one
				// cannot know).
				wantOK := mode == registry.OK || mode == registry.Slow || (mode == registry.IgnoreWrites && su.unconfirmable) ||
					(mode == registry.AppliedThenStalled && !su.unconfirmable)
				if wantOK {
					if r.code != ExitOK {
						t.Fatalf("exit %d, want 0%s", r.code, logs)
					}
					if !su.offline() && mode != registry.IgnoreWrites {
						t.Errorf("the hook said done but the stand-in's instance is not offline%s", logs)
					}
					want := "confirmed for "
					if su.unconfirmable {
						want = "NOT CONFIRMED for "
					}
					if !strings.Contains(r.stdout, want) {
						t.Errorf("stdout does not say %q%s", want, logs)
					}
					return
				}
				if r.code != ExitFailed {
					t.Fatalf("exit %d, want 1 (the registry did not take the instance offline)%s", r.code, logs)
				}
				if su.offline() && mode != registry.StalledBody && mode != registry.Reset {
					t.Logf("note: the stand-in is offline although the hook failed%s", logs)
				}
				// One line on stderr, naming the registry, the key and what
				// the registry said.
				if strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "offline failed") || !strings.Contains(r.stderr, " for ") {
					t.Errorf("want one FAILED line naming the registry and the instance%s", logs)
				}
				wantSaid := map[registry.Mode]string{
					registry.Error500: "500", "refused": "connection refused", registry.Hang: "no answer",
					registry.StalledBody: "the body stalled", registry.Reset: "error:", registry.AppliedThenStalled: "the body stalled",
				}[mode]
				if wantSaid != "" && !strings.Contains(r.stderr, wantSaid) {
					t.Errorf("stderr does not say %q%s", wantSaid, logs)
				}
			})
		}
	}
}

// TestUndoAfterRestartInPlace: prestop takes the instance offline and
// records it; the container restarts in place (the registry keeps the
// offline state across the app's re-registration for Nacos 2.x/3.x,
// Eureka, Consul); poststart finds the record, brings the instance back
// online, reads it back and removes the record. Dubbo and EDAS register
// from inside the app's process, so there is nothing to undo.
func TestUndoAfterRestartInPlace(t *testing.T) {
	t.Parallel()
	const record = "/var/run/mesh-state/app.offline.json"
	type reg struct {
		name  string
		setup func(t *testing.T) (standinSetup, func(), func() bool)
	}
	regs := []reg{
		{"nacos 2.5 stand-in: the override survives re-registration", func(t *testing.T) (standinSetup, func(), func() bool) {
			n := registry.NewNacos("2.5.1")
			inst := registry.NacosInstance{Service: "orders", IP: podIP, Port: 8080, Weight: 3}
			n.Register(inst)
			srv := serve(t, n)
			su := standinSetup{args: []string{"--registry=nacos"}, vars: map[string]string{"NACOS_SERVER_ADDR": hostPortOf(srv), "SPRING_APPLICATION_NAME": "orders", "POD_IP": podIP}}
			return su, func() { n.Deregister(inst); n.Register(inst) }, func() bool {
				got, ok := n.Instance(inst)
				return ok && got.Enabled && got.Weight == 3
			}
		}},
		{"nacos 3.0 stand-in", func(t *testing.T) (standinSetup, func(), func() bool) {
			n := registry.NewNacos("3.0.3")
			inst := registry.NacosInstance{Service: "orders", IP: podIP, Port: 8080}
			n.Register(inst)
			srv := serve(t, n)
			su := standinSetup{args: []string{"--registry=nacos", "--nacos-username-env=NU", "--nacos-password-env=NP"},
				vars: map[string]string{"NACOS_SERVER_ADDR": hostPortOf(srv), "SPRING_APPLICATION_NAME": "orders", "POD_IP": podIP, "NU": "nacos", "NP": "nacos"}}
			return su, func() { n.Deregister(inst); n.Register(inst) }, func() bool { got, ok := n.Instance(inst); return ok && got.Enabled }
		}},
		{"eureka stand-in: the override map keeps the id", func(t *testing.T) (standinSetup, func(), func() bool) {
			c := registry.NewEurekaCluster(2)
			c.Register(0, "cart", "cart-1:cart:8080")
			c.Replicate()
			a, b := serve(t, c.Peers[0]), serve(t, c.Peers[1])
			su := standinSetup{args: []string{"--registry=eureka"}, vars: map[string]string{"EUREKA_CLIENT_SERVICEURL_DEFAULTZONE": a.URL + "/eureka," + b.URL + "/eureka",
				"SPRING_APPLICATION_NAME": "cart", "HOSTNAME": "cart-1", "SERVER_PORT": "8080"}}
			return su, func() { c.Register(1, "cart", "cart-1:cart:8080"); c.Replicate() }, func() bool {
				st, ov, ok := c.Status(0, "cart", "cart-1:cart:8080")
				return ok && st == "UP" && ov == ""
			}
		}},
		{"consul agent stand-in: maintenance persists", func(t *testing.T) (standinSetup, func(), func() bool) {
			c := registry.NewConsulAgent()
			c.Register("orders-8080", "orders")
			srv := serve(t, c)
			su := standinSetup{args: []string{"--registry=consul"}, vars: map[string]string{"CONSUL_HTTP_ADDR": srv.URL, "SPRING_APPLICATION_NAME": "orders", "SERVER_PORT": "8080"}}
			return su, func() { c.Register("orders-8080", "orders") }, func() bool { return !c.InMaintenance("orders-8080") }
		}},
		{"spring actuator stand-in, netflix", func(t *testing.T) (standinSetup, func(), func() bool) {
			a := registry.NewActuator(registry.Netflix)
			srv := serve(t, a)
			su := standinSetup{args: []string{"--registry=spring-cloud"}, vars: map[string]string{"SERVER_PORT": portOf(srv)}}
			return su, a.Restart, func() bool { st, ov := a.Status(); return st != "OUT_OF_SERVICE" && ov == "" }
		}},
		{"spring actuator stand-in, alibaba", func(t *testing.T) (standinSetup, func(), func() bool) {
			a := registry.NewActuator(registry.Alibaba)
			srv := serve(t, a)
			su := standinSetup{args: []string{"--registry=spring-cloud"}, vars: map[string]string{"SERVER_PORT": portOf(srv)}}
			return su, a.Restart, func() bool { st, _ := a.Status(); return st == "UP" }
		}},
		{"dubbo qos 3 stand-in: registers in-process", func(t *testing.T) (standinSetup, func(), func() bool) {
			d := registry.NewDubboQoS("3", "com.example.Orders")
			srv := serve(t, d)
			su := standinSetup{args: []string{"--registry=dubbo"}, vars: map[string]string{"DUBBO_APPLICATION_QOS_PORT": portOf(srv)}}
			// A new process exports and registers again by itself.
			return su, func() { d.ClearFaults(); _, _ = http.Get(srv.URL + "/online") }, func() bool { return d.Registered("com.example.Orders") }
		}},
	}
	for _, c := range regs {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			su, restart, online := c.setup(t)
			files := map[string]string{}
			h := harness{vars: su.vars, files: files}
			r := h.run(append([]string{"prestop", "--sleep=30s", "--record=" + record}, su.args...)...)
			if r.code != ExitOK || online() {
				t.Fatalf("prestop: exit %d, online %v\n%s%s", r.code, online(), r.stdout, r.stderr)
			}
			if !strings.Contains(files[record], `"state":"offline`) {
				t.Fatalf("no record: %q", files[record])
			}
			restart()
			r = h.run(append([]string{"poststart", "--record=" + record}, su.args...)...)
			logs := "\nstdout:\n" + r.stdout + "stderr:\n" + r.stderr + "app log:\n" + r.appLog
			if r.code != ExitOK || !online() {
				t.Fatalf("poststart: exit %d, online %v%s", r.code, online(), logs)
			}
			if _, kept := files[record]; kept {
				t.Errorf("the record is still there%s", logs)
			}
			// The next start finds no record and costs nothing.
			clk := newFakeClock()
			r = harness{vars: su.vars, files: files, clock: clk}.run(append([]string{"poststart", "--record=" + record}, su.args...)...)
			if r.code != ExitOK || r.stdout != "" || len(clk.Sleeps()) != 0 {
				t.Errorf("first start: exit %d, stdout %q, sleeps %v", r.code, r.stdout, clk.Sleeps())
			}
		})
	}
}

// A poststart undo that cannot reach the registry never fails the hook
// (that would kill the container): it says so in the app's log, keeps the
// record, and the app's own postStart handler still runs and decides.
func TestPostStartNeverFailsForItsOwnPart(t *testing.T) {
	t.Parallel()
	addr, err := registry.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	const record = "/state/app.json"
	files := map[string]string{record: `{"registry":"consul","key":"x","state":"offline, confirmed"}`}
	h := harness{vars: map[string]string{"CONSUL_HTTP_ADDR": addr, "SPRING_APPLICATION_NAME": "orders"}, files: files}
	r := h.run("poststart", "--registry=consul", "--record="+record, "--timeout=10s")
	if r.code != ExitOK || !strings.Contains(r.appLog, "FAILED: consul online") || files[record] == "" {
		t.Errorf("exit %d, app log %q, record %q", r.code, r.appLog, files[record])
	}
	r = h.run(append([]string{"poststart", "--registry=consul", "--record=" + record, "--timeout=1s", "--then-exec", "--"}, helperCommand(t, "exit", "4")...)...)
	if r.code != 4 {
		t.Errorf("the app's own postStart exit code is not passed on: %d", r.code)
	}
	if r := h.run("poststart", "--registry=zookeeper"); r.code != ExitOK || !strings.Contains(r.appLog, "bad arguments") {
		t.Errorf("bad arguments: exit %d, app log %q", r.code, r.appLog)
	}
}

// TestDubbo3WaitsForTheMetadataRefresh: Dubbo 3's ls shows the provider
// unregistered at once, and its application-level instance leaves the
// registry only at the next metadata refresh
// (dubbo.application.metadata.publish.delay, 1s by default): the offline
// step waits that long before the drain sleep, as the application's
// setting says; Dubbo 2.7 (no application-level registration) does not.
func TestDubbo3WaitsForTheMetadataRefresh(t *testing.T) {
	for _, tc := range []struct {
		version, delayVar string
		want              time.Duration // the wait after ls (0: none)
	}{
		{"3.3.1", "", time.Second},
		{"3.3.1", "2500", 2500 * time.Millisecond},
		{"3.3.1", "0", 0},
		{"2.7.23", "", 0},
	} {
		t.Run(tc.version+"/"+tc.delayVar, func(t *testing.T) {
			t.Parallel()
			d := registry.NewDubboQoS(tc.version, "com.example.OrderService")
			srv := serve(t, d)
			vars := map[string]string{"DUBBO_APPLICATION_QOS_PORT": portOf(srv)}
			if tc.delayVar != "" {
				vars["DUBBO_APPLICATION_METADATA_PUBLISH_DELAY"] = tc.delayVar
			}
			h := harness{vars: vars, clock: newFakeClock()}
			r := h.run("prestop", "--sleep=7s", "--registry=dubbo")
			if r.code != ExitOK || d.Registered("com.example.OrderService") {
				t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			// The sleeps are the refresh wait (if any), then the drain.
			want := []time.Duration{7 * time.Second}
			if tc.want > 0 {
				want = []time.Duration{tc.want, 7 * time.Second}
			}
			if got := h.clock.Sleeps(); !slices.Equal(got, want) {
				t.Errorf("sleeps %v, want %v\n%s", got, want, r.stdout)
			}
			waited := strings.Contains(r.stdout, "waited for Dubbo 3's metadata refresh (every "+tc.want.String())
			if waited != (tc.want > 0) {
				t.Errorf("the output says it waited for the refresh: %t, want %t\n%s", waited, tc.want > 0, r.stdout)
			}
		})
	}
}
