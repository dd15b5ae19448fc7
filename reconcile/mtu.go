package reconcile

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/netplan-lab/netplan-lab/topology"
)

// ipv6MTUs finds, before anything changes, the IPv6 addresses of the
// file on an interface whose MTU is under IPv6's minimum of 1280 once the
// plan has run: the kernel refuses such an address (EINVAL) half-way
// through an apply, and drops one it holds when the MTU falls under it.
// validate sees only what the file sets; this sees what the interface
// will have (mtuAfter). Each is a conflict, so the plan is refused whole.
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
				if family(a) == 6 { // canonical, never IPv4-mapped (validate)
					v6 = a
					break
				}
			}
			if v6 == "" {
				continue
			}
			ref := Ref{name, ln}
			m := d.mtuAfter(ref, 0)
			if !m.ok || m.mtu >= topology.MinIPv6MTU {
				continue
			}
			// Where to raise it: the interface it takes its MTU from, if
			// any, else this one.
			fix := "give it an mtu: of at least " + strconv.Itoa(topology.MinIPv6MTU)
			switch {
			case wl.Kind == KindBridge && m.from != nil:
				fix += " (a bridge with one keeps it), or " + raise(d, *m.from)
			case m.from != nil:
				// A VXLAN's dev needs its headers more (an outside
				// audit: 1280 was advised for a dev that had 1320).
				fix = raiseTo(d, *m.from, topology.MinIPv6MTU+m.head)
			}
			if hl := d.cur(ref); hl != nil && !d.fresh[ref] {
				has := fmt.Sprintf("has %d", m.mtu)
				if hl.MTU != m.mtu {
					has = fmt.Sprintf("would have %d after this plan", m.mtu)
				}
				d.conflict(KindLink, name, ln, "address %s on %q in netns %q: it is IPv6, which needs an MTU of at least %d, but %q %s%s: %s, or give it no IPv6",
					v6, ln, name, topology.MinIPv6MTU, ln, has, m.because(), fix)
				continue
			}
			d.conflict(KindLink, name, ln, "%s %q in netns %q: its address %s is IPv6, which needs an MTU of at least %d, but without mtu: it would have %d%s: %s, or give it no IPv6",
				wl.Kind, ln, name, v6, topology.MinIPv6MTU, m.mtu, m.because(), fix)
		}
	}
}

// raise says how the file can give ref a larger MTU: the lab's own
// interface takes an mtu:, anyone else's is theirs to raise.
func raise(d *differ, ref Ref) string { return raiseTo(d, ref, topology.MinIPv6MTU) }

func raiseTo(d *differ, ref Ref, atLeast int) string {
	if wl := d.want.Link(ref); wl != nil && wl.Owned {
		return "give " + ref.String() + " an mtu: of at least " + strconv.Itoa(atLeast)
	}
	return "raise " + ref.String() + "'s MTU (the lab does not set it)"
}

// ipv6Settings finds the file's IPv6 settings of an interface
// (net.ipv6.conf.IF.KEY) that the kernel will not take once the plan has
// run. An interface under IPv6's minimum MTU has none: the kernel drops
// them all when its MTU falls under 1280 (ENOENT), and makes them anew,
// with the defaults, when it comes back. And net.ipv6.conf.IF.mtu may be
// neither under 1280 (the kernel check of plan says so) nor over the
// interface's own MTU (EINVAL, half-way through an apply: an outside
// finding). Each is a conflict, so the plan is refused whole.
func (d *differ) ipv6Settings() {
	for name, w := range d.want.Namespaces {
		if !w.Owned && d.have.NS(name) == nil {
			continue
		}
		for k, v := range w.Sysctls {
			iface, ok := ipv6Iface(k)
			if !ok {
				continue
			}
			ref := Ref{name, iface}
			m := d.mtuAfter(ref, 0)
			if !m.ok {
				continue
			}
			fix := func(atLeast int) string {
				if m.from != nil {
					return raiseTo(d, *m.from, atLeast+m.head)
				}
				return raiseTo(d, ref, atLeast)
			}
			if m.mtu < topology.MinIPv6MTU {
				d.conflict(KindSysctl, name, k, "sysctl %s in netns %q: %q would have an MTU of %d%s, under IPv6's minimum of %d, and the kernel keeps no IPv6 settings for such an interface: %s, or leave the key out",
					k, name, iface, m.mtu, m.because(), topology.MinIPv6MTU, fix(topology.MinIPv6MTU))
				continue
			}
			if strings.HasSuffix(k, ".mtu") {
				if n, err := strconv.Atoi(v); err == nil && n > m.mtu {
					d.conflict(KindSysctl, name, k, "sysctl %s = %s in netns %q: the kernel refuses an IPv6 MTU over the interface's own, and %q would have %d%s: %s, or set it to at most %d",
						k, v, name, iface, m.mtu, m.because(), fix(n), m.mtu)
				}
			}
		}
	}
}

