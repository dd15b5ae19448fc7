package topology

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Check is one entry of `checks:`: what must (or must not) reach what,
// run by `netplan-lab check` from inside its From namespace.
type Check struct {
	From   string
	To     string // a namespace (its first address), "NS:IF", or an address
	Proto  string // icmp (default), tcp, udp
	Port   int
	Expect string // reachable (default), unreachable
	Lands  string // tcp/udp: the namespace that must answer (where a DNAT lands)
	Dev    string // send out of this interface of From (ping -I)
	Pos    Pos
	Path   string
}

func (d *decoder) check(n *yaml.Node, path string) *Check {
	c := &Check{Pos: pos(n), Path: path}
	d.mapping(n, path, map[string]func(k, v *yaml.Node, p string){
		"from":   func(k, v *yaml.Node, p string) { c.From = d.str(v, p) },
		"to":     func(k, v *yaml.Node, p string) { c.To = d.str(v, p) },
		"proto":  func(k, v *yaml.Node, p string) { c.Proto = d.str(v, p) },
		"port":   func(k, v *yaml.Node, p string) { c.Port = d.integer(v, p) },
		"expect": func(k, v *yaml.Node, p string) { c.Expect = d.str(v, p) },
		"lands":  func(k, v *yaml.Node, p string) { c.Lands = d.str(v, p) },
		"dev":    func(k, v *yaml.Node, p string) { c.Dev = d.str(v, p) },
	}, []string{"from", "to"})
	if c.Proto == "" {
		c.Proto = "icmp"
	}
	if c.Expect == "" {
		c.Expect = "reachable"
	}
	return c
}

func (d *decoder) validateCheck(t *Index, c *Check, listed func(ns string) bool, declared func(ns, name string) bool) {
	if c.From != "" && !listed(c.From) {
		d.at(c.Pos, join(c.Path, "from"), "namespace %q is not listed under namespaces", c.From)
	} else if c.Dev != "" && !declared(c.From, c.Dev) && c.From != Host {
		d.at(c.Pos, join(c.Path, "dev"), "interface %q is not declared in namespace %q", c.Dev, c.From)
	}
	if ns, ifname, ok := strings.Cut(c.To, ":"); ok && !strings.Contains(ifname, ":") && ns != "" {
		if !listed(ns) {
			d.at(c.Pos, join(c.Path, "to"), "namespace %q is not listed under namespaces", ns)
		} else if !declared(ns, ifname) {
			d.at(c.Pos, join(c.Path, "to"), "interface %q is not declared in namespace %q", ifname, ns)
		} else if _, ok := t.IfaceAddr(ns, ifname); !ok && !d.badAddress[ns] {
			d.at(c.Pos, join(c.Path, "to"), "interface %s has no address to check", c.To)
		}
	} else if _, err := netip.ParseAddr(c.To); err != nil && c.To != "" {
		if !listed(c.To) {
			d.at(c.Pos, join(c.Path, "to"), "%q is neither a namespace of the file, NS:IF, nor an IP address", c.To)
		} else if _, _, ok := t.FirstAddr(c.To); !ok && !d.badAddress[c.To] {
			d.at(c.Pos, join(c.Path, "to"), "namespace %q has no address to check (none of its interfaces has one)", c.To)
		}
	}
	switch c.Proto {
	case "icmp":
		if c.Port != 0 {
			d.at(c.Pos, join(c.Path, "port"), "icmp has no port; use proto: tcp or udp")
		}
		if c.Lands != "" {
			d.at(c.Pos, join(c.Path, "lands"), "lands needs proto tcp or udp (a listener answers with its namespace)")
		}
	case "tcp", "udp":
		if c.Port < 1 || c.Port > 65535 {
			d.at(c.Pos, join(c.Path, "port"), "%s needs a port in 1-65535", c.Proto)
		}
	default:
		d.at(c.Pos, join(c.Path, "proto"), "%q is not one of icmp, tcp, udp", c.Proto)
	}
	if c.Expect != "reachable" && c.Expect != "unreachable" {
		d.at(c.Pos, join(c.Path, "expect"), "%q is not one of reachable, unreachable", c.Expect)
	}
	if c.Lands != "" {
		if !listed(c.Lands) {
			d.at(c.Pos, join(c.Path, "lands"), "namespace %q is not listed under namespaces", c.Lands)
		}
		if c.Expect == "unreachable" {
			d.at(c.Pos, join(c.Path, "lands"), "lands says where a connection arrives: it needs expect: reachable")
		}
	}
}

// FirstAddr is the address a namespace's name stands for (in checks, and
// in the hosts file exec and shell see): the first address of its first
// interface that has one, interfaces in the order bridges, links (a end,
// then b end), macvlans, ipvlans, vxlans, each in file order.
// (It scans the file: in a loop, use an Index.)
func (t *Topology) FirstAddr(ns string) (netip.Addr, string, bool) { return t.Index().FirstAddr(ns) }

// IfaceAddr is the first address of interface ifname in namespace ns.
func (t *Topology) IfaceAddr(ns, ifname string) (netip.Addr, bool) {
	return t.Index().IfaceAddr(ns, ifname)
}

// CheckTarget resolves a check's `to`: the address, and the namespace it
// belongs to when the file says (a name or NS:IF).
func (t *Topology) CheckTarget(to string) (addr netip.Addr, ns string, err error) {
	if a, err := netip.ParseAddr(to); err == nil {
		return a.Unmap(), "", nil
	}
	known := func(ns string) bool { return ns == Host || t.Namespace(ns) != nil }
	if n, ifname, ok := strings.Cut(to, ":"); ok {
		if a, ok := t.IfaceAddr(n, ifname); ok {
			return a, n, nil
		}
		// Say what is wrong (an outside audit: "has no address" for a
		// namespace that is not in the file, and for an address mistyped).
		switch {
		case strings.Trim(to, "0123456789abcdefABCDEF:.") == "":
			return netip.Addr{}, "", fmt.Errorf("%q is not an address", to)
		case !known(n):
			return netip.Addr{}, "", fmt.Errorf("namespace %q is not in the file", n)
		case !slices.ContainsFunc(t.Interfaces(), func(i *Iface) bool { return i.Namespace == n && i.Name == ifname }):
			return netip.Addr{}, "", fmt.Errorf("namespace %q has no interface %q in the file", n, ifname)
		}
		return netip.Addr{}, "", fmt.Errorf("interface %s has no address", to)
	}
	if a, _, ok := t.FirstAddr(to); ok {
		return a, to, nil
	}
	switch {
	case strings.Trim(to, "0123456789.") == "":
		return netip.Addr{}, "", fmt.Errorf("%q is not an address", to)
	case !known(to):
		return netip.Addr{}, "", fmt.Errorf("%q is neither an address, a namespace of the file, nor NAMESPACE:INTERFACE", to)
	}
	return netip.Addr{}, "", fmt.Errorf("namespace %q has no address", to)
}
