package reconcile

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// The order in which a plan's steps reach the kernel comes from one graph
// of kernel objects and what each needs, built by small rules below and
// walked in layers: a layer holds every step whose predecessors are done,
// and its steps run at once across namespaces (in plan order within one).
//
// Each step names the objects it makes (creates or changes), removes, and
// needs to exist, by key:
//
//	ns/N            a namespace              nsconf/N     its namespace-wide sysctls
//	link/N/IF       an interface             addr/N/IF/A  an address
//	route/N/KEY     a route                  sysctl/N/K   a sysctl
//	nat/N           the NAT batch of N
//
// and three rules make the edges:
//
//  1. a step that needs K runs after every step that makes K;
//  2. a step that removes K runs before every step that makes K (a
//     replace, a name used again);
//  3. order within a kind: on one link, address adds run before the
//     deletes marked AfterAdd (make before break) and after the others;
//     in a namespace, route adds and changes run before route deletes (a
//     changed metric is a new route before the old one goes).

// step is one kernel operation of a plan: a change (a replace becomes a
// delete and a create), or all NAT changes of a namespace.
type step struct {
	changes []*Change
	ns      string
	makes   []string
	removes []string
	needs   []string // exact keys, or prefixes ending in "/*"
}

func keyNS(ns string) string           { return "ns/" + ns }
func keyLink(ns, name string) string   { return "link/" + ns + "/" + name }
func keyAddr(ns, dev, a string) string { return "addr/" + ns + "/" + dev + "/" + a }
func keyMacvlanOn(parent Ref) string   { return "macvlanon/" + parent.NS + "/" + parent.Name }
func keyRoute(ns, key string) string   { return "route/" + ns + "/" + key }

// keyAddrGone is made by an address's delete: what needs a link's
// addresses gone waits on "addrgone/NS/DEV/*".
func keyAddrGone(ns, dev, a string) string { return "addrgone/" + ns + "/" + dev + "/" + a }
func keyVNI(ns string, x *VXLAN) string {
	return fmt.Sprintf("vni/%s/%d/%d", ns, x.VNI, x.Port)
}

// steps expands a plan into steps, in plan order.
func steps(p *Plan) []*step {
	var out []*step
	nat := map[string]*step{}
	for _, c := range p.Changes {
		if c.Implicit {
			continue
		}
		if c.Kind == KindNAT {
			s := nat[c.Namespace]
			if s == nil {
				s = &step{ns: c.Namespace, makes: []string{"nat/" + c.Namespace}, needs: []string{keyNS(c.Namespace)}}
				nat[c.Namespace] = s
				out = append(out, s)
			}
			s.changes = append(s.changes, c)
			continue
		}
		if c.Kind == KindLink && c.Action == Replace {
			del := &Change{Action: Delete, Kind: KindLink, Namespace: c.Namespace, Name: c.Name, Link: c.OldLink, Why: c.Why}
			add := &Change{Action: Create, Kind: KindLink, Namespace: c.Namespace, Name: c.Name, Link: c.Link, PeerLink: c.PeerLink, Why: c.Why}
			out = append(out, newStep(del), newStep(add))
			continue
		}
		out = append(out, newStep(c))
	}
	gatewaysOnRoutes(out)
	return out
}

// gatewaysOnRoutes orders a route via a gateway after the routes the plan
// adds in its namespace that put the gateway on-link (a route with dev:
// and no gateway, to a prefix that holds it): the kernel refuses a
// gateway it cannot reach ("network is unreachable"; an outside audit:
// validate passed, apply failed every time).
func gatewaysOnRoutes(steps []*step) {
	type onLink struct {
		ns  string
		dst netip.Prefix
		key string
	}
	var dev []onLink
	for _, s := range steps {
		for _, c := range s.changes {
			if c.Kind == KindRoute && c.Action != Delete && c.Route != nil && c.Route.Via == "" {
				if p, err := netip.ParsePrefix(c.Route.Dst); err == nil {
					dev = append(dev, onLink{c.Namespace, p, keyRoute(c.Namespace, c.Name)})
				}
			}
		}
	}
	for _, s := range steps {
		for _, c := range s.changes {
			if c.Kind != KindRoute || c.Action == Delete || c.Route == nil || c.Route.Via == "" {
				continue
			}
			gw, err := netip.ParseAddr(c.Route.Via)
			if err != nil {
				continue
			}
			for _, d := range dev {
				if d.ns == c.Namespace && d.dst.Contains(gw) {
					s.needs = append(s.needs, d.key)
				}
			}
		}
	}
}

