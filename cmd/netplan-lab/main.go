// Command netplan-lab builds Linux network labs from a topology file.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"time"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	netplanlab "github.com/netplan-lab/netplan-lab/lab"
	"github.com/netplan-lab/netplan-lab/topology"
)

const defaultMemoryLimit = 256 << 20

func main() {
	// exec and shell start this program again in the lab's namespace, to
	// do there what `ip netns exec` does before the command runs.
	if len(os.Args) > 1 && os.Args[1] == netplanlab.NSExecArg {
		os.Exit(netplanlab.NSExec(os.Args[2:]))
	}
	// Parsing a huge file makes mostly short-lived garbage (the YAML node
	// tree); a soft limit makes the collector keep the peak near what is
	// live instead of twice it. Small labs never come near it. Commands
	// that hold only the topology set one from the file (loadTopology).
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
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
// that hold nothing but the topology (validate, graph). While it does,
// the soft memory limit is 8 times the file's size (64 MiB at least), not
// 256 MiB: a file decoded a chunk at a time holds a topology of under 6
// times its size at the peak (a 100 000-namespace file: 70 MB live for
// 11.8 MB), and without the limit the collector lets the heap grow to
// twice what is live (197 MB of RSS against 96 MB with it;
// docs/benchmarks.md, memory). A file that cannot be decoded in chunks,
// or has problems to place, holds far more (its whole YAML tree: an
// outside audit saw 340 MB for an 8.4 MB file); under a limit below what
// is live the collector would run without pause, so boundHeap raises the
// limit when the collector has no room left. Commands that plan hold far more than the topology and
// keep 256 MiB.
func loadTopology(file string, vars topology.Vars, opts ...topology.Option) (*topology.Topology, error) {
	if os.Getenv("GOMEMLIMIT") == "" {
		if st, err := os.Stat(file); err == nil {
			defer boundHeap(max(64<<20, 8*st.Size()))()
		}
	}
	return topology.LoadWith(file, vars, opts...)
}

// boundHeap sets the soft memory limit to limit, and raises it when the
// collector has almost no room left under it: when what the last
// collection left live is within a sixteenth of the heap's goal (read every
// 20 ms), the limit becomes one and a half times what is live. (The
// limit covers the runtime's own memory too, so the heap's goal is under
// it; with no room each collection frees next to nothing and the next
// starts at once: an outside audit saw 15 collections in a row free 1 %
// each, a 3.9 MB file with problems taking 1.5 s instead of 1.0 s, under
// a first rule that waited for 90 % of the limit.) The returned func puts
// the default limit back.
func boundHeap(limit int64) (restore func()) {
	debug.SetMemoryLimit(limit)
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		m := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/goal:bytes"}}
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			metrics.Read(m)
			live, goal := int64(m[0].Value.Uint64()), int64(m[1].Value.Uint64())
			if goal-live < live/16 && live*3/2 > limit {
				limit = live * 3 / 2
				debug.SetMemoryLimit(limit)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		debug.SetMemoryLimit(max(defaultMemoryLimit, limit))
	}
}
