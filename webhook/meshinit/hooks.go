package meshinit

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Preset names a service registry whose offline call the tool knows.
type Preset string

// The registry presets.
const (
	PresetNone        Preset = "none"
	PresetDubbo       Preset = "dubbo"
	PresetSpringCloud Preset = "spring-cloud"
	PresetEureka      Preset = "eureka"
	PresetNacos       Preset = "nacos"
	PresetConsul      Preset = "consul"
	PresetEDAS        Preset = "edas"
	PresetHTTP        Preset = "http"
)

// Presets lists every preset, in the order the documentation shows them.
var Presets = []Preset{PresetNone, PresetDubbo, PresetSpringCloud, PresetEureka, PresetNacos, PresetConsul, PresetEDAS, PresetHTTP}

// PresetNames is Presets as text, "none, dubbo, ... or http", for messages.
func PresetNames() string {
	names := make([]string, len(Presets))
	for i, p := range Presets {
		names[i] = string(p)
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// ParsePreset accepts one of Presets.
func ParsePreset(s string) (Preset, error) {
	for _, p := range Presets {
		if string(p) == s {
			return p, nil
		}
	}
	names := make([]string, len(Presets))
	for i, p := range Presets {
		names[i] = string(p)
	}
	return "", fmt.Errorf("%q is not a registry preset (%s)", s, strings.Join(names, ", "))
}

// Registry configures the offline step. Only the block of the chosen preset
// is used; empty fields take the documented defaults, several of which the
// tool derives from the app container's environment at hook time.
type Registry struct {
	Preset Preset `json:"preset"`
	// Timeout bounds the whole offline step, retries included (default 5s).
	Timeout Duration `json:"timeout"`

	Dubbo       Dubbo       `json:"dubbo,omitempty"`
	SpringCloud SpringCloud `json:"springCloud,omitempty"`
	Eureka      Eureka      `json:"eureka,omitempty"`
	Nacos       Nacos       `json:"nacos,omitempty"`
	Consul      Consul      `json:"consul,omitempty"`
	EDAS        EDAS        `json:"edas,omitempty"`
	HTTP        HTTPCall    `json:"http,omitempty"`
}

// Dubbo takes a Dubbo provider offline with the QoS "offline" command.
type Dubbo struct {
	// Port is the QoS port (default: DUBBO_APPLICATION_QOS_PORT, else 22222).
	Port int32 `json:"port,omitempty"`
}

// SpringCloud sets the instance's status through the Spring Cloud
// service-registry actuator endpoint (serviceregistry, or service-registry
// before Spring Cloud 2020.0).
type SpringCloud struct {
	// Port is the management (actuator) port (default: MANAGEMENT_SERVER_PORT,
	// else SERVER_PORT, else 8080).
	Port int32 `json:"port,omitempty"`
	// BasePath is the actuator base path (default:
	// MANAGEMENT_ENDPOINTS_WEB_BASE_PATH, else /actuator, behind the servlet
	// context path when there is one).
	BasePath string `json:"basePath,omitempty"`
	// Status is the status to set. Empty detects the registry behind the
	// endpoint: OUT_OF_SERVICE for Eureka (Spring Cloud Netflix) and Consul,
	// DOWN for Nacos (Spring Cloud Alibaba, which ignores any status but UP
	// and DOWN and still answers 200).
	Status string `json:"status,omitempty"`
}

// Eureka sets this instance's status to OUT_OF_SERVICE on the Eureka server.
type Eureka struct {
	// ServerURL is the Eureka service URL, such as http://eureka:8761/eureka
	// (default: the first URL in EUREKA_CLIENT_SERVICEURL_DEFAULTZONE).
	ServerURL string `json:"serverURL,omitempty"`
	// AppName is the registered application (default:
	// EUREKA_INSTANCE_APPNAME, else SPRING_APPLICATION_NAME); it is sent
	// upper-cased, as Eureka stores it.
	AppName string `json:"appName,omitempty"`
	// InstanceID is the registered instance id (default:
	// EUREKA_INSTANCE_INSTANCEID, else Spring Cloud's default
	// <hostname>:<app name>[:SERVER_PORT]; see docs/lifecycle-hooks.md).
	InstanceID string `json:"instanceID,omitempty"`
}

// Nacos disables this instance through Nacos's open API.
type Nacos struct {
	// ServerURL is the Nacos server, such as http://nacos:8848 or
	// nacos-0.nacos:8848,nacos-1.nacos:8848 (default:
	// SPRING_CLOUD_NACOS_DISCOVERY_SERVER_ADDR, SPRING_CLOUD_NACOS_SERVER_ADDR
	// or NACOS_SERVER_ADDR; http:// and the /nacos context path are added
	// when missing).
	ServerURL string `json:"serverURL,omitempty"`
	// ServiceName defaults to SPRING_CLOUD_NACOS_DISCOVERY_SERVICE, else
	// SPRING_APPLICATION_NAME.
	ServiceName string `json:"serviceName,omitempty"`
	// GroupName defaults to SPRING_CLOUD_NACOS_DISCOVERY_GROUP, else
	// DEFAULT_GROUP.
	GroupName string `json:"groupName,omitempty"`
	// NamespaceID defaults to SPRING_CLOUD_NACOS_DISCOVERY_NAMESPACE, else
	// it is not sent and Nacos uses the public namespace.
	NamespaceID string `json:"namespaceID,omitempty"`
	// ClusterName defaults to SPRING_CLOUD_NACOS_DISCOVERY_CLUSTERNAME, else
	// DEFAULT.
	ClusterName string `json:"clusterName,omitempty"`
	// Port is the registered instance port (default:
	// SPRING_CLOUD_NACOS_DISCOVERY_PORT, else SERVER_PORT, else 8080). The
	// IP is always resolved at hook time: SPRING_CLOUD_NACOS_DISCOVERY_IP,
	// else POD_IP, else the pod's first global unicast address.
	Port int32 `json:"port,omitempty"`
	// UsernameEnv and PasswordEnv name the app container's variables that
	// hold the Nacos user and password (set them from a Secret); empty
	// looks for Spring Cloud Alibaba's own variables.
	UsernameEnv string `json:"usernameEnv,omitempty"`
	PasswordEnv string `json:"passwordEnv,omitempty"`
	// AccessKeyEnv and SecretKeyEnv name the variables holding an Alibaba
	// Cloud access key pair (MSE/EDAS Nacos); empty looks for Spring Cloud
	// Alibaba's own.
	AccessKeyEnv string `json:"accessKeyEnv,omitempty"`
	SecretKeyEnv string `json:"secretKeyEnv,omitempty"`
}

// Consul modes: what the offline step does to the agent's service.
const (
	// ConsulMaintenance puts the service in maintenance mode: DNS and
	// passing-only health queries drop it, and it stays registered.
	ConsulMaintenance = "maintenance"
	// ConsulDeregister removes the service from the agent: every consumer,
	// including Spring Cloud Consul's default discovery client that does
	// not filter by health, stops seeing it.
	ConsulDeregister = "deregister"
)

// Consul takes this instance's service out of the local Consul agent.
type Consul struct {
	// Address is the agent's HTTP API, such as http://10.0.0.1:8500
	// (default: CONSUL_HTTP_ADDR, else SPRING_CLOUD_CONSUL_HOST and _PORT,
	// else 127.0.0.1:8500).
	Address string `json:"address,omitempty"`
	// ServiceID is the registered service id (default: Spring Cloud
	// Consul's, see docs/lifecycle-hooks.md).
	ServiceID string `json:"serviceID,omitempty"`
	// Mode is maintenance (default) or deregister.
	Mode string `json:"mode,omitempty"`
	// TokenEnv names the variable holding the ACL token (default:
	// CONSUL_HTTP_TOKEN, then Spring Cloud Consul's variables).
	TokenEnv string `json:"tokenEnv,omitempty"`
}

// EDAS calls the EDAS agent's offline endpoint.
type EDAS struct {
	// URL defaults to http://localhost:54199/offline.
	URL string `json:"url,omitempty"`
}

// HTTPCall is any HTTP request that takes the instance offline.
type HTTPCall struct {
	Method string `json:"method,omitempty"`
	URL    string `json:"url,omitempty"`
	// Headers are sent with the request, in name order.
	Headers map[string]string `json:"headers,omitempty"`
	// Body is sent as the request body when not empty.
	Body string `json:"body,omitempty"`
	// ExpectStatus lists acceptable response codes (default: any 2xx).
	ExpectStatus []int `json:"expectStatus,omitempty"`
}

// Duration is a time.Duration written as "5s" in YAML, JSON and flags.
type Duration time.Duration

// String renders the Go duration syntax.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads the Go duration syntax ("30s", "1m30s").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration such as 5s or 1m30s", string(b))
	}
	*d = Duration(v)
	return nil
}

