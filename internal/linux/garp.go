package linux

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// Announce implements reconcile.Announcer: for every link the plan
// replaced, renamed or gave another MAC, and every address the plan moved
// to a new link, it sends from the link one gratuitous ARP request for
// each IPv4 address, one unsolicited neighbour advertisement for each
// IPv6 one. A neighbour that knew the address at another MAC (a bridge
// made again under a new name: its MAC comes from its names) then takes
// the new one at once, instead of after its cache lets the old one go
// (about 30 s, during which the address does not answer: a new user's
// audit). Best effort: a link that is not there, or a send that fails, is
// let be.
func (k *Kernel) Announce(ctx context.Context, p *reconcile.Plan) {
	type link struct {
		name  string
		addrs []netip.Addr
	}
	// Addresses this plan takes from a link: one a new link then has
	// moved (a bridge renamed is deleted and made again), and neighbours
	// may know it at the old link's MAC. A link new with new addresses
	// has nobody to tell: a lab made from nothing sends nothing.
	gone := map[netip.Addr]bool{} // by address alone: a LAN spans namespaces
	taken := func(cidr string) {
		if pfx, err := netip.ParsePrefix(cidr); err == nil {
			gone[pfx.Addr()] = true
		}
	}
	for _, c := range p.Changes {
		switch {
		case c.Kind == reconcile.KindLink && (c.Action == reconcile.Delete || c.Action == reconcile.Replace) && c.OldLink != nil:
			for _, a := range c.OldLink.Addresses {
				taken(a)
			}
		case c.Kind == reconcile.KindLink && c.Action == reconcile.Delete && c.Link != nil:
			for _, a := range c.Link.Addresses {
				taken(a)
			}
		case c.Kind == reconcile.KindAddress && c.Action == reconcile.Delete:
			taken(c.Name)
		case c.Kind == reconcile.KindLink && c.Action == reconcile.Update && c.OldLink != nil && slices.ContainsFunc(c.Fields, func(f reconcile.Field) bool { return f.Name == "owner" }):
			// Left to addresses added by hand: the lab's own go from it
			// (an outside audit: a bridge renamed so sent nothing).
			for _, a := range c.OldLink.Addresses {
				taken(a)
			}
		}
	}
	byNS := map[string][]link{}
	add := func(ns string, l *reconcile.Link, all bool) {
		if l == nil || !l.Up {
			return
		}
		var addrs []netip.Addr
		for _, a := range l.Addresses {
			if pfx, err := netip.ParsePrefix(a); err == nil && announced(pfx.Addr()) && (all || gone[pfx.Addr()]) {
				addrs = append(addrs, pfx.Addr())
			}
		}
		if len(addrs) > 0 {
			byNS[ns] = append(byNS[ns], link{l.Name, addrs})
		}
	}
	for _, c := range p.Changes {
		// An address added to a link that is there: announced if it
		// moved (from another link, here or in another namespace).
		if c.Kind == reconcile.KindAddress && c.Action == reconcile.Create {
			if pfx, err := netip.ParsePrefix(c.Name); err == nil && announced(pfx.Addr()) && gone[pfx.Addr()] {
				byNS[c.Namespace] = append(byNS[c.Namespace], link{c.Dev, []netip.Addr{pfx.Addr()}})
			}
			continue
		}
		if c.Kind != reconcile.KindLink || c.Implicit || c.Action == reconcile.Delete {
			continue
		}
		// Another MAC where there was a link: every address; a new
		// link: the addresses that moved to it.
		all := c.Action == reconcile.Replace || c.OldName != ""
		for _, f := range c.Fields {
			all = all || f.Name == "mac" || f.Name == "name"
		}
		if c.Action != reconcile.Create && !all {
			continue
		}
		add(c.Namespace, c.Link, all)
		if c.PeerLink != nil && c.Link != nil && c.Link.Peer != nil {
			add(c.Link.Peer.NS, c.PeerLink, all)
		}
	}
	for ns, links := range byNS {
		if ctx.Err() != nil {
			return
		}
		h, err := k.handle(ns)
		if err != nil {
			continue
		}
		_ = InNetns(h.fd, func() error {
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ARP)))
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			for _, l := range links {
				ifc, err := net.InterfaceByName(l.name)
				if err != nil || len(ifc.HardwareAddr) != 6 {
					continue
				}
				to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifc.Index, Halen: 6}
				copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
				for _, a := range l.addrs {
					if a.Is4() {
						_ = unix.Sendto(fd, garp(ifc.HardwareAddr, a), 0, to)
					} else {
						unsolicitedNA(ifc, a)
					}
				}
			}
			return nil
		})
		k.release(h)
	}
}

// garp is a gratuitous ARP request for ip from mac, in an Ethernet frame
// to everyone: sender and target address both ip.
func garp(mac net.HardwareAddr, ip netip.Addr) []byte {
	b := make([]byte, 42)
	copy(b[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(b[6:12], mac)
	binary.BigEndian.PutUint16(b[12:], unix.ETH_P_ARP)
	binary.BigEndian.PutUint16(b[14:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[16:], 0x0800) // IPv4
	b[18], b[19] = 6, 4
	binary.BigEndian.PutUint16(b[20:], 1) // request
	copy(b[22:28], mac)
	a4 := ip.As4()
	copy(b[28:32], a4[:])
	// target hardware address: zeros
	copy(b[38:42], a4[:])
	return b
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// announced says which addresses are told: IPv4 ones (gratuitous ARP) and
// IPv6 ones but link-local (unsolicited neighbour advertisement).
func announced(a netip.Addr) bool { return a.Is4() || a.Is6() && !a.IsLinkLocalUnicast() }

// unsolicitedNA tells the link's neighbours, from ip itself, that ip is
// at the interface's MAC: an unsolicited neighbour advertisement (RFC
// 4861 7.2.6) with the override flag, to all nodes, hop limit 255, as
// the kernel sends with ndisc_notify. A neighbour with an entry for ip
// takes the new MAC (STALE, checked before use). Best effort: an address
// the kernel does not let it send from (still tentative) is let be.
func unsolicitedNA(ifc *net.Interface, ip netip.Addr) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255) != nil ||
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifc.Index) != nil ||
		unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifc.Name) != nil {
		return
	}
	if unix.Bind(fd, &unix.SockaddrInet6{Addr: ip.As16(), ZoneId: uint32(ifc.Index)}) != nil {
		return
	}
	// Type 136, code 0, checksum (the kernel's, for ICMPv6), flags:
	// override; the target; the target link-layer address option.
	m := make([]byte, 32)
	m[0] = 136
	m[4] = 0x20
	t := ip.As16()
	copy(m[8:24], t[:])
	m[24], m[25] = 2, 1
	copy(m[26:32], ifc.HardwareAddr)
	allNodes := &unix.SockaddrInet6{Addr: [16]byte{0xff, 0x02, 15: 1}, ZoneId: uint32(ifc.Index)}
	_ = unix.Sendto(fd, m, 0, allNodes)
}
