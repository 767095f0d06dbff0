package inject_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sidecar-injector/injector/webhook/inject"
)

// Every reason is documented in the README's decision table.
func TestReadmeListsEveryReason(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	for _, r := range inject.AllReasons {
		require.True(t, strings.Contains(string(b), "`"+string(r.Reason)+"`"), "README.md does not document reason %q", r.Reason)
	}
}
