package linux

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// TestRateOnAJumboLinkPassesFullFrames, against the kernel: tbf drops a
// packet bigger than its bucket, and its queue (limit) holds bytes: both
// are sized for a frame of the interface's MTU (an outside audit: a rate
// on a 9000-byte MTU link dropped every full-size packet, TCP stalled,
// apply said done). An MTU raised later (by the file, or by hand) has the
// qdisc made again for it.
func TestRateOnAJumboLinkPassesFullFrames(t *testing.T) {
	k := kernelFor(t, "jumbo")
	ctx := context.Background()
	lab := func(mtu int, limit string) *reconcile.State {
		return desiredOf(t, fmt.Sprintf("name: jumbo\nnamespaces: {a: {}, b: {}}\nlinks:\n  - a: {namespace: a, name: x0, addresses: [10.9.0.1/30]}\n    b: {namespace: b, name: x0, addresses: [10.9.0.2/30]}\n    mtu: %d\n    impair: {rate: 1mbit%s}\n", mtu, limit))
	}
	var h *netlink.Handle
	holds := func(when string) {
		t.Helper()
		x0, err := h.LinkByName("x0")
		if err != nil {
			t.Fatal(err)
		}
		qs, err := h.QdiscList(x0)
		if err != nil {
			t.Fatal(err)
		}
		frame := uint64(x0.Attrs().MTU + 14)
		for _, q := range qs {
			if tbf, ok := q.(*netlink.Tbf); ok {
				burst := uint64(float64(tbf.Buffer) / netlink.TickInUsec() * float64(tbf.Rate) / 1e6)
				if burst+2 < frame || uint64(tbf.Limit) < frame {
					t.Fatalf("%s: tbf bucket %d bytes, queue %d bytes: a frame at MTU %d is %d", when, burst, tbf.Limit, x0.Attrs().MTU, frame)
				}
				return
			}
		}
		t.Fatalf("%s: no tbf on x0: %v", when, qs)
	}
	for _, limit := range []string{"", ", limit: 1"} {
		if _, err := reconcile.Reconcile(ctx, k, lab(9000, limit), reconcile.ExecOptions{}); err != nil {
			t.Fatal(err)
		}
		if h == nil {
			h = netlinkIn(t, k, "a")
		}
		holds("made at MTU 9000" + limit)
		if p := planNow(t, k, lab(9000, limit)); !p.Empty() {
			t.Fatalf("plan after apply:\n%v", p)
		}
	}
	// Made at 1500, raised by the file: made again, after the MTU.
	if _, err := reconcile.Reconcile(ctx, k, lab(1500, ""), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := reconcile.Reconcile(ctx, k, lab(9000, ""), reconcile.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Plan.String(), "impair") {
		t.Fatalf("want the impairment made again for the new MTU:\n%v", res.Plan)
	}
	holds("raised to 9000 by the file")
	// Raised by hand: the plan makes it again.
	if _, err := reconcile.Reconcile(ctx, k, lab(1500, ""), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	x0, err := h.LinkByName("x0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetMTU(x0, 9000); err != nil {
		t.Fatal(err)
	}
	p := planNow(t, k, lab(9000, ""))
	if !strings.Contains(p.String(), "bucket:") {
		t.Fatalf("want the bucket too small for the MTU set by hand, got\n%v", p)
	}
}
