package nodeharness

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a process the harness started, with its output in a file.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// startProc runs bin with args, its output appended to logPath. The
// process gets its own process group (stopped as one) and SIGKILL when the
// test process dies (Pdeathsig), so a killed test run leaves no kubelet or
// containerd running; the next run removes the rest (leftovers.go).
func startProc(name, logPath string, env []string, bin string, args ...string) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited returns an error saying how the process ended, or nil while it
// runs.
func (p *Proc) Exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s (pid %d) exited: %v", p.Name, p.PID(), p.waitErr)
	default:
		return nil
	}
}

// Stop sends SIGTERM, waits up to grace, then SIGKILLs the process group.
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(Deadline):
			return fmt.Errorf("%s (pid %d) did not exit within %s of SIGKILL", p.Name, p.PID(), Deadline)
		}
	}
	// Anything else left in its process group.
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	return nil
}

// Said returns the last n error lines of the process's output: klog's
// E and F lines (Kubernetes components), containerd's level=error and
// level=fatal lines, and lines starting with "Error" (cobra). It is what
// a process that exited says about why, ahead of the flag dump it starts
// with.
func (p *Proc) Said(n int) string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if klogError.MatchString(l) || strings.Contains(l, "level=error") || strings.Contains(l, "level=fatal") || strings.HasPrefix(l, "Error") {
			lines = append(lines, l)
			if len(lines) > n {
				lines = lines[1:]
			}
		}
	}
	return strings.Join(lines, "\n")
}

// klogError matches klog's error and fatal line headers (E1207 23:05:46...).
var klogError = regexp.MustCompile(`^[EF]\d{4} \d{2}:\d{2}:\d{2}`)

// exitError says that the process exited and what it said about it.
func (p *Proc) exitError() error {
	err := p.Exited()
	if err == nil {
		return nil
	}
	if said := p.Said(5); said != "" {
		return fmt.Errorf("%w; it said:\n%s", err, said)
	}
	return err
}

// Tail is the last n bytes of the process's output.
func (p *Proc) Tail(n int64) string { return tailFile(p.LogPath, n) }

func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(st.Size()-n, 0)
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err.Error()
	}
	b, _ := io.ReadAll(f)
	s := string(b)
	if off > 0 {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return s
}

// procInfo is one process from /proc.
type procInfo struct {
	PID, PPID int
	Cmdline   string
}

// processes lists every process (best effort: processes may vanish while
// reading).
func processes() []procInfo {
	ents, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(cl) == 0 {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parens.
		s := string(st)
		rest := s[strings.LastIndexByte(s, ')')+1:]
		f := strings.Fields(rest)
		ppid := 0
		if len(f) > 1 {
			ppid, _ = strconv.Atoi(f[1])
		}
		out = append(out, procInfo{PID: pid, PPID: ppid, Cmdline: strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))})
	}
	return out
}

// killMatching SIGKILLs every process whose command line contains one of
// the markers (our temporary folder, our containerd socket) and returns
// what it killed.
func killMatching(markers ...string) []string {
	var killed []string
	self := os.Getpid()
	for _, p := range processes() {
		if p.PID == self {
			continue
		}
		for _, m := range markers {
			if m != "" && strings.Contains(p.Cmdline, m) {
				if syscall.Kill(p.PID, syscall.SIGKILL) == nil {
					killed = append(killed, fmt.Sprintf("%d %s", p.PID, p.Cmdline))
				}
				break
			}
		}
	}
	return killed
}