// Seconds returns the duration in whole seconds, rounded up.
func (d Duration) Seconds() int64 {
	return int64((time.Duration(d) + time.Second - 1) / time.Second)
}

// OriginalHandler is the app's own preStop handler, run after the sleep so
// nothing the app relied on is lost.
type OriginalHandler struct {
	// Exec is the command of an exec handler.
	Exec []string
	// HTTPGet is the URL of an httpGet handler, with the port already
	// resolved to a number.
	HTTPGet string
	// HTTPHeaders are the httpGet handler's headers, "Name: value".
	HTTPHeaders []string
	// HTTPGetPodIP replaces HTTPGet's host with the pod's IP at hook time,
	// as the kubelet calls a handler without a host (HTTPGet keeps
	// 127.0.0.1 as the fallback).
	HTTPGetPodIP bool
	// Sleep is the duration of a sleep handler.
	Sleep Duration
}

// IsZero reports whether there is no original handler.
func (o OriginalHandler) IsZero() bool {
	return len(o.Exec) == 0 && o.HTTPGet == "" && o.Sleep == 0
}

// PreStop is the preStop hook of an app container: offline, sleep, then the
// original handler.
type PreStop struct {
	Registry Registry
	// Sleep is how long to wait after the offline step, whatever its outcome.
	Sleep Duration
	// Record is the file where the offline step notes what it did (registry,
	// instance key, time), so the postStart hook of a container restarted
	// in place can bring the instance back; empty records nothing.
	Record string
	// Then is the app's original preStop handler, if any.
	Then OriginalHandler
}

