package live

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/reconcile/fake"
)

// The differential test proves the fake kernel (reconcile/fake, which the
// property tests run on) against the real one: the same random sequence of
// kernel operations (namespaces; bridges, veths, macvlans and VXLANs created,
// deleted, renamed, set up, down and to another MTU; addresses with
// secondaries, with and without promote_secondaries; routes; sysctls; NAT
// rules in order) goes to both, and after each step both must have said
// yes or both no, and the fake's state must equal what the real kernel
// reports. Seeds that once failed are kept in testdata/differential-seeds
// and run every time, and so does one more: seedFromEnv's.
// NETPLAN_LAB_DIFF_STEPS sets the number of steps (300).

const diffSeedsFile = "testdata/differential-seeds"

func TestFakeKernelMatchesRealKernel(t *testing.T) {
	needRoot(t)
	if os.Getenv("NETPLAN_LAB_KERNELTEST") != "" {
		// Under qemu without KVM the kernel's asynchronous cleanup of
		// deleted namespaces runs far slower than the test's steps, and
		// the fake (which has none) is measured against the host kernel.
		t.Skip("the differential test runs against the host's kernel (make test), not under make test-kernel's emulation")
	}
	steps := 300
	if s := os.Getenv("NETPLAN_LAB_DIFF_STEPS"); s != "" {
		steps, _ = strconv.Atoi(s)
	}
	var seeds []int64
	if f, err := os.Open(diffSeedsFile); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if n, err := strconv.ParseInt(strings.Fields(line)[0], 10, 64); err == nil {
				seeds = append(seeds, n)
			}
		}
		f.Close()
	}
	seeds = append(seeds, seedFromEnv())
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { differential(t, seed, steps) })
	}
}

var diffNS = []string{"host", "n1", "n2", "n3"}

func differential(t *testing.T, seed int64, steps int) {
	e := newEnv(t, "diff.yaml", []byte("name: diff\n"))
	if _, err := e.k.EnsureHost(); err != nil {
		t.Fatal(err)
	}
	fk := fake.New(e.k.Mark())
	real := e.k
	// The sandbox starts with the lab's defaults, as every namespace the
	// lab makes; new namespaces take their IPv4 defaults from the machine.
	for k, v := range reconcile.LabDefaults {
		fk.W.SetSysctl("host", k, v)
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/default/rp_filter"); err == nil {
		fk.W.Defaults = map[string]string{".rp_filter": strings.TrimSpace(string(b))}
	}
	rng := rand.New(rand.NewSource(seed))
	ctx := context.Background()
	query := reconcile.Query{Namespaces: diffNS, Sysctls: map[string][]string{}, NAT: map[string]bool{"host": true, "n1": true}}
	var log []string
	do := func(cs ...*reconcile.Change) {
		t.Helper()
		var c *reconcile.Change
		for _, c = range cs {
			log = append(log, string(c.Action)+" "+c.Namespace+" "+c.Describe())
			var errR, errF error
			if c.Kind == reconcile.KindNAT {
				order := natOrder(fk, c)
				errR = real.ApplyNAT(ctx, c.Namespace, []*reconcile.Change{c}, order)
				errF = fk.ApplyNAT(ctx, c.Namespace, []*reconcile.Change{c}, order)
			} else {
				errR = real.Apply(ctx, c)
				errF = fk.Apply(ctx, c)
			}
			if (errR == nil) != (errF == nil) {
				t.Fatalf("seed %d, step %d: %s %s: the real kernel says %v, the fake %v\nsteps:\n  %s", seed, len(log), c.Action, c.Describe(), errR, errF, strings.Join(log, "\n  "))
			}
			if errR != nil {
				log[len(log)-1] += " (refused by both)"
			}
			// Sysctl keys worth reading: every key set so far, in its namespace.
			if c.Kind == reconcile.KindSysctl && !slices.Contains(query.Sysctls[c.Namespace], c.Name) {
				query.Sysctls[c.Namespace] = append(query.Sysctls[c.Namespace], c.Name)
			}
		}
		sf, _ := fk.Observe(ctx, query)
		b := normal(sf)
		// The real kernel finishes some work after the call returns (the
		// links of a deleted namespace): give it a moment to settle.
		var a string
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			sr, err := real.Observe(ctx, query)
			if err != nil {
				t.Fatal(err)
			}
			if a = normal(sr); a == b || time.Now().After(deadline) {
				break
			}
		}
		if a != b {
			t.Fatalf("seed %d, step %d (%s %s): the fake differs from the real kernel\n%s\nsteps:\n  %s\n(add the seed to %s to keep it as a regression case)",
				seed, len(log), c.Action, c.Describe(), lineDiff(a, b), strings.Join(log, "\n  "), diffSeedsFile)
		}
	}
	for _, n := range diffNS[1:] {
		do(&reconcile.Change{Action: reconcile.Create, Kind: reconcile.KindNamespace, Namespace: n, Name: n})
	}
	g := &opGen{rng: rng, fk: fk, q: query}
	for i := 0; i < steps; i++ {
		if cs := g.next(); len(cs) > 0 {
			do(cs...)
		}
	}
	// Clean up the real side.
	for _, n := range diffNS[1:] {
		real.Apply(ctx, &reconcile.Change{Action: reconcile.Delete, Kind: reconcile.KindNamespace, Namespace: n, Name: n})
	}
	e.destroy()
}

