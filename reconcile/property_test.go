package reconcile_test

import (
	"context"
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/reconcile/fake"
	"github.com/netplan-lab/netplan-lab/topology"
)

// genTopology makes a random valid topology: namespaces, bridges, veths
// (some bridge ports), addresses in per-link subnets, routes through
// connected gateways, sysctls.
func genTopology(r *rand.Rand) *topology.Topology {
	t := &topology.Topology{Name: "prop"}
	nsNames := []string{topology.Host}
	for i := 0; i < r.Intn(5); i++ {
		nsNames = append(nsNames, fmt.Sprintf("n%d", r.Intn(8)))
	}
	seenNS := map[string]bool{}
	for _, n := range nsNames {
		if seenNS[n] {
			continue
		}
		seenNS[n] = true
		ns := &topology.Namespace{Name: n}
		if r.Intn(2) == 0 {
			ns.Sysctls = append(ns.Sysctls, &topology.Sysctl{Key: "net.ipv4.ip_forward", Value: fmt.Sprint(r.Intn(2))})
		}
		t.Namespaces = append(t.Namespaces, ns)
	}
	var all []string
	for n := range seenNS {
		all = append(all, n)
	}
	// Deterministic order for the same seed.
	sortStrings(all)
	pick := func() string { return all[r.Intn(len(all))] }
	used := map[string]bool{}
	name := func(ns, base string) string {
		for i := 0; ; i++ {
			n := fmt.Sprintf("%s%d", base, (r.Intn(3)+i)%10)
			if !used[ns+"/"+n] {
				used[ns+"/"+n] = true
				return n
			}
		}
	}
	bridges := map[string][]string{}
	subnet := 0
	addrs := func() []string {
		subnet++
		if r.Intn(4) == 0 {
			return nil
		}
		out := []string{fmt.Sprintf("10.%d.%d.1/24", r.Intn(2), subnet)}
		if r.Intn(3) == 0 {
			out = append(out, fmt.Sprintf("fd00:%x::1/64", subnet))
		}
		return out
	}
	mtus := []int{0, 0, 1400, 1500, 9000}
	up := func() *bool {
		v := r.Intn(6) != 0
		return &v
	}
	for i := 0; i < r.Intn(3); i++ {
		ns := pick()
		b := &topology.Bridge{Iface: topology.Iface{Name: name(ns, "br"), Namespace: ns, Addresses: addrs(),
			MTU: mtus[r.Intn(len(mtus))], Up: up()}}
		if r.Intn(3) == 0 {
			stp := r.Intn(2) == 0
			b.STP = &stp
		}
		if r.Intn(4) == 0 {
			b.MAC = fmt.Sprintf("02:00:00:00:%02x:%02x", i, r.Intn(256))
		}
		t.Bridges = append(t.Bridges, b)
		bridges[ns] = append(bridges[ns], b.Name)
	}
	end := func(ns string) topology.Iface {
		e := topology.Iface{Name: name(ns, "v"), Namespace: ns, Addresses: addrs(), Up: up(),
			MTU: mtus[r.Intn(len(mtus))]}
		if bs := bridges[ns]; len(bs) > 0 && r.Intn(2) == 0 {
			e.Bridge = bs[r.Intn(len(bs))]
			e.Addresses = nil
		}
		return e
	}
	for i := 0; i < r.Intn(6); i++ {
		a, b := pick(), pick()
		t.Links = append(t.Links, &topology.Link{A: end(a), B: end(b)})
	}
	// Macvlans on veth ends that are not bridge ports (the kernel refuses
	// those), and VXLANs over veth ends, in their namespaces.
	var ends []*topology.Iface
	for _, l := range t.Links {
		for _, e := range []*topology.Iface{&l.A, &l.B} {
			if e.Bridge == "" {
				ends = append(ends, e)
			}
		}
	}
	for i := 0; i < r.Intn(3) && len(ends) > 0; i++ {
		p := ends[r.Intn(len(ends))]
		ns := pick()
		m := &topology.Macvlan{Iface: topology.Iface{Name: name(ns, "m"), Namespace: ns, Addresses: addrs(), Up: up()},
			Parent: p.Namespace + ":" + p.Name, ParentNS: p.Namespace, ParentName: p.Name, Mode: []string{"bridge", "private", "vepa"}[r.Intn(3)]}
		t.Macvlans = append(t.Macvlans, m)
	}
	vnis := map[string]bool{}
	for i := 0; i < r.Intn(3) && len(ends) > 0; i++ {
		d := ends[r.Intn(len(ends))]
		vni := 1 + r.Intn(20)
		if vnis[fmt.Sprintf("%s/%d", d.Namespace, vni)] {
			continue // one VNI per port in a namespace
		}
		vnis[fmt.Sprintf("%s/%d", d.Namespace, vni)] = true
		v := &topology.Vxlan{Iface: topology.Iface{Name: name(d.Namespace, "vx"), Namespace: d.Namespace, Addresses: addrs(), Up: up()},
			VNI: vni, Remote: fmt.Sprintf("192.0.2.%d", 1+r.Intn(9)), Dev: d.Name, Port: 4789}
		if r.Intn(2) == 0 {
			v.Local = fmt.Sprintf("192.0.2.%d", 10+r.Intn(9))
		}
		t.Vxlans = append(t.Vxlans, v)
	}
	// Routes: through a gateway on an up link with an IPv4 address.
	for _, ifc := range t.Interfaces() {
		if !ifc.IsUp() || len(ifc.Addresses) == 0 || r.Intn(2) == 0 {
			continue
		}
		ns := t.Namespace(ifc.Namespace)
		gw := ifc.Addresses[0][:len(ifc.Addresses[0])-4] + "254" // x.y.z.1/24 -> x.y.z.254
		rt := &topology.Route{To: fmt.Sprintf("172.%d.0.0/16", 16+r.Intn(4)), Via: gw, Metric: r.Intn(2) * 100}
		if r.Intn(3) == 0 {
			rt.Dev = ifc.Name
		}
		dup := false
		for _, o := range ns.Routes {
			if o.To == rt.To && o.Metric == rt.Metric {
				dup = true
			}
		}
		if !dup {
			ns.Routes = append(ns.Routes, rt)
		}
	}
	for i := 0; i < r.Intn(4); i++ {
		n := &topology.NAT{Namespace: pick()}
		switch r.Intn(3) {
		case 0:
			n.Masquerade = &topology.Masquerade{Source: fmt.Sprintf("10.%d.0.0/16", r.Intn(4)), NotOut: "br0"}
		case 1:
			n.SNAT = &topology.SNAT{Source: fmt.Sprintf("10.%d.0.0/16", r.Intn(4)), To: "203.0.113.5"}
		case 2:
			n.PortForward = &topology.PortForward{Proto: "tcp", Port: 8000 + r.Intn(3), To: "10.0.0.2:80"}
		}
		t.NAT = append(t.NAT, n)
	}
	return t
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func desired(t *testing.T, top *topology.Topology) *reconcile.State {
	t.Helper()
	s, err := reconcile.Desired(top)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func apply(t *testing.T, k reconcile.Kernel, want *reconcile.State) *reconcile.Result {
	t.Helper()
	res, err := reconcile.Reconcile(context.Background(), k, want, reconcile.ExecOptions{})
	if err != nil {
		t.Fatalf("apply: %v\nplan:\n%v", err, res.Plan)
	}
	return res
}

func plan(t *testing.T, k reconcile.Kernel, want *reconcile.State) *reconcile.Plan {
	t.Helper()
	obs, err := k.Observe(context.Background(), reconcile.QueryFor(want))
	if err != nil {
		t.Fatal(err)
	}
	return reconcile.Diff(want, obs)
}

// comparable strips what the kernel picks by itself (MACs, default MTUs)
// when the topology did not ask for it.
func comparable(s *reconcile.State, want *reconcile.State) *reconcile.State {
	s = reconcile.AsDesired(s)
	for name, ns := range s.Namespaces {
		for ln, l := range ns.Links {
			var wl *reconcile.Link
			if w := want.NS(name); w != nil {
				wl = w.Links[ln]
			}
			if wl == nil || wl.MAC == "" {
				l.MAC = ""
			}
			if wl == nil || wl.MTU == 0 {
				l.MTU = 0
			}
		}
	}
	return s
}

const propertyRuns = 300

func TestPropertyApplyThenPlanIsEmpty(t *testing.T) {
	for seed := int64(0); seed < propertyRuns; seed++ {
		r := rand.New(rand.NewSource(seed))
		top := genTopology(r)
		want := desired(t, top)
		k := fake.New(top.Name)
		apply(t, k, want)
		if p := plan(t, k, want); !p.Empty() || len(p.Conflicts) > 0 {
			t.Fatalf("seed %d: plan after apply is not empty:\n%v", seed, p)
		}
		w := k.Writes()
		apply(t, k, want)
		if k.Writes() != w {
			t.Fatalf("seed %d: re-apply wrote %d times", seed, k.Writes()-w)
		}
	}
}

func TestPropertyApplyAThenBEqualsB(t *testing.T) {
	for seed := int64(0); seed < propertyRuns; seed++ {
		r := rand.New(rand.NewSource(seed))
		a, b := genTopology(r), genTopology(r)
		wa, wb := desired(t, a), desired(t, b)

		k1 := fake.New("prop")
		apply(t, k1, wa)
		apply(t, k1, wb)
		k2 := fake.New("prop")
		apply(t, k2, wb)

		got := comparable(k1.W.Dump("prop"), wb)
		want := comparable(k2.W.Dump("prop"), wb)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: apply(a); apply(b) differs from apply(b)\na then b: %s\nb alone:  %s",
				seed, dumpJSON(got), dumpJSON(want))
		}
	}
}

