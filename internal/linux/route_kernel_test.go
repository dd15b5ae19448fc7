package linux

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// TestRoutesOfEveryScopeGo, against the kernel: routes the file drops go,
// whatever their scope: one with dev: alone has scope link, which an IPv4
// delete must not narrow to scope universe (an outside audit: the route
// stayed, the delete's ESRCH read as "gone already", and every apply
// after failed, the kernel not matching the file).
func TestRoutesOfEveryScopeGo(t *testing.T) {
	k := kernelFor(t, "rtscope")
	ctx := context.Background()
	const links = "  b: {}\nlinks:\n  - a: {namespace: a, name: eth0, addresses: [10.0.0.1/24, \"fd00::1/64\"]}\n    b: {namespace: b, name: eth0, addresses: [10.0.0.2/24, \"fd00::2/64\"]}\n"
	with := "name: rtscope\nnamespaces:\n  a:\n    routes:\n      - {to: 10.9.0.0/16, dev: eth0}\n      - {to: 10.8.0.0/16, via: 10.0.0.2}\n      - {to: \"fd09::/64\", dev: eth0}\n" + links
	without := "name: rtscope\nnamespaces:\n  a: {}\n" + links
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, with), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	h := netlinkIn(t, k, "a")
	ours := func() []netlink.Route {
		rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	if got := ours(); len(got) != 3 {
		t.Fatalf("want the file's 3 routes, got %v", got)
	}
	res, err := reconcile.Reconcile(ctx, k, desiredOf(t, without), reconcile.ExecOptions{})
	if err != nil {
		t.Fatalf("dropping the routes: %v", err)
	}
	if n := len(res.Plan.Changes); n != 3 {
		t.Fatalf("want 3 route deletes, got\n%v", res.Plan)
	}
	if got := ours(); len(got) != 0 {
		t.Fatalf("routes stayed: %v", got)
	}
}

