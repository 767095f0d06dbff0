package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "capture":
		return captureMain(args[1:], stdout, stderr)
	case "hook":
		return hookMain(args[1:])
	case "validate":
		return validateMain(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "mesh-init %s (%s, %s)\n", version, runtime.Version(), revision())
		return 0
	case "help", "-h", "--help", "-help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "mesh-init: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: mesh-init <command> [flags]

Commands:
  capture   write the pod's iptables/ip6tables capture rules (see mesh-init capture --help)
  hook      lifecycle hooks for the app and sidecar containers
  validate  check, unprivileged, that the node's mesh-cni plugin wrote the capture rules (cni capture mode)
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