// TestPropertyApplyLeavesTheDesiredStateAlone: applying a plan (which
// shares the desired state's links with its create changes) and a second
// one on top of it changes neither desired state.
func TestPropertyApplyLeavesTheDesiredStateAlone(t *testing.T) {
	for seed := int64(0); seed < propertyRuns; seed++ {
		r := rand.New(rand.NewSource(seed))
		a, b := genTopology(r), genTopology(r)
		wa, wb := desired(t, a), desired(t, b)
		before := dumpJSON(wa) + dumpJSON(wb)
		k := fake.New("prop")
		apply(t, k, wa)
		apply(t, k, wb)
		apply(t, k, wa)
		if after := dumpJSON(wa) + dumpJSON(wb); after != before {
			t.Fatalf("seed %d: applying changed a desired state\nbefore: %s\nafter:  %s", seed, before, after)
		}
	}
}

// TestPropertyNoChangeForEqualObjects: going from a to b, the plan touches
// no object that is the same in a and b, unless something it depends on
// (its namespace, its bridge, its peer, its route's interface) changes.
func TestPropertyNoChangeForEqualObjects(t *testing.T) {
	for seed := int64(0); seed < propertyRuns; seed++ {
		r := rand.New(rand.NewSource(seed))
		a := genTopology(r)
		b := mutate(r, a)
		wa, wb := desired(t, a), desired(t, b)
		k := fake.New("prop")
		apply(t, k, wa)
		p := plan(t, k, wb)
		for _, c := range p.Changes {
			if why := equalInBoth(wa, wb, c); why != "" {
				t.Fatalf("seed %d: plan changes %s %s in %s although %s\nplan:\n%v", seed, c.Action, c.Describe(), c.Namespace, why, p)
			}
		}
		apply(t, k, wb)
	}
}