// PostStart is the postStart hook of an app container that has a registry
// offline step: when the preStop hook left a record (the container was
// restarted in place), bring the instance back online once the app has
// registered again; then run the app's own postStart handler.
type PostStart struct {
	Registry Registry
	// Record is the preStop hook's record; without it the hook returns at
	// once.
	Record string
	// Timeout bounds the wait for the app to register again and the undo.
	Timeout Duration
	// Then is the app's original postStart handler, if any.
	Then OriginalHandler
}

// DefaultUndoTimeout bounds the postStart undo when PostStart.Timeout is
// zero: long enough for a JVM to start and register.
const DefaultUndoTimeout = 2 * time.Minute

// Args renders the hook's arguments (after "hook prestop"). Only non-empty
// preset fields are written, so defaults resolved from the environment at
// hook time stay visible as defaults. An empty preset renders as none.
func (p PreStop) Args() []string {
	args := []string{"--registry=" + string(presetOrNone(p.Registry.Preset)), "--sleep=" + p.Sleep.String()}
	if p.Registry.Timeout != 0 {
		args = append(args, "--offline-timeout="+p.Registry.Timeout.String())
	}
	if p.Record != "" {
		args = append(args, "--record="+p.Record)
	}
	args = append(args, p.Registry.presetArgs()...)
	return append(args, p.Then.Args()...)
}

// Args renders the hook's arguments (after "hook poststart").
func (p PostStart) Args() []string {
	args := []string{"--registry=" + string(presetOrNone(p.Registry.Preset)), "--record=" + p.Record}
	if p.Timeout != 0 {
		args = append(args, "--timeout="+p.Timeout.String())
	}
	args = append(args, p.Registry.presetArgs()...)
	return append(args, p.Then.Args()...)
}

func presetOrNone(p Preset) Preset {
	if p == "" {
		return PresetNone
	}
	return p
}

// presetArgs renders the chosen preset's non-empty fields as flags.
func (r Registry) presetArgs() []string {
	var args []string
	add := func(name, v string) {
		if v != "" {
			args = append(args, "--"+name+"="+v)
		}
	}
	addPort := func(name string, v int32) {
		if v != 0 {
			add(name, strconv.Itoa(int(v)))
		}
	}
	switch r.Preset {
	case PresetDubbo:
		addPort("dubbo-port", r.Dubbo.Port)
	case PresetSpringCloud:
		addPort("spring-port", r.SpringCloud.Port)
		add("spring-base-path", r.SpringCloud.BasePath)
		add("spring-status", r.SpringCloud.Status)
	case PresetEureka:
		add("eureka-server-url", r.Eureka.ServerURL)
		add("eureka-app-name", r.Eureka.AppName)
		add("eureka-instance-id", r.Eureka.InstanceID)
	case PresetNacos:
		add("nacos-server-url", r.Nacos.ServerURL)
		add("nacos-service-name", r.Nacos.ServiceName)
		add("nacos-group", r.Nacos.GroupName)
		add("nacos-namespace", r.Nacos.NamespaceID)
		add("nacos-cluster", r.Nacos.ClusterName)
		addPort("nacos-port", r.Nacos.Port)
		add("nacos-username-env", r.Nacos.UsernameEnv)
		add("nacos-password-env", r.Nacos.PasswordEnv)
		add("nacos-access-key-env", r.Nacos.AccessKeyEnv)
		add("nacos-secret-key-env", r.Nacos.SecretKeyEnv)
	case PresetConsul:
		add("consul-address", r.Consul.Address)
		add("consul-service-id", r.Consul.ServiceID)
		add("consul-mode", r.Consul.Mode)
		add("consul-token-env", r.Consul.TokenEnv)
	case PresetEDAS:
		add("edas-url", r.EDAS.URL)
	case PresetHTTP:
		add("http-method", r.HTTP.Method)
		add("http-url", r.HTTP.URL)
		names := make([]string, 0, len(r.HTTP.Headers))
		for k := range r.HTTP.Headers {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			add("http-header", k+": "+r.HTTP.Headers[k])
		}
		add("http-body", r.HTTP.Body)
		if len(r.HTTP.ExpectStatus) > 0 {
			codes := make([]string, len(r.HTTP.ExpectStatus))
			for i, c := range r.HTTP.ExpectStatus {
				codes[i] = strconv.Itoa(c)
			}
			add("http-expect-status", strings.Join(codes, ","))
		}
	}
	return args
}

// Args renders the "run the original handler" arguments, which always come
// last in a preStop command (an exec handler's command ends it).
func (o OriginalHandler) Args() []string {
	var args []string
	if o.HTTPGet != "" {
		args = append(args, "--then-http-get="+o.HTTPGet)
		if o.HTTPGetPodIP {
			args = append(args, "--then-http-get-pod-ip")
		}
		for _, h := range o.HTTPHeaders {
			args = append(args, "--then-http-header="+h)
		}
	}
	if o.Sleep != 0 {
		args = append(args, "--then-sleep="+o.Sleep.String())
	}
	if len(o.Exec) > 0 {
		args = append(args, "--then-exec", "--")
		args = append(args, o.Exec...)
	}
	return args
}

type multiFlag struct{ values *[]string }

