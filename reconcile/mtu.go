package reconcile

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/netplan-lab/netplan-lab/topology"
)

// ipv6MTUs finds, before anything changes, the IPv6 addresses of the
// file on an interface whose MTU is under IPv6's minimum of 1280 once the
// plan has run: the kernel refuses such an address (EINVAL) half-way
// through an apply, and drops one it holds when the MTU falls under it.
// validate sees only what the file sets; this sees what the interface
// will have: the file's mtu, else what the kernel has now, or what a new
// interface takes from its parent (a macvlan, an ipvlan), its dev (a
// VXLAN, less its headers) or its ports (a bridge without mtu: follows the
// smallest of theirs). Each is a conflict, so the plan is refused whole.
// (Conflicts are sorted afterwards: map order does not show.)
func (d *differ) ipv6MTUs() {
	for name, w := range d.want.Namespaces {
		if !w.Owned && d.have.NS(name) == nil {
			continue
		}
		for ln, wl := range w.Links {
			if !wl.Owned || wl.MTU != 0 {
				continue // an mtu: of the file's own is validate's business
			}
			v6 := ""
			for _, a := range wl.Addresses {
				if isIPv6(a) {
					v6 = a
					break
				}
			}
			if v6 == "" {
				continue
			}
			ref := Ref{name, ln}
			mtu, why, ok := d.mtuAfter(ref, 0)
			if !ok || mtu >= topology.MinIPv6MTU {
				continue
			}
			if hl := d.cur(ref); hl != nil && !d.fresh[ref] {
				has := fmt.Sprintf("has %d", mtu)
				if hl.MTU != mtu {
					has = fmt.Sprintf("would have %d after this plan (%s)", mtu, why)
				}
				d.conflict("address %s on %q in netns %q: it is IPv6, which needs an MTU of at least %d, but %q %s: %s, or give it no IPv6",
					v6, ln, name, topology.MinIPv6MTU, ln, has, raise(d, ref))
				continue
			}
			from, fromRef, head := d.inheritsFrom(ref, wl)
			if from == "" {
				d.conflict("%s %q in netns %q: its address %s is IPv6, which needs an MTU of at least %d, but without mtu: it would have %d (%s): give it an mtu:, or no IPv6",
					wl.Kind, ln, name, v6, topology.MinIPv6MTU, mtu, why)
				continue
			}
			pmtu, pwhy, _ := d.mtuAfter(fromRef, 1)
			if pwhy != "" {
				pwhy = ": " + pwhy
			}
			d.conflict("%s %q in netns %q: its address %s is IPv6, which needs an MTU of at least %d, but without mtu: it takes %d from its %s %s (MTU %d%s%s): %s, or give this one no IPv6",
				wl.Kind, ln, name, v6, topology.MinIPv6MTU, mtu, from, fromRef, pmtu, headroom(head), pwhy, raise(d, fromRef))
		}
	}
}

func headroom(head int) string {
	if head == 0 {
		return ""
	}
	return ", less " + strconv.Itoa(head) + " for the VXLAN's headers"
}

// raise says how the file can give ref a larger MTU: the lab's own
// interface takes an mtu:, anyone else's is theirs to raise.
func raise(d *differ, ref Ref) string {
	if wl := d.want.Link(ref); wl != nil && wl.Owned {
		return "give " + ref.Name + " an mtu: of at least " + strconv.Itoa(topology.MinIPv6MTU)
	}
	return "raise that (the lab does not set it)"
}

// inheritsFrom is where a new link without mtu: takes its MTU from, if
// anywhere: a macvlan's or ipvlan's parent, a VXLAN's dev (less head
// bytes of headers).
func (d *differ) inheritsFrom(ref Ref, l *Link) (what string, from Ref, head int) {
	switch {
	case (l.Kind == KindMacvlan || l.Kind == KindIpvlan) && l.Parent != nil:
		return "parent", *l.Parent, 0
	case l.Kind == KindVxlan && l.VXLAN != nil && l.VXLAN.Dev != "":
		return "dev", Ref{ref.NS, l.VXLAN.Dev}, topology.VxlanHeadroom(l.VXLAN.Remote, l.VXLAN.Group, l.VXLAN.Local)
	}
	return "", Ref{}, 0
}

// mtuAfter is the MTU interface ref will have once the plan has run, and
// how it comes by it when that is not plain (", a bridge without mtu:
// ..."); ok is false where it cannot be told (an interface neither wanted
// nor there, a chain too long).
func (d *differ) mtuAfter(ref Ref, depth int) (mtu int, why string, ok bool) {
	if depth > 8 {
		return 0, "", false
	}
	wl := d.want.Link(ref)
	if wl != nil && !wl.Owned {
		wl = nil
	}
	if wl != nil && wl.MTU != 0 {
		return wl.MTU, "", true
	}
	hl := d.cur(ref)
	if d.fresh[ref] {
		hl = nil
	}
	if wl != nil && wl.Kind == KindBridge {
		return d.bridgeMTUAfter(ref, hl, depth)
	}
	if hl != nil {
		return hl.MTU, "", true
	}
	if wl == nil {
		return 0, "", false
	}
	if what, from, head := d.inheritsFrom(ref, wl); what != "" {
		m, _, ok := d.mtuAfter(from, depth+1)
		return m - head, "", ok
	}
	if wl.Kind == KindVeth {
		// The pair is made from the end whose name sorts first; the other
		// end takes that one's MTU where the file gives it none.
		if p := wl.Peer; p != nil && p.String() < ref.String() {
			if pl := d.want.Link(*p); pl != nil && pl.MTU != 0 {
				return pl.MTU, "", true
			}
		}
		return 1500, "", true // the kernel's default
	}
	return 0, "", false
}

// bridgeMTUAfter: a bridge whose MTU the lab does not set follows its
// ports' (the smallest); one made now starts at 1500; one there keeps
// what it has (it may have been set by hand) unless a port it gets is
// smaller.
func (d *differ) bridgeMTUAfter(ref Ref, hl *Link, depth int) (int, string, bool) {
	mtu, why := 1500, ""
	if hl != nil {
		mtu = hl.MTU
	}
	first := hl == nil
	if hl != nil && hl.MTUSet {
		return mtu, "", true // set by the lab once: the kernel keeps it
	}
	w := d.want.NS(ref.NS)
	for _, pn := range sortedKeys(w.Links) {
		p := w.Links[pn]
		if !p.Owned || p.Master != ref.Name {
			continue
		}
		pref := Ref{ref.NS, pn}
		if hl != nil {
			// Only ports it gets now can lower what it has.
			if hp := d.cur(pref); hp != nil && !d.fresh[pref] && hp.Master == ref.Name {
				continue
			}
		}
		m, _, ok := d.mtuAfter(pref, depth+1)
		if !ok {
			continue
		}
		if first || m < mtu {
			mtu, first = m, false
			why = "a bridge without mtu: takes its ports' smallest, " + pn + "'s"
		}
	}
	return mtu, why, true
}

// isIPv6 reports whether CIDR a is an IPv6 address (not IPv4-mapped).
func isIPv6(a string) bool {
	p, err := netip.ParsePrefix(a)
	return err == nil && p.Addr().Is6() && !p.Addr().Is4In6()
}
