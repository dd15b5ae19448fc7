package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// WatchDir holds a file for each running `apply --watch`, locked (flock)
// while it runs: a one-shot apply or destroy of the same lab would be
// undone by it, and refuses, naming it.
var WatchDir = "/run/netplan-lab/watch"

// watchPath is the mark of a watch of lab name (prefix) in sandbox netns:
// a directory per sandbox (names may hold dots), a file per lab (a lab's
// name has none).
func watchPath(netns, name, prefix string) string {
	sandbox := netns
	if sandbox == "" {
		sandbox = "@machine"
	}
	return filepath.Join(WatchDir, sandbox, name+"."+prefix)
}

// HoldWatch marks that a watch keeps lab name (prefix) in sandbox netns
// in line with its file, until release; who describes it to others. A
// second watch of the same lab is refused.
func HoldWatch(netns, name, prefix, who string) (release func(), err error) {
	path := watchPath(netns, name, prefix)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	var f *os.File
	for {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			b, _ := os.ReadFile(path)
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%s watches this lab already: one watch per lab", strings.TrimSpace(string(b)))
			}
			return nil, err
		}
		// Still the file at path? Watcher removes one a killed watch
		// left, under the same lock: if it did, mark again.
		if same, err := samePath(f, path); err != nil || same {
			if err != nil {
				f.Close()
				return nil, err
			}
			break
		}
		f.Close()
	}
	f.Truncate(0)
	fmt.Fprintf(f, "pid %d (%s)\n", os.Getpid(), who)
	return func() {
		os.Remove(path)
		os.Remove(filepath.Dir(path)) // if empty
		f.Close()
	}, nil
}

// Watcher says which watch keeps lab name (prefix) in sandbox netns in
// line with its file ("" if none runs).
func Watcher(netns, name, prefix string) string {
	path := watchPath(netns, name, prefix)
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		// Left by a watch that was killed: nobody holds it. It goes,
		// under the lock (HoldWatch checks its file is still there).
		if same, _ := samePath(f, path); same {
			os.Remove(path)
			os.Remove(filepath.Dir(path)) // if empty
		}
		return ""
	}
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// samePath says whether open file f is still the file at path.
func samePath(f *os.File, path string) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		return false, err
	}
	if err := unix.Stat(path, &b); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, err
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}
