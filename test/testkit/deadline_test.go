package testkit

import (
	"strings"
	"testing"
	"time"
)

func TestDeadlineScales(t *testing.T) {
	for _, c := range []struct {
		env  string
		want time.Duration
	}{
		{"", time.Minute},
		{"1", time.Minute},
		{"3", 3 * time.Minute},
		{"0.5", 30 * time.Second},
	} {
		t.Setenv(DeadlineScaleEnv, c.env)
		if got := Deadline(time.Minute); got != c.want {
			t.Errorf("%s=%q: %s, want %s", DeadlineScaleEnv, c.env, got, c.want)
		}
	}
	for _, bad := range []string{"x", "0", "-2", "NaN", "1e9"} {
		t.Setenv(DeadlineScaleEnv, bad)
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), DeadlineScaleEnv) {
					t.Errorf("%q: recovered %v, want a panic naming the variable", bad, r)
				}
			}()
			Deadline(time.Minute)
		}()
	}
}
