package linux

import (
	"fmt"
	"os"
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
