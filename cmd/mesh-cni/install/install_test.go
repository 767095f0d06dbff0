package install

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidecar-injector/injector/cmd/mesh-cni/plugin"
)

const bridgeConflist = `{
  "cniVersion": "1.0.0",
  "name": "pods",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`

type node struct {
	o    Options
	log  bytes.Buffer
	self []byte
}

func newNode(t *testing.T) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{self: []byte("\x7fELF mesh-cni build 1")}
	n.o = Options{BinDir: filepath.Join(dir, "bin"), ConfDir: filepath.Join(dir, "net.d"), Self: filepath.Join(dir, "self"), Interval: 10 * time.Millisecond, Log: &n.log}
	for _, d := range []string{n.o.BinDir, n.o.ConfDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(n.o.Self, n.self, 0o755); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *node) write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(n.o.ConfDir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func plugins(t *testing.T, path string) []map[string]any {
	t.Helper()
	var c struct {
		Plugins []map[string]any `json:"plugins"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return c.Plugins
}

func types(ps []map[string]any) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p["type"].(string))
	}
	return out
}

func semantic(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// Install, keep chained, uninstall: the binary and the entry appear, the
// entry declares the capability and comes after the primary plugins, a
// second Sync changes nothing, and Uninstall leaves the file as it was.
func TestInstallChainUninstall(t *testing.T) {
	n := newNode(t)
	conf := n.write(t, "10-pods.conflist", bridgeConflist)
	n.write(t, "99-other.conflist", strings.Replace(bridgeConflist, `"pods"`, `"other"`, 1))
	if err := Check(n.o); err == nil {
		t.Error("Check passes before the install")
	}
	if err := Sync(n.o); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(n.o.BinDir, plugin.Type)); err != nil || !bytes.Equal(b, n.self) {
		t.Errorf("binary not installed: %v", err)
	}
	if st, _ := os.Stat(filepath.Join(n.o.BinDir, plugin.Type)); st.Mode().Perm() != 0o755 {
		t.Errorf("binary mode %v", st.Mode())
	}
	ps := plugins(t, conf)
	if got := types(ps); !reflect.DeepEqual(got, []string{"bridge", "portmap", plugin.Type}) {
		t.Errorf("plugins %v", got)
	}
	if caps, _ := ps[2]["capabilities"].(map[string]any); caps[plugin.PodAnnotationsCapability] != true {
		t.Errorf("our entry %v lacks the capability", ps[2])
	}
	if got := types(plugins(t, filepath.Join(n.o.ConfDir, "99-other.conflist"))); len(got) != 2 {
		t.Errorf("a file that is not the first was changed: %v", got)
	}
	if err := Check(n.o); err != nil {
		t.Errorf("Check after the install: %v", err)
	}
	st1, _ := os.Stat(conf)
	n.log.Reset()
	if err := Sync(n.o); err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(conf); !st2.ModTime().Equal(st1.ModTime()) || n.log.Len() != 0 {
		t.Errorf("a second Sync rewrote something: %s", n.log.String())
	}
	if err := Uninstall(n.o); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(conf)
	if !reflect.DeepEqual(semantic(t, b), semantic(t, []byte(bridgeConflist))) {
		t.Errorf("after Uninstall the configuration differs from the original:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(n.o.BinDir, plugin.Type)); !os.IsNotExist(err) {
		t.Errorf("the binary is still there: %v", err)
	}
	if st, _ := os.Stat(conf); st.Mode().Perm() != 0o644 {
		t.Errorf("the file's mode changed to %v", st.Mode())
	}
	left, _ := filepath.Glob(filepath.Join(n.o.ConfDir, ".*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// The primary CNI rewrites its file (without our entry), or a new file
// becomes the first: the agent follows, and the old first file loses the
// entry. A stale or duplicated entry of ours is replaced by one.
func TestRechain(t *testing.T) {
	n := newNode(t)
	conf := n.write(t, "20-pods.conflist", bridgeConflist)
	if err := Sync(n.o); err != nil {
		t.Fatal(err)
	}
	n.write(t, "20-pods.conflist", bridgeConflist) // rewritten by the primary CNI
	if err := Sync(n.o); err != nil {
		t.Fatal(err)
	}
	if got := types(plugins(t, conf)); !reflect.DeepEqual(got, []string{"bridge", "portmap", plugin.Type}) {
		t.Errorf("not re-chained: %v", got)
	}
	first := n.write(t, "10-new.conflist", strings.Replace(bridgeConflist, `"portmap", "capabilities": {"portMappings": true}`,
		`"mesh-cni"}, {"type": "mesh-cni", "old": true`, 1))
	if err := Sync(n.o); err != nil {
		t.Fatal(err)
	}
	if got := types(plugins(t, first)); !reflect.DeepEqual(got, []string{"bridge", plugin.Type}) {
		t.Errorf("the new first file: %v", got)
	}
	if got := types(plugins(t, conf)); !reflect.DeepEqual(got, []string{"bridge", "portmap"}) {
		t.Errorf("the file that is no longer first keeps our entry: %v", got)
	}
}

// A single-plugin .conf becomes a .conflist holding it and ours.
func TestSinglePluginConf(t *testing.T) {
	n := newNode(t)
	old := n.write(t, "10-bridge.conf", `{"cniVersion":"0.4.0","name":"pods","type":"bridge","bridge":"cni0","ipam":{"type":"host-local"}}`)
	if err := Sync(n.o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("the .conf is still there")
	}
	list := filepath.Join(n.o.ConfDir, "10-bridge.conflist")
	ps := plugins(t, list)
	if got := types(ps); !reflect.DeepEqual(got, []string{"bridge", plugin.Type}) || ps[0]["bridge"] != "cni0" {
		t.Errorf("plugins %v", ps)
	}
	var top map[string]any
	b, _ := os.ReadFile(list)
	_ = json.Unmarshal(b, &top)
	if top["cniVersion"] != "0.4.0" || top["name"] != "pods" {
		t.Errorf("top %v", top)
	}
}

// syncBuffer is a log written by Run's goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Run waits for a configuration, chains it, and uninstalls on stop.
func TestRunUntilStopped(t *testing.T) {
	n := newNode(t)
	log := &syncBuffer{}
	n.o.Log = log
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, n.o) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), "waiting for the node's CNI configuration") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	conf := n.write(t, "10-pods.conflist", bridgeConflist)
	deadline = time.Now().Add(10 * time.Second)
	for Check(n.o) != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := Check(n.o); err != nil {
		t.Fatalf("not chained while running: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := types(plugins(t, conf)); len(got) != 2 {
		t.Errorf("after stop: %v", got)
	}
	for _, want := range []string{"waiting for the node's CNI configuration", "chained the plugin into", "removed the plugin from"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

// A binary replaced behind the agent's back is installed again.
func TestReinstallReplacedBinary(t *testing.T) {
	n := newNode(t)
	n.write(t, "10-pods.conflist", bridgeConflist)
	n.o.installed = &seen{}
	if err := Sync(n.o); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(n.o.BinDir, plugin.Type)
	if err := os.WriteFile(bin, []byte("something else, longer than before"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Sync(n.o); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(bin); !bytes.Equal(b, n.self) {
		t.Errorf("not reinstalled: %q", b)
	}
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if err := Sync(n.o); err != nil {
		t.Fatal(err)
	}
	if err := Check(n.o); err != nil {
		t.Errorf("after removal: %v", err)
	}
}
