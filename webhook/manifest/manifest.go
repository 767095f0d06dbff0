package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// Mode is what to do with each pod or template.
type Mode int

// The modes.
const (
	Inject Mode = iota
	Uninject
)

// Format is the output format.
type Format string

// The output formats.
const (
	YAML Format = "yaml"
	JSON Format = "json"
)

// Options configure a run.
type Options struct {
	Mode   Mode
	Engine *inject.Engine
	Format Format
	// DefaultNamespace is used for objects without metadata.namespace.
	DefaultNamespace string
	// NamespaceLabels gives namespaces' labels; the key "*" applies to
	// namespaces it does not name. Namespace objects in the input add to it.
	NamespaceLabels map[string]map[string]string
}

// Source is one input: a file's name ("-" for standard input) and content.
type Source struct {
	Name string
	Data []byte
}

// Line is one report line: what happened to one object.
type Line struct {
	// Source names the input the object came from.
	Source string
	// Document is the 1-based position of the document in the input; Item
	// is the 1-based item within a List (0 when not in a List).
	Document int
	Item     int
	Kind     string
	Name     string
	// Namespace is the namespace the decision used ("" for objects that
	// have no pods).
	Namespace string
	// Result is injected, skipped, refused, uninjected, unchanged or
	// "passed through".
	Result string
	Reason string
	// Message is the decision's sentence (for refusals: how to fix it).
	Message  string
	Warnings []string
}

// String renders the line for the stderr report.
func (l Line) String() string {
	where := fmt.Sprintf("%s: document %d", l.Source, l.Document)
	if l.Item > 0 {
		where += fmt.Sprintf(" item %d", l.Item)
	}
	obj := strings.ToLower(l.Kind) + "/" + l.Name
	if l.Kind == "" {
		obj = "null"
	}
	if l.Namespace != "" {
		obj += " (namespace " + l.Namespace + ")"
	}
	s := fmt.Sprintf("%s: %s: %s", where, obj, l.Result)
	if l.Reason != "" {
		s += " (" + l.Reason + ")"
	}
	if l.Result == string(inject.Refused) || l.Result == string(inject.Skipped) || (l.Result == "passed through" && l.Message != "") {
		s += ": " + l.Message
	}
	for _, w := range l.Warnings {
		s += "\n    warning: " + w
	}
	return s
}

// Error is input that cannot be processed; it names the document and the
// field.
type Error struct {
	Source   string
	Document int
	Item     int
	Field    string
	Err      error
}

func (e *Error) Error() string {
	where := fmt.Sprintf("document %d", e.Document)
	if e.Source != "" {
		where = e.Source + ": " + where
	}
	if e.Item > 0 {
		where += fmt.Sprintf(", item %d", e.Item)
	}
	if e.Field != "" {
		where += ", " + e.Field
	}
	return where + ": " + e.Err.Error()
}

// document is one input document.
type document struct {
	raw    []byte
	isJSON bool
	obj    map[string]any
}

// Process reads every document of every source, injects or uninjects the
// pods and pod templates, and returns the output and one report line per
// object. Namespace objects anywhere in the input lend their labels to
// every object. Any error (unparsable input, a refused pod) fails the whole
// run: a partial manifest must never reach `kubectl apply`.
func Process(sources []Source, o Options) ([]byte, []Line, error) {
	if o.Format == "" {
		o.Format = YAML
	}
	if o.DefaultNamespace == "" {
		o.DefaultNamespace = "default"
	}
	all := make([][]*document, len(sources))
	for i, src := range sources {
		docs, err := readDocuments(bytes.NewReader(src.Data))
		if err != nil {
			var merr *Error
			if errors.As(err, &merr) {
				merr.Source = src.Name
			}
			return nil, nil, err
		}
		all[i] = docs
	}
	labels := map[string]map[string]string{}
	for k, v := range o.NamespaceLabels {
		labels[k] = v
	}
	for _, docs := range all {
		for _, d := range docs {
			namespaceLabels(d.obj, labels)
		}
	}
	p := &processor{o: o, labels: labels}
	var out [][]byte
	var lines []Line
	var errs []error
	for si, docs := range all {
		name := sources[si].Name
		for i, d := range docs {
			changed, ls, err := p.document(i+1, d)
			for j := range ls {
				ls[j].Source = name
			}
			lines = append(lines, ls...)
			if err != nil {
				errs = append(errs, withSource(err, name))
				continue
			}
			b, err := render(d, changed, o.Format)
			if err != nil {
				errs = append(errs, &Error{Source: name, Document: i + 1, Err: err})
				continue
			}
			out = append(out, b)
		}
	}
	if len(errs) > 0 {
		return nil, lines, errors.Join(errs...)
	}
	b, err := join(out, o.Format)
	return b, lines, err
}

