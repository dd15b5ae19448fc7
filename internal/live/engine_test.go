package live

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// engineLab is testdata/engine.yaml.
func engineLab(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/engine.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// edit applies replacements to a topology, failing if one does not match.
func edit(t *testing.T, src string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(src, pairs[i]) {
			t.Fatalf("edit: %q is not in the file", pairs[i])
		}
		src = strings.Replace(src, pairs[i], pairs[i+1], 1)
	}
	return src
}

// identities maps "short:ifname" to "ifindex mac" for every link of the
// lab's namespaces that exist.
func (e *env) identities() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, short := range append([]string{"host"}, e.topoNamespaces()...) {
		if _, err := os.Stat(e.nsPath(short)); err != nil {
			continue
		}
		h := handleIn(e.t, e.nsPath(short))
		links, err := h.LinkList()
		h.Close()
		if err != nil {
			e.t.Fatal(err)
		}
		for _, l := range links {
			a := l.Attrs()
			out[short+":"+a.Name] = fmt.Sprintf("%d %s", a.Index, a.HardwareAddr)
		}
	}
	return out
}

func (e *env) topoNamespaces() []string {
	var out []string
	for _, n := range e.topo.Namespaces {
		if n.Name != "host" {
			out = append(out, n.Name)
		}
	}
	return out
}

// planLines is the plan as "ACTION ns description" lines.
func planLines(p *reconcile.Plan) []string {
	var out []string
	for _, c := range p.Changes {
		out = append(out, string(c.Action)+" "+c.Namespace+" "+c.Describe())
	}
	return out
}

// lineMatches: pattern is a prefix of line, where "*" stands for any text.
func lineMatches(line, pattern string) bool {
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(line, parts[0]) {
		return false
	}
	rest := line[len(parts[0]):]
	for _, p := range parts[1:] {
		i := strings.Index(rest, p)
		if i < 0 {
			return false
		}
		rest = rest[i+len(p):]
	}
	return true
}