func linkEqual(a, b *reconcile.State, ref reconcile.Ref) bool {
	la, lb := a.Link(ref), b.Link(ref)
	if la == nil || lb == nil || !reflect.DeepEqual(la, lb) {
		return false
	}
	if la.Master != "" && !linkEqual(a, b, reconcile.Ref{NS: ref.NS, Name: la.Master}) {
		return false
	}
	if la.Peer != nil {
		pa, pb := a.Link(*la.Peer), b.Link(*la.Peer)
		if pa == nil || pb == nil || !reflect.DeepEqual(pa, pb) {
			return false
		}
		if pa.Master != "" && !linkEqual(a, b, reconcile.Ref{NS: la.Peer.NS, Name: pa.Master}) {
			return false
		}
	}
	return true
}

// equalInBoth says why the object of c is equal in a and b, or "".
func equalInBoth(a, b *reconcile.State, c *reconcile.Change) string {
	na, nb := a.NS(c.Namespace), b.NS(c.Namespace)
	if na == nil || nb == nil {
		return ""
	}
	switch c.Kind {
	case reconcile.KindLink, reconcile.KindAddress:
		name := c.Name
		if c.Kind == reconcile.KindAddress {
			name = c.Dev
		}
		if linkEqual(a, b, reconcile.Ref{NS: c.Namespace, Name: name}) {
			return "the link is equal in a and b"
		}
	case reconcile.KindRoute:
		ra, rb := na.Routes[c.Name], nb.Routes[c.Name]
		if ra == nil || rb == nil || !reflect.DeepEqual(ra, rb) {
			return ""
		}
		// A route goes with the interface it leaves by.
		for _, l := range nb.Links {
			if !linkEqual(a, b, reconcile.Ref{NS: c.Namespace, Name: l.Name}) {
				return ""
			}
		}
		for _, l := range na.Links {
			if nb.Links[l.Name] == nil {
				return ""
			}
		}
		return "the route and every link of its namespace are equal in a and b"
	case reconcile.KindSysctl:
		if va, ok := na.Sysctls[c.Name]; ok && va == nb.Sysctls[c.Name] {
			return "the sysctl is equal in a and b"
		}
	case reconcile.KindNAT:
		if na.NAT[c.Name] != nil && nb.NAT[c.Name] != nil {
			return "the NAT rule is in a and in b"
		}
	}
	return ""
}

