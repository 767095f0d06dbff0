package main

import (
	"bytes"
	"strings"
	"testing"
)

// The command's exit status is busy's, and the summary names the burners
// and the load average.
func TestRunPassesOnTheExitStatus(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"-n", "1", "--", "true"}, 0},
		{[]string{"-n", "2", "--", "sh", "-c", "exit 3"}, 3},
		{[]string{"-n", "1", "--", "/nonexistent/command"}, 1},
		{[]string{"-n", "0", "--", "true"}, 2},
		{[]string{"-bogus"}, 2},
	} {
		var log bytes.Buffer
		if got := run(c.args, &log); got != c.code {
			t.Errorf("%q: exit %d, want %d\n%s", c.args, got, c.code, log.String())
		}
		if c.code != 2 && !strings.Contains(log.String(), "load average") {
			t.Errorf("%q: no load average in\n%s", c.args, log.String())
		}
	}
}

// Without a command it burns for -for and stops.
func TestRunBurnsFor(t *testing.T) {
	var log bytes.Buffer
	if got := run([]string{"-n", "1", "-for", "1ms"}, &log); got != 0 {
		t.Fatalf("exit %d\n%s", got, log.String())
	}
	if !strings.Contains(log.String(), "busy: burned ") {
		t.Errorf("summary:\n%s", log.String())
	}
}
