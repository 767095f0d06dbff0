package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/injector/certs"
	"github.com/sidecar-injector/injector/webhook"
	"github.com/sidecar-injector/injector/webhook/inject"
)

//go:embed samples/*.yaml
var samples embed.FS

// demoMain runs the whole admission path with no cluster: it generates a CA
// and a serving certificate, starts `injector serve` in-process over TLS,
// sends sample pods as an API server would, applies the returned patches and
// prints what was injected and why.
func demoMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo", stderr)
	configPath := fs.String("config", "", "policy file (built-in defaults when empty)")
	full := fs.Bool("full", false, "print the whole injected pod, including the Envoy bootstrap")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if err := runDemo(*configPath, *full, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "injector demo:", err)
		return 1
	}
	return 0
}

func runDemo(configPath string, full bool, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "sidecar-injector-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ca, err := certs.NewCA("sidecar-injector-demo-ca", time.Hour)
	if err != nil {
		return err
	}
	pair, err := ca.IssueServing([]string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		return err
	}
	if err := certs.WriteDir(dir, pair, ca.CertPEM); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		done <- webhook.Serve(ctx, webhook.ServeOptions{
			Listen:     addr,
			CertDir:    dir,
			Loader:     inject.NewLoader(configPath, inject.Options{NativeSidecarsSupported: false, InjectorNamespace: "mesh-system"}),
			Namespaces: webhook.StaticNamespaces{"demo": {"sidecar-injector.io/injection": "enabled"}},
			Log:        log,
			OnReady:    func() { close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		return fmt.Errorf("server did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		return fmt.Errorf("server not ready after 30s")
	}
	fmt.Fprintf(stdout, "injector serving https://%s%s (TLS, certificate from a CA generated just now)\n", addr, webhook.InjectPath)
	fmt.Fprintf(stdout, "namespace \"demo\" is labelled sidecar-injector.io/injection=enabled\n\n")

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}}

	entries, err := samples.ReadDir("samples")
	if err != nil {
		cancel()
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	var runErr error
	for i, e := range entries {
		if err := demoOne(client, addr, path.Join("samples", e.Name()), i, full, stdout); err != nil {
			runErr = err
			break
		}
	}
	cancel()
	if err := <-done; err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

func demoOne(client *http.Client, addr, name string, i int, full bool, stdout io.Writer) error {
	y, err := samples.ReadFile(name)
	if err != nil {
		return err
	}
	podJSON, err := yaml.YAMLToJSON(y)
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid":       fmt.Sprintf("demo-%d", i),
			"kind":      map[string]string{"group": "", "version": "v1", "kind": "Pod"},
			"resource":  map[string]string{"group": "", "version": "v1", "resource": "pods"},
			"namespace": "demo", "operation": "CREATE",
			"userInfo": map[string]any{"username": "demo"},
			"object":   json.RawMessage(podJSON),
		},
	})
	if err != nil {
		return err
	}
	resp, err := client.Post("https://"+addr+webhook.InjectPath, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var rev admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&rev); err != nil {
		return fmt.Errorf("decoding the response: %w", err)
	}
	r := rev.Response
	fmt.Fprintf(stdout, "=== %s (HTTP %s, %s)\n", path.Base(name), resp.Proto, strings.TrimSpace(firstLine(y)))
	fmt.Fprintf(stdout, "decision: %s (%s)\n", r.AuditAnnotations["decision"], r.AuditAnnotations["reason"])
	fmt.Fprintf(stdout, "allowed:  %v\n", r.Allowed)
	if r.Result != nil && r.Result.Message != "" {
		fmt.Fprintf(stdout, "message:  %s\n", r.Result.Message)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(stdout, "warning:  %s\n", w)
	}
	if len(r.Patch) == 0 {
		fmt.Fprintln(stdout)
		return nil
	}
	patch, err := jsonpatch.DecodePatch(r.Patch)
	if err != nil {
		return err
	}
	patched, err := patch.Apply(podJSON)
	if err != nil {
		return fmt.Errorf("the patch does not apply: %w", err)
	}
	fmt.Fprintf(stdout, "patch:    %d operations, %d bytes\n", len(patch), len(r.Patch))
	if !full {
		patched, err = elideBootstrap(patched)
		if err != nil {
			return err
		}
	}
	out, err := yaml.JSONToYAML(patched)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "injected pod:\n%s\n", indent(string(out), "  "))
	return nil
}

// elideBootstrap shortens the Envoy bootstrap argument for display.
func elideBootstrap(podJSON []byte) ([]byte, error) {
	var pod map[string]any
	if err := json.Unmarshal(podJSON, &pod); err != nil {
		return nil, err
	}
	spec, _ := pod["spec"].(map[string]any)
	for _, list := range []string{"containers", "initContainers"} {
		cs, _ := spec[list].([]any)
		for _, c := range cs {
			cm, _ := c.(map[string]any)
			args, _ := cm["args"].([]any)
			for i := range args {
				if s, ok := args[i].(string); ok && strings.HasPrefix(s, "--envoy-bootstrap=") {
					args[i] = fmt.Sprintf("--envoy-bootstrap=<Envoy bootstrap, %d characters compressed; run with --full to see it>", len(s)-len("--envoy-bootstrap="))
				}
			}
		}
	}
	return json.Marshal(pod)
}

func firstLine(b []byte) string {
	s := string(b)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimPrefix(s, "# ")
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}
