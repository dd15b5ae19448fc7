// Package path explains how a packet from one lab namespace to an address
// travels: hop by hop, from the kernel's own route lookups in each
// namespace, following veth peers, bridge ports, macvlan/ipvlan parents and
// VXLAN tunnels to the next namespace that routes it, with the NAT rules
// that rewrite it, and where and why it stops.
package path

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// Kernel is what path reads: the lab's observed state, route lookups and
// sysctls in a namespace.
type Kernel interface {
	RouteGet(ns string, dst net.IP) ([]netlink.Route, error)
	ReadSysctls(ns string, keys []string) (map[string]string, error)
	LinkName(ns string, index int) string
}

// Hop is one namespace the packet is routed in.
type Hop struct {
	Namespace string `json:"namespace"`
	In        string `json:"in,omitempty"`
	Out       string `json:"out,omitempty"`
	Route     string `json:"route,omitempty"`
	Src       string `json:"src,omitempty"`
	Dst       string `json:"dst"`
	// NAT lists the rewrites of this namespace's lab NAT rules.
	NAT []string `json:"nat,omitempty"`
	// L2 is the way to the next namespace, interface by interface
	// ("c1:eth0", "host:veth-c1", "host:hwchiu0 (bridge)", ...).
	L2 []string `json:"l2,omitempty"`
}

// Result is a packet's whole way.
type Result struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Proto  string `json:"proto"`
	Port   int    `json:"port,omitempty"`
	Hops   []Hop  `json:"hops"`
	Result string `json:"result"` // delivered, dropped, no route
	Reason string `json:"reason,omitempty"`
	// Notes are what the verdict does not account for (a forward chain of
	// someone else's, whose rules path does not evaluate).
	Notes []string `json:"notes,omitempty"`
	// Reply, on a packet delivered, is the way of the reply back to the
	// packet's source as it arrived, when the reply does not get there:
	// a ping or a connection fails all the same.
	Reply *Result `json:"reply,omitempty"`
}

// OK reports whether the packet gets there and its reply comes back.
func (r *Result) OK() bool { return r.Result == "delivered" && r.Reply == nil }

// Trace follows a packet of proto (icmp, tcp, udp) to port from namespace
// from to dst through the observed state of the lab.
func Trace(k Kernel, s *reconcile.State, from string, dst netip.Addr, proto string, port int) *Result {
	r, at, in, src := trace(k, s, from, dst, proto, port)
	if r.Result != "delivered" || in == "" || !src.IsValid() {
		return r
	}
	// The reply, from where the packet arrived to its source as it
	// arrived (after any NAT on the way, which the reply meets again in
	// the namespace that did it: its address there is that
	// namespace's). An outside audit: "delivered" for a ping whose reply
	// had no route back.
	back, _, _, _ := trace(k, s, at, src, proto, 0)
	for _, n := range back.Notes {
		r.Notes = append(r.Notes, "on the way back: "+n)
	}
	if back.Result != "delivered" {
		back.Notes = nil
		r.Reply = back
	}
	return r
}

