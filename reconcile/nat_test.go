package reconcile_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/reconcile/fake"
)

const natBase = `
name: lab
namespaces:
  host:
    sysctls: {net.ipv4.ip_forward: "1"}
  c1: {}
links:
  - endpoints: ["c1:eth0", "host:veth-c1"]
nat:
  - masquerade: {source: 192.168.88.5/24, not_out: br0}
  - snat: {source: 10.1.0.0/24, to: 203.0.113.5, out: eth0}
  - port_forward: {proto: tcp, port: 8080, to: "10.55.66.2:80", in: eth0}
`

func TestNATPlans(t *testing.T) {
	k := fake.New("lab")
	res := apply(t, k, parse(t, natBase))
	var lines []string
	for _, c := range res.Plan.Changes {
		if c.Kind == reconcile.KindNAT {
			lines = append(lines, string(c.Action)+" "+c.Namespace+" "+c.Describe())
		}
	}
	want := `+ host nat masquerade 192.168.88.0/24 !br0
+ host nat snat 10.1.0.0/24 to 203.0.113.5 out eth0
+ host nat port_forward tcp 8080 to 10.55.66.2:80 in eth0`
	if strings.Join(lines, "\n") != want {
		t.Fatalf("create:\n%s\nwant:\n%s", strings.Join(lines, "\n"), want)
	}
	for name, c := range map[string]struct{ from, to, want string }{
		"add one": {"nat:\n", "nat:\n  - port_forward: {proto: udp, port: 53, to: \"10.55.66.3:53\"}\n",
			"+ host nat port_forward udp 53 to 10.55.66.3:53"},
		"change one": {"port: 8080", "port: 8081",
			"+ host nat port_forward tcp 8081 to 10.55.66.2:80 in eth0\n- host nat port_forward tcp 8080 to 10.55.66.2:80 in eth0"},
		"delete one": {"  - snat: {source: 10.1.0.0/24, to: 203.0.113.5, out: eth0}\n", "",
			"- host nat snat 10.1.0.0/24 to 203.0.113.5 out eth0"},
	} {
		t.Run(name, func(t *testing.T) {
			got := planLinesFrom(t, natBase, strings.Replace(natBase, c.from, c.to, 1))
			if strings.Join(got, "\n") != c.want {
				t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), c.want)
			}
		})
	}
}

func TestNATBatchIsAtomic(t *testing.T) {
	k := fake.New("lab")
	apply(t, k, parse(t, natBase))
	before := dumpJSON(k.W.Dump("lab"))
	edited := strings.Replace(strings.Replace(natBase, "port: 8080", "port: 9090", 1), "to: 203.0.113.5", "to: 203.0.113.6", 1)
	fk := &reconcile.FailingKernel{Kernel: k, N: 1, Err: context.DeadlineExceeded}
	res, err := reconcile.Reconcile(context.Background(), fk, parse(t, edited), reconcile.ExecOptions{})
	if err == nil || !res.RolledBack {
		t.Fatalf("want a failed, rolled back apply: %v", err)
	}
	if after := dumpJSON(k.W.Dump("lab")); after != before {
		t.Fatalf("a failed NAT batch changed the kernel:\n%s\n%s", before, after)
	}
}

func TestNATWarnings(t *testing.T) {
	k := fake.New("lab")
	// The sandbox's own interfaces that the rules name.
	for _, n := range []string{"br0", "eth0"} {
		k.W.AddForeignLink("host", &reconcile.Link{Name: n, Kind: "device", Up: true, MTU: 1500})
	}
	noFwd := strings.Replace(natBase, `    sysctls: {net.ipv4.ip_forward: "1"}`+"\n", "", 1)
	p := plan(t, k, parse(t, noFwd))
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], `namespace "host" has NAT rules but net.ipv4.ip_forward is "0"`) {
		t.Fatalf("warnings: %q", p.Warnings)
	}
	k.W.SetForwardDrop("host", "chain FORWARD in table ip filter")
	p = plan(t, k, parse(t, natBase))
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "chain FORWARD in table ip filter drops forwarded packets") ||
		!strings.Contains(p.Warnings[0], "iptables --policy FORWARD ACCEPT") {
		t.Fatalf("warnings: %q", p.Warnings)
	}
	if !strings.Contains(p.String(), "warning: namespace \"host\": chain FORWARD") {
		t.Fatalf("the text plan does not show the warning:\n%s", p)
	}
}

