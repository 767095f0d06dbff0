// Package images builds the node tier's container images without Docker
// and loads them into containerd.
//
// Why github.com/google/go-containerregistry: it is the library behind ko,
// crane and kaniko, well kept by Google, pure Go (no daemon, no root, no
// storage driver), and it writes an image from an in-memory layer straight
// into a `docker save`-format tarball that `ctr -n k8s.io images import`
// loads. buildah and umoci would need privileges, a storage configuration
// or an OCI layout handled by hand; there is no Docker engine here.
//
// The images follow the Dockerfile: the same binaries at the same paths
// with the same entrypoint, command and user, and for mesh-init the files of
// the same Debian bookworm iptables package the Dockerfile installs (taken
// from this machine's installed package, with the shared libraries `ldd`
// lists). dockerfile_test.go parses the Dockerfile and fails when the two
// drift apart.
package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one entry of an image's single layer.
type File struct {
	Path string // absolute path in the image
	Mode os.FileMode
	// Exactly one of Data, Source, Link (or Dir) says what it is.
	Data     []byte
	Source   string // a host file to copy
	Link     string // symlink target
	Dir      bool
	UID, GID int
}

// Spec is one image.
type Spec struct {
	Ref        string // e.g. localhost/sidecar-injector-node/mesh-init:node-tier
	Files      []File
	Entrypoint []string
	Cmd        []string
	User       string
	Env        []string
	WorkingDir string
}

// Paths lists every path in the image, sorted (for tests and reports).
func (s Spec) Paths() []string {
	out := make([]string, 0, len(s.Files))
	for _, f := range s.Files {
		out = append(out, f.Path)
	}
	sort.Strings(out)
	return out
}

// File returns the entry at p, if any.
func (s Spec) File(p string) (File, bool) {
	for _, f := range s.Files {
		if f.Path == p {
			return f, true
		}
	}
	return File{}, false
}

// epoch is every entry's modification time, so a rebuild of the same
// inputs gives the same layer digest.
var epoch = time.Unix(0, 0)

func (s Spec) layerTar() ([]byte, error) {
	files := map[string]File{}
	for _, f := range s.Files {
		files[path.Clean(f.Path)] = f
	}
	// Every parent folder gets an entry (0755 root) unless listed.
	for p := range files {
		for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
			if _, ok := files[d]; !ok {
				files[d] = File{Path: d, Dir: true, Mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names) // parents before children
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range names {
		f := files[p]
		h := &tar.Header{Name: strings.TrimPrefix(p, "/"), ModTime: epoch, Uid: f.UID, Gid: f.GID, Format: tar.FormatPAX}
		var data []byte
		switch {
		case f.Dir:
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", int64(orMode(f.Mode, 0o755))
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Link, 0o777
		case f.Source != "":
			b, err := os.ReadFile(f.Source)
			if err != nil {
				return nil, err
			}
			data = b
			if f.Mode == 0 {
				st, err := os.Stat(f.Source)
				if err != nil {
					return nil, err
				}
				f.Mode = st.Mode().Perm()
			}
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, int64(f.Mode.Perm()|f.Mode&(os.ModeSticky)), int64(len(data))
		default:
			data = f.Data
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, int64(orMode(f.Mode, 0o644)), int64(len(data))
		}
		if f.Mode&os.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func orMode(m, def os.FileMode) os.FileMode {
	if m.Perm() == 0 {
		return def
	}
	return m.Perm()
}

// Image builds the one-layer image.
func (s Spec) Image() (v1.Image, error) {
	b, err := s.layerTar()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", s.Ref, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goarch()
	cf.Created = v1.Time{Time: epoch}
	cf.Config = v1.Config{Entrypoint: s.Entrypoint, Cmd: s.Cmd, User: s.User, Env: s.Env, WorkingDir: s.WorkingDir}
	return mutate.ConfigFile(img, cf)
}

// WriteTarball writes the images into one `docker save`-format tarball,
// which `ctr images import` loads in one call.
func WriteTarball(file string, specs ...Spec) error {
	m := map[name.Reference]v1.Image{}
	for _, s := range specs {
		ref, err := name.ParseReference(s.Ref)
		if err != nil {
			return fmt.Errorf("image reference %q: %w", s.Ref, err)
		}
		img, err := s.Image()
		if err != nil {
			return err
		}
		m[ref] = img
	}
	return tarball.MultiRefWriteToFile(file, m)
}

// Resolve follows symlinks in the image (in every path component, as the
// kernel would inside the container) and returns the entry p ends at.
func (s Spec) Resolve(p string) (File, bool) {
	idx := map[string]File{}
	for _, f := range s.Files {
		idx[path.Clean(f.Path)] = f
	}
	for hops := 0; hops < 40; hops++ {
		parts := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
		cur := ""
		restarted := false
		for i, part := range parts {
			cur = cur + "/" + part
			f, ok := idx[cur]
			if !ok {
				if i == len(parts)-1 {
					return File{}, false
				}
				continue // an implied parent folder
			}
			if f.Link != "" {
				t := f.Link
				if !path.IsAbs(t) {
					t = path.Join(path.Dir(cur), t)
				}
				p = path.Join(append([]string{t}, parts[i+1:]...)...)
				restarted = true
				break
			}
			if i == len(parts)-1 {
				return f, true
			}
		}
		if !restarted {
			return File{}, false
		}
	}
	return File{}, false
}
