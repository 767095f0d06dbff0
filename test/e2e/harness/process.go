package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

var (
	binMu    sync.Mutex
	binPaths = map[bool]string{}
)

// BuildInjector builds cmd/injector once per process and returns its
// path. Tests running under -race pass race=true: the packages are then
// already compiled for the test binary, and the server's own wiring is
// race-checked too.
func BuildInjector(race bool) (string, error) {
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := binPaths[race]; ok {
		return p, nil
	}
	dir, err := os.MkdirTemp("", "sidecar-injector-bin-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "injector")
	args := []string{"build", "-o", path}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/injector")
	cmd := exec.Command("go", args...)
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %v: %v\n%s", args, err, out)
	}
	binPaths[race] = path
	return path, nil
}

// RemoveBuilt removes what BuildInjector built; a package that builds
// calls it from its TestMain after m.Run.
func RemoveBuilt() {
	binMu.Lock()
	defer binMu.Unlock()
	for race, p := range binPaths {
		os.RemoveAll(filepath.Dir(p))
		delete(binPaths, race)
	}
}

// FreeAddr returns a loopback address with a port nobody listens on.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Process is a running `injector serve`.
type Process struct {
	Name string
	// Addr is the webhook's HTTPS address (--listen).
	Addr string
	Out  *SyncBuffer
	cmd  *exec.Cmd
	done chan error
}

// StartServe runs `injector serve --listen=<free port> --metrics-listen=
// --log-format=text` plus args.
func StartServe(bin, name string, args ...string) (*Process, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	p := &Process{Name: name, Out: &SyncBuffer{}, Addr: addr, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"serve", "--listen=" + addr, "--metrics-listen=", "--log-format=text"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.Out, p.Out
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.done <- p.cmd.Wait() }()
	return p, nil
}

// Stop sends SIGTERM and waits (killing after Deadline).
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(Deadline):
		_ = p.cmd.Process.Kill()
	}
}

// Exited reports whether the process has ended.
func (p *Process) Exited() error {
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Errorf("%s exited: %v", p.Name, err)
	default:
		return nil
	}
}

// Readyz fetches /readyz over the webhook's HTTPS listener, as the chart's
// readiness probe does (the kubelet does not verify the certificate
// either).
func (p *Process) Readyz() (int, string, error) {
	c := &http.Client{Timeout: Deadline, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a probe, like the kubelet's
	resp, err := c.Get("https://" + p.Addr + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// WaitReady polls /readyz until it answers 200, for at most timeout (the
// tier's deadline).
func (p *Process) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if err := p.Exited(); err != nil {
			return err
		}
		code, body, err := p.Readyz()
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("HTTP %d: %s", code, body)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready (/readyz answering 200) after %s: %v", p.Name, timeout, last)
}

// ServedCertificate dials the server and returns the TLS state (the
// caller verifies the chain against the caBundle it cares about).
func (p *Process) ServedCertificate(ctx context.Context) (*tls.ConnectionState, error) {
	d := &tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // verified by the caller
	conn, err := d.DialContext(ctx, "tcp", p.Addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	st := conn.(*tls.Conn).ConnectionState()
	return &st, nil
}

// SyncBuffer collects output from several goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Tail returns the last n bytes.
func (s *SyncBuffer) Tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.b.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// String returns everything written.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
