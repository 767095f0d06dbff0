package policy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The policy file's type.
const (
	APIVersion = "sidecar-injector.io/v1alpha1"
	Kind       = "InjectorConfig"
)

// DefaultPolicyName names the layer that applies where no policy matches.
const DefaultPolicyName = "default"

// File is the policy file as written.
type File struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Defaults apply cluster-wide, under every policy.
	Defaults Layer `json:"defaults,omitempty"`
	// Policies select namespaces and layer their settings over Defaults.
	Policies []PolicySpec `json:"policies,omitempty"`
	// TemplateSets are operator templates, by set name and template name
	// (see package templates for the names).
	TemplateSets map[string]map[string]string `json:"templateSets,omitempty"`
}

// Layer is one layer of settings and bounds.
type Layer struct {
	// Settings is a partial Settings document; absent fields come from the
	// layer below.
	Settings map[string]any `json:"settings,omitempty"`
	// PodOverrides bounds what pods may change with annotations.
	PodOverrides map[string]any `json:"podOverrides,omitempty"`
	// TemplateSet names the templates to render with ("" for the built-in
	// set, or the layer below's choice).
	TemplateSet string `json:"templateSet,omitempty"`
}

// PolicySpec is one named policy.
type PolicySpec struct {
	Name string `json:"name"`
	// Namespaces lists namespaces by name.
	Namespaces []string `json:"namespaces,omitempty"`
	// NamespaceSelector selects namespaces by label.
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	Layer             `json:",inline"`
}

// Policy is a compiled policy: effective settings and bounds, with where
// each value came from.
type Policy struct {
	// Name is the policy's name, or DefaultPolicyName.
	Name string
	// Index is the policy's position in the file (-1 for the default).
	Index      int
	Namespaces []string
	Selector   labels.Selector
	Settings   Settings
	Bounds     Bounds
	// TemplateSet is "" for the built-in templates.
	TemplateSet string
	// Origin maps each settings and bounds leaf path (such as
	// "proxy.resources.limits.cpu" or "podOverrides.maxProxyCPU") to where
	// its value came from.
	Origin map[string]string
}

// Config is a compiled policy file.
type Config struct {
	Default      *Policy
	Policies     []*Policy
	TemplateSets map[string]map[string]string
	// Warnings are values that are legal but probably not what the
	// author meant; they do not stop the file from loading.
	Warnings []Warning
}

// The sources a value can come from, as explain prints them.
const (
	SourceBuiltin      = "built-in default"
	SourceFileDefaults = "file defaults"
)

// SourcePolicy names a policy as a source.
func SourcePolicy(name string) string { return "policy " + name }

// SourceAnnotation names an annotation as a source.
func SourceAnnotation(key string) string { return "annotation " + key }

// Selection explains which policy applies to a namespace.
type Selection struct {
	Policy *Policy
	// Matched lists every policy that matched, in file order.
	Matched []string
	// Rule says why Policy won, for explain.
	Rule string
}

// Select returns the policy for a namespace. Policies that list the
// namespace by name win over selector matches; among equals, the first in
// file order wins. Without a match, the default layer applies.
func (c *Config) Select(namespace string, nsLabels map[string]string) Selection {
	var byName, bySelector *Policy
	var matched []string
	set := labels.Set(nsLabels)
	if namespace != "" && set[corev1.LabelMetadataName] != namespace {
		// The API server gives every namespace this label (1.21+), so a
		// selector on it matches the same here whether the labels came
		// from the cluster or from --namespace-labels.
		set = maps.Clone(set)
		if set == nil {
			set = labels.Set{}
		}
		set[corev1.LabelMetadataName] = namespace
	}
	for _, p := range c.Policies {
		named := false
		for _, n := range p.Namespaces {
			if n == namespace {
				named = true
				break
			}
		}
		selected := p.Selector != nil && p.Selector.Matches(set)
		if !named && !selected {
			continue
		}
		matched = append(matched, p.Name)
		if named && byName == nil {
			byName = p
		}
		if selected && bySelector == nil {
			bySelector = p
		}
	}
	switch {
	case byName != nil:
		rule := fmt.Sprintf("policy %q lists namespace %q by name", byName.Name, namespace)
		if len(matched) > 1 {
			rule += "; a policy that names the namespace wins over selector matches, and the first in file order wins among equals"
		}
		return Selection{Policy: byName, Matched: matched, Rule: rule}
	case bySelector != nil:
		rule := fmt.Sprintf("policy %q selects namespace %q by label", bySelector.Name, namespace)
		if len(matched) > 1 {
			rule += "; several selectors match and the first in file order wins"
		}
		return Selection{Policy: bySelector, Matched: matched, Rule: rule}
	}
	return Selection{Policy: c.Default, Rule: "no policy matches; the defaults apply"}
}

