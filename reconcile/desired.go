package reconcile

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/netplan-lab/netplan-lab/topology"
)

// Desired turns a validated topology into the state it asks for.
func Desired(t *topology.Topology) (*State, error) {
	s := NewState()
	s.Namespaces[HostNS] = NewNamespace(HostNS, false)
	for _, n := range t.Namespaces {
		ns := s.Namespaces[n.Name]
		if ns == nil {
			ns = NewNamespace(n.Name, n.Name != HostNS)
			s.Namespaces[n.Name] = ns
		}
		for _, sc := range n.Sysctls {
			ns.Sysctls[sc.Key] = NormaliseSysctl(sc.Value)
		}
		for _, r := range n.Routes {
			dst, err := topology.RouteDst(r.To, r.Via)
			if err != nil {
				return nil, err
			}
			metric := r.Metric
			if metric == 0 && dst.Addr().Is6() {
				metric = 1024 // what the kernel gives an IPv6 route without one
			}
			via := r.Via
			if via != "" {
				via = canonIP(via)
			}
			rt := &Route{Dst: dst.String(), Via: via, Dev: r.Dev, OnLink: r.OnLink, Metric: metric, Owned: true}
			ns.Routes[rt.Key()] = rt
		}
	}
	// IPv6 costs nothing where the file does not use it: off in every
	// namespace the lab makes that gets no IPv6 from the file (ipv6: true
	// keeps it, link-local and all), set before any interface exists.
	ix := t.Index()
	for _, n := range t.Namespaces {
		ns := s.Namespaces[n.Name]
		if !ns.Owned {
			continue
		}
		v := "1"
		if ix.WantsIPv6(n.Name) {
			v = "0"
		}
		_, all := ns.Sysctls[IPv6Switch[0]]
		_, dflt := ns.Sysctls[IPv6Switch[1]]
		if all || dflt {
			continue // the file switches IPv6 itself
		}
		for _, k := range IPv6Switch {
			ns.Sysctls[k] = v
		}
		ns.IPv6Default = true
	}
	var missing []string
	add := func(i *topology.Iface, l *Link) {
		l.Name = i.Name
		l.Owned = true
		l.Up = i.IsUp()
		l.MTU = i.MTU
		if i.MAC != "" {
			hw, _ := net.ParseMAC(i.MAC)
			l.MAC = hw.String()
		}
		l.Master = i.Bridge
		l.Addresses = CanonicalAddrs(i.Addresses)
		l.Impair = ImpairFromTopology(i.Impair)
		ns := s.Namespaces[i.Namespace]
		if ns == nil {
			missing = append(missing, fmt.Sprintf("%s:%d:%d: %s: namespace %q is not listed under namespaces", t.File, i.Pos.Line, i.Pos.Col, i.Path, i.Namespace))
			return
		}
		ns.Links[i.Name] = l
	}
	for _, b := range t.Bridges {
		// STP has a clear default (off): leaving it out of the file means off,
		// so removing `stp: true` turns it off again.
		stp := b.STP != nil && *b.STP
		add(&b.Iface, &Link{Kind: KindBridge, STP: &stp})
	}
	for _, l := range t.Links {
		a := &Link{Kind: KindVeth, Peer: &Ref{l.B.Namespace, l.B.Name}}
		b := &Link{Kind: KindVeth, Peer: &Ref{l.A.Namespace, l.A.Name}}
		add(&l.A, a)
		add(&l.B, b)
		// An end without mtu: has the other end's, made so and kept so:
		// an edit of it changes both (an outside audit: the other end kept
		// the old one, so an edit and a fresh apply differed).
		switch {
		case a.MTU == 0 && b.MTU != 0:
			a.MTU = b.MTU
		case b.MTU == 0 && a.MTU != 0:
			b.MTU = a.MTU
		}
	}
	for _, m := range t.Macvlans {
		add(&m.Iface, &Link{Kind: KindMacvlan, Parent: &Ref{m.ParentNS, m.ParentName}, Mode: m.Mode})
	}
	for _, m := range t.Ipvlans {
		add(&m.Iface, &Link{Kind: KindIpvlan, Parent: &Ref{m.ParentNS, m.ParentName}, Mode: m.Mode, Flag: m.Flag})
	}
	for _, v := range t.Vxlans {
		add(&v.Iface, &Link{Kind: KindVxlan, VXLAN: &VXLAN{VNI: v.VNI, Remote: canonIP(v.Remote),
			Group: canonIP(v.Group), Local: canonIP(v.Local), Dev: v.Dev, Port: v.Port}})
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(missing, "\n"))
	}
	for nsName, ns := range s.Namespaces {
		for _, l := range ns.Links {
			if l.MAC == "" && ownMAC(l) && !onForeignParent(s, l) {
				l.MAC, l.AutoMAC = DerivedMAC(t.Name, nsName, l.Name), true
			}
		}
	}
	s.Where = func(kind Kind, ns, name string) string { return whereIn(t, kind, ns, name) }
	for _, n := range t.NAT {
		r := natRuleOf(n)
		if r == nil {
			return nil, fmt.Errorf("%s:%d:%d: %s: empty nat entry", t.File, n.Pos.Line, n.Pos.Col, n.Path)
		}
		ns := s.Namespaces[n.Namespace]
		if ns == nil {
			return nil, fmt.Errorf("%s:%d:%d: %s: namespace %q is not listed under namespaces", t.File, n.Pos.Line, n.Pos.Col, n.Path, n.Namespace)
		}
		if ns.NAT[r.ID()] == nil {
			ns.NATOrder = append(ns.NATOrder, r.ID())
		}
		ns.NAT[r.ID()] = r
	}
	return s, nil
}

