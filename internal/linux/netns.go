package linux

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// NetnsDir is where named namespaces live, as with `ip netns`.
const NetnsDir = "/run/netns"

func netnsPath(name string) string { return filepath.Join(NetnsDir, name) }

// createNamed makes a new network namespace, marks it (lo's alias, lo up)
// and pins it at /run/netns/name, the way `ip netns add` does, in an order
// that a kill -9 at any point leaves recognisable: the pin file is written
// with the mark before anything is mounted on it (a pin file that is not a
// mount and holds our mark is ours, half-made, and removed by the next run),
// and the namespace is marked before it is mounted (a pinned namespace is
// always marked). The work happens on a locked OS thread; if the thread
// cannot return to its original namespace it is left locked, so the Go
// runtime throws it away instead of reusing it in the wrong namespace.
//
// It returns a handle on the new namespace, made on the creating thread
// while it is inside (which spares the two setns calls of opening one
// later).
func createNamed(name, mark string, ipv6Off bool) (nh *nsHandle, err error) {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return nil, err
	}
	if err := shareNetnsDir(); err != nil {
		return nil, err
	}
	path := netnsPath(name)
	err = placePin(path, mark)
	if errors.Is(err, os.ErrExist) {
		if p := readPin(path); p.half && p.ownedBy(mark) {
			// Left half-made by a run of ours that was killed.
			if err := os.Remove(path); err != nil {
				return nil, err
			}
			err = placePin(path, mark)
		}
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	err = inNewNetns(func() error {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		fd, err := netns.Get()
		if err != nil {
			h.Close()
			return err
		}
		rt, err := newRTSocket()
		if err != nil {
			h.Close()
			fd.Close()
			return err
		}
		nh = &nsHandle{fd: fd, h: h, rt: rt}
		d, err := openSysctlDir()
		if err != nil {
			return err
		}
		defer d.close()
		if err := labDefaults(d); err != nil {
			return err
		}
		if ipv6Off {
			// Before lo's mark and any interface: nothing of IPv6 starts.
			for _, k := range reconcile.IPv6Switch {
				if err := d.write(k, "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("set %s: %w", k, err)
				}
			}
		}
		// lo is ifindex 1 in every namespace (LOOPBACK_IFINDEX).
		if err := nh.configure(1, "", mark, 0, true); err != nil {
			return fmt.Errorf("mark: %w", err)
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount %s: %w", path, err)
		}
		return nil
	})
	if err == nil {
		nh.dev, nh.ino, err = identity(path)
	}
	if err != nil && nh != nil {
		nh.close()
		nh = nil
	}
	return nh, err
}

var shareOnce = sync.OnceValue(func() error {
	made := false
	for {
		err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINVAL) || made {
			return fmt.Errorf("make %s a shared mount (as ip netns add does): %w", NetnsDir, err)
		}
		// Not a mount point yet: make it one, of itself.
		if err := unix.Mount(NetnsDir, NetnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s onto itself (as ip netns add does): %w", NetnsDir, err)
		}
		made = true
	}
})

// shareNetnsDir makes /run/netns a shared mount of its own before the
// first pin is mounted in it, as `ip netns add` does. Without it, a later
// `ip netns add` (which does it then) mounts /run/netns over the pins
// already there: they can no longer be removed (EBUSY: an outside audit
// could destroy no lab made before it) nor entered by `ip netns exec`.
func shareNetnsDir() error { return shareOnce() }

// tmpPinPrefix names the files a pin is written in before it is moved to
// its name; listNamed skips them.
const tmpPinPrefix = ".netplan-lab-tmp."

var (
	tmpSeq       atomic.Int64
	cleanTmpOnce sync.Once
)

// placePin puts a pin file holding the mark at path, atomically: written
// under a temporary name in the same directory, then renamed into place
// with RENAME_NOREPLACE (EEXIST if the name is taken). A kill can never
// leave an empty pin, only a temporary file, which a later run removes.
func placePin(path, mark string) error {
	cleanTmpOnce.Do(cleanTmpPins)
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf("%s%d.%d", tmpPinPrefix, os.Getpid(), tmpSeq.Add(1)))
	if err := os.WriteFile(tmp, []byte(pinContent(mark)), 0o444); err != nil {
		return err
	}
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	if err != nil {
		os.Remove(tmp)
		if errors.Is(err, unix.EEXIST) {
			return &os.PathError{Op: "create", Path: path, Err: os.ErrExist}
		}
		return &os.PathError{Op: "rename into place", Path: path, Err: err}
	}
	return nil
}

