package linux

import (
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// TestSysctlsThroughPrivateProc: sysctls written and read through the
// private procfs instances (privateProc) are those of the namespace of the
// thread that opens them, across more namespaces than one instance serves,
// as the same keys read through /proc say; and no instance stays open
// beyond the current one.
func TestSysctlsThroughPrivateProc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes namespaces and procfs instances")
	}
	fds := func() int {
		e, _ := os.ReadDir("/proc/self/fd")
		return len(e)
	}
	const n = 3*procReuse + 5
	var hs []netns.NsHandle
	defer func() {
		for _, h := range hs {
			h.Close()
		}
	}()
	for i := 0; i < n; i++ {
		if err := inNetnsNew(func(h netns.NsHandle) { hs = append(hs, h) }); err != nil {
			t.Fatal(err)
		}
	}
	before := fds()
	// Each namespace gets its own pattern: forwarding and IPv6 by the
	// index's two lowest bits.
	want := func(i int) map[string]string {
		return map[string]string{
			"net.ipv4.ip_forward":            []string{"0", "1"}[i&1],
			"net.ipv6.conf.all.disable_ipv6": []string{"0", "1"}[i>>1&1],
		}
	}
	for i, h := range hs {
		for k, v := range want(i) {
			if err := writeSysctl(h, k, v); err != nil {
				t.Fatalf("namespace %d: %s: %v", i, k, err)
			}
		}
	}
	if privateProc.off {
		t.Fatal("the kernel refused a procfs instance (fsopen/fsmount): the test would only show /proc")
	}
	for i, h := range hs {
		got, err := readSysctls(h, []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.disable_ipv6"})
		if err != nil {
			t.Fatal(err)
		}
		// The same keys through /proc, as anyone else reads them.
		viaProc := map[string]string{}
		err = InNetns(h, func() error {
			for k := range want(i) {
				b, err := os.ReadFile(sysctlPath(k))
				if err != nil {
					return err
				}
				viaProc[k] = strings.TrimSpace(string(b))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want(i) {
			if got[k] != v || viaProc[k] != v {
				t.Errorf("namespace %d: %s is %q through the instance and %q through /proc, want %q", i, k, got[k], viaProc[k], v)
			}
		}
	}
	// The instances in use during the writes are gone: at most the
	// current one is left open (one more file than before, or none if it
	// was already open).
	if after := fds(); after > before+1 {
		t.Errorf("%d files open after, %d before: procfs instances left open", after, before)
	}
}
