package lab

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/internal/linux"
)

// Labs of test processes (labtest): each records its sandbox with the
// creating process's id and start time; a record whose process is gone (a
// test binary killed by go test -timeout or SIGKILL) is a lab nobody will
// destroy. RemoveStale removes those, and the processes still running in
// them; `netplan-lab destroy --stale` and every labtest.Up call it.

// Registry is where the records are.
const Registry = "/run/netplan-lab/labtest"

// Register records a test's lab: its sandbox (which only it uses) and its
// prefix, and this process.
func Register(sandbox, prefix string) error {
	if err := os.MkdirAll(Registry, 0o755); err != nil {
		return err
	}
	start, err := startTime(os.Getpid())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(Registry, sandbox), []byte(fmt.Sprintf("%d %d %s\n", os.Getpid(), start, prefix)), 0o644)
}

// Unregister removes what is left of a test's lab (namespaces a failure
// left, its lock files) and its record.
func Unregister(sandbox, prefix string) {
	removeNamespaces(sandbox, prefix)
	os.Remove(linux.LockPath(sandbox))
	os.Remove(linux.PrefixLockPath(prefix))
	os.Remove(filepath.Join(Registry, sandbox))
}

// statFields are the fields of /proc/PID/stat after the command's name
// (its state first, then its parent's pid, ...).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndex(s, ")")+1:]), nil
}

// startTime is a process's start time in clock ticks since boot
// (/proc/PID/stat field 22): a pid used again is another process. A
// zombie (dead, not yet waited for) is no process: an error.
func startTime(pid int) (uint64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("process %d has exited", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// StopProcesses ends every process that lives in one of a lab's network
// namespaces (the sandbox's, and those whose names have the prefix), and
// the processes in extra wherever they are (commands just started, which
// may not have entered the lab yet): SIGTERM, then SIGKILL, again and
// again until none is left, for those still there after grace. It finds
// them by namespace, not by parentage, so a daemon's children, a daemon
// that double-forked or keeps forking, and the processes of a test that
// was killed are all found; and so are the descendants of those in extra,
// wherever they are (one that moved to a network namespace of its own).
// It does not wait for them (nobody's Wait is raced; a zombie is gone),
// and it returns how many it signalled. The calling process is never one
// of them.
func StopProcesses(sandbox, prefix string, grace time.Duration, extra ...*os.Process) int {
	return StopProcessesIn(NamespaceIDs(sandbox, prefix), grace, extra...)
}

// NamespaceIDs are the identities (device and inode of their pins) of a
// lab's network namespaces as they are now: the sandbox's and those whose
// names have the prefix.
func NamespaceIDs(sandbox, prefix string) map[[2]uint64]bool {
	ids := map[[2]uint64]bool{}
	for _, n := range namespaceNames(sandbox, prefix) {
		var st unix.Stat_t
		if unix.Stat(filepath.Join(linux.NetnsDir, n), &st) == nil {
			ids[[2]uint64{st.Dev, st.Ino}] = true
		}
	}
	return ids
}

// StopProcessesIn is StopProcesses for the network namespaces of the
// identities given (NamespaceIDs), named or not any more: a namespace a
// lab no longer has lives on while a process runs in it.
func StopProcessesIn(inodes map[[2]uint64]bool, grace time.Duration, extra ...*os.Process) int {
	// find lists the processes to stop; signal sends sig to each.
	type target struct {
		pid  int
		proc *os.Process // for extra: signalled by pidfd, never another process with its pid
	}
	heirs := map[int]uint64{} // descendants of extra seen, by pid: their start times
	// descendsKnown: pid is still the heir found before (not another
	// process given its pid since).
	descendsKnown := func(pid int) bool {
		now, err := startTime(pid)
		return err == nil && now == heirs[pid]
	}
	find := func() []target {
		var ts []target
		started := map[int]bool{}
		for _, p := range extra {
			if p != nil && p.Signal(syscall.Signal(0)) == nil && alive(p.Pid) {
				ts = append(ts, target{p.Pid, p})
				started[p.Pid] = true
			}
		}
		if len(inodes) == 0 && len(started) == 0 && len(heirs) == 0 {
			return ts
		}
		// The descendants of the commands started, wherever they are: a
		// child that made a network namespace of its own (unshare -n) is
		// in none of the lab's (an outside audit: it ran on).
		parent := map[int]int{}
		var pids []int
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			pids = append(pids, pid)
			if len(started) > 0 || len(heirs) > 0 {
				parent[pid] = parentOf(pid)
			}
		}
		descends := func(pid int) bool {
			if _, ok := heirs[pid]; ok {
				// Found before: its parent may have gone since (it was
				// signalled too), and it has init for a parent now.
				return descendsKnown(pid)
			}
			for p, i := pid, 0; i < 64 && p > 1; i++ {
				// A descendant of a command, or of one found before (its
				// command gone, it forks on: an outside audit).
				if p = parent[p]; started[p] || heirs[p] != 0 && descendsKnown(p) {
					if t, err := startTime(pid); err == nil {
						heirs[pid] = t
					}
					return true
				}
			}
			return false
		}
		for _, pid := range pids {
			if started[pid] {
				continue
			}
			var st unix.Stat_t
			in := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && inodes[[2]uint64{st.Dev, st.Ino}]
			if (in || descends(pid)) && alive(pid) {
				ts = append(ts, target{pid: pid})
			}
		}
		return ts
	}
	signal := func(ts []target, sig syscall.Signal) {
		for _, t := range ts {
			if t.proc != nil {
				t.proc.Signal(sig)
			} else {
				unix.Kill(t.pid, sig)
			}
		}
	}
	first := find()
	if len(first) == 0 {
		return 0
	}
	signal(first, unix.SIGTERM)
	for deadline := time.Now().Add(grace); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if len(find()) == 0 {
			return len(first)
		}
	}
	// SIGKILL whatever is there, including what was forked since the
	// last look, until nothing is. Stopped first, and looked at again
	// until no more are found: a child forked between a look and the
	// kill had a parent gone by the next look, and so no way back to
	// a command (CI saw one run on).
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		left := find()
		if len(left) == 0 {
			break
		}
		for i := 0; i < 20; i++ {
			signal(left, unix.SIGSTOP)
			more := find()
			if len(more) <= len(left) {
				break
			}
			left = more
		}
		signal(left, unix.SIGKILL)
	}
	return len(first)
}

