package podcases

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// InjectorNamespace is the injector's namespace in every fixture.
const InjectorNamespace = "mesh-system"

// Case is one fixture: a pod, its namespace, and the environment.
type Case struct {
	Name      string
	Namespace inject.Namespace
	Pod       *corev1.Pod
	// Raw is the pod as JSON, as an API server would send it.
	Raw []byte
	// Config is an inline policy file ("" for the built-in defaults).
	Config string
	// NativeSidecarsSupported is what the API server version says.
	NativeSidecarsSupported bool
	// Expect is an optional "result/reason" the fixture declares.
	Expect string
}

type fixture struct {
	Namespace struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"namespace"`
	NativeSidecarsSupported bool           `json:"nativeSidecarsSupported"`
	Config                  string         `json:"config"`
	Expect                  string         `json:"expect"`
	Pod                     map[string]any `json:"pod"`
}

// LoadCases reads every <name>.yaml (not *.golden.yaml) in dir, sorted.
func LoadCases(dir string) ([]Case, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var cases []Case
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".golden.yaml") {
			continue
		}
		c, err := LoadCase(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		cases = append(cases, c)
	}
	sort.Slice(cases, func(i, j int) bool { return cases[i].Name < cases[j].Name })
	return cases, nil
}

// LoadCase reads one fixture file.
func LoadCase(path string) (Case, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Case{}, err
	}
	var f fixture
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return Case{}, fmt.Errorf("%s: %w", path, err)
	}
	raw, err := yaml.Marshal(f.Pod)
	if err != nil {
		return Case{}, err
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(raw, &pod); err != nil {
		return Case{}, fmt.Errorf("%s: pod: %w", path, err)
	}
	rawJSON, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return Case{}, err
	}
	return Case{
		Name:                    strings.TrimSuffix(filepath.Base(path), ".yaml"),
		Namespace:               inject.Namespace{Name: f.Namespace.Name, Labels: f.Namespace.Labels},
		Pod:                     &pod,
		Raw:                     rawJSON,
		Config:                  f.Config,
		NativeSidecarsSupported: f.NativeSidecarsSupported,
		Expect:                  f.Expect,
	}, nil
}

// engines memoizes compiled engines by configuration: an Engine is
// immutable and safe to share, and compiling validates every bootstrap
// against Envoy's schema, which dominates the tests' time otherwise.
var engines sync.Map // engineKey -> *inject.Engine

type engineKey struct {
	config string
	native bool
}

// Compile builds the engine the fixture asks for.
func (c Case) Compile() (*inject.Engine, error) {
	key := engineKey{c.Config, c.NativeSidecarsSupported}
	if e, ok := engines.Load(key); ok {
		return e.(*inject.Engine), nil
	}
	e, err := c.compile()
	if err == nil {
		engines.Store(key, e)
	}
	return e, err
}

func (c Case) compile() (*inject.Engine, error) {
	cfg := policy.BuiltinConfig()
	if c.Config != "" {
		var err error
		if cfg, err = policy.Parse([]byte(c.Config)); err != nil {
			return nil, fmt.Errorf("%s: config: %w", c.Name, err)
		}
	}
	return inject.New(cfg, Options(c.NativeSidecarsSupported))
}

// Engine builds the engine the fixture asks for, failing the test on error.
func (c Case) Engine(t testing.TB) *inject.Engine {
	t.Helper()
	e, err := c.Compile()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return e
}

// Options are the engine options every test uses.
func Options(native bool) inject.Options {
	return inject.Options{NativeSidecarsSupported: native, InjectorNamespace: InjectorNamespace}
}
