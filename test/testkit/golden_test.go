package testkit

import (
	"strings"
	"testing"
)

func TestDiffPointsAtTheFirstDifference(t *testing.T) {
	d := diff("a\nb\nc\nd\n", "a\nb\nX\nd\n")
	for _, want := range []string{"first difference at line 3", ">    3 | c", ">    3 | X", "     2 | b"} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
}
