// Command netplan-lab builds Linux network labs from a topology file.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/topology"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == nsexecHelper {
		os.Exit(nsexec(os.Args[2:]))
	}
	// Parsing a huge file makes mostly short-lived garbage (the YAML node
	// tree); a soft limit makes the collector keep the peak near what is
	// live instead of twice it. Small labs never come near it. Commands
	// that hold only the topology set one from the file (loadTopology).
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

// loadTopology reads, decodes and validates the file, for the commands
// that hold nothing but the topology (validate, graph): their soft memory
// limit is 8 times the file's size (64 MiB at least), not 256 MiB. The
// topology they hold is under 7 times the file's size at its peak (a
// 100 000-namespace file: 77 MB live for 11.8 MB), and without the limit
// the collector lets the heap grow to twice what is live: 197 MB of RSS
// against 100 MB with it, in the same time (docs/benchmarks.md, memory).
// Commands that plan hold far more than the topology and keep 256 MiB:
// a limit under what is live makes the collector run all the time.
func loadTopology(file string, vars topology.Vars) (*topology.Topology, error) {
	if os.Getenv("GOMEMLIMIT") == "" {
		if st, err := os.Stat(file); err == nil {
			debug.SetMemoryLimit(max(64<<20, 8*st.Size()))
		}
	}
	return topology.LoadWith(file, vars)
}
