package policy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// Prefix is the prefix of every label and annotation the injector reads or
// writes.
const Prefix = "sidecar-injector.io/"

// Labels and annotations with a fixed role.
const (
	// NamespaceLabel opts a namespace in when set to "enabled".
	NamespaceLabel = Prefix + "injection"
	// InjectKey is the pod-level opt-in ("true") or opt-out ("false"), as a
	// label or an annotation.
	InjectKey = Prefix + "inject"
	// StatusAnnotation records what injection added.
	StatusAnnotation = Prefix + "status"
	// IstioInjectKey is Istio's opt-in/opt-out key, honoured as an alias.
	IstioInjectKey = "sidecar.istio.io/inject"
	// DefaultContainerAnnotation tells kubectl which container logs and exec
	// address by default.
	DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container"
)

// IstioOptIn reports whether a value of Istio's inject key opts a pod in,
// as Istio reads it: y, yes, true or on, in any case. Anything else but
// the empty string (no choice) opts out.
func IstioOptIn(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "y", "yes", "true", "on":
		return true
	}
	return false
}

// IstioOptInValues lists every label value IstioOptIn accepts, every
// casing of y, yes, true and on: the chart's webhook configuration must
// send exactly these pods (label selectors match values exactly), so the
// CLI, explain and the API server agree on which pods opt in.
func IstioOptInValues() []string {
	var out []string
	for _, w := range []string{"on", "true", "y", "yes"} {
		for mask := 0; mask < 1<<len(w); mask++ {
			b := []byte(w)
			for i := range b {
				if mask&(1<<i) != 0 {
					b[i] -= 'a' - 'A'
				}
			}
			out = append(out, string(b))
		}
	}
	sort.Strings(out)
	return out
}

// Override is one per-pod annotation that tunes a setting.
type Override struct {
	// Name is the key after Prefix, such as "proxy-image".
	Name string
	// Aliases are other full keys with the same meaning (Istio's), consulted
	// when the key itself is absent.
	Aliases []string
	// Field is the settings path it sets, as shown by explain.
	Field string
	// Accepts describes the allowed values, for error messages and docs.
	Accepts string
	// Example is a valid value, for docs.
	Example string
	apply   func(s *Settings, v string) error
	// key caches Prefix + Name (set once at package initialisation).
	key string
}

// Key returns the full annotation key.
func (o *Override) Key() string {
	if o.key == "" {
		return Prefix + o.Name
	}
	return o.key
}

func quantityOverride(name, alias, field, example string, get func(*Settings) **resource.Quantity) Override {
	return Override{
		Name: name, Aliases: aliasList(alias), Field: field,
		Accepts: "a Kubernetes quantity such as 100m, 0.5, 128Mi or 1Gi", Example: example,
		apply: func(s *Settings, v string) error {
			qv, err := resource.ParseQuantity(v)
			if err != nil || qv.Sign() < 0 {
				return fmt.Errorf("not a non-negative Kubernetes quantity")
			}
			*get(s) = &qv
			return nil
		},
	}
}

func portListOverride(name, alias, field, example string, get func(*Settings) *meshinit.PortList) Override {
	return Override{
		Name: name, Aliases: aliasList(alias), Field: field,
		Accepts: `a comma-separated list of ports (` + meshinit.PortRangeText + `) and ranges, such as "8761,9000-9100"`, Example: example,
		apply: func(s *Settings, v string) error {
			l, err := meshinit.ParsePortList(v)
			if err != nil {
				return err
			}
			*get(s) = l
			return nil
		},
	}
}

func boolOverride(name, alias, field string, set func(*Settings, bool)) Override {
	return Override{
		Name: name, Aliases: aliasList(alias), Field: field, Accepts: `"true" or "false"`, Example: "false",
		apply: func(s *Settings, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil || (v != "true" && v != "false") {
				return fmt.Errorf("not \"true\" or \"false\"")
			}
			set(s, b)
			return nil
		},
	}
}

