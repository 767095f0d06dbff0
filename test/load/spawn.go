package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sidecar-injector/injector/certs"
)

// spawnOptions start an `injector serve` for one run.
type spawnOptions struct {
	// Binary is a built injector; empty builds ./cmd/injector of the module
	// the tool runs in (CGO_ENABLED=0, as `make build`).
	Binary          string
	NamespaceLabels string
	// Pprof serves /debug/pprof on a free loopback port.
	Pprof bool
	// Args are appended to the serve command line (they win over the
	// defaults: the last occurrence of a flag counts).
	Args   []string
	Stderr io.Writer
	// Floor starts this tool's floor server (floor.go) instead of the
	// injector, answering BodyPath's review (empty: the embedded one).
	Floor    bool
	BodyPath string
	// Env is added to the server's environment (KEY=VALUE), after this
	// tool's own: set GOGC or GOMAXPROCS for the server alone.
	Env []string
}

// spawnDeadline bounds how long --spawn waits for the server to answer
// /readyz, and then to stop after SIGTERM (it is killed then). The tests
// set their tier's deadline.
var spawnDeadline = time.Minute

// spawned is a running injector.
type spawned struct {
	cmd      *exec.Cmd
	dir      string
	URL      string
	PprofURL string
	TLS      *tls.Config
	Binary   string
	Args     []string
	exited   chan struct{}
	waitErr  error
}

// spawn generates a CA and serving certificate into a temporary directory,
// builds the injector if needed, starts `injector serve` on a free loopback
// port and waits until /readyz answers 200.
func spawn(ctx context.Context, o spawnOptions) (_ *spawned, err error) {
	dir, err := os.MkdirTemp("", "injector-load-")
	if err != nil {
		return nil, err
	}
	s := &spawned{dir: dir, exited: make(chan struct{})}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()

	ca, err := certs.NewCA("injector-load-ca", 24*time.Hour)
	if err != nil {
		return s, err
	}
	pair, err := ca.IssueServing([]string{"127.0.0.1", "localhost"}, 24*time.Hour)
	if err != nil {
		return s, err
	}
	certDir := filepath.Join(dir, "tls")
	if err := certs.WriteDir(certDir, pair, ca.CertPEM); err != nil {
		return s, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	s.TLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	s.Binary = o.Binary
	if o.Floor {
		if s.Binary, err = os.Executable(); err != nil {
			return s, err
		}
	} else if s.Binary == "" {
		s.Binary = filepath.Join(dir, "injector")
		if err := buildInjector(ctx, s.Binary, o.Stderr); err != nil {
			return s, err
		}
	}

	addr, err := freeAddr()
	if err != nil {
		return s, err
	}
	s.URL = "https://" + addr + "/inject"
	if o.Floor {
		s.Args = []string{floorCommand, "--listen", addr, "--cert-dir", certDir}
		if o.BodyPath != "" {
			s.Args = append(s.Args, "--body", o.BodyPath)
		}
		if ns, _, ok := strings.Cut(o.NamespaceLabels, "="); ok {
			s.Args = append(s.Args, "--namespace", ns)
		}
	} else {
		s.Args = []string{"serve",
			"--listen", addr,
			"--cert-dir", certDir,
			"--metrics-listen", "",
			"--namespace-labels", o.NamespaceLabels,
			"--log-level", "warn",
		}
		if o.Pprof {
			maddr, err := freeAddr()
			if err != nil {
				return s, err
			}
			s.Args = append(s.Args, "--enable-pprof", "--metrics-listen", maddr)
			s.PprofURL = "http://" + maddr
		}
	}
	s.Args = append(s.Args, o.Args...)

	s.cmd = exec.Command(s.Binary, s.Args...)
	if len(o.Env) > 0 {
		s.cmd.Env = append(os.Environ(), o.Env...)
	}
	s.cmd.Stdout = o.Stderr
	s.cmd.Stderr = o.Stderr
	if err := s.cmd.Start(); err != nil {
		return s, err
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx, addr, spawnDeadline); err != nil {
		return s, err
	}
	return s, nil
}

// PID is the server's process id.
func (s *spawned) PID() int { return s.cmd.Process.Pid }

func (s *spawned) waitReady(ctx context.Context, addr string, timeout time.Duration) error {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: s.TLS.Clone()}}
	defer c.CloseIdleConnections()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for wctx.Err() == nil {
		var resp *http.Response
		req, err := http.NewRequestWithContext(wctx, http.MethodGet, "https://"+addr+"/readyz", nil)
		if err == nil {
			resp, err = c.Do(req)
		}
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		last = err
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited before it was ready: %v", s.Args[0], s.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-wctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready (/readyz answering 200) after %s: %v", s.Args[0], timeout, last)
}

// stop sends SIGTERM, waits for a graceful exit (then kills) and removes
// the temporary directory.
func (s *spawned) stop() error {
	var err error
	if s.cmd != nil && s.cmd.Process != nil {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.exited:
				var ee *exec.ExitError
				if s.waitErr != nil && !errors.As(s.waitErr, &ee) {
					err = s.waitErr
				} else if s.waitErr != nil {
					err = fmt.Errorf("injector serve: %w", s.waitErr)
				}
			case <-time.After(spawnDeadline):
				_ = s.cmd.Process.Kill()
				<-s.exited
				err = fmt.Errorf("injector serve did not stop within %s of SIGTERM; killed", spawnDeadline)
			}
		}
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
	return err
}

// buildInjector builds ./cmd/injector of the enclosing module.
func buildInjector(ctx context.Context, out string, log io.Writer) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "load: building %s/cmd/injector (CGO_ENABLED=0)\n", root)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/injector")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/injector: %v\n%s", err, b)
	}
	return nil
}

func moduleRoot(ctx context.Context) (string, error) {
	b, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the injector module: run from the repository or pass --injector")
	}
	return filepath.Dir(gomod), nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