// mutate returns a copy of t with a few random edits.
func mutate(r *rand.Rand, t *topology.Topology) *topology.Topology {
	c := *t
	c.Links = nil
	for _, l := range t.Links {
		cl := *l
		cl.A.Addresses = append([]string(nil), l.A.Addresses...)
		cl.B.Addresses = append([]string(nil), l.B.Addresses...)
		c.Links = append(c.Links, &cl)
	}
	c.Bridges = nil
	for _, b := range t.Bridges {
		cb := *b
		c.Bridges = append(c.Bridges, &cb)
	}
	c.Macvlans = nil
	for _, m := range t.Macvlans {
		cm := *m
		c.Macvlans = append(c.Macvlans, &cm)
	}
	c.Vxlans = nil
	for _, v := range t.Vxlans {
		cv := *v
		c.Vxlans = append(c.Vxlans, &cv)
	}
	for i := 0; i < 1+r.Intn(3); i++ {
		switch r.Intn(9) {
		case 7: // in place: a macvlan's mode
			if len(c.Macvlans) > 0 {
				c.Macvlans[r.Intn(len(c.Macvlans))].Mode = []string{"bridge", "private", "vepa"}[r.Intn(3)]
			}
		case 8: // in place: a VXLAN's remote; replaced: its VNI
			if len(c.Vxlans) > 0 {
				v := c.Vxlans[r.Intn(len(c.Vxlans))]
				if r.Intn(2) == 0 {
					v.Remote = fmt.Sprintf("192.0.2.%d", 100+r.Intn(9))
				} else {
					v.VNI = 100 + r.Intn(50)
				}
			}
		case 6:
			if len(c.NAT) > 0 {
				j := r.Intn(len(c.NAT))
				c.NAT = append(append([]*topology.NAT(nil), c.NAT[:j]...), c.NAT[j+1:]...)
			}
		case 0:
			if len(c.Links) > 0 {
				j := r.Intn(len(c.Links))
				c.Links = append(c.Links[:j], c.Links[j+1:]...)
				c.Namespaces = withoutRoutes(c.Namespaces)
			}
		case 1:
			if len(c.Links) > 0 {
				l := c.Links[r.Intn(len(c.Links))]
				if l.A.Bridge == "" {
					l.A.Addresses = []string{fmt.Sprintf("10.9.%d.1/24", r.Intn(200))}
					c.Namespaces = withoutRoutes(c.Namespaces)
				}
			}
		case 2:
			if len(c.Links) > 0 {
				l := c.Links[r.Intn(len(c.Links))]
				l.B.MTU = []int{1300, 1500, 9000}[r.Intn(3)]
			}
		case 3:
			if len(c.Bridges) > 0 {
				b := c.Bridges[r.Intn(len(c.Bridges))]
				v := !b.IsUp()
				b.Up = &v
				c.Namespaces = withoutRoutes(c.Namespaces)
			}
		case 4:
			var keep []*topology.Namespace
			for _, n := range c.Namespaces {
				cn := *n
				cn.Sysctls = nil
				for _, s := range n.Sysctls {
					cs := *s
					if r.Intn(2) == 0 {
						cs.Value = "1"
					}
					cn.Sysctls = append(cn.Sysctls, &cs)
				}
				keep = append(keep, &cn)
			}
			c.Namespaces = keep
		case 5:
			// Drop a namespace and everything in it.
			if len(c.Namespaces) > 1 {
				victim := c.Namespaces[1+r.Intn(len(c.Namespaces)-1)].Name
				if victim == topology.Host {
					break
				}
				c.Namespaces = keep(c.Namespaces, func(n *topology.Namespace) bool { return n.Name != victim })
				c.Links = keep(c.Links, func(l *topology.Link) bool { return l.A.Namespace != victim && l.B.Namespace != victim })
				c.Bridges = keep(c.Bridges, func(b *topology.Bridge) bool { return b.Namespace != victim })
				c.NAT = keep(c.NAT, func(n *topology.NAT) bool { return n.Namespace != victim })
				c.Namespaces = withoutRoutes(c.Namespaces)
			}
		}
	}
	// Children and VXLANs go with the links they are on.
	ends := map[string]bool{}
	nss := map[string]bool{topology.Host: true}
	for _, n := range c.Namespaces {
		nss[n.Name] = true
	}
	for _, l := range c.Links {
		ends[l.A.Namespace+":"+l.A.Name], ends[l.B.Namespace+":"+l.B.Name] = true, true
	}
	c.Macvlans = keep(c.Macvlans, func(m *topology.Macvlan) bool { return nss[m.Namespace] && ends[m.Parent] })
	vnis := map[string]bool{}
	c.Vxlans = keep(c.Vxlans, func(v *topology.Vxlan) bool {
		k := fmt.Sprintf("%s/%d", v.Namespace, v.VNI)
		ok := nss[v.Namespace] && ends[v.Namespace+":"+v.Dev] && !vnis[k]
		vnis[k] = true
		return ok
	})
	return &c
}

// keep returns a new slice of the elements of s for which f is true; s,
// shared with the topology being mutated from, is not touched.
func keep[T any](s []T, f func(T) bool) []T {
	var out []T
	for _, v := range s {
		if f(v) {
			out = append(out, v)
		}
	}
	return out
}

// withoutRoutes drops routes, which an edit may have made unreachable.
func withoutRoutes(in []*topology.Namespace) []*topology.Namespace {
	var out []*topology.Namespace
	for _, n := range in {
		c := *n
		c.Routes = nil
		out = append(out, &c)
	}
	return out
}
