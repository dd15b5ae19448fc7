package reconcile

import (
	"fmt"
	"net"
	"sort"

	"github.com/netplan-lab/netplan-lab/topology"
)

// Desired turns a validated topology into the state it asks for.
func Desired(t *topology.Topology) (*State, error) {
	if len(t.NAT) > 0 {
		return nil, fmt.Errorf("%s: nat: NAT rules are not supported by this version of netplan-lab", t.File)
	}
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
			rt := &Route{Dst: dst.String(), Via: via, Dev: r.Dev, Metric: metric, Owned: true}
			ns.Routes[rt.Key()] = rt
		}
	}
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
		s.Namespaces[i.Namespace].Links[i.Name] = l
	}
	for _, b := range t.Bridges {
		// STP has a clear default (off): leaving it out of the file means off,
		// so removing `stp: true` turns it off again.
		stp := b.STP != nil && *b.STP
		add(&b.Iface, &Link{Kind: KindBridge, STP: &stp})
	}
	for _, l := range t.Links {
		add(&l.A, &Link{Kind: KindVeth, Peer: &Ref{l.B.Namespace, l.B.Name}})
		add(&l.B, &Link{Kind: KindVeth, Peer: &Ref{l.A.Namespace, l.A.Name}})
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
	return s, nil
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

// CanonicalAddrs returns addresses as sorted, canonical CIDR strings.
func CanonicalAddrs(in []string) []string {
	out := make([]string, 0, len(in))
	for _, a := range in {
		if p, err := topology.ParseCIDR(a); err == nil {
			out = append(out, p.String())
		} else {
			out = append(out, a)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil
	}
	return out
}