// BuiltinConfig is the configuration used when no policy file is given.
func BuiltinConfig() *Config {
	c, err := Parse([]byte("apiVersion: " + APIVersion + "\nkind: " + Kind + "\n"))
	if err != nil {
		panic("built-in configuration does not compile: " + err.Error())
	}
	return c
}

// Parse compiles a policy file's content. Every problem is reported with
// its place in the file, all of them in one run; an invalid file never
// yields a partial Config.
func Parse(data []byte) (*Config, error) {
	if n, err := countDocuments(data); err != nil {
		return nil, fmt.Errorf("not a valid %s document: %w", Kind, err)
	} else if n > 1 {
		return nil, fmt.Errorf("holds %d YAML documents; a policy file is one %s document (put every policy in its policies list)", n, Kind)
	}
	js, err := yaml.YAMLToJSONStrict(data)
	var doc any
	if err == nil {
		doc, err = decodeGeneric(js)
	}
	if err != nil {
		return nil, fmt.Errorf("not a valid %s document: %w", Kind, err)
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a valid %s document: it is not a mapping of apiVersion, kind, defaults, policies and templateSets", Kind)
	}
	if av, k := top["apiVersion"], top["kind"]; av != APIVersion || k != Kind {
		return nil, fmt.Errorf("apiVersion/kind is %s/%s, expected %q/%q", quoteAny(av), quoteAny(k), APIVersion, Kind)
	}
	// Every problem of the file's shape at once, each at its place; then
	// only the parts without one are decoded and compiled, so the
	// problems of the others are reported in the same run.
	errs := checkValue(top, reflect.TypeFor[File](), nil)
	broken := func(prefix string) bool {
		for _, e := range errs {
			if e.Field == prefix || strings.HasPrefix(e.Field, prefix+".") || strings.HasPrefix(e.Field, prefix+"[") {
				return true
			}
		}
		return false
	}
	var f File
	f.APIVersion, f.Kind = APIVersion, Kind
	if !broken("defaults") {
		errs = append(errs, decodePart(top["defaults"], &f.Defaults, field.NewPath("defaults"))...)
	}
	if !broken("templateSets") {
		errs = append(errs, decodePart(top["templateSets"], &f.TemplateSets, field.NewPath("templateSets"))...)
	}
	items, _ := top["policies"].([]any)
	names := make([]string, len(items))
	specs := make([]*PolicySpec, len(items))
	for i, it := range items {
		if m, ok := it.(map[string]any); ok {
			names[i], _ = m["name"].(string)
		}
		where := fmt.Sprintf("policies[%d]", i)
		if broken(where) {
			continue
		}
		specs[i] = &PolicySpec{}
		if perrs := decodePart(it, specs[i], field.NewPath("policies").Index(i)); len(perrs) > 0 {
			errs = append(errs, perrs...)
			specs[i] = nil
		}
	}

	builtinMap, err := toMap(Defaults())
	if err != nil {
		return nil, err
	}
	builtinBounds, err := toMap(DefaultBounds())
	if err != nil {
		return nil, err
	}
	origin := map[string]string{}
	markLeaves(builtinMap, "", SourceBuiltin, origin)
	markLeaves(builtinBounds, "podOverrides.", SourceBuiltin, origin)

	defaults := field.NewPath("defaults")
	base, layerErrs := compileLayer(defaults, DefaultPolicyName, -1, f.Defaults, builtinMap, builtinBounds, "", origin, SourceFileDefaults, f.TemplateSets)
	if len(layerErrs) > 0 || broken("defaults") {
		errs = append(errs, layerErrs...)
		// Keep checking the policies against the built-in defaults, so
		// one run reports every problem in the file.
		base, _ = compileLayer(defaults, DefaultPolicyName, -1, Layer{}, builtinMap, builtinBounds, "", origin, SourceBuiltin, nil)
	}
	c := &Config{Default: base, TemplateSets: f.TemplateSets}
	seen := map[string]int{}
	for i, spec := range specs {
		if spec == nil {
			continue
		}
		where := field.NewPath("policies").Index(i)
		specErrs := validateSpec(where, *spec)
		if j, dup := seen[spec.Name]; dup && spec.Name != "" {
			specErrs = append(specErrs, problem(field.ErrorTypeDuplicate, where.Child("name"), spec.Name, fmt.Sprintf("the name %q is already used by policies[%d]", spec.Name, j)))
		} else if spec.Name != "" {
			seen[spec.Name] = i
		}
		errs = append(errs, specErrs...)
		// The layer is compiled even when the policy's own fields are
		// wrong, so its settings' problems are reported in the same run.
		settingsBase, _ := toMap(base.Settings)
		boundsBase, _ := toMap(base.Bounds)
		p, layerErrs := compileLayer(where, spec.Name, i, spec.Layer, settingsBase, boundsBase, base.TemplateSet, base.Origin, SourcePolicy(spec.Name), f.TemplateSets)
		errs = append(errs, layerErrs...)
		if len(specErrs) > 0 || len(layerErrs) > 0 {
			continue
		}
		p.Namespaces = spec.Namespaces
		if spec.NamespaceSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(spec.NamespaceSelector)
			if err != nil {
				errs = append(errs, field.Invalid(where.Child("namespaceSelector"), spec.NamespaceSelector, err.Error()))
				continue
			}
			p.Selector = sel
		}
		c.Policies = append(c.Policies, p)
	}
	sets := field.NewPath("templateSets")
	for _, name := range slices.Sorted(maps.Keys(f.TemplateSets)) {
		if name == "" {
			errs = append(errs, field.Required(sets, "a set needs a name"))
		}
		if len(f.TemplateSets[name]) == 0 {
			// By string: a path cannot name the set called "", which
			// gets its own problem above.
			errs = append(errs, &field.Error{Type: field.ErrorTypeRequired, Field: sets.String() + "." + name, Detail: "the set is empty"})
		}
	}
	if len(errs) > 0 {
		return nil, &FileError{Problems: orderProblems(errs), names: names}
	}
	c.Warnings = fileWarnings(c, f.TemplateSets)
	return c, nil
}