func secondsOverride(name, field, example string, get func(*Settings) *int32) Override {
	return Override{
		Name: name, Field: field, Accepts: "whole seconds from 0 to " + strconv.Itoa(maxSeconds), Example: example,
		apply: func(s *Settings, v string) error {
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < 0 || n > maxSeconds {
				return fmt.Errorf("not whole seconds from 0 to %d", maxSeconds)
			}
			*get(s) = int32(n)
			return nil
		},
	}
}

func textOverride(name, field, accepts, example string, check func(string) error, get func(*Settings) *string) Override {
	return Override{
		Name: name, Field: field, Accepts: accepts, Example: example,
		apply: func(s *Settings, v string) error {
			if check != nil {
				if err := check(v); err != nil {
					return err
				}
			}
			*get(s) = v
			return nil
		},
	}
}

func registryPortOverride(name, field, example string, get func(*Settings) *int32) Override {
	return Override{
		Name: name, Field: field, Accepts: "a port (" + meshinit.PortRangeText + ")", Example: example,
		apply: func(s *Settings, v string) error {
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || !meshinit.IsPort(n) {
				return fmt.Errorf("not a port (%s)", meshinit.PortRangeText)
			}
			*get(s) = int32(n)
			return nil
		},
	}
}

func withAlias(o Override, alias string) Override {
	o.Aliases = append(o.Aliases, alias)
	return o
}

func aliasList(a string) []string {
	if a == "" {
		return nil
	}
	return []string{a}
}

// imageRef is the grammar of a container image reference
// (github.com/distribution/reference): an optional registry host (with an
// optional port), path components of lower-case letters and digits joined
// by single separators (".", "_", "__" or dashes) — so never ".." or an
// empty component — then an optional tag and an optional digest.
var (
	imageRef = regexp.MustCompile(`^` +
		`(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?/)?` +
		`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` +
		`(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?` +
		`(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`)
	httpMethod = regexp.MustCompile(`^[A-Z]+$`)
)

// maxHTTPBody bounds the http preset's request body.
const maxHTTPBody = 4096

// checkImage refuses what the kubelet would fail on later
// (InvalidImageName), so a bad image is a clear answer at admission.
func checkImage(v string) error {
	if !imageRef.MatchString(v) || len(v) > 512 {
		return fmt.Errorf("not a container image reference such as registry.example.com/envoy:v1.36.2")
	}
	return nil
}

// checkURL is the hook tool's own URL rule (meshinit.CheckHTTPURL), applied
// to each comma-separated entry, so a URL the hook would refuse at run
// time is refused here with the annotation's name.
func checkURL(v string) error {
	for _, u := range strings.Split(v, ",") {
		if err := meshinit.CheckHTTPURL(strings.TrimSpace(u)); err != nil {
			return err
		}
	}
	return nil
}

// checkNacosServers reads each entry as the hook tool does
// (meshinit.NacosBaseURL), [::1]:8848 included, so what the hook accepts
// is accepted here and what it refuses is refused with why.
func checkNacosServers(v string) error {
	entries := meshinit.SplitList(v)
	if len(entries) == 0 {
		return fmt.Errorf("no server address")
	}
	for _, s := range entries {
		if _, err := meshinit.NacosBaseURL(s); err != nil {
			return err
		}
	}
	return nil
}

// nacosName checks a Nacos name against the characters the Nacos server
// takes (a registration with others fails there, and the hook would fail
// at every stop): cluster names 0-9a-zA-Z- (Cluster.validate), service and
// group names 0-9a-zA-Z.:_- (Service.setName), namespace ids letters,
// digits, '_' and '-'.
func nacosName(what, allowed string, ok func(rune) bool) func(string) error {
	return func(v string) error {
		if v == "" {
			return fmt.Errorf("empty")
		}
		for _, c := range v {
			if !ok(c) {
				return fmt.Errorf("%q is not allowed in a Nacos %s, which has only %s", string(c), what, allowed)
			}
		}
		return nil
	}
}

func alnum(c rune) bool { return c < 128 && (unicode.IsLetter(c) || unicode.IsDigit(c)) }

