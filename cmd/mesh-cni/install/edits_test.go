package install

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-injector/injector/cmd/mesh-cni/plugin"
)

// The agent against a primary CNI that shares its folder: lost updates,
// name clashes, links, failed writes, and what it says and leaves behind.

func chainedTypes(t *testing.T, path string) []string {
	t.Helper()
	return types(plugins(t, path))
}

func gen(n int) string {
	// Each generation a different size, as the primary's rewrites are.
	return strings.Replace(bridgeConflist, `"cni0"`, `"cni0", "gen": "`+strings.Repeat("g", n)+`"`, 1)
}

func genOf(t *testing.T, path string) int {
	t.Helper()
	ps := plugins(t, path)
	g, _ := ps[0]["gen"].(string)
	return len(g)
}

// The primary CNI rewrites its file while the agent edits it, in each
// window of the edit (after the read, just before the swap) and in each way
// (a new file renamed over, or the same file rewritten in place): its
// update is never lost, and the entry ends up in its new version.
func TestNoLostUpdate(t *testing.T) {
	for _, window := range []string{"after the read", "before the swap"} {
		for _, how := range []string{"renamed over", "in place"} {
			t.Run(window+", "+how, func(t *testing.T) {
				n := newNode(t)
				conf := n.write(t, "10-pods.conflist", gen(1))
				fired := false
				primary := func(path string) {
					if fired || path != conf {
						return
					}
					fired = true
					if how == "in place" {
						if err := os.WriteFile(conf, []byte(gen(2)), 0o644); err != nil {
							t.Error(err)
						}
						return
					}
					tmp := filepath.Join(n.o.ConfDir, ".primary.tmp")
					if err := os.WriteFile(tmp, []byte(gen(2)), 0o644); err != nil {
						t.Error(err)
					}
					if err := os.Rename(tmp, conf); err != nil {
						t.Error(err)
					}
				}
				hook := &beforeCheck
				if window == "before the swap" {
					hook = &beforeExchange
				}
				*hook = primary
				t.Cleanup(func() { *hook = nil })
				if err := Sync(n.o); err != nil {
					t.Fatal(err)
				}
				if !fired {
					t.Fatal("the primary never wrote")
				}
				if g := genOf(t, conf); g != 2 {
					t.Errorf("the primary's update was lost: generation %d in the file", g)
				}
				if got := chainedTypes(t, conf); !reflect.DeepEqual(got, []string{"bridge", "portmap", plugin.Type}) {
					t.Errorf("plugins %v", got)
				}
				left, _ := filepath.Glob(filepath.Join(n.o.ConfDir, tempPattern))
				if len(left) > 0 {
					t.Errorf("temporary files left: %v", left)
				}
			})
		}
	}
}

// A .conf whose .conflist name is taken by another configuration: both are
// left alone, the log and the readiness check say why. The agent's own
// earlier conversion, by contrast, is replaced when the primary writes its
// .conf again.
func TestConvertClash(t *testing.T) {
	n := newNode(t)
	conf := n.write(t, "10-mynet.conf", `{"cniVersion":"0.3.1","name":"mynet","type":"bridge","bridge":"cni0"}`)
	other := `{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"macvlan","master":"eth0"},{"type":"tuning"}]}`
	list := n.write(t, "10-mynet.conflist", other)
	err := Sync(n.o)
	if !errors.Is(err, errClash) || !strings.Contains(err.Error(), "10-mynet.conflist") {
		t.Errorf("Sync: %v, want the clash named", err)
	}
	if b, _ := os.ReadFile(list); string(b) != other {
		t.Errorf("the other .conflist was overwritten:\n%s", b)
	}
	if _, err := os.Stat(conf); err != nil {
		t.Errorf("the .conf is gone: %v", err)
	}
	if err := Check(n.o); !errors.Is(err, errClash) {
		t.Errorf("Check: %v, want the clash", err)
	}

	// Ours: converted, then the primary writes its .conf again (changed).
	n = newNode(t)
	conf = n.write(t, "10-mynet.conf", `{"cniVersion":"0.3.1","name":"mynet","type":"bridge","bridge":"cni0"}`)
	list = filepath.Join(n.o.ConfDir, "10-mynet.conflist")
	if err := Sync(n.o); err != nil {
		t.Fatal(err)
	}
	n.write(t, "10-mynet.conf", `{"cniVersion":"0.3.1","name":"mynet","type":"bridge","bridge":"cni1"}`)
	if err := Sync(n.o); err != nil {
		t.Fatal(err)
	}
	ps := plugins(t, list)
	if got := types(ps); !reflect.DeepEqual(got, []string{"bridge", plugin.Type}) || ps[0]["bridge"] != "cni1" {
		t.Errorf("the agent's own .conflist was not replaced with the new .conf: %v", ps)
	}
	if _, err := os.Stat(conf); !os.IsNotExist(err) {
		t.Errorf("the .conf is still there")
	}
	if err := Check(n.o); err != nil {
		t.Errorf("Check: %v", err)
	}
}