func (m multiFlag) String() string {
	if m.values == nil {
		return ""
	}
	return strings.Join(*m.values, ";")
}
func (m multiFlag) Set(s string) error { *m.values = append(*m.values, s); return nil }

type int32Flag struct{ v *int32 }

func (f int32Flag) String() string {
	if f.v == nil {
		return "0"
	}
	return strconv.Itoa(int(*f.v))
}
func (f int32Flag) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || !IsPort(n) {
		return fmt.Errorf("%q is not a port (%s)", s, PortRangeText)
	}
	*f.v = int32(n)
	return nil
}

type presetFlag struct{ p *Preset }

func (f presetFlag) String() string {
	if f.p == nil {
		return ""
	}
	return string(*f.p)
}
func (f presetFlag) Set(s string) error {
	p, err := ParsePreset(s)
	if err == nil {
		*f.p = p
	}
	return err
}

type durationFlag struct{ d *Duration }

func (f durationFlag) String() string {
	if f.d == nil {
		return "0s"
	}
	return f.d.String()
}
func (f durationFlag) Set(s string) error { return f.d.UnmarshalText([]byte(s)) }

// registryFlags defines the preset flags on fs, filling r; finish turns
// the repeatable and list flags into r's fields once fs is parsed.
func registryFlags(fs *flag.FlagSet, r *Registry) (finish func() error) {
	var headers []string
	var expect string
	fs.Var(presetFlag{&r.Preset}, "registry", "registry preset")
	fs.Var(int32Flag{&r.Dubbo.Port}, "dubbo-port", "Dubbo QoS port")
	fs.Var(int32Flag{&r.SpringCloud.Port}, "spring-port", "actuator port")
	fs.StringVar(&r.SpringCloud.BasePath, "spring-base-path", "", "actuator base path")
	fs.StringVar(&r.SpringCloud.Status, "spring-status", "", "status to set (default: detected)")
	fs.StringVar(&r.Eureka.ServerURL, "eureka-server-url", "", "Eureka service URL")
	fs.StringVar(&r.Eureka.AppName, "eureka-app-name", "", "Eureka application name")
	fs.StringVar(&r.Eureka.InstanceID, "eureka-instance-id", "", "Eureka instance id")
	fs.StringVar(&r.Nacos.ServerURL, "nacos-server-url", "", "Nacos server URL")
	fs.StringVar(&r.Nacos.ServiceName, "nacos-service-name", "", "Nacos service name")
	fs.StringVar(&r.Nacos.GroupName, "nacos-group", "", "Nacos group")
	fs.StringVar(&r.Nacos.NamespaceID, "nacos-namespace", "", "Nacos namespace id")
	fs.StringVar(&r.Nacos.ClusterName, "nacos-cluster", "", "Nacos cluster name")
	fs.Var(int32Flag{&r.Nacos.Port}, "nacos-port", "registered instance port")
	fs.StringVar(&r.Nacos.UsernameEnv, "nacos-username-env", "", "variable holding the Nacos user")
	fs.StringVar(&r.Nacos.PasswordEnv, "nacos-password-env", "", "variable holding the Nacos password")
	fs.StringVar(&r.Nacos.AccessKeyEnv, "nacos-access-key-env", "", "variable holding the access key")
	fs.StringVar(&r.Nacos.SecretKeyEnv, "nacos-secret-key-env", "", "variable holding the secret key")
	fs.StringVar(&r.Consul.Address, "consul-address", "", "Consul agent address")
	fs.StringVar(&r.Consul.ServiceID, "consul-service-id", "", "Consul service id")
	fs.StringVar(&r.Consul.Mode, "consul-mode", "", "maintenance or deregister")
	fs.StringVar(&r.Consul.TokenEnv, "consul-token-env", "", "variable holding the ACL token")
	fs.StringVar(&r.EDAS.URL, "edas-url", "", "EDAS offline URL")
	fs.StringVar(&r.HTTP.Method, "http-method", "", "HTTP method")
	fs.StringVar(&r.HTTP.URL, "http-url", "", "HTTP URL")
	fs.Var(multiFlag{&headers}, "http-header", `header "Name: value", repeatable`)
	fs.StringVar(&r.HTTP.Body, "http-body", "", "HTTP body")
	fs.StringVar(&expect, "http-expect-status", "", "comma-separated acceptable status codes")
	return func() error {
		if len(headers) > 0 {
			r.HTTP.Headers = map[string]string{}
			for _, h := range headers {
				k, v, err := ParseHeader(h)
				if err != nil {
					return fmt.Errorf("--http-header: %w", err)
				}
				r.HTTP.Headers[k] = v
			}
		}
		if expect != "" {
			for _, c := range strings.Split(expect, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(c))
				if err != nil || n < 100 || n > 599 {
					return fmt.Errorf("--http-expect-status: %q is not an HTTP status code (100-599)", c)
				}
				r.HTTP.ExpectStatus = append(r.HTTP.ExpectStatus, n)
			}
		}
		return nil
	}
}

