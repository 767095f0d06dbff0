package capture

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// Exit codes of `mesh-init capture`; ExitCode maps an error to one.
const (
	// ExitOK: the rules were written (or removed, or printed).
	ExitOK = 0
	// ExitFailed: iptables-restore or the kernel rejected the rules, or the
	// copy failed. The message carries the tool's own words.
	ExitFailed = 1
	// ExitUsage: an argument or environment variable is invalid. The
	// message names the flag (or variable) and the value.
	ExitUsage = 2
	// ExitPrerequisite: something the pod or image must provide is missing:
	// a binary, the NET_ADMIN/NET_RAW capabilities, or IPv6 under
	// --ipv6=required. The message says what to add.
	ExitPrerequisite = 3
)

// ExitCode returns the process exit code for an error returned by
// meshinit.ParseCaptureCommand or Execute.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var fe *meshinit.FlagError
	var ue *meshinit.UsageError
	var pe *PrereqError
	switch {
	case errors.As(err, &fe), errors.As(err, &ue), errors.Is(err, flag.ErrHelp):
		return ExitUsage
	case errors.As(err, &pe):
		return ExitPrerequisite
	}
	return ExitFailed
}

// PrintUsage writes the capture command's help: every flag with its
// environment variable and default, and the exit codes.
func PrintUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: mesh-init capture [flags]\n\n"+
		"Writes the nat rules that send the pod's TCP traffic through the proxy, for IPv4\n"+
		"(iptables) and IPv6 (ip6tables), each in one iptables-restore transaction.\n"+
		"Every flag can also be set by an environment variable; flags win.\n\nFlags:\n")
	for _, f := range meshinit.CaptureFlags() {
		if f.Bool {
			fmt.Fprintf(w, "  --%s\n", f.Name)
		} else {
			fmt.Fprintf(w, "  --%s=%q\n", f.Name, f.Default)
		}
		fmt.Fprintf(w, "\t%s (env %s)\n", f.Usage, f.Env)
	}
	fmt.Fprintf(w, "\nExit codes: %d ok, %d rules rejected or copy failed, %d invalid arguments,\n"+
		"%d missing prerequisite (binary, NET_ADMIN/NET_RAW capability, IPv6 when required).\n",
		ExitOK, ExitFailed, ExitUsage, ExitPrerequisite)
}
