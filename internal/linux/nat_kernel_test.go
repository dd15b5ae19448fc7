package linux

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// TestCompiledNATRoundTrips: every kind of rule, written to the kernel and
// read back, is what CompileNAT makes, so observation can tell a rule
// edited by hand from one of ours.
func TestCompiledNATRoundTrips(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a throwaway network namespace)")
	}
	var fd netns.NsHandle
	if err := inNetnsNew(func(f netns.NsHandle) { fd = f }); err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	c, _ := nftables.New(nftables.WithNetNSFd(int(fd)))
	tb := c.AddTable(&nftables.Table{Name: "x", Family: nftables.TableFamilyINet})
	chains := natChains(tb)
	for _, n := range []string{chainPre, chainOut, chainPost} {
		c.AddChain(chains[n])
	}
	var comp []compiledRule
	for _, r := range []*reconcile.NATRule{{Kind: reconcile.NATPortForward, Proto: "tcp", Port: 8080, To: "10.10.0.2:80", In: "wan"},
		{Kind: reconcile.NATSNAT, Source: "10.0.0.0/8", To: "1.2.3.4", Out: "x"}, {Kind: reconcile.NATMasquerade, Source: "fd00::/64", NotOut: "y"},
		{Kind: reconcile.NATPortForward, Proto: "udp", Port: 53, To: "[fd00::2]:53"}} {
		cc, _ := CompileNAT(r)
		comp = append(comp, cc...)
	}
	for _, cr := range comp {
		c.AddRule(&nftables.Rule{Table: tb, Chain: chains[cr.chain], Exprs: cr.exprs})
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, cr := range comp {
		rules, _ := c.GetRules(tb, chains[cr.chain])
		var got *nftables.Rule
		for _, r := range rules {
			if len(r.Exprs) == len(cr.exprs) && sameExprs(r.Exprs, cr.exprs) {
				got = r
			}
		}
		if got == nil {
			for _, r := range rules {
				for i, e := range cr.exprs {
					if i >= len(r.Exprs) {
						break
					}
					a, _ := expr.Marshal(byte(nftables.TableFamilyINet), e)
					b, _ := expr.Marshal(byte(nftables.TableFamilyINet), r.Exprs[i])
					if string(a) != string(b) {
						t.Logf("%s expression %d: compiled %#v, kernel %#v", cr.chain, i, e, r.Exprs[i])
					}
				}
			}
			t.Errorf("no rule in chain %s reads back as compiled: %s", cr.chain, fmt.Sprint(cr.exprs))
		}
	}
}