// withSource names the source in every *Error inside err.
func withSource(err error, name string) error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			withSource(e, name)
		}
		return err
	}
	var merr *Error
	if errors.As(err, &merr) {
		merr.Source = name
	}
	return err
}

type processor struct {
	o      Options
	labels map[string]map[string]string
}

func (p *processor) namespaceLabels(ns string) map[string]string {
	if l, ok := p.labels[ns]; ok {
		return l
	}
	return p.labels["*"]
}

// document processes one document; changed reports whether its object
// must be re-serialized.
func (p *processor) document(n int, d *document) (bool, []Line, error) {
	if isList(d.obj) {
		items, _ := d.obj["items"].([]any)
		var lines []Line
		var errs []error
		changed := false
		for i, it := range items {
			if it == nil {
				// kubectl and Helm leave null items behind (an empty
				// template in a range); there is nothing to inject.
				lines = append(lines, Line{Document: n, Item: i + 1, Result: "passed through", Reason: "null_item",
					Message: "a null List item: nothing to inject, left as it is"})
				continue
			}
			obj, ok := it.(map[string]any)
			if !ok {
				errs = append(errs, &Error{Document: n, Item: i + 1, Err: fmt.Errorf("a List item is a JSON %s, not an object", jsonKind(it))})
				continue
			}
			c, line, err := p.object(n, i+1, obj)
			lines = append(lines, failedLine(line, err))
			if err != nil {
				errs = append(errs, err)
			}
			changed = changed || c
		}
		return changed, lines, errors.Join(errs...)
	}
	c, line, err := p.object(n, 0, d.obj)
	return c, []Line{failedLine(line, err)}, err
}

// failedLine makes the report say "error" for an object that failed
// before a decision was reached (it would otherwise read "passed through").
func failedLine(l Line, err error) Line {
	if err != nil && l.Result == "passed through" {
		l.Result = "error"
	}
	return l
}