// thenFlags defines the original handler's flags on fs; finish checks and
// completes o once fs is parsed.
func thenFlags(fs *flag.FlagSet, o *OriginalHandler) (finish func() error) {
	var thenExec bool
	fs.StringVar(&o.HTTPGet, "then-http-get", "", "original httpGet handler URL")
	fs.Var(multiFlag{&o.HTTPHeaders}, "then-http-header", "original httpGet handler header")
	fs.BoolVar(&o.HTTPGetPodIP, "then-http-get-pod-ip", false, "call the original httpGet handler on the pod's IP")
	fs.Var(durationFlag{&o.Sleep}, "then-sleep", "original sleep handler")
	fs.BoolVar(&thenExec, "then-exec", false, "the original exec handler follows --")
	return func() error {
		if thenExec {
			o.Exec = fs.Args()
			if len(o.Exec) == 0 {
				return errors.New("--then-exec needs the original command after --")
			}
		} else if fs.NArg() > 0 {
			return fmt.Errorf("unexpected arguments %q", fs.Args())
		}
		return o.Validate()
	}
}

// ParsePreStop reads back the arguments PreStop.Args renders.
func ParsePreStop(args []string) (PreStop, error) {
	var p PreStop
	p.Registry.Preset = PresetNone
	fs := flag.NewFlagSet("prestop", flag.ContinueOnError)
	fs.SetOutput(discard{})
	finishRegistry := registryFlags(fs, &p.Registry)
	fs.Var(durationFlag{&p.Sleep}, "sleep", "sleep after the offline step")
	fs.Var(durationFlag{&p.Registry.Timeout}, "offline-timeout", "bound on the offline step, retries included")
	fs.StringVar(&p.Record, "record", "", "file recording the offline step")
	finishThen := thenFlags(fs, &p.Then)
	if err := fs.Parse(args); err != nil {
		return PreStop{}, err
	}
	for _, finish := range []func() error{finishRegistry, finishThen, p.Registry.Validate} {
		if err := finish(); err != nil {
			return PreStop{}, err
		}
	}
	return p, nil
}

// ParsePostStart reads back the arguments PostStart.Args renders.
func ParsePostStart(args []string) (PostStart, error) {
	var p PostStart
	p.Registry.Preset = PresetNone
	fs := flag.NewFlagSet("poststart", flag.ContinueOnError)
	fs.SetOutput(discard{})
	finishRegistry := registryFlags(fs, &p.Registry)
	fs.StringVar(&p.Record, "record", "", "the preStop hook's record")
	fs.Var(durationFlag{&p.Timeout}, "timeout", "bound on the wait for registration and the undo")
	finishThen := thenFlags(fs, &p.Then)
	if err := fs.Parse(args); err != nil {
		return PostStart{}, err
	}
	for _, finish := range []func() error{finishRegistry, finishThen, p.Registry.Validate} {
		if err := finish(); err != nil {
			return PostStart{}, err
		}
	}
	return p, nil
}

// SleepFromArgs finds the --sleep value among prestop arguments that do
// not parse as a whole: the hook still sleeps it, because losing the drain
// is worse than a late error. ok is false when there is no valid one.
func SleepFromArgs(args []string) (d Duration, ok bool) {
	for i, a := range args {
		if a == "--" {
			break
		}
		var v string
		switch {
		case strings.HasPrefix(a, "--sleep="), strings.HasPrefix(a, "-sleep="):
			_, v, _ = strings.Cut(a, "=")
		case (a == "--sleep" || a == "-sleep") && i+1 < len(args):
			v = args[i+1]
		default:
			continue
		}
		if err := d.UnmarshalText([]byte(v)); err == nil {
			ok = true
		}
	}
	return d, ok
}

// Validate checks that at most one original handler is set, as in a
// Kubernetes LifecycleHandler, and that an httpGet URL is an http(s) URL.
func (o OriginalHandler) Validate() error {
	n := 0
	for _, set := range []bool{len(o.Exec) > 0, o.HTTPGet != "", o.Sleep != 0} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("only one original handler (--then-exec, --then-http-get or --then-sleep) may be given")
	}
	if o.HTTPGet != "" {
		if err := CheckHTTPURL(o.HTTPGet); err != nil {
			return fmt.Errorf("--then-http-get: %w", err)
		}
	}
	if len(o.HTTPHeaders) > 0 && o.HTTPGet == "" {
		return errors.New("--then-http-header needs --then-http-get")
	}
	for _, h := range o.HTTPHeaders {
		if _, _, err := ParseHeader(h); err != nil {
			return fmt.Errorf("--then-http-header: %w", err)
		}
	}
	return nil
}

// checkEnvName accepts an environment variable name as Kubernetes does
// (C_IDENTIFIER-like: letters, digits, '_', '-', '.'; not starting with a
// digit), or empty.
func checkEnvName(what, v string) error {
	if v == "" {
		return nil
	}
	for i, c := range v {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == '-', c == '.':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return fmt.Errorf("%s %q is not an environment variable name", what, v)
		}
	}
	return nil
}

// ConsulDefaultPort is the Consul agent's HTTP port.
const ConsulDefaultPort = "8500"

// ConsulBaseURL reads a Consul agent address as Consul's own tools read
// CONSUL_HTTP_ADDR: host[:port] (http, port 8500 when absent; https when
// ssl is set) or an http(s) URL.
func ConsulBaseURL(addr string, ssl bool) (string, error) {
	s, bare := addr, !strings.Contains(addr, "://")
	if bare {
		scheme := "http://"
		if ssl {
			scheme = "https://"
		}
		s = scheme + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return "", fmt.Errorf("%q is not host, host:port or an http or https URL of a Consul agent", RedactURL(addr))
	}
	if bare && u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), ConsulDefaultPort)
	}
	u.Path = ""
	return u.String(), nil
}

