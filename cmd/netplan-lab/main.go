// Command netplan-lab builds Linux network labs from a topology file.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"

	"github.com/netplan-lab/netplan-lab/internal/linux"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == nsexecHelper {
		os.Exit(nsexec(os.Args[2:]))
	}
	// Parsing a huge file makes mostly short-lived garbage (the YAML node
	// tree); a soft limit makes the collector keep the peak near what is
	// live instead of twice it. Small labs never come near it.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(256 << 20)
	}
	linux.RaiseOpenFileLimit()
	if f := os.Getenv("NETPLAN_LAB_CPUPROFILE"); f != "" {
		os.Exit(profiled(f))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// profiled runs the command with the CPU profiler on, writing the profile
// to file (NETPLAN_LAB_CPUPROFILE=file; read it with go tool pprof). For
// measuring, not for users: it is not in the help.
func profiled(file string) int {
	f, err := os.Create(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "netplan-lab: cpu profile:", err)
		return 1
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "netplan-lab: cpu profile:", err)
		return 1
	}
	defer pprof.StopCPUProfile()
	return run(os.Args[1:], os.Stdout, os.Stderr)
}