// natOrder: the wanted order of the NAT rules after change c, the current
// chain order with a created rule at a random-free, fixed place: last.
func natOrder(fk *fake.Kernel, c *reconcile.Change) []string {
	s, _ := fk.Observe(context.Background(), reconcile.Query{Namespaces: []string{c.Namespace}, NAT: map[string]bool{c.Namespace: true}})
	var order []string
	if ns := s.NS(c.Namespace); ns != nil {
		for _, ch := range reconcile.NATChainOrder {
			for _, id := range ns.NATChains[ch] {
				if !slices.Contains(order, id) && id != c.Name {
					order = append(order, id)
				}
			}
		}
	}
	if c.Action != reconcile.Delete {
		order = append(order, c.Name)
	}
	return order
}

// normal is a state as text, with what the fake does not model left out
// (MACs, route protocols) and the rest in a fixed order.
func normal(s *reconcile.State) string {
	var b strings.Builder
	for _, name := range s.SortedNames() {
		ns := s.Namespaces[name]
		fmt.Fprintf(&b, "netns %s owned=%v\n", name, ns.Owned)
		names := slices.Sorted(maps.Keys(ns.Links))
		for _, n := range names {
			l := ns.Links[n]
			if !l.Owned {
				continue
			}
			fmt.Fprintf(&b, "  link %s %s up=%v mtu=%d master=%q addrs=%v", n, l.Kind, l.Up, l.MTU, l.Master, l.Addresses)
			if l.Peer != nil {
				fmt.Fprintf(&b, " peer=%s", l.Peer)
			}
			if l.Parent != nil {
				fmt.Fprintf(&b, " parent=%s mode=%s", l.Parent, l.Mode)
			}
			if l.VXLAN != nil {
				fmt.Fprintf(&b, " vxlan=%+v", *l.VXLAN)
			}
			if l.STP != nil {
				fmt.Fprintf(&b, " stp=%v", *l.STP)
			}
			b.WriteString("\n")
		}
		keys := slices.Sorted(maps.Keys(ns.Routes))
		for _, k := range keys {
			r := ns.Routes[k]
			if !r.Owned {
				continue
			}
			dev := r.Dev
			if r.Via != "" {
				dev = "" // which of two links on the gateway's subnet: not modelled
			}
			fmt.Fprintf(&b, "  route %s via=%s dev=%s\n", k, r.Via, dev)
		}
		sk := slices.Sorted(maps.Keys(ns.Sysctls))
		for _, k := range sk {
			fmt.Fprintf(&b, "  sysctl %s=%s\n", k, ns.Sysctls[k])
		}
		for _, ch := range reconcile.NATChainOrder {
			if ids := ns.NATChains[ch]; len(ids) > 0 {
				fmt.Fprintf(&b, "  nat %s: %s\n", ch, strings.Join(ids, " | "))
			}
		}
	}
	return b.String()
}

