package live

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

const natLab = `name: natlab
namespaces:
  router:
    sysctls: {net.ipv4.ip_forward: "1"}
  lan1:
    routes: [{to: default, via: 10.10.0.1}]
  lan2:
    routes: [{to: default, via: 10.10.0.1}]
  internet: {}
bridges:
  - {name: br-lan, namespace: router, addresses: [10.10.0.1/24]}
links:
  - a: {namespace: lan1, name: eth0, addresses: [10.10.0.2/24]}
    b: {namespace: router, name: veth-lan1, bridge: br-lan}
  - a: {namespace: lan2, name: eth0, addresses: [10.10.0.3/24]}
    b: {namespace: router, name: veth-lan2, bridge: br-lan}
  - a: {namespace: router, name: wan, addresses: [198.51.100.1/24]}
    b: {namespace: internet, name: eth0, addresses: [198.51.100.2/24]}
nat:
  - namespace: router
    masquerade: {source: 10.10.0.0/24, out: wan}
  - namespace: router
    port_forward: {proto: tcp, port: 8080, to: "10.10.0.2:80", in: wan}
`

// nftRules lists a namespace's rules of the lab's table: comment ->
// handles (a port forward has two).
func (e *env) nftRules(short string) map[string][]uint64 {
	e.t.Helper()
	out := map[string][]uint64{}
	for _, chain := range reconcile.NATChainOrder {
		for _, r := range e.chainRules(short, chain) {
			i := strings.LastIndex(r, "@")
			h, _ := strconv.ParseUint(r[i+1:], 10, 64)
			comment := e.k.Mark() + " " + r[:i]
			out[comment] = append(out[comment], h)
		}
	}
	return out
}

func (e *env) tables(short string) []string {
	e.t.Helper()
	var names []string
	e.in(short, func() {
		c, err := nftables.New()
		if err != nil {
			e.t.Fatal(err)
		}
		ts, err := c.ListTables()
		if err != nil {
			e.t.Fatal(err)
		}
		for _, t := range ts {
			names = append(names, t.Name)
		}
	})
	return names
}

// addForeignTable makes a table another owner (a firewall) would, with a
// forward chain whose policy drops, as Docker's.
func (e *env) addForeignTable(short string) {
	e.t.Helper()
	e.in(short, func() {
		c, err := nftables.New()
		if err != nil {
			e.t.Fatal(err)
		}
		t := c.AddTable(&nftables.Table{Name: "firewall", Family: nftables.TableFamilyIPv4})
		drop := nftables.ChainPolicyDrop
		c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
		if err := c.Flush(); err != nil {
			e.t.Fatal(err)
		}
	})
}

