package testkit

import (
	"os"
	"testing"
)

// Need skips the test when err says a prerequisite is missing (a binary,
// root, a kernel feature), or fails it when the CI variable is set: a
// tier that silently skips in CI proves nothing.
func Need(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("prerequisite missing, and CI is set so this fails instead of skipping: %v", err)
	}
	t.Skipf("skipped: %v", err)
}
