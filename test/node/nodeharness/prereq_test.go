package nodeharness

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sidecar-injector/injector/test/e2e/harness"
)

// helperEnv marks the test binary's re-run of itself as the test below.
const helperEnv = "NODEHARNESS_REQUIRE_HELPER"

// TestRequireHelper is what TestMissingPrerequisiteSkipsOrFailsLoudly runs
// in a child process; on its own it does nothing.
func TestRequireHelper(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("run by TestMissingPrerequisiteSkipsOrFailsLoudly")
	}
	Require(t)
	t.Log("nothing missing")
}

// A node tier whose kubelet is missing skips with a one-line reason that
// names it and how to get it, or, with CI set, fails loudly instead of
// skipping (make test in CI never passes without the node tier running).
func TestMissingPrerequisiteSkipsOrFailsLoudly(t *testing.T) {
	assets := filepath.Join(t.TempDir(), "no-kubelet-here")
	for _, ci := range []bool{false, true} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRequireHelper$", "-test.v")
		env := []string{helperEnv + "=1", "SIDECAR_INJECTOR_NODE_ASSETS=" + assets}
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, "CI=") && !strings.HasPrefix(e, "SIDECAR_INJECTOR_NODE_ASSETS=") {
				env = append(env, e)
			}
		}
		if ci {
			env = append(env, "CI=true")
		}
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		want := "--- SKIP"
		if ci {
			want = "--- FAIL"
			if err == nil {
				t.Errorf("CI=true: the run passed with the kubelet missing:\n%s", out)
			}
		} else if err != nil {
			t.Errorf("without CI: the run failed instead of skipping: %v\n%s", err, out)
		}
		for _, w := range []string{want, "kubelet " + harness.KubeVersion + " in " + assets, "test/tools/install.sh"} {
			if !strings.Contains(string(out), w) {
				t.Errorf("CI=%t: the output does not say %q:\n%s", ci, w, out)
			}
		}
	}
}

// A node prerequisite that cannot be installed stops install.sh at once
// with a message naming it: here the Go toolchain the kubelet is built
// with, on a machine whose cache holds no kubelet (an empty cache folder)
// and whose PATH has no go.
func TestInstallFailsNamingWhatIsMissing(t *testing.T) {
	for _, c := range []string{"containerd", "ctr", "runc", "bash"} {
		if _, err := exec.LookPath(c); err != nil {
			// install.sh would install the apt packages first (as root).
			t.Skipf("%s is not installed; this test only runs where install.sh has nothing to install from apt", c)
		}
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(CNIBinDir, p)); err != nil {
			t.Skipf("CNI plugin %s is not installed; this test only runs where install.sh has nothing to install from apt", p)
		}
	}
	var path []string
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if _, err := os.Stat(filepath.Join(d, "go")); err == nil {
			continue
		}
		path = append(path, d)
	}
	cmd := exec.Command("bash", filepath.Join(harness.RepoRoot(), "test", "tools", "install.sh"), "--only", "node")
	cmd.Env = []string{"PATH=" + strings.Join(path, string(filepath.ListSeparator)), "HOME=" + os.Getenv("HOME"),
		"SIDECAR_INJECTOR_CACHE=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("install.sh succeeded without go and without a kubelet in its cache:\n%s", out)
	}
	for _, want := range []string{"ERROR", "'go' is not in PATH", "node tier"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("install.sh's failure does not say %q:\n%s", want, out)
		}
	}
	t.Logf("install.sh without go: %v\n%s", err, out)
}
