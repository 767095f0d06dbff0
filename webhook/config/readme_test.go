package config

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var updateReadme = flag.Bool("update", false, "rewrite the README's generated annotation table")

const (
	tableBegin = "<!-- BEGIN GENERATED: annotations (go test ./webhook/config -update) -->"
	tableEnd   = "<!-- END GENERATED: annotations -->"
)

// annotationTable renders the README's reference table from Overrides, so
// the documentation cannot drift from what the injector accepts.
func annotationTable() string {
	var b strings.Builder
	b.WriteString("| annotation | Istio alias | sets | accepted values | example |\n|---|---|---|---|---|\n")
	for _, o := range Overrides {
		alias := ""
		if len(o.Aliases) > 0 {
			alias = "`" + strings.Join(o.Aliases, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s | `%s` |\n", o.Key(), alias, o.Field,
			strings.ReplaceAll(o.Accepts, "|", "\\|"), o.Example)
	}
	return b.String()
}

func TestReadmeAnnotationTable(t *testing.T) {
	path := filepath.Join("..", "..", "README.md")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	s := string(b)
	i, j := strings.Index(s, tableBegin), strings.Index(s, tableEnd)
	require.True(t, i >= 0 && j > i, "README.md must hold the generated annotation table between its markers")
	want := s[:i+len(tableBegin)] + "\n" + annotationTable() + s[j:]
	if *updateReadme {
		require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
		return
	}
	require.Equal(t, want, s, "README.md's annotation table is stale: run go test ./webhook/config -update")
}
