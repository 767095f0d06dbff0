package policy

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

const header = "apiVersion: sidecar-injector.io/v1alpha1\nkind: InjectorConfig\n"

func mustParse(t *testing.T, body string) *Config {
	t.Helper()
	c, err := Parse([]byte(header + body))
	require.NoError(t, err)
	return c
}

// Precedence: built-in defaults < file defaults < the namespace policy <
// pod annotations, each value traced to where it came from.
func TestPrecedence(t *testing.T) {
	c := mustParse(t, `
defaults:
  settings:
    proxy: {logLevel: info, resources: {limits: {cpu: "1"}}}
    lifecycle: {drainSeconds: 10}
policies:
- name: shop
  namespaces: [shop]
  settings:
    lifecycle: {drainSeconds: 20}
    proxy: {resources: {limits: {memory: 256Mi}}}
`)
	builtin := Defaults()
	for _, tc := range []struct {
		name    string
		ns      string
		annot   map[string]string
		path    string
		get     func(*Settings) string
		want    string
		wantSrc string
	}{
		{"built-in default stays", "shop", nil, "proxy.image", func(s *Settings) string { return s.Proxy.Image }, builtin.Proxy.Image, SourceBuiltin},
		{"file default over built-in", "other", nil, "proxy.logLevel", func(s *Settings) string { return s.Proxy.LogLevel }, "info", SourceFileDefaults},
		{"file default reaches policies", "shop", nil, "proxy.logLevel", func(s *Settings) string { return s.Proxy.LogLevel }, "info", SourceFileDefaults},
		{"policy over file default", "shop", nil, "lifecycle.drainSeconds", func(s *Settings) string { return itoa(s.Lifecycle.Drain()) }, "20", SourcePolicy("shop")},
		{"file default where no policy matches", "other", nil, "lifecycle.drainSeconds", func(s *Settings) string { return itoa(s.Lifecycle.Drain()) }, "10", SourceFileDefaults},
		{"sibling keys merge, not replace", "shop", nil, "proxy.resources.limits.cpu", func(s *Settings) string { return s.Proxy.Resources.Limits.CPU.String() }, "1", SourceFileDefaults},
		{"policy sets a sibling", "shop", nil, "proxy.resources.limits.memory", func(s *Settings) string { return s.Proxy.Resources.Limits.Memory.String() }, "256Mi", SourcePolicy("shop")},
		{"annotation over policy", "shop", map[string]string{"sidecar-injector.io/drain-seconds": "45"}, "lifecycle.drainSeconds",
			func(s *Settings) string { return itoa(s.Lifecycle.Drain()) }, "45", SourceAnnotation("sidecar-injector.io/drain-seconds")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := c.Select(tc.ns, nil).Policy
			s := p.Settings
			src := p.Origin[tc.path]
			if tc.annot != nil {
				applied, _, err := ApplyAnnotations(&s, tc.annot)
				require.NoError(t, err)
				for _, a := range applied {
					if a.Field == tc.path {
						src = SourceAnnotation(a.Key)
					}
				}
			}
			assert.Equal(t, tc.want, tc.get(&s))
			assert.Equal(t, tc.wantSrc, src)
		})
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// When several policies match, a policy naming the namespace wins over
// selector matches, and the first in file order wins among equals.
func TestSelectionIsDeterministic(t *testing.T) {
	c := mustParse(t, `
policies:
- name: by-label-a
  namespaceSelector: {matchLabels: {team: pay}}
- name: by-label-b
  namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}
- name: by-name
  namespaces: [payments]
- name: by-name-too
  namespaces: [payments]
`)
	for _, tc := range []struct {
		name    string
		ns      string
		labels  map[string]string
		want    string
		matched []string
	}{
		{"name beats selectors", "payments", map[string]string{"team": "pay"}, "by-name", []string{"by-label-a", "by-label-b", "by-name", "by-name-too"}},
		{"first selector in file order", "billing", map[string]string{"team": "pay"}, "by-label-a", []string{"by-label-a", "by-label-b"}},
		{"second selector when the first does not match", "ops", map[string]string{"team": "ops"}, "by-label-b", []string{"by-label-b"}},
		{"defaults when nothing matches", "misc", nil, DefaultPolicyName, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < 20; i++ { // map iteration must not leak into the choice
				sel := c.Select(tc.ns, tc.labels)
				require.Equal(t, tc.want, sel.Policy.Name)
				require.Equal(t, tc.matched, sel.Matched)
				require.NotEmpty(t, sel.Rule)
			}
		})
	}
}

