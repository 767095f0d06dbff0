package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
)

// Problems with a policy file or with settings are a field.ErrorList: each
// at its field path, from the decoder for what does not decode and from
// validation for what is not allowed, with a detail for people.

// problem is a field.Error whose detail says it all.
func problem(t field.ErrorType, path *field.Path, value any, detail string) *field.Error {
	return &field.Error{Type: t, Field: path.String(), BadValue: value, Detail: detail}
}

// sortProblems orders problems by their line, so a policy author sees them
// in a stable order.
func sortProblems(list field.ErrorList) field.ErrorList {
	sort.SliceStable(list, func(i, j int) bool { return line(list[i]) < line(list[j]) })
	return list
}

// line renders one problem as "path: detail".
func line(e *field.Error) string {
	if e.Field == "" {
		return e.Detail
	}
	return e.Field + ": " + e.Detail
}

// FileError is a policy file that does not compile. It lists every
// problem, in the order of the file: the defaults, each policy, the
// template sets.
type FileError struct {
	Problems field.ErrorList
	// names are the policies' names by index, for messages.
	names []string
}

// Unwrap returns each problem, a *field.Error.
func (e *FileError) Unwrap() []error {
	out := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p
	}
	return out
}

// Error renders a line per problem: where it is (the defaults, or a policy
// by index and name), then the field and what is wrong there. Fields that
// did not decode are named after the section they are in ("settings:
// envoy.outbound.connectTimeout: ..."), fields that decode to a value that
// is not allowed by their path ("settings.envoy.outbound...: ..."), and
// unknown fields of one section share a line.
func (e *FileError) Error() string {
	var lines []string
	var group string // the prefix of the last line of unknown fields
	for _, p := range e.Problems {
		where, rest := e.splitWhere(p.Field)
		prefix, text := "", ""
		if where != "" {
			prefix = where + ": "
		}
		section, sub, inSection := strings.Cut(rest, ".")
		decoded := section == "settings" || section == "podOverrides"
		if !inSection {
			sub = ""
		}
		switch {
		case decoded && (p.Type == field.ErrorTypeForbidden || p.Type == field.ErrorTypeDuplicate) && (p.Detail == unknownField || p.Detail == duplicateField):
			text = p.Detail + " " + strconv.Quote(sub)
			if g := prefix + section + ": "; g == group {
				lines[len(lines)-1] += "; " + text
				continue
			}
			group = prefix + section + ": "
			lines = append(lines, group+text)
			continue
		case decoded && p.Type == field.ErrorTypeTypeInvalid:
			text = section + ": "
			if sub != "" {
				text += sub + ": "
			}
			text += p.Detail
		case (p.Type == field.ErrorTypeForbidden || p.Type == field.ErrorTypeDuplicate) && (p.Detail == unknownField || p.Detail == duplicateField):
			text = p.Detail + " " + strconv.Quote(rest)
		case rest == "":
			text = p.Detail
		default:
			text = rest + ": " + p.Detail
		}
		group = ""
		lines = append(lines, prefix+text)
	}
	return strings.Join(lines, "\n")
}

var policyIndex = regexp.MustCompile(`^policies\[(\d+)\]`)

// splitWhere splits a field path into the layer it is in ("defaults", or
// a policy by index and name) and the path within that layer.
func (e *FileError) splitWhere(path string) (string, string) {
	if rest, ok := strings.CutPrefix(path, "defaults"); ok && (rest == "" || rest[0] == '.') {
		return "defaults", strings.TrimPrefix(rest, ".")
	}
	if m := policyIndex.FindStringSubmatch(path); m != nil {
		where := m[0]
		if i, _ := strconv.Atoi(m[1]); i < len(e.names) && e.names[i] != "" {
			where += " (" + e.names[i] + ")"
		}
		return where, strings.TrimPrefix(path[len(m[0]):], ".")
	}
	return "", path
}

// The details of the decoder's strict errors.
const (
	unknownField   = "unknown field"
	duplicateField = "duplicate field"
)

// decodeSection decodes a generic map (a section of a layer, such as its
// settings) into out strictly, the way the API server decodes objects
// (sigs.k8s.io/json): field names match exactly, so "LogLevel" or
// "maxProxyCpu" is an unknown field rather than silently taken for
// logLevel or maxProxyCPU; unknown and duplicate fields are errors. Every
// problem is at the path the decoder reports, under path.
func decodeSection(m map[string]any, out any, path *field.Path) field.ErrorList {
	if m == nil {
		return nil
	}
	// Every problem at its own path first; the decoder would stop at
	// the first.
	if errs := checkValue(m, reflect.TypeOf(out).Elem(), path); len(errs) > 0 {
		return errs
	}
	data, err := json.Marshal(m)
	if err != nil {
		return field.ErrorList{field.InternalError(path, err)}
	}
	strict, err := sigsjson.UnmarshalStrict(data, out, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return field.ErrorList{decodeProblem(err, data, reflect.TypeOf(out).Elem(), path)}
	}
	var errs field.ErrorList
	for _, s := range strict {
		var fe sigsjson.FieldError
		if !errors.As(s, &fe) {
			errs = append(errs, problem(field.ErrorTypeTypeInvalid, path, nil, strings.TrimPrefix(s.Error(), "json: ")))
			continue
		}
		detail, t := unknownField, field.ErrorTypeForbidden
		if strings.HasPrefix(s.Error(), duplicateField) {
			detail, t = duplicateField, field.ErrorTypeDuplicate
		}
		errs = append(errs, problem(t, childPath(path, fe.FieldPath()), nil, detail))
	}
	return errs
}

// decodeProblem places a decoding failure. A value of the wrong JSON type
// carries its path; a value its own decoder refuses (a duration, a
// quantity, a port list) does not in encoding/json's errors, so the value
// is decoded once more with github.com/go-json-experiment/json, whose
// errors carry the JSON pointer of the value that failed.
func decodeProblem(err error, data []byte, t reflect.Type, path *field.Path) *field.Error {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return problem(field.ErrorTypeTypeInvalid, childPath(path, ute.Field), ute.Value,
			fmt.Sprintf("expected %s, got a JSON %s", ute.Type.String(), ute.Value))
	}
	var se *jsonv2.SemanticError
	if errors.As(jsonv2.Unmarshal(data, reflect.New(t).Interface()), &se) && se.JSONPointer != "" && se.Err != nil {
		return problem(field.ErrorTypeTypeInvalid, childPath(path, pointerPath(string(se.JSONPointer))), nil, se.Err.Error())
	}
	return problem(field.ErrorTypeTypeInvalid, path, nil, strings.TrimPrefix(err.Error(), "json: "))
}

// pointerPath turns a JSON pointer (/envoy/outbound/connectTimeout) into
// the dotted form the decoder's other errors use.
func pointerPath(p string) string {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return strings.Join(parts, ".")
}

// childPath extends path by a dotted path from the decoder.
func childPath(path *field.Path, dotted string) *field.Path {
	if dotted == "" {
		return path
	}
	parts := strings.Split(dotted, ".")
	return path.Child(parts[0], parts[1:]...)
}
