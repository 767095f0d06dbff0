package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Stage is one image of the Dockerfile as this builder reproduces it.
// dockerfile_test.go parses the Dockerfile into the same shape and compares.
type Stage struct {
	// Target is the Dockerfile stage (docker build --target).
	Target string
	// Base is the Dockerfile's FROM; Bases says what the builder puts in
	// its place.
	Base string
	// Binaries maps a path in the image to the `make build` output copied
	// there (COPY --from=build /src/bin/<name> <path>).
	Binaries map[string]string
	// Entrypoint, Cmd and User are the image configuration.
	Entrypoint []string
	Cmd        []string
	User       string
	// AptPackages are the Debian packages the stage installs; the builder
	// copies the files of the same packages installed on this machine.
	AptPackages []string
	// VersionChecks are the commands the stage runs with --version (the
	// binaries it promises).
	VersionChecks []string
}

// Dockerfile is the Dockerfile's images.
var Dockerfile = []Stage{
	{
		Target:     "injector",
		Base:       "gcr.io/distroless/static-debian12:nonroot",
		Binaries:   map[string]string{"/usr/local/bin/injector": "bin/injector"},
		User:       "65532:65532",
		Entrypoint: []string{"/usr/local/bin/injector"},
		Cmd:        []string{"serve"},
	},
	{
		Target:        "mesh-init",
		Base:          "debian:bookworm-slim",
		Binaries:      map[string]string{"/usr/local/bin/mesh-init": "bin/mesh-init"},
		Entrypoint:    []string{"/usr/local/bin/mesh-init"},
		AptPackages:   []string{"iptables"},
		VersionChecks: []string{"iptables-nft", "iptables-legacy", "ip6tables-nft", "ip6tables-legacy"},
	},
	{
		Target:     "mesh-cni",
		Base:       "gcr.io/distroless/static-debian12:nonroot",
		Binaries:   map[string]string{"/usr/local/bin/mesh-cni": "bin/mesh-cni"},
		User:       "0:0",
		Entrypoint: []string{"/usr/local/bin/mesh-cni"},
		Cmd:        []string{"install"},
	},
}

// MakeBuild maps `make build`'s outputs to their packages (the Makefile's
// build target; checked by dockerfile_test.go).
var MakeBuild = map[string]string{
	"bin/injector":  "./cmd/injector",
	"bin/mesh-init": "./cmd/mesh-init",
	"bin/mesh-cni":  "./cmd/mesh-cni",
}

// iptablesAlternatives are the unsuffixed names Debian's iptables package
// registers with update-alternatives in its postinst (they are not in
// `dpkg -L`); a bookworm-slim image with the package installed has them,
// pointing at the nft backend.
var iptablesAlternatives = []string{
	"/usr/sbin/iptables", "/usr/sbin/iptables-restore", "/usr/sbin/iptables-save",
	"/usr/sbin/ip6tables", "/usr/sbin/ip6tables-restore", "/usr/sbin/ip6tables-save",
}

// debianPath is the PATH of Debian's and distroless' images.
const debianPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// base is what a FROM provides, as far as the binaries on it need.
type base struct {
	files   []File
	env     []string
	workdir string
	user    string
}

