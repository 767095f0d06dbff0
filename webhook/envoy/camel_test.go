package envoy

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// goCamelCase must agree with the Go names protoc-gen-go gave every field
// (and so with the names in protoc-gen-validate's errors), or a path would
// come out with a Go name in it. Checked against every registered Envoy type.
func TestGoCamelCaseMatchesGeneratedNames(t *testing.T) {
	checked := 0
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if !strings.HasPrefix(string(mt.Descriptor().FullName()), "envoy.") {
			return true
		}
		rt := reflect.TypeOf(mt.Zero().Interface())
		if rt.Kind() != reflect.Pointer || rt.Elem().Kind() != reflect.Struct {
			return true
		}
		rt = rt.Elem()
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			var name string
			if tag, ok := f.Tag.Lookup("protobuf"); ok {
				for _, part := range strings.Split(tag, ",") {
					if n, ok := strings.CutPrefix(part, "name="); ok {
						name = n
					}
				}
			} else if tag, ok := f.Tag.Lookup("protobuf_oneof"); ok {
				name = tag
			} else {
				continue
			}
			if got := goCamelCase(name); got != f.Name {
				t.Errorf("%s.%s: goCamelCase gives %q, protoc-gen-go %q", mt.Descriptor().FullName(), name, got, f.Name)
			}
			checked++
		}
		return true
	})
	t.Logf("%d fields checked", checked)
	if checked < 1000 {
		t.Fatalf("only %d fields checked", checked)
	}
}
