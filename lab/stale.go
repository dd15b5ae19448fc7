package lab

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Labs of test processes (labtest): each records its sandbox with the
// creating process's id and start time; a record whose process is gone (a
// test binary killed by go test -timeout or SIGKILL) is a lab nobody will
// destroy. RemoveStale removes those; `netplan-lab destroy --stale` and
// every labtest.Up call it.

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
// left, its lock file) and its record.
func Unregister(sandbox, prefix string) {
	removeNamespaces(sandbox, prefix)
	os.Remove(filepath.Join("/run/netplan-lab/locks", "sandbox-"+sandbox+".lock"))
	os.Remove(filepath.Join(Registry, sandbox))
}

// startTime is a process's start time in clock ticks since boot
// (/proc/PID/stat field 22): a pid used again is another process.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ")")+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
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
		Unregister(e.Name(), prefix)
		removed = append(removed, e.Name())
	}
	return removed
}

// removeNamespaces unpins the sandbox and every namespace with the prefix:
// the kernel frees them and all in them.
func removeNamespaces(sandbox, prefix string) {
	entries, _ := os.ReadDir("/run/netns")
	for _, d := range entries {
		if d.Name() == sandbox || (prefix != "" && strings.HasPrefix(d.Name(), prefix)) {
			p := filepath.Join("/run/netns", d.Name())
			syscall.Unmount(p, syscall.MNT_DETACH)
			os.Remove(p)
		}
	}
}
