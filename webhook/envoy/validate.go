package envoy

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// Problem is one reason Envoy would refuse a bootstrap.
type Problem struct {
	// Path locates the offending field with proto field names, such as
	// static_resources.clusters[0].outlier_detection.max_ejection_percent.
	// Inside a typed_config it continues after the packed type:
	// ...typed_config (envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy): stat_prefix.
	// It is empty when the document as a whole is wrong.
	Path string
	// Message says what is wrong there.
	Message string
}

// String renders "path: message".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Error is a bootstrap that does not satisfy Envoy's schema. It lists every
// problem found, in a stable order.
type Error struct {
	Problems []Problem
}

// Error joins the problems with "; ".
func (e *Error) Error() string {
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = p.String()
	}
	return strings.Join(s, "; ")
}

// ValidateCompact checks a bootstrap written in YAML (or JSON) the way
// Envoy would, and returns it as compact JSON: the form passed to
// mesh-init's --envoy-bootstrap (compressed) and, from there, Envoy's
// --config-path. Every field must exist (no unknown fields), every "@type"
// must name a known type, every value must satisfy the field's validation
// rules, including the payloads of typed_config and other
// google.protobuf.Any fields, which the generated ValidateAll does not look
// into. A failure is an *Error. The output is deterministic (object keys
// sorted) and is exactly the document checked.
func ValidateCompact(bootstrapYAML []byte) (string, error) {
	js, err := toJSON(bootstrapYAML)
	if err != nil {
		return "", err
	}
	if _, err := parseJSON(js); err != nil {
		return "", err
	}
	return string(js), nil
}

// parse validates a bootstrap like ValidateCompact and returns it decoded.
func parse(bootstrapYAML []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := toJSON(bootstrapYAML)
	if err != nil {
		return nil, err
	}
	return parseJSON(js)
}

// toJSON converts YAML to compact JSON. Strict: a key given twice is an
// error rather than a silently dropped setting.
func toJSON(y []byte) ([]byte, error) {
	js, err := yaml.YAMLToJSONStrict(y)
	if err != nil {
		msg := strings.Join(strings.Fields(err.Error()), " ")
		return nil, &Error{Problems: []Problem{{Message: "not valid YAML: " + msg}}}
	}
	if s := strings.TrimSpace(string(js)); s == "null" || s == "" {
		return nil, &Error{Problems: []Problem{{Message: "the bootstrap is empty"}}}
	}
	return js, nil
}

var unmarshal = protojson.UnmarshalOptions{DiscardUnknown: false, Resolver: protoregistry.GlobalTypes}

func parseJSON(js []byte) (*bootstrapv3.Bootstrap, error) {
	b := &bootstrapv3.Bootstrap{}
	if err := unmarshal.Unmarshal(js, b); err != nil {
		// protojson names neither the field nor its path; find them.
		if p, ok := locate(js, b.ProtoReflect().Descriptor()); ok {
			return nil, &Error{Problems: []Problem{p}}
		}
		return nil, &Error{Problems: []Problem{{Message: err.Error()}}}
	}
	v := &checker{}
	v.validate(b, "")
	v.walk(b.ProtoReflect(), "")
	if len(v.problems) == 0 {
		// What Envoy checks only when it builds listeners, clusters and
		// routes; on a document that satisfies the schema, so each
		// problem is reported once.
		v.semantic(b)
	}
	if len(v.problems) > 0 {
		return nil, &Error{Problems: v.problems}
	}
	return b, nil
}

// Capture is what a pod's capture rules expect of its proxy's bootstrap:
// a listener on each port iptables redirects to, accepting every family
// that is redirected there.
type Capture struct {
	// Ports are the redirect targets (the outbound and inbound ports).
	Ports []uint32
	// IPv6 is true when ip6tables rules may redirect IPv6 connections
	// too (init.ipv6 auto or required); IPv4 is always redirected.
	IPv6 bool
}

// ValidateSidecar is ValidateCompact plus the checks that need to know
// what the capture rules redirect: Envoy cannot know that a listener
// bound to 0.0.0.0 will be sent IPv6 connections, which it then refuses.
func ValidateSidecar(bootstrapYAML []byte, capture Capture) (string, error) {
	js, err := toJSON(bootstrapYAML)
	if err != nil {
		return "", err
	}
	b, err := parseJSON(js)
	if err != nil {
		return "", err
	}
	v := &checker{}
	v.capture(b, capture)
	if len(v.problems) > 0 {
		return "", &Error{Problems: v.problems}
	}
	return string(js), nil
}

// checker collects problems while walking a decoded bootstrap.
type checker struct {
	problems []Problem
}

func (c *checker) add(path, msg string) {
	c.problems = append(c.problems, Problem{Path: path, Message: msg})
}

// validate runs the generated rules of m (which reach every embedded message
// but no Any payload) and records each failure under its proto path.
func (c *checker) validate(m proto.Message, path string) {
	v, ok := m.(interface{ ValidateAll() error })
	if !ok {
		return
	}
	if err := v.ValidateAll(); err != nil {
		c.translate(err, m.ProtoReflect().Descriptor(), path)
	}
}

// The error types protoc-gen-validate generates for each message.
type fieldError interface {
	Field() string
	Reason() string
	Cause() error
	Key() bool
}

