package linux

import (
	"context"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// TestIPv6OnAChildOfASmallMTUParent: a macvlan without mtu: takes its
// parent's; where that is under 1280 the kernel refuses its IPv6 address
// (EINVAL), which validate cannot know: apply fails saying why, and rolls
// back.
func TestIPv6OnAChildOfASmallMTUParent(t *testing.T) {
	k := kernelFor(t, "mtu6")
	fd, err := k.OpenNetns(reconcile.HostNS)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
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
	_, err = reconcile.Reconcile(context.Background(), k, want, reconcile.ExecOptions{})
	if err == nil || !strings.Contains(err.Error(), "its MTU is 1200, under IPv6's minimum of 1280") {
		t.Fatalf("want the MTU named, got %v", err)
	}
	if left, _ := ListNamed(k.KernelName("c1")); len(left) > 0 {
		t.Errorf("not rolled back: %v", left)
	}
}
