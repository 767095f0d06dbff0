package hook

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
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
	// writeFile, rename and remove keep the offline record.
	writeFile func(string, []byte) error
	rename    func(string, string) error
	remove    func(string) error
	// appLog writes a line to the app container's own log.
	appLog func(string)
}

// envNames are the environment variable names Spring Boot binds a
// property from (SystemEnvironmentPropertyMapper): dots become '_', and a
// dash is either dropped ("server-addr" -> SERVERADDR) or, in the legacy
// form, becomes '_' (SERVER_ADDR). Both forms bind, so the hook reads both.
func envNames(property string) []string {
	up := strings.ToUpper(strings.ReplaceAll(property, ".", "_"))
	names := []string{strings.ReplaceAll(up, "-", "")}
	if legacy := strings.ReplaceAll(up, "-", "_"); legacy != names[0] {
		names = append(names, legacy)
	}
	return names
}

// prop returns the first set property among properties, read from the
// environment in either of Spring Boot's forms, and the variable's name.
func (e environment) prop(properties ...string) (value, name string) {
	for _, p := range properties {
		if v, n := e.lookup(envNames(p)...); v != "" {
			return v, n
		}
	}
	return "", ""
}

// propPort is prop for a port: values that are not ports are skipped with
// a note (service links put SERVER_PORT=tcp://... into pods).
func (e environment) propPort(notes *[]string, properties ...string) (int, string) {
	var names []string
	for _, p := range properties {
		names = append(names, envNames(p)...)
	}
	return e.port(notes, names...)
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

// registrar is a preset resolved against the app's environment: the
// instance key it will use and the calls that take that instance offline,
// confirm it by reading it back, and bring it back online.
type registrar interface {
	// key names the instance as the registry knows it, for every line.
	key() string
	// notes say where each default came from.
	notes() []string
	// offline takes the instance offline and reads it back. It reports
	// whether the registry confirmed it, and what the registry said.
	offline(s *step) (confirmed bool, said string)
	// online waits until the restarted app has registered again, puts
	// the instance back online and reads it back.
	online(s *step) (confirmed bool, said string)
}

// unconfirmable is implemented by presets whose registry offers no
// read-back: their success is the registry's word, and the log says so.
type unconfirmable interface{ unconfirmed() string }

// resolve turns a preset into its registrar; nil for none.
func (e environment) resolve(r meshinit.Registry) (registrar, error) {
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
	case meshinit.PresetConsul:
		return e.consul(r.Consul)
	case meshinit.PresetEDAS:
		return e.edas(r.EDAS), nil
	case meshinit.PresetHTTP:
		return httpOffline(r.HTTP), nil
	}
	return nil, fmt.Errorf("unknown registry preset %q", r.Preset)
}

// jsonAccept asks for JSON (Eureka answers XML otherwise).
var jsonAccept = http.Header{"Accept": {"application/json"}}

// decodeJSON reads an answer's body into v; the error says what was there.
func decodeJSON(a answer, v any) error {
	if err := json.Unmarshal([]byte(a.body), v); err != nil {
		return fmt.Errorf("not the JSON expected (%q)", oneLine(a.body, 80))
	}
	return nil
}

// orDefault is v, or def with a note of where it came from.
func orDefault(v, from, def, defFrom string) (string, string) {
	if v != "" {
		return v, from
	}
	return def, defFrom
}

// noUndo is the online step of presets whose registration lives in the
// app's own process: a restarted process registers anew.
func noUndo(why string) (bool, string) { return true, "nothing to undo: " + why }
