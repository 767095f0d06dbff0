package testkit

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files (and generated documentation) from the current output, and remove golden files no test compares")

// Update reports whether the tests run with -update: golden files and
// generated documentation are rewritten from what the code produces now,
// to be reviewed in the diff.
func Update() bool { return *update }

var (
	usedMu sync.Mutex
	used   = map[string]bool{}
)

// Golden compares got with the golden file at path (relative to the
// package directory); with -update it writes got there instead.
func Golden(t testing.TB, path string, got []byte) {
	t.Helper()
	usedMu.Lock()
	used[filepath.Clean(path)] = true
	usedMu.Unlock()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update creates it; review it in the diff)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from the output; if the change is intended, run go test -update and review the diff:\n%s", path, diff(string(want), string(got)))
	}
}

// diff shows where two texts first part, with a little context.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	from := max(0, i-3)
	var b strings.Builder
	fmt.Fprintf(&b, "first difference at line %d\n", i+1)
	for _, side := range []struct {
		name  string
		lines []string
	}{{"want", w}, {"got", g}} {
		fmt.Fprintf(&b, "--- %s\n", side.name)
		for j := from; j < min(len(side.lines), i+4); j++ {
			mark := " "
			if j == i {
				mark = ">"
			}
			fmt.Fprintf(&b, "%s %4d | %s\n", mark, j+1, side.lines[j])
		}
	}
	return b.String()
}

// Main runs the package's tests and then, when every test ran and passed,
// fails on golden files matching the globs that no Golden call compared:
// a fixture renamed or removed must not leave an expectation nobody
// checks. With -update such files are removed instead. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(testkit.Main(m, "testdata/*.golden")) }
func Main(m *testing.M, globs ...string) int {
	code := m.Run()
	if code != 0 || partialRun() {
		return code
	}
	usedMu.Lock()
	defer usedMu.Unlock()
	var orphans []string
	for _, g := range globs {
		matches, err := filepath.Glob(g)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testkit: golden glob %q: %v\n", g, err)
			return 1
		}
		for _, p := range matches {
			if !used[filepath.Clean(p)] {
				orphans = append(orphans, p)
			}
		}
	}
	if len(orphans) == 0 {
		return code
	}
	sort.Strings(orphans)
	if *update {
		for _, p := range orphans {
			if err := os.Remove(p); err != nil {
				fmt.Fprintf(os.Stderr, "testkit: %v\n", err)
				return 1
			}
			fmt.Fprintf(os.Stderr, "testkit: removed %s, which no test compares\n", p)
		}
		return code
	}
	fmt.Fprintf(os.Stderr, "FAIL: golden files that no test compares (remove them, or run go test -update):\n  %s\n", strings.Join(orphans, "\n  "))
	return 1
}

// partialRun reports whether only some tests ran (-run, -skip, -fuzz or
// -list), when an unused golden file proves nothing.
func partialRun() bool {
	for _, name := range []string{"test.run", "test.skip", "test.fuzz", "test.list"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return true
		}
	}
	return false
}
