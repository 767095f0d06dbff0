package nodeharness

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupName is the kubelet's cgroupRoot, created by the harness in every
// cgroup v1 hierarchy (and the hybrid unified one) and removed with
// everything below it.
const cgroupName = "sidecar-injector-node"

const cgroupFS = "/sys/fs/cgroup"

func cgroupRoots() []string {
	ents, _ := os.ReadDir(cgroupFS)
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join(cgroupFS, e.Name(), cgroupName))
		}
	}
	return out
}

// setupCgroups creates the kubelet's cgroupRoot. A new cpuset cgroup has
// no CPUs or memory nodes until given its parent's.
func setupCgroups() error {
	for _, d := range cgroupRoots() {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			if strings.Contains(d, "/unified/") || strings.Contains(d, "/systemd/") {
				continue // best effort outside the v1 resource controllers
			}
			return fmt.Errorf("cgroup %s: %w", d, err)
		}
		if filepath.Base(filepath.Dir(d)) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(filepath.Dir(d), f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
					return fmt.Errorf("cgroup %s/%s: %w", d, f, err)
				}
			}
		}
	}
	return nil
}

// removeCgroups removes cgroupRoot and everything below it, deepest
// first, killing any process still in one (a container the kubelet did not
// stop) first.
func removeCgroups() error {
	var dirs []string
	for _, r := range cgroupRoots() {
		_ = filepath.WalkDir(r, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	var errs []error
	for _, d := range dirs {
		var err error
		// Until the processes killed below are gone, for up to Deadline.
		for end := time.Now().Add(Deadline); ; {
			if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			if b, rerr := os.ReadFile(filepath.Join(d, "cgroup.procs")); rerr == nil {
				for _, f := range strings.Fields(string(b)) {
					if pid, _ := strconv.Atoi(f); pid > 0 {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			if time.Now().After(end) {
				err = fmt.Errorf("still there after %s: %w", Deadline, err)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// mountPoints lists the mount points in /proc/self/mountinfo.
func mountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	return out
}

var octal = regexp.MustCompile(`\\[0-7]{3}`)

func unescapeMount(s string) string {
	return octal.ReplaceAllStringFunc(s, func(m string) string {
		n, _ := strconv.ParseUint(m[1:], 8, 8)
		return string(rune(n))
	})
}

// unmountUnder unmounts everything mounted at or below dir, deepest first
// (lazily when busy): the kubelet's rshared root folder, volumes, the
// sandboxes' shm and network namespaces, containers' root filesystems.
func unmountUnder(dir string) error {
	var errs []error
	for pass := 0; pass < 5; pass++ {
		var mine []string
		for _, m := range mountPoints() {
			if m == dir || strings.HasPrefix(m, dir+"/") {
				mine = append(mine, m)
			}
		}
		if len(mine) == 0 {
			return nil
		}
		sort.Slice(mine, func(i, j int) bool { return len(mine[i]) > len(mine[j]) })
		errs = errs[:0]
		for _, m := range mine {
			if err := unix.Unmount(m, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				if err2 := unix.Unmount(m, unix.MNT_DETACH); err2 != nil && !errors.Is(err2, unix.EINVAL) {
					errs = append(errs, fmt.Errorf("unmounting %s: %w", m, err2))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// fixedHostDirs are written outside the node's folder by what it runs,
// whatever the configuration: containerd 1.6 puts its shims' sockets in
// /run/containerd/s, libcni caches results in /var/lib/cni. Those that did
// not exist before the node are removed after it when they hold no files.
var fixedHostDirs = []string{"/run/containerd", "/var/lib/cni"}

func existing(paths []string) map[string]bool {
	out := map[string]bool{}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			out[p] = true
		}
	}
	return out
}

// removeIfOnlyDirs removes p if nothing but empty folders is below it.
func removeIfOnlyDirs(p string) error {
	files := 0
	_ = filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return nil
	})
	if files > 0 {
		return fmt.Errorf("%s holds %d files after the node stopped; left in place", p, files)
	}
	return os.RemoveAll(p)
}

// Snapshot is the host state the node tier must leave as it found it.
type Snapshot struct {
	Dirs    map[string]bool
	Links   map[string]bool
	Rules   map[string]string // save command -> rules
	Mounts  map[string]int    // mount point -> count
	Sysctls map[string]string
}

var saveCommands = []string{"iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save"}

var (
	saveComment  = regexp.MustCompile(`(?m)^#.*\n`)
	saveCounters = regexp.MustCompile(`\[\d+:\d+\]`)
)

// TakeSnapshot records links, iptables rules (both backends, both
// families), mounts and the forwarding sysctls.
func TakeSnapshot() Snapshot {
	s := Snapshot{Dirs: existing(fixedHostDirs), Links: map[string]bool{}, Rules: map[string]string{}, Mounts: map[string]int{}, Sysctls: map[string]string{}}
	ents, _ := os.ReadDir("/sys/class/net")
	for _, e := range ents {
		s.Links[e.Name()] = true
	}
	for _, c := range saveCommands {
		out, err := exec.Command(c).Output()
		if err != nil {
			continue
		}
		s.Rules[c] = saveCounters.ReplaceAllString(saveComment.ReplaceAllString(string(out), ""), "[0:0]")
	}
	for _, m := range mountPoints() {
		s.Mounts[m]++
	}
	saved, _ := saveSysctls()
	s.Sysctls = saved
	return s
}

// nodeMountPrefixes are where a node (its kubelet, containerd, CNI) mounts
// things outside its own folder with default settings. Other mounts are
// not compared: the network-namespace tier, running at the same time in
// another test process, mounts its namespaces under /run/netns.
var nodeMountPrefixes = []string{"/run/netns/cni-", "/var/run/netns/cni-", "/run/containerd/", "/var/lib/kubelet/", "/var/lib/containerd/"}

func nodeMount(m string, markers []string) bool {
	for _, p := range append(nodeMountPrefixes, markers...) {
		if p != "" && strings.HasPrefix(m, p) {
			return true
		}
	}
	return strings.Contains(m, dirPrefix)
}

// Leftovers lists what differs in after, and the processes in pids that
// still run or whose command line names one of markers.
func (s Snapshot) Leftovers(after Snapshot, pids []int, markers ...string) []string {
	var out []string
	for d := range after.Dirs {
		if !s.Dirs[d] {
			out = append(out, "folder "+d)
		}
	}
	for l := range after.Links {
		if !s.Links[l] {
			out = append(out, "link "+l)
		}
	}
	for c, r := range after.Rules {
		if before := s.Rules[c]; before != r {
			out = append(out, fmt.Sprintf("%s differs:\n--- before\n%s--- after\n%s", c, before, r))
		}
	}
	for m, n := range after.Mounts {
		if n > s.Mounts[m] && nodeMount(m, markers) {
			out = append(out, "mount "+m)
		}
	}
	for k, v := range after.Sysctls {
		if s.Sysctls[k] != v {
			out = append(out, fmt.Sprintf("sysctl %s=%s (was %s)", k, v, s.Sysctls[k]))
		}
	}
	for _, r := range cgroupRoots() {
		if _, err := os.Stat(r); err == nil {
			out = append(out, "cgroup "+r)
		}
	}
	alive := map[int]procInfo{}
	for _, p := range processes() {
		alive[p.PID] = p
	}
	for _, pid := range pids {
		if p, ok := alive[pid]; ok {
			out = append(out, fmt.Sprintf("process %d %s", pid, p.Cmdline))
		}
	}
	self := os.Getpid()
	for _, p := range alive {
		if p.PID == self {
			continue
		}
		for _, m := range markers {
			if m != "" && strings.Contains(p.Cmdline, m) {
				out = append(out, fmt.Sprintf("process %d %s", p.PID, p.Cmdline))
				break
			}
		}
	}
	sort.Strings(out)
	return out
}
