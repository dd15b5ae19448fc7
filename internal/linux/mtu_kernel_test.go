package linux

import (
	"context"
	"errors"
	"fmt"
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
	if err == nil || !strings.Contains(err.Error(), `macvlan "m0" in netns "c1": its address fd00:9::2/64 is IPv6, which needs an MTU of at least 1280, but without mtu: it would have 1200 (it takes it from its parent host:fbr, MTU 1200): raise host:fbr's MTU`) ||
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
	if err == nil || !strings.Contains(err.Error(), `address fd00:9::2/64 on "m0" in netns "c1": it is IPv6, which needs an MTU of at least 1280, but "m0" has 1200 (it takes it from its parent host:fbr, MTU 1200)`) ||
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
	if err == nil || !strings.Contains(err.Error(), "it would have 1200 (it takes it from its parent host:pbr, MTU 1200): give host:pbr an mtu: of at least 1280") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("want the plan refused, got %v", err)
	}
	if l, err := h.LinkByName("pbr"); err != nil || l.Attrs().Flags&net.FlagUp != 0 {
		t.Errorf("pbr was changed: %v %v", l, err)
	}
}

// withMTU is the desired state of src with the links at refs given mtu.
func withMTU(t *testing.T, src string, mtu int, refs ...reconcile.Ref) *reconcile.State {
	t.Helper()
	s := desiredOf(t, src)
	for _, r := range refs {
		s.Link(r).MTU = mtu
	}
	return s
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
	// That file is validate's to refuse now; the plan's own check stays
	// for what a file does not show: the ports' MTU is set in the desired
	// state itself.
	small := withMTU(t, base+strings.ReplaceAll(port, ", mtu: 1200", ""), 1200, reconcile.Ref{NS: "host", Name: "v0"}, reconcile.Ref{NS: "c1", Name: "eth0"})
	_, err := reconcile.Reconcile(ctx, k, small, reconcile.ExecOptions{})
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
	if !errors.Is(err, reconcile.ErrConflict) || !strings.Contains(err.Error(), `it would have 1200 (it takes it from its parent host:qbr, MTU 1200): give host:qbr an mtu: of at least 1280`) {
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

// TestIPv6UnderWhatAnEditLeaves (outside audits' finds): edits that leave
// an interface with IPv6 under 1280 without making it: a port of a lab
// bridge lowered (the bridge follows it, and its macvlan the bridge), a
// VXLAN given a smaller dev in place (the kernel holds it under what that
// leaves). Each is refused whole; what the kernel would do is shown where
// the plan spares it.
func TestIPv6UnderWhatAnEditLeaves(t *testing.T) {
	k := kernelFor(t, "mtu6e")
	ctx := context.Background()
	h := netlinkIn(t, k, reconcile.HostNS)
	base := "name: mtu6e\nnamespaces:\n  c1: {}\n  c2: {}\nbridges:\n  - {name: br0, addresses: [\"fd00:1::1/64\"]}\n" +
		"links:\n  - a: {namespace: c1, name: eth0}\n    b: {namespace: host, name: vc1, mtu: 1500, bridge: br0}\n" +
		"macvlans:\n  - {namespace: c2, name: m0, parent: \"host:br0\", addresses: [\"fd00:4::2/64\"]}\n"
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, base), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	// That file is validate's to refuse now; the plan's own check stays
	// for what a file does not show, so the port is lowered in the
	// desired state itself.
	lowered := withMTU(t, base, 1200, reconcile.Ref{NS: "host", Name: "vc1"}, reconcile.Ref{NS: "c1", Name: "eth0"})
	_, err := reconcile.Reconcile(ctx, k, lowered, reconcile.ExecOptions{})
	for _, want := range []string{`address fd00:1::1/64 on "br0" in netns "host": it is IPv6, which needs an MTU of at least 1280, but "br0" would have 1200 after this plan (a bridge without mtu: follows its ports' smallest MTU, host:vc1's)`,
		`address fd00:4::2/64 on "m0" in netns "c2": it is IPv6, which needs an MTU of at least 1280, but "m0" would have 1200 after this plan (it takes it from its parent host:br0, MTU 1200): give host:br0 an mtu: of at least 1280`} {
		if !errors.Is(err, reconcile.ErrConflict) || !strings.Contains(err.Error(), want) {
			t.Fatalf("want %q, got %v", want, err)
		}
	}
	if l, err := h.LinkByName("vc1"); err != nil || l.Attrs().MTU != 1500 {
		t.Fatalf("vc1 was changed: %v %v", l, err)
	}
	// The bridge given an mtu: keeps it, and both addresses stay.
	fixed := strings.Replace(strings.Replace(base, "mtu: 1500", "mtu: 1200", 1), "{name: br0,", "{name: br0, mtu: 1500,", 1)
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, fixed), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	// A VXLAN moved to a smaller dev in place: by hand first, what the
	// kernel does (it holds the VXLAN under the dev's MTU less 70).
	for name, mtu := range map[string]int{"u0": 1350, "u2": 1200} {
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}); err != nil {
			t.Fatal(err)
		}
		defer func(name string) {
			if l, err := h.LinkByName(name); err == nil {
				h.LinkDel(l)
			}
		}(name)
	}
	vx := base + "vxlans:\n  - {name: vx0, vni: 5, remote: \"2001:db8::2\", dev: u0, addresses: [\"fd00:5::1/64\"]}\n"
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, vx), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = reconcile.Reconcile(ctx, k, desiredOf(t, strings.Replace(vx, "dev: u0", "dev: u2", 1)), reconcile.ExecOptions{})
	if !errors.Is(err, reconcile.ErrConflict) || !strings.Contains(err.Error(), `"vx0" would have 1130 after this plan (it takes it from its dev host:u2, MTU 1200, less 70 for the VXLAN's headers): raise host:u2's MTU`) {
		t.Fatalf("want the VXLAN's move refused, got %v", err)
	}
	vx0, err := h.LinkByName("vx0")
	if err != nil || vx0.Attrs().MTU != 1280 {
		t.Fatalf("vx0 was changed: %v %v", vx0, err)
	}
	// What the refusal spares: the same plan carried out all the same.
	moved := desiredOf(t, strings.Replace(vx, "dev: u0", "dev: u2", 1))
	obs, err := k.Observe(ctx, reconcile.QueryFor(moved))
	if err != nil {
		t.Fatal(err)
	}
	p := reconcile.Diff(moved, obs)
	p.Conflicts = nil
	if err := reconcile.Execute(ctx, k, p, reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	if l, err := h.LinkByName("vx0"); err != nil || l.Attrs().MTU != 1130 {
		t.Fatalf("vx0 on u2: %v %v (want MTU 1130)", l, err)
	}
	// (The kernel keeps the IPv6 address there, which IPv6 cannot use
	// under 1280: the next plan says so.)
	obs, err = k.Observe(ctx, reconcile.QueryFor(moved))
	if err != nil {
		t.Fatal(err)
	}
	if p := reconcile.Diff(moved, obs); len(p.Conflicts) != 1 || !strings.Contains(p.Conflicts[0], `"vx0" has 1130 (it takes it from its dev host:u2, MTU 1200, less 70 for the VXLAN's headers): raise host:u2's MTU`) {
		t.Fatalf("after the move, want the conflict, got:\n%v", p)
	}
}