// TestIPv6DefaultKeepsWhatWasAddedByHandOnTheKernel: the file drops a
// namespace's last IPv6 address, so the default would turn IPv6 off
// there, taking every IPv6 address and route; an address and a route
// added by hand keep it on (with a warning) and stay (an outside audit:
// they went silently).
func TestIPv6DefaultKeepsWhatWasAddedByHandOnTheKernel(t *testing.T) {
	k := kernelFor(t, "v6hand")
	ctx := context.Background()
	lab := func(v6 string) *reconcile.State {
		return desiredOf(t, "name: v6hand\nnamespaces:\n  left: {}\n  right: {}\nlinks:\n  - a: {namespace: left, name: veth0, addresses: [10.0.0.1/24"+v6+"]}\n    b: {namespace: right, name: veth0, addresses: [10.0.0.2/24, \"fd00::2/64\"]}\n")
	}
	if _, err := reconcile.Reconcile(ctx, k, lab(`, "fd00::1/64"`), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	h := netlinkIn(t, k, "left")
	veth0, err := h.LinkByName("veth0")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr("fd00::77/64")
	a.Flags = unix.IFA_F_NODAD
	if err := h.AddrAdd(veth0, a); err != nil {
		t.Fatal(err)
	}
	_, dst, _ := net.ParseCIDR("fd05::/64")
	if err := h.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP("fd00::2"), LinkIndex: veth0.Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	res, err := reconcile.Reconcile(ctx, k, lab(""), reconcile.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Plan.Warnings) != 1 || !strings.Contains(res.Plan.Warnings[0], `namespace "left" keeps IPv6 on`) || strings.Contains(res.Plan.String(), "disable_ipv6") {
		t.Fatalf("want IPv6 kept on, with a warning:\n%v\nwarnings: %q", res.Plan, res.Plan.Warnings)
	}
	addrs, err := h.AddrList(veth0, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	kept := false
	for _, x := range addrs {
		kept = kept || x.IP.String() == "fd00::77"
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST)
	if err != nil {
		t.Fatal(err)
	}
	if !kept || len(routes) != 1 {
		t.Fatalf("what was added by hand went: fd00::77 kept %v, routes to fd05::/64 %v", kept, routes)
	}
	if p := planNow(t, k, lab("")); !p.Empty() {
		t.Fatalf("plan after apply:\n%v", p)
	}
	// Gone by hand: the next plan turns IPv6 off. Then an address on lo,
	// and a route in another table, which the rest of the state does not
	// show, keep it on as well (an outside audit).
	if err := h.AddrDel(veth0, a); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteDel(&netlink.Route{Dst: dst, Gw: net.ParseIP("fd00::2"), LinkIndex: veth0.Attrs().Index}); err != nil && !errors.Is(err, unix.ESRCH) {
		t.Fatal(err)
	}
	if p := planNow(t, k, lab("")); !strings.Contains(p.String(), "disable_ipv6") {
		t.Fatalf("what was added by hand is gone: want IPv6 turned off, got\n%v", p)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	onLo, _ := netlink.ParseAddr("fd99::5/128")
	if err := h.AddrAdd(lo, onLo); err != nil {
		t.Fatal(err)
	}
	if p := planNow(t, k, lab("")); strings.Contains(p.String(), "disable_ipv6") || !strings.Contains(strings.Join(p.Warnings, "\n"), "fd99::5 on lo") {
		t.Fatalf("an address on lo: want IPv6 kept on, got\n%v\nwarnings: %q", p, p.Warnings)
	}
	if err := h.AddrDel(lo, onLo); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{Dst: mustCIDR(t, "fd98::/64"), LinkIndex: veth0.Attrs().Index, Table: 100}); err != nil {
		t.Fatal(err)
	}
	if p := planNow(t, k, lab("")); strings.Contains(p.String(), "disable_ipv6") || !strings.Contains(strings.Join(p.Warnings, "\n"), "route fd98::/64 (table 100)") {
		t.Fatalf("a route in table 100: want IPv6 kept on, got\n%v\nwarnings: %q", p, p.Warnings)
	}
}

// TestRenameKeepsRoutesAddedByHand: renaming an interface takes it down,
// which drops every route through it; the lab's are planned again, and
// routes added by hand (IPv4 and IPv6, in the main table and another) are
// put back with it (an outside audit: they went silently).
func TestRenameKeepsRoutesAddedByHand(t *testing.T) {
	k := kernelFor(t, "rnroute")
	ctx := context.Background()
	lab := func(name string) *reconcile.State {
		return desiredOf(t, "name: rnroute\nnamespaces:\n  a:\n    routes:\n      - {to: 10.7.0.0/16, via: 10.0.0.2}\n  b: {}\nlinks:\n  - a: {namespace: a, name: "+name+", addresses: [10.0.0.1/24, \"fd00::1/64\"]}\n    b: {namespace: b, name: eth0, addresses: [10.0.0.2/24, \"fd00::2/64\"]}\n")
	}
	if _, err := reconcile.Reconcile(ctx, k, lab("eth0"), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	h := netlinkIn(t, k, "a")
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	idx := eth0.Attrs().Index
	byHand := []netlink.Route{
		{Dst: mustCIDR(t, "10.44.0.0/16"), Gw: net.ParseIP("10.0.0.2"), LinkIndex: idx},
		{Dst: mustCIDR(t, "10.45.0.0/16"), LinkIndex: idx, Scope: netlink.SCOPE_LINK, Table: 100},
		{Dst: mustCIDR(t, "fd05::/64"), Gw: net.ParseIP("fd00::2"), LinkIndex: idx},
	}
	// And a multipath route (an outside audit: it went).
	byHand = append(byHand, netlink.Route{Dst: mustCIDR(t, "10.86.0.0/24"), MultiPath: []*netlink.NexthopInfo{
		{LinkIndex: idx, Gw: net.ParseIP("10.0.0.2"), Hops: 0}, {LinkIndex: idx, Gw: net.ParseIP("10.0.0.3"), Hops: 1}}})
	for _, r := range byHand {
		if err := h.RouteAdd(&r); err != nil {
			t.Fatalf("add %s: %v", r, err)
		}
	}
	// And a link-local address and a permanent neighbour (an outside
	// audit: they went with the rename).
	hand := &netlink.Addr{IPNet: mustCIDR(t, "fe80::1234/64")}
	hand.IP = net.ParseIP("fe80::1234")
	if err := h.AddrAdd(eth0, hand); err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("02:11:22:33:44:55")
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: idx, IP: net.ParseIP("fd00::77"), HardwareAddr: mac, State: netlink.NUD_PERMANENT}); err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Reconcile(ctx, k, lab("eth1"), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	eth1 := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: idx}}
	v6, _ := h.AddrList(eth1, netlink.FAMILY_V6)
	if !slices.ContainsFunc(v6, func(a netlink.Addr) bool { return a.IP.Equal(hand.IP) }) {
		t.Errorf("the link-local address added by hand after the rename: %v", v6)
	}
	neigh, _ := h.NeighList(idx, netlink.FAMILY_V6)
	if !slices.ContainsFunc(neigh, func(n netlink.Neigh) bool {
		return n.IP.Equal(net.ParseIP("fd00::77")) && n.State&netlink.NUD_PERMANENT != 0
	}) {
		t.Errorf("the permanent neighbour added by hand after the rename: %v", neigh)
	}
	for _, r := range byHand {
		got, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Dst: r.Dst, Table: r.Table}, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].LinkIndex != idx && len(got[0].MultiPath) != len(r.MultiPath) {
			t.Errorf("route %s added by hand after the rename: %v", r.Dst, got)
		}
	}
	ours, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil || len(ours) != 1 {
		t.Fatalf("the lab's route after the rename: %v %v", ours, err)
	}
}

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLinkLocalFollowsTheMAC: the kernel makes an interface's IPv6
// link-local address from its MAC when it comes up, and keeps it when the
// MAC changes; a rename (which changes a derived MAC) or a mac: edit left
// the interface with the old MAC's address, unlike a fresh apply (an
// outside audit). After either, the interface has the link-local address
// of its MAC now, as the kernel makes it, and no other.
func TestLinkLocalFollowsTheMAC(t *testing.T) {
	k := kernelFor(t, "llmac")
	ctx := context.Background()
	lab := func(name, mac string) *reconcile.State {
		if mac != "" {
			mac = ", mac: \"" + mac + "\""
		}
		return desiredOf(t, "name: llmac\nnamespaces:\n  a: {ipv6: true}\n  b: {ipv6: true}\nlinks:\n  - a: {namespace: a, name: "+name+", addresses: [10.0.0.1/24]"+mac+"}\n    b: {namespace: b, name: eth0, addresses: [10.0.0.2/24]}\n")
	}
	check := func(step, name string) {
		t.Helper()
		h := netlinkIn(t, k, "a")
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		addrs, err := h.AddrList(l, netlink.FAMILY_V6)
		if err != nil {
			t.Fatal(err)
		}
		var ll []string
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() {
				ll = append(ll, a.IP.String())
			}
		}
		want := eui64LinkLocal(l.Attrs().HardwareAddr).String()
		if len(ll) != 1 || ll[0] != want {
			t.Errorf("%s: link-local addresses of %s (MAC %s): %v, want [%s]", step, name, l.Attrs().HardwareAddr, ll, want)
		}
	}
	for _, s := range []struct{ step, name, mac string }{
		{"fresh", "eth0", ""},
		{"renamed", "eth1", ""},
		{"mac edited", "eth1", "02:00:00:00:00:42"},
		{"renamed with a mac", "eth2", "02:00:00:00:00:43"},
	} {
		if _, err := reconcile.Reconcile(ctx, k, lab(s.name, s.mac), reconcile.ExecOptions{}); err != nil {
			t.Fatalf("%s: %v", s.step, err)
		}
		check(s.step, s.name)
	}
	// With addr_gen_mode none, set by hand, the kernel makes no
	// link-local: one of the old MAC there was added by hand, and stays,
	// and none is made for the new MAC (an outside audit).
	h := netlinkIn(t, k, "a")
	l, err := h.LinkByName("eth2")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := k.OpenNetns("a")
	if err != nil {
		t.Fatal(err)
	}
	err = writeSysctl(fd, "net.ipv6.conf.eth2.addr_gen_mode", "1")
	fd.Close()
	if err != nil {
		t.Fatal(err)
	}
	ll := eui64LinkLocal(l.Attrs().HardwareAddr)
	if err := h.AddrReplace(l, &netlink.Addr{IPNet: &net.IPNet{IP: ll, Mask: net.CIDRMask(64, 128)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Reconcile(ctx, k, lab("eth2", "02:00:00:00:00:44"), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	addrs, _ := h.AddrList(l, netlink.FAMILY_V6)
	var have []string
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() {
			have = append(have, a.IP.String())
		}
	}
	if len(have) != 1 || have[0] != ll.String() {
		t.Errorf("addr_gen_mode none: link-local addresses after a mac: edit %v, want only the one added by hand, %s", have, ll)
	}
}

// TestObservedOwnPromoteSecondaries: observation reads an interface's own
// promote_secondaries from the link dump (IFLA_INET_CONF, at the index
// dumps.go names): what /proc says it is, both ways.
func TestObservedOwnPromoteSecondaries(t *testing.T) {
	k := kernelFor(t, "ownprom")
	ctx := context.Background()
	want := desiredOf(t, "name: ownprom\nnamespaces:\n  a: {}\nlinks:\n  - a: {namespace: a, name: eth0, addresses: [10.0.0.1/24]}\n    b: {namespace: a, name: eth1}\n")
	if _, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"0", "1", "0"} {
		fd, err := k.OpenNetns("a")
		if err != nil {
			t.Fatal(err)
		}
		err = writeSysctl(fd, "net.ipv4.conf.eth0.promote_secondaries", v)
		fd.Close()
		if err != nil {
			t.Fatal(err)
		}
		s, err := k.Observe(ctx, reconcile.QueryFor(want))
		if err != nil {
			t.Fatal(err)
		}
		if got := s.NS("a").Links["eth0"].OwnPromote; got != v {
			t.Fatalf("eth0's own promote_secondaries written %s, observed %q", v, got)
		}
	}
}
