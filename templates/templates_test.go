package templates

import (
	"strings"
	"testing"
)

func TestBuiltinSetParses(t *testing.T) {
	s, err := Parse("builtin", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range Names {
		if _, ok := s.tmpl[n]; !ok {
			t.Errorf("the built-in set lacks %s", n)
		}
	}
	// missingkey=error: a field the data lacks is an error, not "<no value>".
	if _, err := s.Render(Volumes, map[string]any{}); err == nil {
		t.Error("rendering without data must fail")
	}
}

func TestParseRejectsUnknownAndBrokenTemplates(t *testing.T) {
	if _, err := Parse("x", map[string]string{"sidecars.yaml": "a"}); err == nil || !strings.Contains(err.Error(), "unknown template(s) sidecars.yaml") {
		t.Errorf("unknown template name: %v", err)
	}
	if _, err := Parse("x", map[string]string{Sidecar: "{{ .Oops "}); err == nil || !strings.Contains(err.Error(), `template set "x"`) {
		t.Errorf("broken template: %v", err)
	}
}

func TestProtoDuration(t *testing.T) {
	for in, want := range map[string]string{"2s": "2s", "250ms": "0.25s", "1m30s": "90s"} {
		got, err := protoDuration(in)
		if err != nil || got != want {
			t.Errorf("protoDuration(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := protoDuration("soon"); err == nil {
		t.Error("an invalid duration must fail")
	}
}
