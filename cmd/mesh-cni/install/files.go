package install

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sidecar-injector/injector/cmd/mesh-cni/plugin"
)

// The agent shares the configuration folder with the primary CNI's own
// agent, which rewrites its file whenever it likes, and with no lock both
// honour. So every change is a compare-and-swap on the file's identity:
// the file is read with its identity (device, inode, size, modification
// time), the new content goes to a temporary file, the identity is checked
// again just before, and the temporary file is exchanged with the
// original atomically (renameat2 RENAME_EXCHANGE): what it displaced is
// then known exactly. If that is not the file that was read, the primary
// wrote in between; its file is put back and the edit is retried on it.
// An update of the primary is never lost, and the runtime only ever sees
// whole files.

// tempPattern names the agent's temporary files: no configuration
// extension, so the runtime ignores them.
var tempPattern = "." + plugin.Type + ".tmp-*"

// identity is what tells two versions of a file apart.
type identity struct {
	dev, ino uint64
	size     int64
	mtime    int64 // nanoseconds: an in-place rewrite changes it
}

func identityOf(fi os.FileInfo) identity {
	id := identity{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	return id
}

func lidentity(path string) (identity, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return identity{}, err
	}
	return identityOf(fi), nil
}

// errChanged is a file that changed while the agent was editing it; the
// edit is retried on the new version.
var errChanged = errors.New("changed while being edited")

// readFile reads path (a regular file) with the identity of what was read;
// a file that changes during the read is errChanged.
func readFile(path string) ([]byte, identity, os.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, identity{}, 0, err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return nil, identity{}, 0, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, identity{}, 0, err
	}
	after, err := f.Stat()
	if err != nil {
		return nil, identity{}, 0, err
	}
	if identityOf(before) != identityOf(after) {
		return nil, identity{}, 0, fmt.Errorf("%s: %w", path, errChanged)
	}
	return b, identityOf(before), before.Mode().Perm(), nil
}

// Test hooks: called just before the identity check and just before the
// exchange, so a test can play the primary CNI in each window.
var beforeCheck, beforeExchange func(path string)

// errWrite fails a write in tests (a full or read-only disk).
var errWrite func(path string) error

// replace puts data at path in place of the version was (see above).
func replace(path string, data []byte, mode os.FileMode, was identity) error {
	tmp, err := writeTemp(filepath.Dir(path), data, mode)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // the displaced file, or ours if it never went in
	if beforeCheck != nil {
		beforeCheck(path)
	}
	if now, err := lidentity(path); err != nil || now != was {
		return fmt.Errorf("%s: %w", path, errChanged)
	}
	if errWrite != nil {
		if err := errWrite(path); err != nil {
			return err
		}
	}
	if beforeExchange != nil {
		beforeExchange(path)
	}
	mine, err := lidentity(tmp)
	if err != nil {
		return err
	}
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_EXCHANGE)
	switch {
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		// A filesystem without the exchange: a plain rename, after the
		// identity check above (the window is that check's to the rename).
		return os.Rename(tmp, path)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: %w", path, errChanged) // removed meanwhile
	case err != nil:
		return err
	}
	displaced, err := lidentity(tmp)
	if err == nil && displaced == was {
		return nil // exactly the file that was read gave way: nothing lost
	}
	// The primary wrote between the check and the exchange: put its file
	// back. If it wrote yet again meanwhile, what comes back is that newer
	// file, which then goes in over the older one.
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_EXCHANGE); err != nil {
		return fmt.Errorf("%s changed while being edited, and putting the new version back failed: %w", path, err)
	}
	if back, err := lidentity(tmp); err == nil && back != mine {
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s: %w", path, errChanged)
}

// create puts data at path, which must not exist.
func create(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTemp(filepath.Dir(path), data, mode)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if errWrite != nil {
		if err := errWrite(path); err != nil {
			return err
		}
	}
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	switch {
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%s: %w", path, errChanged)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s: %w", path, errChanged)
		}
		return os.Rename(tmp, path)
	}
	return err
}

// removeIf removes path if it is still the version was: it is moved aside
// first, and moved back if it turns out to be another.
func removeIf(path string, was identity) error {
	aside := filepath.Join(filepath.Dir(path), strings.Replace(tempPattern, "*", fmt.Sprintf("rm-%d", time.Now().UnixNano()), 1))
	if err := os.Rename(path, aside); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if id, err := lidentity(aside); err == nil && id == was {
		return os.Remove(aside)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, aside, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE); err != nil {
		os.Remove(aside) // a newer file took the name: this one is older
	}
	return fmt.Errorf("%s: %w", path, errChanged)
}

// writeTemp writes data to a new temporary file in dir, synced, with mode.
func writeTemp(dir string, data []byte, mode os.FileMode) (name string, err error) {
	tmp, err := os.CreateTemp(dir, tempPattern)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return "", err
	}
	if err = tmp.Chmod(mode); err != nil {
		return "", err
	}
	if err = tmp.Sync(); err != nil {
		return "", err
	}
	return tmp.Name(), tmp.Close()
}

// writeAtomic replaces path with data whatever it was (the binary, which
// only the agent writes).
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTemp(filepath.Dir(path), data, mode)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// removeTemps removes temporary files an agent left behind (it was killed
// between writing one and renaming it) in dirs.
func removeTemps(o Options, dirs ...string) {
	for _, d := range dirs {
		names, _ := filepath.Glob(filepath.Join(d, tempPattern))
		for _, n := range names {
			if err := os.Remove(n); err == nil {
				o.logf("removed %s, left behind by an earlier run", n)
			}
		}
	}
}

// ErrForeignLink is a configuration file that is a symbolic link the agent
// does not follow: its target is outside the configuration folder as the
// agent sees it (an absolute link names a path of the node, not of the
// agent's container), or it is dangling.
var ErrForeignLink = errors.New("is a symbolic link to a file outside the configuration folder the agent has mounted")

// resolve returns the file to edit for the configuration file path: path
// itself, or for a symbolic link its target, if that lies inside dir, so
// the link stays a link and its target is edited in its own folder.
func resolve(dir, path string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return path, nil
	}
	link, _ := os.Readlink(path)
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("%s (-> %s) %w (%v); make it a regular file or chain %s there by hand", path, link, ErrForeignLink, err, plugin.Type)
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	if rel, err := filepath.Rel(root, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%s (-> %s) %w; make it a regular file or chain %s there by hand", path, link, ErrForeignLink, plugin.Type)
	}
	if st, err := os.Stat(real); err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s (-> %s) is not a regular file", path, link)
	}
	return real, nil
}

// mentionsUs reports whether a file the agent cannot parse may hold an
// entry of ours (its bytes name the plugin's type).
func mentionsUs(b []byte) bool {
	return bytes.Contains(b, []byte(`"`+plugin.Type+`"`))
}