// CheckHTTPURL accepts an absolute http or https URL that names a host.
func CheckHTTPURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return fmt.Errorf("%q is not an absolute http or https URL with a host", RedactURL(v))
	}
	return nil
}

// ParseHeader reads a header given as "Name: value". The name is everything
// before the first colon, without the spaces around it, and must be an HTTP
// token (letters, digits and !#$%&'*+-.^_`|~; no spaces). The value is
// everything after that colon, without the spaces and tabs around it, so it
// may hold colons itself ("X:Y: z" is X with the value "Y: z"); it must not
// hold control characters such as CR or LF.
func ParseHeader(h string) (name, value string, err error) {
	k, v, ok := strings.Cut(h, ":")
	if !ok {
		return "", "", fmt.Errorf("%q is not \"Name: value\"", h)
	}
	name, value = strings.TrimSpace(k), strings.Trim(v, " \t")
	if err := CheckHeader(name, value); err != nil {
		return "", "", fmt.Errorf("%q: %w", h, err)
	}
	return name, value, nil
}

// CheckHeader checks a header's name and value as the HTTP client would
// when sending it, so a bad one is refused before anything is done.
func CheckHeader(name, value string) error {
	if name == "" {
		return errors.New("the header name is empty")
	}
	if !isToken(name) {
		return fmt.Errorf("the header name %q is not an HTTP token (no spaces or separators)", name)
	}
	for _, c := range []byte(value) {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return fmt.Errorf("the value of header %s holds the control character %q", name, c)
		}
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2), the
// syntax of header names and methods.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Validate checks the fields the chosen preset needs and that can be checked
// without the app's environment.
func (r Registry) Validate() error {
	checkURL := func(field, v string) error {
		if v == "" {
			return nil
		}
		if err := CheckHTTPURL(v); err != nil {
			return fmt.Errorf("%s %w", field, err)
		}
		return nil
	}
	switch r.Preset {
	case PresetNone, PresetDubbo:
		return nil
	case PresetSpringCloud:
		if b := r.SpringCloud.BasePath; b != "" && !strings.HasPrefix(b, "/") {
			return fmt.Errorf("spring-cloud base path %q must start with /", b)
		}
		switch r.SpringCloud.Status {
		case "", "OUT_OF_SERVICE", "DOWN":
			return nil
		}
		return fmt.Errorf("spring-cloud status %q is not OUT_OF_SERVICE or DOWN (or empty to detect the registry)", r.SpringCloud.Status)
	case PresetConsul:
		switch r.Consul.Mode {
		case "", ConsulMaintenance, ConsulDeregister:
		default:
			return fmt.Errorf("consul mode %q is not %s or %s", r.Consul.Mode, ConsulMaintenance, ConsulDeregister)
		}
		if a := r.Consul.Address; a != "" {
			if _, err := ConsulBaseURL(a, false); err != nil {
				return fmt.Errorf("consul address %w", err)
			}
		}
		if id := r.Consul.ServiceID; id != "" && strings.ContainsAny(id, "/?# ") {
			return fmt.Errorf("consul service id %q holds a space, '/', '?' or '#'", id)
		}
		return checkEnvName("consul token variable", r.Consul.TokenEnv)
	case PresetEureka:
		// Comma-separated, like EUREKA_CLIENT_SERVICEURL_DEFAULTZONE.
		for _, z := range SplitList(r.Eureka.ServerURL) {
			if err := checkURL("eureka serverURL", z); err != nil {
				return err
			}
		}
		return nil
	case PresetNacos:
		// Like Nacos's own serverAddr: comma-separated host[:port] entries
		// or http(s) URLs, read as the hook reads them at run time.
		for _, a := range SplitList(r.Nacos.ServerURL) {
			if _, err := NacosBaseURL(a); err != nil {
				return fmt.Errorf("nacos serverURL %w", err)
			}
		}
		for _, e := range []struct{ what, v string }{
			{"nacos username variable", r.Nacos.UsernameEnv}, {"nacos password variable", r.Nacos.PasswordEnv},
			{"nacos access key variable", r.Nacos.AccessKeyEnv}, {"nacos secret key variable", r.Nacos.SecretKeyEnv},
		} {
			if err := checkEnvName(e.what, e.v); err != nil {
				return err
			}
		}
		return nil
	case PresetEDAS:
		return checkURL("edas url", r.EDAS.URL)
	case PresetHTTP:
		if r.HTTP.URL == "" {
			return errors.New("the http preset needs a URL")
		}
		if m := r.HTTP.Method; m != "" && (!isToken(m) || strings.ToUpper(m) != m) {
			return fmt.Errorf("http method %q is not an upper-case HTTP method such as POST", m)
		}
		for k, v := range r.HTTP.Headers {
			if err := CheckHeader(k, v); err != nil {
				return fmt.Errorf("http header: %w", err)
			}
		}
		return checkURL("http url", r.HTTP.URL)
	}
	_, err := ParsePreset(string(r.Preset))
	return err
}

