package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/sidecar-injector/injector/cmd/mesh-cni/install"
	"github.com/sidecar-injector/injector/cmd/mesh-cni/plugin"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

// hostPath is appended to the plugin's PATH: the runtime's environment
// (a service manager's, say) may lack the sbin folders that hold the
// node's iptables binaries.
const hostPath = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"

func run(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	// A container runtime runs a plugin with CNI_COMMAND set and no
	// arguments; everything else is a person or the node agent.
	if getenv("CNI_COMMAND") != "" {
		os.Setenv("PATH", strings.Trim(getenv("PATH")+":"+hostPath, ":"))
		p := &plugin.Plugin{Rules: plugin.NetNS{}, Log: stderr}
		return p.Main(getenv, stdin, stdout)
	}
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "install":
		return install.Main(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "mesh-cni %s (%s, %s; CNI %s)\n", version, runtime.Version(), revision(),
			strings.Join(plugin.SupportedVersions, ", "))
		return 0
	case "help", "-h", "--help", "-help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "mesh-cni: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: mesh-cni <command> [flags]

Run by the container runtime (CNI_COMMAND set, configuration on standard
input), mesh-cni is a chained CNI plugin that writes the capture rules of
pods the injector marked (annotation sidecar-injector.io/cni-capture) in
their network namespace. Commands for people and the node agent:

  install   the node agent: install the plugin into the node's CNI folders and keep it chained (see mesh-cni install --help)
  version   print the version
`)
}

func revision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown revision"
}