// TestVethEndTakesItsPeersMTU: a pair with an mtu: on one end only has
// that MTU on both, whichever end the lab makes first (the one whose
// namespace and name sort first).
func TestVethEndTakesItsPeersMTU(t *testing.T) {
	k := kernelFor(t, "vmtu")
	y := "name: vmtu\nnamespaces:\n  c1: {}\nlinks:\n  - a: {namespace: c1, name: x0}\n    b: {namespace: host, name: x1, mtu: 1300}\n" +
		"  - a: {namespace: c1, name: y0, mtu: 1300}\n    b: {namespace: host, name: y1}\n"
	if _, err := reconcile.Reconcile(context.Background(), k, desiredOf(t, y), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	h, c := netlinkIn(t, k, reconcile.HostNS), netlinkIn(t, k, "c1")
	for _, e := range []struct {
		h    *netlink.Handle
		name string
	}{{c, "x0"}, {h, "x1"}, {c, "y0"}, {h, "y1"}} {
		if l, err := e.h.LinkByName(e.name); err != nil || l.Attrs().MTU != 1300 {
			t.Errorf("%s: %v %v, want MTU 1300", e.name, l, err)
		}
	}
}

// TestLowerUnder1280AndDropIPv6: an edit that takes a link under 1280 and
// its IPv6 address away at once applies (the kernel drops the address
// with the MTU, and its delete then finds IPv6 gone from the link: done);
// a bridge without ports set to 1200 by hand keeps it, and IPv6 there is
// a conflict (outside audits' finds).
func TestLowerUnder1280AndDropIPv6(t *testing.T) {
	k := kernelFor(t, "low6")
	ctx := context.Background()
	v1 := "name: low6\nnamespaces:\n  c1: {}\nlinks:\n  - a: {namespace: c1, name: eth0, addresses: [10.8.0.2/24, \"fd85::1/64\"]}\n    b: {namespace: host, name: v0}\n    mtu: 1300\n"
	v2 := strings.Replace(strings.Replace(v1, `, "fd85::1/64"`, "", 1), "mtu: 1300", "mtu: 1200", 1)
	for _, f := range []string{v1, v2} {
		if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, f), reconcile.ExecOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	base := "name: low6\nnamespaces:\n  c1: {}\nbridges:\n  - {name: br9}\n"
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, base), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	h := netlinkIn(t, k, reconcile.HostNS)
	br, err := h.LinkByName("br9")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetMTU(br, 1200); err != nil {
		t.Fatal(err)
	}
	_, err = reconcile.Reconcile(ctx, k, desiredOf(t, "name: low6\nnamespaces:\n  c1: {}\nbridges:\n  - {name: br9, addresses: [\"fd84::1/64\"]}\nlinks:\n  - a: {namespace: c1, name: e1}\n    b: {namespace: host, name: p1, bridge: br9}\n"), reconcile.ExecOptions{})
	if !errors.Is(err, reconcile.ErrConflict) || !strings.Contains(err.Error(), `"br9" has 1200`) {
		t.Fatalf("want the conflict, got %v", err)
	}
}

