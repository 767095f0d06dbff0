package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "Usage: mesh-init") {
		t.Errorf("no command: exit %d, %q", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, %q", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "mesh-init ") {
		t.Errorf("version: exit %d, %q", code, out.String())
	}
	// A dry run needs no privilege and prints both families' restore input.
	out.Reset()
	errb.Reset()
	if code := run([]string{"capture", "--dry-run", "--exclude-outbound-cidrs=10.0.0.0/8,fd00::/8"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "10.0.0.0/8") || !strings.Contains(out.String(), "fd00::/8") {
		t.Errorf("dry run: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	errb.Reset()
	if code := run([]string{"capture", "--exclude-outbound-ports=80,abc"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "abc") {
		t.Errorf("invalid port: exit %d, %q", code, errb.String())
	}
}