// decodePart decodes one checked part of the file (its defaults, a
// policy, the template sets) strictly.
func decodePart(v any, out any, path *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err == nil {
		err = decodeStrict(b, out)
	}
	if err != nil {
		return field.ErrorList{problem(field.ErrorTypeTypeInvalid, path, nil, err.Error())}
	}
	return nil
}

func quoteAny(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	if v == nil {
		return "missing"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// orderProblems puts problems in the order of the file: the defaults,
// each policy in turn, the template sets, then the rest; within a part,
// in the order they were found.
func orderProblems(errs field.ErrorList) field.ErrorList {
	rank := func(e *field.Error) (int, int) {
		switch {
		case strings.HasPrefix(e.Field, "defaults"):
			return 0, 0
		case policyIndex.MatchString(e.Field):
			n, _ := strconv.Atoi(policyIndex.FindStringSubmatch(e.Field)[1])
			return 1, n
		case strings.HasPrefix(e.Field, "templateSets"):
			return 2, 0
		}
		return 3, 0
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a1, a2 := rank(errs[i])
		b1, b2 := rank(errs[j])
		return a1 < b1 || (a1 == b1 && a2 < b2)
	})
	return errs
}

func validateSpec(where *field.Path, spec PolicySpec) field.ErrorList {
	var errs field.ErrorList
	name := where.Child("name")
	switch {
	case spec.Name == "":
		errs = append(errs, field.Required(name, "a policy needs a name"))
	case len(validation.IsDNS1123Label(spec.Name)) > 0:
		errs = append(errs, field.Invalid(name, spec.Name, fmt.Sprintf("%q: %s", spec.Name, strings.Join(validation.IsDNS1123Label(spec.Name), "; "))))
	case spec.Name == DefaultPolicyName:
		errs = append(errs, field.Invalid(name, spec.Name, fmt.Sprintf("%q is reserved for the defaults", DefaultPolicyName)))
	}
	if len(spec.Namespaces) == 0 && spec.NamespaceSelector == nil {
		errs = append(errs, field.Required(where, "a policy needs namespaces, a namespaceSelector, or both"))
	}
	for i, n := range spec.Namespaces {
		if msgs := validation.IsDNS1123Label(n); len(msgs) > 0 {
			errs = append(errs, field.Invalid(where.Child("namespaces").Index(i), n, fmt.Sprintf("%q is not a namespace name: %s", n, strings.Join(msgs, "; "))))
		}
	}
	return errs
}

// compileLayer layers one file layer (at where in the file) over a base
// and validates the result.
func compileLayer(where *field.Path, name string, index int, l Layer, settingsBase, boundsBase map[string]any, baseTemplateSet string,
	baseOrigin map[string]string, source string, sets map[string]map[string]string) (*Policy, field.ErrorList) {
	settingsPath, boundsPath := where.Child("settings"), where.Child("podOverrides")
	// Check each layer on its own first, so a typo is reported at its place
	// with the field name rather than after merging.
	var errs field.ErrorList
	errs = append(errs, decodeSection(l.Settings, &Settings{}, settingsPath)...)
	errs = append(errs, decodeSection(l.PodOverrides, &Bounds{}, boundsPath)...)
	if len(errs) > 0 {
		return nil, errs
	}
	origin := make(map[string]string, len(baseOrigin))
	for k, v := range baseOrigin {
		origin[k] = v
	}
	merged := deepMerge(settingsBase, l.Settings, "", source, origin)
	mergedBounds := deepMerge(boundsBase, l.PodOverrides, "podOverrides.", source, origin)
	p := &Policy{Name: name, Index: index, TemplateSet: baseTemplateSet, Origin: origin}
	if l.TemplateSet != "" {
		if _, ok := sets[l.TemplateSet]; !ok {
			errs = append(errs, problem(field.ErrorTypeNotFound, where.Child("templateSet"), l.TemplateSet,
				fmt.Sprintf("no template set named %q in templateSets", l.TemplateSet)))
		}
		p.TemplateSet = l.TemplateSet
		origin["templateSet"] = source
	} else if _, ok := origin["templateSet"]; !ok {
		origin["templateSet"] = SourceBuiltin
	}
	if derrs := decodeSection(merged, &p.Settings, settingsPath); len(derrs) > 0 {
		return nil, append(errs, derrs...)
	}
	if derrs := decodeSection(mergedBounds, &p.Bounds, boundsPath); len(derrs) > 0 {
		return nil, append(errs, derrs...)
	}
	errs = append(errs, p.Settings.Validate(settingsPath)...)
	errs = append(errs, p.Bounds.Validate(boundsPath)...)
	if len(errs) == 0 || (len(errs) == 1 && errs[0].Field == where.Child("templateSet").String()) {
		// A policy's own settings must lie within its own bounds, or
		// every pod would be refused.
		if err := p.Bounds.Check(&p.Settings); err != nil {
			errs = append(errs, field.Forbidden(where, "settings are outside this layer's own podOverrides bounds: "+err.Problem))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

func toMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	err = json.Unmarshal(b, &m)
	return m, err
}

// decodeStrict decodes JSON into out the way the API server decodes
// objects (sigs.k8s.io/json): field names match exactly, so "LogLevel" or
// "maxProxyCpu" is an unknown field rather than silently taken for
// logLevel or maxProxyCPU (encoding/json matches names regardless of case,
// and a mis-cased key would then both apply and be merged beside the right
// one); unknown and duplicate fields are errors.
func decodeStrict(data []byte, out any) error {
	strict, err := sigsjson.UnmarshalStrict(data, out, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return cleanJSONError(err)
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = strings.TrimPrefix(e.Error(), "json: ")
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

// countDocuments counts the non-empty YAML documents in data. A chunk is
// empty when it decodes to null: separators alone, comments, nothing.
func countDocuments(data []byte) (int, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	n := 0
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return n, err
		}
		if s := string(bytes.TrimSpace(js)); s != "null" && s != "" {
			n++
		}
	}
}

func cleanJSONError(err error) error {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return fmt.Errorf("%s: expected %s, got a JSON %s", ute.Field, ute.Type.String(), ute.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return errors.New(msg)
}

// deepMerge returns base with overlay merged in: maps merge key by key,
// anything else (scalars, lists) replaces. Every leaf the overlay sets is
// recorded in origin under prefix+path.
func deepMerge(base, overlay map[string]any, prefix, source string, origin map[string]string) map[string]any {
	out := make(map[string]any, len(base))
	for k, v := range base {
		out[k] = v
	}
	keys := make([]string, 0, len(overlay))
	for k := range overlay {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := overlay[k]
		if v == nil {
			continue
		}
		path := prefix + k
		om, isMap := v.(map[string]any)
		bm, baseIsMap := out[k].(map[string]any)
		if isMap && baseIsMap {
			out[k] = deepMerge(bm, om, path+".", source, origin)
			continue
		}
		out[k] = v
		// A whole subtree replaced: every old leaf under it is now from
		// this source too.
		for p := range origin {
			if strings.HasPrefix(p, path+".") {
				delete(origin, p)
			}
		}
		if isMap {
			markLeaves(om, path+".", source, origin)
		} else {
			origin[path] = source
		}
	}
	return out
}

func markLeaves(m map[string]any, prefix, source string, origin map[string]string) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			markLeaves(sub, prefix+k+".", source, origin)
			continue
		}
		origin[prefix+k] = source
	}
}