// TestIPv6MTUSettingFollowsTheMTU, against the kernel: an interface's IPv6
// MTU (net.ipv6.conf.IF.mtu) over its MTU is refused by the plan, before
// any change (the kernel's EINVAL came half-way through an apply); the
// kernel sets it to the new MTU whenever the MTU changes, so a file that
// raises the MTU and keeps the IPv6 MTU gets it set again (an outside
// finding: apply failed, the kernel not matching the file); and an
// interface under 1280 has no IPv6 settings at all.
func TestIPv6MTUSettingFollowsTheMTU(t *testing.T) {
	k := kernelFor(t, "mtu6s")
	ctx := context.Background()
	src := func(sysctl string, mtu int) string {
		return fmt.Sprintf("name: mtu6s\nnamespaces:\n  a:\n    sysctls:\n      %s\n  b: {}\nlinks:\n  - a: {namespace: a, name: eth0, mtu: %d, addresses: [\"fd00::1/64\"]}\n    b: {namespace: b, name: eth0}\n", sysctl, mtu)
	}
	lab := func(sysctl string, mtu int) *reconcile.State { return desiredOf(t, src(sysctl, mtu)) }
	_, err := reconcile.Reconcile(ctx, k, lab(`net.ipv6.conf.eth0.mtu: "1600"`, 1500), reconcile.ExecOptions{})
	if err == nil || !strings.Contains(err.Error(), `sysctl net.ipv6.conf.eth0.mtu = 1600 in netns "a": the kernel refuses an IPv6 MTU over the interface's own, and "eth0" would have 1500`) ||
		!strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("want the plan refused, got %v", err)
	}
	if left, _ := ListNamed(k.KernelName("a")); len(left) > 0 {
		t.Fatalf("something was made: %v", left)
	}
	if _, err := reconcile.Reconcile(ctx, k, lab(`net.ipv6.conf.eth0.mtu: "1400"`, 1500), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := reconcile.Reconcile(ctx, k, lab(`net.ipv6.conf.eth0.mtu: "1400"`, 1600), reconcile.ExecOptions{})
	if err != nil {
		t.Fatalf("raising the MTU: %v", err)
	}
	if !strings.Contains(res.Plan.String(), "net.ipv6.conf.eth0.mtu") {
		t.Fatalf("want the IPv6 MTU set again, got\n%v", res.Plan)
	}
	if v := sysctlIn(t, k, "a", "net.ipv6.conf.eth0.mtu"); v != "1400" {
		t.Fatalf("net.ipv6.conf.eth0.mtu is %s, want 1400", v)
	}
	// Down, then up again: the kernel sets it to the MTU as the link
	// comes up (IPv6's IF_READY), so it is set again after.
	down := strings.Replace(src(`net.ipv6.conf.eth0.mtu: "1400"`, 1600), "mtu: 1600,", "mtu: 1600, up: false,", 1)
	for _, f := range []string{down, src(`net.ipv6.conf.eth0.mtu: "1400"`, 1600)} {
		if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, f), reconcile.ExecOptions{}); err != nil {
			t.Fatalf("%v\n%s", err, f)
		}
	}
	if v := sysctlIn(t, k, "a", "net.ipv6.conf.eth0.mtu"); v != "1400" {
		t.Fatalf("net.ipv6.conf.eth0.mtu is %s after the link came up again, want 1400", v)
	}
	// A link made with its peer down has no carrier: it becomes ready
	// when the peer comes up, by the peer's change, and the kernel resets
	// its IPv6 MTU then (an outside audit: apply failed).
	late := func(up string) *reconcile.State {
		return desiredOf(t, "name: mtu6s\nnamespaces:\n  e:\n    sysctls:\n      net.ipv6.conf.eth0.mtu: \"1400\"\n  f: {}\nlinks:\n  - a: {namespace: e, name: eth0, addresses: [\"fd61::1/64\"]}\n    b: {namespace: f, name: eth0, addresses: [\"fd61::2/64\"]"+up+"}\n")
	}
	for _, want := range []*reconcile.State{late(", up: false"), late("")} {
		if _, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if v := sysctlIn(t, k, "e", "net.ipv6.conf.eth0.mtu"); v != "1400" {
		t.Fatalf("net.ipv6.conf.eth0.mtu is %s after its peer came up, want 1400", v)
	}
	// Under 1280 (a new pair, the other end's mtu: gives it) there is no
	// IPv6 setting.
	small := desiredOf(t, "name: mtu6s\nnamespaces:\n  c:\n    sysctls:\n      net.ipv6.conf.eth0.forwarding: \"1\"\n  d: {}\nlinks:\n  - a: {namespace: c, name: eth0}\n    b: {namespace: d, name: eth0, mtu: 1200}\n")
	_, err = reconcile.Reconcile(ctx, k, small, reconcile.ExecOptions{})
	if err == nil || !strings.Contains(err.Error(), `sysctl net.ipv6.conf.eth0.forwarding in netns "c": "eth0" would have an MTU of 1200`) ||
		!strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("want the plan refused, got %v", err)
	}
}

