// Package topology reads and validates netplan-lab topology files.
//
// It knows YAML and the rules of ../shared/TOPOLOGY.md and nothing of the
// kernel: every value it returns carries the file position it came from, so
// later stages can still point a user at the line that caused a problem.
package topology

import "net/netip"

// Host is the reserved namespace: the one netplan-lab runs in, or the one
// named by --netns. It is never created or deleted by a topology.
const Host = "host"

// Pos is a position in the topology file (1-based). int32: a topology
// holds three in each link, and a file has at most 64 MiB of lines.
type Pos struct {
	Line int32 `json:"line"`
	Col  int32 `json:"col"`
}

// Topology is one decoded topology file.
type Topology struct {
	File string
	// Vars are the variables the file used, with the values they took.
	Vars map[string]string
	// Named are the names of every variable the file writes, also in a
	// default that was not taken (${A:-${B}} with A set names B).
	Named      map[string]bool `json:"-"`
	Name       string
	Prefix     string
	Namespaces []*Namespace // in file order; "host" included when listed
	Bridges    []*Bridge
	Links      []*Link
	Macvlans   []*Macvlan
	Ipvlans    []*Ipvlan
	Vxlans     []*Vxlan
	NAT        []*NAT
	Checks     []*Check
	// Warnings are things that are valid but surely not meant (a NAT
	// rule an earlier one shadows), with their places.
	Warnings []*Error
}

// Namespace holds the settings of one namespace listed under `namespaces:`.
type Namespace struct {
	Name    string
	Sysctls []*Sysctl
	Routes  []*Route
	// IPv6 says whether IPv6 is on in the namespace; nil is the default:
	// on only where the file gives it IPv6 (an address, a route).
	IPv6 *bool
	Pos  Pos
	Path string
}

// Sysctl is one `key: value` under a namespace's `sysctls:`.
type Sysctl struct {
	Key   string
	Value string
	Pos   Pos
	Path  string
}

// Route is one entry of a namespace's `routes:`.
type Route struct {
	To     string // "default" or a CIDR
	Via    string // gateway address, optional
	Dev    string // interface name, optional
	OnLink bool   // the gateway is on dev's link even with no subnet saying so
	Metric int
	Pos    Pos
	Path   string
}

// Iface holds the settings every interface shares.
type Iface struct {
	Name      string
	Namespace string // short name; "host" when absent
	Addresses []string
	MTU       int
	MAC       string
	Up        *bool
	Bridge    string // enslave to this bridge (same namespace)
	// Impair is what this interface's egress does to packets (veth ends,
	// macvlans, ipvlans, vxlans); a link's impair: is copied to both ends
	// that have none of their own.
	Impair *Impair
	Pos    Pos
	Path   string
}

// IsUp reports the wanted administrative state (default up).
func (i *Iface) IsUp() bool { return i.Up == nil || *i.Up }

// Bridge is one entry of `bridges:`.
type Bridge struct {
	Iface
	STP *bool
}

// Link is one veth pair from `links:`.
type Link struct {
	A, B   Iface
	MTU    int
	Impair *Impair // both ends', unless an end has its own
	Pos    Pos
	Path   string
}

// Macvlan is one entry of `macvlans:`.
type Macvlan struct {
	Iface
	Parent     string // "namespace:ifname"
	ParentNS   string
	ParentName string
	Mode       string
}

// Ipvlan is one entry of `ipvlans:`.
type Ipvlan struct {
	Iface
	Parent     string
	ParentNS   string
	ParentName string
	Mode       string
	Flag       string
}

// Vxlan is one entry of `vxlans:`.
type Vxlan struct {
	Iface
	VNI    int
	Remote string
	Group  string
	Local  string
	Dev    string
	Port   int
}

// NAT is one entry of `nat:`; exactly one of its rule kinds is set.
type NAT struct {
	Namespace   string
	Masquerade  *Masquerade
	SNAT        *SNAT
	PortForward *PortForward
	Pos         Pos
	Path        string
}

// Masquerade is SNAT to the outgoing interface's address.
type Masquerade struct {
	Source string
	Out    string
	NotOut string
}

// SNAT rewrites a source range to a fixed address.
type SNAT struct {
	Source string
	To     string
	Out    string
	NotOut string
}

// PortForward is a DNAT of one port, as `docker run -p`.
type PortForward struct {
	Proto string
	Port  int
	To    string // ip:port
	In    string
}

// Interfaces returns every interface the topology declares, in file order:
// bridges, both ends of each link, macvlans, ipvlans, vxlans.
func (t *Topology) Interfaces() []*Iface {
	var out []*Iface
	for _, b := range t.Bridges {
		out = append(out, &b.Iface)
	}
	for _, l := range t.Links {
		out = append(out, &l.A, &l.B)
	}
	for _, m := range t.Macvlans {
		out = append(out, &m.Iface)
	}
	for _, m := range t.Ipvlans {
		out = append(out, &m.Iface)
	}
	for _, v := range t.Vxlans {
		out = append(out, &v.Iface)
	}
	return out
}

// Namespace returns the settings of namespace name, or nil.
func (t *Topology) Namespace(name string) *Namespace {
	for _, n := range t.Namespaces {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// WantsIPv6 reports whether IPv6 is on in namespace ns: as its ipv6: key
// says, else when the file gives it an IPv6 address, route or NAT rule.
// (It scans the file: in a loop, use an Index.)
func (t *Topology) WantsIPv6(ns string) bool { return t.Index().WantsIPv6(ns) }

// UsesIPv6 reports whether the file gives namespace ns anything IPv6.
func (t *Topology) UsesIPv6(ns string) bool { return t.Index().UsesIPv6(ns) }

// natIs6 reports a NAT rule about IPv6 addresses.
func natIs6(r *NAT) bool {
	a := natAddr(r)
	if ap, err := netip.ParseAddrPort(a); err == nil {
		return ap.Addr().Unmap().Is6()
	}
	if p, err := netip.ParsePrefix(a); err == nil {
		return p.Addr().Unmap().Is6()
	}
	if ip, err := netip.ParseAddr(a); err == nil {
		return ip.Unmap().Is6()
	}
	return false
}

func natAddr(r *NAT) string {
	switch {
	case r.Masquerade != nil:
		return r.Masquerade.Source
	case r.SNAT != nil:
		return r.SNAT.To
	case r.PortForward != nil:
		return r.PortForward.To
	}
	return ""
}