// trace follows one packet; it returns where it was delivered (the
// namespace, the interface it came in by, "" if it never left its own,
// and its source address as it arrived).
func trace(k Kernel, s *reconcile.State, from string, dst netip.Addr, proto string, port int) (*Result, string, string, netip.Addr) {
	r := &Result{From: from, To: dst.String(), Proto: proto, Port: port, Hops: []Hop{}}
	ns, in := from, ""
	var src netip.Addr
	seen := map[string]bool{}
	for hopN := 0; hopN < 32; hopN++ {
		hop := Hop{Namespace: ns, In: in, Dst: dst.String()}
		n := s.NS(ns)
		if n == nil {
			r.Result, r.Reason = "dropped", fmt.Sprintf("namespace %s is not part of the lab", ns)
			return r, ns, in, src
		}
		// A port forward may rewrite the destination first: arriving
		// (prerouting), or sent by the namespace itself (output), whose
		// source is chosen for the destination before the rewrite.
		{
			if to, rule, ok := dnat(n, dst, in, proto, port, s); ok {
				if in == "" && !src.IsValid() {
					if rs, err := k.RouteGet(ns, dst.AsSlice()); err == nil && len(rs) > 0 && rs[0].Src != nil {
						src, _ = netip.AddrFromSlice(rs[0].Src)
						src = src.Unmap()
						hop.Src = src.String()
					}
				}
				hop.NAT = append(hop.NAT, fmt.Sprintf("dnat %s:%d -> %s (%s)", dst, port, to, rule))
				dst, port = to.Addr(), int(to.Port())
				hop.Dst = dst.String()
			}
		}
		if local(n, dst) {
			r.Hops = append(r.Hops, hop)
			if in != "" {
				if why := reversePath(k, ns, in, src); why != "" {
					r.Result, r.Reason = "dropped", why
					return r, ns, in, src
				}
			}
			// An input chain of someone else's decides what reaches the
			// namespace's own addresses, as a forward chain does what it
			// routes (an outside audit: "delivered" past a policy drop).
			if why := othersChains(r, ns, "an input", "packets to its own addresses", n.InputDrop, n.InputRules); why != "" {
				r.Result, r.Reason = "dropped", why
				return r, ns, in, src
			}
			r.Result = "delivered"
			if in == "" {
				r.Reason = dst.String() + " is an address of " + ns + " itself"
			} else {
				r.Reason = dst.String() + " is an address of " + ns
			}
			return r, ns, in, src
		}
		if in != "" {
			if why := forwardBlocked(k, ns, in, src, dst, n); why != "" {
				r.Hops = append(r.Hops, hop)
				r.Result, r.Reason = "dropped", why
				return r, ns, in, src
			}
			// A drop policy decides only what its rules leave: path does
			// not evaluate rules it did not make (an outside audit: Docker's
			// policy drop with accept rules was reported as a drop).
			if why := othersChains(r, ns, "a forward", "forwarded packets", n.ForwardDrop, n.ForwardRules); why != "" {
				r.Hops = append(r.Hops, hop)
				r.Result, r.Reason = "dropped", why
				return r, ns, in, src
			}
		}
		routes, err := k.RouteGet(ns, dst.AsSlice())
		if err != nil || len(routes) == 0 {
			r.Hops = append(r.Hops, hop)
			r.Result = "no route"
			r.Reason = fmt.Sprintf("namespace %s has no route to %s", ns, dst)
			if err != nil && !errors.Is(err, unix.ENETUNREACH) {
				r.Reason += " (" + err.Error() + ")"
			}
			// An interface down takes its routes with it (an outside
			// audit: "no route" alone, for a source whose eth0 was down).
			var down []string
			for _, ln := range slices.Sorted(maps.Keys(n.Links)) {
				if l := n.Links[ln]; !l.Up && len(l.Addresses)+len(l.Foreign) > 0 {
					down = append(down, ln)
				}
			}
			if len(down) > 0 {
				r.Reason += fmt.Sprintf(": %s down, and the kernel drops the routes of an interface that is down", strings.Join(down, ", ")+map[bool]string{true: " is", false: " are"}[len(down) == 1])
			}
			return r, ns, in, src
		}
		rt := routes[0]
		out := k.LinkName(ns, rt.LinkIndex)
		hop.Out = out
		next := dst
		if rt.Gw != nil {
			next, _ = netip.AddrFromSlice(rt.Gw)
			next = next.Unmap()
			hop.Route = fmt.Sprintf("via %s dev %s", next, out)
		} else {
			hop.Route = "dev " + out + " (on-link)"
		}
		if in == "" && rt.Src != nil && !src.IsValid() {
			src, _ = netip.AddrFromSlice(rt.Src)
			src = src.Unmap()
			hop.Src = src.String()
		}
		if !src.IsValid() {
			src = firstAddrOf(n, out)
			hop.Src = src.String()
		}
		if to, rule, ok := snat(n, src, out); ok {
			hop.NAT = append(hop.NAT, fmt.Sprintf("snat %s -> %s (%s)", src, to, rule))
			src = to
		}
		l := n.Links[out]
		if l != nil && !l.Up {
			r.Hops = append(r.Hops, hop)
			r.Result, r.Reason = "dropped", fmt.Sprintf("%s:%s is down", ns, out)
			return r, ns, in, src
		}
		nextNS, nextIf, way, why := l2(k, s, reconcile.Ref{NS: ns, Name: out}, next)
		hop.L2 = way
		r.Hops = append(r.Hops, hop)
		if why != "" {
			r.Result, r.Reason = "dropped", why
			return r, ns, in, src
		}
		key := nextNS + "|" + dst.String()
		if seen[key] {
			r.Result, r.Reason = "dropped", "a routing loop: it comes back to "+nextNS
			return r, ns, in, src
		}
		seen[key] = true
		ns, in = nextNS, nextIf
	}
	r.Result, r.Reason = "dropped", "more than 32 hops"
	return r, ns, in, src
}