// WaitReady is the hook that holds a container until the proxy is ready.
type WaitReady struct {
	// URL is the proxy's readiness endpoint.
	URL string
	// Timeout bounds the wait; the hook fails when it passes.
	Timeout Duration
}

// Args renders the hook's arguments (after "hook wait-ready").
func (w WaitReady) Args() []string {
	return []string{"--url=" + w.URL, "--timeout=" + w.Timeout.String()}
}

// ParseWaitReady reads back WaitReady.Args.
func ParseWaitReady(args []string) (WaitReady, error) {
	var w WaitReady
	fs := flag.NewFlagSet("wait-ready", flag.ContinueOnError)
	fs.SetOutput(discard{})
	fs.StringVar(&w.URL, "url", DefaultReadyURL, "readiness URL")
	w.Timeout = Duration(60 * time.Second)
	fs.Var(durationFlag{&w.Timeout}, "timeout", "bound on the wait")
	if err := parseAll(fs, args); err != nil {
		return WaitReady{}, err
	}
	if err := CheckHTTPURL(w.URL); err != nil {
		return WaitReady{}, fmt.Errorf("--url: %w", err)
	}
	return w, nil
}

// ProxyStop is the classic-mode proxy's preStop: keep serving while the app
// goes offline, sleeps and shuts down, then drain Envoy's listeners.
type ProxyStop struct {
	// Wait is how long the proxy keeps serving normally: the app's offline
	// timeout plus its sleep.
	Wait Duration
	// Drain bounds the graceful listener drain that follows, during which the
	// app's own shutdown may still make outbound calls.
	Drain Duration
	// AdminURL is Envoy's admin address on loopback.
	AdminURL string
}

// Args renders the hook's arguments (after "hook proxy-stop").
func (p ProxyStop) Args() []string {
	return []string{"--wait=" + p.Wait.String(), "--drain=" + p.Drain.String(), "--admin-url=" + p.AdminURL}
}

// ParseProxyStop reads back ProxyStop.Args.
func ParseProxyStop(args []string) (ProxyStop, error) {
	var p ProxyStop
	fs := flag.NewFlagSet("proxy-stop", flag.ContinueOnError)
	fs.SetOutput(discard{})
	fs.Var(durationFlag{&p.Wait}, "wait", "keep serving this long")
	fs.Var(durationFlag{&p.Drain}, "drain", "bound on the listener drain")
	fs.StringVar(&p.AdminURL, "admin-url", DefaultAdminURL, "Envoy admin URL")
	if err := parseAll(fs, args); err != nil {
		return ProxyStop{}, err
	}
	if err := CheckHTTPURL(p.AdminURL); err != nil {
		return ProxyStop{}, fmt.Errorf("--admin-url: %w", err)
	}
	return p, nil
}

// Run wraps a Job's command in classic mode: wait for the proxy, run the
// command, then tell Envoy to quit so the pod can complete.
type Run struct {
	// ReadyURL is the proxy readiness endpoint to wait for; empty skips the wait.
	ReadyURL string
	// ReadyTimeout bounds that wait.
	ReadyTimeout Duration
	// QuitURL is Envoy's admin quit endpoint, called when the command exits.
	QuitURL string
	// QuitOnFailure also quits the proxy when the command fails (or never
	// starts). Only right when the pod will not restart the container
	// (restartPolicy Never): with OnFailure the kubelet retries the command,
	// which needs the proxy, and a proxy that exited 0 is never restarted.
	QuitOnFailure bool
	// Command is the original command and arguments.
	Command []string
}

// Args renders the hook's arguments (after "hook run").
func (r Run) Args() []string {
	args := []string{}
	if r.ReadyURL != "" {
		args = append(args, "--ready-url="+r.ReadyURL, "--ready-timeout="+r.ReadyTimeout.String())
	}
	args = append(args, "--quit-url="+r.QuitURL, fmt.Sprintf("--quit-on-failure=%t", r.QuitOnFailure), "--")
	return append(args, r.Command...)
}