type multiError interface {
	AllErrors() []error
}

const embeddedFailed = "embedded message failed validation"

// translate turns a protoc-gen-validate error tree, which names fields by
// their Go names ("OutlierDetection", "Clusters[0]"), into proto paths.
func (c *checker) translate(err error, md protoreflect.MessageDescriptor, path string) {
	if me, ok := err.(multiError); ok {
		for _, e := range me.AllErrors() {
			c.translate(e, md, path)
		}
		return
	}
	fe, ok := err.(fieldError)
	if !ok {
		c.add(path, err.Error())
		return
	}
	goName, index, _ := strings.Cut(fe.Field(), "[")
	if index != "" {
		index = "[" + index
	}
	name, fd := protoName(md, goName)
	p := join(path, name) + index
	if fe.Key() {
		p += " (map key)"
	}
	if fe.Reason() == embeddedFailed && fe.Cause() != nil && fd != nil {
		child := fd.Message()
		if fd.IsMap() {
			child = fd.MapValue().Message()
		}
		if child != nil {
			c.translate(fe.Cause(), child, p)
			return
		}
	}
	msg := fe.Reason()
	if fe.Cause() != nil {
		msg += ": " + fe.Cause().Error()
	}
	c.add(p, msg)
}

// protoName finds the field (or oneof) of md whose generated Go name is
// goName and returns its proto name.
func protoName(md protoreflect.MessageDescriptor, goName string) (string, protoreflect.FieldDescriptor) {
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); goCamelCase(string(fd.Name())) == goName {
			return string(fd.Name()), fd
		}
	}
	oneofs := md.Oneofs()
	for i := 0; i < oneofs.Len(); i++ {
		if od := oneofs.Get(i); goCamelCase(string(od.Name())) == goName {
			return string(od.Name()), nil
		}
	}
	return goName, nil
}

const anyName protoreflect.FullName = "google.protobuf.Any"

// walk visits every set message field of m in field order, looking for Any
// values: each is unpacked, validated under its own rules, and walked in
// turn, since a typed_config can hold further typed_configs (an HTTP
// connection manager holds its HTTP filters').
func (c *checker) walk(m protoreflect.Message, path string) {
	if m.Descriptor().FullName() == anyName {
		c.unpack(m, path)
		return
	}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		p := join(path, string(fd.Name()))
		switch {
		case fd.IsList():
			if !isMessage(fd) {
				continue
			}
			l := m.Get(fd).List()
			for j := 0; j < l.Len(); j++ {
				c.walk(l.Get(j).Message(), fmt.Sprintf("%s[%d]", p, j))
			}
		case fd.IsMap():
			if !isMessage(fd.MapValue()) {
				continue
			}
			mp := m.Get(fd).Map()
			keys := make([]protoreflect.MapKey, 0, mp.Len())
			mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			sort.Slice(keys, func(a, b int) bool { return keys[a].String() < keys[b].String() })
			for _, k := range keys {
				c.walk(mp.Get(k).Message(), fmt.Sprintf("%s[%q]", p, k.String()))
			}
		case isMessage(fd):
			c.walk(m.Get(fd).Message(), p)
		}
	}
}

func isMessage(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
}

func (c *checker) unpack(m protoreflect.Message, path string) {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		return
	}
	inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
	if err != nil {
		if errors.Is(err, protoregistry.NotFound) {
			c.add(path, fmt.Sprintf("unknown type %q: not an Envoy type this validator knows (see webhook/envoy/types.go)", a.GetTypeUrl()))
		} else {
			c.add(path, fmt.Sprintf("cannot decode %q: %v", a.GetTypeUrl(), err))
		}
		return
	}
	p := anyPath(path, inner.ProtoReflect().Descriptor().FullName())
	c.validate(inner, p)
	c.walk(inner.ProtoReflect(), p)
}

// anyPath is where the fields of an Any's payload start:
// "static_resources...typed_config (full.type.Name): ".
func anyPath(path string, t protoreflect.FullName) string {
	return fmt.Sprintf("%s (%s): ", path, t)
}

// join appends a field name to a path.
func join(path, name string) string {
	if path == "" || strings.HasSuffix(path, ": ") {
		return path + name
	}
	return path + "." + name
}

// goCamelCase is the Go name protoc-gen-go (and so protoc-gen-validate's
// error messages) gives a proto field: consecutive_5xx -> Consecutive_5Xx.
// It mirrors google.golang.org/protobuf/internal/strs.GoCamelCase.
func goCamelCase(s string) string {
	isLower := func(c byte) bool { return 'a' <= c && c <= 'z' }
	isDigit := func(c byte) bool { return '0' <= c && c <= '9' }
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' && i+1 < len(s) && isLower(s[i+1]):
		case c == '.':
			b = append(b, '_')
		case c == '_' && (i == 0 || s[i-1] == '.'):
			b = append(b, 'X')
		case c == '_' && i+1 < len(s) && isLower(s[i+1]):
		case isDigit(c):
			b = append(b, c)
		default:
			if isLower(c) {
				c -= 'a' - 'A'
			}
			b = append(b, c)
			for ; i+1 < len(s) && isLower(s[i+1]); i++ {
				b = append(b, s[i+1])
			}
		}
	}
	return string(b)
}
