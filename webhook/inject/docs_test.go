package inject_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/policy"
)

// docs/policy.md documents every setting and bound explain can show.
func TestPolicyDocCoversEveryValue(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "policy.md"))
	require.NoError(t, err)
	doc := string(b)
	e, err := inject.New(policy.BuiltinConfig(), inject.Options{})
	require.NoError(t, err)
	for _, v := range e.Explain(nil, inject.Namespace{Name: "x"}).Values {
		if v.Path == "templateSet" {
			continue
		}
		assert.True(t, strings.Contains(doc, "`"+v.Path+"`"), "docs/policy.md does not document %s", v.Path)
	}
}
