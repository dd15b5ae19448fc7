package linux

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// TestDisownStoppedHalfWayKeepsTheLink: destroy leaves the lab's bridge
// to an address added by hand; stopped between the two writes that take
// its mark off (as a kill would), the bridge is still the lab's, and the
// next apply keeps it and the address, and the next destroy leaves it (an
// outside audit: with the alias cleared first, the bridge read as
// half-made by a killed run, and apply replaced it, address and all).
func TestDisownStoppedHalfWayKeepsTheLink(t *testing.T) {
	k := kernelFor(t, "dsw")
	ctx := context.Background()
	file := "name: dsw\nbridges:\n  - {name: br0, addresses: [10.70.0.1/24]}\n"
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, file), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	h := netlinkIn(t, k, reconcile.HostNS)
	br, err := h.LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	hand := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("10.1.1.1"), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrAdd(br, hand); err != nil {
		t.Fatal(err)
	}
	held := func(after string) {
		t.Helper()
		l, err := h.LinkByName("br0")
		if err != nil || l.Attrs().Index != br.Attrs().Index {
			t.Fatalf("%s: br0 was replaced or removed: %v", after, err)
		}
		addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
		for _, a := range addrs {
			if a.IPNet.String() == "10.1.1.1/24" {
				return
			}
		}
		t.Fatalf("%s: the hand-added address is gone: %v", after, addrs)
	}
	stop := errors.New("stopped between the two writes")
	disownBetween = func() error { return stop }
	_, err = reconcile.Reconcile(ctx, k, reconcile.Nothing(), reconcile.ExecOptions{})
	disownBetween = func() error { return nil }
	if !errors.Is(err, stop) {
		t.Fatalf("destroy: %v, want it stopped in disown", err)
	}
	held("destroy stopped half-way")
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, file), reconcile.ExecOptions{}); err != nil {
		t.Fatalf("apply after it: %v", err)
	}
	held("apply after it")
	if _, err := reconcile.Reconcile(ctx, k, reconcile.Nothing(), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	held("destroy")
	if l, _ := h.LinkByName("br0"); l.Attrs().Alias != "" || l.Attrs().Group != 0 {
		t.Fatalf("br0 still marked after destroy: alias %q group %d", l.Attrs().Alias, l.Attrs().Group)
	}
	h.LinkDel(br)
}

// TestHandRoutesOfANamespaceGoingAreWarnedOf: a lab namespace the plan
// removes holding a route someone added: the plan says it goes with it,
// as it says of interfaces (an outside audit: routes went silently).
func TestHandRoutesOfANamespaceGoingAreWarnedOf(t *testing.T) {
	k := kernelFor(t, "hrw")
	ctx := context.Background()
	file := "name: hrw\nnamespaces:\n  c1: {}\nlinks:\n  - a: {namespace: c1, name: eth0, addresses: [10.71.0.2/24]}\n    b: {namespace: host, name: v0, addresses: [10.71.0.1/24]}\n"
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, file), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	h := netlinkIn(t, k, "c1")
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	r := &netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: &net.IPNet{IP: net.ParseIP("10.72.0.0").To4(), Mask: net.CIDRMask(16, 32)}, Gw: net.ParseIP("10.71.0.1")}
	if err := h.RouteAdd(r); err != nil {
		t.Fatal(err)
	}
	p := planNow(t, k, reconcile.Nothing())
	want := `namespace "c1" holds routes the lab did not add (10.72.0.0/16 via 10.71.0.1 dev eth0): they go with it`
	for _, w := range p.Warnings {
		if w == want {
			return
		}
	}
	t.Fatalf("warnings %q, want %q", p.Warnings, want)
}
