package envoy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// locate finds where in a JSON document protojson's decoding fails: an
// unknown field, an "@type" nobody registered, or a value of the wrong kind.
// protojson's own errors only give a byte offset into one long line, which
// says little about a rendered template. It runs only after protojson has
// failed; ok is false when it finds nothing more precise.
func locate(js []byte, md protoreflect.MessageDescriptor) (Problem, bool) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return Problem{}, false
	}
	return locateMessage(v, md, "")
}

func locateMessage(v any, md protoreflect.MessageDescriptor, path string) (Problem, bool) {
	if v == nil {
		return Problem{}, false
	}
	switch md.FullName() {
	case anyName:
		return locateAny(v, path)
	case "google.protobuf.Duration", "google.protobuf.Timestamp", "google.protobuf.FieldMask":
		if _, ok := v.(string); !ok {
			return Problem{Path: path, Message: fmt.Sprintf("%s must be a string such as \"1s\", not %s", md.Name(), describe(v))}, true
		}
		return Problem{}, false
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Empty":
		return Problem{}, false
	}
	if isWrapper(md) {
		return locateScalar(v, md.Fields().ByName("value"), path)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return Problem{Path: path, Message: fmt.Sprintf("must be an object (%s), not %s", md.FullName(), describe(v))}, true
	}
	for _, key := range sortedKeys(obj) {
		if p, ok := locateField(obj[key], md, key, path); ok {
			return p, true
		}
	}
	return Problem{}, false
}

func locateField(v any, md protoreflect.MessageDescriptor, key, path string) (Problem, bool) {
	p := join(path, key)
	fd := md.Fields().ByJSONName(key)
	if fd == nil {
		fd = md.Fields().ByTextName(key)
	}
	if fd == nil {
		return Problem{Path: p, Message: fmt.Sprintf("unknown field %q in %s", key, md.FullName())}, true
	}
	if v == nil {
		return Problem{}, false
	}
	switch {
	case fd.IsList():
		list, ok := v.([]any)
		if !ok {
			return Problem{Path: p, Message: "must be a list, not " + describe(v)}, true
		}
		for i, e := range list {
			if pr, ok := locateValue(e, fd, fmt.Sprintf("%s[%d]", p, i)); ok {
				return pr, true
			}
		}
	case fd.IsMap():
		obj, ok := v.(map[string]any)
		if !ok {
			return Problem{Path: p, Message: "must be a map, not " + describe(v)}, true
		}
		for _, k := range sortedKeys(obj) {
			if pr, ok := locateValue(obj[k], fd.MapValue(), fmt.Sprintf("%s[%q]", p, k)); ok {
				return pr, true
			}
		}
	default:
		return locateValue(v, fd, p)
	}
	return Problem{}, false
}

func locateValue(v any, fd protoreflect.FieldDescriptor, path string) (Problem, bool) {
	if isMessage(fd) {
		return locateMessage(v, fd.Message(), path)
	}
	return locateScalar(v, fd, path)
}

func locateAny(v any, path string) (Problem, bool) {
	obj, ok := v.(map[string]any)
	if !ok {
		return Problem{Path: path, Message: "must be an object with \"@type\", not " + describe(v)}, true
	}
	url, _ := obj["@type"].(string)
	if url == "" {
		return Problem{Path: path, Message: "\"@type\" is missing"}, true
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	if err != nil {
		return Problem{Path: path, Message: fmt.Sprintf("unknown type %q: not an Envoy type this validator knows (see webhook/envoy/types.go)", url)}, true
	}
	md := mt.Descriptor()
	p := anyPath(path, md.FullName())
	if md.FullName().Parent() == "google.protobuf" {
		// Well-known types with a special JSON form carry it in "value".
		return locateMessage(obj["value"], md, join(p, "value"))
	}
	for _, key := range sortedKeys(obj) {
		if key == "@type" {
			continue
		}
		if pr, ok := locateField(obj[key], md, key, p); ok {
			return pr, true
		}
	}
	return Problem{}, false
}

func locateScalar(v any, fd protoreflect.FieldDescriptor, path string) (Problem, bool) {
	bad := func(want string) (Problem, bool) {
		return Problem{Path: path, Message: fmt.Sprintf("must be %s, not %s", want, describe(v))}, true
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			return bad("true or false")
		}
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			return bad("a string")
		}
	case protoreflect.BytesKind:
		if _, ok := v.(string); !ok {
			return bad("a base64 string")
		}
	case protoreflect.EnumKind:
		switch e := v.(type) {
		case string:
			if fd.Enum().Values().ByName(protoreflect.Name(e)) == nil {
				return Problem{Path: path, Message: fmt.Sprintf("%q is not a value of %s", e, fd.Enum().FullName())}, true
			}
		case json.Number:
		default:
			return bad("an enum name")
		}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		switch v.(type) {
		case json.Number, string:
		default:
			return bad("a number")
		}
	default: // integers
		var n json.Number
		switch x := v.(type) {
		case json.Number:
			n = x
		case string:
			n = json.Number(x)
		default:
			return bad("an integer")
		}
		if msg := checkInt(n, fd.Kind()); msg != "" {
			return Problem{Path: path, Message: msg}, true
		}
	}
	return Problem{}, false
}

// checkInt reports an integer out of its kind's range.
func checkInt(n json.Number, k protoreflect.Kind) string {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f != math.Trunc(f) {
		return fmt.Sprintf("%s is not an integer", n)
	}
	lo, hi := float64(math.MinInt64), float64(math.MaxInt64)
	switch k {
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		lo, hi = 0, math.MaxUint32
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		lo, hi = 0, math.MaxUint64
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		lo, hi = math.MinInt32, math.MaxInt32
	}
	if f < lo || f > hi {
		return fmt.Sprintf("%s is out of range for %s", n, k)
	}
	return ""
}

func isWrapper(md protoreflect.MessageDescriptor) bool {
	switch md.FullName() {
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		return true
	}
	return false
}

func describe(v any) string {
	switch x := v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return strconv.Quote(x)
	case json.Number:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprintf("%v", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
