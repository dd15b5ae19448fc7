package linux

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// TestAliasTooLongIsFoundBeforeAnyChange: an interface whose ownership
// alias would be over the kernel's 255 bytes (here the peer end of a veth
// with 40 addresses) is an UnsupportedError at preflight, naming the
// interface and its namespace; 2 addresses are fine.
func TestAliasTooLongIsFoundBeforeAnyChange(t *testing.T) {
	k := New(Options{Name: "longalias", Prefix: "t5f1-", Netns: "npl-test-a5f1"})
	plan := func(n int) *reconcile.Plan {
		var addrs []string
		for i := 0; i < n; i++ {
			addrs = append(addrs, fmt.Sprintf("10.0.%d.2/24", i))
		}
		return &reconcile.Plan{Changes: []*reconcile.Change{{
			Action: reconcile.Create, Kind: reconcile.KindLink, Namespace: "left", Name: "veth0",
			Link:     &reconcile.Link{Name: "veth0", Kind: reconcile.KindVeth, Peer: &reconcile.Ref{NS: "right", Name: "veth0"}, Addresses: []string{"10.0.0.1/24"}},
			PeerLink: &reconcile.Link{Name: "veth0", Kind: reconcile.KindVeth, Addresses: addrs},
		}}}
	}
	if err := k.checkAliases(plan(2)); err != nil {
		t.Fatalf("2 addresses: %v", err)
	}
	err := k.checkAliases(plan(40))
	var ue *UnsupportedError
	if !errors.As(err, &ue) || ue.Namespace != "right" || ue.Name != "veth0" || !strings.Contains(err.Error(), `netns "t5f1-right"`) || !strings.Contains(err.Error(), "40 addresses") {
		t.Fatalf("40 addresses on the peer: %v (%+v), want an UnsupportedError for veth0 in right", err, ue)
	}
}

// TestAliasPeakOfAnAddressEdit: addresses added to a link that stays are
// checked with all the link holds at once (the old ones go after the new
// ones are added).
func TestAliasPeakOfAnAddressEdit(t *testing.T) {
	k := New(Options{Name: "longalias", Prefix: "t5f1-", Netns: "npl-test-a5f1"})
	peak := func(n int) *reconcile.Plan {
		l := &reconcile.Link{Name: "eth0", Kind: reconcile.KindVeth, Peer: &reconcile.Ref{NS: "host", Name: "v0"}}
		for i := 0; i < n; i++ {
			l.Addresses = append(l.Addresses, fmt.Sprintf("10.0.%d.2/24", i))
		}
		return &reconcile.Plan{Changes: []*reconcile.Change{{
			Action: reconcile.Create, Kind: reconcile.KindAddress, Namespace: "m1", Name: "10.0.0.2/24", Dev: "eth0", Peak: l,
		}}}
	}
	if err := k.checkAliases(peak(20)); err != nil {
		t.Fatalf("20 addresses at once: %v", err)
	}
	var ue *UnsupportedError
	if err := k.checkAliases(peak(40)); !errors.As(err, &ue) || ue.Namespace != "m1" || ue.Name != "eth0" {
		t.Fatalf("40 addresses at once: %v, want an UnsupportedError for eth0 in m1", err)
	}
}