func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range al {
		if !slices.Contains(bl, l) {
			out = append(out, "real: "+l)
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			out = append(out, "fake: "+l)
		}
	}
	return strings.Join(out, "\n")
}

// opGen makes random kernel operations from the fake's current state.
type opGen struct {
	rng *rand.Rand
	fk  *fake.Kernel
	q   reconcile.Query
	n   int
}

func (g *opGen) state() *reconcile.State {
	s, _ := g.fk.Observe(context.Background(), g.q)
	return s
}

func (g *opGen) ns() string { return diffNS[g.rng.Intn(len(diffNS))] }

// links lists the owned links, as refs, optionally of some kinds.
func (g *opGen) links(s *reconcile.State, kinds ...string) []reconcile.Ref {
	var out []reconcile.Ref
	for _, name := range s.SortedNames() {
		ns := s.Namespaces[name]
		var ln []string
		for n, l := range ns.Links {
			if l.Owned && (len(kinds) == 0 || slices.Contains(kinds, l.Kind)) {
				ln = append(ln, n)
			}
		}
		slices.Sort(ln)
		for _, n := range ln {
			out = append(out, reconcile.Ref{NS: name, Name: n})
		}
	}
	return out
}

func (g *opGen) pick(refs []reconcile.Ref) (reconcile.Ref, bool) {
	if len(refs) == 0 {
		return reconcile.Ref{}, false
	}
	return refs[g.rng.Intn(len(refs))], true
}

func (g *opGen) name(stem string) string { g.n++; return fmt.Sprintf("%s%d", stem, g.n%12) }

func one(c *reconcile.Change) []*reconcile.Change { return []*reconcile.Change{c} }

