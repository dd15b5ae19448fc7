package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/reconcile/fake"
	"github.com/netplan-lab/netplan-lab/topology"
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
		if p := reconcile.Diff(want, obs); p.Empty() && len(p.Conflicts) == 0 {
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
			`macvlan "m0" in netns "c1": its address fd00:9::2/64 is IPv6`, "it would have 1200 (it takes it from its parent host:fbr, MTU 1200): raise host:fbr's MTU (the lab does not set it)")
	})
	t.Run("a VXLAN's dev, less its headers", func(t *testing.T) {
		k := fake.New("lab")
		k.W.AddForeignLink("host", &reconcile.Link{Name: "und", Kind: "bridge", Up: true, MTU: 1320})
		refusedWhole(t, k, parse(t, "name: lab\nvxlans:\n  - {name: vx0, vni: 5, remote: 192.0.2.9, dev: und, addresses: [\"fd00:8::1/64\"]}\n"),
			"it would have 1270 (it takes it from its dev host:und, MTU 1320, less 50 for the VXLAN's headers)")
	})
	t.Run("an address added to a link there", func(t *testing.T) {
		k := fake.New("lab")
		k.W.AddForeignLink("host", &reconcile.Link{Name: "fbr", Kind: "bridge", Up: true, MTU: 1200})
		apply(t, k, parse(t, c1+"macvlans:\n  - {namespace: c1, name: m0, parent: \"host:fbr\"}\n"))
		refusedWhole(t, k, parse(t, c1+"macvlans:\n  - {namespace: c1, name: m0, parent: \"host:fbr\", addresses: [\"fd00:9::2/64\"]}\n"),
			`address fd00:9::2/64 on "m0" in netns "c1": it is IPv6`, `"m0" has 1200 (it takes it from its parent host:fbr, MTU 1200): raise host:fbr's MTU`)
	})
	// The lab's own bridge without mtu: takes its ports' smallest MTU.
	const ports = "links:\n  - a: {namespace: c1, name: eth0, mtu: 1200}\n    b: {namespace: host, name: v0, mtu: 1200, bridge: br}\n  - a: {namespace: c1, name: eth1}\n    b: {namespace: host, name: v1, bridge: br}\n"
	child := "macvlans:\n  - {namespace: c1, name: m0, parent: \"host:br\", addresses: [\"fd00:9::2/64\"]}\n"
	t.Run("a lab bridge made with a small port", func(t *testing.T) {
		k := fake.New("lab")
		refusedWhole(t, k, parse(t, c1+"bridges:\n  - {name: br}\n"+ports+child),
			"it would have 1200 (it takes it from its parent host:br, MTU 1200): give host:br an mtu: of at least 1280")
	})
	// A lab bridge with IPv6 and a small port in the file is validate's
	// now; the plan's own check stays for what the file does not show,
	// so these make the port small in the desired state itself.
	smallPort := func(t *testing.T, src string) *reconcile.State {
		s := parse(t, strings.ReplaceAll(src, ", mtu: 1200", ""))
		s.Link(reconcile.Ref{NS: "c1", Name: "eth0"}).MTU = 1200
		s.Link(reconcile.Ref{NS: "host", Name: "v0"}).MTU = 1200
		return s
	}
	t.Run("a lab bridge with its own IPv6 and a small port", func(t *testing.T) {
		k := fake.New("lab")
		refusedWhole(t, k, smallPort(t, c1+"bridges:\n  - {name: br, addresses: [\"fd00:7::1/64\"]}\n"+ports),
			`bridge "br" in netns "host": its address fd00:7::1/64 is IPv6`, "without mtu: it would have 1200 (a bridge without mtu: follows its ports' smallest MTU, host:v0's): give it an mtu: of at least 1280 (a bridge with one keeps it), or give host:v0 an mtu:")
	})
	t.Run("a lab bridge there getting a small port", func(t *testing.T) {
		k := fake.New("lab")
		apply(t, k, parse(t, c1+"bridges:\n  - {name: br, addresses: [\"fd00:7::1/64\"]}\n"))
		refusedWhole(t, k, smallPort(t, c1+"bridges:\n  - {name: br, addresses: [\"fd00:7::1/64\"]}\n"+ports),
			`address fd00:7::1/64 on "br" in netns "host": it is IPv6`, `"br" would have 1200 after this plan (a bridge without mtu: follows its ports' smallest MTU, host:v0's)`)
	})
	// Outside audits' finds: a port there lowered, a macvlan on a bridge
	// whose port is lowered, a VXLAN moved to a smaller dev, a veth end
	// taking its peer's mtu: whichever end is made first.
	const brV6 = "bridges:\n  - {name: br, addresses: [\"fd00:7::1/64\"]}\n"
	const port1500 = "links:\n  - a: {namespace: c1, name: eth0}\n    b: {namespace: host, name: v0, bridge: br}\n"
	const port1200 = "links:\n  - a: {namespace: c1, name: eth0}\n    b: {namespace: host, name: v0, mtu: 1200, bridge: br}\n"
	t.Run("a port there lowered", func(t *testing.T) {
		k := fake.New("lab")
		apply(t, k, parse(t, c1+brV6+port1500))
		refusedWhole(t, k, smallPort(t, c1+brV6+port1200),
			`"br" would have 1200 after this plan (a bridge without mtu: follows its ports' smallest MTU, host:v0's)`)
	})
	t.Run("a macvlan there on a bridge whose port is lowered", func(t *testing.T) {
		k := fake.New("lab")
		apply(t, k, parse(t, c1+"bridges:\n  - {name: br}\n"+port1500+child))
		refusedWhole(t, k, parse(t, c1+"bridges:\n  - {name: br}\n"+port1200+child),
			`"m0" would have 1200 after this plan (it takes it from its parent host:br, MTU 1200): give host:br an mtu: of at least 1280`)
	})
	t.Run("a VXLAN moved to a smaller dev", func(t *testing.T) {
		k := fake.New("lab")
		k.W.AddForeignLink("host", &reconcile.Link{Name: "u0", Kind: "bridge", Up: true, MTU: 1350})
		k.W.AddForeignLink("host", &reconcile.Link{Name: "u2", Kind: "bridge", Up: true, MTU: 1200})
		vx := "name: lab\nvxlans:\n  - {name: vx0, vni: 5, remote: \"2001:db8::2\", dev: u0, addresses: [\"fd00:5::1/64\"]}\n"
		apply(t, k, parse(t, vx))
		refusedWhole(t, k, parse(t, strings.Replace(vx, "dev: u0", "dev: u2", 1)),
			`"vx0" would have 1130 after this plan (it takes it from its dev host:u2, MTU 1200, less 70 for the VXLAN's headers): raise host:u2's MTU`)
	})
	// What is not refused: the bridge's own mtu:, ports of 1500, a lab
	// bridge whose MTU the lab set once (the kernel keeps it), a small
	// port raised or removed in the plan that gives the bridge IPv6.
	for name, file := range map[string]string{
		"the bridge's own mtu":        c1 + "bridges:\n  - {name: br, mtu: 1500, addresses: [\"fd00:7::1/64\"]}\n" + ports + child,
		"ports of 1500":               c1 + "bridges:\n  - {name: br, addresses: [\"fd00:7::1/64\"]}\n" + strings.ReplaceAll(ports, ", mtu: 1200", "") + child,
		"a port 1200 raised":          c1 + brV6 + strings.Replace(port1200, "mtu: 1200", "mtu: 1500", 1),
		"a port 1200 removed":         c1 + brV6,
		"a veth end takes its peer's": c1 + "bridges:\n  - {name: br, addresses: [\"fd00:7::1/64\"]}\nlinks:\n  - a: {namespace: c1, name: eth0, mtu: 1400}\n    b: {namespace: host, name: v0, bridge: br}\n" + child,
	} {
		t.Run("not "+name, func(t *testing.T) {
			k := fake.New("lab")
			if strings.Contains(name, "port 1200") {
				apply(t, k, parse(t, c1+"bridges:\n  - {name: br}\n"+port1200))
			}
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

// TestMacvlanOnABridgePort: a bridge port cannot be a macvlan's parent
// (the kernel: EBUSY, half-way through an apply): someone else's port is
// a conflict of the plan (the file's own, validate refuses).
func TestMacvlanOnABridgePort(t *testing.T) {
	k := fake.New("lab")
	k.W.AddForeignLink("host", &reconcile.Link{Name: "obr", Kind: "bridge", Up: true, MTU: 1500})
	k.W.AddForeignLink("host", &reconcile.Link{Name: "oport", Kind: "device", Up: true, MTU: 1500, Master: "obr"})
	refusedWhole(t, k, parse(t, "name: lab\nnamespaces:\n  c1: {}\nmacvlans:\n  - {namespace: c1, name: m0, parent: \"host:oport\"}\n"),
		`parent host:oport of macvlan "m0" in namespace "c1" is a port of bridge obr: the kernel takes no macvlan on a bridge port`)
	_, err := topology.Parse("t.yaml", []byte("name: lab\nnamespaces:\n  c1: {}\nbridges:\n  - {name: br}\nlinks:\n  - a: {namespace: c1, name: eth0}\n    b: {namespace: host, name: p0, bridge: br}\nmacvlans:\n  - {namespace: c1, name: m0, parent: \"host:p0\"}\n"))
	if err == nil || !strings.Contains(err.Error(), "t.yaml:10:39: macvlans[0].parent: parent host:p0 is a port of bridge br: the kernel takes no macvlan on a bridge port; make it on the bridge host:br instead") {
		t.Fatalf("validate: %v", err)
	}
}

// TestSysctlDroppedFromTheFile: a sysctl the file no longer sets goes
// back to what it was before the lab set it, said so in the plan; one set
// by hand that the file never set is left alone.
func TestSysctlDroppedFromTheFile(t *testing.T) {
	with := strings.Replace(base, `sysctls: {net.ipv4.ip_forward: "1"}`, `sysctls: {net.ipv4.ip_forward: "1", net.ipv4.conf.all.rp_filter: "0"}`, 1)
	without := strings.Replace(base, "  host:\n    sysctls: {net.ipv4.ip_forward: \"1\"}\n", "", 1)
	got := planLinesFrom(t, with, without)
	want := []string{
		`~ host sysctl net.ipv4.conf.all.rp_filter: "0" -> "2" (no longer in the file: back to what it was before the lab set it)`,
		`~ host sysctl net.ipv4.ip_forward: "1" -> "0" (no longer in the file: back to what it was before the lab set it)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	k := fake.New("lab")
	apply(t, k, parse(t, base))
	k.W.SetSysctl("c1", "net.ipv4.conf.all.accept_local", "1")
	if p := plan(t, k, parse(t, without)); len(p.Changes) != 1 || p.Changes[0].Name != "net.ipv4.ip_forward" {
		t.Fatalf("want only ip_forward put back, got:\n%v", p)
	}
}

// TestHostGatewayOnNoSubnet: a route in host must go through an
// interface of the lab there: a gateway on none of their subnets is a
// conflict of the plan (validate cannot tell in host; the kernel refused
// it half-way through an apply), and so is one reached only through
// someone else's interface, or a dev: that is someone else's (the lab
// would make a route it could neither tell for its own nor remove):
// outside audits' finds.
func TestHostGatewayOnNoSubnet(t *testing.T) {
	route := "name: lab\nnamespaces:\n  host:\n    routes: [{to: 172.30.0.0/16, via: 192.0.2.1}]\nbridges:\n  - {name: br0, addresses: [10.0.0.1/24]}\n"
	k := fake.New("lab")
	refusedWhole(t, k, parse(t, route),
		"route 172.30.0.0/16 via 192.0.2.1: the gateway is on no subnet of the lab's interfaces in namespace host (they have 10.0.0.0/24): give one an address in its subnet")
	k = fake.New("lab")
	k.W.AddForeignLink("host", &reconcile.Link{Name: "up0", Kind: "device", Up: true, MTU: 1500, Addresses: []string{"192.0.2.9/24"}})
	if p := plan(t, k, parse(t, route)); len(p.Conflicts) != 1 || !strings.Contains(p.Conflicts[0], "the gateway is reached through up0, which is not an interface of the lab") {
		t.Fatalf("through someone else's interface: %q", p.Conflicts)
	}
	if p := plan(t, k, parse(t, strings.Replace(route, "via: 192.0.2.1}", "dev: up0}", 1))); len(p.Conflicts) != 1 || !strings.Contains(p.Conflicts[0], "dev up0 is not an interface of the lab") {
		t.Fatalf("on someone else's interface: %q", p.Conflicts)
	}
	if p := plan(t, k, parse(t, strings.Replace(route, "via: 192.0.2.1}", "via: 192.0.2.1, dev: br0}", 1))); len(p.Conflicts) != 1 || !strings.Contains(p.Conflicts[0], "route 172.30.0.0/16 via 192.0.2.1 dev br0: the gateway is on no subnet of br0 in namespace host (it has 10.0.0.0/24)") {
		t.Fatalf("dev: with a gateway off its subnet: %q", p.Conflicts)
	}
	for _, fine := range []string{"via: 192.0.2.1, dev: br0, onlink: true}", "via: 10.0.0.254, dev: br0}"} {
		if p := plan(t, k, parse(t, strings.Replace(route, "via: 192.0.2.1}", fine, 1))); len(p.Conflicts) > 0 {
			t.Fatalf("%s: %q", fine, p.Conflicts)
		}
	}
	ok := strings.Replace(route, "via: 192.0.2.1}", "via: 10.0.0.254}", 1)
	apply(t, k, parse(t, ok))
	if p := plan(t, k, parse(t, ok)); !p.Empty() || len(p.Conflicts) > 0 {
		t.Fatalf("after apply:\n%v", p)
	}
}

// TestSysctlNotesFollowTheLab (an outside audit's finds): a note of a key
// the file dropped goes once the kernel is as the file says (a value put
// back by hand is then left alone); a key of an interface renamed in
// place goes back under its new name; two labs of one sandbox setting
// one host key: the first to let it go leaves it to the other, and the
// last puts back the value from before either.
func TestSysctlNotesFollowTheLab(t *testing.T) {
	const ttl = "net.ipv4.ip_default_ttl"
	lab := func(name, v string) string {
		s := "name: " + name + "\n"
		if v != "" {
			s += "namespaces:\n  host:\n    sysctls: {" + ttl + ": \"" + v + "\"}\n"
		}
		return s
	}
	k := fake.New("a")
	k.W.SetSysctl("host", ttl, "64")
	apply(t, k, parse(t, lab("a", "100")))
	k.W.SetSysctl("host", ttl, "64") // back by hand
	apply(t, k, parse(t, lab("a", "")))
	k.W.SetSysctl("host", ttl, "80") // someone's own
	if p := plan(t, k, parse(t, lab("a", ""))); !p.Empty() {
		t.Fatalf("a key the lab let go is touched again:\n%v", p)
	}

	// Renamed in place.
	src := "name: r\nnamespaces:\n  c1: {sysctls: {net.ipv4.conf.eth0.rp_filter: \"0\"}}\nlinks:\n  - a: {namespace: c1, name: eth0}\n    b: {namespace: host, name: v0}\n"
	k = fake.New("r")
	apply(t, k, parse(t, src))
	renamed := strings.Replace(strings.Replace(src, "{sysctls: {net.ipv4.conf.eth0.rp_filter: \"0\"}}", "{}", 1), "name: eth0}", "name: eth9}", 1)
	res := apply(t, k, parse(t, renamed))
	if !strings.Contains(res.Plan.String(), `~   sysctl net.ipv4.conf.eth9.rp_filter: "0" -> "2" (no longer in the file: back to what it was before the lab set it)`) {
		t.Fatalf("want the key put back under the new name:\n%v", res.Plan)
	}
	if p := plan(t, k, parse(t, renamed)); !p.Empty() {
		t.Fatalf("after:\n%v", p)
	}

	// Two labs, one sandbox.
	w := fake.NewWorld()
	a, b := &fake.Kernel{W: w, Owner: "a"}, &fake.Kernel{W: w, Owner: "b"}
	w.SetSysctl("host", ttl, "64")
	apply(t, a, parse(t, lab("a", "100")))
	apply(t, b, parse(t, lab("b", "200")))
	if p := apply(t, a, parse(t, lab("a", ""))).Plan; !p.Empty() {
		t.Fatalf("the first lab to let it go changed it:\n%v", p)
	}
	if p := plan(t, b, parse(t, lab("b", "200"))); !p.Empty() {
		t.Fatalf("the other lab drifted:\n%v", p)
	}
	p := apply(t, b, parse(t, lab("b", ""))).Plan
	if len(p.Changes) != 1 || p.Changes[0].Value != "64" {
		t.Fatalf("the last lab to let it go: want it back to 64, got:\n%v", p)
	}
	// The second lab finds the value set already: it writes nothing, and
	// notes all the same (the first lab's note).
	apply(t, a, parse(t, lab("a", "100")))
	if p := apply(t, b, parse(t, lab("b", "100"))).Plan; !p.Empty() {
		t.Fatalf("want nothing to write:\n%v", p)
	}
	if p := apply(t, a, parse(t, lab("a", ""))).Plan; !p.Empty() {
		t.Fatalf("the first lab to let it go changed it:\n%v", p)
	}
	if p := apply(t, b, parse(t, lab("b", ""))).Plan; len(p.Changes) != 1 || p.Changes[0].Value != "64" {
		t.Fatalf("the last lab: want 64 back, got:\n%v", p)
	}

	// A key the kernel rewrites when another is written (ip_forward
	// writes default.forwarding) is noted as it was before the plan.
	fw := "name: f\nnamespaces:\n  host:\n    sysctls: {net.ipv4.ip_forward: \"1\", net.ipv4.conf.default.forwarding: \"0\"}\n"
	k = fake.New("f")
	apply(t, k, parse(t, fw))
	apply(t, k, parse(t, "name: f\n"))
	if v := k.W.Dump("f").Namespaces["host"].Sysctls["net.ipv4.conf.default.forwarding"]; v != "" {
		t.Fatalf("default.forwarding left at %q, want it back to what a new namespace has", v)
	}

	// Renamed in place with its key kept, then the key dropped: back to
	// what it was before the lab set it under the old name.
	k = fake.New("r")
	apply(t, k, parse(t, src))
	kept := strings.Replace(strings.Replace(src, "conf.eth0.rp_filter", "conf.eth9.rp_filter", 1), "name: eth0}", "name: eth9}", 1)
	apply(t, k, parse(t, kept))
	if p := apply(t, k, parse(t, renamed)).Plan; !strings.Contains(p.String(), `sysctl net.ipv4.conf.eth9.rp_filter: "0" -> "2"`) {
		t.Fatalf("want eth9's key back to 2:\n%v", p)
	}
}

// TestIPv6OnABridgeSetByHandWithoutPorts: a bridge without ports is at
// 1500 unless set by hand: one at 1200 keeps it when it gets a port.
func TestIPv6OnABridgeSetByHandWithoutPorts(t *testing.T) {
	const c1 = "name: lab\nnamespaces:\n  c1: {}\n"
	k := fake.New("lab")
	apply(t, k, parse(t, c1+"bridges:\n  - {name: br0}\n"))
	obs, err := k.Observe(context.Background(), reconcile.QueryFor(parse(t, c1)))
	if err != nil {
		t.Fatal(err)
	}
	obs.Namespaces["host"].Links["br0"].MTU = 1200 // as `ip link set br0 mtu 1200` leaves it
	want := parse(t, c1+"bridges:\n  - {name: br0, addresses: [\"fd84::1/64\"]}\nlinks:\n  - a: {namespace: c1, name: eth0}\n    b: {namespace: host, name: p0, bridge: br0}\n")
	p := reconcile.Diff(want, obs)
	if len(p.Conflicts) != 1 || !strings.Contains(p.Conflicts[0], `"br0" has 1200`) {
		t.Fatalf("want the conflict, got %q", p.Conflicts)
	}
}

// TestHostSysctlOfNoInterface: an interface's sysctl in host for an
// interface that is not there and that the file does not make is a
// conflict of the plan (validate cannot tell in host; apply failed
// half-way: an outside audit).
func TestHostSysctlOfNoInterface(t *testing.T) {
	src := "name: lab\nnamespaces:\n  host:\n    sysctls: {net.ipv4.conf.nosuch0.rp_filter: \"1\"}\n"
	k := fake.New("lab")
	refusedWhole(t, k, parse(t, src), "sysctl net.ipv4.conf.nosuch0.rp_filter in namespace host: there is no interface nosuch0 there, and the file makes none")
	k.W.AddForeignLink("host", &reconcile.Link{Name: "nosuch0", Kind: "device", Up: true, MTU: 1500})
	apply(t, k, parse(t, src))
}

// TestSysctlNotesAndAliasesAndRollbacks (a fourth outside audit): a file
// that moves from ip_forward to conf.all.forwarding (one kernel value)
// keeps forwarding on; a failed, rolled back apply leaves the notes as
// they were, so a value set by hand later is not written over.
func TestSysctlNotesAndAliasesAndRollbacks(t *testing.T) {
	host := func(kv string) string {
		if kv == "" {
			return "name: a\nnamespaces:\n  c1: {}\n"
		}
		return "name: a\nnamespaces:\n  c1: {}\n  host:\n    sysctls: {" + kv + "}\n"
	}
	k := fake.New("a")
	apply(t, k, parse(t, host(`net.ipv4.ip_forward: "1"`)))
	apply(t, k, parse(t, host(`net.ipv4.conf.all.forwarding: "1"`)))
	if p := plan(t, k, parse(t, host(`net.ipv4.conf.all.forwarding: "1"`))); !p.Empty() {
		t.Fatalf("after moving to conf.all.forwarding:\n%v", p)
	}
	apply(t, k, parse(t, host(`net.ipv4.ip_forward: "1"`)))
	if p := plan(t, k, parse(t, host(`net.ipv4.ip_forward: "1"`))); !p.Empty() {
		t.Fatalf("after moving back to ip_forward:\n%v", p)
	}

	const ai = "net.ipv4.conf.all.arp_ignore"
	k = fake.New("a")
	apply(t, k, parse(t, host("")))
	k.FailOn = func(c *reconcile.Change) error {
		if c.Kind == reconcile.KindSysctl && c.Name == "net.ipv4.conf.all.rp_filter" {
			return errors.New("injected")
		}
		return nil
	}
	if res, err := reconcile.Reconcile(context.Background(), k, parse(t, host(ai+`: "1", net.ipv4.conf.all.rp_filter: "0"`)), reconcile.ExecOptions{}); err == nil || !res.RolledBack || res.RollbackErr != nil {
		t.Fatalf("want the injected failure, rolled back: %v", err)
	}
	k.FailOn = nil
	k.W.SetSysctl("host", ai, "2") // by hand, after the rollback
	if p := plan(t, k, parse(t, host(""))); !p.Empty() {
		t.Fatalf("a note of the rolled back run writes over a value set by hand:\n%v", p)
	}
}

// TestSysctlNotesOfWhatAWriteRewrites (a fourth outside audit): a key the
// lab's own write of another rewrote (conf.all.forwarding writes the
// default's) is noted as it was before that write, so that when the file
// sets it later and then drops both, it goes back to its own value.
func TestSysctlNotesOfWhatAWriteRewrites(t *testing.T) {
	host := func(kv string) string {
		if kv == "" {
			return "name: a\n"
		}
		return "name: a\nnamespaces:\n  host:\n    sysctls: {" + kv + "}\n"
	}
	const df = "net.ipv4.conf.default.forwarding"
	k := fake.New("a")
	apply(t, k, parse(t, host(`net.ipv4.conf.all.forwarding: "1"`)))
	apply(t, k, parse(t, host(df+`: "1"`)))
	apply(t, k, parse(t, host("")))
	if v := k.W.Dump("a").Namespaces["host"].Sysctls[df]; v != "" {
		t.Fatalf("%s left at %q, want it as a new namespace has it", df, v)
	}
}

// TestSysctlTwoLabsDisagree: two labs of one sandbox setting one host key
// to different values are warned that the last apply wins (an outside
// audit: they overwrote each other silently).
func TestSysctlTwoLabsDisagree(t *testing.T) {
	const ttl = "net.ipv4.ip_default_ttl"
	lab := func(name, v string) string {
		return "name: " + name + "\nnamespaces:\n  host:\n    sysctls: {" + ttl + ": \"" + v + "\"}\n"
	}
	w := fake.NewWorld()
	a, b := &fake.Kernel{W: w, Owner: "a"}, &fake.Kernel{W: w, Owner: "b"}
	apply(t, a, parse(t, lab("a", "100")))
	apply(t, b, parse(t, lab("b", "200")))
	p := plan(t, a, parse(t, lab("a", "100")))
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], `sysctl net.ipv4.ip_default_ttl in namespace "host": another lab of this sandbox sets it too, to "200"; the last apply wins`) {
		t.Fatalf("warnings: %q", p.Warnings)
	}
}

// TestIPv6SettingsAndTheMTU: the kernel keeps an interface's IPv6 MTU
// (net.ipv6.conf.IF.mtu) at most its MTU, sets it to the new MTU when that
// changes, and keeps no IPv6 settings at all for an interface under 1280.
// A plan that would break either rule is refused before any change, and
// one that changes the MTU of an interface whose IPv6 MTU the file sets
// sets it again afterwards (an outside finding: apply failed, saying the
// kernel did not match the file).
func TestIPv6SettingsAndTheMTU(t *testing.T) {
	lab := func(sysctl string, mtu int, bridged bool) string {
		s := "name: lab\nnamespaces:\n  a:\n    sysctls:\n      " + sysctl + "\n  b: {}\n"
		if bridged {
			return s + fmt.Sprintf("bridges:\n  - {name: br, namespace: a}\nlinks:\n  - a: {namespace: a, name: p0, bridge: br, mtu: %d}\n    b: {namespace: b, name: eth0}\n", mtu)
		}
		return s + fmt.Sprintf("links:\n  - a: {namespace: a, name: eth0, mtu: %d, addresses: [\"fd00::1/64\"]}\n    b: {namespace: b, name: eth0}\n", mtu)
	}
	t.Run("an IPv6 MTU over the interface's", func(t *testing.T) {
		refusedWhole(t, fake.New("lab"), parse(t, lab(`net.ipv6.conf.eth0.mtu: "1600"`, 1500, false)),
			`sysctl net.ipv6.conf.eth0.mtu = 1600 in netns "a": the kernel refuses an IPv6 MTU over the interface's own, and "eth0" would have 1500: give a:eth0 an mtu: of at least 1600, or set it to at most 1500`)
	})
	t.Run("an IPv6 setting of an interface under 1280", func(t *testing.T) {
		k := fake.New("lab")
		refusedWhole(t, k, parse(t, "name: lab\nnamespaces:\n  a:\n    sysctls:\n      net.ipv6.conf.eth0.forwarding: \"1\"\n  b: {}\nlinks:\n  - a: {namespace: a, name: eth0}\n    b: {namespace: b, name: eth0, mtu: 1200}\n"),
			`sysctl net.ipv6.conf.eth0.forwarding in netns "a": "eth0" would have an MTU of 1200, under IPv6's minimum of 1280`,
			"give a:eth0 an mtu: of at least 1280, or leave the key out")
	})
	for _, tc := range []struct {
		name    string
		bridged bool
		key     string
	}{
		{"its own MTU changes", false, "net.ipv6.conf.eth0.mtu"},
		{"a bridge follows its port", true, "net.ipv6.conf.br.mtu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := fake.New("lab")
			apply(t, k, parse(t, lab(tc.key+`: "1400"`, 1500, tc.bridged)))
			want := parse(t, lab(tc.key+`: "1400"`, 1600, tc.bridged))
			p := plan(t, k, want)
			if !strings.Contains(p.String(), tc.key) {
				t.Fatalf("want %s set again after the MTU change, got\n%v", tc.key, p)
			}
			apply(t, k, want)
			if p := plan(t, k, want); !p.Empty() {
				t.Fatalf("the kernel does not match the file after apply:\n%v", p)
			}
		})
	}
}

// TestChildMTUOverItsParents: a macvlan's or VXLAN's mtu: over what its
// parent (its dev, less the VXLAN's headers) has, where the file gives
// the parent no mtu: (validate cannot tell), is refused by the plan
// before any change, not by the kernel's EINVAL half-way through (an
// outside audit: a VXLAN's mtu: over a dev lowered by hand).
func TestChildMTUOverItsParents(t *testing.T) {
	t.Run("a macvlan over a parent the lab does not set", func(t *testing.T) {
		k := fake.New("lab")
		k.W.AddForeignLink("host", &reconcile.Link{Name: "fbr", Kind: "bridge", Up: true, MTU: 1400})
		refusedWhole(t, k, parse(t, "name: lab\nnamespaces:\n  c1: {}\nmacvlans:\n  - {namespace: c1, name: m0, parent: \"host:fbr\", mtu: 1500}\n"),
			`macvlan "m0" in netns "c1": its mtu: 1500 is over its parent host:fbr's MTU, 1400, which the kernel refuses: raise host:fbr's MTU (the lab does not set it), or give it a smaller mtu:`)
	})
	t.Run("a VXLAN over a dev lowered by hand", func(t *testing.T) {
		k := fake.New("lab")
		base := "name: lab\nnamespaces:\n  r: {}\nlinks:\n  - a: {namespace: r, name: u0, addresses: [10.2.0.2/24]}\n    b: {namespace: host, name: u0, addresses: [10.2.0.1/24]}\nvxlans:\n  - {namespace: r, name: vx0, vni: 100, remote: 10.2.0.1, dev: u0"
		apply(t, k, parse(t, base+"}\n"))
		k.W.SetMTU("r", "u0", 1320)
		refusedWhole(t, k, parse(t, base+", mtu: 1400}\n"),
			`vxlan "vx0" in netns "r": its mtu: 1400 is over the 1270 its dev r:u0 leaves it (its MTU 1320, less 50 for the VXLAN's headers), which the kernel refuses: give r:u0 an mtu: of at least 1450, or give it a smaller mtu:`)
	})
	t.Run("IPv6 on a VXLAN: its dev needs the headers more", func(t *testing.T) {
		k := fake.New("lab")
		k.W.AddForeignLink("host", &reconcile.Link{Name: "und", Kind: "bridge", Up: true, MTU: 1320})
		refusedWhole(t, k, parse(t, "name: lab\nvxlans:\n  - {name: vx0, vni: 5, remote: 192.0.2.9, dev: und, addresses: [\"fd00:8::1/64\"]}\n"),
			"raise host:und's MTU (the lab does not set it)")
		// The dev lowered by hand (validate sees only the file): a new
		// VXLAN on it.
		k = fake.New("lab")
		base := "name: lab\nnamespaces:\n  r: {}\nlinks:\n  - a: {namespace: r, name: u0}\n    b: {namespace: host, name: u0}\n"
		apply(t, k, parse(t, base))
		k.W.SetMTU("r", "u0", 1300)
		refusedWhole(t, k, parse(t, base+"vxlans:\n  - {namespace: r, name: vx0, vni: 100, remote: 10.2.0.1, dev: u0, addresses: [\"fd00:8::1/64\"]}\n"),
			"give r:u0 an mtu: of at least 1330")
	})
}

// TestSysctlRewrittenKeysPutBack: what ip_forward rewrites when it is put
// back (every interface's forwarding, and the default's) is put back
// after it to what each was before the lab, in the same run (an outside
// audit: an interface of the sandbox whose forwarding was on before the
// lab was left off, and apply failed); and while another lab of the
// sandbox sets ip_forward, none of them is put back (an outside audit: a
// lab letting go of ip_forward turned off forwarding on the other lab's
// interfaces and the default, silently).
func TestSysctlRewrittenKeysPutBack(t *testing.T) {
	const fw = "net.ipv4.ip_forward"
	t.Run("one lab", func(t *testing.T) {
		k := fake.New("lab")
		k.W.AddForeignLink("host", &reconcile.Link{Name: "keep0", Kind: "bridge", Up: true, MTU: 1500})
		k.W.SetSysctl("host", "net.ipv4.conf.keep0.forwarding", "1")
		k.W.SetSysctl("host", "net.ipv4.conf.default.forwarding", "1")
		apply(t, k, parse(t, "name: lab\nnamespaces:\n  host:\n    sysctls: {"+fw+": \"1\"}\n  x: {}\n"))
		want := parse(t, "name: lab\nnamespaces:\n  x: {}\n")
		apply(t, k, want)
		for key, v := range map[string]string{fw: "0", "net.ipv4.conf.keep0.forwarding": "1", "net.ipv4.conf.default.forwarding": "1"} {
			if got, _ := k.W.SysctlOf("host", key); got != v {
				t.Errorf("%s = %q, want %q (as before the lab)", key, got, v)
			}
		}
	})
	t.Run("another lab sets it still", func(t *testing.T) {
		w := fake.NewWorld()
		a, b := &fake.Kernel{W: w, Owner: "a"}, &fake.Kernel{W: w, Owner: "b"}
		apply(t, a, parse(t, "name: a\nnamespaces:\n  host:\n    sysctls: {"+fw+": \"1\"}\n  x: {}\n"))
		bWant := parse(t, "name: b\nnamespaces:\n  host:\n    sysctls: {"+fw+": \"1\"}\n  c1: {}\nlinks:\n  - a: {namespace: c1, name: eth0}\n    b: {namespace: host, name: v1}\n")
		apply(t, b, bWant)
		apply(t, a, reconcile.Nothing())
		for _, key := range []string{fw, "net.ipv4.conf.default.forwarding", "net.ipv4.conf.v1.forwarding"} {
			if got, _ := w.SysctlOf("host", key); got != "1" {
				t.Errorf("%s = %q after lab a went, want 1: lab b sets %s", key, got, fw)
			}
		}
		if p := plan(t, b, bWant); !p.Empty() {
			t.Fatalf("lab b's plan:\n%v", p)
		}
	})
	// An interface of the sandbox whose forwarding was on before any lab:
	// two labs set forwarding (one by its alias), the first goes (putting
	// nothing back), then the second, in either order: it is on again (an
	// outside audit: the first lab's note of it went with that lab).
	for _, first := range []string{"a", "b"} {
		t.Run("two labs, "+first+" goes first", func(t *testing.T) {
			w := fake.NewWorld()
			w.AddForeignLink("host", &reconcile.Link{Name: "fbr0", Kind: "bridge", Up: true, MTU: 1500})
			w.SetSysctl("host", "net.ipv4.conf.fbr0.forwarding", "1")
			a, b := &fake.Kernel{W: w, Owner: "a"}, &fake.Kernel{W: w, Owner: "b"}
			apply(t, a, parse(t, "name: a\nnamespaces:\n  host:\n    sysctls: {"+fw+": \"1\"}\n  x: {}\n"))
			apply(t, b, parse(t, "name: b\nnamespaces:\n  host:\n    sysctls: {net.ipv4.conf.all.forwarding: \"1\"}\n  y: {}\n"))
			order := []*fake.Kernel{a, b}
			if first == "b" {
				order = []*fake.Kernel{b, a}
			}
			for _, k := range order {
				apply(t, k, reconcile.Nothing())
			}
			if v, _ := w.SysctlOf("host", "net.ipv4.conf.fbr0.forwarding"); v != "1" {
				t.Fatalf("fbr0's forwarding is %q after both labs went, want 1 (as before them)", v)
			}
		})
	}
}

// TestIPv6DefaultKeepsWhatWasAddedByHand: a namespace whose file drops its
// last IPv6 address would have IPv6 turned off (the default), which takes
// every IPv6 address and route with it; where some were added by hand,
// IPv6 stays on, with a warning, until they are gone (an outside audit:
// they went silently).
func TestIPv6DefaultKeepsWhatWasAddedByHand(t *testing.T) {
	lab := func(v6 string) *reconcile.State {
		return parse(t, "name: lab\nnamespaces:\n  left: {}\n  right: {}\nlinks:\n  - a: {namespace: left, name: veth0, addresses: [10.0.0.1/24"+v6+"]}\n    b: {namespace: right, name: veth0, addresses: [10.0.0.2/24, \"fd00::2/64\"]}\n")
	}
	k := fake.New("lab")
	apply(t, k, lab(`, "fd00::1/64"`))
	k.W.AddAddressByHand("left", "veth0", "fd00::77/64")
	k.W.AddRouteByHand("left", &reconcile.Route{Dst: "fd05::/64", Dev: "veth0", Metric: 1024})
	want := lab("")
	p := plan(t, k, want)
	if strings.Contains(p.String(), "disable_ipv6") || len(p.Warnings) != 1 ||
		!strings.Contains(p.Warnings[0], `namespace "left" keeps IPv6 on: the file gives it no IPv6, but turning IPv6 off would take what was added by hand (fd00::77/64 on veth0, route fd05::/64)`) {
		t.Fatalf("want IPv6 kept on, with a warning; plan:\n%v\nwarnings: %q", p, p.Warnings)
	}
	apply(t, k, want)
	left := k.W.Dump("lab").Namespaces["left"]
	routed := false
	for _, r := range left.Routes {
		routed = routed || r.Dst == "fd05::/64"
	}
	if l := left.Links["veth0"]; l == nil || !slices.Contains(l.Foreign, "fd00::77/64") || !routed {
		t.Fatalf("what was added by hand went: %+v", left)
	}
	if p := plan(t, k, want); !p.Empty() {
		t.Fatalf("plan after apply:\n%v", p)
	}
}

// TestNATWarnsOfForwardingThePlanTurnsOff: a file that keeps NAT and
// drops ip_forward has it put back (off): the plan that does it warns
// that the namespace will not forward, not only the next (an outside
// audit).
func TestNATWarnsOfForwardingThePlanTurnsOff(t *testing.T) {
	const nat = "  c1: {}\nlinks:\n  - a: {namespace: c1, name: eth0, addresses: [10.5.0.2/24]}\n    b: {namespace: host, name: v0, addresses: [10.5.0.1/24]}\nnat:\n  - {namespace: host, masquerade: {source: 10.5.0.0/24}}\n"
	k := fake.New("lab")
	apply(t, k, parse(t, "name: lab\nnamespaces:\n  host:\n    sysctls: {net.ipv4.ip_forward: \"1\"}\n"+nat))
	p := plan(t, k, parse(t, "name: lab\nnamespaces:\n"+nat))
	if !strings.Contains(strings.Join(p.Warnings, "\n"), `namespace "host" has NAT rules but net.ipv4.ip_forward is "0"`) {
		t.Fatalf("want the warning with the plan that turns forwarding off; plan:\n%v\nwarnings: %q", p, p.Warnings)
	}
}

// TestKeptBridgeInTheLabsSubnetWarned: a bridge renamed, the old one kept
// for an address added by hand in the subnet the new one serves: two
// connected routes, and the kernel may route through the old bridge; the
// plan says so (an outside audit: the containers lost their gateway).
func TestKeptBridgeInTheLabsSubnetWarned(t *testing.T) {
	lab := func(br string) *reconcile.State {
		return parse(t, "name: lab\nnamespaces:\n  c1: {}\nbridges:\n  - {name: "+br+", addresses: [10.73.0.1/24]}\nlinks:\n  - a: {namespace: c1, name: eth0, addresses: [10.73.0.2/24]}\n    b: {namespace: host, name: v0, bridge: "+br+"}\n")
	}
	k := fake.New("lab")
	apply(t, k, lab("br0"))
	k.W.AddAddressByHand("host", "br0", "10.73.0.254/24")
	p := plan(t, k, lab("br1"))
	if !strings.Contains(strings.Join(p.Warnings, "\n"), `"br0" in namespace "host" stays for 10.73.0.254/24, which the lab did not add, in the subnet of 10.73.0.1/24 the lab puts on "br1"`) {
		t.Fatalf("want the warning; plan:\n%v\nwarnings: %q", p, p.Warnings)
	}
}
