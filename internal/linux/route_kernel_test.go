package linux

import (
	"context"
	"testing"

	"github.com/vishvananda/netlink"

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