// editCase applies the engine lab, then the edited file once, and checks:
// the plan holds the lines wanted (prefixes) and nothing else, the one
// apply leaves the kernel as the file says (re-plan empty, re-apply with no
// writes), and every link the edit does not name keeps its ifindex and MAC.
func editCase(t *testing.T, base, edited string, wantPlan []string, touched ...string) *env {
	t.Helper()
	e := newEnv(t, "engine.yaml", []byte(base))
	e.mustApply()
	before := e.identities()
	e.before = before
	e.load("engine.yaml", []byte(edited))
	got := planLines(e.plan())
	if len(got) != len(wantPlan) {
		t.Fatalf("plan has %d lines, want %d:\n%s\nwant (prefixes):\n%s", len(got), len(wantPlan), strings.Join(got, "\n"), strings.Join(wantPlan, "\n"))
	}
	sort.Strings(got)
	want := append([]string(nil), wantPlan...)
	sort.Strings(want)
	for i := range got {
		if !lineMatches(got[i], want[i]) {
			t.Fatalf("plan:\n%s\nwant (prefixes, * for any text):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	e.mustApply()
	e.assertNoOp()
	after := e.identities()
	skip := map[string]bool{}
	for _, n := range touched {
		skip[n] = true
	}
	for name, id := range before {
		if skip[name] {
			continue
		}
		if after[name] != id {
			t.Errorf("%s was not part of the edit but changed: %q -> %q", name, id, after[name])
		}
	}
	return e
}

// TestReplacedParentTakesItsChildren: moving the far end of the underlay
// veth to another namespace replaces the pair; the kernel deletes the
// macvlan on it and the VXLAN over it, and the plan says so and makes them
// again, with their interface sysctl, in the same apply.
func TestReplacedParentTakesItsChildren(t *testing.T) {
	base := engineLab(t)
	edited := edit(t, base,
		"b: {namespace: w, name: up0, addresses: [10.9.0.2/24]}", "b: {namespace: n, name: up0, addresses: [10.9.0.2/24]}",
		"{name: vx0, namespace: w,", "{name: vx0, namespace: n,")
	e := editCase(t, base, edited, []string{
		"- v veth up0 <-> w:up0",
		"+ n veth up0 <-> v:up0",
		"-/+ m macvlan mv0 parent v:up0 mode bridge * (goes with its parent v:up0)",
		"-/+ v vxlan vx0 vni 100 * (goes with its underlay dev up0)",
		"- w vxlan vx0",
		"+ n vxlan vx0 vni 100",
		"+ m sysctl net.ipv4.conf.mv0.rp_filter = \"0\" (again: its interface is re-created)",
	}, "v:up0", "w:up0", "n:up0", "m:mv0", "v:vx0", "w:vx0", "n:vx0")
	e.tcp("v", "n", "10.10.0.1:80", "10.10.0.1:80") // over the new VXLAN
	e.destroy()
}

// TestChildrenOfChildren: a macvlan whose parent is a VXLAN is made after
// its parent in one apply. (A macvlan of a macvlan is refused by validate:
// the kernel would attach it to the first one's parent.)
func TestChildrenOfChildren(t *testing.T) {
	base := engineLab(t)
	edited := edit(t, base, "vxlans:", `  - {name: mv1, namespace: n, parent: "v:vx0", mode: bridge, addresses: [10.10.0.5/24]}
vxlans:`)
	e := newEnv(t, "engine.yaml", []byte(edited))
	e.mustApply()
	e.assertNoOp()
	e.tcp("w", "n", "10.10.0.2:80", "10.10.0.2:80") // n's macvlan on v's VXLAN, through the tunnel
	e.destroy()
	editCase(t, base, edited, []string{"+ n macvlan mv1 parent v:vx0 mode bridge"}).destroy()
}

// TestDownLinkWithRoutes: a link set down loses its routes (the kernel
// flushes them and refuses new ones): they are dormant, and come back when
// the link comes up.
func TestDownLinkWithRoutes(t *testing.T) {
	base := engineLab(t)
	down := edit(t, base, "{namespace: a2, name: eth0, addresses: [10.1.0.3/24]}", "{namespace: a2, name: eth0, addresses: [10.1.0.3/24], up: false}")
	e := editCase(t, base, down, []string{"~ a2 veth eth0 <-> r:a2 (up: true -> false)"})
	e.load("engine.yaml", []byte(base))
	got := planLines(e.plan())
	sort.Strings(got)
	want := []string{"+ a2 route 10.50.0.0/16 via 10.1.0.1 metric 10", "+ a2 route default via 10.1.0.1", "~ a2 veth eth0 <-> r:a2 (up: false -> true)"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("back up:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	e.mustApply()
	e.assertNoOp()
	e.tcp("a1", "a2", "10.1.0.2:80", "10.1.0.2:80")
	e.destroy()
}

// TestPrimaryAddressGoesSecondaryStays: removing an interface's primary
// IPv4 address while keeping a secondary of its subnet keeps the secondary
// (promoted) and the routes.
func TestPrimaryAddressGoesSecondaryStays(t *testing.T) {
	base := engineLab(t)
	edited := edit(t, base, "addresses: [10.1.0.2/24, 10.1.0.12/24,", "addresses: [10.1.0.12/24,")
	routes := (*routeWatch)(nil)
	e := newEnv(t, "engine.yaml", []byte(base))
	e.mustApply()
	routes = e.watchRoutes("a1")
	e.load("engine.yaml", []byte(edited))
	if got := planLines(e.plan()); strings.Join(got, "\n") != "- a1 address 10.1.0.2/24 on eth0" {
		t.Fatalf("plan:\n%s", strings.Join(got, "\n"))
	}
	e.mustApply()
	e.assertNoOp()
	if removed := routes.stop(); len(removed) > 0 {
		t.Fatalf("routes went away: %v", removed)
	}
	e.tcp("r", "a1", "10.1.0.1:80", "10.1.0.1:80")
	e.destroy()
}

// TestIPv6AddressChangeLeavesIPv4Routes: an IPv6 address change is two
// lines, with no IPv4 route re-added.
func TestIPv6AddressChangeLeavesIPv4Routes(t *testing.T) {
	base := engineLab(t)
	editCase(t, base, edit(t, base, `"fd01::2/64"]}`, `"fd01::3/64"]}`), []string{
		"+ a1 address fd01::3/64 on eth0",
		"- a1 address fd01::2/64 on eth0",
	}).destroy()
}

// TestFirstAddressIsPrimary: addresses are added in the file's order, so
// the file's first is the kernel's primary.
func TestFirstAddressIsPrimary(t *testing.T) {
	e := newEnv(t, "engine.yaml", []byte(edit(t, engineLab(t), "addresses: [10.1.0.2/24, 10.1.0.12/24,", "addresses: [10.1.0.12/24, 10.1.0.2/24,")))
	e.mustApply()
	e.in("a1", func() {
		l, _ := netlink.LinkByName("eth0")
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			secondary := a.Flags&unix.IFA_F_SECONDARY != 0
			if (a.IP.String() == "10.1.0.12") == secondary {
				t.Fatalf("10.1.0.12, first in the file, should be the primary: %v (secondary=%v)", a, secondary)
			}
		}
	})
	e.destroy()
}

// TestInPlaceKindSettings: a macvlan's mode and a VXLAN's remote and local
// address change in place: same ifindex, no replace.
func TestInPlaceKindSettings(t *testing.T) {
	base := engineLab(t)
	edited := edit(t, base, "parent: \"v:up0\", mode: bridge", "parent: \"v:up0\", mode: private",
		"vni: 100, remote: 10.9.0.2, local: 10.9.0.1,", "vni: 100, remote: 10.9.0.22, local: 10.9.0.11,")
	e := editCase(t, base, edited, []string{
		"~ m macvlan mv0 parent v:up0 mode private (mode: bridge -> private)",
		"~ v vxlan vx0 vni 100 (remote: 10.9.0.2 -> 10.9.0.22, local: 10.9.0.1 -> 10.9.0.11)",
	})
	e.destroy()
	// Back to bridge, and to vepa: the kernel's mode numbers, not the
	// netlink library's; into passthru is a replace (the kernel refuses
	// it in place).
	for _, c := range []struct{ from, to, want string }{
		{"mode: private", "mode: bridge", "~ m macvlan mv0 parent v:up0 mode bridge (mode: private -> bridge)"},
		{"mode: private", "mode: vepa", "~ m macvlan mv0 parent v:up0 mode vepa (mode: private -> vepa)"},
		{"mode: private", "mode: passthru", "-/+ m macvlan mv0 parent v:up0 mode passthru (mode: private -> passthru)"},
	} {
		want, touched := []string{c.want}, []string{}
		if strings.HasPrefix(c.want, "-/+") {
			want = append(want, `+ m sysctl net.ipv4.conf.mv0.rp_filter = "0" (again: its interface is re-created)`)
			touched = []string{"m:mv0"}
		}
		editCase(t, edit(t, base, "parent: \"v:up0\", mode: bridge", "parent: \"v:up0\", "+c.from), edit(t, base, "parent: \"v:up0\", mode: bridge", "parent: \"v:up0\", "+c.to),
			want, touched...).destroy()
	}
}

// TestRouteMetricChangeMakesBeforeBreak: a changed metric is a new route,
// added before the old one goes.
func TestRouteMetricChangeMakesBeforeBreak(t *testing.T) {
	base := engineLab(t)
	e := newEnv(t, "engine.yaml", []byte(base))
	e.mustApply()
	e.load("engine.yaml", []byte(edit(t, base, "metric: 10}", "metric: 20}")))
	var order []string
	_, err := reconcile.Reconcile(context.Background(), e.k, e.desired(), reconcile.ExecOptions{
		OnChange: func(c *reconcile.Change, err error) { order = append(order, string(c.Action)+" "+c.Describe()) }})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(order, "\n") != "+ route 10.50.0.0/16 via 10.1.0.1 metric 20\n- route 10.50.0.0/16 via 10.1.0.1 dev eth0 metric 10" {
		t.Fatalf("order:\n%s", strings.Join(order, "\n"))
	}
	e.assertNoOp()
	e.destroy()
}

// chainRules lists the lab's rules of one chain in namespace ns, in the
// kernel's order: "comment-without-mark@handle".
func (e *env) chainRules(ns, chain string) []string {
	e.t.Helper()
	var out []string
	e.in(ns, func() {
		c, err := nftables.New()
		if err != nil {
			e.t.Fatal(err)
		}
		chains, err := c.ListChains()
		if err != nil {
			e.t.Fatal(err)
		}
		for _, ch := range chains {
			if ch.Table.Name != e.k.TableName() || ch.Name != chain {
				continue
			}
			rules, err := c.GetRules(ch.Table, ch)
			if err != nil {
				e.t.Fatal(err)
			}
			for _, r := range rules {
				s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
				out = append(out, fmt.Sprintf("%s@%d", strings.TrimPrefix(s, e.k.Mark()+" "), r.Handle))
			}
		}
	})
	return out
}

func ids(rules []string) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r[:strings.LastIndex(r, "@")])
	}
	return out
}

// TestNATInFileOrder: the kernel's chains hold the lab's rules in the
// file's order (first match wins); reordering the file moves the one rule
// that must move, and the others keep their handles; a rule inserted in
// the middle goes in the middle.
func TestNATInFileOrder(t *testing.T) {
	base := engineLab(t)
	e := newEnv(t, "engine.yaml", []byte(base))
	e.mustApply()
	post := e.chainRules("r", "postrouting")
	if got := strings.Join(ids(post), " | "); got != "snat 10.1.0.0/24 to 10.2.0.1 out brb | masquerade 10.0.0.0/8 out brb" {
		t.Fatalf("postrouting: %s", got)
	}
	// Swap the two: one moves.
	swapped := edit(t, base, `  - namespace: r
    snat: {source: 10.1.0.0/24, to: 10.2.0.1, out: brb}
  - namespace: r
    masquerade: {source: 10.0.0.0/8, out: brb}`, `  - namespace: r
    masquerade: {source: 10.0.0.0/8, out: brb}
  - namespace: r
    snat: {source: 10.1.0.0/24, to: 10.2.0.1, out: brb}`)
	e.load("engine.yaml", []byte(swapped))
	if got := planLines(e.plan()); len(got) != 1 || !strings.HasPrefix(got[0], "-/+ r nat ") || !strings.Contains(got[0], "(moved: NAT rules apply in the file's order, first match wins)") {
		t.Fatalf("plan for a swap:\n%s", strings.Join(got, "\n"))
	}
	e.mustApply()
	e.assertNoOp()
	after := e.chainRules("r", "postrouting")
	if got := strings.Join(ids(after), " | "); got != "masquerade 10.0.0.0/8 out brb | snat 10.1.0.0/24 to 10.2.0.1 out brb" {
		t.Fatalf("postrouting after the swap: %s", got)
	}
	if !contains(after, post[0]) && !contains(after, post[1]) {
		t.Fatalf("both rules were re-made; one should keep its handle: %v -> %v", post, after)
	}
	// A new rule between them.
	middle := edit(t, swapped, `  - namespace: r
    snat: {source: 10.1.0.0/24`, `  - namespace: r
    snat: {source: 10.3.0.0/24, to: 10.2.0.1, out: brb}
  - namespace: r
    snat: {source: 10.1.0.0/24`)
	e.load("engine.yaml", []byte(middle))
	if got := planLines(e.plan()); strings.Join(got, "\n") != "+ r nat snat 10.3.0.0/24 to 10.2.0.1 out brb" {
		t.Fatalf("plan for an insert:\n%s", strings.Join(got, "\n"))
	}
	e.mustApply()
	e.assertNoOp()
	three := e.chainRules("r", "postrouting")
	if len(three) != 3 || three[0] != after[0] || three[2] != after[1] || !strings.HasPrefix(three[1], "snat 10.3.0.0/24") {
		t.Fatalf("postrouting after an insert: %v (before %v)", three, after)
	}
	e.destroy()
}

// TestNATEditedByHand: deleting the output-chain half of a port forward,
// or changing a rule's expressions while keeping its comment, is seen and
// repaired; the other rules keep their handles.
func TestNATEditedByHand(t *testing.T) {
	e := newEnv(t, "engine.yaml", []byte(engineLab(t)))
	e.mustApply()
	pf := "port_forward tcp 8080 to 10.2.0.2:80 in bra"
	post := e.chainRules("r", "postrouting")
	// Half a port forward goes.
	e.in("r", func() {
		c, _ := nftables.New()
		chains, _ := c.ListChains()
		for _, ch := range chains {
			if ch.Table.Name == e.k.TableName() && ch.Name == "output" {
				rules, _ := c.GetRules(ch.Table, ch)
				if err := c.DelRule(rules[0]); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	if got := planLines(e.plan()); strings.Join(got, "\n") != "-/+ r nat "+pf+" (its rule in chain output is missing)" {
		t.Fatalf("plan after a half was deleted:\n%s", strings.Join(got, "\n"))
	}
	e.mustApply()
	e.assertNoOp()
	// The masquerade's expressions change (it now matches 10.0.0.0/9),
	// its comment stays.
	e.in("r", func() {
		c, _ := nftables.New()
		chains, _ := c.ListChains()
		for _, ch := range chains {
			if ch.Table.Name != e.k.TableName() || ch.Name != "postrouting" {
				continue
			}
			rules, _ := c.GetRules(ch.Table, ch)
			for _, r := range rules {
				if s, _ := userdata.GetString(r.UserData, userdata.TypeComment); strings.HasSuffix(s, "masquerade 10.0.0.0/8 out brb") {
					for _, x := range r.Exprs {
						if b, ok := x.(*expr.Bitwise); ok {
							b.Mask = []byte{255, 128, 0, 0}
						}
					}
					c.DelRule(&nftables.Rule{Table: ch.Table, Chain: ch, Handle: r.Handle})
					c.AddRule(&nftables.Rule{Table: ch.Table, Chain: ch, Exprs: r.Exprs, UserData: r.UserData})
				}
			}
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	if got := planLines(e.plan()); strings.Join(got, "\n") != "-/+ r nat masquerade 10.0.0.0/8 out brb (its rule in chain postrouting was changed by hand)" {
		t.Fatalf("plan after an edit by hand:\n%s", strings.Join(got, "\n"))
	}
	e.mustApply()
	e.assertNoOp()
	if now := e.chainRules("r", "postrouting"); now[0] != post[0] {
		t.Fatalf("the snat rule lost its handle: %v -> %v", post, now)
	}
	e.destroy()
}

func ifindexOf(identity string) string { return strings.Fields(identity + " ")[0] }

// TestRenameOneEndInPlace: renaming an end of a veth renames that end only,
// in place: both ends keep their ifindexes, the other end, the macvlan on
// it and the VXLAN over it their MACs too (the audit saw the pair
// re-created and its children killed). The renamed end takes the MAC its
// new name derives.
func TestRenameOneEndInPlace(t *testing.T) {
	base := engineLab(t)
	far := edit(t, base, "b: {namespace: w, name: up0,", "b: {namespace: w, name: up9,",
		"{name: vx0, namespace: w, vni: 100, remote: 10.9.0.1, local: 10.9.0.2, dev: up0,", "{name: vx0, namespace: w, vni: 100, remote: 10.9.0.1, local: 10.9.0.2, dev: up9,")
	e := editCase(t, base, far, []string{
		"~ w veth up9 <-> v:up0 (name: up0 -> up9, mac: " + reconcile.DerivedMAC("engine", "w", "up0") + " -> " + reconcile.DerivedMAC("engine", "w", "up9") + ")",
		"~ v veth up0 <-> w:up9 (peer: w:up0 -> w:up9)",
	}, "w:up0", "w:up9")
	if a, b := ifindexOf(e.identities()["w:up9"]), ifindexOf(e.before["w:up0"]); a != b {
		t.Fatalf("the renamed end is a new link: w:up0 was %q, w:up9 is %q", b, a)
	}
	e.tcp("w", "v", "10.10.0.2:80", "10.10.0.2:80") // the VXLAN still runs over it
	e.destroy()

	// The near end: it is the macvlan's parent, whose mark follows.
	near := edit(t, base, "a: {namespace: v, name: up0,", "a: {namespace: v, name: up1,",
		`parent: "v:up0"`, `parent: "v:up1"`,
		"{name: vx0, namespace: v, vni: 100, remote: 10.9.0.2, local: 10.9.0.1, dev: up0,", "{name: vx0, namespace: v, vni: 100, remote: 10.9.0.2, local: 10.9.0.1, dev: up1,")
	e = editCase(t, base, near, []string{
		"~ v veth up1 <-> w:up0 (name: up0 -> up1, mac: " + reconcile.DerivedMAC("engine", "v", "up0") + " -> " + reconcile.DerivedMAC("engine", "v", "up1") + ")",
		"~ w veth up0 <-> v:up1 (peer: v:up0 -> v:up1)",
		"~ m macvlan mv0 parent v:up1 mode bridge (parent: v:up0 -> v:up1)",
	}, "v:up0", "v:up1")
	if a, b := ifindexOf(e.identities()["v:up1"]), ifindexOf(e.before["v:up0"]); a != b {
		t.Fatalf("the renamed end is a new link: v:up0 was %q, v:up1 is %q", b, a)
	}
	e.tcp("v", "w", "10.10.0.1:80", "10.10.0.1:80")
	e.destroy()
}

// TestDerivedMACs: an interface without mac: gets the same MAC on every
// apply, under any prefix and sandbox (derived from the lab's name, the
// namespace and the interface); a bridge keeps its MAC whatever its ports;
// a veth deleted by hand and re-applied answers at once, its neighbours'
// ARP caches still right.
func TestDerivedMACs(t *testing.T) {
	src, _ := os.ReadFile("../../examples/bridge.yaml")
	e := newEnv(t, "bridge.yaml", src)
	e.mustApply()
	first := e.identities()
	macs := func(ids map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range ids {
			if f := strings.Fields(v); len(f) == 2 && !strings.HasSuffix(k, ":lo") {
				out[k] = f[1]
			}
		}
		return out
	}
	if got, want := macs(first)["host:hwchiu0"], reconcile.DerivedMAC("bridge", "host", "hwchiu0"); got != want {
		t.Fatalf("bridge MAC %s, want %s", got, want)
	}
	e.destroy()
	e.mustApply()
	if a, b := fmt.Sprint(macs(e.identities())), fmt.Sprint(macs(first)); a != b {
		t.Fatalf("MACs after destroy and apply:\n%s\nbefore:\n%s", a, b)
	}
	other := newEnv(t, "bridge.yaml", src) // another prefix and sandbox
	other.mustApply()
	if a, b := fmt.Sprint(macs(other.identities())), fmt.Sprint(macs(first)); a != b {
		t.Fatalf("MACs under another prefix and sandbox:\n%s\nfirst:\n%s", a, b)
	}
	other.destroy()
	// c2 talks to c1 (its ARP cache learns c1's MAC); c1's veth is deleted
	// by hand and re-applied; c2 reaches c1 at once.
	e.tcp("c1", "c2", "10.55.66.2:80", "10.55.66.2:80")
	e.in("host", func() {
		l, _ := netlink.LinkByName("veth-c1")
		if err := netlink.LinkDel(l); err != nil {
			t.Fatal(err)
		}
	})
	e.mustApply()
	p := e.startPing("c2", "10.55.66.2", 10*time.Millisecond)
	p.waitSent(5)
	if sent, lost := p.stop(); sent < 3 || lost != 0 {
		t.Fatalf("ping right after the re-apply: %d sent, %d lost (a new MAC would leave c2's ARP cache wrong)", sent, lost)
	}
	e.destroy()
}

// TestNewPrimaryWithASecondaryKept: replacing an interface's primary
// address while a secondary of the subnet stays keeps the routes through
// it (the secondary goes first, the new address comes, the old primary
// goes and the kernel promotes the new one, the secondary comes back);
// making a kept address secondary to a new first one cannot be done
// without a moment with no address, and the plan adds the routes again.
func TestNewPrimaryWithASecondaryKept(t *testing.T) {
	base := engineLab(t)
	e := newEnv(t, "engine.yaml", []byte(base))
	e.mustApply()
	routes := e.watchRoutes("a1")
	replaced := edit(t, base, "addresses: [10.1.0.2/24, 10.1.0.12/24,", "addresses: [10.1.0.4/24, 10.1.0.12/24,")
	e.load("engine.yaml", []byte(replaced))
	e.mustApply()
	e.assertNoOp()
	if removed := routes.stop(); len(removed) > 0 {
		t.Fatalf("routes went away while the primary was replaced: %v", removed)
	}
	e.in("a1", func() {
		l, _ := netlink.LinkByName("eth0")
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 2 || addrs[0].IP.String() != "10.1.0.4" || addrs[0].Flags&unix.IFA_F_SECONDARY != 0 {
			t.Fatalf("10.1.0.4 should be the primary: %v", addrs)
		}
	})
	e.tcp("r", "a1", "10.1.0.1:80", "10.1.0.1:80")
	// 10.1.0.12 becomes second to a new first address: a rebuild.
	rebuilt := edit(t, replaced, "addresses: [10.1.0.4/24, 10.1.0.12/24,", "addresses: [10.1.0.5/24, 10.1.0.12/24,")
	rebuilt = edit(t, rebuilt, "10.1.0.5/24, 10.1.0.12/24,", "10.1.0.5/24, 10.1.0.4/24, 10.1.0.12/24,")
	e.load("engine.yaml", []byte(rebuilt))
	e.mustApply()
	e.assertNoOp()
	e.tcp("r", "a1", "10.1.0.1:81", "10.1.0.1:81")
	e.destroy()
}

// TestDottedInterfaceSysctls: the sysctls of an interface with a dot in
// its name (br.0) are written with a slash for it, as sysctl(8) does
// (net.ipv4.conf.br/0.forwarding is /proc/sys/net/ipv4/conf/br.0/forwarding):
// apply sets them there, set after the interface is made, and the next
// plan is empty; the same keys with the dots are refused with that hint.
func TestDottedInterfaceSysctls(t *testing.T) {
	src := `name: dots
namespaces:
  d1:
    sysctls:
      net.ipv4.conf.br/0.forwarding: "1"
      net.ipv4.conf.v/1.rp_filter: "2"
      net.ipv6.conf.v/1.disable_ipv6: "1"
      net.ipv4.neigh.v/1.gc_stale_time: "120"
  d2: {}
bridges:
  - {namespace: d1, name: br.0, addresses: [10.9.0.1/24]}
links:
  - a: {namespace: d1, name: v.1, bridge: br.0}
    b: {namespace: d2, name: eth0, addresses: [10.9.0.2/24]}
`
	e := newEnv(t, "dots.yaml", []byte(src))
	e.mustApply()
	e.in("d1", func() {
		for path, want := range map[string]string{
			"/proc/sys/net/ipv4/conf/br.0/forwarding":    "1",
			"/proc/sys/net/ipv4/conf/v.1/rp_filter":      "2",
			"/proc/sys/net/ipv6/conf/v.1/disable_ipv6":   "1",
			"/proc/sys/net/ipv4/neigh/v.1/gc_stale_time": "120",
			"/proc/sys/net/ipv4/conf/eth0/forwarding":    "", // no such interface in d1
		} {
			b, err := os.ReadFile(path)
			if got := strings.TrimSpace(string(b)); (want == "" && err == nil) || (want != "" && (err != nil || got != want)) {
				t.Errorf("%s in d1: %q, %v; want %q", path, got, err, want)
			}
		}
	})
	e.assertNoOp()
	e.tcp("d1", "d2", "10.9.0.1:80", "10.9.0.1:80")
	_, err := topology.Parse("dots.yaml", []byte(strings.Replace(src, "br/0.forwarding", "br.0.forwarding", 1)))
	if err == nil || !strings.Contains(err.Error(), `as sysctl(8) does (for interface "br.0": net.ipv4.conf.br/0.forwarding)`) {
		t.Errorf("br.0 written with its dot: %v", err)
	}
	e.destroy()
}

// TestFlushedSubnetRouteIsPutBack: `ip route flush all` in a lab
// namespace (and in the sandbox) takes the routes the kernel made for the
// lab's addresses; the lab's default route via the subnet then cannot be
// added ("network is unreachable": an outside audit saw every repair of a
// watch fail so, for ever). The plan adds the subnet's addresses again in
// the file's order, the kernel makes its route, and the default route
// follows; then the lab is as the file says, and a no-op plan is empty.
func TestFlushedSubnetRouteIsPutBack(t *testing.T) {
	src := []byte(`name: flush
namespaces:
  c1:
    routes: [{to: default, via: 10.55.66.1}]
bridges:
  - name: br0
    addresses: [10.55.66.1/24]
links:
  - a: {namespace: c1, name: eth0, addresses: [10.55.66.2/24, 10.55.66.9/24, 10.56.0.2/16]}
    b: {namespace: host, name: veth-c1, bridge: br0}
  - a: {namespace: c1, name: v6, addresses: ["fd66::2/64", "fd67::2/64"]}
    b: {namespace: host, name: v6-c1, addresses: ["fd66::1/64"]}
`)
	e := newEnv(t, "flush.yaml", src)
	e.mustApply()
	flush := func(short string) {
		e.in(short, func() {
			rs, err := netlink.RouteList(nil, netlink.FAMILY_V4)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				if err := netlink.RouteDel(&r); err != nil {
					t.Fatalf("delete %v: %v", r, err)
				}
			}
		})
	}
	flush("c1")
	flush("host")
	p := e.plan()
	var got []string
	for _, c := range p.Changes {
		got = append(got, c.Namespace+": "+string(c.Action)+" "+c.Describe())
	}
	text := strings.Join(got, "\n")
	for _, want := range []string{
		"c1: + address 10.55.66.2/24 on eth0 (again: the route to 10.55.66.0/24 the kernel makes for it was deleted)",
		"c1: + address 10.55.66.9/24 on eth0 (again: the route to 10.55.66.0/24 the kernel makes for it was deleted)",
		"c1: + address 10.56.0.2/16 on eth0 (again: the route to 10.56.0.0/16 the kernel makes for it was deleted)",
		"c1: + route default via 10.55.66.1",
		"host: + address 10.55.66.1/24 on br0 (again: the route to 10.55.66.0/24 the kernel makes for it was deleted)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the plan after the flush lacks %q:\n%s", want, text)
		}
	}
	e.mustApply()
	if p := e.plan(); !p.Empty() {
		t.Fatalf("after the repair the plan is not empty:\n%v", p.Changes)
	}
	// The kernel's routes are back, with the file's first address the
	// primary (the source of the subnet's route), and the lab works.
	e.in("c1", func() {
		rs, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
		var have []string
		for _, r := range rs {
			have = append(have, fmt.Sprintf("%v src %v proto %d", r.Dst, r.Src, r.Protocol))
		}
		for _, want := range []string{"10.55.66.0/24 src 10.55.66.2 proto 2", "10.56.0.0/16 src 10.56.0.2 proto 2"} {
			if !slices.Contains(have, want) {
				t.Errorf("c1's routes after the repair: %v, want %q", have, want)
			}
		}
	})
	e.tcp("host", "c1", "10.55.66.1:80", "10.55.66.1:80")

	// Someone else's address in the subnet (an outside audit: it kept
	// the repair from being planned at all): the lab's go and come
	// again, theirs stays, and the kernel promotes it to the primary.
	theirs, _ := netlink.ParseAddr("10.55.66.77/24")
	e.in("c1", func() {
		l, _ := netlink.LinkByName("eth0")
		if err := netlink.AddrAdd(l, theirs); err != nil {
			t.Fatal(err)
		}
	})
	flush("c1")
	warned := func(p *reconcile.Plan, want string) {
		t.Helper()
		if !strings.Contains(strings.Join(p.Warnings, "\n"), want) {
			t.Fatalf("the plan does not warn %q:\n%s", want, strings.Join(p.Warnings, "\n"))
		}
	}
	warned(e.plan(), `while the lab adds its addresses of 10.55.66.0/24 on eth0 in namespace "c1" again, the kernel makes 10.55.66.77/24, which the lab did not add, the primary`)
	e.mustApply()
	if p := e.plan(); !p.Empty() {
		t.Fatalf("after the repair beside someone else's address the plan is not empty:\n%v", p.Changes)
	}
	routeSrc := func() string {
		var src string
		e.in("c1", func() {
			rs, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
			for _, r := range rs {
				if r.Dst != nil && r.Dst.String() == "10.55.66.0/24" {
					src = r.Src.String()
				}
			}
		})
		return src
	}
	if src := routeSrc(); src != "10.55.66.77" {
		t.Fatalf("the subnet's route after the repair has source %q, want the promoted 10.55.66.77", src)
	}
	// Flushed again, with their address the primary: the lab cannot make
	// the route, and the plan says what can.
	flush("c1")
	warned(e.plan(), `the route to 10.55.66.0/24 that the kernel makes for 10.55.66.77/24, the subnet's primary address on eth0 in namespace "c1", which the lab did not add, was deleted: the lab neither adds nor removes that address; routes via 10.55.66.0/24 fail until it is back (ip route add 10.55.66.0/24 dev eth0 proto kernel scope link src 10.55.66.77)`)
	e.in("c1", func() {
		l, _ := netlink.LinkByName("eth0")
		_, sub, _ := net.ParseCIDR("10.55.66.0/24")
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: sub, Src: net.ParseIP("10.55.66.77"), Protocol: unix.RTPROT_KERNEL, Scope: netlink.SCOPE_LINK}); err != nil {
			t.Fatal(err)
		}
		if err := netlink.AddrDel(l, theirs); err != nil {
			t.Fatal(err)
		}
	})
	e.mustApply()

	// IPv6: a prefix route deleted by hand (the audit's "no route to
	// host" for ever): only that address goes and comes again.
	e.in("c1", func() {
		l, _ := netlink.LinkByName("v6")
		_, sub, _ := net.ParseCIDR("fd66::/64")
		if err := netlink.RouteDel(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: sub, Protocol: unix.RTPROT_KERNEL, Priority: 256}); err != nil {
			t.Fatal(err)
		}
	})
	got = nil
	for _, c := range e.plan().Changes {
		got = append(got, c.Namespace+": "+string(c.Action)+" "+c.Describe())
	}
	if want := []string{"c1: - address fd66::2/64 on v6", "c1: + address fd66::2/64 on v6 (again: the route to fd66::/64 the kernel makes for it was deleted)"}; len(got) != 2 || !strings.HasPrefix(got[0], want[0]) && !strings.HasPrefix(got[1], want[0]) || !slices.Contains(got, want[1]) {
		t.Fatalf("the plan after the IPv6 route's deletion:\n%s\nwant %q", strings.Join(got, "\n"), want)
	}
	e.mustApply()
	if p := e.plan(); !p.Empty() {
		t.Fatalf("after the IPv6 repair the plan is not empty:\n%v", p.Changes)
	}
	e.tcp("host", "c1", "[fd66::1]:80", "[fd66::1]:80")
	e.destroy()
}

// TestRepairKeepsRoutesWithTheAddressAsSource: the repair of a deleted
// subnet route deletes the lab's address and adds it again, and the kernel
// takes with an IPv4 address every route that names it as its source; such
// routes added by hand (any table, any interface) are there again after
// the repair (an outside audit: they went, unwarned).
func TestRepairKeepsRoutesWithTheAddressAsSource(t *testing.T) {
	src := []byte(`name: srcrt
namespaces:
  c1: {}
  c2: {}
links:
  - a: {namespace: c1, name: eth0, addresses: [10.57.0.2/24]}
    b: {namespace: c2, name: eth0, addresses: [10.57.0.3/24]}
  - a: {namespace: c1, name: eth1, addresses: [10.58.0.2/24]}
    b: {namespace: c2, name: eth1, addresses: [10.58.0.3/24]}
`)
	e := newEnv(t, "srcrt.yaml", src)
	e.mustApply()
	byHand := []string{"10.91.0.0/16 via 10.57.0.3 src 10.57.0.2 table 100", "10.92.0.0/16 via 10.58.0.3 src 10.57.0.2"}
	e.in("c1", func() {
		for _, r := range []*netlink.Route{
			{Dst: mustNet(t, "10.91.0.0/16"), Gw: net.ParseIP("10.57.0.3"), Src: net.ParseIP("10.57.0.2"), Table: 100},
			{Dst: mustNet(t, "10.92.0.0/16"), Gw: net.ParseIP("10.58.0.3"), Src: net.ParseIP("10.57.0.2")},
		} {
			if err := netlink.RouteAdd(r); err != nil {
				t.Fatalf("add %v: %v", r, err)
			}
		}
		// The subnet route of eth0's address, deleted by hand.
		rs, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Dst != nil && r.Dst.String() == "10.57.0.0/24" {
				if err := netlink.RouteDel(&r); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
	if p := e.plan(); !strings.Contains(p.String(), "+   address 10.57.0.2/24 on eth0 (again") {
		t.Fatalf("no repair planned:\n%v", p)
	}
	e.mustApply()
	e.in("c1", func() {
		all, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		var have []string
		for _, r := range all {
			if r.Gw != nil {
				s := fmt.Sprintf("%v via %v src %v", r.Dst, r.Gw, r.Src)
				if r.Table != unix.RT_TABLE_MAIN {
					s += fmt.Sprintf(" table %d", r.Table)
				}
				have = append(have, s)
			}
		}
		for _, want := range byHand {
			if !slices.Contains(have, want) {
				t.Errorf("after the repair, the route %q added by hand is gone; routes with a gateway: %v", want, have)
			}
		}
	})
	if p := e.plan(); !p.Empty() {
		t.Fatalf("after the repair the plan is not empty:\n%v", p)
	}
}

func mustNet(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFlushedLocalTableIsPutBack: `ip route flush table local` takes the
// local routes the kernel made for the lab's IPv4 addresses, and they no
// longer answer; plan saw nothing (an outside audit). The plan adds the
// subnet's addresses again in the file's order (the kernel makes the
// routes with them), and the lab answers again.
func TestFlushedLocalTableIsPutBack(t *testing.T) {
	src := []byte(`name: lflush
namespaces:
  c1: {}
  c2: {}
links:
  - a: {namespace: c1, name: eth0, addresses: [10.61.0.2/24, 10.61.0.9/24, 10.62.0.2/24]}
    b: {namespace: c2, name: eth0, addresses: [10.61.0.3/24, 10.62.0.3/24]}
  - a: {namespace: c1, name: eth1, addresses: [10.61.7.2/24], up: false}
    b: {namespace: c2, name: eth1}
`)
	e := newEnv(t, "lflush.yaml", src)
	e.mustApply()
	if p := e.plan(); !p.Empty() {
		t.Fatalf("a fresh lab plans changes:\n%v", p)
	}
	e.in("c1", func() {
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Dst != nil && strings.HasPrefix(r.Dst.IP.String(), "10.61.") {
				if err := netlink.RouteDel(&r); err != nil {
					t.Fatalf("delete %v: %v", r, err)
				}
			}
		}
	})
	e.tcpFails("c2", "10.61.0.9:80")
	p := e.plan()
	text := p.String()
	for _, want := range []string{
		"+   address 10.61.0.2/24 on eth0 (again: the local route of 10.61.0.2 (table local) the kernel makes was deleted)",
		"+   address 10.61.0.9/24 on eth0 (again: the local route of 10.61.0.2 (table local) the kernel makes was deleted)",
		// On a link that is down too: the kernel keeps the local routes
		// of its addresses, and the address answers on the others (an
		// outside audit).
		"+   address 10.61.7.2/24 on eth1 (again: the local route of 10.61.7.2 (table local) the kernel makes was deleted)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the plan after the flush lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "10.62.0.2") {
		t.Errorf("the plan touches the other subnet, whose routes are there:\n%s", text)
	}
	e.mustApply()
	if p := e.plan(); !p.Empty() {
		t.Fatalf("after the repair the plan is not empty:\n%v", p)
	}
	e.tcp("c1", "c2", "10.61.0.9:80", "10.61.0.9:80")
	e.tcp("c1", "c2", "10.61.0.2:80", "10.61.0.2:80")
	e.in("c1", func() {
		rs, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
		for _, r := range rs {
			if r.Dst != nil && r.Dst.String() == "10.61.0.0/24" && r.Src.String() != "10.61.0.2" {
				t.Errorf("the subnet's primary after the repair is %v, want the file's first, 10.61.0.2", r.Src)
			}
		}
	})
}

// TestRouteFollowsItsGatewaysSubnet: a route via a gateway, without dev:,
// goes through the interface the kernel picked when it was added; an edit
// that moves the gateway's subnet to another interface left it on the old
// one (traffic on the wrong wire), and plan and show saw nothing (an
// outside audit). The plan replaces it, and the kernel picks again.
func TestRouteFollowsItsGatewaysSubnet(t *testing.T) {
	lab := func(a, b, a6, b6 string) []byte {
		return []byte(fmt.Sprintf(`name: gwsub
namespaces:
  n1:
    routes:
      - {to: 10.50.0.0/16, via: 192.168.5.2}
      - {to: "fd99::/64", via: "fd05::2"}
  n2: {}
  n3: {}
links:
  - a: {namespace: n1, name: u0, addresses: [%s.1/24, "%s::1/64"]}
    b: {namespace: n2, name: u0, addresses: [%s.2/24, "%s::2/64"]}
  - a: {namespace: n1, name: u1, addresses: [%s.1/24, "%s::1/64"]}
    b: {namespace: n3, name: u1, addresses: [%s.2/24, "%s::2/64"]}
`, a, a6, a, a6, b, b6, b, b6))
	}
	e := newEnv(t, "gwsub.yaml", lab("192.168.5", "192.168.6", "fd05", "fd06"))
	e.mustApply()
	e.load("gwsub.yaml", lab("192.168.6", "192.168.5", "fd06", "fd05"))
	e.mustApply()
	if p := e.plan(); !p.Empty() {
		t.Fatalf("after the edit the plan is not empty:\n%v", p)
	}
	e.routesThrough("n1", "u1", "10.50.0.0/16", "fd99::/64")
}

// routesThrough fails the test unless each route to dsts in namespace ns
// is one, through interface ifname.
func (e *env) routesThrough(ns, ifname string, dsts ...string) {
	e.t.Helper()
	e.in(ns, func() {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, dst := range dsts {
			rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Dst: mustNet(e.t, dst)}, netlink.RT_FILTER_DST)
			if err != nil || len(rs) != 1 || rs[0].LinkIndex != l.Attrs().Index {
				e.t.Fatalf("route %s in %s: %v %v, want one, through %s (index %d)", dst, ns, rs, err, ifname, l.Attrs().Index)
			}
		}
	})
}

// TestRouteMovesOffAVethThatGoesWithItsPeersNamespace: the route moves to
// a new interface in the same apply that removes the namespace of its old
// interface's peer; the old interface goes when the kernel gets to it,
// after the namespace's deletion returns, and the new route's add failed
// with "file exists", every time (an outside audit). It replaces it.
func TestRouteMovesOffAVethThatGoesWithItsPeersNamespace(t *testing.T) {
	before := []byte(`name: dying
namespaces:
  n1:
    routes:
      - {to: 10.60.0.0/24, dev: u0}
      - {to: 10.61.0.0/16, via: 192.168.7.2}
  n2: {}
  n3: {}
links:
  - a: {namespace: n1, name: u0, addresses: [192.168.7.1/24]}
    b: {namespace: n3, name: u0, addresses: [192.168.7.2/24]}
`)
	e := newEnv(t, "dying.yaml", before)
	e.mustApply()
	e.load("dying.yaml", []byte(`name: dying
namespaces:
  n1:
    routes:
      - {to: 10.60.0.0/24, dev: u9}
      - {to: 10.61.0.0/16, via: 192.168.7.2}
  n2: {}
links:
  - a: {namespace: n1, name: u9, addresses: [192.168.7.1/24]}
    b: {namespace: n2, name: u0, addresses: [192.168.7.2/24]}
`))
	for i := 0; i < 3; i++ {
		e.mustApply()
		if p := e.plan(); !p.Empty() {
			t.Fatalf("after the move the plan is not empty:\n%v", p)
		}
		e.routesThrough("n1", "u9", "10.60.0.0/24", "10.61.0.0/16")
		if i < 2 {
			// Again, from the old file: n3 comes back, then goes again.
			cur := e.topo
			e.load("dying.yaml", before)
			e.mustApply()
			e.topo = cur
		}
	}
}

// TestMetricChangeWhileTheKernelDropsTheOldRoute: a route's metric changes
// in the same edit that makes the kernel drop the old route (its address
// added again first, its link renamed); IPv4 reads metric 0 in a delete as
// any metric, and the old route's delete took the new one (an outside
// audit: apply failed, no route left). Both a default route and another.
func TestMetricChangeWhileTheKernelDropsTheOldRoute(t *testing.T) {
	lab := func(metric, addrs, name string) []byte {
		return []byte(fmt.Sprintf(`name: metric
namespaces:
  n1:
    routes:
      - {to: 10.50.0.0/16, via: 192.168.5.2%[1]s}
      - {to: default, via: 192.168.5.2%[1]s}
  n2: {}
links:
  - a: {namespace: n1, name: %[3]s, addresses: [%[2]s]}
    b: {namespace: n2, name: u0, addresses: [192.168.5.2/24]}
`, metric, addrs, name))
	}
	for _, c := range []struct{ what, metric, addrs, name string }{
		{"a metric alone (the old routes are there to delete)", ", metric: 200", "192.168.5.11/24", "u0"},
		{"a primary put first", ", metric: 200", "192.168.5.1/24, 192.168.5.11/24", "u0"},
		{"a rename", ", metric: 100", "192.168.5.11/24", "u9"},
		{"back to metric 0 with a rename", "", "192.168.5.11/24", "u8"},
	} {
		from := ""
		if c.metric == "" {
			from = ", metric: 100"
		}
		e := newEnv(t, "metric.yaml", lab(from, "192.168.5.11/24", "u0"))
		e.mustApply()
		e.load("metric.yaml", lab(c.metric, c.addrs, c.name))
		e.mustApply()
		if p := e.plan(); !p.Empty() {
			t.Fatalf("%s: after the edit the plan is not empty:\n%v", c.what, p)
		}
		e.in("n1", func() {
			rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: linux.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
			if err != nil || len(rs) != 2 {
				t.Fatalf("%s: the lab's routes after the edit: %v %v, want 2", c.what, rs, err)
			}
		})
	}
}

// TestPassthruMacvlanRenamedAndMoved: a passthru macvlan takes its parent
// alone; renamed, or moved to another namespace, the new one was made
// before the old one went, and the kernel refused it (EINVAL), every time
// (an outside audit). The old one goes first.
func TestPassthruMacvlanRenamedAndMoved(t *testing.T) {
	lab := func(name, ns string) []byte {
		return []byte(fmt.Sprintf(`name: ptmv
namespaces:
  n1: {}
  n2: {}
  n3: {}
links:
  - a: {namespace: n1, name: u0}
    b: {namespace: n1, name: u1}
macvlans:
  - {name: %s, namespace: %s, parent: "n1:u0", mode: passthru, addresses: [192.168.5.40/24]}
`, name, ns))
	}
	e := newEnv(t, "ptmv.yaml", lab("mv1", "n2"))
	e.mustApply()
	for _, step := range []struct{ name, ns string }{{"mv0", "n2"}, {"mv0", "n3"}, {"mv1", "n2"}} {
		e.load("ptmv.yaml", lab(step.name, step.ns))
		e.mustApply()
		if p := e.plan(); !p.Empty() {
			t.Fatalf("%s in %s: after apply the plan is not empty:\n%v", step.name, step.ns, p)
		}
		e.in(step.ns, func() {
			if _, err := netlink.LinkByName(step.name); err != nil {
				t.Fatalf("%s in %s: %v", step.name, step.ns, err)
			}
		})
	}
	// Out of passthru while its parent is renamed: it was listed twice
	// (the parent's new name in place, and a replace), and the update
	// came after the replace had deleted it (an outside audit).
	e.load("ptmv.yaml", []byte(strings.NewReplacer("u0", "u9", "passthru", "private").Replace(string(lab("mv1", "n2")))))
	if p := e.plan(); strings.Count(p.String(), "macvlan mv1") != 1 {
		t.Fatalf("the plan lists the macvlan more than once:\n%v", p)
	}
	e.mustApply()
	if p := e.plan(); !p.Empty() {
		t.Fatalf("out of passthru on a renamed parent: after apply the plan is not empty:\n%v", p)
	}
}

// TestPlanShowsTheIPv6MTUSetAgainWhenIPv6ComesOn: an interface's IPv6 MTU
// set by the file while IPv6 is off is reset by the kernel when IPv6 comes
// on; apply set it again in a second pass the plan had not shown (an
// outside audit). The plan shows it, and apply does exactly the plan.
func TestPlanShowsTheIPv6MTUSetAgainWhenIPv6ComesOn(t *testing.T) {
	lab := func(addrs string) []byte {
		return []byte(`name: v6mtu
namespaces:
  n1:
    sysctls:
      net.ipv6.conf.u0.mtu: "1300"
  n2: {}
links:
  - a: {namespace: n1, name: u0, addresses: [` + addrs + `]}
    b: {namespace: n2, name: u0}
`)
	}
	e := newEnv(t, "v6mtu.yaml", lab("192.168.5.1/24"))
	e.mustApply()
	e.load("v6mtu.yaml", lab(`192.168.5.1/24, "fd05::1/64"`))
	var planned []string
	for _, c := range e.plan().Changes {
		planned = append(planned, c.Namespace+": "+string(c.Action)+" "+c.Describe())
	}
	if !slices.ContainsFunc(planned, func(s string) bool { return strings.Contains(s, "sysctl net.ipv6.conf.u0.mtu") }) {
		t.Fatalf("the plan does not set u0's IPv6 MTU again:\n%s", strings.Join(planned, "\n"))
	}
	var done []string
	if _, err := e.k.EnsureHost(); err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Reconcile(context.Background(), e.k, e.desired(), reconcile.ExecOptions{OnChange: func(c *reconcile.Change, err error) {
		done = append(done, c.Namespace+": "+string(c.Action)+" "+c.Describe())
	}}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(planned)
	slices.Sort(done)
	if !slices.Equal(planned, done) {
		t.Fatalf("apply did other than the plan:\nplanned:\n%s\ndone:\n%s", strings.Join(planned, "\n"), strings.Join(done, "\n"))
	}
	e.in("n1", func() {
		b, err := os.ReadFile("/proc/sys/net/ipv6/conf/u0/mtu")
		if err != nil || strings.TrimSpace(string(b)) != "1300" {
			t.Fatalf("u0's IPv6 MTU after apply: %q %v", b, err)
		}
	})
}

// TestPrimaryWithAllPromoteSecondariesOff: a lab's namespace gives its
// interfaces promote_secondaries 1 ("default" is 1 there), so with
// "all" set to 0 the kernel still promotes a secondary when the primary
// goes; the plan thought not, and left the wrong primary (the randomized
// test). The file's first address is the primary after the edit, and an
// interface of its own 0 (set by the file) is rebuilt in order.
func TestPrimaryWithAllPromoteSecondariesOff(t *testing.T) {
	lab := func(addrs, own string) []byte {
		return []byte(`name: prom
namespaces:
  n3: {sysctls: {net.ipv4.conf.all.promote_secondaries: "0"` + own + `}}
  n1: {}
links:
  - a: {namespace: n3, name: e5, addresses: [` + addrs + `]}
    b: {namespace: n1, name: e13, addresses: ["10.13.0.2/24"]}
`)
	}
	for _, own := range []string{"", `, net.ipv4.conf.e5.promote_secondaries: "0"`} {
		e := newEnv(t, "prom.yaml", lab(`"10.13.0.1/24", "10.13.0.11/24"`, own))
		e.mustApply()
		e.load("prom.yaml", lab(`"10.13.0.21/24", "10.13.0.11/24"`, own))
		e.mustApply()
		if p := e.plan(); !p.Empty() {
			t.Fatalf("promote_secondaries of e5 %q: after the edit the plan is not empty:\n%v", own, p)
		}
		e.in("n3", func() {
			l, err := netlink.LinkByName("e5")
			if err != nil {
				t.Fatal(err)
			}
			as, err := netlink.AddrList(l, netlink.FAMILY_V4)
			if err != nil || len(as) != 2 || as[0].IP.String() != "10.13.0.21" || as[0].Flags&unix.IFA_F_SECONDARY != 0 {
				t.Fatalf("promote_secondaries of e5 %q: e5's addresses %v %v, want 10.13.0.21 the primary", own, as, err)
			}
		})
	}
}

// TestGatewayOnADevRoutesPrefix: a gateway reached through a route of the
// file with dev: and no gateway (validate takes that prefix as on-link)
// was added before that route, and the kernel refused it, every time (an
// outside audit). It is added after.
func TestGatewayOnADevRoutesPrefix(t *testing.T) {
	e := newEnv(t, "gwdev.yaml", []byte(`name: gwdev
namespaces:
  c:
    routes:
      - {to: 10.98.1.0/24, via: 172.31.0.1, dev: eth0}
      - {to: 10.98.2.0/24, via: 172.31.0.1}
      - {to: 172.16.0.0/12, dev: eth0}
links:
  - a: {namespace: c, name: eth0, addresses: [10.72.0.2/24]}
    b: {namespace: host, name: vc, addresses: [10.72.0.1/24]}
`))
	e.mustApply()
	if p := e.plan(); !p.Empty() {
		t.Fatalf("after apply the plan is not empty:\n%v", p)
	}
}