// ParseRun reads back Run.Args.
func ParseRun(args []string) (Run, error) {
	var r Run
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(discard{})
	fs.StringVar(&r.ReadyURL, "ready-url", "", "proxy readiness URL to wait for")
	r.ReadyTimeout = Duration(60 * time.Second)
	fs.Var(durationFlag{&r.ReadyTimeout}, "ready-timeout", "bound on the wait")
	fs.StringVar(&r.QuitURL, "quit-url", DefaultQuitURL, "Envoy quit URL")
	fs.BoolVar(&r.QuitOnFailure, "quit-on-failure", false, "also quit the proxy when the command fails")
	if err := fs.Parse(args); err != nil {
		return Run{}, err
	}
	r.Command = fs.Args()
	if len(r.Command) == 0 {
		return Run{}, errors.New("hook run needs the command to run after --")
	}
	// An empty --quit-url means the proxy is not told to quit.
	for _, f := range []struct{ name, v string }{{"--ready-url", r.ReadyURL}, {"--quit-url", r.QuitURL}} {
		if f.v == "" {
			continue
		}
		if err := CheckHTTPURL(f.v); err != nil {
			return Run{}, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return r, nil
}

// parseAll parses flags and refuses anything left over.
func parseAll(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// SplitList splits a comma-separated value, as Spring and Nacos read
// theirs: entries are trimmed and empty ones dropped.
func SplitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// NacosDefaultPort is the port the Nacos client adds to a server address
// that has none (ParamUtil.getDefaultServerPort).
const NacosDefaultPort = "8848"

// NacosBaseURL turns one entry of a Nacos server list into the base URL of
// its open API, as the Nacos client reads serverAddr: an entry without a
// scheme is host[:port] and gets http:// and, without a port, 8848; an
// http(s) URL is used as written (its scheme's port when it names none).
// Without a path, Nacos's default context path /nacos is added. The
// injector validates with it what the hook resolves with it at run time.
func NacosBaseURL(entry string) (string, error) {
	s, bare := entry, !strings.Contains(entry, "://")
	if bare {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q is not host, host:port or an http or https URL", RedactURL(entry))
	}
	if bare && u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), NacosDefaultPort)
	}
	if strings.Trim(u.Path, "/") == "" {
		u.Path = "/nacos"
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// RedactURL hides credentials in a URL (Eureka service URLs often carry
// them), for messages and logs.
func RedactURL(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return target
	}
	return u.Redacted()
}

// DefaultOfflineTimeout bounds the offline step when Registry.Timeout is
// zero; the injector counts it into the grace period.
const DefaultOfflineTimeout = 5 * time.Second

// registryUsage lists the preset flags prestop and poststart share.
const registryUsage = `  --dubbo-port=22222           Dubbo QoS port
  --spring-port=8080 --spring-base-path=/actuator --spring-status=OUT_OF_SERVICE|DOWN (default: detected)
  --eureka-server-url=URL[,URL...] --eureka-app-name=NAME --eureka-instance-id=ID
  --nacos-server-url=URL --nacos-service-name=NAME --nacos-group=GROUP
  --nacos-namespace=ID --nacos-cluster=NAME --nacos-port=PORT
  --nacos-username-env=VAR --nacos-password-env=VAR --nacos-access-key-env=VAR --nacos-secret-key-env=VAR
  --consul-address=URL --consul-service-id=ID --consul-mode=maintenance|deregister --consul-token-env=VAR
  --edas-url=URL
  --http-method=POST --http-url=URL --http-header="Name: value" (repeatable)
  --http-body=TEXT --http-expect-status=200,204
`

// HookUsage is the help text of each `mesh-init hook` command, by command
// name. It documents the flags the Args methods here render; a test keeps
// the two in step.
var HookUsage = map[string]string{
	"prestop": `usage: mesh-init hook prestop --registry=<preset> --sleep=<duration> [flags] [--then-exec -- <command...>]

  --registry=none|dubbo|spring-cloud|eureka|nacos|consul|edas|http   registry preset (default none)
  --sleep=30s                  sleep after the offline step, whatever its outcome (also after bad arguments)
  --offline-timeout=5s         bound on the whole offline step: every request, retry and read-back (default 5s)
  --record=FILE                note what was taken offline, for hook poststart after a restart in place
` + registryUsage + `  --then-http-get=URL --then-http-header="Name: value" (repeatable)
  --then-http-get-pod-ip       call that URL on the pod's IP, as the kubelet does for a handler without a host
  --then-sleep=DURATION
  --then-exec -- COMMAND ARGS...   the app's original exec handler (last)

Defaults left empty are resolved from the app container's environment; see
docs/lifecycle-hooks.md.
`,
	"poststart": `usage: mesh-init hook poststart --registry=<preset> --record=FILE [--timeout=2m] [flags] [--then-exec -- <command...>]

  --record=FILE                the prestop hook's record; without one the hook returns at once
  --timeout=2m                 bound on waiting for the app to register again and putting it back online
` + registryUsage + `  --then-http-get=URL --then-http-header="Name: value" (repeatable)
  --then-http-get-pod-ip       call that URL on the pod's IP
  --then-sleep=DURATION
  --then-exec -- COMMAND ARGS...   the app's original postStart exec handler (last)

The undo never fails the hook (a failed postStart kills the container); only
the app's own handler's failure does.
`,
	"wait-ready": `usage: mesh-init hook wait-ready [--url=URL] [--timeout=60s]

  --url=` + DefaultReadyURL + `   readiness URL, polled every 200ms until it answers 200
  --timeout=60s                                give up (exit 1) after this long
`,
	"proxy-stop": `usage: mesh-init hook proxy-stop --wait=DURATION --drain=DURATION [--admin-url=URL]

  --wait=35s                          keep serving normally this long
  --drain=5s                          then drain inbound listeners gracefully and wait this long
  --admin-url=` + DefaultAdminURL + `  Envoy admin address
`,
	"run": `usage: mesh-init hook run [--ready-url=URL --ready-timeout=60s] [--quit-url=URL] [--quit-on-failure] -- COMMAND ARGS...

  --ready-url=URL      wait for this readiness URL before starting the command
  --ready-timeout=60s  bound on that wait
  --quit-url=` + DefaultQuitURL + `   POSTed when the command is done for good
  --quit-on-failure    also quit after a failure (restartPolicy Never); without it the
                       proxy keeps running for the kubelet's retry (OnFailure)
`,
}