// cleanTmpPins removes temporary pin files of processes that are gone.
func cleanTmpPins() {
	entries, err := os.ReadDir(NetnsDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), tmpPinPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, ".")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || unix.Kill(pid, 0) == unix.ESRCH {
			os.Remove(filepath.Join(NetnsDir, e.Name()))
		}
	}
}

// labDefaults writes reconcile.LabDefaults in the calling (locked)
// thread's namespace; a kernel without IPv6 has no IPv6 keys.
func labDefaults(d *sysctlDir) error {
	for k, v := range reconcile.LabDefaults {
		if err := d.write(k, v); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("set %s: %w", k, err)
		}
	}
	return nil
}

// pin is what a /run/netns entry holds.
type pin struct {
	// half: the entry is a file with no namespace mounted on it (a run
	// killed between creating the pin and mounting, or between unmounting
	// and removing it; or a killed `ip netns add`).
	half    bool
	content string // a half pin's content: who was making it
}

func (p pin) ownedBy(mark string) bool { return strings.HasPrefix(p.content, mark+" pid=") }

// readPin tells a mounted namespace from a half-made pin.
func readPin(path string) pin {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil || st.Type == unix.NSFS_MAGIC {
		return pin{}
	}
	b := make([]byte, 512)
	f, err := os.Open(path)
	if err != nil {
		return pin{half: true}
	}
	defer f.Close()
	n, _ := f.Read(b)
	return pin{half: true, content: string(b[:n])}
}

// halfPinError is a /run/netns entry with no namespace mounted on it.
type halfPinError struct {
	path string
	pin  pin
}

