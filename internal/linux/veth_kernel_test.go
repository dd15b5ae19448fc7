package linux

import (
	"context"
	"net"
	"slices"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// kernelAtLeast reports whether the running kernel is major.minor or later.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	f := strings.FieldsFunc(unix.ByteSliceToString(u.Release[:]), func(r rune) bool { return r < '0' || r > '9' })
	if len(f) < 2 {
		return false
	}
	a, _ := strconv.Atoi(f[0])
	b, _ := strconv.Atoi(f[1])
	return a > major || a == major && b >= minor
}

// TestVethCreatedUpWithItsIndex: addVeth makes the pair, this end up and
// the peer in its namespace, and returns this end's ifindex from the kernel's echo;
// linkIndex and configure by name find the same links.
func TestVethCreatedUpWithItsIndex(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (throwaway network namespaces)")
	}
	var fa, fb netns.NsHandle
	if err := inNetnsNew(func(f netns.NsHandle) { fa = f }); err != nil {
		t.Fatal(err)
	}
	if err := inNetnsNew(func(f netns.NsHandle) { fb = f }); err != nil {
		t.Fatal(err)
	}
	ha, hb := &nsHandle{fd: fa}, &nsHandle{fd: fb}
	defer ha.close()
	defer hb.close()
	for _, h := range []*nsHandle{ha, hb} {
		if err := h.ensure(); err != nil {
			t.Fatal(err)
		}
	}
	a := netlink.NewLinkAttrs()
	a.Name, a.Group, a.MTU = "va", 77, 1400
	index, err := ha.addVeth(a, true, "vb", 1300, nil, fb)
	if err != nil {
		t.Fatal(err)
	}
	va, err := ha.h.LinkByName("va")
	if err != nil {
		t.Fatal(err)
	}
	vb, err := hb.h.LinkByName("vb")
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case index == 0 && kernelAtLeast(6, 1):
		t.Errorf("no index from the kernel's echo (Linux 6.1 and later echo a new link)")
	case index != 0 && index != va.Attrs().Index:
		t.Errorf("index %d from the echo, the link has %d", index, va.Attrs().Index)
	}
	if va.Attrs().RawFlags&unix.IFF_UP == 0 || vb.Attrs().RawFlags&unix.IFF_UP != 0 {
		t.Errorf("raw flags %#x and %#x: va should be up and vb down", va.Attrs().RawFlags, vb.Attrs().RawFlags)
	}
	if va.Attrs().MTU != 1400 || vb.Attrs().MTU != 1300 || va.Attrs().Group != 77 || vb.Attrs().Group != 77 {
		t.Errorf("mtu %d/%d group %d/%d, want 1400/1300 and 77 on both", va.Attrs().MTU, vb.Attrs().MTU, va.Attrs().Group, vb.Attrs().Group)
	}
	// One queue each way on both ends, made so (not the kernel's default
	// of one per CPU cut to one once registered, which waits for an RCU
	// grace period under the RTNL lock, twice per veth).
	for _, l := range []netlink.Link{va, vb} {
		if at := l.Attrs(); at.NumTxQueues != 1 || at.NumRxQueues != 1 {
			t.Errorf("%s: %d tx and %d rx queues, want 1 and 1", at.Name, at.NumTxQueues, at.NumRxQueues)
		}
	}
	if i, err := hb.linkIndex("vb"); err != nil || i != vb.Attrs().Index {
		t.Errorf("linkIndex(vb) = %d, %v; the link has %d", i, err, vb.Attrs().Index)
	}
	if _, err := hb.linkIndex("nothere"); !isNotFound(err) {
		t.Errorf("linkIndex of a missing link: %v, want ENODEV", err)
	}
	if err := hb.configure(0, "vb", "marked", 0, true); err != nil {
		t.Fatal(err)
	}
	vb, _ = hb.h.LinkByName("vb")
	if vb.Attrs().Alias != "marked" || vb.Attrs().RawFlags&unix.IFF_UP == 0 {
		t.Errorf("configure by name: alias %q, raw flags %#x; want \"marked\" and up", vb.Attrs().Alias, vb.Attrs().RawFlags)
	}
}

// TestVXLANEndpointChangeFlushesLearned, against the kernel: when a
// VXLAN's remote changes in place, the forwarding entries it learned at
// the old endpoint go (they would send there for up to 300 s: an
// outside audit saw the overlay dead while plan said nothing was to
// do); permanent ones (its default destination, one added by hand) stay.
func TestVXLANEndpointChangeFlushesLearned(t *testing.T) {
	k := kernelFor(t, "vxfdb")
	ctx := context.Background()
	lab := func(remote string) *reconcile.State {
		return desiredOf(t, "name: vxfdb\nnamespaces:\n  r: {}\nbridges:\n  - {namespace: r, name: brx}\nlinks:\n  - a: {namespace: r, name: u0, addresses: [10.2.0.2/24]}\n    b: {namespace: host, name: u0, addresses: [10.2.0.1/24, 10.2.0.3/24]}\nvxlans:\n  - {namespace: r, name: vx0, vni: 100, remote: "+remote+", dev: u0, bridge: brx}\n")
	}
	if _, err := reconcile.Reconcile(ctx, k, lab("10.2.0.1"), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	h := netlinkIn(t, k, "r")
	vx, err := h.LinkByName("vx0")
	if err != nil {
		t.Fatal(err)
	}
	idx := vx.Attrs().Index
	learned, _ := net.ParseMAC("02:00:00:00:aa:01")
	byHand, _ := net.ParseMAC("02:00:00:00:aa:02")
	for _, e := range []netlink.Neigh{
		{LinkIndex: idx, Family: unix.AF_BRIDGE, HardwareAddr: learned, IP: net.ParseIP("10.2.0.1"), Flags: netlink.NTF_SELF, State: netlink.NUD_REACHABLE},
		{LinkIndex: idx, Family: unix.AF_BRIDGE, HardwareAddr: byHand, IP: net.ParseIP("10.2.0.1"), Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT},
		// The bridge's own entry for its port vx0 (no endpoint): stays.
		{LinkIndex: idx, Family: unix.AF_BRIDGE, HardwareAddr: learned, Flags: netlink.NTF_MASTER, State: netlink.NUD_REACHABLE},
	} {
		if err := h.NeighAppend(&e); err != nil {
			t.Fatalf("add %s: %v", e.HardwareAddr, err)
		}
	}
	if _, err := reconcile.Reconcile(ctx, k, lab("10.2.0.3"), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	fdb, err := h.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		t.Fatal(err)
	}
	var self, master []string
	for _, e := range fdb {
		switch {
		case e.LinkIndex != idx:
		case e.Flags&netlink.NTF_SELF != 0:
			self = append(self, e.HardwareAddr.String())
		default: // the bridge's (the dump marks it with NDA_MASTER, not a flag)
			master = append(master, e.HardwareAddr.String())
		}
	}
	got := strings.Join(self, " ")
	if strings.Contains(got, learned.String()) || !strings.Contains(got, byHand.String()) || !strings.Contains(got, "00:00:00:00:00:00") {
		t.Fatalf("the VXLAN's forwarding entries after the remote changed: %s; want the learned one gone, the default and the hand-added one kept", got)
	}
	if !slices.Contains(master, learned.String()) {
		t.Fatalf("the bridge's entries for vx0: %v; want its entry for %s kept", master, learned)
	}
}