// A symbolic link to a file inside the folder stays a link, and its target
// is chained and restored; a link elsewhere is left alone, and said so.
func TestSymlinkedConfig(t *testing.T) {
	n := newNode(t)
	if err := os.MkdirAll(filepath.Join(n.o.ConfDir, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(n.o.ConfDir, "real", "pods.conflist")
	if err := os.WriteFile(target, []byte(bridgeConflist), 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(n.o.ConfDir, "10-pods.conflist")
	if err := os.Symlink("real/pods.conflist", link); err != nil {
		t.Fatal(err)
	}
	if err := Sync(n.o); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi.Mode(), err)
	}
	if got := chainedTypes(t, target); !reflect.DeepEqual(got, []string{"bridge", "portmap", plugin.Type}) {
		t.Errorf("target: %v", got)
	}
	if st, _ := os.Stat(target); st.Mode().Perm() != 0o640 {
		t.Errorf("the target's mode changed to %v", st.Mode())
	}
	if err := Check(n.o); err != nil {
		t.Errorf("Check: %v", err)
	}
	if err := Uninstall(n.o); err != nil {
		t.Fatal(err)
	}
	if got := chainedTypes(t, target); len(got) != 2 {
		t.Errorf("after Uninstall: %v", got)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("Uninstall replaced the link")
	}

	n = newNode(t)
	outside := filepath.Join(t.TempDir(), "pods.conflist")
	if err := os.WriteFile(outside, []byte(bridgeConflist), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(n.o.ConfDir, "10-pods.conflist")); err != nil {
		t.Fatal(err)
	}
	if err := Sync(n.o); !errors.Is(err, ErrForeignLink) {
		t.Errorf("Sync: %v, want the link refused", err)
	}
	if b, _ := os.ReadFile(outside); string(b) != bridgeConflist {
		t.Errorf("the file outside was changed:\n%s", b)
	}
	if err := Check(n.o); !errors.Is(err, ErrForeignLink) {
		t.Errorf("Check: %v", err)
	}
	if err := Uninstall(n.o); err != nil {
		t.Errorf("Uninstall: %v", err)
	}
}

// An entry that cannot be removed keeps the binary it names, is not
// logged as removed, and makes --uninstall exit non-zero.
func TestUninstallKeepsBinaryWhenAnEntryStays(t *testing.T) {
	n := newNode(t)
	conf := n.write(t, "10-pods.conflist", bridgeConflist)
	if err := Sync(n.o); err != nil {
		t.Fatal(err)
	}
	errWrite = func(path string) error {
		if path == conf {
			return errors.New("read-only file system")
		}
		return nil
	}
	t.Cleanup(func() { errWrite = nil })
	n.log.Reset()
	var stdout, stderr bytes.Buffer
	code := Main([]string{"--uninstall", "--bin-dir=" + n.o.BinDir, "--conf-dir=" + n.o.ConfDir}, &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "read-only file system") || !strings.Contains(stderr.String(), "keeping") {
		t.Errorf("--uninstall: exit %d, stderr %q", code, stderr.String())
	}
	if strings.Contains(stdout.String(), "removed") {
		t.Errorf("logged a removal that did not happen: %q", stdout.String())
	}
	if _, err := os.Stat(filepath.Join(n.o.BinDir, plugin.Type)); err != nil {
		t.Errorf("the binary was removed: %v", err)
	}
	if got := chainedTypes(t, conf); len(got) != 3 {
		t.Errorf("plugins %v", got)
	}

	// A file that does not parse but names the plugin: kept, and the binary too.
	errWrite = nil
	n.write(t, "20-broken.conflist", `{"plugins": [{"type": "mesh-cni"`)
	if err := Uninstall(n.o); err == nil || !strings.Contains(err.Error(), "20-broken.conflist") {
		t.Errorf("Uninstall: %v", err)
	}
	if _, err := os.Stat(filepath.Join(n.o.BinDir, plugin.Type)); err != nil {
		t.Errorf("the binary was removed: %v", err)
	}
}

// Stopped with nothing of its own left anywhere (an unparseable file that
// is not ours, a binary that was never installed), the agent exits cleanly.
func TestStopWithNothingToRemove(t *testing.T) {
	n := newNode(t)
	n.write(t, "05-broken.conflist", `{"cniVersion": "1.0.0", "name": `)
	n.write(t, "10-pods.conflist", bridgeConflist)
	if err := Sync(n.o); err == nil {
		t.Error("Sync with a broken first file succeeded")
	}
	if err := Uninstall(n.o); err != nil {
		t.Errorf("Uninstall: %v", err)
	}
	if err := Uninstall(n.o); err != nil {
		t.Errorf("Uninstall with nothing installed: %v", err)
	}
}

// A temporary file an earlier agent left (killed mid-write) goes at start;
// an error that recurs every poll is logged once.
func TestRunCleansUpAndLogsOnce(t *testing.T) {
	n := newNode(t)
	var stale []string
	for _, d := range []string{n.o.BinDir, n.o.ConfDir} {
		p := filepath.Join(d, ".mesh-cni.tmp-123456")
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
		stale = append(stale, p)
	}
	n.write(t, "10-pods.conflist", `{"cniVersion": "1.0.0", "name": "pods", "plugins": 5}`)
	log := &syncBuffer{}
	n.o.Log = log
	n.o.Interval = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, n.o) }()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(log.String(), "plugins is not a list") == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // many more polls
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if c := strings.Count(log.String(), "plugins is not a list"); c != 1 {
		t.Errorf("the recurring error was logged %d times:\n%s", c, log.String())
	}
	for _, p := range stale {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there", p)
		}
	}
}

// A recurring error is recalled every repeatEvery, and its end is logged.
func TestRepeats(t *testing.T) {
	var log bytes.Buffer
	o := Options{Log: &log, Interval: time.Second, ConfDir: "/etc/cni/net.d"}
	var r repeats
	t0 := time.Now()
	boom := errors.New("boom")
	for i := 0; i < 400; i++ {
		r.report(o, t0.Add(time.Duration(i)*time.Second), boom)
	}
	r.report(o, t0.Add(400*time.Second), nil)
	want := "mesh-cni install: boom (retrying every 1s; logged again every 5m0s while it recurs)\n" +
		"mesh-cni install: boom (still, 300 more times in 5m0s)\n" +
		"mesh-cni install: recovered from: boom\n"
	if log.String() != want {
		t.Errorf("log:\n%s\nwant:\n%s", log.String(), want)
	}
}