var (
	checkNacosCluster   = nacosName("cluster name", "letters, digits and '-' (one cluster per instance)", func(c rune) bool { return alnum(c) || c == '-' })
	checkNacosService   = nacosName("service name", "letters, digits and '.', ':', '_', '-' (GROUP@@service names the group too)", func(c rune) bool { return alnum(c) || strings.ContainsRune(".:_-@", c) })
	checkNacosGroup     = nacosName("group name", "letters, digits and '.', ':', '_', '-'", func(c rune) bool { return alnum(c) || strings.ContainsRune(".:_-", c) })
	checkNacosNamespace = nacosName("namespace id", "letters, digits, '_' and '-'", func(c rune) bool { return alnum(c) || c == '_' || c == '-' })
)

// checkEnvName is the contract's rule for a variable name, so what the
// hook would refuse is refused at admission.
func checkEnvName(v string) error {
	r := meshinit.Registry{Preset: meshinit.PresetConsul, Consul: meshinit.Consul{TokenEnv: v}}
	if v == "" || r.Validate() != nil {
		return fmt.Errorf("not an environment variable name (letters, digits, '_', '-', '.'; not starting with a digit)")
	}
	return nil
}

func checkName(v string) error {
	if v == "" || strings.ContainsAny(v, " \t\n/?#") {
		return fmt.Errorf("not a name without spaces, slashes, '?' or '#'")
	}
	return nil
}