// natRuleOf is the rule a nat entry of the file asks for (nil if it asks
// for none).
func natRuleOf(n *topology.NAT) *NATRule {
	r := &NATRule{Owned: true}
	switch {
	case n.Masquerade != nil:
		r.Kind, r.Source, r.Out, r.NotOut = NATMasquerade, canonNet(n.Masquerade.Source), n.Masquerade.Out, n.Masquerade.NotOut
	case n.SNAT != nil:
		r.Kind, r.Source, r.To, r.Out, r.NotOut = NATSNAT, canonNet(n.SNAT.Source), canonIP(n.SNAT.To), n.SNAT.Out, n.SNAT.NotOut
	case n.PortForward != nil:
		f := n.PortForward
		to := f.To
		if ap, err := netip.ParseAddrPort(f.To); err == nil {
			to = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
		}
		r.Kind, r.Proto, r.Port, r.To, r.In = NATPortForward, f.Proto, f.Port, to, f.In
	default:
		return nil
	}
	return r
}

// whereIn is State.Where for the state of t.
func whereIn(t *topology.Topology, kind Kind, ns, name string) string {
	at := func(p topology.Pos, path string) string {
		return fmt.Sprintf("%s:%d:%d: %s: ", t.File, p.Line, p.Col, path)
	}
	n := t.Namespace(ns)
	switch kind {
	case KindLink, KindImpair, KindAddress:
		for _, i := range t.Interfaces() {
			if i.Namespace == ns && i.Name == name {
				return at(i.Pos, i.Path)
			}
		}
	case KindRoute:
		if n == nil {
			return ""
		}
		for _, r := range n.Routes {
			dst, err := topology.RouteDst(r.To, r.Via)
			metric := r.Metric
			if metric == 0 && err == nil && dst.Addr().Is6() {
				metric = 1024
			}
			if err == nil && RouteKey(dst.String(), metric) == name {
				return at(r.Pos, r.Path)
			}
		}
	case KindSysctl:
		if n == nil {
			return ""
		}
		for _, sc := range n.Sysctls {
			if sc.Key == name {
				return at(sc.Pos, sc.Path)
			}
		}
	case KindNAT:
		// The rule whose ID is name, else the namespace's first.
		first := -1
		for i, n := range t.NAT {
			if n.Namespace != ns {
				continue
			}
			if r := natRuleOf(n); r != nil && r.ID() == name {
				return at(n.Pos, n.Path)
			}
			if first < 0 {
				first = i
			}
		}
		if first >= 0 {
			return at(t.NAT[first].Pos, t.NAT[first].Path)
		}
	}
	if n != nil {
		return at(n.Pos, n.Path)
	}
	return ""
}

// IPv6Switch are the keys that turn IPv6 on or off in a namespace: "all"
// (every interface now, and default) and "default" (interfaces to come).
var IPv6Switch = []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"}

// FreshSysctls are values a namespace has when it is made: a plan that
// makes it sets them only if they differ.
var FreshSysctls = map[string]string{
	"net.ipv6.conf.all.disable_ipv6":     "0",
	"net.ipv6.conf.default.disable_ipv6": "0",
}

// DerivedMAC is the MAC of an interface whose file gives none: locally
// administered, unicast, from the lab's name, the namespace's short name and
// the interface's name. The same on every apply, under any prefix or
// sandbox, on any machine: a re-created interface answers at once (its
// neighbours' ARP caches are right), captures are comparable, and a bridge
// keeps its MAC whatever its ports.
func DerivedMAC(lab, ns, ifname string) string {
	h := sha256.Sum256([]byte("netplan-lab\x00" + lab + "\x00" + ns + "\x00" + ifname))
	hw := net.HardwareAddr(h[:6])
	hw[0] = hw[0]&^0x01 | 0x02 // unicast, locally administered
	return hw.String()
}

// onForeignParent reports a macvlan on an interface the file does not
// make (a NIC): it shares a LAN with whatever else is on that interface,
// two labs of one file, or the same file on two machines, so its MAC is
// left to the kernel (random) rather than derived from names they share.
func onForeignParent(s *State, l *Link) bool {
	if l.Kind != KindMacvlan || l.Parent == nil {
		return false
	}
	p := s.Link(*l.Parent)
	return p == nil || !p.Owned
}

// ownMAC reports whether a link has a MAC of its own: an ipvlan uses its
// parent's, and so does a macvlan in passthru mode.
func ownMAC(l *Link) bool {
	return l.Kind != KindIpvlan && !(l.Kind == KindMacvlan && l.Mode == "passthru")
}

func canonNet(s string) string {
	if p, err := netip.ParsePrefix(s); err == nil {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked().String()
	}
	return s
}

func canonIP(s string) string {
	if s == "" {
		return ""
	}
	if ip := net.ParseIP(s); ip != nil {
		return ip.String()
	}
	return s
}

// CanonicalAddrs returns addresses as canonical CIDR strings, in their
// order (an interface's first address of a subnet is its primary).
func CanonicalAddrs(in []string) []string {
	out := make([]string, 0, len(in))
	for _, a := range in {
		if p, err := topology.ParseCIDR(a); err == nil {
			out = append(out, p.String())
		} else {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
