package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sidecar-injector/injector/cmd/mesh-init/capture"
	"github.com/sidecar-injector/injector/webhook/meshinit"
)

// NetNS writes the rules with mesh-init's runtime from inside the pod's
// network namespace: the plugin runs in the host's mount namespace, with
// the host's iptables binaries (the nft and legacy backends of the node's
// iptables package), and enters only the network namespace, on one locked
// OS thread, from which the iptables programs are started (a child
// process inherits its parent thread's namespaces). No nsenter, no shell.
type NetNS struct{}

var _ Rules = NetNS{}

// Apply implements Rules: the rules, then the settings record
// (meshinit.SettingsRecord) as the loopback interface's alias, which the
// pod's unprivileged validator compares with the settings of its own
// immutable arguments (docs/capture.md, "Who can set the annotation").
func (NetNS) Apply(ctx context.Context, netns string, c meshinit.CaptureConfig, log io.Writer) error {
	return inNetNS(netns, func(h *capture.Host) error {
		h.Log = log
		if err := capture.Execute(ctx, meshinit.CaptureCommand{Config: c}, h); err != nil {
			return err
		}
		if err := capture.WriteLoopbackAlias(c.SettingsRecord()); err != nil {
			return fmt.Errorf("recording the settings: %w", err)
		}
		fmt.Fprintf(log, "mesh-init: recorded the settings (%s)\n", c.SettingsRecord())
		return nil
	})
}

// Cleanup implements Rules: our chains, and our record.
func (NetNS) Cleanup(ctx context.Context, netns string, c meshinit.CaptureConfig, log io.Writer) error {
	return inNetNS(netns, func(h *capture.Host) error {
		h.Log = log
		err := capture.Execute(ctx, meshinit.CaptureCommand{Config: c, Cleanup: true}, h)
		if alias, aerr := capture.ReadLoopbackAlias(); aerr == nil && strings.HasPrefix(alias, meshinit.SettingsRecordPrefix) {
			err = errors.Join(err, capture.WriteLoopbackAlias(""))
		}
		return err
	})
}

// Check implements Rules: the rules and the record are those of c.
func (NetNS) Check(ctx context.Context, netns string, c meshinit.CaptureConfig, log io.Writer) error {
	return inNetNS(netns, func(h *capture.Host) error {
		h.Log = log
		if err := capture.Verify(ctx, c, h); err != nil {
			return err
		}
		alias, err := capture.ReadLoopbackAlias()
		if err != nil {
			return fmt.Errorf("reading the settings record: %w", err)
		}
		if alias != c.SettingsRecord() {
			return fmt.Errorf("the settings record on the loopback interface is %q, not %q", alias, c.SettingsRecord())
		}
		return nil
	})
}

// inNetNS runs fn on a new goroutine locked to an OS thread that has
// entered the network namespace at path. /proc/net, which names the
// process's namespace, is read through /proc/thread-self/net instead, so
// mesh-init's IPv6 and backend detection see the pod's namespace; the
// /proc/sys/net files already follow the reading thread. If the thread
// cannot return to the host's namespace it is never unlocked, so the Go
// runtime ends it instead of reusing it.
func inNetNS(path string, fn func(h *capture.Host) error) error {
	target, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", path, ErrNetNSGone)
	}
	if err != nil {
		return fmt.Errorf("opening the pod's network namespace: %w", err)
	}
	defer target.Close()
	if err := checkNetNS(path, target); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening the host's network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			if errors.Is(err, unix.EINVAL) {
				err = &NetNSError{Path: path, Reason: "is not a network namespace (setns: " + err.Error() + ")"}
			}
			errc <- fmt.Errorf("entering the network namespace %s: %w", path, err)
			return
		}
		h := capture.NewHost(io.Discard, io.Discard)
		h.ReadFile = threadProc
		ferr := fn(h)
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("returning to the host's network namespace: %w", err))
			return // still locked: the thread ends with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// threadProc reads a /proc file as seen from the calling thread.
func threadProc(name string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(name, "/proc/net/"); ok {
		name = "/proc/thread-self/net/" + rest
	}
	return os.ReadFile(name)
}

// NetNSError is a CNI_NETNS the plugin must not enter: not a network
// namespace (a file, a folder, another kind of namespace), or the
// plugin's own, which is the host's: writing the capture rules there would
// capture the node.
type NetNSError struct {
	Path   string
	Reason string
}

func (e *NetNSError) Error() string { return "CNI_NETNS " + e.Path + " " + e.Reason }

// checkNetNS makes sure f, opened from path, is a network namespace other
// than the plugin's own, as the CNI library's ns package and skel do.
func checkNetNS(path string, f *os.File) error {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil {
		return fmt.Errorf("inspecting CNI_NETNS %s: %w", path, err)
	}
	if fs.Type != unix.NSFS_MAGIC && fs.Type != unix.PROC_SUPER_MAGIC {
		return &NetNSError{Path: path, Reason: fmt.Sprintf("is not a namespace file (filesystem type %#x, not nsfs)", fs.Type)}
	}
	if ns, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE); err == nil && ns != unix.CLONE_NEWNET {
		return &NetNSError{Path: path, Reason: "is a namespace, but not a network namespace"}
	}
	var target, own unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &target); err != nil {
		return fmt.Errorf("inspecting CNI_NETNS %s: %w", path, err)
	}
	if err := unix.Stat("/proc/self/ns/net", &own); err == nil && own.Dev == target.Dev && own.Ino == target.Ino {
		return &NetNSError{Path: path, Reason: "is the plugin's own network namespace (the host's), not a pod's"}
	}
	return nil
}