func newStep(c *Change) *step {
	s := &step{changes: []*Change{c}, ns: c.Namespace}
	n := c.Namespace
	need := func(keys ...string) { s.needs = append(s.needs, keys...) }
	switch c.Kind {
	case KindNamespace:
		if c.Action == Delete {
			s.removes = []string{keyNS(n)}
			need("linkgone/" + n + "/*") // after the deletes of its links the plan has
		} else {
			s.makes = []string{keyNS(n)}
		}
	case KindLink:
		l := c.Link
		me := keyLink(n, c.Name)
		switch c.Action {
		case Delete:
			s.removes = []string{me}
			s.makes = []string{"linkgone/" + n + "/" + c.Name}
			if l != nil && l.VXLAN != nil {
				s.removes = append(s.removes, keyVNI(n, l.VXLAN)) // before a new one takes its VNI
			}
			if l != nil && l.Kind == KindVeth && l.Peer != nil {
				s.removes = append(s.removes, keyLink(l.Peer.NS, l.Peer.Name))
			}
			if l != nil && l.Kind == KindMacvlan && l.Parent != nil {
				s.removes = append(s.removes, keyMacvlanOn(*l.Parent))
			}
		case Create:
			s.makes = []string{me}
			if l.VXLAN != nil {
				// One VXLAN per VNI and port in a namespace: made after
				// the one that goes (a renamed one; an outside audit saw
				// EEXIST when the new name sorted first).
				s.makes = append(s.makes, keyVNI(n, l.VXLAN))
			}
			need(keyNS(n), "nsconf/"+n)
			if l.Master != "" {
				need(keyLink(n, l.Master))
			}
			if l.Kind == KindVeth && l.Peer != nil {
				s.makes = append(s.makes, keyLink(l.Peer.NS, l.Peer.Name))
				need(keyNS(l.Peer.NS), "nsconf/"+l.Peer.NS)
				if c.PeerLink != nil && c.PeerLink.Master != "" {
					need(keyLink(l.Peer.NS, c.PeerLink.Master))
				}
			}
			if l.Parent != nil {
				need(keyNS(l.Parent.NS), keyLink(l.Parent.NS, l.Parent.Name))
			}
			if l.Kind == KindMacvlan && l.Parent != nil {
				// After the macvlans that leave its parent: a passthru
				// one takes a parent only alone, and a parent in
				// passthru takes no other (the kernel: EINVAL; an
				// outside audit: a passthru one renamed, or moved to
				// another namespace, was made before the old one went).
				s.makes = append(s.makes, keyMacvlanOn(*l.Parent))
			}
			if l.VXLAN != nil && l.VXLAN.Dev != "" {
				need(keyLink(n, l.VXLAN.Dev))
			}
		case Update:
			s.makes = []string{me}
			for _, f := range c.Fields {
				if f.Name == "mtu" {
					s.makes = append(s.makes, "mtu/"+n)
				}
			}
			if l.VXLAN != nil && l.VXLAN.Dev != "" {
				need(keyLink(n, l.VXLAN.Dev))
			}
			if c.OldName != "" { // renamed in place
				s.removes = []string{keyLink(n, c.OldName)}
			}
			if l.Master != "" {
				need(keyLink(n, l.Master))
			}
			if l.Parent != nil {
				// After the parent's own change: a macvlan's or ipvlan's
				// MTU may not pass its parent's, so raising both must
				// raise the parent first (lowering the parent first is
				// safe too: the kernel lowers the child with it). An
				// outside audit saw both raised at once fail 4 times in 5.
				need(keyLink(l.Parent.NS, l.Parent.Name))
			}
		}
	case KindImpair:
		k := "impair/" + n + "/" + c.Name
		if c.Action == Delete {
			s.removes = []string{k}
			break
		}
		s.makes = []string{k}
		need(keyLink(n, c.Name), "mtu/*") // its bucket is sized for the MTU
	case KindAddress:
		k := keyAddr(n, c.Dev, c.Name)
		if c.Action == Delete {
			s.removes = []string{k}
			s.makes = []string{keyAddrGone(n, c.Dev, c.Name)}
			if family(c.Name) == 6 {
				// Before IPv6 is turned off, which takes them itself.
				s.removes = append(s.removes, "ipv6off/"+n)
			}
		} else {
			s.makes = []string{k}
			if family(c.Name) == 6 {
				need("nsconf/" + n) // after IPv6 is turned on
			}
		}
		need(keyLink(n, c.Dev)) // made by a rename to that name, if any
	case KindRoute:
		k := keyRoute(n, c.Name)
		if c.Action == Delete {
			s.removes = []string{k}
			break
		}
		s.makes = []string{k}
		need(keyNS(n))
		// The link it goes through must exist and be up, with the
		// address that puts the gateway on a connected subnet.
		if c.Dev != "" {
			need(keyLink(n, c.Dev), "addr/"+n+"/"+c.Dev+"/*")
		}
		// Moved off another interface (its gateway's subnet is on this
		// one now): after that one's addresses go, or the kernel picks
		// it again while it still holds the subnet (the randomized test).
		for _, f := range c.Fields {
			if f.Name == "dev" && f.Old != "" && f.Old != "(none)" {
				need(keyAddrGone(n, f.Old, "*"))
			}
		}
	case KindSysctl:
		s.makes = []string{"sysctl/" + n + "/" + c.Name}
		need(keyNS(n))
		if _, ok := propagates[c.Name]; ok {
			s.makes = append(s.makes, "sysprop/"+n)
		}
		if _, src := propagates[c.Name]; !src && (c.Readd || rewritable(c.Name)) {
			need("sysprop/" + n) // after the write that would rewrite it
		}
		if InterfaceSysctl(c.Name) {
			need(keyLink(n, sysctlIface(c.Name)))
			if _, v6 := ipv6Iface(c.Name); v6 {
				// After every MTU change, which resets the IPv6 MTU
				// (and, under 1280, every IPv6 setting) of an interface:
				// a bridge's or a macvlan's follows another's.
				need("mtu/*")
			}
		} else {
			s.makes = append(s.makes, "nsconf/"+n)
			if strings.HasSuffix(c.Name, ".disable_ipv6") {
				s.makes = append(s.makes, "ipv6off/"+n)
			}
		}
	}
	return s
}

