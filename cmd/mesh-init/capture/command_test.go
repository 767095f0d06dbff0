package capture

import (
	"errors"
	"strings"
	"testing"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("boom"), ExitFailed},
		{&RestoreError{Err: &ExecError{Err: errors.New("exit status 1")}}, ExitFailed},
		{&meshinit.UsageError{Err: errors.New("x")}, ExitUsage},
		{&meshinit.FlagError{Flag: "x", Err: errors.New("x")}, ExitUsage},
		{errors.Join(&meshinit.FlagError{Flag: "x", Err: errors.New("x")}), ExitUsage},
		{&PrereqError{What: "x"}, ExitPrerequisite},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestPrintUsage(t *testing.T) {
	var b strings.Builder
	PrintUsage(&b)
	for _, want := range []string{"--exclude-outbound-cidrs=\"\"", "MESH_INIT_EXCLUDE_OUTBOUND_CIDRS", "--copy-self-to", "MESH_INIT_DRY_RUN", "Exit codes"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
}