func (g *opGen) next() []*reconcile.Change {
	s := g.state()
	r := g.rng
	switch r.Intn(15) {
	case 0: // a bridge
		n := g.ns()
		return one(&reconcile.Change{Action: reconcile.Create, Kind: reconcile.KindLink, Namespace: n, Name: "br0",
			Link: &reconcile.Link{Name: "br0", Kind: reconcile.KindBridge, Owned: true, Up: true, MTU: []int{0, 1400}[r.Intn(2)]}})
	case 1, 2: // a veth pair, maybe on a bridge
		a, b := g.ns(), g.ns()
		an, bn := g.name("a"), g.name("b")
		l := &reconcile.Link{Name: an, Kind: reconcile.KindVeth, Owned: true, Up: r.Intn(4) > 0, MTU: []int{0, 1400, 9000}[r.Intn(3)],
			Peer: &reconcile.Ref{NS: b, Name: bn}}
		p := &reconcile.Link{Name: bn, Kind: reconcile.KindVeth, Owned: true, Up: true, Peer: &reconcile.Ref{NS: a, Name: an}}
		if br := s.Link(reconcile.Ref{NS: b, Name: "br0"}); br != nil && br.Owned && r.Intn(2) == 0 {
			p.Master = "br0"
		}
		return one(&reconcile.Change{Action: reconcile.Create, Kind: reconcile.KindLink, Namespace: a, Name: an, Link: l, PeerLink: p})
	case 3: // a macvlan on some link
		par, ok := g.pick(g.links(s, reconcile.KindVeth, reconcile.KindVxlan, reconcile.KindBridge))
		if !ok {
			return nil
		}
		n, name := g.ns(), g.name("m")
		return one(&reconcile.Change{Action: reconcile.Create, Kind: reconcile.KindLink, Namespace: n, Name: name,
			Link: &reconcile.Link{Name: name, Kind: reconcile.KindMacvlan, Owned: true, Up: true, Parent: &par, Mode: []string{"bridge", "private", "vepa"}[r.Intn(3)]}})
	case 4: // a VXLAN over some link
		dev, ok := g.pick(g.links(s, reconcile.KindVeth, reconcile.KindBridge))
		if !ok {
			return nil
		}
		name := g.name("vx")
		return one(&reconcile.Change{Action: reconcile.Create, Kind: reconcile.KindLink, Namespace: dev.NS, Name: name,
			Link: &reconcile.Link{Name: name, Kind: reconcile.KindVxlan, Owned: true, Up: true,
				VXLAN: &reconcile.VXLAN{VNI: 1 + r.Intn(100), Remote: fmt.Sprintf("10.77.0.%d", 1+r.Intn(9)), Dev: dev.Name, Port: 4789}}})
	case 5: // delete a link
		ref, ok := g.pick(g.links(s))
		if !ok {
			return nil
		}
		return one(&reconcile.Change{Action: reconcile.Delete, Kind: reconcile.KindLink, Namespace: ref.NS, Name: ref.Name, Link: s.Link(ref).Clone()})
	case 6: // up, down, mtu
		ref, ok := g.pick(g.links(s))
		if !ok {
			return nil
		}
		l := s.Link(ref).Clone()
		var f reconcile.Field
		if r.Intn(2) == 0 {
			l.Up = !l.Up
			f = reconcile.Field{Name: "up"}
		} else {
			l.MTU = []int{1200, 1300, 1400, 1500}[r.Intn(4)]
			f = reconcile.Field{Name: "mtu"}
		}
		return one(&reconcile.Change{Action: reconcile.Update, Kind: reconcile.KindLink, Namespace: ref.NS, Name: ref.Name, Link: l, Fields: []reconcile.Field{f}})
	case 7: // rename a veth end (the mark of its peer is not rewritten here: that is a plan's job)
		ref, ok := g.pick(g.links(s, reconcile.KindVeth))
		if !ok {
			return nil
		}
		l := s.Link(ref).Clone()
		if l.Peer == nil {
			return nil
		}
		l.Name = g.name("r")
		if s.Link(reconcile.Ref{NS: ref.NS, Name: l.Name}) != nil {
			return nil
		}
		rename := &reconcile.Change{Action: reconcile.Update, Kind: reconcile.KindLink, Namespace: ref.NS, Name: l.Name, OldName: ref.Name, Link: l,
			Fields: []reconcile.Field{{Name: "name"}}}
		p := s.Link(*l.Peer)
		if p == nil {
			return one(rename)
		}
		p = p.Clone()
		p.Peer = &reconcile.Ref{NS: ref.NS, Name: l.Name}
		return []*reconcile.Change{rename, {Action: reconcile.Update, Kind: reconcile.KindLink, Namespace: l.Peer.NS, Name: l.Peer.Name, Link: p,
			Fields: []reconcile.Field{{Name: "peer"}}}}
	case 8, 9, 10: // an address: in a subnet of 3, so that there are secondaries
		ref, ok := g.pick(g.links(s))
		if !ok {
			return nil
		}
		l := s.Link(ref)
		if len(l.Addresses) > 0 && r.Intn(2) == 0 {
			a := l.Addresses[r.Intn(len(l.Addresses))]
			return one(&reconcile.Change{Action: reconcile.Delete, Kind: reconcile.KindAddress, Namespace: ref.NS, Name: a, Dev: ref.Name})
		}
		// One subnet on one link of a namespace: which link the kernel
		// routes a gateway through when two share a subnet (the oldest
		// prefix route) is not modelled by the fake.
		sub := 60 + r.Intn(3)
		for on, ol := range s.NS(ref.NS).Links {
			for _, x := range ol.Addresses {
				if on != ref.Name && (strings.HasPrefix(x, fmt.Sprintf("10.%d.0.", sub)) || strings.HasPrefix(x, fmt.Sprintf("fd%02x:", sub))) {
					return nil
				}
			}
		}
		a := fmt.Sprintf("10.%d.0.%d/24", sub, 1+r.Intn(5))
		if r.Intn(4) == 0 {
			a = fmt.Sprintf("fd%02x::%d/64", sub, 1+r.Intn(5))
		}
		return one(&reconcile.Change{Action: reconcile.Create, Kind: reconcile.KindAddress, Namespace: ref.NS, Name: a, Dev: ref.Name})
	case 11: // a route via a gateway that may or may not be connected
		n := g.ns()
		via := fmt.Sprintf("10.%d.0.%d", 60+r.Intn(4), 9)
		rt := &reconcile.Route{Dst: fmt.Sprintf("172.20.%d.0/24", r.Intn(3)), Via: via, Metric: []int{0, 10}[r.Intn(2)], Owned: true}
		if r.Intn(3) == 0 {
			if h := s.NS(n); h != nil {
				for k, old := range h.Routes {
					if old.Owned {
						return one(&reconcile.Change{Action: reconcile.Delete, Kind: reconcile.KindRoute, Namespace: n, Name: k, Route: old.Clone()})
					}
				}
			}
		}
		return one(&reconcile.Change{Action: reconcile.Create, Kind: reconcile.KindRoute, Namespace: n, Name: rt.Key(), Route: rt})
	case 12: // a sysctl
		n := g.ns()
		keys := []string{"net.ipv4.conf.all.promote_secondaries", "net.ipv6.conf.all.keep_addr_on_down", "net.ipv4.ip_forward",
			"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"}
		for _, ref := range g.links(s) {
			if ref.NS == n {
				// An interface's IPv6 settings: gone under MTU 1280, and
				// its IPv6 MTU at most the MTU, reset when that changes.
				keys = append(keys, "net.ipv4.conf."+ref.Name+".rp_filter", "net.ipv4.conf."+ref.Name+".forwarding",
					"net.ipv6.conf."+ref.Name+".forwarding", "net.ipv6.conf."+ref.Name+".mtu")
			}
		}
		key := keys[r.Intn(len(keys))]
		v := strconv.Itoa(r.Intn(2))
		if strings.HasSuffix(key, ".mtu") {
			v = strconv.Itoa([]int{1280, 1400, 1500, 1600}[r.Intn(4)])
		}
		return one(&reconcile.Change{Action: reconcile.Update, Kind: reconcile.KindSysctl, Namespace: n, Name: key, Value: v})
	case 13: // NAT in host or n1
		n := []string{"host", "n1"}[r.Intn(2)]
		rule := &reconcile.NATRule{Kind: reconcile.NATMasquerade, Source: fmt.Sprintf("10.%d.0.0/16", r.Intn(4)), Owned: true}
		if r.Intn(2) == 0 {
			rule = &reconcile.NATRule{Kind: reconcile.NATPortForward, Proto: "tcp", Port: 8000 + r.Intn(4), To: "10.60.0.2:80", Owned: true}
		}
		if h := s.NS(n); h != nil && len(h.NAT) > 0 && r.Intn(2) == 0 {
			for id, old := range h.NAT {
				return one(&reconcile.Change{Action: reconcile.Delete, Kind: reconcile.KindNAT, Namespace: n, Name: id, NAT: old})
			}
		}
		if h := s.NS(n); h != nil && h.NAT[rule.ID()] != nil {
			return nil
		}
		return one(&reconcile.Change{Action: reconcile.Create, Kind: reconcile.KindNAT, Namespace: n, Name: rule.ID(), NAT: rule})
	case 14: // a namespace goes and comes back
		n := diffNS[1+r.Intn(len(diffNS)-1)]
		if s.NS(n) != nil {
			return one(&reconcile.Change{Action: reconcile.Delete, Kind: reconcile.KindNamespace, Namespace: n, Name: n})
		}
		return one(&reconcile.Change{Action: reconcile.Create, Kind: reconcile.KindNamespace, Namespace: n, Name: n})
	}
	return nil
}