// TestVXLANMTUOverADevLoweredByHand, against the kernel: a VXLAN's mtu:
// over what its dev leaves it (the dev's MTU lowered by hand, which
// validate cannot know) is refused by the plan before any change, naming
// what the dev needs; the kernel's EINVAL came half-way through an apply
// (an outside audit).
func TestVXLANMTUOverADevLoweredByHand(t *testing.T) {
	k := kernelFor(t, "vxmtu")
	ctx := context.Background()
	base := "name: vxmtu\nnamespaces:\n  r: {}\nlinks:\n  - a: {namespace: r, name: u0, addresses: [10.2.0.2/24]}\n    b: {namespace: host, name: u0, addresses: [10.2.0.1/24]}\nvxlans:\n  - {namespace: r, name: vx0, vni: 100, remote: 10.2.0.1, dev: u0"
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, base+"}\n"), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	h := netlinkIn(t, k, "r")
	u0, err := h.LinkByName("u0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetMTU(u0, 1320); err != nil {
		t.Fatal(err)
	}
	_, err = reconcile.Reconcile(ctx, k, desiredOf(t, base+", mtu: 1400}\n"), reconcile.ExecOptions{})
	if err == nil || !strings.Contains(err.Error(), `vxlan "vx0" in netns "r": its mtu: 1400 is over the 1270 its dev r:u0 leaves it (its MTU 1320, less 50 for the VXLAN's headers), which the kernel refuses: give r:u0 an mtu: of at least 1450`) ||
		!strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("want the plan refused, got %v", err)
	}
	vx, err := h.LinkByName("vx0")
	if err != nil {
		t.Fatal(err)
	}
	if vx.Attrs().MTU != 1450 {
		t.Fatalf("vx0's MTU is %d, want 1450, as it was (the kernel does not lower a VXLAN with its dev)", vx.Attrs().MTU)
	}
	// A file whose mtu: is what it has: nothing to write, so no conflict
	// (it blocked the whole lab: an outside audit), but a warning.
	p := planNow(t, k, desiredOf(t, base+", mtu: 1450}\n"))
	if len(p.Conflicts) > 0 || !p.Empty() || len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], `vxlan "vx0" in netns "r" has its mtu: 1450, over what its dev r:u0 leaves it now (1270)`) {
		t.Fatalf("want a warning, no conflict:\n%v\nwarnings: %q", p, p.Warnings)
	}
}