// Broken policy files are refused with the place of every problem.
func TestBrokenPolicies(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want []string
	}{
		{"wrong kind", "", nil},
		{"unknown top-level field", "polices: []\n", []string{`unknown field "polices"`}},
		{"typo in settings", "defaults:\n  settings:\n    proxy: {imag: x}\n", []string{"defaults: settings:", `unknown field "proxy.imag"`}},
		// Names match exactly: a mis-cased key is unknown, never taken
		// for the real one (nor merged beside it).
		{"mis-cased settings key", "defaults: {settings: {proxy: {LogLevel: debug}}}\n", []string{`unknown field "proxy.LogLevel"`}},
		{"mis-cased bound", "policies:\n- {name: a, namespaces: [a], podOverrides: {maxproxycpu: \"4\", AllowOptOut: true}}\n",
			[]string{"policies[0] (a)", `unknown field "maxproxycpu"`, `unknown field "AllowOptOut"`}},
		{"mis-cased top-level key", "Policies:\n- {Name: a, Namespaces: [a]}\n", []string{`unknown field "Policies"`}},
		{"duplicate key", "defaults: {settings: {proxy: {logLevel: info, logLevel: debug}}}\n", []string{"logLevel"}},
		{"sub-millisecond duration", "defaults: {settings: {envoy: {protocolDetectionTimeout: 1ns, outbound: {connectTimeout: 999us}}}}\n",
			[]string{"envoy.protocolDetectionTimeout: 1ns is not a whole number of milliseconds (Envoy would read 0s)", "envoy.outbound.connectTimeout: 999µs is not a whole number"}},
		{"ejection percent over 100 while disabled", "defaults: {settings: {envoy: {outbound: {outlierDetection: {enabled: false, maxEjectionPercent: 200}}}}}\n",
			[]string{"maxEjectionPercent: 200 is over 100"}},
		{"invalid image", "defaults: {settings: {proxy: {image: \"Not An Image!!\"}, init: {image: \" \"}}}\n", []string{"proxy.image", "init.image", "not a container image reference"}},
		{"invalid pull policy", "defaults: {settings: {proxy: {imagePullPolicy: Sometimes}}}\n", []string{`proxy.imagePullPolicy: "Sometimes" is not Always, IfNotPresent or Never`}},
		{"uid beyond Kubernetes", "defaults: {settings: {proxy: {uid: 1099511627776}}}\n", []string{"proxy.uid: 1099511627776 is not between 1 and 2147483647"}},
		{"concurrency beyond the annotation's bound", "defaults: {settings: {proxy: {concurrency: 100000}}}\n", []string{"proxy.concurrency: 100000 is not between 0 (all cores) and 64"}},
		{"bad duration names its field", "policies:\n- {name: a, namespaces: [a], settings: {envoy: {outbound: {connectTimeout: soon}}}}\n",
			[]string{`policies[0] (a): settings: envoy.outbound.connectTimeout: "soon" is not a duration`}},
		{"bad quantity names its field", "defaults: {settings: {proxy: {resources: {limits: {cpu: lots}}}}}\n", []string{"settings: proxy.resources.limits.cpu: quantities must match"}},
		{"non-positive cap", "defaults: {podOverrides: {maxProxyCPU: \"-1\"}}\n", []string{"podOverrides.maxProxyCPU: -1 is not positive"}},
		{"proxy ready timeout beyond an hour", "defaults: {settings: {lifecycle: {proxyReadyTimeout: 2562047h}}}\n", []string{"lifecycle.proxyReadyTimeout: 2562047h0m0s is over 1h"}},
		{"two documents", "defaults: {}\n---\napiVersion: x\n", []string{"holds 2 YAML documents"}},
		{"wrong type", "defaults:\n  settings:\n    lifecycle: {drainSeconds: soon}\n", []string{"defaults: settings:", "drainSeconds"}},
		{"invalid value", "policies:\n- name: p\n  namespaces: [a]\n  settings: {envoy: {outbound: {outlierDetection: {enabled: true, maxEjectionPercent: 200}}}}\n",
			[]string{"policies[0] (p)", "settings.envoy.outbound.outlierDetection.maxEjectionPercent: 200 is over 100"}},
		{"invalid log level", "defaults: {settings: {proxy: {logLevel: loud}}}\n", []string{"settings.proxy.logLevel", `"loud"`}},
		{"bad port list", "defaults: {settings: {capture: {excludeOutboundPorts: \"80,x\"}}}\n", []string{`"x" is not a port`}},
		{"bad CIDR", "defaults: {settings: {capture: {excludeOutboundCIDRs: [\"10.0.0.0/40\"]}}}\n", []string{`"10.0.0.0/40" is not an IPv4 or IPv6 CIDR`}},
		{"policy without name", "policies:\n- namespaces: [a]\n", []string{"policies[0]", "a policy needs a name"}},
		{"duplicate names", "policies:\n- {name: p, namespaces: [a]}\n- {name: p, namespaces: [b]}\n", []string{"policies[1] (p)", "already used by policies[0]"}},
		{"reserved name", "policies:\n- {name: default, namespaces: [a]}\n", []string{"reserved"}},
		{"no selector", "policies:\n- {name: p}\n", []string{"needs namespaces, a namespaceSelector"}},
		{"bad selector", "policies:\n- name: p\n  namespaceSelector: {matchExpressions: [{key: a, operator: Sometimes}]}\n", []string{"namespaceSelector"}},
		{"bad namespace name", "policies:\n- {name: p, namespaces: [Bad_Name]}\n", []string{`"Bad_Name" is not a namespace name`}},
		{"unknown template set", "policies:\n- {name: p, namespaces: [a], templateSet: missing}\n", []string{`no template set named "missing"`}},
		{"unknown override in bounds", "defaults: {podOverrides: {allowedAnnotations: [proxy-gpu]}}\n", []string{`"proxy-gpu" is not an override annotation`}},
		{"empty drain range", "defaults: {podOverrides: {minDrainSeconds: 30, maxDrainSeconds: 10}}\n", []string{"30-10 is empty"}},
		{"settings outside own bounds", "defaults: {podOverrides: {maxProxyCPU: 500m}}\n", []string{"outside this layer's own podOverrides bounds", "maxProxyCPU 500m"}},
		{"proxy ready timeout of zero", "defaults: {settings: {lifecycle: {proxyReadyTimeout: 0s}}}\n", []string{"lifecycle.proxyReadyTimeout", "under 1s"}},
		{"request above limit", "defaults: {settings: {proxy: {resources: {requests: {cpu: \"4\"}, limits: {cpu: \"1\"}}}}}\n", []string{"requests.cpu: 4 exceeds the limit 1"}},
		{"two problems at once", "policies:\n- {name: a, namespaces: [x], settings: {proxy: {logLevel: loud}}}\n- {name: b}\n",
			[]string{"policies[0] (a)", "policies[1] (b)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := header + tc.body
			if tc.name == "wrong kind" {
				data = "apiVersion: v1\nkind: ConfigMap\n"
			}
			_, err := Parse([]byte(data))
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// Bounds on what pods may change, checked against the effective settings.
func TestBounds(t *testing.T) {
	c := mustParse(t, `
policies:
- name: tight
  namespaces: [pay]
  podOverrides:
    allowedAnnotations: [proxy-cpu, proxy-cpu-limit, proxy-memory-limit, drain-seconds, proxy-image]
    maxProxyCPU: "1"
    maxProxyMemory: 1Gi
    allowedProxyImages: [registry.example.com/mesh/]
    allowOptOut: false
    minDrainSeconds: 5
    maxDrainSeconds: 60
  settings:
    proxy: {image: registry.example.com/mesh/envoy:v1, resources: {limits: {cpu: 500m, memory: 512Mi}}}
`)
	p := c.Select("pay", nil).Policy
	assert.False(t, p.Bounds.AllowOptOut)
	for _, tc := range []struct {
		name  string
		annot map[string]string
		field string // "" = within bounds
	}{
		{"within bounds", map[string]string{"sidecar-injector.io/proxy-cpu": "300m", "sidecar-injector.io/drain-seconds": "30"}, ""},
		{"cpu over max", map[string]string{"sidecar-injector.io/proxy-cpu": "1500m"}, "proxy.resources.requests.cpu"},
		{"memory over max", map[string]string{"sidecar-injector.io/proxy-memory-limit": "2Gi"}, "proxy.resources.limits.memory"},
		{"drain below min", map[string]string{"sidecar-injector.io/drain-seconds": "1"}, "lifecycle.drainSeconds"},
		{"drain above max", map[string]string{"sidecar-injector.io/drain-seconds": "600"}, "lifecycle.drainSeconds"},
		{"image outside prefixes", map[string]string{"sidecar-injector.io/proxy-image": "docker.io/evil/envoy:1"}, "proxy.image"},
		{"image inside prefixes", map[string]string{"sidecar-injector.io/proxy-image": "registry.example.com/mesh/envoy:v2"}, ""},
		// A zero limit is "unlimited" to the kubelet: not a way around a cap.
		{"zero cpu limit", map[string]string{"sidecar-injector.io/proxy-cpu": "0", "sidecar-injector.io/proxy-cpu-limit": "0"}, "proxy.resources.limits.cpu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := p.Settings
			applied, _, err := ApplyAnnotations(&s, tc.annot)
			require.NoError(t, err)
			for _, a := range applied {
				o, _ := LookupOverride(a.Key)
				require.True(t, p.Bounds.Allows(o), a.Key)
			}
			berr := p.Bounds.Check(&s)
			if tc.field == "" {
				assert.Nil(t, berr)
				return
			}
			require.NotNil(t, berr)
			assert.Equal(t, tc.field, berr.Field)
		})
	}
	log, _ := LookupOverride("sidecar-injector.io/proxy-log-level")
	assert.False(t, p.Bounds.Allows(log), "not in allowedAnnotations")
	alias, _ := LookupOverride("sidecar.istio.io/proxyCPU")
	assert.True(t, p.Bounds.Allows(alias), "an Istio alias counts as the override it stands for")
}

func TestAnnotationErrors(t *testing.T) {
	for key, val := range map[string]string{
		"sidecar-injector.io/exclude-outbound-ports":       "80,abc",
		"sidecar-injector.io/include-inbound-ports":        "70000",
		"sidecar-injector.io/exclude-outbound-cidrs":       "10.0.0.0/8,nope",
		"sidecar-injector.io/proxy-cpu":                    "-1",
		"sidecar-injector.io/proxy-memory":                 "lots",
		"sidecar-injector.io/proxy-log-level":              "loud",
		"sidecar-injector.io/native-sidecar":               "yes",
		"sidecar-injector.io/drain-seconds":                "-5",
		"sidecar-injector.io/registry":                     "zookeeper",
		"sidecar-injector.io/registry-timeout":             "1h",
		"sidecar-injector.io/eureka-server-url":            "eureka:8761",
		"sidecar-injector.io/offline-http-headers":         "X-A: b",
		"sidecar-injector.io/offline-http-expect-status":   "200,9999",
		"sidecar-injector.io/proxy-image":                  "not an image",
		"traffic.sidecar.istio.io/excludeInboundPorts":     "1-2-3",
		"sidecar-injector.io/hold-until-proxy-ready":       "1",
		"sidecar-injector.io/nacos-server-url":             "nacos:0",
		"sidecar-injector.io/spring-cloud-status":          "UP",
		"traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/8,",
	} {
		t.Run(key, func(t *testing.T) {
			s := Defaults()
			_, _, err := ApplyAnnotations(&s, map[string]string{key: val})
			if key == "traffic.sidecar.istio.io/includeOutboundIPRanges" {
				assert.NoError(t, err, "a trailing comma is tolerated")
				return
			}
			require.Error(t, err)
			var aerr *AnnotationError
			require.ErrorAs(t, err, &aerr)
			assert.Equal(t, key, aerr.Key)
			assert.Contains(t, err.Error(), key+": \""+val+"\" is invalid")
			assert.NotEmpty(t, aerr.Accepts)
		})
	}
}

func TestUnknownKeysWarnAndOursWinOverAliases(t *testing.T) {
	s := Defaults()
	applied, warnings, err := ApplyAnnotations(&s, map[string]string{
		"sidecar-injector.io/proxy-cpu":  "200m",
		"sidecar.istio.io/proxyCPU":      "900m",
		"sidecar-injector.io/prxy-cpu":   "1",
		"sidecar-injector.io/inject":     "true",
		"example.com/unrelated":          "x",
		"sidecar.istio.io/proxyMemory":   "300Mi",
		"sidecar-injector.io/status":     "{}",
		"traffic.sidecar.istio.io/other": "x",
	})
	require.NoError(t, err)
	assert.Equal(t, "200m", s.Proxy.Resources.Requests.CPU.String())
	assert.Equal(t, "300Mi", s.Proxy.Resources.Requests.Memory.String(), "an alias applies when ours is absent")
	assert.Len(t, applied, 2)
	assert.Equal(t, []string{
		"sidecar.istio.io/proxyCPU is ignored because sidecar-injector.io/proxy-cpu is also set",
		"unknown annotation sidecar-injector.io/prxy-cpu is ignored; see the README for the supported keys",
	}, warnings)
}

func TestCheckImage(t *testing.T) {
	for _, ok := range []string{
		"envoyproxy/envoy:v1.36.2", "docker.io/envoyproxy/envoy:v1.36.2", "registry.example.com:5000/mesh/envoy",
		"localhost/envoy:dev", "registry.example.com/mesh/envoy@sha256:" + strings.Repeat("ab", 32),
		"registry.example.com/a__b/c-d/e.f:1.0_rc-1", "ghcr.io/sidecar-injector/mesh-init:0.1.0",
	} {
		if err := checkImage(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"registry.example.com/mesh/../evil:1", "registry.example.com//envoy", "Envoy:1", "envoy:", "envoy:-x",
		"not an image", "registry.example.com/mesh/./envoy", "-envoy", "envoy/", "envoy@sha256:short",
	} {
		if err := checkImage(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

// The API server labels every namespace with its name; a selector on that
// label matches the same offline (--namespace-labels, explain) as in a
// cluster, and the caller's map is not modified.
func TestSelectorOnMetadataName(t *testing.T) {
	c := mustParse(t, `
policies:
- name: by-meta
  namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: foo}}
`)
	own := map[string]string{"team": "x"}
	assert.Equal(t, "by-meta", c.Select("foo", own).Policy.Name)
	assert.Equal(t, "by-meta", c.Select("foo", nil).Policy.Name)
	assert.Equal(t, DefaultPolicyName, c.Select("bar", nil).Policy.Name)
	assert.Equal(t, map[string]string{"team": "x"}, own)
}

// Headers the hook tool would refuse at run time are refused at admission.
func TestOfflineHeadersTheHookCanSend(t *testing.T) {
	for _, v := range []string{`{"":"x"}`, `{" ":"x"}`, `{"Bad Name":"v"}`, `{"X:Y":"z"}`, `{"X-A":"b\r\nX-Evil: 1"}`} {
		s := Defaults()
		_, _, err := ApplyAnnotations(&s, map[string]string{"sidecar-injector.io/offline-http-headers": v})
		assert.Error(t, err, v)
	}
	s := Defaults()
	_, _, err := ApplyAnnotations(&s, map[string]string{"sidecar-injector.io/offline-http-headers": `{"Authorization":"Bearer a:b","X-Token":"abc"}`})
	assert.NoError(t, err)
}

// Separators and comments around the one document are not documents.
func TestEmptyDocumentsAroundTheFile(t *testing.T) {
	for _, body := range []string{"---\n", "---\n---\n# end\n", "defaults: {}\n---\n\n"} {
		mustParse(t, body)
	}
}

// URL annotations follow the hook tool's rule, and the refusal names the
// annotation.
func TestURLAnnotationsTheHookCanUse(t *testing.T) {
	for k, v := range map[string]string{
		"sidecar-injector.io/offline-http-url":  "http://",
		"sidecar-injector.io/edas-offline-url":  "https://:80/x",
		"sidecar-injector.io/eureka-server-url": "http://a/eureka,http://",
	} {
		s := Defaults()
		_, _, err := ApplyAnnotations(&s, map[string]string{k: v})
		require.Error(t, err, k)
		assert.Contains(t, err.Error(), k)
	}
	s := Defaults()
	_, _, err := ApplyAnnotations(&s, map[string]string{"sidecar-injector.io/eureka-server-url": "http://a:8761/eureka, http://b:8761/eureka"})
	assert.NoError(t, err)
}

// A broken file's problems are field errors at the paths the decoder and
// validation found, whatever their message says.
func TestBrokenPolicyProblemsHaveFieldPaths(t *testing.T) {
	_, err := Parse([]byte(header + `defaults:
  settings: {proxy: {imag: x, logLevel: loud}}
policies:
- {name: a, namespaces: [a], settings: {envoy: {outbound: {connectTimeout: soon}}}}
- {name: b, namespaces: [b], settings: {lifecycle: {drainSeconds: x}}}
- {name: c, namespaces: [c], podOverrides: {maxProxyCPU: "-1"}}
`))
	var fe *FileError
	require.ErrorAs(t, err, &fe)
	got := map[string]field.ErrorType{}
	for _, p := range fe.Problems {
		got[p.Field] = p.Type
	}
	assert.Equal(t, map[string]field.ErrorType{
		"defaults.settings.proxy.imag":                       field.ErrorTypeForbidden,
		"policies[0].settings.envoy.outbound.connectTimeout": field.ErrorTypeTypeInvalid,
		"policies[1].settings.lifecycle.drainSeconds":        field.ErrorTypeTypeInvalid,
		"policies[2].podOverrides.maxProxyCPU":               field.ErrorTypeInvalid,
	}, got)
	var one *field.Error
	require.ErrorAs(t, err, &one, "each problem unwraps as a *field.Error")
}
