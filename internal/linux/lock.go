package linux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// LockDir holds one lock file per sandbox: the writers of one sandbox
// (apply, destroy, each apply of a watch) never run at once.
const LockDir = "/run/netplan-lab/locks"

// ErrLockTimeout is returned when the lock was not had in time.
var ErrLockTimeout = errors.New("timed out waiting for the lock")

// LockPath is the lock file of the sandbox netns ("" for this machine's
// own namespace).
func LockPath(netns string) string {
	if netns == "" {
		return filepath.Join(LockDir, "host.lock")
	}
	return filepath.Join(LockDir, "sandbox-"+netns+".lock")
}

// Lock takes the sandbox's lock (flock, released by the kernel if the
// process dies), waiting up to timeout. If it has to wait, waiting is told
// once who holds it ("pid 123: netplan-lab apply lab.yaml"). who describes
// this process for the next one that waits.
//
// The lock file lives as long as its sandbox: unlock removes it when the
// sandbox is gone (destroyed, or never made, as by plan), so labs leave
// no files behind. Removing a lock file others may wait on is safe
// because the file taken is checked to still be the one at the path
// (a waiter that locked a removed file opens the path again).
func Lock(ctx context.Context, netns string, timeout time.Duration, who string, waiting func(holder string)) (unlock func(), err error) {
	if err := os.MkdirAll(LockDir, 0o755); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	gone := func() bool {
		if netns == "" {
			return false // this machine's own namespace never goes
		}
		_, err := os.Lstat(netnsPath(netns))
		return errors.Is(err, os.ErrNotExist)
	}
	return lockFile(ctx, LockPath(netns), gone, timeout, who, waiting)
}

// LockLab takes the sandbox's lock, then the prefix's: the lab's
// namespaces are named by the prefix under /run/netns, which every
// sandbox shares, so two runs of one prefix in two sandboxes at once
// would make the same names (an outside audit: both failed, "file
// exists", and rolled back; now the second waits, then sees the first's
// namespaces and reports the conflict). The sandbox's lock comes first
// and a run holds one prefix's: no two runs wait on each other in turn.
// The prefix's lock file goes when no namespace of the prefix is left.
func LockLab(ctx context.Context, netns, prefix string, timeout time.Duration, who string, waiting func(holder string)) (unlock func(), err error) {
	start := time.Now()
	unlockSandbox, err := Lock(ctx, netns, timeout, who, waiting)
	if err != nil {
		return nil, err
	}
	// A run killed while it placed a pin left its temporary file in
	// /run/netns (`ip netns list` then fails on it): every apply and
	// destroy removes those of processes that are gone, not only one
	// that makes a namespace (an outside audit: destroy left them).
	cleanTmpOnce.Do(cleanTmpPins)
	if prefix == "" {
		return unlockSandbox, nil
	}
	gone := func() bool {
		left, err := ListNamed(prefix)
		return err == nil && len(left) == 0
	}
	unlockPrefix, err := lockFile(ctx, PrefixLockPath(prefix), gone, max(timeout-time.Since(start), time.Millisecond), who, waiting)
	if err != nil {
		unlockSandbox()
		return nil, err
	}
	return func() { unlockPrefix(); unlockSandbox() }, nil
}

// PrefixLockPath is the lock file of the lab namespaces named with prefix.
func PrefixLockPath(prefix string) string {
	return filepath.Join(LockDir, "prefix-"+prefix+".lock")
}

// lockFile takes the lock on the file at path; unlock removes the file
// first if gone says so.
func lockFile(ctx context.Context, path string, gone func() bool, timeout time.Duration, who string, waiting func(holder string)) (unlock func(), err error) {
	deadline := time.Now().Add(timeout)
	told := false
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lock: %w", err)
		}
		locked, err := flockWait(ctx, f, path, deadline, timeout, &told, waiting)
		if err != nil {
			return nil, err
		}
		if !locked {
			continue // the file was removed while this waited: the path's file now
		}
		// Say who holds it now, for whoever waits next.
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d: %s\n", os.Getpid(), who)), 0)
		}
		return func() {
			if gone() {
				_ = os.Remove(path) // while holding it: a waiter sees it gone and opens the path again
			} else {
				_ = f.Truncate(0)
			}
			_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
			f.Close()
		}, nil
	}
}

// flockWait locks f, waiting until deadline. It reports false (f closed)
// when the file it locked is no longer the one at path.
func flockWait(ctx context.Context, f *os.File, path string, deadline time.Time, timeout time.Duration, told *bool, waiting func(holder string)) (bool, error) {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return false, fmt.Errorf("lock %s: %w", path, err)
		}
		holder := lockHolder(f)
		if !*told && waiting != nil {
			waiting(holder)
			*told = true
		}
		if time.Now().After(deadline) {
			f.Close()
			return false, fmt.Errorf("%w on %s after %v: held by %s (--lock-timeout)", ErrLockTimeout, path, timeout, holder)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return false, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	var have, at unix.Stat_t
	if unix.Fstat(int(f.Fd()), &have) != nil || unix.Stat(path, &at) != nil || have.Ino != at.Ino || have.Dev != at.Dev {
		f.Close()
		return false, nil
	}
	return true, nil
}

func lockHolder(f *os.File) string {
	b := make([]byte, 512)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "another process"
	}
	if s := strings.TrimSpace(string(b[:n])); s != "" {
		return s
	}
	return "another process"
}

// CheckPrivileges tells whether this process may read and change network
// namespaces: it needs CAP_NET_ADMIN and CAP_SYS_ADMIN (root has both).
func CheckPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	var missing []string
	if !has(unix.CAP_NET_ADMIN) {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	if !has(unix.CAP_SYS_ADMIN) {
		missing = append(missing, "CAP_SYS_ADMIN")
	}
	if len(missing) > 0 {
		return fmt.Errorf("this command reads and changes network namespaces, which needs root (it lacks %s); run it with sudo", strings.Join(missing, " and "))
	}
	// Root of a user namespace (unshare -U, a rootless container) has
	// them, for its own objects only: /run/netplan-lab, /run/netns and
	// the machine's namespaces are not its.
	if m, err := os.ReadFile("/proc/self/uid_map"); err == nil && !initialUserNS(string(m)) {
		return fmt.Errorf("this command reads and changes network namespaces, which needs the machine's root: it runs in a user namespace (uid map %q), whose root cannot (a rootless container, unshare -U)", strings.Join(strings.Fields(string(m)), " "))
	}
	return nil
}

// initialUserNS says whether uid_map is the machine's own user
// namespace's: every id mapped to itself.
func initialUserNS(uidMap string) bool {
	return strings.Join(strings.Fields(uidMap), " ") == "0 0 4294967295"
}
