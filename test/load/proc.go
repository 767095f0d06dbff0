package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// userHZ is the unit of the CPU times in /proc/*/stat (USER_HZ, 100 on
// every Linux architecture Go supports).
const userHZ = 100

// procMem is what /proc/PID/status says about memory, in KiB.
type procMem struct {
	RSS  int64 // VmRSS: resident now
	HWM  int64 // VmHWM: the peak resident set since the process started
	Anon int64 // RssAnon: heap, stacks, ... (RSS = Anon + File + Shmem)
	File int64 // RssFile: mapped files, mostly the binary's own pages
}

func readProcMem(pid int) (procMem, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMem{}, err
	}
	var m procMem
	found := 0
	for line := range bytes.Lines(data) {
		var dst *int64
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst = &m.RSS
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			dst = &m.HWM
		case bytes.HasPrefix(line, []byte("RssAnon:")):
			dst = &m.Anon
		case bytes.HasPrefix(line, []byte("RssFile:")):
			dst = &m.File
		default:
			continue
		}
		f := strings.Fields(string(line))
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return procMem{}, fmt.Errorf("/proc/%d/status: %q: %w", pid, line, err)
		}
		*dst = v
		if dst == &m.RSS || dst == &m.HWM {
			found++
		}
	}
	if found < 2 {
		return procMem{}, fmt.Errorf("/proc/%d/status: no VmRSS/VmHWM (a kernel thread or a zombie?)", pid)
	}
	return m, nil
}

// procCPU is a process's user+system CPU time.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may contain spaces:
	// fields are counted after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/PID/stat")
	}
	f := strings.Fields(string(data[i+1:]))
	// After ')': state(3) ppid(4) ... utime(14) stime(15), so utime is f[11].
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// selfCPU is the load tool's own CPU time (it shares the machine with the
// server, so it matters).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// systemCPU returns the machine's busy and total CPU time from /proc/stat
// (all cores summed).
func systemCPU() (busy, total time.Duration, err error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, errors.New("empty /proc/stat")
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, errors.New("unexpected /proc/stat")
	}
	var sum, idle int64
	for i, s := range fields[1:] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, err
		}
		// user nice system idle iowait irq softirq steal guest guest_nice:
		// guest time is already included in user/nice.
		if i >= 8 {
			break
		}
		sum += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	tick := time.Second / userHZ
	return time.Duration(sum-idle) * tick, time.Duration(sum) * tick, nil
}

// loadAvg returns /proc/loadavg's first three fields.
func loadAvg() [3]float64 {
	var out [3]float64
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return out
	}
	f := strings.Fields(string(data))
	for i := 0; i < 3 && i < len(f); i++ {
		out[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return out
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func kernelRelease() string {
	data, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// rssSampler polls a process's memory every interval until stopped.
type rssSampler struct {
	pid      int
	interval time.Duration

	mu      sync.Mutex
	peak    procMem // the sample with the highest VmRSS
	samples int
	err     error
	stop    context.CancelFunc
	done    chan struct{}
}

func startRSSSampler(pid int, interval time.Duration) *rssSampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &rssSampler{pid: pid, interval: interval, stop: cancel, done: make(chan struct{})}
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	m, err := readProcMem(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		return
	}
	s.samples++
	if m.RSS > s.peak.RSS {
		s.peak = m
	}
}

// finish stops sampling, takes a last sample and returns the sample with
// the highest VmRSS and the number of samples.
func (s *rssSampler) finish() (peak procMem, n int, err error) {
	s.stop()
	<-s.done
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.samples, s.err
}
