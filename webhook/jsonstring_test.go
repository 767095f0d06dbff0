package webhook

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// appendJSONString must produce JSON that decodes to the same string as
// encoding/json's encoding (invalid UTF-8 becoming U+FFFD in both).
func checkJSONString(t *testing.T, s string) {
	t.Helper()
	out := appendJSONString(nil, s)
	if !json.Valid(out) {
		t.Fatalf("%q encodes to invalid JSON %s", s, out)
	}
	var got, want string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	ref, _ := json.Marshal(s)
	_ = json.Unmarshal(ref, &want)
	if got != want {
		t.Fatalf("%q: decodes to %q, encoding/json's to %q", s, got, want)
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `{"version":1,"apps":[{"name":"a"}]}`, "tab\tnew\nline\r", "\x00\x1f\x7f",
		`back\slash "quote"`, "ünïcödé ☃ 𝄞", "\u2028\u2029", "bad \xff\xfe utf8", string([]byte{0xe2, 0x82}), "<&>"} {
		checkJSONString(t, s)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("status", 0)
	f.Add("\xff\u2028\"\\", 0)
	f.Fuzz(func(t *testing.T, s string, _ int) {
		checkJSONString(t, s)
		if utf8.ValidString(s) {
			var got string
			_ = json.Unmarshal(appendJSONString(nil, s), &got)
			if got != s {
				t.Fatalf("valid UTF-8 %q came back as %q", s, got)
			}
		}
	})
}
