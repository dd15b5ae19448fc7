package linux

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// TestWaitAddresses: an IPv6 address of the lab that is tentative on a
// link with carrier is seen by Observe and waited for by WaitAddresses
// until the kernel has made it usable; one on a link without carrier (it
// stays tentative until the link has one) is not waited for.
//
// To have an address tentative for a known while, the test puts the
// lab's address back by hand with duplicate address detection (about a
// second), where the lab adds it with nodad: what apply can meet is the
// same state for a shorter, unpredictable while (until linkwatch tells
// addrconf the interface is ready).
func TestWaitAddresses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes namespaces")
	}
	y := `name: addrwait
namespaces:
  a: {}
  b: {}
links:
  - a: {namespace: a, name: eth0, addresses: [fd7a::1/64]}
    b: {namespace: b, name: eth0, addresses: [fd7a::2/64]}
  - a: {namespace: a, name: eth1, addresses: [fd7b::1/64]}
    b: {namespace: b, name: eth1, up: false}
`
	top, err := topology.Parse("addrwait.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	want, err := reconcile.Desired(top)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%04x", rand.Intn(0xffff))
	k := New(Options{Name: top.Name, Prefix: "t" + id + "-", Netns: "npl-test-" + id})
	defer func() {
		if _, err := reconcile.Reconcile(context.Background(), k, reconcile.Nothing(), reconcile.ExecOptions{}); err != nil {
			t.Errorf("destroy: %v", err)
		}
		k.Close()
		_ = DeleteNamed("npl-test-" + id)
		if left, _ := ListNamed("t" + id + "-"); len(left) > 0 {
			t.Errorf("left behind: %v", left)
			for _, l := range left {
				_ = DeleteNamed(l)
			}
		}
	}()
	ctx := context.Background()
	if _, err := k.EnsureHost(); err != nil {
		t.Fatal(err)
	}
	res, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tentative != 0 {
		t.Errorf("apply returned with %d addresses tentative", res.Tentative)
	}
	h, err := k.handle("a")
	if err != nil {
		t.Fatal(err)
	}
	defer k.release(h)
	if err := h.ensure(); err != nil {
		t.Fatal(err)
	}
	readd := func(name, cidr string) {
		t.Helper()
		l, err := h.h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		ip, ipn, _ := net.ParseCIDR(cidr)
		ipn.IP = ip
		if err := h.h.AddrDel(l, &netlink.Addr{IPNet: ipn}); err != nil {
			t.Fatal(err)
		}
		if err := h.h.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil { // with DAD
			t.Fatal(err)
		}
	}
	tentative := func(cidr string) bool {
		t.Helper()
		addrs, err := h.addrDump()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if a.IPNet.String() == cidr {
				return a.Flags&unix.IFA_F_TENTATIVE != 0
			}
		}
		t.Fatalf("%s is gone", cidr)
		return false
	}
	// eth1's peer is down: no carrier, its address stays tentative.
	readd("eth0", "fd7a::1/64")
	readd("eth1", "fd7b::1/64")
	if !tentative("fd7a::1/64") || !tentative("fd7b::1/64") {
		t.Fatal("the addresses put back with DAD are not tentative: the test shows nothing")
	}
	if _, err := k.Observe(ctx, reconcile.QueryFor(want)); err != nil {
		t.Fatal(err)
	}
	if n := k.WaitAddresses(ctx, 0); n != 1 {
		t.Errorf("WaitAddresses without waiting: %d tentative, want 1 (eth0's; eth1 has no carrier)", n)
	}
	start := time.Now()
	if n := k.WaitAddresses(ctx, 10*time.Second); n != 0 {
		t.Errorf("WaitAddresses: %d still tentative after 10 s", n)
	}
	if tentative("fd7a::1/64") {
		t.Errorf("WaitAddresses returned after %v with fd7a::1 still tentative", time.Since(start))
	}
	if !tentative("fd7b::1/64") {
		t.Errorf("fd7b::1 on eth1, with no carrier, is usable: the test's premise is wrong")
	}
}
