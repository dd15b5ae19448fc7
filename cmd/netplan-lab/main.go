// Command netplan-lab builds Linux network labs from a topology file.
package main

import (
	"os"
	"runtime/debug"
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
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
