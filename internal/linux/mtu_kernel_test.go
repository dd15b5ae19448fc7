package linux

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// TestIPv6OnAChildOfASmallMTUParent: a macvlan without mtu: takes its
// parent's; where that is under 1280 the kernel refuses its IPv6 address
// (EINVAL), which validate cannot know: the plan is refused before any
// change, saying why; and where the address is added all the same (the
// parent's MTU lowered after the plan), the kernel's EINVAL says why.
func TestIPv6OnAChildOfASmallMTUParent(t *testing.T) {
	k := kernelFor(t, "mtu6")
	h := netlinkIn(t, k, reconcile.HostNS)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "fbr", MTU: 1200}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	want := desiredOf(t, `name: mtu6
namespaces:
  c1: {}
macvlans:
  - {namespace: c1, name: m0, parent: "host:fbr", addresses: ["fd00:9::2/64"]}
`)
	_, err := reconcile.Reconcile(context.Background(), k, want, reconcile.ExecOptions{})
	if err == nil || !strings.Contains(err.Error(), `macvlan "m0" in netns "c1": its address fd00:9::2/64 is IPv6, which needs an MTU of at least 1280, but without mtu: it takes 1200 from its parent host:fbr (MTU 1200)`) ||
		!strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("want the plan refused, naming the MTU, got %v", err)
	}
	if left, _ := ListNamed(k.KernelName("c1")); len(left) > 0 {
		t.Errorf("something was made: %v", left)
	}
	// The address alone on a macvlan that has the parent's small MTU.
	c1 := desiredOf(t, "name: mtu6\nnamespaces:\n  c1: {}\nmacvlans:\n  - {namespace: c1, name: m0, parent: \"host:fbr\"}\n")
	if _, err := reconcile.Reconcile(context.Background(), k, c1, reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	h1, err := k.handle("c1")
	if err != nil {
		t.Fatal(err)
	}
	defer k.release(h1)
	m0, err := h1.h.LinkByName("m0")
	if err != nil {
		t.Fatal(err)
	}
	if err := addAddr(h1, m0, "fd00:9::2/64"); err == nil || !strings.Contains(err.Error(), "its MTU is 1200, under IPv6's minimum of 1280") {
		t.Fatalf("want the MTU named, got %v", err)
	}
	// The file then gives the macvlan that is there an IPv6 address: the
	// plan is refused before any change (an outside audit's find).
	_, err = reconcile.Reconcile(context.Background(), k, want, reconcile.ExecOptions{})
	if err == nil || !strings.Contains(err.Error(), `address fd00:9::2/64 on "m0" in netns "c1": it is IPv6, which needs an MTU of at least 1280, but "m0" has 1200`) ||
		!strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("want the address refused, got %v", err)
	}
}

// TestIPv6OnAChildOfALabBridgeSetSmallByHand: the lab's own bridge (no
// mtu: in the file) set to 1200 and down by hand: the plan brings it up
// again, which changes no MTU, and a macvlan with an IPv6 address on it
// is still refused before any change (an outside audit: any change to the
// parent used to skip the check).
func TestIPv6OnAChildOfALabBridgeSetSmallByHand(t *testing.T) {
	k := kernelFor(t, "mtu6b")
	ctx := context.Background()
	base := "name: mtu6b\nnamespaces:\n  c1: {}\nbridges:\n  - {name: pbr}\n"
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, base), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	h := netlinkIn(t, k, reconcile.HostNS)
	pbr, err := h.LinkByName("pbr")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetMTU(pbr, 1200); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetDown(pbr); err != nil {
		t.Fatal(err)
	}
	want := desiredOf(t, base+"macvlans:\n  - {namespace: c1, name: m0, parent: \"host:pbr\", addresses: [\"fd00:9::2/64\"]}\n")
	_, err = reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{})
	if err == nil || !strings.Contains(err.Error(), "it takes 1200 from its parent host:pbr (MTU 1200)") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("want the plan refused, got %v", err)
	}
	if l, err := h.LinkByName("pbr"); err != nil || l.Attrs().Flags&net.FlagUp != 0 {
		t.Errorf("pbr was changed: %v %v", l, err)
	}
}

// TestIPv6OnALabBridgeThatFollowsSmallPorts: a bridge the lab makes
// without mtu: follows its ports' smallest MTU, and the kernel drops its
// IPv6 addresses when that falls under 1280 (shown by hand below), or
// refuses a macvlan's on it. The plan foresees both from what the kernel
// has and the file says, and is refused before any change.
func TestIPv6OnALabBridgeThatFollowsSmallPorts(t *testing.T) {
	k := kernelFor(t, "mtu6p")
	ctx := context.Background()
	base := "name: mtu6p\nnamespaces:\n  c1: {}\nbridges:\n  - {name: pbr, addresses: [\"fd00:7::1/64\"]}\n"
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, base), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	port := "links:\n  - a: {namespace: c1, name: eth0, mtu: 1200}\n    b: {namespace: host, name: v0, mtu: 1200, bridge: pbr}\n"
	_, err := reconcile.Reconcile(ctx, k, desiredOf(t, base+port), reconcile.ExecOptions{})
	if !errors.Is(err, reconcile.ErrConflict) || !strings.Contains(err.Error(), `address fd00:7::1/64 on "pbr" in netns "host": it is IPv6, which needs an MTU of at least 1280, but "pbr" would have 1200 after this plan`) {
		t.Fatalf("want the plan refused, got %v", err)
	}
	h := netlinkIn(t, k, reconcile.HostNS)
	if _, err := h.LinkByName("v0"); err == nil {
		t.Fatal("v0 was made")
	}
	// What the refusal spares: a port of 1200 by hand takes the bridge's
	// IPv6 address away.
	pbr, err := h.LinkByName("pbr")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "hv0", MTU: 1200, MasterIndex: pbr.Attrs().Index}, PeerName: "hv1"}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if l, err := h.LinkByName("hv0"); err == nil {
			h.LinkDel(l)
		}
	}()
	if l, err := h.LinkByName("pbr"); err != nil || l.Attrs().MTU != 1200 {
		t.Fatalf("pbr after a port of 1200: %v %v", l, err)
	}
	addrs, err := h.AddrList(pbr, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.IPNet.String() == "fd00:7::1/64" {
			t.Fatalf("the kernel kept fd00:7::1/64 at MTU 1200")
		}
	}
	// A macvlan with IPv6 on a new bridge whose only port is small.
	other := "name: mtu6p\nnamespaces:\n  c1: {}\nbridges:\n  - {name: qbr}\n" + strings.ReplaceAll(port, "pbr", "qbr") +
		"macvlans:\n  - {namespace: c1, name: m0, parent: \"host:qbr\", addresses: [\"fd00:9::2/64\"]}\n"
	_, err = reconcile.Reconcile(ctx, k, desiredOf(t, other), reconcile.ExecOptions{})
	if !errors.Is(err, reconcile.ErrConflict) || !strings.Contains(err.Error(), `it takes 1200 from its parent host:qbr (MTU 1200: a bridge without mtu: takes its ports' smallest, v0's): give qbr an mtu: of at least 1280`) {
		t.Fatalf("want the plan refused, got %v", err)
	}
	if _, err := h.LinkByName("qbr"); err == nil {
		t.Fatal("qbr was made")
	}
	// With mtu: on the bridge, the same lab applies.
	fixed := strings.Replace(other, "{name: qbr}", "{name: qbr, mtu: 1500}", 1)
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, fixed), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
}
