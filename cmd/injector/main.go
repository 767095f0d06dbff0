package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = []command{
	{"serve", "run the admission webhook server", serveMain},
	{"inject", "inject pods and workload pod templates in manifests (-f FILE|DIR|-)", injectMain},
	{"uninject", "remove exactly what injection added to manifests", uninjectMain},
	{"explain", "show whether a pod would be injected, which policy applies and every value's source", explainMain},
	{"demo", "inject sample pods through a local server over TLS and show the result", demoMain},
	{"certs", "generate a CA and a serving certificate into a directory", certsMain},
	{"version", "print the version", func(_ []string, stdout, _ io.Writer) int { fmt.Fprintln(stdout, version); return 0 }},
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: injector <command> [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'injector <command> -h' for a command's flags.\n")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "injector: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// helps are each command's synopsis and description, printed by
// `injector <command> --help` above its flags.
var helps = map[string]struct{ synopsis, about string }{
	"serve": {"serve [flags]", `Run the admission webhook: HTTPS on --listen, /healthz and /readyz,
Prometheus /metrics and /debug/explain on --metrics-listen. The policy file
(--config) is re-read when it changes.`},
	"inject": {"inject -f FILE|DIR|- [flags]", `Inject the sidecar into every Pod and workload pod template (Deployment,
StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, ...) of the manifests and
write them to standard output, as the webhook would inject their pods;
everything else passes through unchanged. A report line per object, with
the reason, goes to standard error. Any refusal or parse error writes
nothing and exits 1.

Namespace labels decide injection: Namespace objects in the input, or
--namespace-labels. Example:

  injector inject -f deploy/ --namespace-labels 'shop=sidecar-injector.io/injection=enabled' | kubectl apply -f -`},
	"uninject": {"uninject -f FILE|DIR|- [flags]", `Remove exactly what injection added (as the status annotation records it)
from every Pod and workload pod template, and write the manifests to
standard output.`},
	"explain": {"explain [-f FILE|-] [flags]", `Say whether a pod (or a workload's pod template, -f) would be injected in
its namespace and why, which policy applies and why it won, and every
effective value with the layer it came from. Without -f, the namespace's
(--namespace) policy alone. Namespace labels come from --namespace-labels,
Namespace objects in the input, or the cluster (--kubeconfig). Example:

  injector explain -f pod.yaml --namespace-labels 'shop=sidecar-injector.io/injection=enabled'`},
	"demo":  {"demo [flags]", "Inject sample pods through a local server over TLS and show what they get."},
	"certs": {"certs --dir DIR [flags]", "Write a CA and a serving certificate for the webhook's Service into --dir."},
}

// newFlagSet returns a flag set that reports errors to stderr, and whose
// usage is the command's synopsis, description and flags.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("injector "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printUsage(fs.Output(), name, fs) }
	return fs
}

// printUsage writes the command's help. Value names come from the flag's
// usage (a `BACKQUOTED` word), as the flag package reads them.
func printUsage(w io.Writer, name string, fs *flag.FlagSet) {
	h := helps[name]
	fmt.Fprintf(w, "Usage: injector %s\n\n", h.synopsis)
	if h.about != "" {
		fmt.Fprintf(w, "%s\n\n", h.about)
	}
	fmt.Fprintf(w, "Flags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		value, usage := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		line := "  " + dash + f.Name
		if value != "" {
			line += " " + value
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			usage += fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, usage)
	})
}

// parseFlags parses and turns -h and errors into exit codes. Help asked
// for goes to standard output; the usage after a wrong flag to standard
// error.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (int, bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0, false
		}
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return 2, false
	}
	return 0, true
}

// newLogger builds the structured logger and routes controller-runtime's
// logs through it.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch strings.ToLower(format) {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: use json or text", format)
	}
	l := slog.New(h)
	ctrllog.SetLogger(logr.FromSlogHandler(h))
	return l, nil
}