// TestNATTableFlushedByHandStaysTheLabs, against the kernel: the lab's
// table (its name is the lab's name and prefix) with its marker flushed
// (nft flush chain ... owner), or all of it flushed (nft flush table), is
// still the lab's: the plan repairs it, the marker comes back, destroy
// removes it (an outside audit: the lab was locked out of its own table
// for good, and destroy left it, exit 0).
func TestNATTableFlushedByHandStaysTheLabs(t *testing.T) {
	k, want, c, tb := natLab(t, "natflush")
	ctx := context.Background()
	flush := func(chains ...string) {
		t.Helper()
		for _, ch := range chains {
			c.FlushChain(&nftables.Chain{Name: ch, Table: tb})
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	flush(chainOwner)
	if p := planNow(t, k, want); len(p.Conflicts) > 0 || !strings.Contains(p.String(), "the lab's table: its owner marker is gone") {
		t.Fatalf("the marker flushed: want it put back, got\n%v", p)
	}
	flush(chainOwner, chainPre, chainOut, chainPost)
	p := planNow(t, k, want)
	if len(p.Conflicts) > 0 || !strings.Contains(p.String(), "+   nat masquerade") {
		t.Fatalf("the table flushed: want the rule made again, got\n%v", p)
	}
	if _, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := k.natState(c)
	if err != nil || st.unmarked || st.foreign || len(st.rules) == 0 {
		t.Fatalf("after apply: %+v %v", st, err)
	}
	if _, err := reconcile.Reconcile(ctx, k, reconcile.Nothing(), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	if tables, _ := c.ListTables(); slices.ContainsFunc(tables, func(x *nftables.Table) bool { return x.Name == k.TableName() }) {
		t.Fatal("destroy left the lab's table")
	}
	// A table by that name with a chain the lab never makes is someone
	// else's: a conflict, not taken over (an outside audit).
	other := c.AddTable(tb)
	c.AddChain(&nftables.Chain{Name: "mine", Table: other})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.DelTable(tb); c.Flush() }()
	if p := planNow(t, k, want); len(p.Conflicts) != 1 || !strings.Contains(p.Conflicts[0], "is not this lab's") {
		t.Fatalf("a table of someone else's by the lab's name: want a conflict, got\n%v", p)
	}
}

// TestNATTableChangedByHandIsPutBack, against the kernel: the lab's table
// with its owner chain deleted, or a chain's policy set to drop, is
// repaired by the next plan (an outside audit: the marker stayed gone, and
// further edits locked the lab out); a stranger's table by the lab's name
// whose chains are not the lab's kind (filter, policy drop) is a conflict,
// not taken over.
func TestNATTableChangedByHandIsPutBack(t *testing.T) {
	k, want, c, tb := natLab(t, "natfix")
	ctx := context.Background()
	drop := nftables.ChainPolicyDrop
	for _, hand := range []func(){
		func() { c.DelChain(&nftables.Chain{Name: chainOwner, Table: tb}) },
		func() {
			ch := natChains(tb)[chainPost]
			ch.Policy = &drop
			c.AddChain(ch)
		},
	} {
		hand()
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		if p := planNow(t, k, want); p.Empty() || len(p.Conflicts) > 0 || !strings.Contains(p.String(), "the lab's table: its") {
			t.Fatalf("a change by hand to the lab's table: want it put back, got\n%v", p)
		}
		if _, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{}); err != nil {
			t.Fatal(err)
		}
		if p := planNow(t, k, want); !p.Empty() {
			t.Fatalf("after the repair:\n%v", p)
		}
	}
	if _, err := reconcile.Reconcile(ctx, k, reconcile.Nothing(), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	// A stranger's table by that name, its chains of another kind.
	other := c.AddTable(tb)
	c.AddChain(&nftables.Chain{Name: chainPost, Table: other, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.DelTable(tb); c.Flush() }()
	if p := planNow(t, k, want); len(p.Conflicts) != 1 || !strings.Contains(p.Conflicts[0], "is not this lab's") {
		t.Fatalf("a stranger's table by the lab's name: want a conflict, got\n%v", p)
	}
}

// natLab applies a lab of name with a masquerade in the sandbox and
// returns it, what it wants, an nftables connection to the sandbox and
// the lab's table there.
func natLab(t *testing.T, name string) (*Kernel, *reconcile.State, *nftables.Conn, *nftables.Table) {
	t.Helper()
	k := kernelFor(t, name)
	want := desiredOf(t, "name: "+name+"\nnamespaces:\n  host:\n    sysctls: {net.ipv4.ip_forward: \"1\"}\n  c1: {}\nlinks:\n  - a: {namespace: c1, name: eth0, addresses: [10.5.0.2/24]}\n    b: {namespace: host, name: v0, addresses: [10.5.0.1/24]}\nnat:\n  - {namespace: host, masquerade: {source: 10.5.0.0/24}}\n")
	if _, err := reconcile.Reconcile(context.Background(), k, want, reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	fd, err := k.OpenNetns(reconcile.HostNS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	c, err := nftables.New(nftables.WithNetNSFd(int(fd)))
	if err != nil {
		t.Fatal(err)
	}
	return k, want, c, &nftables.Table{Name: k.TableName(), Family: nftables.TableFamilyINet}
}
