package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: web:1}]
`

func TestInjectExitCodes(t *testing.T) {
	ok := write(t, "ok.yaml", deployment)
	code, out, errs := runCLI(t, "inject", "-f", ok, "--namespace-labels", "shop=sidecar-injector.io/injection=enabled")
	assert.Equal(t, 0, code, errs)
	assert.Contains(t, out, "mesh-proxy")
	assert.Contains(t, errs, "deployment/web (namespace shop): injected (namespace_enabled)")

	// Skips are success too, and the report says why.
	code, out, errs = runCLI(t, "inject", "-f", ok)
	assert.Equal(t, 0, code)
	assert.NotContains(t, out, "mesh-proxy")
	assert.Contains(t, errs, "skipped (namespace_not_enabled)")

	bad := write(t, "bad.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n"+strings.Replace(deployment,
		"metadata: {labels: {app: web}}", "metadata: {labels: {app: web}, annotations: {sidecar-injector.io/drain-seconds: soon}}", 1))
	code, out, errs = runCLI(t, "inject", "-f", bad, "--namespace-labels", "*=sidecar-injector.io/injection=enabled")
	assert.Equal(t, 1, code)
	assert.Empty(t, out, "nothing is written on error")
	assert.Contains(t, errs, "bad.yaml: document 2, spec.template: sidecar-injector.io/drain-seconds: \"soon\" is invalid")

	code, _, errs = runCLI(t, "inject", "-f", write(t, "x.yaml", "kind: [oops"))
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "document 1")

	code, _, _ = runCLI(t, "inject")
	assert.Equal(t, 2, code, "-f is required")
	code, _, _ = runCLI(t, "inject", "-f", ok, "--output", "xml")
	assert.Equal(t, 2, code)
}

func TestUninjectRoundTripThroughCLI(t *testing.T) {
	in := write(t, "in.yaml", deployment)
	_, injected, _ := runCLI(t, "inject", "-f", in, "--namespace-labels", "shop=sidecar-injector.io/injection=enabled")
	code, back, errs := runCLI(t, "uninject", "-f", write(t, "inj.yaml", injected))
	assert.Equal(t, 0, code, errs)
	assert.NotContains(t, back, "mesh-")
	assert.Contains(t, errs, "uninjected")
}

func TestExplain(t *testing.T) {
	policy := write(t, "policy.yaml", `apiVersion: sidecar-injector.io/v1alpha1
kind: InjectorConfig
defaults:
  settings: {proxy: {logLevel: info}}
policies:
- name: payments
  namespaces: [pay]
  settings: {lifecycle: {drainSeconds: 25}}
- name: teams
  namespaceSelector: {matchLabels: {team: pay}}