// templatePaths are where each workload keeps its pod template.
var templatePaths = map[string][]string{
	"Deployment":            {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"Job":                   {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
	"PodTemplate":           {"template"},
}

// workloadGroups are the API groups each kind of templatePaths belongs to:
// a custom resource that happens to share a kind (Volcano's Job, Kruise's
// StatefulSet) passes through untouched.
var workloadGroups = map[string][]string{
	"Pod": {""}, "ReplicationController": {""}, "PodTemplate": {""},
	"Deployment": {"apps", "extensions"}, "StatefulSet": {"apps"}, "DaemonSet": {"apps", "extensions"}, "ReplicaSet": {"apps", "extensions"},
	"Job": {"batch"}, "CronJob": {"batch"},
}

// groupOf is the API group of an object's apiVersion ("" for the core group).
func groupOf(obj map[string]any) string {
	av, _ := obj["apiVersion"].(string)
	g, _, found := strings.Cut(av, "/")
	if !found {
		return ""
	}
	return g
}

// isBuiltin reports whether obj's kind is one of the workloads (or Pod)
// in its own Kubernetes API group.
func isBuiltin(obj map[string]any) bool {
	return slices.Contains(workloadGroups[kindOf(obj)], groupOf(obj))
}

// isList reports a Kubernetes List: kind List, or a typed list (PodList,
// DeploymentList) of a built-in group, holding items. A custom resource
// whose kind ends in "List" is an object like any other.
func isList(obj map[string]any) bool {
	kind := kindOf(obj)
	if _, ok := obj["items"]; !ok && kind != "List" {
		return false
	}
	if kind == "List" {
		return true
	}
	item, ok := strings.CutSuffix(kind, "List")
	return ok && (slices.Contains(workloadGroups[item], groupOf(obj)) || (groupOf(obj) == "" && item == "Namespace"))
}

func (p *processor) object(n, item int, obj map[string]any) (bool, Line, error) {
	kind := kindOf(obj)
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	if name == "" {
		if g, _ := meta["generateName"].(string); g != "" {
			name = g + "*"
		}
	}
	line := Line{Document: n, Item: item, Kind: kind, Name: name, Result: "passed through"}
	path, isWorkload := templatePaths[kind]
	switch {
	case kind == "Namespace" && groupOf(obj) == "":
		line.Reason, line.Message = "namespace", fmt.Sprintf("its labels decide injection for the objects of namespace %s", name)
		return false, line, nil
	case kind != "Pod" && !isWorkload:
		line.Reason, line.Message = "not_a_workload", fmt.Sprintf("a %s has no pods or pod template to inject", kind)
		return false, line, nil
	case !isBuiltin(obj):
		av, _ := obj["apiVersion"].(string)
		line.Reason, line.Message = "not_kubernetes_workload", fmt.Sprintf(
			"%s %s is not Kubernetes' own %s (only the core, apps and batch kinds are injected; the webhook injects the pods it creates, if they reach it)", av, kind, kind)
		return false, line, nil
	}
	ns, _ := meta["namespace"].(string)
	if ns == "" {
		ns = p.o.DefaultNamespace
	}
	line.Namespace = ns

	field := "the object"
	podObj := obj
	if kind != "Pod" {
		field = strings.Join(path, ".")
		var ok bool
		podObj, ok = lookup(obj, path)
		if !ok {
			return false, line, &Error{Document: n, Item: item, Field: field, Err: fmt.Errorf("a %s needs %s", kind, field)}
		}
	}
	pod, err := toPod(podObj, kind != "Pod")
	if err != nil {
		return false, line, &Error{Document: n, Item: item, Field: field, Err: err}
	}
	if pod.Namespace == "" {
		pod.Namespace = ns
	}

	var out *corev1.Pod
	switch p.o.Mode {
	case Uninject:
		out, err = inject.Uninject(pod)
		switch {
		case errors.Is(err, inject.ErrNotInjected):
			line.Result = "unchanged"
			line.Reason = "not_injected"
			return false, line, nil
		case err != nil:
			return false, line, &Error{Document: n, Item: item, Field: field + ".metadata.annotations[" + policy.StatusAnnotation + "]", Err: err}
		}
		line.Result = "uninjected"
	default:
		var d inject.Decision
		out, d = p.o.Engine.Inject(pod, inject.Namespace{Name: ns, Labels: p.namespaceLabels(ns)})
		line.Result, line.Reason, line.Message, line.Warnings = string(d.Result), string(d.Reason), d.Message, d.Warnings
		switch d.Result {
		case inject.Refused:
			return false, line, &Error{Document: n, Item: item, Field: field, Err: errors.New(d.Message)}
		case inject.Skipped:
			return false, line, nil
		}
	}
	if pod.Namespace == ns && !hasNamespace(podObj) {
		// The namespace decided the policy; the object did not name one
		// (a template never does; a pod left it to kubectl -n), so none
		// is added.
		out.Namespace = ""
	}
	if err := fromPod(obj, path, out, kind != "Pod"); err != nil {
		return false, line, &Error{Document: n, Item: item, Field: field, Err: err}
	}
	return true, line, nil
}

func hasNamespace(podObj map[string]any) bool {
	meta, _ := podObj["metadata"].(map[string]any)
	ns, _ := meta["namespace"].(string)
	return ns != ""
}

// jsonKind names the JSON type of a decoded value, for messages.
func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return "number"
}

// NamespaceLabels are the labels of every Namespace object in the sources
// (the last one of a name wins, as after kubectl apply of the stream).
func NamespaceLabels(sources []Source) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, src := range sources {
		docs, err := readDocuments(bytes.NewReader(src.Data))
		if err != nil {
			return nil, withSource(err, src.Name)
		}
		for _, d := range docs {
			namespaceLabels(d.obj, out)
		}
	}
	return out, nil
}

