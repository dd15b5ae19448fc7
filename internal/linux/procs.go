package linux

import (
	"os"
	"strconv"
	"strings"
)

// pids lists the processes under /proc, as their directory names.
func pids() []string {
	entries, _ := os.ReadDir("/proc")
	var ps []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			ps = append(ps, e.Name())
		}
	}
	return ps
}

// fdPaths lists a process's open files as /proc/PID/fd/N paths.
func fdPaths(pid string) []string {
	dir := "/proc/" + pid + "/fd/"
	fds, _ := os.ReadDir(dir)
	paths := make([]string, len(fds))
	for i, fd := range fds {
		paths[i] = dir + fd.Name()
	}
	return paths
}

// procName is "PID (COMMAND)".
func procName(pid string) string {
	b, _ := os.ReadFile("/proc/" + pid + "/comm")
	return pid + " (" + strings.TrimSpace(string(b)) + ")"
}