// Overrides lists every per-pod annotation, in the order they are applied
// and documented.
var Overrides = []Override{
	withAlias(textOverride("proxy-image", "proxy.image", "a container image reference", "registry.example.com/envoy:v1.36.2",
		checkImage, func(s *Settings) *string { return &s.Proxy.Image }), "sidecar.istio.io/proxyImage"),
	quantityOverride("proxy-cpu", "sidecar.istio.io/proxyCPU", "proxy.resources.requests.cpu", "200m",
		func(s *Settings) **resource.Quantity { return &s.Proxy.Resources.Requests.CPU }),
	quantityOverride("proxy-cpu-limit", "sidecar.istio.io/proxyCPULimit", "proxy.resources.limits.cpu", "1",
		func(s *Settings) **resource.Quantity { return &s.Proxy.Resources.Limits.CPU }),
	quantityOverride("proxy-memory", "sidecar.istio.io/proxyMemory", "proxy.resources.requests.memory", "256Mi",
		func(s *Settings) **resource.Quantity { return &s.Proxy.Resources.Requests.Memory }),
	quantityOverride("proxy-memory-limit", "sidecar.istio.io/proxyMemoryLimit", "proxy.resources.limits.memory", "512Mi",
		func(s *Settings) **resource.Quantity { return &s.Proxy.Resources.Limits.Memory }),
	{
		Name: "proxy-log-level", Aliases: []string{"sidecar.istio.io/logLevel"}, Field: "proxy.logLevel",
		Accepts: logLevelList, Example: "debug",
		apply: func(s *Settings, v string) error {
			if !validLogLevel(v) {
				return fmt.Errorf("not one of %s", logLevelList)
			}
			s.Proxy.LogLevel = v
			return nil
		},
	},
	{
		Name: "proxy-concurrency", Field: "proxy.concurrency", Accepts: "worker threads from 0 (all cores) to 64", Example: "2",
		apply: func(s *Settings, v string) error {
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < 0 || n > 64 {
				return fmt.Errorf("not a whole number from 0 to 64")
			}
			s.Proxy.Concurrency = int32(n)
			return nil
		},
	},
	{
		Name: "include-inbound-ports", Aliases: []string{"traffic.sidecar.istio.io/includeInboundPorts"},
		Field: "capture.includeInboundPorts", Example: "8080,9000-9100",
		Accepts: `"*" for all ports, a comma-separated list of ports and ranges, or "" for none`,
		apply: func(s *Settings, v string) error {
			set, err := meshinit.ParsePortSet(v)
			if err != nil {
				return err
			}
			s.Capture.IncludeInboundPorts = set
			return nil
		},
	},
	portListOverride("exclude-inbound-ports", "traffic.sidecar.istio.io/excludeInboundPorts", "capture.excludeInboundPorts", "8761",
		func(s *Settings) *meshinit.PortList { return &s.Capture.ExcludeInboundPorts }),
	portListOverride("include-outbound-ports", "traffic.sidecar.istio.io/includeOutboundPorts", "capture.includeOutboundPorts", "443",
		func(s *Settings) *meshinit.PortList { return &s.Capture.IncludeOutboundPorts }),
	portListOverride("exclude-outbound-ports", "traffic.sidecar.istio.io/excludeOutboundPorts", "capture.excludeOutboundPorts", "8761,5432",
		func(s *Settings) *meshinit.PortList { return &s.Capture.ExcludeOutboundPorts }),
	{
		Name: "include-outbound-cidrs", Aliases: []string{"traffic.sidecar.istio.io/includeOutboundIPRanges"},
		Field: "capture.includeOutboundCIDRs", Example: "10.96.0.0/12,fd00:10:96::/112",
		Accepts: `"*" for every destination, a comma-separated list of IPv4 and IPv6 CIDRs, or "" for none`,
		apply: func(s *Settings, v string) error {
			set, err := meshinit.ParseCIDRSet(v)
			if err != nil {
				return err
			}
			s.Capture.IncludeOutboundCIDRs = set
			return nil
		},
	},
	{
		Name: "exclude-outbound-cidrs", Aliases: []string{"traffic.sidecar.istio.io/excludeOutboundIPRanges"},
		Field: "capture.excludeOutboundCIDRs", Example: "169.254.169.254/32,fd00:ec2::254/128",
		Accepts: "a comma-separated list of IPv4 and IPv6 CIDRs",
		apply: func(s *Settings, v string) error {
			l, err := meshinit.ParseCIDRList(v)
			if err != nil {
				return err
			}
			s.Capture.ExcludeOutboundCIDRs = l
			return nil
		},
	},
	{
		Name: "iptables-mode", Field: "init.iptablesMode", Accepts: "auto, nft or legacy", Example: "legacy",
		apply: func(s *Settings, v string) error {
			switch m := meshinit.Mode(v); m {
			case meshinit.ModeAuto, meshinit.ModeNFT, meshinit.ModeLegacy:
				s.Init.IPTablesMode = m
				return nil
			}
			return fmt.Errorf("not auto, nft or legacy")
		},
	},
	{
		Name: "native-sidecar", Aliases: []string{"sidecar.istio.io/nativeSidecar"}, Field: "lifecycle.nativeSidecar",
		Accepts: `"true", "false" or "auto"`, Example: "true",
		apply: func(s *Settings, v string) error {
			switch m := NativeMode(v); m {
			case NativeAuto, NativeTrue, NativeFalse:
				s.Lifecycle.NativeSidecar = m
				return nil
			}
			return fmt.Errorf("not \"true\", \"false\" or \"auto\"")
		},
	},
	boolOverride("hold-until-proxy-ready", "", "lifecycle.holdApplicationUntilProxyReady",
		func(s *Settings, b bool) { s.Lifecycle.HoldApplicationUntilProxyReady = b }),
	secondsOverride("drain-seconds", "lifecycle.drainSeconds", "30", func(s *Settings) *int32 {
		s.Lifecycle.DrainSeconds = new(int32)
		return s.Lifecycle.DrainSeconds
	}),
	secondsOverride("shutdown-seconds", "lifecycle.shutdownSeconds", "20", func(s *Settings) *int32 { return &s.Lifecycle.ShutdownSeconds }),
	{
		Name: "registry", Field: "lifecycle.registry.preset", Example: "eureka",
		Accepts: meshinit.PresetNames(),
		apply: func(s *Settings, v string) error {
			p, err := meshinit.ParsePreset(v)
			if err != nil {
				return fmt.Errorf("not one of %s", meshinit.PresetNames())
			}
			s.Lifecycle.Registry.Preset = p
			return nil
		},
	},
	{
		Name: "registry-timeout", Field: "lifecycle.registry.timeout", Accepts: "a duration from 1s to 5m, such as 5s", Example: "5s",
		apply: func(s *Settings, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < time.Second || d > 5*time.Minute {
				return fmt.Errorf("not a duration from 1s to 5m")
			}
			s.Lifecycle.Registry.Timeout = meshinit.Duration(d)
			return nil
		},
	},
	textOverride("registry-container", "lifecycle.registryContainer", "the name of the app container that registers with the registry", "app",
		checkName, func(s *Settings) *string { return &s.Lifecycle.RegistryContainer }),
	registryPortOverride("dubbo-qos-port", "lifecycle.registry.dubbo.port", "22222", func(s *Settings) *int32 { return &s.Lifecycle.Registry.Dubbo.Port }),
	registryPortOverride("spring-cloud-port", "lifecycle.registry.springCloud.port", "8081", func(s *Settings) *int32 { return &s.Lifecycle.Registry.SpringCloud.Port }),
	textOverride("spring-cloud-base-path", "lifecycle.registry.springCloud.basePath", "an absolute path such as /actuator", "/manage",
		func(v string) error {
			if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, " ?#") {
				return fmt.Errorf("not an absolute path such as /actuator")
			}
			return nil
		}, func(s *Settings) *string { return &s.Lifecycle.Registry.SpringCloud.BasePath }),
	textOverride("spring-cloud-status", "lifecycle.registry.springCloud.status",
		"the status the service-registry endpoint is set to, instead of detecting the registry behind it: OUT_OF_SERVICE (Eureka, Consul) or DOWN (Nacos via Spring Cloud Alibaba)",
		"DOWN", func(v string) error {
			if v != "OUT_OF_SERVICE" && v != "DOWN" {
				return fmt.Errorf("not OUT_OF_SERVICE or DOWN")
			}
			return nil
		}, func(s *Settings) *string { return &s.Lifecycle.Registry.SpringCloud.Status }),
	textOverride("eureka-server-url", "lifecycle.registry.eureka.serverURL", "an http(s) URL such as http://eureka:8761/eureka, or several separated by commas (zones tried in order)",
		"http://eureka:8761/eureka", checkURL, func(s *Settings) *string { return &s.Lifecycle.Registry.Eureka.ServerURL }),
	textOverride("eureka-app-name", "lifecycle.registry.eureka.appName", "an application name", "ORDERS",
		checkName, func(s *Settings) *string { return &s.Lifecycle.Registry.Eureka.AppName }),
	textOverride("eureka-instance-id", "lifecycle.registry.eureka.instanceID", "an instance id", "orders-0:orders:8080",
		checkName, func(s *Settings) *string { return &s.Lifecycle.Registry.Eureka.InstanceID }),
	textOverride("nacos-server-url", "lifecycle.registry.nacos.serverURL",
		"an http(s) URL or a comma-separated host[:port] list ([host]:port for IPv6; port 8848 when absent), as Nacos's own server-addr",
		"http://nacos:8848", checkNacosServers, func(s *Settings) *string { return &s.Lifecycle.Registry.Nacos.ServerURL }),
	textOverride("nacos-service-name", "lifecycle.registry.nacos.serviceName", "a Nacos service name (letters, digits, '.', ':', '_', '-')", "orders",
		checkNacosService, func(s *Settings) *string { return &s.Lifecycle.Registry.Nacos.ServiceName }),
	textOverride("nacos-group", "lifecycle.registry.nacos.groupName", "a Nacos group name (letters, digits, '.', ':', '_', '-')", "DEFAULT_GROUP",
		checkNacosGroup, func(s *Settings) *string { return &s.Lifecycle.Registry.Nacos.GroupName }),
	textOverride("nacos-namespace", "lifecycle.registry.nacos.namespaceID", "a Nacos namespace id (letters, digits, '_', '-')", "prod",
		checkNacosNamespace, func(s *Settings) *string { return &s.Lifecycle.Registry.Nacos.NamespaceID }),
	textOverride("nacos-cluster", "lifecycle.registry.nacos.clusterName", "one Nacos cluster name (letters, digits, '-')", "DEFAULT",
		checkNacosCluster, func(s *Settings) *string { return &s.Lifecycle.Registry.Nacos.ClusterName }),
	registryPortOverride("nacos-port", "lifecycle.registry.nacos.port", "8080", func(s *Settings) *int32 { return &s.Lifecycle.Registry.Nacos.Port }),
	textOverride("nacos-username-env", "lifecycle.registry.nacos.usernameEnv", "the name of an environment variable of the app container (set it from a Secret)", "NACOS_USERNAME",
		checkEnvName, func(s *Settings) *string { return &s.Lifecycle.Registry.Nacos.UsernameEnv }),
	textOverride("nacos-password-env", "lifecycle.registry.nacos.passwordEnv", "the name of an environment variable of the app container (set it from a Secret)", "NACOS_PASSWORD",
		checkEnvName, func(s *Settings) *string { return &s.Lifecycle.Registry.Nacos.PasswordEnv }),
	textOverride("nacos-access-key-env", "lifecycle.registry.nacos.accessKeyEnv", "the name of an environment variable of the app container (set it from a Secret)", "NACOS_ACCESS_KEY",
		checkEnvName, func(s *Settings) *string { return &s.Lifecycle.Registry.Nacos.AccessKeyEnv }),
	textOverride("nacos-secret-key-env", "lifecycle.registry.nacos.secretKeyEnv", "the name of an environment variable of the app container (set it from a Secret)", "NACOS_SECRET_KEY",
		checkEnvName, func(s *Settings) *string { return &s.Lifecycle.Registry.Nacos.SecretKeyEnv }),
	textOverride("consul-address", "lifecycle.registry.consul.address", "the Consul agent the app registers with: host[:port] (port 8500 when absent) or an http(s) URL", "http://10.0.0.1:8500",
		func(v string) error { _, err := meshinit.ConsulBaseURL(v, false); return err }, func(s *Settings) *string { return &s.Lifecycle.Registry.Consul.Address }),
	textOverride("consul-service-id", "lifecycle.registry.consul.serviceID", "a Consul service id", "orders-8080",
		checkName, func(s *Settings) *string { return &s.Lifecycle.Registry.Consul.ServiceID }),
	textOverride("consul-mode", "lifecycle.registry.consul.mode", "maintenance (DNS and passing-only queries drop it) or deregister (every consumer drops it)", "deregister",
		func(v string) error {
			if v != meshinit.ConsulMaintenance && v != meshinit.ConsulDeregister {
				return fmt.Errorf("not maintenance or deregister")
			}
			return nil
		}, func(s *Settings) *string { return &s.Lifecycle.Registry.Consul.Mode }),
	textOverride("consul-token-env", "lifecycle.registry.consul.tokenEnv", "the name of an environment variable of the app container holding the ACL token", "CONSUL_HTTP_TOKEN",
		checkEnvName, func(s *Settings) *string { return &s.Lifecycle.Registry.Consul.TokenEnv }),
	textOverride("edas-offline-url", "lifecycle.registry.edas.url", "an http(s) URL", "http://localhost:54199/offline",
		checkURL, func(s *Settings) *string { return &s.Lifecycle.Registry.EDAS.URL }),
	textOverride("offline-http-method", "lifecycle.registry.http.method", "an upper-case HTTP method such as POST", "PUT",
		func(v string) error {
			if !httpMethod.MatchString(v) {
				return fmt.Errorf("not an upper-case HTTP method such as POST")
			}
			return nil
		}, func(s *Settings) *string { return &s.Lifecycle.Registry.HTTP.Method }),
	textOverride("offline-http-url", "lifecycle.registry.http.url", "an http(s) URL", "http://127.0.0.1:8080/offline",
		checkURL, func(s *Settings) *string { return &s.Lifecycle.Registry.HTTP.URL }),
	{
		Name: "offline-http-headers", Field: "lifecycle.registry.http.headers",
		Accepts: `a JSON object of header names to values, such as {"Authorization":"Bearer x"}`, Example: `{"X-Token":"abc"}`,
		apply: func(s *Settings, v string) error {
			var h map[string]string
			if err := json.Unmarshal([]byte(v), &h); err != nil {
				return fmt.Errorf("not a JSON object of header names to string values")
			}
			for name, val := range h {
				// The hook tool's own rule: what it would refuse (and so
				// skip the drain sleep) is refused here.
				if _, _, err := meshinit.ParseHeader(name + ": " + val); err != nil || strings.Contains(name, ":") {
					return fmt.Errorf("the header %q cannot be sent: a header name is a token without spaces or colons, and a value has no control characters", name)
				}
			}
			s.Lifecycle.Registry.HTTP.Headers = h
			return nil
		},
	},
	textOverride("offline-http-body", "lifecycle.registry.http.body", "text of at most 4096 bytes", `{"status":"DOWN"}`,
		func(v string) error {
			// The body is copied into every app container's preStop
			// command: a large one multiplies into a pod the API server
			// cannot store.
			if len(v) > maxHTTPBody {
				return fmt.Errorf("%d bytes; at most %d", len(v), maxHTTPBody)
			}
			return nil
		}, func(s *Settings) *string { return &s.Lifecycle.Registry.HTTP.Body }),
	textOverride("offline-http-check-url", "lifecycle.registry.http.checkURL",
		"an http(s) URL read (GET) after the request to confirm the instance is offline: it must answer 2xx (containing offline-http-check-body when set); without it the http preset confirms nothing",
		"http://127.0.0.1:8080/registration", checkURL, func(s *Settings) *string { return &s.Lifecycle.Registry.HTTP.CheckURL }),
	textOverride("offline-http-check-body", "lifecycle.registry.http.checkBody", "text the check's answer must contain", "DOWN",
		nil, func(s *Settings) *string { return &s.Lifecycle.Registry.HTTP.CheckBody }),
	{
		Name: "offline-http-expect-status", Field: "lifecycle.registry.http.expectStatus",
		Accepts: "a comma-separated list of HTTP status codes", Example: "200,204",
		apply: func(s *Settings, v string) error {
			var codes []int
			for _, c := range strings.Split(v, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(c))
				if err != nil || n < 100 || n > 599 {
					return fmt.Errorf("%q is not an HTTP status code (100-599)", strings.TrimSpace(c))
				}
				codes = append(codes, n)
			}
			s.Lifecycle.Registry.HTTP.ExpectStatus = codes
			return nil
		},
	},
}