func (e *halfPinError) Error() string {
	who := "nobody we know (a killed `ip netns add`?)"
	if c := strings.TrimSpace(e.pin.content); c != "" {
		who = c
	}
	return fmt.Sprintf("%s is a pin file with no namespace mounted on it, left by %s; remove it with `rm %s`", e.path, who, e.path)
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
// However fn ends, the caller hears of it in its own goroutine: a panic of
// fn's panics there, and a runtime.Goexit of fn's (t.Fatal in a test)
// ends the caller's goroutine too (an outside audit: t.Fatal inside
// labtest's Do hung the test, a panic there killed the test binary
// before its labs were torn down).
func onThread(enter, fn func() error) error {
	type end struct {
		err      error
		panicked bool
		value    any
		goexit   bool
	}
	endc := make(chan end, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := originNetns()
		if err != nil {
			runtime.UnlockOSThread()
			endc <- end{err: err}
			return
		}
		if err := enter(); err != nil {
			runtime.UnlockOSThread()
			endc <- end{err: err}
			return
		}
		var e end
		returned := false
		defer func() {
			if !returned {
				if v := recover(); v != nil {
					e = end{panicked: true, value: v}
				} else {
					e = end{goexit: true}
				}
			}
			if err := netns.Set(origin); err != nil {
				if !e.panicked && !e.goexit {
					e.err = fmt.Errorf("return to the original netns: %w", err)
				}
				endc <- e
				return // the thread stays locked and is discarded
			}
			runtime.UnlockOSThread()
			endc <- e
		}()
		e.err = fn()
		returned = true
	}()
	e := <-endc
	switch {
	case e.panicked:
		panic(e.value)
	case e.goexit:
		runtime.Goexit()
	}
	return e.err
}

var (
	originOnce sync.Once
	originFD   netns.NsHandle
	originErr  error
)

// originNetns is the namespace every thread not locked by onThread is in
// (the process's own), opened once. Go makes new threads from a clean
// template thread, never from one that is locked in another namespace, so
// that namespace never changes.
func originNetns() (netns.NsHandle, error) {
	originOnce.Do(func() {
		errc := make(chan error, 1)
		go func() { // an unlocked thread: in the process's namespace
			originFD, originErr = netns.Get()
			errc <- nil
		}()
		<-errc
	})
	return originFD, originErr
}

// DeleteNamed unpins /run/netns/name. The kernel frees the namespace, and
// the interfaces in it, once nothing else holds it.
func DeleteNamed(name string) error {
	path := netnsPath(name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// ListNamed lists /run/netns entries starting with prefix.
func ListNamed(prefix string) ([]string, error) {
	entries, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && !strings.HasPrefix(e.Name(), tmpPinPrefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// InNetns runs fn on a locked OS thread inside the namespace fd (the
// thread is thrown away if it cannot go back).
func InNetns(fd netns.NsHandle, fn func() error) error {
	return onThread(func() error {
		if err := netns.Set(fd); err != nil {
			return fmt.Errorf("enter netns: %w", err)
		}
		return nil
	}, fn)
}

func sysctlPath(key string) string {
	return "/proc/sys/" + topology.SysctlPath(key)
}

// sysctlDir reads and writes sysctls of the calling (locked) thread's
// namespace through one open sys/net and its ipv4 and ipv6 directories,
// opened once per namespace however many keys there are.
type sysctlDir struct {
	fd   int
	subs map[string]int // "ipv4", "ipv6", ...: open directories under net
}

func openSysctlDir() (*sysctlDir, error) {
	fd, err := privateProc.openSysNet()
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/proc/sys/net", Err: err}
	}
	return &sysctlDir{fd: fd, subs: map[string]int{}}, nil
}

// privateProc hands out sys/net from instances of procfs of this
// process's own, made with fsopen/fsmount and attached nowhere, each used
// for procReuse namespaces and then replaced.
//
// Why: under /proc/sys/net every namespace has its own ipv4 and ipv6
// directory entries, all with the same parent and name, so the kernel's
// dentry cache keeps them on one hash chain and finds a namespace's by
// comparing it with every other namespace's ever looked up there
// (proc_sys_compare): a cost per new namespace that grows with the
// namespaces on the machine. Setting the lab's defaults in 100, 1000 and
// 3000 new namespaces took 0.52, 0.92 and 5.9 ms each through /proc; through
// an instance replaced every 16 namespaces, 0.49, 0.52 and 0.51 ms. An
// instance has its own dentries and sees the calling thread's namespace as
// /proc does; it goes when the last file opened from it is closed.
// Where the kernel refuses (before Linux 5.2, or without the right to
// mount), /proc/sys/net is used.
var privateProc = &procInstances{fd: -1}

const procReuse = 16

type procInstances struct {
	mu   sync.Mutex
	fd   int // the current instance's mount, -1 for none
	uses int
	off  bool // fsopen was refused: use /proc
}

func (p *procInstances) openSysNet() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.off && (p.fd < 0 || p.uses >= procReuse) {
		if p.fd >= 0 {
			unix.Close(p.fd) // files open under it keep it until they close
			p.fd = -1
		}
		fd, err := newProcInstance()
		if err != nil {
			p.off = true
		} else {
			p.fd, p.uses = fd, 0
		}
	}
	if p.off {
		return unix.Open("/proc/sys/net", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	p.uses++
	return unix.Openat(p.fd, "sys/net", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// newProcInstance makes a new instance of procfs and returns its mount,
// detached: it is in no mount table.
func newProcInstance() (int, error) {
	fs, err := unix.Fsopen("proc", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, err
	}
	defer unix.Close(fs)
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, err
	}
	return unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
}

func (d *sysctlDir) close() {
	for _, fd := range d.subs {
		unix.Close(fd)
	}
	unix.Close(d.fd)
}

// open opens key: relative to the directories for net.* keys, by its full
// path for any other.
func (d *sysctlDir) open(key string, flag int) (*os.File, error) {
	rel, ok := strings.CutPrefix(key, "net.")
	if !ok {
		return os.OpenFile(sysctlPath(key), flag, 0)
	}
	rel = topology.SysctlPath(rel)
	dir := d.fd
	if sub, rest, ok := strings.Cut(rel, "/"); ok {
		fd, open := d.subs[sub]
		if !open {
			var err error
			if fd, err = unix.Openat(d.fd, sub, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
				return nil, &os.PathError{Op: "open", Path: sysctlPath(key), Err: err}
			}
			d.subs[sub] = fd
		}
		dir, rel = fd, rest
	}
	fd, err := unix.Openat(dir, rel, flag|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: sysctlPath(key), Err: err}
	}
	return os.NewFile(uintptr(fd), sysctlPath(key)), nil
}

func (d *sysctlDir) read(key string) (string, error) {
	f, err := d.open(key, os.O_RDONLY)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}

func (d *sysctlDir) write(key, value string) error {
	f, err := d.open(key, os.O_WRONLY)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(value))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readSysctls reads keys inside the namespace; keys that do not exist (an
// interface not there yet) are left out.
func readSysctls(fd netns.NsHandle, keys []string) (map[string]string, error) {
	out := map[string]string{}
	if len(keys) == 0 {
		return out, nil
	}
	err := InNetns(fd, func() error { return readSysctlsHere(keys, out) })
	return out, err
}

// readSysctlsHere reads keys into out in the calling (locked) thread's
// namespace.
func readSysctlsHere(keys []string, out map[string]string) error {
	if len(keys) == 0 {
		return nil
	}
	d, err := openSysctlDir()
	if err != nil {
		return err
	}
	defer d.close()
	for _, k := range keys {
		b, err := d.read(k)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read sysctl %s: %w", k, err)
		}
		out[k] = strings.Join(strings.Fields(b), " ")
	}
	return nil
}

func writeSysctl(fd netns.NsHandle, key, value string) error {
	return InNetns(fd, func() error {
		d, err := openSysctlDir()
		if err != nil {
			return err
		}
		defer d.close()
		return d.write(key, value)
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

// OpenNetns opens a namespace of the lab by its short name: the sandbox
// for "host" under --netns, else the namespace this process is in.
func (k *Kernel) OpenNetns(short string) (netns.NsHandle, error) {
	if short == reconcile.HostNS && k.opt.Netns == "" {
		return netns.Get()
	}
	name := k.KernelName(short)
	fd, err := netns.GetFromPath(netnsPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return fd, &NoNetnsError{Short: short, Name: name}
	}
	return fd, err
}

// NoNetnsError is OpenNetns's error for a namespace of the lab that is not
// there (the lab is not applied, or under another sandbox or prefix).
// OrForeign: it may be there, but not the lab's (path reads ownership);
// Owner: it is there, another lab's (same names, another sandbox).
type NoNetnsError struct {
	Short, Name string
	OrForeign   bool
	Owner       string
}

func (e *NoNetnsError) Error() string {
	if e.Owner != "" {
		return fmt.Sprintf("namespace %s (netns %s) is not this lab's: it belongs to %s", e.Short, e.Name, e.Owner)
	}
	if e.OrForeign {
		return fmt.Sprintf("namespace %s (netns %s) is not there, or is not this lab's: apply the lab first", e.Short, e.Name)
	}
	return fmt.Sprintf("namespace %s (netns %s) does not exist: apply the lab first", e.Short, e.Name)
}

// OpenLabNetns is OpenNetns for a command that works inside the lab
// (exec, shell, capture): a namespace of the lab's must carry its mark,
// or it is another lab's (same names, another sandbox) or nobody's (an
// outside audit: exec ran in another lab's namespace). host is the
// sandbox, or the machine, whoever made it.
func (k *Kernel) OpenLabNetns(short string) (netns.NsHandle, error) {
	fd, err := k.OpenNetns(short)
	if err != nil || short == reconcile.HostNS {
		return fd, err
	}
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE) // only rtnetlink: a kernel may lack the others (xfrm)
	if err != nil {
		fd.Close()
		return -1, err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		fd.Close()
		return -1, fmt.Errorf("namespace %s (netns %s): %w", short, k.KernelName(short), err)
	}
	if owned, _ := k.ownedAlias(lo.Attrs().Alias); !owned {
		fd.Close()
		if other, ok := ParseMark(lo.Attrs().Alias); ok {
			return -1, &NoNetnsError{Short: short, Name: k.KernelName(short), Owner: other.String()}
		}
		return -1, fmt.Errorf("namespace %s (netns %s) is not this lab's: it carries no lab's mark (someone else's, or its mark removed by hand; plan says more)", short, k.KernelName(short))
	}
	return fd, nil
}

// RouteGet asks namespace short's routing table for dst, as `ip route
// get` does.
func (k *Kernel) RouteGet(short string, dst net.IP) ([]netlink.Route, error) {
	h, err := k.handle(short)
	if err != nil {
		return nil, err
	}
	defer k.release(h)
	return h.h.RouteGet(dst)
}

// ReadSysctls reads keys in namespace short (missing keys are left out).
func (k *Kernel) ReadSysctls(short string, keys []string) (map[string]string, error) {
	h, err := k.handle(short)
	if err != nil {
		return nil, err
	}
	defer k.release(h)
	return readSysctls(h.fd, keys)
}

// LinkName is the name of interface index in namespace short, or "ifN".
func (k *Kernel) LinkName(short string, index int) string {
	if h, err := k.handle(short); err == nil {
		defer k.release(h)
		if l, err := h.h.LinkByIndex(index); err == nil {
			return l.Attrs().Name
		}
	}
	return fmt.Sprintf("if%d", index)
}

// RaiseOpenFileLimit lifts the process's limit on open files as far as the
// kernel allows (fs.nr_open, at most 1<<20): a lab keeps each namespace's
// handle open (its fd and netlink sockets, two or three files), and a lab
// of ten thousand namespaces passes the usual hard limit. Raising the hard
// limit needs CAP_SYS_RESOURCE; without it the soft limit goes to the hard.
func RaiseOpenFileLimit() {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		return
	}
	want := uint64(1 << 20)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && v < want {
			want = v
		}
	}
	if lim.Cur >= want {
		return
	}
	up := unix.Rlimit{Cur: want, Max: max(want, lim.Max)}
	if unix.Setrlimit(unix.RLIMIT_NOFILE, &up) != nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
}
