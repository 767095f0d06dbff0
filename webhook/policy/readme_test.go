package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sidecar-injector/injector/webhook/meshinit"

	"github.com/sidecar-injector/injector/test/testkit"
)

const (
	tableBegin = "<!-- BEGIN GENERATED: annotations (go test ./webhook/policy -update) -->"
	tableEnd   = "<!-- END GENERATED: annotations -->"
)

// annotationTable renders the README's reference table from Overrides, so
// the documentation cannot drift from what the injector accepts.
func annotationTable() string {
	defaults, _ := toMap(Defaults())
	var b strings.Builder
	b.WriteString("| annotation | Istio alias | sets | default | accepted values | example |\n|---|---|---|---|---|---|\n")
	for _, o := range Overrides {
		alias := ""
		if len(o.Aliases) > 0 {
			alias = "`" + strings.Join(o.Aliases, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s | %s | `%s` |\n", o.Key(), alias, o.Field, defaultOf(defaults, o.Field),
			strings.ReplaceAll(o.Accepts, "|", "\\|"), o.Example)
	}
	return b.String()
}

// defaultOf renders the built-in default at a settings path.
func defaultOf(m map[string]any, path string) string {
	if path == "lifecycle.drainSeconds" {
		// Unset by default: the registry preset's drain applies.
		var parts []string
		for _, p := range meshinit.Presets {
			parts = append(parts, fmt.Sprintf("%s %d", p, DefaultRegistryDrainSeconds()[p]))
		}
		return "the registry's (`lifecycle.registryDrainSeconds`: " + strings.Join(parts, ", ") + ")"
	}
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return "unset"
		}
		if v, ok = mm[k]; !ok {
			return "the hook tool's, often from the app's environment (docs/lifecycle-hooks.md)"
		}
	}
	switch t := v.(type) {
	case string:
		if t == "" {
			return "none"
		}
		return "`" + t + "`"
	default:
		b, _ := json.Marshal(t)
		return "`" + string(b) + "`"
	}
}

func TestReadmeAnnotationTable(t *testing.T) {
	path := filepath.Join("..", "..", "README.md")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	s := string(b)
	i, j := strings.Index(s, tableBegin), strings.Index(s, tableEnd)
	require.True(t, i >= 0 && j > i, "README.md must hold the generated annotation table between its markers")
	want := s[:i+len(tableBegin)] + "\n" + annotationTable() + s[j:]
	if testkit.Update() {
		require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
		return
	}
	require.Equal(t, want, s, "README.md's annotation table is stale: run go test ./webhook/policy -update")
}