// Bases stand in for the Dockerfile's base images: only what the binaries
// on them use (users, /tmp, CA certificates, PATH), not a whole
// distribution. The mesh-init image therefore has the iptables package and
// the libraries it links, not the rest of bookworm-slim.
func bases(name string) (base, error) {
	switch name {
	case "gcr.io/distroless/static-debian12:nonroot":
		files := []File{
			{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
			{Path: "/etc/group", Data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
			{Path: "/home/nonroot", Dir: true, Mode: 0o700, UID: 65532, GID: 65532},
			{Path: "/tmp", Dir: true, Mode: 0o777 | os.ModeSticky},
		}
		if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
			files = append(files, File{Path: "/etc/ssl/certs/ca-certificates.crt", Source: "/etc/ssl/certs/ca-certificates.crt", Mode: 0o644})
		}
		return base{files: files, env: []string{debianPath, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
			workdir: "/home/nonroot", user: "65532"}, nil
	case "debian:bookworm-slim":
		return base{files: []File{
			{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")},
			{Path: "/etc/group", Data: []byte("root:x:0:\nnogroup:x:65534:\n")},
			{Path: "/tmp", Dir: true, Mode: 0o777 | os.ModeSticky},
			{Path: "/run", Dir: true, Mode: 0o755},
			{Path: "/var/run", Link: "/run"},
			{Path: "/root", Dir: true, Mode: 0o700},
		}, env: []string{debianPath}}, nil
	}
	return base{}, fmt.Errorf("no stand-in for base image %q", name)
}

// Image references. Local names: there is no registry, pods use
// imagePullPolicy IfNotPresent or Never.
const (
	Repo = "localhost/sidecar-injector-node/"
	Tag  = "node-tier"
)

// Ref is the reference of one of the node tier's images.
func Ref(name string) string { return Repo + name + ":" + Tag }

// The node tier's images.
var (
	PauseRef      = Ref("pause")
	MeshInitRef   = Ref("mesh-init")
	MeshCNIRef    = Ref("mesh-cni")
	InjectorRef   = Ref("injector")
	ProxyRef      = Ref("envoy-standin")
	AppRef        = Ref("testapp")
	DistrolessRef = Ref("testapp-distroless")
	// RegistryRef serves test/registry's Eureka, Nacos and Consul agent
	// stand-ins in a pod (test/node/cmd/registry).
	RegistryRef = Ref("registry-standin")
)

// Binaries are the static binaries the images hold, by name.
type Binaries map[string]string

// testPackages are the node tier's own programs.
var testPackages = map[string]string{
	"envoy-standin": "./test/node/cmd/envoy-standin",
	"pause":         "./test/node/cmd/pause",
	"testapp":       "./test/node/cmd/testapp",
	"registry":      "./test/node/cmd/registry",
}

// BuildBinaries builds every binary the images need in one `go build`
// (static, CGO off, -trimpath, the Makefile's ldflags) into dir.
func BuildBinaries(ctx context.Context, repoRoot, dir string) (Binaries, error) {
	pkgs := map[string]string{}
	for out, pkg := range MakeBuild {
		pkgs[filepath.Base(out)] = pkg
	}
	for n, pkg := range testPackages {
		pkgs[n] = pkg
	}
	args := []string{"build", "-trimpath", "-ldflags", "-s -w -X main.version=" + Tag, "-o", dir + "/"}
	names := make([]string, 0, len(pkgs))
	for n := range pkgs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		args = append(args, pkgs[n])
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	bins := Binaries{}
	for _, n := range names {
		bins[n] = filepath.Join(dir, n)
	}
	return bins, nil
}

// FromStage builds the image of a Dockerfile stage.
func FromStage(st Stage, ref string, bins Binaries) (Spec, error) {
	b, err := bases(st.Base)
	if err != nil {
		return Spec{}, err
	}
	s := Spec{Ref: ref, Entrypoint: st.Entrypoint, Cmd: st.Cmd, User: st.User, Env: b.env, WorkingDir: b.workdir}
	if s.User == "" {
		s.User = b.user
	}
	s.Files = append(s.Files, b.files...)
	for dst, out := range st.Binaries {
		src, ok := bins[filepath.Base(out)]
		if !ok {
			return Spec{}, fmt.Errorf("stage %s: no binary %s built", st.Target, out)
		}
		s.Files = append(s.Files, File{Path: dst, Source: src, Mode: 0o755})
	}
	if len(st.AptPackages) > 0 {
		c := newHostCollector()
		if err := c.addRootLinks(); err != nil {
			return Spec{}, err
		}
		for _, pkg := range st.AptPackages {
			files, err := DebianPackageFiles(pkg)
			if err != nil {
				return Spec{}, err
			}
			if pkg == "iptables" {
				files = append(files, iptablesAlternatives...)
			}
			for _, f := range files {
				if err := c.add(f); err != nil {
					return Spec{}, fmt.Errorf("stage %s, package %s: %w", st.Target, pkg, err)
				}
			}
		}
		if err := c.addLibraries(); err != nil {
			return Spec{}, err
		}
		s.Files = append(s.Files, c.list()...)
	}
	return s, nil
}

// StageByTarget returns the Dockerfile stage of that name.
func StageByTarget(target string) Stage {
	for _, st := range Dockerfile {
		if st.Target == target {
			return st
		}
	}
	panic("no Dockerfile stage " + target)
}

// Set is every image the node tier loads.
type Set struct {
	Pause, MeshInit, Injector, Proxy, App, Distroless Spec
	// MeshCNI is the cni capture mode's node agent (the chart's cni.enabled
	// DaemonSet).
	MeshCNI Spec
	// Registry serves test/registry's stand-ins in a pod (the rollouts).
	Registry Spec
}

// All lists the set's images.
func (s *Set) All() []Spec {
	return []Spec{s.Pause, s.MeshInit, s.Injector, s.Proxy, s.App, s.Distroless, s.MeshCNI, s.Registry}
}

// NewSet describes every image from built binaries.
func NewSet(bins Binaries) (*Set, error) {
	var set Set
	var err error
	if set.MeshInit, err = FromStage(StageByTarget("mesh-init"), MeshInitRef, bins); err != nil {
		return nil, err
	}
	if set.Injector, err = FromStage(StageByTarget("injector"), InjectorRef, bins); err != nil {
		return nil, err
	}
	if set.MeshCNI, err = FromStage(StageByTarget("mesh-cni"), MeshCNIRef, bins); err != nil {
		return nil, err
	}
	// Kubernetes' pause image runs as 65535.
	set.Pause = Spec{Ref: PauseRef, Files: []File{{Path: "/pause", Source: bins["pause"], Mode: 0o755}},
		Entrypoint: []string{"/pause"}, User: "65535:65535"}
	// The proxy: Envoy's image runs envoy with the container's args; the
	// injector renders only args, so the entrypoint is the binary.
	set.Proxy = Spec{Ref: ProxyRef, Files: []File{{Path: "/usr/local/bin/envoy-standin", Source: bins["envoy-standin"], Mode: 0o755}},
		Entrypoint: []string{"/usr/local/bin/envoy-standin"}, Env: []string{debianPath}}
	// The app, with a shell (the host's /bin/sh and its libraries) for exec
	// hooks and commands that need one.
	c := newHostCollector()
	if err := c.addRootLinks(); err != nil {
		return nil, err
	}
	if err := c.add("/bin/sh"); err != nil {
		return nil, err
	}
	if err := c.addLibraries(); err != nil {
		return nil, err
	}
	set.App = Spec{Ref: AppRef, Files: append(c.list(),
		File{Path: "/usr/local/bin/testapp", Source: bins["testapp"], Mode: 0o755},
		File{Path: "/tmp", Dir: true, Mode: 0o777 | os.ModeSticky}),
		Entrypoint: []string{"/usr/local/bin/testapp"}, Cmd: []string{"serve"}, Env: []string{debianPath}}
	// The distroless app: the binary alone, no shell, no curl, non-root.
	d, err := bases("gcr.io/distroless/static-debian12:nonroot")
	if err != nil {
		return nil, err
	}
	set.Distroless = Spec{Ref: DistrolessRef, Files: append(d.files, File{Path: "/usr/local/bin/testapp", Source: bins["testapp"], Mode: 0o755}),
		Entrypoint: []string{"/usr/local/bin/testapp"}, Cmd: []string{"serve"}, User: "65532:65532", Env: d.env, WorkingDir: d.workdir}
	// The registry stand-in: the program alone, non-root.
	set.Registry = Spec{Ref: RegistryRef, Files: append(append([]File(nil), d.files...), File{Path: "/usr/local/bin/registry", Source: bins["registry"], Mode: 0o755}),
		Entrypoint: []string{"/usr/local/bin/registry"}, User: "65532:65532", Env: d.env, WorkingDir: d.workdir}
	return &set, nil
}