// namespaceLabels adds the labels of the Namespace objects of a document.
func namespaceLabels(doc map[string]any, out map[string]map[string]string) {
	for _, obj := range objectsOf(doc) {
		if kindOf(obj) != "Namespace" {
			continue
		}
		meta, _ := obj["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		l := map[string]string{}
		if ml, ok := meta["labels"].(map[string]any); ok {
			for k, v := range ml {
				s, _ := v.(string)
				l[k] = s
			}
		}
		out[name] = l
	}
}

func kindOf(obj map[string]any) string {
	k, _ := obj["kind"].(string)
	return k
}

func objectsOf(obj map[string]any) []map[string]any {
	if obj == nil {
		return nil
	}
	items, ok := obj["items"].([]any)
	if !ok || !isList(obj) {
		return []map[string]any{obj}
	}
	var out []map[string]any
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func lookup(obj map[string]any, path []string) (map[string]any, bool) {
	cur := obj
	for _, k := range path {
		next, ok := cur[k].(map[string]any)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// toPod decodes a pod or a pod template (metadata + spec) strictly, so a
// misspelt field is reported instead of silently dropped.
func toPod(m map[string]any, template bool) (*corev1.Pod, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	pod := &corev1.Pod{}
	if template {
		var t corev1.PodTemplateSpec
		if err := strictJSON(b, &t); err != nil {
			return nil, err
		}
		pod.ObjectMeta, pod.Spec = t.ObjectMeta, t.Spec
		return pod, nil
	}
	if err := strictJSON(b, pod); err != nil {
		return nil, err
	}
	return pod, nil
}

func strictJSON(b []byte, out any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("not a valid pod spec: %w", err)
	}
	return nil
}

// fromPod writes a pod back into the object: the whole object for a Pod,
// the template's metadata and spec for a workload. A template without
// metadata (a CronJob's, say) gets one only when injection adds to it.
func fromPod(obj map[string]any, path []string, pod *corev1.Pod, template bool) error {
	var v any = pod
	if template {
		v = corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	// Typed structs write creationTimestamp (null) and status ({}) whether
	// or not the input had them: keep exactly what the input had.
	var orig map[string]any
	if template {
		orig, _ = lookup(obj, path)
	} else {
		orig = obj
	}
	origMeta, _ := orig["metadata"].(map[string]any)
	if meta, ok := m["metadata"].(map[string]any); ok {
		delete(meta, "creationTimestamp")
		if ts, had := origMeta["creationTimestamp"]; had {
			meta["creationTimestamp"] = ts
		}
		if len(meta) == 0 {
			delete(m, "metadata")
		}
	}
	delete(m, "status")
	if st, had := orig["status"]; had && !template {
		m["status"] = st
	}
	pruneEmptyResources(m)
	if !template {
		for k := range obj {
			delete(obj, k)
		}
		for k, val := range m {
			obj[k] = val
		}
		return nil
	}
	parent := obj
	for _, k := range path[:len(path)-1] {
		parent = parent[k].(map[string]any)
	}
	parent[path[len(path)-1]] = m
	return nil
}

// pruneEmptyResources drops the "resources: {}" that typed Go structs always
// write for containers, which would otherwise show up as a change in every
// container of every manifest that passes through.
func pruneEmptyResources(m map[string]any) {
	spec, _ := m["spec"].(map[string]any)
	for _, list := range []string{"containers", "initContainers"} {
		cs, _ := spec[list].([]any)
		for _, c := range cs {
			if cm, ok := c.(map[string]any); ok {
				if r, ok := cm["resources"].(map[string]any); ok && len(r) == 0 {
					delete(cm, "resources")
				}
			}
		}
	}
}

// readDocuments splits YAML (---) or a JSON stream into documents.
func readDocuments(r io.Reader) ([]*document, error) {
	br := bufio.NewReader(r)
	first, err := peekNonSpace(br)
	if err != nil && err != io.EOF {
		return nil, err
	}
	var docs []*document
	if first == '{' || first == '[' {
		dec := json.NewDecoder(br)
		for i := 1; ; i++ {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err == io.EOF {
				break
			} else if err != nil {
				return nil, &Error{Document: i, Err: fmt.Errorf("not valid JSON: %w", err)}
			}
			d, err := parseDocument(i, raw, true)
			if err != nil {
				return nil, err
			}
			if d == nil {
				return nil, &Error{Document: i, Err: errors.New("not an object")}
			}
			docs = append(docs, d)
		}
		return docs, nil
	}
	yr := utilyaml.NewYAMLReader(br)
	for i := 1; ; {
		raw, err := yr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, &Error{Document: i, Err: err}
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue // an empty document between separators
		}
		d, err := parseDocument(i, raw, false)
		if err != nil {
			return nil, err
		}
		if d == nil {
			continue
		}
		docs = append(docs, d)
		i++
	}
	return docs, nil
}

func parseDocument(n int, raw []byte, isJSON bool) (*document, error) {
	var obj map[string]any
	js := raw
	var err error
	if !isJSON {
		js, err = yaml.YAMLToJSON(raw)
	}
	if err == nil {
		// Numbers stay as written (json.Number): a float64 would corrupt
		// integers beyond 2^53 in objects that pass through.
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.UseNumber()
		err = dec.Decode(&obj)
	}
	if err != nil {
		return nil, &Error{Document: n, Err: fmt.Errorf("not a YAML or JSON object: %w", err)}
	}
	if obj == nil {
		return nil, nil // an empty document ("---" alone, or null)
	}
	if kindOf(obj) == "" {
		return nil, &Error{Document: n, Field: "kind", Err: errors.New("every document needs a kind")}
	}
	return &document{raw: raw, isJSON: isJSON, obj: obj}, nil
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

func peekNonSpace(br *bufio.Reader) (byte, error) {
	for n := 1; ; n++ {
		b, err := br.Peek(n)
		if len(b) < n {
			return 0, err
		}
		c := b[n-1]
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c, nil
		}
	}
}

// render writes one document: unchanged YAML documents are passed through
// byte for byte.
func render(d *document, changed bool, f Format) ([]byte, error) {
	if !changed && f == YAML && !d.isJSON {
		return bytes.TrimRight(d.raw, "\n"), nil
	}
	if f == JSON {
		return json.MarshalIndent(d.obj, "", "  ")
	}
	b, err := yaml.Marshal(d.obj)
	return bytes.TrimRight(b, "\n"), err
}

func join(out [][]byte, f Format) ([]byte, error) {
	if f == JSON {
		if len(out) == 1 {
			return append(out[0], '\n'), nil
		}
		items := make([]json.RawMessage, len(out))
		for i, b := range out {
			items[i] = b
		}
		b, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "  ")
		return append(b, '\n'), err
	}
	var buf bytes.Buffer
	for i, b := range out {
		if i > 0 {
			buf.WriteString("\n---\n")
		}
		buf.Write(b)
	}
	if len(out) > 0 {
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

// Pods returns the pod, or workload pod template as a pod, of every object
// in the sources (for explain).
func Pods(sources []Source, defaultNamespace string) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	for _, src := range sources {
		docs, err := readDocuments(bytes.NewReader(src.Data))
		if err != nil {
			return nil, withSource(err, src.Name)
		}
		for i, d := range docs {
			for _, obj := range objectsOf(d.obj) {
				kind := kindOf(obj)
				path, isWorkload := templatePaths[kind]
				if kind != "Pod" && !isWorkload {
					continue
				}
				podObj := obj
				if isWorkload {
					var ok bool
					if podObj, ok = lookup(obj, path); !ok {
						return nil, &Error{Source: src.Name, Document: i + 1, Field: strings.Join(path, "."), Err: fmt.Errorf("a %s needs it", kind)}
					}
				}
				pod, err := toPod(podObj, isWorkload)
				if err != nil {
					return nil, &Error{Source: src.Name, Document: i + 1, Err: err}
				}
				if pod.Namespace == "" {
					meta, _ := obj["metadata"].(map[string]any)
					pod.Namespace, _ = meta["namespace"].(string)
				}
				if pod.Namespace == "" {
					pod.Namespace = defaultNamespace
				}
				out = append(out, pod)
			}
		}
	}
	return out, nil
}
