package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/injector/webhook"
	"github.com/sidecar-injector/injector/webhook/inject"
	"github.com/sidecar-injector/injector/webhook/manifest"
)

// cliConfig are the flags every offline command shares: the policy file and
// the facts the webhook would know from the cluster.
type cliConfig struct {
	config      *string
	nsLabels    *string
	namespace   *string
	kubeVersion *string
	// injectorNS is the namespace the injector runs in, never injected
	// (the webhook knows it from its own pod).
	injectorNS *string
}

func addCLIFlags(fs interface {
	String(name, value, usage string) *string
}) cliConfig {
	return cliConfig{
		config: fs.String("config", "", "policy `FILE` (built-in defaults when empty), the same file injector serve --config reads"),
		nsLabels: fs.String("namespace-labels", "",
			"namespace labels as `NS=KEY=VALUE[,KEY=VALUE][;NS2=...]`; \"*=...\" applies to every other namespace (Namespace objects in the input also count)"),
		namespace:   fs.String("namespace", "default", "`NAMESPACE` of objects without metadata.namespace"),
		kubeVersion: fs.String("kube-version", "", "Kubernetes `VERSION` that resolves nativeSidecar: auto (default: assume 1.29 or newer)"),
		injectorNS:  fs.String("injector-namespace", "", "the `NAMESPACE` the injector is installed in (such as mesh-system): never injected, as the webhook skips it"),
	}
}

func (c cliConfig) engine() (*inject.Engine, error) {
	native, err := nativeFromFlag(*c.kubeVersion)
	if err != nil {
		return nil, err
	}
	// The server's loader, so a file means the same here as in `serve`
	// (an empty file, for one, is an error in both).
	l := inject.NewLoader(*c.config, inject.Options{NativeSidecarsSupported: native, InjectorNamespace: *c.injectorNS})
	return l.Load()
}

func (c cliConfig) labels() (map[string]map[string]string, error) {
	if *c.nsLabels == "" {
		return nil, nil
	}
	static, err := webhook.ParseNamespaceLabels(*c.nsLabels)
	if err != nil {
		return nil, fmt.Errorf("--namespace-labels: %w", err)
	}
	return static, nil
}

// readSources reads -f: a file, a directory (its .yaml, .yml and .json
// files in name order) or "-" for standard input.
func readSources(path string, stdin io.Reader) ([]manifest.Source, error) {
	if path == "" {
		return nil, errors.New("-f is required: a file, a directory or - for standard input")
	}
	if path == "-" {
		b, err := io.ReadAll(stdin)
		return []manifest.Source{{Name: "stdin", Data: b}}, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		b, err := os.ReadFile(path)
		return []manifest.Source{{Name: path, Data: b}}, err
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// Hidden directories (.git, .github) hold no manifests to inject.
		if d.IsDir() && p != path && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			if !d.IsDir() {
				files = append(files, p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no .yaml, .yml or .json files", path)
	}
	var out []manifest.Source
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, manifest.Source{Name: f, Data: b})
	}
	return out, nil
}

func injectMain(args []string, stdout, stderr io.Writer) int {
	return manifestMain("inject", manifest.Inject, args, os.Stdin, stdout, stderr)
}

func uninjectMain(args []string, stdout, stderr io.Writer) int {
	return manifestMain("uninject", manifest.Uninject, args, os.Stdin, stdout, stderr)
}

func manifestMain(name string, mode manifest.Mode, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet(name, stderr)
	file := fs.String("f", "", "manifest `FILE|DIR|-`: a file, a directory (its .yaml, .yml and .json files) or - for standard input")
	output := fs.String("output", "yaml", "`FORMAT` of the output: yaml or json")
	quiet := fs.Bool("quiet", false, "no report on standard error")
	var cc cliConfig
	if mode == manifest.Inject {
		cc = addCLIFlags(fs)
	}
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if *output != "yaml" && *output != "json" {
		fmt.Fprintf(stderr, "injector %s: --output %q: use yaml or json\n", name, *output)
		return 2
	}
	srcs, err := readSources(*file, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "injector %s: %v\n", name, err)
		return 2
	}
	opts := manifest.Options{Mode: mode, Format: manifest.Format(*output)}
	if mode == manifest.Inject {
		if opts.Engine, err = cc.engine(); err != nil {
			fmt.Fprintf(stderr, "injector %s: %v\n", name, err)
			return 1
		}
		if !*quiet {
			for _, w := range opts.Engine.Warnings() {
				fmt.Fprintf(stderr, "injector %s: policy file warning: %s\n", name, w)
			}
		}
		if opts.NamespaceLabels, err = cc.labels(); err != nil {
			fmt.Fprintf(stderr, "injector %s: %v\n", name, err)
			return 2
		}
		opts.DefaultNamespace = *cc.namespace
	}
	out, lines, err := manifest.Process(srcs, opts)
	if !*quiet {
		for _, l := range lines {
			fmt.Fprintln(stderr, l.String())
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "injector %s: nothing written:\n%v\n", name, err)
		return 1
	}
	_, _ = stdout.Write(out)
	return 0
}

func explainMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("explain", stderr)
	file := fs.String("f", "", "a Pod or a workload to explain (its pod template), from a `FILE` or - for standard input; without it, the namespace's policy alone")
	output := fs.String("output", "text", "`FORMAT`: text, json or yaml")
	kubeconfig := fs.String("kubeconfig", "", "look the namespace's labels up in the cluster of this kubeconfig `FILE` (instead of --namespace-labels)")
	cc := addCLIFlags(fs)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	engine, err := cc.engine()
	if err != nil {
		fmt.Fprintln(stderr, "injector explain:", err)
		return 1
	}
	pod, ns, nsLabels, err := explainTarget(*file, *cc.namespace)
	if err != nil {
		fmt.Fprintln(stderr, "injector explain:", err)
		return 2
	}
	labels, err := explainLabels(cc, *kubeconfig, ns, nsLabels)
	if err != nil {
		fmt.Fprintln(stderr, "injector explain:", err)
		return 1
	}
	x := engine.Explain(pod, inject.Namespace{Name: ns, Labels: labels})
	switch *output {
	case "text":
		fmt.Fprint(stdout, x.Text())
	case "json", "yaml":
		b, err := yaml.Marshal(x)
		if err == nil && *output == "json" {
			b, err = yaml.YAMLToJSON(b)
			b = append(b, '\n')
		}
		if err != nil {
			fmt.Fprintln(stderr, "injector explain:", err)
			return 1
		}
		_, _ = stdout.Write(b)
	default:
		fmt.Fprintf(stderr, "injector explain: --output %q: use text, json or yaml\n", *output)
		return 2
	}
	return 0
}