func TestNATIDRoundTrip(t *testing.T) {
	for _, r := range []*reconcile.NATRule{
		{Kind: reconcile.NATMasquerade, Source: "10.0.0.0/8"},
		{Kind: reconcile.NATMasquerade, Source: "10.0.0.0/8", Out: "eth0"},
		{Kind: reconcile.NATMasquerade, Source: "fd00::/64", NotOut: "br0"},
		{Kind: reconcile.NATSNAT, Source: "10.1.0.0/24", To: "203.0.113.5", Out: "eth0"},
		{Kind: reconcile.NATPortForward, Proto: "udp", Port: 53, To: "[fd00::2]:53", In: "wan"},
		{Kind: reconcile.NATPortForward, Proto: "tcp", Port: 8080, To: "10.0.0.2:80"},
	} {
		back, err := reconcile.ParseNATID(r.ID())
		if err != nil || back.ID() != r.ID() {
			t.Errorf("%q: %v %+v", r.ID(), err, back)
		}
	}
	for _, bad := range []string{"", "masquerade", "dnat 1.2.3.4", "snat 10.0.0.0/8 from x", "port_forward tcp x to y"} {
		if _, err := reconcile.ParseNATID(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestNATNamesNoInterface: a rule whose out:, not_out: or in: names no
// interface of its namespace is a warning (a typo matches nothing).
func TestNATNamesNoInterface(t *testing.T) {
	k := fake.New("lab")
	k.W.AddForeignLink("host", &reconcile.Link{Name: "br0", Kind: "device", Up: true, MTU: 1500})
	p := plan(t, k, parse(t, natBase))
	var got []string
	for _, w := range p.Warnings {
		if strings.Contains(w, "which the namespace has not") {
			got = append(got, w)
		}
	}
	if len(got) != 2 || !strings.Contains(got[0], "port_forward tcp 8080 to 10.55.66.2:80 in eth0") && !strings.Contains(strings.Join(got, "\n"), "it names interface eth0") {
		t.Fatalf("warnings: %q", p.Warnings)
	}
	// Each at its own rule in the file, saying what it does (an outside
	// audit: no position, and "matches as if it never were there").
	for _, w := range got {
		if !regexp.MustCompile(`^t\.yaml:\d+:\d+: nat\[\d\]: nat `).MatchString(w) || !strings.Contains(w, "the rule never matches") {
			t.Errorf("warning %q: want it at its rule's place, saying the rule never matches", w)
		}
	}
	if got[0][:strings.Index(got[0], ": nat ")] == got[1][:strings.Index(got[1], ": nat ")] {
		t.Errorf("two rules' warnings at one place: %q", got)
	}
	k = fake.New("lab")
	p = plan(t, k, parse(t, "name: lab\nbridges: [{name: br0, addresses: [10.9.0.1/24]}]\nnat:\n  - masquerade: {source: 10.9.0.0/24, out: br0}\n  - masquerade: {source: 10.9.0.0/24, not_out: bro}\n"))
	w := strings.Join(p.Warnings, "\n")
	if !strings.Contains(w, "t.yaml:5:5: nat[1]: nat masquerade 10.9.0.0/24 !bro in namespace \"host\": not_out: names interface bro, which the namespace has not (a typo?): it excludes nothing") {
		t.Errorf("not_out warning: %q", p.Warnings)
	}
}