func TestNAT(t *testing.T) {
	e := newEnv(t, "natlab.yaml", []byte(natLab))
	e.mustApply()

	// Masquerade: the internet sees lan1 as the router's outside address.
	if from := e.tcp("internet", "lan1", "198.51.100.2:9000", "198.51.100.2:9000"); !strings.HasPrefix(from, "198.51.100.1:") {
		t.Fatalf("internet saw lan1's connection from %s, want the router's 198.51.100.1", from)
	}
	// Port forward: internet -> router:8080 reaches lan1:80, from the client's own address.
	if from := e.tcp("lan1", "internet", "10.10.0.2:80", "198.51.100.1:8080"); !strings.HasPrefix(from, "198.51.100.2:") {
		t.Fatalf("lan1 saw the forwarded connection from %s", from)
	}
	// ... and from the router's own namespace (output chain).
	e.tcp("lan1", "router", "10.10.0.2:80", "198.51.100.1:8080")
	// lan2 goes out masqueraded too.
	if from := e.tcp("internet", "lan2", "198.51.100.2:9001", "198.51.100.2:9001"); !strings.HasPrefix(from, "198.51.100.1:") {
		t.Fatalf("internet saw lan2 from %s", from)
	}
	e.assertNoOp()

	// Comments say where each rule came from.
	rules := e.nftRules("router")
	mark := e.k.Mark()
	masq := mark + " masquerade 10.10.0.0/24 out wan"
	fwd := mark + " port_forward tcp 8080 to 10.10.0.2:80 in wan"
	if len(rules[masq]) != 1 || len(rules[fwd]) != 2 || len(rules) != 2 {
		t.Fatalf("rules in the kernel: %v", rules)
	}

	// Change one rule: the plan says exactly that, the other keeps its handle.
	src := strings.Replace(natLab, "port: 8080", "port: 8081", 1)
	e.load("natlab.yaml", []byte(src))
	p := e.plan()
	var got []string
	for _, c := range p.Changes {
		got = append(got, string(c.Action)+" "+c.Namespace+" "+c.Describe())
	}
	want := "+ router nat port_forward tcp 8081 to 10.10.0.2:80 in wan\n- router nat port_forward tcp 8080 to 10.10.0.2:80 in wan"
	if strings.Join(got, "\n") != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
	e.mustApply()
	after := e.nftRules("router")
	if len(after[masq]) != 1 || after[masq][0] != rules[masq][0] {
		t.Fatalf("the unchanged masquerade rule was touched: handles %v -> %v", rules[masq], after[masq])
	}
	e.tcp("lan1", "internet", "10.10.0.2:80", "198.51.100.1:8081")
	e.tcpFails("internet", "198.51.100.1:8080")

	// Without masquerade, lan1's connection cannot come back: it fails.
	src = strings.Replace(src, "  - namespace: router\n    masquerade: {source: 10.10.0.0/24, out: wan}\n", "", 1)
	e.load("natlab.yaml", []byte(src))
	e.mustApply()
	e.tcpFails("lan1", "198.51.100.2:9000")

	// A foreign table beside ours; then all NAT goes from the file: our
	// table goes, the foreign one stays, and the plan warns about its drop
	// policy only while the lab has NAT there.
	e.addForeignTable("router")
	if w := strings.Join(e.plan().Warnings, "\n"); !strings.Contains(w, "chain forward in table ip firewall drops forwarded packets") {
		t.Fatalf("no warning about the foreign drop policy: %q", w)
	}
	src = src[:strings.Index(src, "nat:\n")]
	e.load("natlab.yaml", []byte(src))
	e.mustApply()
	if ts := e.tables("router"); len(ts) != 1 || ts[0] != "firewall" {
		t.Fatalf("tables in router after NAT was removed: %v", ts)
	}
	e.destroy()
	e.assertGone()
}

func TestNATWarnsWithoutForwarding(t *testing.T) {
	src := strings.Replace(natLab, `    sysctls: {net.ipv4.ip_forward: "1"}`, "", 1)
	e := newEnv(t, "natlab.yaml", []byte(src))
	p := e.plan()
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], `namespace "router" has NAT rules but net.ipv4.ip_forward is "0"`) {
		t.Fatalf("warnings: %q", p.Warnings)
	}
}

// TestNATExampleDestroyKeepsForeignTable: NAT in the host role (the
// sandbox): destroy removes the lab's table and nothing else.
func TestNATExampleDestroyKeepsForeignTable(t *testing.T) {
	e := newEnv(t, "../../examples/nat.yaml", nil)
	e.mustApply()
	e.addForeignTable("host")
	if ts := e.tables("host"); len(ts) != 2 {
		t.Fatalf("tables: %v", ts)
	}
	e.destroy()
	if ts := e.tables("host"); len(ts) != 1 || ts[0] != "firewall" {
		t.Fatalf("tables after destroy: %v", ts)
	}
	// The sandbox holds a foreign table, so destroy kept the sandbox.
	obs, err := e.k.Observe(t.Context(), reconcile.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if h := obs.NS(reconcile.HostNS); len(h.Links) != 0 || len(h.NAT) != 0 {
		t.Fatalf("the lab left something in the sandbox: %+v", h)
	}
	e.assertGone(e.sandbox)
}
