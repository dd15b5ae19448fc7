package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named namespaces live, as with `ip netns`.
const NetnsDir = "/run/netns"

func netnsPath(name string) string { return filepath.Join(NetnsDir, name) }

// createNamed makes a new network namespace and pins it at /run/netns/name,
// the way `ip netns add` does. The work happens on a locked OS thread; if the
// thread cannot return to its original namespace it is left locked, so the
// Go runtime throws it away instead of reusing it in the wrong namespace.
func createNamed(name string) (err error) {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return err
	}
	path := netnsPath(name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	return inNewNetns(func() error {
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount %s: %w", path, err)
		}
		return nil
	})
}

// inNewNetns runs fn on a locked OS thread that has just entered a new,
// empty network namespace, then takes the thread back.
func inNewNetns(fn func() error) error {
	return onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		return nil
	}, fn)
}

// onThread runs enter and then fn on a locked OS thread, and puts the
// thread back in the namespace it came from. If enter fails, the thread
// has not moved. If the thread cannot return, it stays locked, so the Go
// runtime throws it away instead of reusing it in the wrong namespace.
func onThread(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer origin.Close()
		if err := enter(); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(origin); err != nil {
			errc <- fmt.Errorf("return to the original netns: %w", err)
			return // the thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// deleteNamed unpins /run/netns/name. The kernel frees the namespace, and
// the interfaces in it, once nothing else holds it.
func deleteNamed(name string) error {
	path := netnsPath(name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// listNamed lists /run/netns entries starting with prefix.
func listNamed(prefix string) ([]string, error) {
	entries, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// inNetns runs fn on a locked OS thread inside the namespace fd.
func inNetns(fd netns.NsHandle, fn func() error) error {
	return onThread(func() error {
		if err := netns.Set(fd); err != nil {
			return fmt.Errorf("enter netns: %w", err)
		}
		return nil
	}, fn)
}

func sysctlPath(key string) string {
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
}

// readSysctls reads keys inside the namespace; keys that do not exist (an
// interface not there yet) are left out.
func readSysctls(fd netns.NsHandle, keys []string) (map[string]string, error) {
	out := map[string]string{}
	if len(keys) == 0 {
		return out, nil
	}
	err := inNetns(fd, func() error {
		for _, k := range keys {
			b, err := os.ReadFile(sysctlPath(k))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read sysctl %s: %w", k, err)
			}
			out[k] = strings.Join(strings.Fields(string(b)), " ")
		}
		return nil
	})
	return out, err
}

func writeSysctl(fd netns.NsHandle, key, value string) error {
	return inNetns(fd, func() error {
		return os.WriteFile(sysctlPath(key), []byte(value), 0o644)
	})
}

// inNetnsNew makes an anonymous network namespace and hands its fd to keep;
// it lives until that fd is closed.
func inNetnsNew(keep func(netns.NsHandle)) error {
	return inNewNetns(func() error {
		fd, err := netns.Get()
		if err != nil {
			return err
		}
		keep(fd)
		return nil
	})
}
