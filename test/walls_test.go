// Package test holds the tiers beyond unit tests (netns, e2e, load, demo,
// tools) and, here, the test that keeps the house's walls standing: what
// each package of the module may import, as docs/design.md's map of the
// house states it.
package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/sidecar-injector/injector"

// meshInitBudget bounds the stripped static mesh-init binary (linux/amd64,
// CGO off, -trimpath -s -w, as make build builds it): 6,836,386 bytes when
// the budget was set, plus 15%. It ships in every pod's init container
// image; a dependency that grows it this much deserves a look.
const meshInitBudget = 7_860_000

// heavy are what the pure packages must not reach through this module's
// packages: HTTP, processes, clients and patches belong to the edge and
// the in-pod runtime.
var heavy = []string{"net/http", "os/exec", "sigs.k8s.io/controller-runtime", "k8s.io/client-go", "gomodules.xyz/jsonpatch"}

type pkg struct {
	ImportPath string
	Dir        string
	Standard   bool
	Imports    []string
	Module     *struct{ Path string }
}

func (p pkg) ours() bool { return p.Module != nil && p.Module.Path == module }

// golist runs go list in the module root and decodes its packages.
func golist(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json=ImportPath,Dir,Standard,Imports,Module"}, args...)...)
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func rel(importPath string) string {
	return strings.TrimPrefix(strings.TrimPrefix(importPath, module), "/")
}

// The core, the policy and the mesh-init contract reach no HTTP, no
// processes, no clients and no patches through any package of this module;
// the contract imports the standard library only.
func TestPurePackagesStayPure(t *testing.T) {
	for _, root := range []string{"webhook/inject", "webhook/policy", "webhook/meshinit"} {
		for _, p := range golist(t, "-deps", "./"+root) {
			if !p.ours() {
				if root == "webhook/meshinit" && !p.Standard {
					t.Errorf("%s reaches %s, which is not the standard library", root, p.ImportPath)
				}
				continue
			}
			for _, imp := range p.Imports {
				for _, h := range heavy {
					if imp == h || strings.HasPrefix(imp, h+"/") {
						t.Errorf("%s reaches %s through %s", root, imp, rel(p.ImportPath))
					}
				}
			}
		}
	}
}

// Packages that stand alone import nothing from this module.
func TestStandAlonePackages(t *testing.T) {
	for _, root := range []string{"templates", "certs", "webhook/envoy"} {
		for _, p := range golist(t, "-deps", "./"+root) {
			if p.ours() && rel(p.ImportPath) != root {
				t.Errorf("%s imports %s from this module", root, rel(p.ImportPath))
			}
		}
	}
}

// mesh-init reaches nothing but the standard library and this module, and
// its binary stays under the budget.
func TestMeshInitIsSmall(t *testing.T) {
	for _, p := range golist(t, "-deps", "./cmd/mesh-init") {
		if !p.Standard && !p.ours() {
			t.Errorf("mesh-init reaches %s, a module other than the standard library and this one", p.ImportPath)
		}
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the size budget is for linux/amd64, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	bin := filepath.Join(t.TempDir(), "mesh-init")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/mesh-init")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building mesh-init: %v\n%s", err, out)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mesh-init is %d bytes (budget %d)", fi.Size(), meshInitBudget)
	if fi.Size() > meshInitBudget {
		t.Errorf("mesh-init is %d bytes, over its budget of %d: find what grew it (go version -m, go tool nm -size) before raising the budget", fi.Size(), meshInitBudget)
	}
}

// meshCNIBudget bounds the stripped static mesh-cni binary (built like
// mesh-init): 3,461,282 bytes when the budget was set, plus 15%. It runs
// on every node, once per pod sandbox.
const meshCNIBudget = 3_980_000

// meshCNIModules are the only modules besides the standard library and
// this one that the CNI plugin and node agent may reach: the CNI
// library's types (no skel, no invoke: those pull in netns and tracing
// packages) and golang.org/x/sys for setns.
var meshCNIModules = []string{"github.com/containernetworking/cni/pkg/types", "github.com/containernetworking/cni/pkg/version", "golang.org/x/sys/"}

// mesh-cni reaches nothing heavy (no Kubernetes client, no HTTP: it
// reads the pod's annotations from the runtime), only the capture runtime
// of mesh-init and the contract from this module, and stays small.
func TestMeshCNIIsSmall(t *testing.T) {
	for _, p := range golist(t, "-deps", "./cmd/mesh-cni") {
		switch {
		case p.Standard:
			if p.ImportPath == "net/http" {
				t.Errorf("mesh-cni reaches %s", p.ImportPath)
			}
		case p.ours():
			r := rel(p.ImportPath)
			if !strings.HasPrefix(r, "cmd/mesh-cni") && r != "cmd/mesh-init/capture" && r != "webhook/meshinit" {
				t.Errorf("mesh-cni reaches %s of this module; only the capture runtime and the contract are its to use", r)
			}
		default:
			ok := false
			for _, m := range meshCNIModules {
				ok = ok || strings.HasPrefix(p.ImportPath, m)
			}
			if !ok {
				t.Errorf("mesh-cni reaches %s, outside the standard library, this module, the CNI library's types and x/sys", p.ImportPath)
			}
		}
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the size budget is for linux/amd64, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	bin := filepath.Join(t.TempDir(), "mesh-cni")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/mesh-cni")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building mesh-cni: %v\n%s", err, out)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mesh-cni is %d bytes (budget %d)", fi.Size(), meshCNIBudget)
	if fi.Size() > meshCNIBudget {
		t.Errorf("mesh-cni is %d bytes, over its budget of %d: find what grew it before raising the budget", fi.Size(), meshCNIBudget)
	}
}

// Production code never imports the test kit or any other package under
// test/. Checking each package's own imports is enough: a path from
// production code into test/ has to cross from one to the other somewhere.
func TestProductionNeverImportsTest(t *testing.T) {
	isTest := func(r string) bool { return r == "test" || strings.HasPrefix(r, "test/") }
	for _, p := range golist(t, "./...") {
		if isTest(rel(p.ImportPath)) {
			continue
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module+"/") && isTest(rel(imp)) {
				t.Errorf("%s imports %s", rel(p.ImportPath), rel(imp))
			}
		}
	}
}

// docs/design.md's map of the house names every package outside test/,
// and every path it names exists.
func TestMapOfTheHouseIsTrue(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "design.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "## Map of the house")
	if start < 0 {
		t.Fatal(`docs/design.md has no "## Map of the house"`)
	}
	section := doc[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(section, -1) {
		listed[m[1]] = true
	}
	for _, p := range golist(t, "./...") {
		r := rel(p.ImportPath)
		if r == "test" || strings.HasPrefix(r, "test/") {
			continue
		}
		if !listed[r] {
			t.Errorf("docs/design.md's map of the house does not list %s", r)
		}
	}
	var names []string
	for n := range listed {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join("..", n)); err != nil || !fi.IsDir() {
			t.Errorf("docs/design.md's map of the house lists %s, which is not a folder: %v", n, err)
		}
	}
	if t.Failed() {
		fmt.Fprintln(os.Stderr, "update the map in docs/design.md with the package and what it owns")
	}
}
