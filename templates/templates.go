package templates

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

//go:embed *.yaml
var builtin embed.FS

// The templates every set has.
const (
	InitContainer = "init-container.yaml"
	// InitContainerCNI replaces InitContainer in the cni capture mode.
	InitContainerCNI = "init-container-cni.yaml"
	Sidecar          = "sidecar.yaml"
	Volumes          = "volumes.yaml"
	AppPreStop       = "app-prestop.yaml"
	EnvoyBootstrap   = "envoy-bootstrap.yaml"
)

// Names lists the templates of a set in rendering order.
var Names = []string{EnvoyBootstrap, InitContainer, InitContainerCNI, Sidecar, Volumes, AppPreStop}

// Builtin returns the text of one embedded template.
func Builtin(name string) (string, error) {
	b, err := builtin.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("no built-in template %q", name)
	}
	return string(b), nil
}

// Set is a parsed set of templates, safe for concurrent use.
type Set struct {
	name string
	tmpl map[string]*template.Template
	// custom names the templates the set replaces.
	custom map[string]bool
}

// Name is the set's name ("builtin" for the embedded one).
func (s *Set) Name() string { return s.name }

// Custom reports whether the set replaces the built-in template name.
func (s *Set) Custom(name string) bool { return s.custom[name] }

// Parse builds a set from the built-in templates with the given ones
// replacing them by name. An unknown name or a template that does not parse
// is an error naming the set and the template.
func Parse(setName string, overrides map[string]string) (*Set, error) {
	known := map[string]bool{}
	for _, n := range Names {
		known[n] = true
	}
	var unknown []string
	for n := range overrides {
		if !known[n] {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("template set %q: unknown template(s) %s (known: %s)", setName,
			strings.Join(unknown, ", "), strings.Join(Names, ", "))
	}
	s := &Set{name: setName, tmpl: map[string]*template.Template{}, custom: map[string]bool{}}
	for _, n := range Names {
		text, ok := overrides[n]
		s.custom[n] = ok
		if !ok {
			var err error
			if text, err = Builtin(n); err != nil {
				return nil, err
			}
		}
		t, err := template.New(n).Option("missingkey=error").Funcs(funcs).Parse(text)
		if err != nil {
			return nil, fmt.Errorf("template set %q: %w", setName, err)
		}
		s.tmpl[n] = t
	}
	return s, nil
}

// Render executes one template.
func (s *Set) Render(name string, data any) ([]byte, error) {
	t, ok := s.tmpl[name]
	if !ok {
		return nil, fmt.Errorf("template set %q has no template %q", s.name, name)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("template set %q: %w", s.name, err)
	}
	return buf.Bytes(), nil
}

// RenderInto executes one template and decodes its YAML output strictly into
// out (a pointer to a typed value). Unknown fields are errors, so a typo in a
// custom template fails when the policy loads, not in a pod.
func (s *Set) RenderInto(name string, data, out any) error {
	b, err := s.Render(name, data)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(b, out); err != nil {
		return fmt.Errorf("template set %q: %s renders invalid YAML for %T: %w\n--- rendered ---\n%s", s.name, name, out, err, numbered(b))
	}
	return nil
}

func numbered(b []byte) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for i, l := range lines {
		lines[i] = fmt.Sprintf("%3d | %s", i+1, l)
	}
	return strings.Join(lines, "\n")
}

var funcs = template.FuncMap{
	// toJSON renders any value as compact JSON, which is also valid YAML
	// and quotes strings safely.
	"toJSON": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	// seconds renders a duration-like value (anything with Seconds() int64)
	// as whole seconds.
	"seconds": func(v interface{ Seconds() int64 }) int64 { return v.Seconds() },
	// durationJSON renders a duration as protobuf JSON ("2s", "0.250s").
	"protoDuration": func(v interface{ String() string }) (string, error) {
		return protoDuration(v.String())
	},
}
