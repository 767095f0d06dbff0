package podcases

import (
	"encoding/json"
	"strings"
)

// Project returns an object as JSON cut down to fields, JSON paths in the
// form of inject.PodFields ("[]" for every element of a list; a path that
// ends at an object keeps all of it). Tests hold the core and the
// webhook's view of a pod to the declared read set with it. Members that
// are there stay as they are (null, {} and [] included), so a decoder sees
// the cut object exactly as it saw the whole.
func Project(object []byte, fields []string) ([]byte, error) {
	var doc any
	if err := json.Unmarshal(object, &doc); err != nil {
		return nil, err
	}
	tree := fieldTree{}
	for _, f := range fields {
		tree.add(splitPath(f))
	}
	return json.Marshal(tree.keep(doc))
}

// fieldTree is a set of paths; a nil subtree means "all of it".
type fieldTree map[string]fieldTree

func splitPath(p string) []string {
	var out []string
	for _, part := range strings.Split(p, ".") {
		if name, ok := strings.CutSuffix(part, "[]"); ok {
			out = append(out, name, "[]")
		} else {
			out = append(out, part)
		}
	}
	return out
}

func (t fieldTree) add(path []string) {
	sub, ok := t[path[0]]
	if len(path) == 1 {
		t[path[0]] = nil
		return
	}
	if ok && sub == nil {
		return // already whole
	}
	if sub == nil {
		sub = fieldTree{}
		t[path[0]] = sub
	}
	sub.add(path[1:])
}

func (t fieldTree) keep(v any) any {
	if t == nil {
		return v
	}
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, sub := range t {
			if val, ok := x[k]; ok {
				out[k] = sub.keep(val)
			}
		}
		return out
	case []any:
		elem, ok := t["[]"]
		if !ok {
			return v
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = elem.keep(e)
		}
		return out
	}
	return v
}