// layers orders steps into layers by the rules above. It fails on a cycle,
// which would be a bug in the planner.
func layers(st []*step) ([][]*step, error) {
	makers := map[string][]int{}
	removers := map[string][]int{}
	for i, s := range st {
		for _, k := range s.makes {
			makers[k] = append(makers[k], i)
		}
		for _, k := range s.removes {
			removers[k] = append(removers[k], i)
		}
	}
	// prefix index for needs such as "addr/N/IF/*"
	byPrefix := func(prefix string) []int {
		var out []int
		for k, is := range makers {
			if strings.HasPrefix(k, prefix) {
				out = append(out, is...)
			}
		}
		return out
	}
	before := make([]map[int]bool, len(st)) // before[j]: steps that run before j
	edge := func(i, j int) {
		if i == j {
			return
		}
		if before[j] == nil {
			before[j] = map[int]bool{}
		}
		before[j][i] = true
	}
	for j, s := range st {
		// Rule 1: needs after makers.
		for _, k := range s.needs {
			var is []int
			if strings.HasSuffix(k, "/*") {
				is = byPrefix(strings.TrimSuffix(k, "*"))
			} else {
				is = makers[k]
			}
			for _, i := range is {
				edge(i, j)
			}
		}
		// Rule 2: removes before makes of the same key.
		for _, k := range s.makes {
			for _, i := range removers[k] {
				edge(i, j)
			}
		}
	}
	// Rule 3: addresses on one link, routes in one namespace.
	for j, s := range st {
		c := s.changes[0]
		switch {
		case c.Kind == KindAddress && c.Action == Delete:
			for _, i := range byPrefix("addr/" + c.Namespace + "/" + c.Dev + "/") {
				if c.AfterAdd {
					edge(i, j)
				} else {
					edge(j, i)
				}
			}
		case c.Kind == KindRoute && c.Action == Delete:
			for _, i := range byPrefix(keyRoute(c.Namespace, "")) {
				edge(i, j)
			}
		}
	}
	// Kahn's algorithm, in plan order within a layer.
	done := make([]bool, len(st))
	left := len(st)
	var out [][]*step
	for left > 0 {
		var layer []*step
		var idx []int
		for j, s := range st {
			if done[j] {
				continue
			}
			ready := true
			for i := range before[j] {
				if !done[i] {
					ready = false
					break
				}
			}
			if ready {
				layer = append(layer, s)
				idx = append(idx, j)
			}
		}
		if len(layer) == 0 {
			var stuck []string
			for j, s := range st {
				if !done[j] {
					stuck = append(stuck, string(s.changes[0].Action)+" "+s.changes[0].Describe())
				}
			}
			sort.Strings(stuck)
			return nil, fmt.Errorf("the plan's steps depend on each other in a cycle (a bug): %s", strings.Join(stuck, "; "))
		}
		for _, j := range idx {
			done[j] = true
		}
		left -= len(layer)
		out = append(out, layer)
	}
	return out, nil
}

// layerName says what a layer does, for per-stage timings: its kinds of
// step, most frequent first.
func layerName(layer []*step) string {
	count := map[string]int{}
	for _, s := range layer {
		c := s.changes[0]
		what := string(c.Kind)
		if c.Kind == KindLink && c.Link != nil {
			what = c.Link.Kind
		}
		count[string(c.Action)+" "+what]++
	}
	names := make([]string, 0, len(count))
	for n := range count {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if count[names[i]] != count[names[j]] {
			return count[names[i]] > count[names[j]]
		}
		return names[i] < names[j]
	})
	return strings.Join(names, ", ")
}
