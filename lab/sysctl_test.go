package lab

import (
	"os"
	"strings"
	"testing"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/topology"
)

// TestHostSysctlsOfTheMachine: without --netns, host is the machine's own
// namespace, which may have keys no new namespace has (net.core.rmem_max:
// the first namespace's only): they are looked up there, read only, not
// asked of a throwaway namespace, which refused them (an outside audit's
// find); a typo there still gets its did-you-mean. With a sandbox, host
// is a new namespace, and such a key is refused. Nothing is written in
// this namespace.
func TestHostSysctlsOfTheMachine(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the sysctls are asked of a throwaway namespace")
	}
	only, value := "", ""
	for _, k := range []string{"net.core.rmem_max", "net.core.wmem_max", "net.core.netdev_max_backlog", "net.ipv4.neigh.default.gc_thresh3"} {
		b, err := os.ReadFile("/proc/sys/" + topology.SysctlPath(k))
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if unknown, _, err := linux.UnknownSysctls(map[string]string{k: v}); err == nil && unknown[k] == "" {
			if _, ok := unknown[k]; ok {
				only, value = k, v
				break
			}
		}
	}
	if only == "" {
		t.Skip("this namespace has no key that a new namespace lacks (it is not the machine's first)")
	}
	// And a key of an interface the lab is still to make there (br9).
	top, err := topology.Parse("h.yaml", []byte("name: h\nnamespaces:\n  host:\n    sysctls:\n      "+only+": \""+value+"\"\n      net.ipv4.ip_fowrad: \"1\"\n      net.ipv4.conf.br9.forwarding: \"1\"\nbridges:\n  - {name: br9}\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = checkSysctls(top, true)
	if err == nil || strings.Contains(err.Error(), only) || strings.Contains(err.Error(), "br9") || !strings.Contains(err.Error(), "this kernel has no sysctl net.ipv4.ip_fowrad (did you mean net.ipv4.ip_forward?)") {
		t.Errorf("host, the machine's namespace: want only the typo refused, got %v", err)
	}
	if err := checkSysctls(top, false); err == nil || !strings.Contains(err.Error(), "this kernel has no sysctl "+only) {
		t.Errorf("host, a sandbox: want %s refused, got %v", only, err)
	}
}

// TestSysctlTypoKeepsTheInterface: a typo in the family's part of an
// interface's key (neihg for neigh) gets a did-you-mean with the file's
// interface, not lo (an outside audit's find).
func TestSysctlTypoKeepsTheInterface(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the sysctls are asked of a throwaway namespace")
	}
	unknown, _, err := linux.UnknownSysctls(map[string]string{"net.ipv4.neihg.eth0.app_solicit": "0", "net.ipv4.cnof.br/0.forwarding": "1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := unknown["net.ipv4.neihg.eth0.app_solicit"]; got != "net.ipv4.neigh.eth0.app_solicit" {
		t.Errorf("neihg: did you mean %q", got)
	}
	if got := unknown["net.ipv4.cnof.br/0.forwarding"]; got != "net.ipv4.conf.br/0.forwarding" {
		t.Errorf("cnof: did you mean %q", got)
	}
}