// childMTUs finds the file's mtu: of a macvlan, ipvlan or VXLAN that is
// over what its parent (its dev, less the VXLAN's headers) will have once
// the plan has run: the kernel refuses it (EINVAL) half-way through an
// apply. validate sees only a parent's mtu: in the file; this sees what
// the parent has (an outside audit: a VXLAN's mtu: over a dev lowered by
// hand). Each is a conflict.
func (d *differ) childMTUs() {
	for name, w := range d.want.Namespaces {
		if !w.Owned && d.have.NS(name) == nil {
			continue
		}
		for ln, wl := range w.Links {
			if !wl.Owned || wl.MTU == 0 {
				continue
			}
			from, how, head := inheritsFrom(Ref{name, ln}, wl)
			if from == nil {
				continue
			}
			p := d.mtuAfter(*from, 0)
			if !p.ok || wl.MTU <= p.mtu-head {
				continue
			}
			if hl := d.cur(Ref{name, ln}); hl != nil && !d.fresh[Ref{name, ln}] && hl.MTU == wl.MTU {
				// It has it already (a VXLAN keeps its MTU when its dev is
				// lowered): nothing to write, nothing refused, but its
				// big packets do not fit (an outside audit: a conflict
				// there blocked the whole lab).
				d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf("%s %q in netns %q has its mtu: %d, over what %s %s leaves it now (%d): its largest packets do not fit; %s, or give it a smaller mtu:",
					wl.Kind, ln, name, wl.MTU, how, from, p.mtu-head, raiseTo(d, *from, wl.MTU+head)))
				continue
			}
			over := fmt.Sprintf("%s %s's MTU, %d%s", how, from, p.mtu, p.because())
			if head > 0 {
				over = fmt.Sprintf("the %d %s %s leaves it (its MTU %d%s, less %d for the VXLAN's headers)", p.mtu-head, how, from, p.mtu, p.because(), head)
			}
			d.conflict(KindLink, name, ln, "%s %q in netns %q: its mtu: %d is over %s, which the kernel refuses: %s, or give it a smaller mtu:",
				wl.Kind, ln, name, wl.MTU, over, raiseTo(d, *from, wl.MTU+head))
		}
	}
}

// ipv6Iface is the interface of an IPv6 interface setting
// (net.ipv6.conf.IF.KEY), if k is one.
func ipv6Iface(k string) (string, bool) {
	if !strings.HasPrefix(k, "net.ipv6.conf.") || !InterfaceSysctl(k) {
		return "", false
	}
	return sysctlIface(k), true
}

// mtu is what mtuAfter works out: the MTU, whether it could be told, and
// where it comes from when another interface sets it.
type mtu struct {
	mtu int
	ok  bool
	// from is the interface the MTU comes from (a parent, a VXLAN's dev,
	// a bridge's smallest port, a veth's peer), nil if its own; why says
	// how; head is what the interface has less than from (a VXLAN's
	// headers).
	from *Ref
	why  string
	head int
}

// because is the explanation for a message, " (why)", or "".
func (m mtu) because() string {
	if m.why == "" {
		return ""
	}
	return " (" + m.why + ")"
}

