package e2e

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sidecar-injector/injector/test/e2e/harness"
	"github.com/sidecar-injector/injector/test/testkit"
)

// startServe runs the built `injector serve` with args and stops it when
// the test ends, printing its output if the test failed (or $E2E_LOGS is
// set).
func startServe(t *testing.T, name string, args ...string) *harness.Process {
	t.Helper()
	bin, err := harness.BuildInjector(testkit.RaceEnabled)
	if err != nil {
		t.Fatal(err)
	}
	p, err := harness.StartServe(bin, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if strings.Contains(p.Out.String(), "WARNING: DATA RACE") {
			t.Errorf("%s: the race detector reported a data race", p.Name)
		}
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			t.Logf("%s output (last 12 KiB):\n%s", p.Name, p.Out.Tail(12<<10))
		}
	})
	return p
}

func waitReady(t *testing.T, p *harness.Process) {
	t.Helper()
	if err := p.WaitReady(harness.Deadline); err != nil {
		t.Fatal(err)
	}
}

// TestServeTLSFlags: misused TLS flags stop `injector serve` before it
// starts, with exit code 2 and a message naming the flag.
func TestServeTLSFlags(t *testing.T) {
	bin, err := harness.BuildInjector(testkit.RaceEnabled)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-mode=vault"}, `--tls-mode "vault": use files, self-managed or cert-manager`},
		{[]string{"--tls-mode=self-managed", "--namespace=x"}, "--tls-mode=self-managed needs --tls-secret and --service"},
		{[]string{"--tls-mode=cert-manager", "--namespace=x"}, "--tls-mode=cert-manager needs --certificate"},
		{[]string{"--tls-mode=self-managed", "--tls-secret=s", "--service=s"}, "needs --namespace (or $POD_NAMESPACE)"},
		{[]string{"--tls-mode=cert-manager", "--certificate=c", "--namespace=x", "--namespace-labels=a=b=c"}, "cannot be combined with --namespace-labels"},
	} {
		cmd := exec.Command(bin, append([]string{"serve"}, tc.args...)...)
		cmd.Env = append(os.Environ(), "POD_NAMESPACE=")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: exit %v, want 2\n%s", tc.args, err, out)
			continue
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: output %q does not say %q", tc.args, out, tc.want)
		}
	}
}
