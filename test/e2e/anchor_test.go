package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/injector/test/e2e/harness"
)

// Istio's sidecar injector as an anchor for the pod-creation benchmarks
// (issue 18): the test-only module test/istio-anchor builds istiod's own
// /inject handler with a default install's templates and mesh config into a
// binary (cached by test/istio-anchor/build.sh; the first build compiles
// Istio, about 14 minutes here). Only the benchmarks use it; set
// E2E_ISTIO_ANCHOR=off to leave it out.

// istioStatusKey is the annotation Istio's injector writes on every pod it
// injects, as ours writes sidecar-injector.io/status.
const istioStatusKey = "sidecar.istio.io/status"

type istioAnchor struct {
	url, dir string
	ca       []byte
	cmd      *exec.Cmd
	out      *harness.SyncBuffer
}

var (
	istioOnce sync.Once
	istioInst *istioAnchor
	istioErr  error
)

// istioEnabled reports whether the benchmarks include the Istio anchor.
func istioEnabled() bool { return os.Getenv("E2E_ISTIO_ANCHOR") != "off" }

// sharedIstioAnchor builds (once, cached across runs) and starts the
// anchor; it is stopped by stopShared.
func sharedIstioAnchor(tb testing.TB) *istioAnchor {
	tb.Helper()
	istioOnce.Do(func() { istioInst, istioErr = startIstioAnchor() })
	if istioErr != nil {
		tb.Fatalf("Istio anchor (set E2E_ISTIO_ANCHOR=off to leave it out): %v", istioErr)
	}
	return istioInst
}

func startIstioAnchor() (*istioAnchor, error) {
	script := filepath.Join(harness.RepoRoot(), "test", "istio-anchor", "build.sh")
	var stderr bytes.Buffer
	build := exec.Command("bash", script)
	build.Stderr = &stderr
	binOut, err := build.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %v\n%s", script, err, stderr.String())
	}
	bin := strings.TrimSpace(string(binOut))
	dir, err := os.MkdirTemp("", "e2e-istio-anchor-")
	if err != nil {
		return nil, err
	}
	a := &istioAnchor{dir: dir, out: &harness.SyncBuffer{}}
	ready := filepath.Join(dir, "ready")
	caFile := filepath.Join(dir, "ca.pem")
	a.cmd = exec.Command(bin, "--listen=127.0.0.1:0", "--cert-dir="+filepath.Join(dir, "certs"),
		"--ca-out="+caFile, "--ready="+ready)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	if err := a.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if b, err := os.ReadFile(ready); err == nil && len(bytes.TrimSpace(b)) > 0 {
			a.url = "https://" + strings.TrimSpace(string(b)) + "/inject"
			break
		}
		if time.Now().After(deadline) {
			a.stop()
			return nil, fmt.Errorf("the anchor wrote no %s within a minute; its output:\n%s", ready, a.out.Tail(4<<10))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a.ca, err = os.ReadFile(caFile); err != nil {
		a.stop()
		return nil, err
	}
	return a, nil
}

func (a *istioAnchor) stop() {
	if a == nil || a.cmd == nil || a.cmd.Process == nil {
		return
	}
	_ = a.cmd.Process.Kill()
	_ = a.cmd.Wait()
	os.RemoveAll(a.dir)
}

// setIstio points the chart's webhook configuration (same selectors, same
// namespace) at the anchor and waits until the API server's answer carries
// Istio's status annotation.
func (p *perfEnv) setIstio(tb testing.TB, a *istioAnchor) {
	tb.Helper()
	p.pointChartAt(tb, a.url, a.ca)
	harness.WaitFor(tb, 30*time.Second, "the API server calls Istio's injector", func() error {
		pod, err := p.cs.CoreV1().Pods(p.ns).Create(context.Background(), harness.AppPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if _, ok := pod.Annotations[istioStatusKey]; !ok {
			return fmt.Errorf("not injected by Istio yet")
		}
		return nil
	})
}

// apiServerCPU reads the CPU time (user + system) the kube-apiserver of
// the control plane has used so far, from /proc: the process listening on
// the API server's port.
type apiServerCPU struct {
	pid     int
	clkTick float64
}

func findAPIServer(tb testing.TB, p *perfEnv) *apiServerCPU {
	tb.Helper()
	u, err := url.Parse(p.c.Config.Host)
	require.NoError(tb, err)
	port := u.Port()
	require.NotEmpty(tb, port, "API server host %q has no port", p.c.Config.Host)
	entries, err := os.ReadDir("/proc")
	require.NoError(tb, err)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if filepath.Base(args[0]) != "kube-apiserver" {
			continue
		}
		for _, a := range args {
			if a == "--secure-port="+port {
				// USER_HZ is 100 on every Linux architecture Go supports.
				return &apiServerCPU{pid: pid, clkTick: 100}
			}
		}
	}
	tb.Fatalf("no kube-apiserver process with --secure-port=%s in /proc", port)
	return nil
}

// seconds is the process's user + system CPU time so far.
func (c *apiServerCPU) seconds(tb testing.TB) float64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.pid))
	require.NoError(tb, err)
	// The command name may hold spaces: fields start after its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, err := strconv.ParseFloat(f[11], 64)
	require.NoError(tb, err)
	stime, err := strconv.ParseFloat(f[12], 64)
	require.NoError(tb, err)
	return (utime + stime) / c.clkTick
}