// othersChains weighs the base chains of someone else's on one hook of
// namespace ns ("a forward", "an input"): one with policy drop and no
// rules drops every packet (why, returned); the others' rules path does
// not evaluate, so they are notes on r.
func othersChains(r *Result, ns, chain, what string, drop, rules []string) string {
	for _, c := range drop {
		if strings.HasSuffix(c, reconcile.ForwardDropNoRules) {
			return fmt.Sprintf("namespace %s drops %s: %s chain with policy drop and no rules (%s)", ns, what, chain, strings.TrimSuffix(c, reconcile.ForwardDropNoRules))
		}
	}
	if len(drop) > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("namespace %s has %s chain with policy drop (%s): path does not evaluate its rules; unless one accepts this packet, it is dropped there", ns, chain, strings.Join(drop, ", ")))
	}
	if len(rules) > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("namespace %s has %s chain with rules of someone else's (%s): path does not evaluate them; one may drop this packet there", ns, chain, strings.Join(rules, ", ")))
	}
	return ""
}

func local(n *reconcile.Namespace, a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	for _, l := range n.Links {
		for _, c := range append(append([]string(nil), l.Addresses...), l.Foreign...) {
			if p, err := netip.ParsePrefix(c); err == nil && p.Addr() == a {
				return true
			}
		}
	}
	return false
}

func firstAddrOf(n *reconcile.Namespace, dev string) netip.Addr {
	if l := n.Links[dev]; l != nil {
		for _, c := range l.Addresses {
			if p, err := netip.ParsePrefix(c); err == nil {
				return p.Addr()
			}
		}
	}
	return netip.Addr{}
}

// forwardBlocked says why namespace ns would not forward a packet that
// came in on in: forwarding off, reverse-path filter, a drop policy.
func forwardBlocked(k Kernel, ns, in string, src, dst netip.Addr, n *reconcile.Namespace) string {
	if dst.Is6() {
		sc, _ := k.ReadSysctls(ns, []string{"net.ipv6.conf.all.forwarding"})
		if sc["net.ipv6.conf.all.forwarding"] == "0" {
			return fmt.Sprintf("IPv6 forwarding is off in namespace %s (net.ipv6.conf.all.forwarding = 0): it does not route packets that are not its own", ns)
		}
	} else {
		kin := topology.SysctlKeyName(in) // br.0: net.ipv4.conf.br/0.forwarding
		fwd := "net.ipv4.conf." + kin + ".forwarding"
		sc, _ := k.ReadSysctls(ns, []string{"net.ipv4.ip_forward", fwd})
		// The kernel routes what comes in on an interface by that
		// interface's forwarding alone; ip_forward writes every
		// interface's, but one may differ from it (an outside audit: path
		// said dropped by ip_forward 0 where the interface forwarded).
		f, ok := sc[fwd]
		if !ok {
			f = sc["net.ipv4.ip_forward"]
		}
		if f == "0" {
			if sc["net.ipv4.ip_forward"] == "0" {
				return fmt.Sprintf("ip_forward is 0 in namespace %s (net.ipv4.ip_forward): it does not route packets that are not its own", ns)
			}
			return fmt.Sprintf("forwarding is off on %s in namespace %s (net.ipv4.conf.%s.forwarding = 0): it does not route what comes in there", in, ns, kin)
		}
		return reversePath(k, ns, in, src)
	}
	return ""
}

