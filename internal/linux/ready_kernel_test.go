package linux

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// TestWaitReady: an apply that brings a bridge up (it has a port, so it
// gets its carrier at once) returns only once the kernel has taken the
// carrier into account: the bridge is running, and its IPv6 address
// answers at once. An outside audit found that without the wait the
// bridge stayed "up, carrier, not running" for about a second after
// apply, and the first connection to it failed 10 times in 10.
func TestWaitReady(t *testing.T) {
	k := kernelFor(t, "ready")
	lab := func(up bool) *reconcile.State {
		return desiredOf(t, fmt.Sprintf(`name: ready
namespaces:
  c1: {}
bridges:
  - {name: br0, addresses: [fd7c::1/64], up: %v}
links:
  - a: {namespace: c1, name: eth0, addresses: [fd7c::2/64]}
    b: {namespace: host, name: v-c1, bridge: br0}
`, up))
	}
	ctx := context.Background()
	if _, err := reconcile.Reconcile(ctx, k, lab(false), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	res, err := reconcile.Reconcile(ctx, k, lab(true), reconcile.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied == 0 {
		t.Fatal("bringing br0 up changed nothing: the test shows nothing")
	}
	host, err := k.OpenNetns(reconcile.HostNS)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	c1, err := k.OpenNetns("c1")
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	// A listener on br0's address, and a connection from c1 right away:
	// it needs br0 to answer c1's neighbour solicitation.
	var ln net.Listener
	if err := InNetns(host, func() (err error) {
		ln, err = net.Listen("tcp", "[fd7c::1]:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	start := time.Now()
	var dialErr error
	if err := InNetns(c1, func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 500*time.Millisecond)
		if err == nil {
			c.Close()
		}
		dialErr = err
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if dialErr != nil {
		t.Errorf("connecting from c1 to br0's fd7c::1 right after apply: %v (after %v)", dialErr, time.Since(start))
	}
	h, err := k.handle(reconcile.HostNS)
	if err != nil {
		t.Fatal(err)
	}
	defer k.release(h)
	links, err := h.linkDump()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range links {
		if a := d.link.Attrs(); a.Name == "br0" && a.RawFlags&unix.IFF_RUNNING == 0 {
			t.Errorf("br0's flags %#x right after apply: up with carrier but not running", a.RawFlags)
		}
	}
	if res.NotReady != 0 {
		t.Errorf("apply returned with %d links not running", res.NotReady)
	}

	// An IPv6 address without its local route (the kernel adds it after
	// the address, from its address configuration work: apply can meet
	// it missing for a moment) is not ready. Taken away by hand here, it
	// never comes back: the wait is bounded.
	hc, err := k.handle("c1")
	if err != nil {
		t.Fatal(err)
	}
	defer k.release(hc)
	if err := hc.ensure(); err != nil {
		t.Fatal(err)
	}
	eth0, err := hc.h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	_, dst, _ := net.ParseCIDR("fd7c::2/128")
	local := &netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: dst, Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_LOCAL}
	if err := hc.h.RouteDel(local); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Observe(ctx, reconcile.QueryFor(lab(true))); err != nil {
		t.Fatal(err)
	}
	if n := k.WaitReady(ctx, 0); n != 1 {
		t.Errorf("with fd7c::2's local route gone: %d not ready, want 1", n)
	}
	start = time.Now()
	if n := k.WaitReady(ctx, 300*time.Millisecond); n != 1 || time.Since(start) > 2*time.Second {
		t.Errorf("WaitReady(300ms) returned %d after %v, want 1 soon after 300ms", n, time.Since(start))
	}
}
