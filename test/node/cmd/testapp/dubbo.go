package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sidecar-injector/injector/test/registry"
)

// dubboInterface is the provider service the app exports.
const dubboInterface = "org.sidecarinjector.testapp.Whoami"

// dubboMetadataDelay is how long after an unregistration Dubbo 3 updates
// its application-level instance: the deployer refreshes metadata and
// instance every dubbo.application.metadata.publish.delay (1000 ms,
// DefaultApplicationDeployer), and with no service left (EMPTY_REVISION)
// the update unregisters the instance (AbstractServiceDiscovery.update and
// doUpdate; apache/dubbo 324c625). The emulation waits the whole period,
// the worst case.
const dubboMetadataDelay = time.Second

// dubboProvider is a Dubbo 3 provider registered in Nacos with register
// mode "all": application-level (service discovery: the application's
// name) and interface-level (providers:{interface}::), both at the
// protocol port. Its QoS (qos) is test/registry's Dubbo QoS 3 stand-in,
// wired to the registrations: offline unregisters the interface-level
// URL at once (BaseOffline: registry.unregister for each registered URL)
// and the application-level instance after the metadata refresh;
// offlineInterface and offlineApp do one of them; online* register
// again.
type dubboProvider struct {
	app, iface *registrar
	qos        *registry.DubboQoS
	qosPort    string
}

func newDubbo(getenv func(string) string, ip string) (*dubboProvider, error) {
	addr := getenv("DUBBO_REGISTRY_ADDRESS")
	rest, ok := strings.CutPrefix(addr, "nacos://")
	if !ok {
		return nil, fmt.Errorf("--register=dubbo needs DUBBO_REGISTRY_ADDRESS=nacos://host:port, not %q", addr)
	}
	rest, _, _ = strings.Cut(rest, "?")
	server, err := nacosServer(rest)
	if err != nil {
		return nil, fmt.Errorf("DUBBO_REGISTRY_ADDRESS: %v", err)
	}
	name := either(getenv, "DUBBO_APPLICATION_NAME", "SPRING_APPLICATION_NAME")
	if name == "" {
		return nil, fmt.Errorf("--register=dubbo needs DUBBO_APPLICATION_NAME")
	}
	port := either(getenv, "DUBBO_PROTOCOL_PORT", "SERVER_PORT")
	if port == "" {
		port = "20880" // Dubbo's default protocol port
	}
	qosPort := either(getenv, "DUBBO_APPLICATION_QOS_PORT", "DUBBO_APPLICATION_QOSPORT")
	if qosPort == "" {
		qosPort = "22222"
	}
	d := &dubboProvider{qosPort: qosPort}
	add, remove := nacosInstance(server, name, ip, port)
	d.app = newRegistrar("dubbo application-level", add, remove)
	add, remove = nacosInstance(server, "providers:"+dubboInterface+"::", ip, port)
	d.iface = newRegistrar("dubbo interface-level", add, remove)
	d.qos = registry.NewDubboQoS("3", dubboInterface)
	d.qos.Registries = []string{"nacos"}
	d.qos.OnRequest(func(r registry.Request) {
		record("qos", r.Method+" "+r.Path)
		switch strings.TrimPrefix(r.Path, "/") {
		case "offline":
			d.iface.deregister()
			time.AfterFunc(dubboMetadataDelay, d.app.deregister)
		case "offlineInterface":
			d.iface.deregister()
		case "offlineApp":
			time.AfterFunc(dubboMetadataDelay, d.app.deregister)
		case "online":
			d.start()
		case "onlineInterface":
			d.iface.start()
		case "onlineApp":
			d.app.start()
		}
	})
	return d, nil
}

func (d *dubboProvider) start()        { d.app.start(); d.iface.start() }
func (d *dubboProvider) deregister()   { d.iface.deregister(); d.app.deregister() }
func (d *dubboProvider) state() string { return d.app.state() }

// serveQoS serves QoS on loopback: Dubbo refuses offline from a foreign
// address by default (qos-accept-foreign-ip=false), and the hook calls
// 127.0.0.1.
func (d *dubboProvider) serveQoS() error {
	ln, err := net.Listen("tcp", "127.0.0.1:"+d.qosPort)
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(ln, d.qos) }()
	return nil
}

// serveEDASAgent serves the EDAS/MSE agent's local port in the app's
// process (54199, loopback): test/registry's EDAS stand-in, wired to the
// app's registration as the agent is: offline deregisters the instance,
// online registers it again.
func serveEDASAgent(reg registration) error {
	ln, err := net.Listen("tcp", "127.0.0.1:54199")
	if err != nil {
		return err
	}
	// The hook's default URL says localhost, which may resolve to ::1
	// first: answer there too when the pod has IPv6 loopback.
	ln6, _ := net.Listen("tcp", "[::1]:54199")
	e := registry.NewEDAS()
	e.OnRequest(func(r registry.Request) {
		record("edas-agent", r.Method+" "+r.Path)
		switch r.Path {
		case "/offline":
			reg.deregister()
		case "/online":
			reg.start()
		}
	})
	go func() { _ = http.Serve(ln, e) }()
	if ln6 != nil {
		go func() { _ = http.Serve(ln6, e) }()
	}
	return nil
}