var overrideByKey = func() map[string]*Override {
	m := map[string]*Override{}
	for i := range Overrides {
		o := &Overrides[i]
		o.key = Prefix + o.Name
		m[o.Key()] = o
		for _, a := range o.Aliases {
			m[a] = o
		}
	}
	return m
}()

// LookupOverride finds the override for a full annotation key or alias.
func LookupOverride(key string) (*Override, bool) {
	o, ok := overrideByKey[key]
	return o, ok
}

// AnnotationError is an invalid annotation value. Its message names the
// annotation, the value and what is accepted.
type AnnotationError struct {
	Key     string
	Value   string
	Problem string
	Accepts string
}

func (e *AnnotationError) Error() string {
	msg := fmt.Sprintf("%s: %q is invalid", e.Key, e.Value)
	if e.Problem != "" {
		msg += ": " + e.Problem
	}
	if e.Accepts != "" && !strings.Contains(e.Problem, e.Accepts) {
		msg += " (accepted: " + e.Accepts + ")"
	}
	return msg
}

// Applied records one annotation that changed a setting.
type Applied struct {
	Key   string
	Value string
	Field string
}

// ApplyAnnotations applies every override present in annotations to s, in
// table order. The first invalid value stops it with an *AnnotationError.
// When both our key and an Istio alias are present, ours wins and a warning
// says so. Unknown keys under Prefix produce a warning each.
func ApplyAnnotations(s *Settings, annotations map[string]string) (applied []Applied, warnings []string, err error) {
	if len(annotations) == 0 {
		return nil, nil, nil
	}
	// One pass over the pod's annotations (usually a handful) finds
	// whether any is an override at all, before the overrides (dozens,
	// with their aliases) are looked up one by one in order.
	var unknown, istio []string
	overrides := false
	for k := range annotations {
		if _, known := overrideByKey[k]; known {
			overrides = true
			continue
		}
		if k == InjectKey || k == StatusAnnotation || k == IstioInjectKey || k == meshinit.CNIAnnotation {
			continue
		}
		switch {
		case strings.HasPrefix(k, Prefix):
			unknown = append(unknown, k)
		case isIstioKey(k):
			istio = append(istio, k)
		}
	}
	if overrides {
		if applied, warnings, err = applyOverrides(s, annotations); err != nil {
			return applied, warnings, err
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		warnings = append(warnings, fmt.Sprintf("unknown annotation %s is ignored; see the README for the supported keys", k))
	}
	sort.Strings(istio)
	for _, k := range istio {
		warnings = append(warnings, istioWarning(k, annotations[k]))
	}
	return applied, warnings, nil
}

// applyOverrides applies the pod's overrides in Overrides' order; an
// alias counts when its key is absent, and is reported when both differ.
func applyOverrides(s *Settings, annotations map[string]string) (applied []Applied, warnings []string, err error) {
	for i := range Overrides {
		o := &Overrides[i]
		key := o.Key()
		v, ok := annotations[key]
		for _, alias := range o.Aliases {
			av, aok := annotations[alias]
			if !aok {
				continue
			}
			if ok {
				if strings.TrimSpace(av) != strings.TrimSpace(v) {
					warnings = append(warnings, fmt.Sprintf("%s is ignored because %s is also set", alias, key))
				}
				continue
			}
			key, v, ok = alias, av, true
		}
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if aerr := o.apply(s, v); aerr != nil {
			return applied, warnings, &AnnotationError{Key: key, Value: v, Problem: aerr.Error(), Accepts: o.Accepts}
		}
		applied = append(applied, Applied{Key: key, Value: v, Field: o.Field})
	}
	return applied, warnings, nil
}

// istioPrefixes are the annotation prefixes under which Istio's injector
// reads settings for the sidecar and its capture.
var istioPrefixes = []string{"sidecar.istio.io/", "traffic.sidecar.istio.io/", "proxy.istio.io/",
	"status.sidecar.istio.io/", "readiness.status.sidecar.istio.io/"}

func isIstioKey(k string) bool {
	for _, p := range istioPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// istioUnsupported says what an Istio annotation this injector does not
// honour would have changed, for those that change the capture or the
// proxy: a pod written for Istio must hear that it does not get it.
var istioUnsupported = map[string]string{
	"sidecar.istio.io/interceptionMode":           "Istio's interception mode (REDIRECT, TPROXY or NONE) is not supported: every pod is captured with REDIRECT, within the capture annotations; to capture nothing, opt the pod out",
	"proxy.istio.io/config":                       "Istio's ProxyConfig is not read: the proxy is configured by the namespace's policy and this injector's sidecar-injector.io/ annotations",
	"traffic.sidecar.istio.io/excludeInterfaces":  "interfaces cannot be excluded from capture: traffic on every interface is captured",
	"traffic.sidecar.istio.io/kubevirtInterfaces": "KubeVirt interfaces are not treated apart: traffic on every interface is captured",
	"sidecar.istio.io/bootstrapOverride":          "Istio bootstrap overrides are not read: the Envoy bootstrap comes from the namespace's policy",
	"sidecar.istio.io/userVolume":                 "extra volumes are not added to the proxy",
	"sidecar.istio.io/userVolumeMount":            "extra volume mounts are not added to the proxy",
	"sidecar.istio.io/rewriteAppHTTPProbers":      "probes are not rewritten: the kubelet probes the app directly, and inbound capture excludes nothing for it",
	"sidecar.istio.io/componentLogLevel":          "per-component log levels are not supported; sidecar-injector.io/proxy-log-level sets the proxy's",
	"sidecar.istio.io/agentLogLevel":              "there is no agent: the proxy runs Envoy directly",
	"sidecar.istio.io/discoveryAddress":           "there is no control plane: the proxy's configuration is static",
	"sidecar.istio.io/enableCoreDump":             "core dumps are not enabled for the proxy",
	"sidecar.istio.io/templates":                  "Istio injection templates are not read: templates come from the namespace's policy",
	"status.sidecar.istio.io/port":                "the proxy's readiness port is set by the namespace's policy (proxy.ports.readiness)",
}

func istioWarning(k, v string) string {
	if what := istioUnsupported[k]; what != "" {
		return fmt.Sprintf("%s: %q is not supported and has no effect: %s", k, v, what)
	}
	return fmt.Sprintf("%s is an Istio annotation this injector does not support; it has no effect (the README lists the Istio annotations it honours)", k)
}
