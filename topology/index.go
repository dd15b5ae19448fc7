package topology

import (
	"net/netip"
	"slices"
	"strings"
)

// Index answers per-namespace questions about a topology without scanning
// it: which interfaces a namespace has, its first address, whether it uses
// IPv6. Code that asks them once per namespace or interface builds one
// (t.Index()) instead of calling the Topology methods of the same names,
// which scan the whole file each time: for a lab of N namespaces that is
// the difference between O(N log N) and O(N²). An Index describes the
// topology as it was when it was built.
//
// It keeps the interfaces and namespaces in slices sorted by namespace
// and looks them up by binary search, not in maps keyed by name: for a
// file of 100 000 namespaces the maps took 7 MB, the slices take 2.4 MB
// (docs/benchmarks.md, memory).
type Index struct {
	t      *Topology
	ifaces []*Iface
	byNS   []*Iface     // by namespace; in file order within one
	ns     []*Namespace // by name; the first of a name first
	nat    map[string][]*NAT
	vx6    map[string]bool // namespaces with a VXLAN over IPv6
}

// Index builds the topology's index.
func (t *Topology) Index() *Index {
	x := &Index{
		t:      t,
		ifaces: t.Interfaces(),
		nat:    map[string][]*NAT{},
	}
	x.byNS = sortedBy(x.ifaces, func(i *Iface) string { return i.Namespace })
	x.ns = sortedBy(t.Namespaces, func(n *Namespace) string { return n.Name })
	for _, r := range t.NAT {
		x.nat[r.Namespace] = append(x.nat[r.Namespace], r)
	}
	for _, v := range t.Vxlans {
		if v6, _ := v.overIPv6(); v6 {
			if x.vx6 == nil {
				x.vx6 = map[string]bool{}
			}
			x.vx6[v.Namespace] = true
		}
	}
	return x
}

// sortedBy returns a copy of items sorted by key, items with equal keys
// in their order in items.
func sortedBy[T any](items []T, key func(T) string) []T {
	return sortedFunc(items, func(a, b T) int { return strings.Compare(key(a), key(b)) })
}

// sortedFunc returns a copy of items sorted by cmp, items cmp finds equal
// in their order in items. (slices.SortStableFunc merges in O(n log² n);
// this sorts the items' positions, in O(n log n).)
func sortedFunc[T any](items []T, cmp func(a, b T) int) []T {
	order := make([]int32, len(items))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		if c := cmp(items[a], items[b]); c != 0 {
			return c
		}
		return int(a - b)
	})
	out := make([]T, len(items))
	for i, j := range order {
		out[i] = items[j]
	}
	return out
}

// overIPv6 reports whether the VXLAN's remote, group or local address is
// IPv6, and whether one is an IPv6 link-local address.
func (v *Vxlan) overIPv6() (v6, linkLocal bool) {
	for _, s := range []string{v.Remote, v.Group, v.Local} {
		if a, err := netip.ParseAddr(s); err == nil && a.Unmap().Is6() {
			v6 = true
			linkLocal = linkLocal || a.IsLinkLocalUnicast()
		}
	}
	return v6, linkLocal
}

// MinIPv6MTU is IPv6's minimum MTU: the kernel takes no IPv6 address on
// an interface with a smaller one.
const MinIPv6MTU = 1280

// VxlanHeadroom is what a VXLAN's headers take from its dev's MTU: 50
// bytes over IPv4, 70 when remote, group or local is IPv6.
func VxlanHeadroom(remote, group, local string) int {
	for _, s := range []string{remote, group, local} {
		if a, err := netip.ParseAddr(s); err == nil && a.Unmap().Is6() {
			return 70
		}
	}
	return 50
}

// Interfaces is Topology.Interfaces.
func (x *Index) Interfaces() []*Iface { return x.ifaces }

// In returns the interfaces declared in namespace ns, in file order.
func (x *Index) In(ns string) []*Iface {
	lo, _ := slices.BinarySearchFunc(x.byNS, ns, func(i *Iface, ns string) int { return strings.Compare(i.Namespace, ns) })
	hi := lo
	for hi < len(x.byNS) && x.byNS[hi].Namespace == ns {
		hi++
	}
	return x.byNS[lo:hi:hi]
}

// Namespace is Topology.Namespace.
func (x *Index) Namespace(name string) *Namespace {
	// The first of that name, as Topology.Namespace: BinarySearchFunc
	// finds the first of equal elements, and the sort was stable.
	if i, ok := slices.BinarySearchFunc(x.ns, name, func(n *Namespace, name string) int { return strings.Compare(n.Name, name) }); ok {
		return x.ns[i]
	}
	return nil
}

// Declared reports whether the file declares interface name in ns.
func (x *Index) Declared(ns, name string) bool {
	for _, i := range x.In(ns) {
		if i.Name == name {
			return true
		}
	}
	return false
}

// FirstAddr is Topology.FirstAddr.
func (x *Index) FirstAddr(ns string) (netip.Addr, string, bool) {
	for _, i := range x.In(ns) {
		if len(i.Addresses) == 0 {
			continue
		}
		if p, err := ParseCIDR(i.Addresses[0]); err == nil {
			return p.Addr(), i.Name, true
		}
	}
	return netip.Addr{}, "", false
}

// IfaceAddr is Topology.IfaceAddr.
func (x *Index) IfaceAddr(ns, ifname string) (netip.Addr, bool) {
	for _, i := range x.In(ns) {
		if i.Name == ifname && len(i.Addresses) > 0 {
			if p, err := ParseCIDR(i.Addresses[0]); err == nil {
				return p.Addr(), true
			}
		}
	}
	return netip.Addr{}, false
}

// WantsIPv6 is Topology.WantsIPv6.
func (x *Index) WantsIPv6(ns string) bool {
	if n := x.Namespace(ns); n != nil && n.IPv6 != nil {
		return *n.IPv6
	}
	return x.UsesIPv6(ns)
}

// IfaceUsesIPv6 reports whether the file gives interface name in ns an
// IPv6 address, an IPv6 route through it, or a VXLAN over IPv6 on it.
func (x *Index) IfaceUsesIPv6(ns, name string) bool {
	for _, v := range x.t.Vxlans {
		if v6, _ := v.overIPv6(); v6 && v.Namespace == ns && v.Dev == name {
			return true // the kernel refuses a VXLAN over IPv6 on a dev with IPv6 off
		}
	}
	return x.ipv6On(ns, name)
}

// ipv6On reports whether the file gives an interface of ns (dev, or any
// where dev is "") an IPv6 address, or an IPv6 route through it.
func (x *Index) ipv6On(ns, dev string) bool {
	for _, i := range x.In(ns) {
		if dev != "" && i.Name != dev {
			continue
		}
		for _, a := range i.Addresses {
			if p, err := ParseCIDR(a); err == nil && p.Addr().Is6() {
				return true
			}
		}
	}
	if n := x.Namespace(ns); n != nil {
		for _, r := range n.Routes {
			if dst, err := RouteDst(r.To, r.Via); err == nil && dst.Addr().Is6() && (dev == "" || r.Dev == dev) {
				return true
			}
		}
	}
	return false
}

// UsesIPv6 is Topology.UsesIPv6.
func (x *Index) UsesIPv6(ns string) bool {
	if x.ipv6On(ns, "") {
		return true
	}
	for _, r := range x.nat[ns] {
		if natIs6(r) {
			return true
		}
	}
	// A VXLAN over IPv6 needs IPv6 in its namespace (with it off, the
	// kernel refuses to make it: EPERM).
	return x.vx6[ns]
}
