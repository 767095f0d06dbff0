package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func repoFile(t *testing.T, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDockerfileAndBuilderAgree holds the Dockerfile and this builder
// together: the same stages, binaries at the same paths built from the same
// packages, the same entrypoint, command and user, the same Debian packages
// and the binaries the Dockerfile checks with --version present in the
// built mesh-init image.
func TestDockerfileAndBuilderAgree(t *testing.T) {
	got, err := ParseDockerfile(repoFile(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, Dockerfile) {
		t.Errorf("the Dockerfile's images and test/node/images.Dockerfile differ; update the builder with the Dockerfile.\nDockerfile: %+v\nbuilder:    %+v", got, Dockerfile)
	}
	mk, err := ParseMakeBuild(repoFile(t, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(mk, MakeBuild) {
		t.Errorf("`make build` builds %v, the builder %v", mk, MakeBuild)
	}
	for _, st := range Dockerfile {
		for _, out := range st.Binaries {
			if _, ok := MakeBuild[out]; !ok {
				t.Errorf("stage %s copies %s, which `make build` does not build", st.Target, out)
			}
		}
	}
}

// TestMeshInitImageHasTheIptablesPackage builds the mesh-init image's
// file list from this machine's Debian iptables package: every binary the
// Dockerfile checks with --version is there and resolves to a regular file,
// and every ELF file's shared libraries (ldd) are in the image.
func TestMeshInitImageHasTheIptablesPackage(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		need(t, "dpkg (a Debian machine)")
	}
	if _, err := DebianPackageVersion("iptables"); err != nil {
		need(t, "the Debian iptables package (apt-get install -y iptables)")
	}
	osr, _ := os.ReadFile("/etc/os-release")
	if !strings.Contains(string(osr), "VERSION_CODENAME=bookworm") {
		need(t, "Debian bookworm (the Dockerfile installs bookworm's iptables; the image copies this machine's)")
	}
	dir := t.TempDir()
	bins := Binaries{}
	for _, n := range []string{"injector", "mesh-init"} {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte("#!fake\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		bins[n] = p
	}
	st := StageByTarget("mesh-init")
	spec, err := FromStage(st, MeshInitRef, bins)
	if err != nil {
		t.Fatal(err)
	}
	resolve := spec.Resolve
	for _, b := range append(st.VersionChecks, "iptables", "ip6tables", "iptables-restore", "ip6tables-save") {
		f, ok := resolve("/usr/sbin/" + b)
		if !ok || f.Source == "" {
			t.Errorf("the mesh-init image has no runnable %s (the Dockerfile runs `%s --version`)", b, b)
		}
	}
	if _, ok := spec.File("/usr/local/bin/mesh-init"); !ok {
		t.Error("no /usr/local/bin/mesh-init")
	}
	var exts int
	var elfs []string
	for _, f := range spec.Files {
		if strings.Contains(f.Path, "/xtables/libxt_") {
			exts++
		}
		if f.Source == "" || strings.HasPrefix(f.Path, "/usr/local/bin/") {
			continue
		}
		elfs = append(elfs, f.Source)
	}
	libs, err := sharedLibraries(elfs...)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range libs {
		if _, ok := resolve(l); !ok {
			t.Errorf("the image's ELF files need %s, which is not in it", l)
		}
	}
	if exts < 20 {
		t.Errorf("only %d libxt_* extensions in the image", exts)
	}
	if _, err := spec.Image(); err != nil {
		t.Fatal(err)
	}
}

func need(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("missing %s, and CI is set so this fails instead of skipping", what)
	}
	t.Skipf("needs %s", what)
}
