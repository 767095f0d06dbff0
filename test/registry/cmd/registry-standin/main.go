// Command registry-standin serves one registry stand-in of package
// test/registry on an address, so the node tier can run it in a pod:
//
//	registry-standin --kind=nacos --version=2.5.1 --listen=:8848 --register=orders,10.244.0.7,8080
//
// It is a stand-in, not the registry: every answer carries
// "Server: registry-standin (...)". /standin/fault?mode=hang&path=/nacos/v1
// adds a fault (modes of package registry), /standin/clear removes them,
// /standin/requests lists what was received.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/sidecar-injector/injector/test/registry"
)

type registers []string

func (r *registers) String() string     { return strings.Join(*r, ";") }
func (r *registers) Set(v string) error { *r = append(*r, v); return nil }

func main() {
	kind := flag.String("kind", "", "nacos, eureka, actuator-netflix, actuator-alibaba, actuator-consul, consul, dubbo or edas")
	version := flag.String("version", "", "registry version (nacos: 1.4.8, 2.5.1, 3.0.3; dubbo: 2.7, 3)")
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	auth := flag.Bool("auth", false, "nacos: require login (nacos/nacos)")
	var regs registers
	flag.Var(&regs, "register", "an instance to register: nacos service,ip,port[,cluster]; eureka app,id; consul id,name; dubbo service")
	flag.Parse()

	h, st, err := build(*kind, *version, *auth, regs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "registry-standin:", err)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/standin/fault", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		times, _ := strconv.Atoi(q.Get("times"))
		st.SetFault(registry.Fault{Mode: registry.Mode(q.Get("mode")), Method: q.Get("method"), PathPrefix: q.Get("path"), Times: times})
	})
	mux.HandleFunc("/standin/clear", func(http.ResponseWriter, *http.Request) { st.ClearFaults() })
	mux.HandleFunc("/standin/requests", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(st.Requests())
	})
	mux.Handle("/", h)
	log.Printf("registry-standin: %s %s (a stand-in, not the registry) on %s", *kind, *version, *listen)
	log.Fatal(http.ListenAndServe(*listen, mux))
}

func build(kind, version string, auth bool, regs []string) (http.Handler, *registry.Standin, error) {
	switch kind {
	case "nacos":
		if version == "" {
			version = "2.5.1"
		}
		n := registry.NewNacos(version)
		n.Auth = auth
		for _, r := range regs {
			f := strings.Split(r, ",")
			if len(f) < 3 {
				return nil, nil, fmt.Errorf("--register=%q: want service,ip,port[,cluster]", r)
			}
			port, err := strconv.Atoi(f[2])
			if err != nil {
				return nil, nil, fmt.Errorf("--register=%q: %v", r, err)
			}
			inst := registry.NacosInstance{Service: f[0], IP: f[1], Port: port}
			if len(f) > 3 {
				inst.Cluster = f[3]
			}
			n.Register(inst)
		}
		return n, n.Standin, nil
	case "eureka":
		c := registry.NewEurekaCluster(1)
		for _, r := range regs {
			app, id, _ := strings.Cut(r, ",")
			c.Register(0, app, id)
		}
		return c.Peers[0], c.Peers[0].Standin, nil
	case "actuator-netflix", "actuator-alibaba", "actuator-consul":
		a := registry.NewActuator(strings.TrimPrefix(kind, "actuator-"))
		return a, a.Standin, nil
	case "consul":
		c := registry.NewConsulAgent()
		for _, r := range regs {
			id, name, _ := strings.Cut(r, ",")
			c.Register(id, name)
		}
		return c, c.Standin, nil
	case "dubbo":
		if version == "" {
			version = "3"
		}
		d := registry.NewDubboQoS(version, regs...)
		return d, d.Standin, nil
	case "edas":
		e := registry.NewEDAS()
		return e, e.Standin, nil
	}
	return nil, nil, fmt.Errorf("unknown --kind %q", kind)
}