`)
	pod := write(t, "pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: pay, annotations: {sidecar-injector.io/proxy-cpu: 300m}}\nspec:\n  containers: [{name: a, image: a}]\n")
	code, out, errs := runCLI(t, "explain", "--config", policy, "-f", pod,
		"--namespace-labels", "pay=sidecar-injector.io/injection=enabled,team=pay")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "decision:   injected (namespace_enabled)")
	assert.Contains(t, out, "policy:     payments")
	assert.Contains(t, out, "matched:    payments, teams")
	assert.Contains(t, out, "wins over selector matches")
	assert.Regexp(t, `lifecycle.drainSeconds\s+25\s+\(policy payments\)`, out)
	assert.Regexp(t, `proxy.logLevel\s+info\s+\(file defaults\)`, out)
	assert.Regexp(t, `proxy.resources.requests.cpu\s+300m\s+\(annotation sidecar-injector.io/proxy-cpu\)`, out)
	assert.Regexp(t, `proxy.image\s+\S+\s+\(built-in default\)`, out)

	code, out, _ = runCLI(t, "explain", "--config", policy, "--namespace", "other", "--output", "json")
	require.Equal(t, 0, code)
	assert.Contains(t, out, `"policy":"default"`)
}

// A directory's hidden subdirectories (.github, .git) are not read, and
// --injector-namespace makes the CLI skip the injector's own namespace as
// the webhook does.
func TestInjectDirectoryAndInjectorNamespace(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(deployment), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, ".github", "workflows"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".github", "workflows", "ci.yml"), []byte("on: push\njobs: {}\n"), 0o644))
	code, out, errs := runCLI(t, "inject", "-f", dir, "--namespace-labels", "shop=sidecar-injector.io/injection=enabled")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "mesh-proxy")

	code, _, errs = runCLI(t, "inject", "-f", write(t, "w.yaml", strings.Replace(deployment, "namespace: shop", "namespace: mesh-system", 1)),
		"--namespace-labels", "*=sidecar-injector.io/injection=enabled", "--injector-namespace", "mesh-system")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, errs, "injector_namespace")
}

// --help prints a synopsis, what the command does and each flag with the
// name of its value, on standard output.
func TestHelpIsReadable(t *testing.T) {
	for _, cmd := range []string{"inject", "uninject", "explain", "serve", "certs", "demo"} {
		for _, h := range []string{"--help", "-h"} {
			code, out, errs := runCLI(t, cmd, h)
			assert.Equal(t, 0, code, cmd)
			assert.Empty(t, errs, cmd)
			assert.True(t, strings.HasPrefix(out, "Usage: injector "+cmd), "%s %s:\n%s", cmd, h, out)
			assert.Contains(t, out, "\nFlags:\n")
			assert.NotContains(t, out, "injector serve --config\n", "a backquoted phrase must not become a value name")
		}
	}
	_, out, _ := runCLI(t, "inject", "--help")
	assert.Contains(t, out, "Usage: injector inject -f FILE|DIR|- [flags]")
	assert.Contains(t, out, "  --config FILE\n")
	assert.Contains(t, out, "  -f FILE|DIR|-\n")
	assert.Contains(t, out, "  --namespace-labels NS=KEY=VALUE[,KEY=VALUE][;NS2=...]\n")
	_, out, _ = runCLI(t, "explain", "--help")
	assert.Contains(t, out, "Usage: injector explain [-f FILE|-] [flags]")
	assert.Contains(t, out, "  --kubeconfig FILE\n")

	// A wrong flag still says so, with the usage, on standard error.
	code, out, errs := runCLI(t, "inject", "--bogus")
	assert.Equal(t, 2, code)
	assert.Empty(t, out)
	assert.Contains(t, errs, "flag provided but not defined: -bogus")
	assert.Contains(t, errs, "Usage: injector inject")
}

// explain and inject decide alike from the Namespace objects in the input,
// Pod Security labels included; inject reports the policy file's warnings.
func TestExplainReadsNamespaceObjects(t *testing.T) {
	in := write(t, "ps.yaml", `apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {sidecar-injector.io/injection: enabled, pod-security.kubernetes.io/enforce: baseline}
---
`+deployment)
	code, out, errs := runCLI(t, "explain", "-f", in)
	assert.Equal(t, 0, code, errs)
	assert.Contains(t, out, "decision:   refused (pod_security_violation)")
	code, out, errs = runCLI(t, "inject", "-f", in)
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Contains(t, errs, `enforces Pod Security level "baseline"`)

	cfg := write(t, "policy.yaml", "apiVersion: sidecar-injector.io/v1alpha1\nkind: InjectorConfig\ndefaults: {settings: {envoy: {outbound: {connectTimeout: 5ms}}}}\n")
	code, _, errs = runCLI(t, "inject", "-f", write(t, "d.yaml", deployment), "--config", cfg, "--namespace-labels", "shop=sidecar-injector.io/injection=enabled")
	assert.Equal(t, 0, code, errs)
	assert.Contains(t, errs, "injector inject: policy file warning: defaults: settings.envoy.outbound.connectTimeout: 5ms is under 10ms")
	code, out, _ = runCLI(t, "explain", "--config", cfg, "--namespace", "shop")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "policy warning: defaults: settings.envoy.outbound.connectTimeout: 5ms is under 10ms")
}

// A List's null items are skipped, and objects that pass through say why.
func TestListWithNullItems(t *testing.T) {
	in := write(t, "list.yaml", "apiVersion: v1\nkind: List\nitems:\n- null\n- {apiVersion: v1, kind: Service, metadata: {name: s, namespace: shop}}\n")
	code, out, errs := runCLI(t, "inject", "-f", in)
	assert.Equal(t, 0, code, errs)
	assert.Contains(t, out, "kind: List")
	assert.Contains(t, errs, "item 1: null: passed through (null_item)")
	assert.Contains(t, errs, "item 2: service/s: passed through (not_a_workload): a Service has no pods or pod template to inject")

	code, _, errs = runCLI(t, "inject", "-f", write(t, "bad.yaml", "apiVersion: v1\nkind: List\nitems: [5]\n"))
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "document 1, item 1: a List item is a JSON number, not an object")
}
