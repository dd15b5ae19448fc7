package linux

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/netplan-lab/netplan-lab/topology"
)

// UnknownSysctls asks the kernel, in a throwaway namespace, which of the
// keys of values it does not have, and returns each with the nearest key
// it does have ("" when none is near); and which values it refuses, with
// its answer. An interface's key (net.ipv4.conf.eth0.x) is asked as
// conf.default's (neigh.lo's for net.ipv4.neigh.eth0.x), since the
// interface does not exist there.
func UnknownSysctls(values map[string]string) (unknown map[string]string, refused map[string]error, err error) {
	unknown, refused = map[string]string{}, map[string]error{}
	if len(values) == 0 {
		return unknown, refused, nil
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	err = inNewNetns(func() error {
		for _, k := range keys {
			parts, probe := sysctlProbe(k)
			path := "/proc/sys/" + strings.Join(probe, "/")
			if _, err := os.Stat(path); err != nil {
				unknown[k] = nearestSysctl(probe, parts)
				continue
			}
			// Set it here, where it harms nothing: the kernel says now
			// whether it takes the value.
			if err := os.WriteFile(path, []byte(values[k]), 0o644); err != nil {
				refused[k] = err
				continue
			}
			// And whether it keeps it as written: a time in ms is kept in
			// jiffies (12345 reads 12348 back), and apply would then never
			// see the kernel as the file says (an outside audit's find).
			if b, err := os.ReadFile(path); err == nil {
				want, got := strings.Join(strings.Fields(values[k]), " "), strings.Join(strings.Fields(string(b)), " ")
				if got != want {
					refused[k] = &os.PathError{Op: "write", Path: path, Err: fmt.Errorf("it keeps %q instead: write %q", got, got)}
				}
			}
		}
		return nil
	})
	return unknown, refused, err
}

// UnknownHere returns the keys the calling process's own namespace does
// not have, each with the nearest key it has ("" when none is near). It
// only looks: nothing is written.
func UnknownHere(keys []string) map[string]string {
	unknown := map[string]string{}
	for _, k := range keys {
		parts, probe := sysctlProbe(k)
		if st, err := os.Stat("/proc/sys/" + strings.Join(probe, "/")); err != nil || st.IsDir() {
			unknown[k] = nearestSysctl(probe, parts)
		}
	}
	return unknown
}

// sysctlProbe splits key into its parts, and gives the parts of the path
// to ask for it under /proc/sys: an interface's dots back (br/0 is the
// directory br.0), and an interface's key (net.ipv4.conf.eth0.x) asked as
// conf.default's, neigh.lo's for neigh (a new namespace has no
// neigh.default, only the first one does), since the interface may not
// exist there, or not yet.
func sysctlProbe(key string) (parts, probe []string) {
	parts = strings.Split(key, ".")
	probe = make([]string, len(parts))
	for i, p := range parts {
		probe[i] = topology.SysctlIfname(p)
	}
	if len(parts) >= 5 && (parts[2] == "conf" || parts[2] == "neigh") && parts[3] != "all" && parts[3] != "default" {
		probe[3] = "default"
		if parts[2] == "neigh" {
			probe[3] = "lo"
		}
	}
	return parts, probe
}

// nearestSysctl finds, level by level, the existing key closest to the
// one asked (probe), and writes it back with the original interface name.
func nearestSysctl(probe, orig []string) string {
	dir := "/proc/sys"
	var got []string
	for i, part := range probe {
		if i == 3 && len(got) == 3 && (got[2] == "conf" || got[2] == "neigh") && len(probe) > 4 {
			// An interface's part, once its family's conf or neigh is
			// found (a typo there too: net.ipv4.neihg.eth0.x): asked as
			// lo's, which every namespace has, and kept as written.
			got, dir = append(got, orig[i]), filepath.Join(dir, "lo")
			continue
		}
		p := filepath.Join(dir, part)
		if _, err := os.Stat(p); err == nil {
			got, dir = append(got, orig[i]), p
			continue
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return ""
		}
		best, bestD := "", 4 // at most 3 edits away
		for _, e := range entries {
			if d := topology.EditDistance(part, e.Name()); d < bestD {
				best, bestD = e.Name(), d
			}
		}
		if best == "" {
			return ""
		}
		got, dir = append(got, best), filepath.Join(dir, best)
	}
	if st, err := os.Stat(dir); err != nil || st.IsDir() {
		return ""
	}
	return strings.Join(got, ".")
}
