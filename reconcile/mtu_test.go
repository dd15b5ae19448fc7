package reconcile_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/reconcile/fake"
)

// refusedWhole plans want on k and wants exactly one conflict containing
// each of parts; then it applies anyway, through Execute, to show the fake
// kernel refuses or loses the address too (the conflict is not a guess),
// and checks Reconcile itself changes nothing.
func refusedWhole(t *testing.T, k *fake.Kernel, want *reconcile.State, parts ...string) {
	t.Helper()
	p := plan(t, k, want)
	if len(p.Conflicts) != 1 {
		t.Fatalf("want one conflict, got %q\nplan:\n%v", p.Conflicts, p)
	}
	for _, s := range parts {
		if !strings.Contains(p.Conflicts[0], s) {
			t.Fatalf("conflict %q\nwants %q", p.Conflicts[0], s)
		}
	}
	before := dumpJSON(k.W.Dump(""))
	if _, err := reconcile.Reconcile(context.Background(), k, want, reconcile.ExecOptions{}); !errors.Is(err, reconcile.ErrConflict) {
		t.Fatalf("want the conflict from Reconcile, got %v", err)
	}
	if after := dumpJSON(k.W.Dump("")); after != before {
		t.Fatalf("a refused plan changed the kernel")
	}
	p.Conflicts = nil
	err := reconcile.Execute(context.Background(), k, p, reconcile.ExecOptions{})
	if err == nil {
		obs, oerr := k.Observe(context.Background(), reconcile.QueryFor(want))
		if oerr != nil {
			t.Fatal(oerr)
		}
		if reconcile.Diff(want, obs).Empty() {
			t.Fatalf("the fake kernel took the plan the diff refused")
		}
	}
}

// TestIPv6UnderTheMTUAParentWillHave: an IPv6 address on an interface
// whose MTU, once the plan has run, is under 1280 (taken from a parent the
// lab does not set, from a lab bridge that follows its ports) is a
// conflict of the plan, found from the observed state, not the kernel's
// EINVAL half-way through.
func TestIPv6UnderTheMTUAParentWillHave(t *testing.T) {
	const c1 = "name: lab\nnamespaces:\n  c1: {}\n"
	t.Run("a parent the lab does not set", func(t *testing.T) {
		k := fake.New("lab")
		k.W.AddForeignLink("host", &reconcile.Link{Name: "fbr", Kind: "bridge", Up: true, MTU: 1200})
		refusedWhole(t, k, parse(t, c1+"macvlans:\n  - {namespace: c1, name: m0, parent: \"host:fbr\", addresses: [\"fd00:9::2/64\"]}\n"),
			`macvlan "m0" in netns "c1": its address fd00:9::2/64 is IPv6`, "it takes 1200 from its parent host:fbr (MTU 1200): raise that (the lab does not set it)")
	})
	t.Run("a VXLAN's dev, less its headers", func(t *testing.T) {
		k := fake.New("lab")
		k.W.AddForeignLink("host", &reconcile.Link{Name: "und", Kind: "bridge", Up: true, MTU: 1320})
		refusedWhole(t, k, parse(t, "name: lab\nvxlans:\n  - {name: vx0, vni: 5, remote: 192.0.2.9, dev: und, addresses: [\"fd00:8::1/64\"]}\n"),
			"it takes 1270 from its dev host:und (MTU 1320, less 50 for the VXLAN's headers)")
	})
	t.Run("an address added to a link there", func(t *testing.T) {
		k := fake.New("lab")
		k.W.AddForeignLink("host", &reconcile.Link{Name: "fbr", Kind: "bridge", Up: true, MTU: 1200})
		apply(t, k, parse(t, c1+"macvlans:\n  - {namespace: c1, name: m0, parent: \"host:fbr\"}\n"))
		refusedWhole(t, k, parse(t, c1+"macvlans:\n  - {namespace: c1, name: m0, parent: \"host:fbr\", addresses: [\"fd00:9::2/64\"]}\n"),
			`address fd00:9::2/64 on "m0" in netns "c1": it is IPv6`, `"m0" has 1200: give m0 an mtu: of at least 1280`)
	})
	// The lab's own bridge without mtu: takes its ports' smallest MTU.
	const ports = "links:\n  - a: {namespace: c1, name: eth0, mtu: 1200}\n    b: {namespace: host, name: v0, mtu: 1200, bridge: br}\n  - a: {namespace: c1, name: eth1}\n    b: {namespace: host, name: v1, bridge: br}\n"
	child := "macvlans:\n  - {namespace: c1, name: m0, parent: \"host:br\", addresses: [\"fd00:9::2/64\"]}\n"
	t.Run("a lab bridge made with a small port", func(t *testing.T) {
		k := fake.New("lab")
		refusedWhole(t, k, parse(t, c1+"bridges:\n  - {name: br}\n"+ports+child),
			"it takes 1200 from its parent host:br (MTU 1200: a bridge without mtu: takes its ports' smallest, v0's): give br an mtu: of at least 1280")
	})
	t.Run("a lab bridge with its own IPv6 and a small port", func(t *testing.T) {
		k := fake.New("lab")
		refusedWhole(t, k, parse(t, c1+"bridges:\n  - {name: br, addresses: [\"fd00:7::1/64\"]}\n"+ports),
			`bridge "br" in netns "host": its address fd00:7::1/64 is IPv6`, "without mtu: it would have 1200 (a bridge without mtu: takes its ports' smallest, v0's): give it an mtu:")
	})
	t.Run("a lab bridge there getting a small port", func(t *testing.T) {
		k := fake.New("lab")
		apply(t, k, parse(t, c1+"bridges:\n  - {name: br, addresses: [\"fd00:7::1/64\"]}\n"))
		refusedWhole(t, k, parse(t, c1+"bridges:\n  - {name: br, addresses: [\"fd00:7::1/64\"]}\n"+ports),
			`address fd00:7::1/64 on "br" in netns "host": it is IPv6`, `"br" would have 1200 after this plan (a bridge without mtu: takes its ports' smallest, v0's): give br an mtu: of at least 1280`)
	})
	// What is not refused: the bridge's own mtu:, ports of 1500, a lab
	// bridge whose MTU the lab set once (the kernel keeps it).
	for name, file := range map[string]string{
		"the bridge's own mtu":        c1 + "bridges:\n  - {name: br, mtu: 1500, addresses: [\"fd00:7::1/64\"]}\n" + ports + child,
		"ports of 1500":               c1 + "bridges:\n  - {name: br, addresses: [\"fd00:7::1/64\"]}\n" + strings.ReplaceAll(ports, ", mtu: 1200", "") + child,
		"a veth end takes its peer's": c1 + "bridges:\n  - {name: br, addresses: [\"fd00:7::1/64\"]}\nlinks:\n  - a: {namespace: c1, name: eth0, mtu: 1400}\n    b: {namespace: host, name: v0, bridge: br}\n" + child,
	} {
		t.Run("not "+name, func(t *testing.T) {
			k := fake.New("lab")
			if p := plan(t, k, parse(t, file)); len(p.Conflicts) > 0 {
				t.Fatalf("conflicts: %q", p.Conflicts)
			}
			apply(t, k, parse(t, file))
			if p := plan(t, k, parse(t, file)); !p.Empty() {
				t.Fatalf("after apply:\n%v", p)
			}
		})
	}
}