// mtuAfter is the MTU interface ref will have once the plan has run: the
// file's mtu:, else what it has (a macvlan or ipvlan no more than its
// parent will have, the kernel lowers it with it; a VXLAN given another
// dev no more than that leaves), else what a new one takes: a macvlan's
// or ipvlan's parent's, a VXLAN's dev's less its headers, a veth end
// its peer's mtu: (the lab makes a pair with one MTU where one end gives
// it), else 1500. A bridge without mtu: follows its ports (bridgeMTUAfter).
// ok is false where it cannot be told (an interface neither wanted nor
// there, a chain too long).
func (d *differ) mtuAfter(ref Ref, depth int) mtu {
	if depth > 8 {
		return mtu{}
	}
	wl := d.want.Link(ref)
	if wl != nil && !wl.Owned {
		wl = nil
	}
	if wl != nil && wl.MTU != 0 {
		return mtu{mtu: wl.MTU, ok: true}
	}
	hl := d.cur(ref)
	if d.fresh[ref] {
		hl = nil
	}
	if wl != nil && wl.Kind == KindBridge {
		return d.bridgeMTUAfter(ref, hl, depth)
	}
	if wl == nil {
		if hl == nil {
			return mtu{}
		}
		return mtu{mtu: hl.MTU, ok: true}
	}
	from, how, head := inheritsFrom(ref, wl)
	if from != nil {
		p := d.mtuAfter(*from, depth+1)
		if !p.ok {
			if hl != nil {
				return mtu{mtu: hl.MTU, ok: true}
			}
			return mtu{}
		}
		m := mtu{mtu: p.mtu - head, ok: true, from: from, why: fmt.Sprintf("it takes it from %s %s, MTU %d", how, from, p.mtu), head: head}
		if head > 0 {
			m.why += fmt.Sprintf(", less %d for the VXLAN's headers", head)
		}
		if hl != nil {
			// There already: a macvlan or ipvlan is lowered with its
			// parent, a VXLAN given another dev is held under it; a
			// VXLAN on the same dev keeps what it has, and none grows
			// by itself. Under what its parent leaves, its MTU is its
			// own.
			if hl.MTU < m.mtu {
				return mtu{mtu: hl.MTU, ok: true}
			}
			if wl.Kind == KindVxlan && hl.VXLAN != nil && wl.VXLAN != nil && hl.VXLAN.Dev == wl.VXLAN.Dev {
				m.mtu = hl.MTU
			}
		}
		return m
	}
	if hl != nil {
		return mtu{mtu: hl.MTU, ok: true}
	}
	if wl.Kind == KindVeth && wl.Peer != nil {
		if pl := d.want.Link(*wl.Peer); pl != nil && pl.MTU != 0 {
			return mtu{mtu: pl.MTU, ok: true, from: wl.Peer, why: "the lab makes a veth pair with the mtu: one end gives, here " + wl.Peer.String() + "'s"}
		}
		return mtu{mtu: 1500, ok: true} // the kernel's default
	}
	if wl.Kind == KindVeth || wl.Kind == KindVxlan {
		return mtu{mtu: 1500, ok: true}
	}
	return mtu{}
}

// inheritsFrom is where a link without mtu: takes its MTU from, if
// anywhere: a macvlan's or ipvlan's parent, a VXLAN's dev (less head
// bytes of headers).
func inheritsFrom(ref Ref, l *Link) (from *Ref, how string, head int) {
	switch {
	case (l.Kind == KindMacvlan || l.Kind == KindIpvlan) && l.Parent != nil:
		return l.Parent, "its parent", 0
	case l.Kind == KindVxlan && l.VXLAN != nil && l.VXLAN.Dev != "":
		return &Ref{ref.NS, l.VXLAN.Dev}, "its dev", topology.VxlanHeadroom(l.VXLAN.Remote, l.VXLAN.Group, l.VXLAN.Local)
	}
	return nil, "", 0
}

// bridgeMTUAfter: the kernel keeps a bridge's MTU at its ports' smallest
// (1500 without ports) until it is set: by the lab (its mark says so) or
// by hand (seen where it differs from that now).
func (d *differ) bridgeMTUAfter(ref Ref, hl *Link, depth int) mtu {
	if hl != nil && hl.MTUSet {
		return mtu{mtu: hl.MTU, ok: true}
	}
	nowMin, nowPorts := 0, 0
	if hn := d.have.NS(ref.NS); hl != nil && hn != nil {
		for _, hp := range hn.Links {
			if hp.Master == ref.Name {
				if nowPorts == 0 || hp.MTU < nowMin {
					nowMin = hp.MTU
				}
				nowPorts++
			}
		}
		// Following its ports it would be at their smallest, or at 1500
		// without any: otherwise it was set by hand, and keeps it.
		if nowPorts > 0 && hl.MTU != nowMin || nowPorts == 0 && hl.MTU != 1500 {
			return mtu{mtu: hl.MTU, ok: true}
		}
	}
	best, port := 0, ""
	consider := func(pn string, m int) {
		if port == "" || m < best || m == best && pn < port {
			best, port = m, pn
		}
	}
	for pn, p := range d.want.NS(ref.NS).Links {
		if p.Owned && p.Master == ref.Name {
			if m := d.mtuAfter(Ref{ref.NS, pn}, depth+1); m.ok {
				consider(pn, m.mtu)
			}
		}
	}
	if hn := d.have.NS(ref.NS); hl != nil && hn != nil {
		for pn, hp := range hn.Links {
			// Ports of someone else's stay.
			if !hp.Owned && hp.Master == ref.Name && !d.gone[Ref{ref.NS, pn}] {
				consider(pn, hp.MTU)
			}
		}
	}
	switch {
	case port != "":
		return mtu{mtu: best, ok: true, from: &Ref{ref.NS, port},
			why: fmt.Sprintf("a bridge without mtu: follows its ports' smallest MTU, %s's", Ref{ref.NS, port})}
	case hl != nil && nowPorts == 0:
		return mtu{mtu: hl.MTU, ok: true} // no ports before or after: as it is
	}
	return mtu{mtu: 1500, ok: true} // new, or its last port goes: 1500
}