// parentOf is a process's parent's pid (0 if it cannot be read).
func parentOf(pid int) int {
	f, err := statFields(pid)
	if err != nil || len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// alive: the process exists and has not exited (a zombie has).
func alive(pid int) bool {
	_, err := startTime(pid)
	return err == nil
}

// RemoveStale removes the labs of test processes that are gone, and
// returns their sandboxes.
func RemoveStale() []string {
	entries, _ := os.ReadDir(Registry)
	var removed []string
	for _, e := range entries {
		f, err := os.Open(filepath.Join(Registry, e.Name()))
		if err != nil {
			continue
		}
		line, _ := bufio.NewReader(f).ReadString('\n')
		f.Close()
		var pid int
		var start uint64
		var prefix string
		if n, _ := fmt.Sscanf(line, "%d %d %s", &pid, &start, &prefix); n != 3 {
			continue
		}
		if now, err := startTime(pid); err == nil && now == start {
			continue // its test is still running
		}
		StopProcesses(e.Name(), prefix, time.Second)
		Unregister(e.Name(), prefix)
		removed = append(removed, e.Name())
	}
	return removed
}

// namespaceNames are the sandbox and every namespace with the prefix.
func namespaceNames(sandbox, prefix string) []string {
	names := []string{sandbox}
	if prefix != "" {
		more, _ := linux.ListNamed(prefix)
		names = append(names, more...)
	}
	return names
}

// removeNamespaces unpins the sandbox and every namespace with the prefix:
// the kernel frees them and all in them.
func removeNamespaces(sandbox, prefix string) {
	for _, n := range namespaceNames(sandbox, prefix) {
		linux.DeleteNamed(n)
		removeStaleHosts(n)
	}
	linux.ForgetSandboxRecords(sandbox)
}

// removeStaleHosts removes the hosts file a lab wrote for namespace name:
// a link into the labs' shared directory (and the lab's shared file when
// no link to it is left), or a file whose first line is a lab's mark (and
// the directory if it is empty then).
func removeStaleHosts(name string) {
	dir := filepath.Join(EtcNetns, name)
	if to, err := os.Readlink(dir); err == nil {
		if strings.HasPrefix(to, sharedRoot+"/") {
			_ = os.Remove(dir)
			if !linkedTo(to) {
				_ = removeShared(filepath.Join(EtcNetns, to))
			}
			removeEtcNetnsIfMade()
		}
		return
	}
	b, err := os.ReadFile(filepath.Join(dir, "hosts"))
	if err != nil || !strings.HasPrefix(string(b), hostsHeader) {
		return
	}
	_ = os.Remove(filepath.Join(dir, "hosts"))
	_ = os.Remove(dir)
	removeEtcNetnsIfMade()
}

// linkedTo reports whether any entry of EtcNetns links to target.
func linkedTo(target string) bool {
	entries, _ := os.ReadDir(EtcNetns)
	for _, e := range entries {
		if e.Type()&os.ModeSymlink == 0 {
			continue
		}
		if to, err := os.Readlink(filepath.Join(EtcNetns, e.Name())); err == nil && to == target {
			return true
		}
	}
	return false
}
