package linux

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/topology"
)

// ifaProto is IFA_PROTO (Linux 6.3), and ifaProtoKernelLL the value the
// kernel gives the link-local addresses it makes: the one added for a new
// MAC is marked as the kernel marks its own (older kernels ignore it).
const (
	ifaProto         = 11
	ifaProtoKernelLL = 3
)

// eui64LinkLocal is the IPv6 link-local address the kernel makes from a
// 6-byte MAC (addr_gen_mode eui64, the default): fe80::/64 with the MAC's
// EUI-64 (the universal/local bit flipped, ff:fe in the middle).
func eui64LinkLocal(mac net.HardwareAddr) net.IP {
	if len(mac) != 6 {
		return nil
	}
	ip := make(net.IP, net.IPv6len)
	ip[0], ip[1] = 0xfe, 0x80
	ip[8], ip[9], ip[10] = mac[0]^0x02, mac[1], mac[2]
	ip[11], ip[12] = 0xff, 0xfe
	ip[13], ip[14], ip[15] = mac[3], mac[4], mac[5]
	return ip
}

// kernelLinkLocal is the link-local address the kernel makes for
// interface ifname with MAC mac: its EUI-64 where the interface's
// addr_gen_mode is eui64 (0), nil in another mode (or with IPv6 off).
func (h *nsHandle) kernelLinkLocal(ifname string, mac net.HardwareAddr) net.IP {
	key := "net.ipv6.conf." + topology.SysctlKeyName(ifname) + ".addr_gen_mode"
	if sc, err := readSysctls(h.fd, []string{key}); err != nil || strings.TrimSpace(sc[key]) != "0" {
		return nil
	}
	return eui64LinkLocal(mac)
}

// followLinkLocal gives an interface whose MAC changed from old to new the
// link-local address the kernel would have made from the new one, in place
// of the one it made from the old: the kernel makes it when the interface
// comes up and never again, so after a MAC change (a rename changes a
// derived MAC) the interface kept an address of a MAC it no longer has
// (one a new interface with the old name, and so the old MAC, then makes
// too: a duplicate on the same link). Only the kernel's own EUI-64 address
// is swapped: none is there with IPv6 off, with another addr_gen_mode, or
// when someone removed it; the new one is added before the old goes, so
// the fe80::/64 route stays.
func (h *nsHandle) followLinkLocal(index int, ifname string, old, new net.HardwareAddr) error {
	// Only where the kernel makes EUI-64 addresses: in another mode one
	// from the old MAC was added by hand (an outside audit: with mode
	// none, it went, and one the kernel would not have made came).
	was, now := h.kernelLinkLocal(ifname, old), eui64LinkLocal(new)
	if was == nil || now == nil || was.Equal(now) {
		return nil
	}
	link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: index}}
	addrs, err := h.h.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IP.Equal(was) }) {
		return nil
	}
	req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfAddrmsg(unix.AF_INET6)
	msg.Index, msg.Prefixlen, msg.Scope = uint32(index), 64, unix.RT_SCOPE_LINK
	msg.Flags = unix.IFA_F_PERMANENT
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, now))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, now))
	req.AddData(nl.NewRtAttr(ifaProto, []byte{ifaProtoKernelLL}))
	if err := h.exec(req); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	if err := h.h.AddrDel(link, &netlink.Addr{IPNet: &net.IPNet{IP: was, Mask: net.CIDRMask(64, 128)}}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return err
	}
	return nil
}

// keptOnLink is what the kernel takes from an interface that goes down
// and does not give back when it comes up: its IPv6 link-local addresses
// (keep_addr_on_down keeps the others) and its permanent neighbours.
type keptOnLink struct {
	linkLocal []netlink.Addr
	neigh     []netlink.Neigh
}

// keepOnLink notes them before a rename takes the interface down for a
// moment, or a MAC change (the kernel flushes its neighbours then,
// permanent ones too): an outside audit saw a link-local and a permanent
// neighbour added by hand go with a rename. The kernel's own link-local
// (EUI-64 of the MAC, in that mode) it makes again, or followLinkLocal
// does for a new MAC: not noted.
func (h *nsHandle) keepOnLink(l netlink.Link) (keptOnLink, error) {
	var k keptOnLink
	index := l.Attrs().Index
	addrs, err := h.h.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return k, fmt.Errorf("list its addresses: %w", err)
	}
	kernels := h.kernelLinkLocal(l.Attrs().Name, l.Attrs().HardwareAddr)
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() && !a.IP.Equal(kernels) {
			k.linkLocal = append(k.linkLocal, a)
		}
	}
	neigh, err := h.h.NeighList(index, netlink.FAMILY_ALL)
	if err != nil {
		return k, fmt.Errorf("list its neighbours: %w", err)
	}
	for _, n := range neigh {
		if n.State&netlink.NUD_PERMANENT != 0 {
			k.neigh = append(k.neigh, n)
		}
	}
	return k, nil
}

// putBackOnLink adds again, once the interface is up, what keepOnLink
// noted (the kernel's own link-local is there already: left as it is).
func (h *nsHandle) putBackOnLink(l netlink.Link, k keptOnLink) error {
	for _, a := range k.linkLocal {
		a := netlink.Addr{IPNet: a.IPNet, Flags: unix.IFA_F_NODAD}
		if err := h.h.AddrAdd(l, &a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("put back its link-local address %s: %w", a.IPNet, err)
		}
	}
	for _, n := range k.neigh {
		n.LinkIndex = l.Attrs().Index
		if err := h.h.NeighSet(&n); err != nil {
			return fmt.Errorf("put back its neighbour %s: %w", n.IP, err)
		}
	}
	return nil
}
