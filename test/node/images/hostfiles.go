package images

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// hostCollector copies host files into an image: symlinks stay symlinks
// (and their targets come along), dynamically linked ELF files bring the
// shared libraries `ldd` lists. Paths are canonical on the host (Debian
// bookworm merges /lib into /usr/lib; the image gets the same top-level
// symlinks), so a library reached through /lib and through /usr/lib is
// copied once.
type hostCollector struct {
	files map[string]File
	// dynamic are the dynamically linked ELF files whose libraries are
	// not added yet.
	dynamic []string
}

func newHostCollector() *hostCollector { return &hostCollector{files: map[string]File{}} }

// mergedUsrLinks are the top-level symlinks of a merged-/usr Debian, copied
// as they are on the host.
var mergedUsrLinks = []string{"/bin", "/sbin", "/lib", "/lib64"}

func (c *hostCollector) addRootLinks() error {
	for _, p := range mergedUsrLinks {
		st, err := os.Lstat(p)
		if err != nil || st.Mode()&os.ModeSymlink == 0 {
			continue
		}
		t, err := os.Readlink(p)
		if err != nil {
			return err
		}
		c.files[p] = File{Path: p, Link: t}
	}
	return nil
}

// canonical resolves every symlink in p's folder, not in p itself.
func canonical(p string) (string, error) {
	dir, err := filepath.EvalSymlinks(filepath.Dir(p))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(p)), nil
}

func (c *hostCollector) add(p string) error {
	p, err := canonical(p)
	if err != nil {
		return fmt.Errorf("host file %s: %w", p, err)
	}
	if _, ok := c.files[p]; ok {
		return nil
	}
	st, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("host file: %w", err)
	}
	switch {
	case st.Mode()&os.ModeSymlink != 0:
		t, err := os.Readlink(p)
		if err != nil {
			return err
		}
		c.files[p] = File{Path: p, Link: t}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(p), t)
		}
		return c.add(t)
	case st.Mode().IsRegular():
		c.files[p] = File{Path: p, Source: p, Mode: st.Mode().Perm()}
		if isDynamicELF(p) {
			c.dynamic = append(c.dynamic, p)
		}
	}
	return nil
}

// addLibraries adds the shared libraries every dynamically linked ELF
// file added so far needs, and theirs. It reads DT_NEEDED and the program
// interpreter itself and looks each library up where Debian's loader does
// (the multiarch folders), which takes milliseconds; `ldd` runs the loader
// once per file and takes seconds for the ~100 files of the iptables
// package. TestMeshInitImageHasTheIptablesPackage checks the result against
// what ldd lists.
func (c *hostCollector) addLibraries() error {
	done := map[string]bool{}
	for len(c.dynamic) > 0 {
		p := c.dynamic[0]
		c.dynamic = c.dynamic[1:]
		if done[p] {
			continue
		}
		done[p] = true
		libs, err := elfLibraries(p)
		if err != nil {
			return err
		}
		for _, l := range libs {
			if err := c.add(l); err != nil {
				return err
			}
		}
	}
	return nil
}

// libDirs are searched for DT_NEEDED names, in the loader's order for a
// merged-/usr Debian (ld.so.conf.d's multiarch folder, then the defaults).
func libDirs() []string {
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[goarch()]
	return []string{"/lib/" + triplet, "/usr/lib/" + triplet, "/lib64", "/usr/lib64", "/lib", "/usr/lib"}
}

// elfLibraries is the program interpreter and the resolved DT_NEEDED
// entries of one ELF file.
func elfLibraries(p string) ([]string, error) {
	f, err := elf.Open(p)
	if err != nil {
		return nil, nil
	}
	defer f.Close()
	var out []string
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err != nil {
				return nil, fmt.Errorf("%s: reading PT_INTERP: %w", p, err)
			}
			out = append(out, strings.TrimRight(string(b), "\x00"))
		}
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	for _, n := range needed {
		found := ""
		for _, d := range libDirs() {
			if _, err := os.Stat(filepath.Join(d, n)); err == nil {
				found = filepath.Join(d, n)
				break
			}
		}
		if found == "" {
			return nil, fmt.Errorf("%s needs %s, which is in none of %v", p, n, libDirs())
		}
		out = append(out, found)
	}
	return out, nil
}

func (c *hostCollector) list() []File {
	out := make([]File, 0, len(c.files))
	for _, f := range c.files {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

var lddLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)`)

func isDynamicELF(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Section(".dynamic") != nil
}

// sharedLibraries lists what `ldd` resolves for dynamically linked ELF
// files (their whole closure), each library once: the independent check of
// elfLibraries.
func sharedLibraries(files ...string) ([]string, error) {
	var dyn []string
	for _, f := range files {
		if isDynamicELF(f) {
			dyn = append(dyn, f)
		}
	}
	if len(dyn) == 0 {
		return nil, nil
	}
	out, err := exec.Command("ldd", dyn...).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", strings.Join(dyn, " "), err)
	}
	seen := map[string]bool{}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "not found") {
			return nil, fmt.Errorf("ldd: %s", strings.TrimSpace(line))
		}
		if !strings.HasPrefix(line, "\t") {
			continue // a file's header when several are listed
		}
		if m := lddLine.FindStringSubmatch(line); m != nil && !seen[m[1]] {
			seen[m[1]] = true
			libs = append(libs, m[1])
		}
	}
	return libs, nil
}

// DebianPackageFiles lists the files and symlinks an installed Debian
// package shipped (`dpkg -L`), without documentation (/usr/share).
func DebianPackageFiles(pkg string) ([]string, error) {
	out, err := exec.Command("dpkg", "-L", pkg).Output()
	if err != nil {
		var ee *exec.ExitError
		if ok := asExit(err, &ee); ok {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return nil, fmt.Errorf("dpkg -L %s (is the Debian package installed? apt-get install -y %s): %w", pkg, pkg, err)
	}
	var files []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l == "/." || strings.HasPrefix(l, "/usr/share/") {
			continue
		}
		st, err := os.Lstat(l)
		if err != nil || st.IsDir() {
			continue
		}
		files = append(files, l)
	}
	return files, nil
}

// DebianPackageVersion is the installed version of a Debian package.
func DebianPackageVersion(pkg string) (string, error) {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil {
		return "", fmt.Errorf("dpkg-query %s: %w", pkg, err)
	}
	return strings.TrimSpace(string(out)), nil
}