// reversePath is why rp_filter in namespace ns drops an IPv4 packet from
// src that came in on in, or "": the kernel checks it for every packet,
// to be routed on or delivered there (an outside audit: path said
// delivered where the destination's strict rp_filter dropped it).
func reversePath(k Kernel, ns, in string, src netip.Addr) string {
	if !src.Is4() {
		return ""
	}
	kin := topology.SysctlKeyName(in)
	sc, _ := k.ReadSysctls(ns, []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf." + kin + ".rp_filter"})
	all, _ := strconv.Atoi(sc["net.ipv4.conf.all.rp_filter"])
	own, _ := strconv.Atoi(sc["net.ipv4.conf."+kin+".rp_filter"])
	rp := max(all, own)
	if rp == 0 {
		return ""
	}
	routes, err := k.RouteGet(ns, src.AsSlice())
	switch {
	case err != nil || len(routes) == 0:
		return fmt.Sprintf("rp_filter %d in namespace %s: it has no route back to the source %s", rp, ns, src)
	case rp == 1 && k.LinkName(ns, routes[0].LinkIndex) != in:
		return fmt.Sprintf("rp_filter 1 (strict) in namespace %s: the way back to %s is through %s, not %s, where it came in",
			ns, src, k.LinkName(ns, routes[0].LinkIndex), in)
	}
	return ""
}

// l2 walks from interface start, over veth peers, bridges (as switches),
// macvlan/ipvlan parents and VXLANs of one VNI, to the interface that
// holds addr; it returns that interface's namespace and name and the way.
func l2(k Kernel, s *reconcile.State, start reconcile.Ref, addr netip.Addr) (ns, ifname string, way []string, why string) {
	prev := map[reconcile.Ref]*reconcile.Ref{start: nil}
	queue := []reconcile.Ref{start}
	label := func(r reconcile.Ref) string {
		if l := s.Link(r); l != nil && l.Kind != reconcile.KindVeth {
			return r.String() + " (" + l.Kind + ")"
		}
		return r.String()
	}
	var down, tunnel string
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		l := s.Link(cur)
		if l == nil {
			continue
		}
		if !l.Up {
			// Down: it neither holds an address for the link (an outside
			// audit: path said delivered to a destination whose eth0 was
			// down) nor passes frames on.
			if down == "" && cur != start {
				down = cur.String()
			}
			continue
		}
		if cur != start && holds(l, addr) {
			for r := &cur; r != nil; r = prev[*r] {
				way = append([]string{label(*r)}, way...)
			}
			return cur.NS, cur.Name, way, ""
		}
		for _, nb := range neighbours(s, cur, l) {
			if nl := s.Link(nb); l.VXLAN != nil && nl != nil && nl.VXLAN != nil && l.VXLAN.Local != "" {
				if la, err := netip.ParseAddr(l.VXLAN.Local); err == nil && !local(s.NS(cur.NS), la) {
					if tunnel == "" {
						tunnel = fmt.Sprintf("the VXLAN %s sends from local %s, which is no address of namespace %s any more (the underlay)", cur, la, cur.NS)
					}
					continue
				}
			}
			if nl := s.Link(nb); l.VXLAN != nil && nl != nil && nl.VXLAN != nil && l.VXLAN.Remote != "" {
				// Through the tunnel only if the underlay reaches the
				// far end, and the far end is where the remote is, on the
				// port it listens on (an outside audit: a remote: that
				// named nobody was said to deliver).
				if r, err := k.RouteGet(cur.NS, net.ParseIP(l.VXLAN.Remote)); err != nil || len(r) == 0 {
					if tunnel == "" {
						tunnel = fmt.Sprintf("the VXLAN %s cannot reach its remote %s: namespace %s has no route to it (the underlay)", cur, l.VXLAN.Remote, cur.NS)
					}
					continue
				}
				ra, err := netip.ParseAddr(l.VXLAN.Remote)
				if far := s.NS(nb.NS); err == nil && far != nil && !local(far, ra) {
					if tunnel == "" {
						tunnel = fmt.Sprintf("the VXLAN %s sends to remote %s, which is no address of namespace %s, where its far end %s is (a wrong remote:, or an address gone from the underlay)", cur, ra, nb.NS, nb)
					}
					continue
				}
				if far := s.NS(nb.NS); err == nil && far != nil {
					if under := holderOf(far, ra); under != "" && !far.Links[under].Up {
						if tunnel == "" {
							tunnel = fmt.Sprintf("the VXLAN %s sends to remote %s, on %s:%s, which is down (the underlay)", cur, ra, nb.NS, under)
						}
						continue
					}
				}
				if l.VXLAN.Port != nl.VXLAN.Port {
					if tunnel == "" {
						tunnel = fmt.Sprintf("the VXLAN %s sends to port %d, and its far end %s listens on %d", cur, l.VXLAN.Port, nb, nl.VXLAN.Port)
					}
					continue
				}
			}
			if _, ok := prev[nb]; !ok {
				c := cur
				prev[nb] = &c
				queue = append(queue, nb)
			}
		}
	}
	why = fmt.Sprintf("nothing on the link of %s holds %s (no neighbour answers ARP or neighbour discovery)", start, addr)
	if down != "" {
		why = fmt.Sprintf("%s is down, and nothing else on the link of %s holds %s", down, start, addr)
	}
	if tunnel != "" {
		why = tunnel
	}
	return "", "", nil, why
}

// holderOf names the interface of namespace n that holds address a, or "".
func holderOf(n *reconcile.Namespace, a netip.Addr) string {
	for _, ln := range slices.Sorted(maps.Keys(n.Links)) {
		if holds(n.Links[ln], a) {
			return ln
		}
	}
	return ""
}

func holds(l *reconcile.Link, a netip.Addr) bool {
	for _, c := range append(append([]string(nil), l.Addresses...), l.Foreign...) {
		if p, err := netip.ParsePrefix(c); err == nil && p.Addr() == a {
			return true
		}
	}
	return false
}

