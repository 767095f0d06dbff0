package policy

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// A JSON decoder stops at the first value it cannot decode, and reports
// unknown fields only when everything else decoded; a policy author who
// gets one problem per run fixes a file in as many runs as it has
// mistakes. checkValue instead walks a decoded JSON document against the
// Go type it is meant for and reports every problem at its own path:
// unknown fields, values of the wrong JSON type, and values their own
// decoder refuses (a duration, a quantity, a port list), each decoded on
// its own by encoding/json, so the message is the decoder's. Only a
// document it passes is then decoded for real (strictly, as the API
// server decodes objects).

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// decodeGeneric reads JSON into generic values, numbers as json.Number so
// that every integer survives as written.
func decodeGeneric(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// checkValue reports every problem of v (a generic JSON value) as a t,
// under path. A null is always fine: it leaves the value below.
func checkValue(v any, t reflect.Type, path *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	if t.Kind() == reflect.Pointer {
		return checkValue(v, t.Elem(), path)
	}
	// A type with its own decoder is a leaf: its decoder says what is
	// wrong with it.
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return checkLeaf(v, t, path)
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return checkLeaf(v, t, path)
		}
		fields := jsonFields(t)
		var errs field.ErrorList
		for _, k := range sortedKeys(m) {
			f, known := fields[k]
			if !known {
				errs = append(errs, problem(field.ErrorTypeForbidden, path.Child(k), nil, unknownField))
				continue
			}
			errs = append(errs, checkValue(m[k], f.Type, path.Child(k))...)
		}
		return errs
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok || t.Key().Kind() != reflect.String {
			return checkLeaf(v, t, path)
		}
		var errs field.ErrorList
		for _, k := range sortedKeys(m) {
			errs = append(errs, checkValue(m[k], t.Elem(), path.Key(k))...)
		}
		return errs
	case reflect.Slice, reflect.Array:
		l, ok := v.([]any)
		if !ok {
			return checkLeaf(v, t, path)
		}
		var errs field.ErrorList
		for i, item := range l {
			errs = append(errs, checkValue(item, t.Elem(), path.Index(i))...)
		}
		return errs
	case reflect.Interface:
		return nil
	}
	return checkLeaf(v, t, path)
}

// checkLeaf decodes one value on its own.
func checkLeaf(v any, t reflect.Type, path *field.Path) field.ErrorList {
	b, err := json.Marshal(v)
	if err != nil {
		return field.ErrorList{field.InternalError(path, err)}
	}
	err = json.Unmarshal(b, reflect.New(t).Interface())
	if err == nil {
		return nil
	}
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return field.ErrorList{problem(field.ErrorTypeTypeInvalid, path, ute.Value, fmt.Sprintf("expected %s, got a JSON %s", typeName(t), ute.Value))}
	}
	return field.ErrorList{problem(field.ErrorTypeTypeInvalid, path, v, strings.TrimPrefix(err.Error(), "json: "))}
}

// typeName says what a value should be, in the words of the file rather
// than of Go where they differ.
func typeName(t reflect.Type) string {
	switch {
	case t.Kind() == reflect.Struct || t.Kind() == reflect.Map:
		return "an object"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return "a list of strings"
	case t.Kind() == reflect.Slice:
		return "a list"
	}
	return t.String()
}

// jsonFields maps a struct's JSON names (exact, as the API server
// matches them) to its fields; embedded structs without a name are
// flattened, as encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					out[k] = v
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
