package linux

import (
	"context"
	"os"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// TestHalfMadeOnlyWhatTheLabSetOutToMake: a link in the lab's group with
// no mark is the lab's, half-made by a killed run, only if the lab noted
// it was about to make it (NoteBefore does, before any link exists): the
// next apply replaces that one, marked, and leaves one someone else put in
// the group. A run that ends well removes the note.
func TestHalfMadeOnlyWhatTheLabSetOutToMake(t *testing.T) {
	k := kernelFor(t, "hmo")
	ctx := context.Background()
	file := "name: hmo\nbridges:\n  - {name: br0, addresses: [10.72.0.1/24]}\n"
	desired := desiredOf(t, file)
	before, err := k.Observe(ctx, reconcile.QueryFor(desired))
	if err != nil {
		t.Fatal(err)
	}
	plan := reconcile.Diff(desired, before)
	// Preflight (which plan runs too) notes nothing.
	if err := k.Preflight(ctx, plan); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(k.makingFile()); !os.IsNotExist(err) {
		t.Fatalf("Preflight noted the links to make (%v): plan would write", err)
	}
	// What a run killed right after the RTM_NEWLINK that made br0 leaves:
	// the note of what it set out to make, br0 in the group, no alias.
	if err := k.NoteBefore(ctx, plan); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(k.makingFile()); err != nil {
		t.Fatalf("NoteBefore noted nothing: %v", err)
	}
	h := netlinkIn(t, k, reconcile.HostNS)
	for _, name := range []string{"br0", "other0"} {
		la := netlink.NewLinkAttrs()
		la.Name, la.Group = name, k.group
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			t.Fatal(err)
		}
	}
	defer h.LinkDel(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "other0"}})
	seen, err := k.Observe(ctx, reconcile.QueryFor(desired))
	if err != nil {
		t.Fatal(err)
	}
	host := seen.NS(reconcile.HostNS)
	if l := host.Links["br0"]; l == nil || !l.Owned || !l.HalfMade {
		t.Fatalf("br0, noted and unmarked: %+v, want owned and half-made", l)
	}
	if l := host.Links["other0"]; l == nil || l.Owned || l.HalfMade {
		t.Fatalf("other0, in the group but never noted: %+v, want someone else's", l)
	}
	if _, err := reconcile.Reconcile(ctx, k, desired, reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(k.makingFile()); !os.IsNotExist(err) {
		t.Fatalf("the note is still there after a run that ended well (%v)", err)
	}
	after, err := k.Observe(ctx, reconcile.QueryFor(desired))
	if err != nil {
		t.Fatal(err)
	}
	host = after.NS(reconcile.HostNS)
	if l := host.Links["br0"]; l == nil || !l.Owned || l.HalfMade {
		t.Fatalf("br0 after apply: %+v, want the lab's, marked", l)
	}
	if l := host.Links["other0"]; l == nil || l.Owned {
		t.Fatalf("other0 after apply: %+v, want it left, someone else's", l)
	}
	if _, err := reconcile.Reconcile(ctx, k, reconcile.Nothing(), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LinkByName("other0"); err != nil {
		t.Fatalf("destroy took other0: %v", err)
	}
}