// neighbours are the interfaces a frame leaving (or entering) r reaches.
func neighbours(s *reconcile.State, r reconcile.Ref, l *reconcile.Link) []reconcile.Ref {
	var out []reconcile.Ref
	if l.Peer != nil {
		out = append(out, *l.Peer)
	}
	if l.Master != "" {
		out = append(out, reconcile.Ref{NS: r.NS, Name: l.Master})
	}
	if l.Parent != nil {
		out = append(out, *l.Parent)
	}
	for _, name := range s.SortedNames() {
		for _, ln := range slices.Sorted(maps.Keys(s.Namespaces[name].Links)) {
			o := s.Namespaces[name].Links[ln]
			ref := reconcile.Ref{NS: name, Name: ln}
			switch {
			case name == r.NS && o.Master == r.Name: // a port of this bridge
				out = append(out, ref)
			case o.Parent != nil && *o.Parent == r: // a child of this interface
				out = append(out, ref)
			case l.VXLAN != nil && o.VXLAN != nil && o.VXLAN.VNI == l.VXLAN.VNI && ref != r: // the tunnel's far end
				out = append(out, ref)
			}
		}
	}
	return out
}

// dnat finds the lab's port_forward of namespace n that rewrites a packet
// to dst:port arriving on in.
func dnat(n *reconcile.Namespace, dst netip.Addr, in, proto string, port int, s *reconcile.State) (netip.AddrPort, string, bool) {
	if proto == "icmp" || !local(n, dst) {
		return netip.AddrPort{}, "", false
	}
	for _, id := range natOrder(n) {
		r := n.NAT[id]
		// From the namespace itself (in == ""), the output chain has it
		// whatever its in.
		if r.Kind != reconcile.NATPortForward || r.Proto != proto || r.Port != port || (in != "" && r.In != "" && r.In != in) {
			continue
		}
		if to, err := netip.ParseAddrPort(r.To); err == nil {
			return to, "nat " + id, true
		}
	}
	return netip.AddrPort{}, "", false
}

// snat finds the lab's masquerade or snat of n for a packet from src
// leaving through out.
func snat(n *reconcile.Namespace, src netip.Addr, out string) (netip.Addr, string, bool) {
	for _, id := range natOrder(n) {
		r := n.NAT[id]
		if r.Kind != reconcile.NATMasquerade && r.Kind != reconcile.NATSNAT {
			continue
		}
		if p, err := netip.ParsePrefix(r.Source); r.Source != "" && (err != nil || !p.Contains(src)) {
			continue
		}
		if (r.Out != "" && r.Out != out) || (r.NotOut != "" && r.NotOut == out) {
			continue
		}
		if r.Kind == reconcile.NATSNAT {
			if a, err := netip.ParseAddr(r.To); err == nil {
				return a, "nat " + id, true
			}
			continue
		}
		if a := firstAddrOf(n, out); a.IsValid() {
			return a, "nat " + id, true
		}
	}
	return netip.Addr{}, "", false
}

// natOrder is the order the kernel's chains hold the lab's rules in.
func natOrder(n *reconcile.Namespace) []string {
	var ids []string
	seen := map[string]bool{}
	for _, chain := range reconcile.NATChainOrder {
		for _, id := range n.NATChains[chain] {
			if n.NAT[id] != nil && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// Text writes the result for a person.
func (r *Result) Text() string {
	var b strings.Builder
	what := r.Proto
	if r.Port != 0 {
		what += fmt.Sprintf("/%d", r.Port)
	}
	fmt.Fprintf(&b, "path %s -> %s (%s)\n", r.From, r.To, what)
	for i, h := range r.Hops {
		fmt.Fprintf(&b, "%2d  %s", i+1, h.Namespace)
		if h.In != "" {
			fmt.Fprintf(&b, ", in %s", h.In)
		}
		if h.Out != "" {
			how := "on-link"
			if via, ok := strings.CutPrefix(h.Route, "via "); ok {
				how, _, _ = strings.Cut(via, " ")
				how = "via " + how
			}
			fmt.Fprintf(&b, ", out %s (%s)", h.Out, how)
			if h.Src != "" && i == 0 {
				fmt.Fprintf(&b, ", src %s", h.Src)
			}
		}
		b.WriteString("\n")
		for _, n := range h.NAT {
			fmt.Fprintf(&b, "      %s\n", n)
		}
		if len(h.L2) > 0 {
			fmt.Fprintf(&b, "      over %s\n", strings.Join(h.L2, " -> "))
		}
	}
	fmt.Fprintf(&b, "%s: %s\n", r.Result, r.Reason)
	if r.Reply != nil {
		fmt.Fprintf(&b, "but the reply does not come back:\n%s", r.Reply.Text())
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	return b.String()
}
