package linux

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Reading a sysctl under /proc/sys/net/ipv6 costs a walk over every
// network namespace on the machine: the kernel tells each namespace's
// "ipv6" directory from the others' by comparing them in turn (about 90 µs
// with a thousand namespaces). Observing a lab of N namespaces that way is
// O(N²). A namespace's IPv6 switch (net.ipv6.conf.{all,default}.disable_ipv6)
// shows in its interfaces instead: writing "all" sets every interface's
// disable_ipv6, and "default" is what each new one starts with. The link
// dump that observation makes anyway carries each interface's value
// (IFLA_AF_SPEC > AF_INET6 > IFLA_INET6_CONF), so where the file wants
// both switches at the same value and every interface has that value, the
// switches are taken to have it, and /proc is read only where an interface
// disagrees (a switch changed by hand shows there: "all" at once, "default"
// on the next interface made).

// devconfDisableIPv6 is DEVCONF_DISABLE_IPV6, the index of disable_ipv6 in
// IFLA_INET6_CONF (include/uapi/linux/ipv6.h).
const devconfDisableIPv6 = 26

// devconfPromote is where promote_secondaries is in IFLA_INET_CONF:
// IPV4_DEVCONF_PROMOTE_SECONDARIES (20, include/uapi/linux/ip.h) less one
// (the array starts at IPV4_DEVCONF_FORWARDING, 1).
const devconfPromote = 19

// rtextFilterSkipStats is RTEXT_FILTER_SKIP_STATS: the dump leaves out
// interface counters, which observation does not use.
const rtextFilterSkipStats = 1 << 3

// dumpedLink is a link from a raw dump with its IPv6 disable_ipv6 (-1: the
// kernel gave none, as for an interface with an MTU below IPv6's minimum).
type dumpedLink struct {
	link        netlink.Link
	disableIPv6 int
	promote     int   // its own net.ipv4.conf.IF.promote_secondaries (-1: the kernel gave none)
	stp         *bool // a bridge's STP state
}

// linkDump lists the namespace's links, as netlink's LinkList does, with
// each one's disable_ipv6 and, for a bridge, its STP state.
func (h *nsHandle) linkDump() ([]dumpedLink, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_EXT_MASK, nl.Uint32Attr(rtextFilterSkipStats)))
	return dumpAll(h, req, unix.RTM_NEWLINK, func(m []byte) (dumpedLink, bool, error) {
		d, err := parseLinkMsg(m)
		return d, err == nil, err
	})
}

// dumpAll runs a dump on the handle's socket, again while the kernel says
// it was interrupted (retry), and collects what parse makes of each reply
// of type want (those it says not ok are left out; the first error it
// gives fails the dump).
func dumpAll[T any](h *nsHandle, req *nl.NetlinkRequest, want uint16, parse func(m []byte) (T, bool, error)) ([]T, error) {
	return retry(func() ([]T, error) {
		var out []T
		var perr error
		err := h.do(req, want, func(m []byte) {
			v, ok, err := parse(m)
			perr = cmp.Or(perr, err)
			if ok {
				out = append(out, v)
			}
		})
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
		if perr != nil {
			return nil, perr
		}
		return out, err
	})
}

// eachAttr walks the netlink attributes in b, handing f each one's type
// (NLA_F_NESTED and NLA_F_NET_BYTEORDER masked off) and value. It stops at
// one that does not fit.
func eachAttr(b []byte, f func(typ uint16, v []byte)) {
	for len(b) >= unix.SizeofRtAttr {
		n := int(binary.NativeEndian.Uint16(b[0:2]))
		if n < unix.SizeofRtAttr || n > len(b) {
			return
		}
		f(binary.NativeEndian.Uint16(b[2:4])&nlaTypeMask, b[unix.SizeofRtAttr:n])
		step := (n + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if step >= len(b) {
			return
		}
		b = b[step:]
	}
}

// nlaTypeMask is NLA_TYPE_MASK.
const nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)

func u32(v []byte) uint32 {
	if len(v) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(v[:4])
}

// cstring is a NUL-terminated attribute as a string.
func cstring(v []byte) string {
	if i := bytes.IndexByte(v, 0); i >= 0 {
		v = v[:i]
	}
	return string(v)
}

// parseLinkMsg reads an RTM_NEWLINK payload (struct ifinfomsg and its
// attributes) in one pass, into what the netlink library's LinkDeserialize
// would give for what observation uses: the index, flags, name, MTU, MAC,
// alias, group, bridge (master), IFLA_LINK and alternative names; the kind as the link's
// type; and, beside it, disable_ipv6 (IFLA_AF_SPEC > AF_INET6 >
// IFLA_INET6_CONF) and a bridge's STP state (IFLA_LINKINFO >
// IFLA_INFO_DATA > IFLA_BR_STP_STATE). Devices, veths and bridges are
// made here; other kinds, whose settings observation reads (macvlan,
// ipvlan, VXLAN), go to the library's parser. The library's parser took
// half of the link dump's time, and the time of a no-op apply is mostly
// the dumps'.
func parseLinkMsg(m []byte) (dumpedLink, error) {
	if len(m) < unix.SizeofIfInfomsg {
		return dumpedLink{}, fmt.Errorf("netlink: a link message of %d bytes", len(m))
	}
	a := netlink.NewLinkAttrs()
	a.Index = int(int32(binary.NativeEndian.Uint32(m[4:8])))
	a.RawFlags = binary.NativeEndian.Uint32(m[8:12])
	a.Flags = linkFlags(a.RawFlags)
	d := dumpedLink{disableIPv6: -1, promote: -1}
	var kind []byte
	eachAttr(m[unix.SizeofIfInfomsg:], func(typ uint16, v []byte) {
		switch typ {
		case unix.IFLA_IFNAME:
			a.Name = cstring(v)
		case unix.IFLA_MTU:
			a.MTU = int(u32(v))
		case unix.IFLA_ADDRESS:
			if slices.ContainsFunc(v, func(b byte) bool { return b != 0 }) {
				a.HardwareAddr = slices.Clone(net.HardwareAddr(v))
			}
		case unix.IFLA_LINK:
			a.ParentIndex = int(u32(v))
		case unix.IFLA_MASTER:
			a.MasterIndex = int(u32(v))
		case unix.IFLA_IFALIAS:
			a.Alias = cstring(v)
		case unix.IFLA_GROUP:
			a.Group = u32(v)
		case unix.IFLA_TXQLEN:
			a.TxQLen = int(u32(v))
		case unix.IFLA_LINK_NETNSID:
			a.NetNsID = int(int32(u32(v)))
		case unix.IFLA_PROP_LIST:
			eachAttr(v, func(typ uint16, v []byte) {
				if typ == unix.IFLA_ALT_IFNAME {
					a.AltNames = append(a.AltNames, cstring(v))
				}
			})
		case unix.IFLA_OPERSTATE:
			if len(v) > 0 {
				a.OperState = netlink.LinkOperState(v[0])
			}
		case unix.IFLA_LINKINFO:
			eachAttr(v, func(typ uint16, v []byte) {
				switch typ {
				case nl.IFLA_INFO_KIND:
					kind = bytes.TrimRight(v, "\x00")
				case nl.IFLA_INFO_DATA:
					eachAttr(v, func(typ uint16, v []byte) {
						if typ == nl.IFLA_BR_STP_STATE && len(v) >= 4 && string(kind) == "bridge" {
							on := u32(v) != 0
							d.stp = &on
						}
					})
				}
			})
		case unix.IFLA_AF_SPEC:
			eachAttr(v, func(fam uint16, v []byte) {
				if fam == unix.AF_INET {
					eachAttr(v, func(typ uint16, v []byte) {
						if typ == unix.IFLA_INET_CONF && len(v) >= 4*(devconfPromote+1) {
							d.promote = int(int32(binary.NativeEndian.Uint32(v[4*devconfPromote:])))
						}
					})
					return
				}
				if fam != unix.AF_INET6 {
					return
				}
				eachAttr(v, func(typ uint16, v []byte) {
					if typ == unix.IFLA_INET6_CONF && len(v) >= 4*(devconfDisableIPv6+1) {
						d.disableIPv6 = int(int32(binary.NativeEndian.Uint32(v[4*devconfDisableIPv6:])))
					}
				})
			})
		}
	})
	switch string(kind) {
	case "":
		d.link = &netlink.Device{LinkAttrs: a}
	case "veth":
		d.link = &netlink.Veth{LinkAttrs: a}
	case "bridge":
		d.link = &netlink.Bridge{LinkAttrs: a}
	default:
		l, err := netlink.LinkDeserialize(nil, slices.Clone(m))
		if err != nil {
			return dumpedLink{}, err
		}
		d.link = l
	}
	return d, nil
}

// linkFlags is the netlink library's conversion of IFF_* to net.Flags.
func linkFlags(raw uint32) net.Flags {
	var f net.Flags
	for _, x := range []struct {
		iff  uint32
		flag net.Flags
	}{
		{unix.IFF_UP, net.FlagUp},
		{unix.IFF_BROADCAST, net.FlagBroadcast},
		{unix.IFF_LOOPBACK, net.FlagLoopback},
		{unix.IFF_POINTOPOINT, net.FlagPointToPoint},
		{unix.IFF_MULTICAST, net.FlagMulticast},
		{unix.IFF_RUNNING, net.FlagRunning},
	} {
		if raw&x.iff != 0 {
			f |= x.flag
		}
	}
	return f
}

// ipv6SwitchFromLinks reports whether every link shows disable_ipv6 ==
// want (then the switches may be taken to be want; see above).
func ipv6SwitchFromLinks(links []dumpedLink, want string) bool {
	if len(links) == 0 || (want != "0" && want != "1") {
		return false
	}
	for _, l := range links {
		if l.disableIPv6 < 0 || (l.disableIPv6 != 0) != (want == "1") {
			return false
		}
	}
	return true
}

// addrDump lists the namespace's addresses (as netlink's AddrList with
// FAMILY_ALL: the address, its prefix, its link and its flags).
func (h *nsHandle) addrDump() ([]netlink.Addr, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfAddrmsg(unix.AF_UNSPEC))
	return dumpAll(h, req, unix.RTM_NEWADDR, func(m []byte) (netlink.Addr, bool, error) {
		a, ok := parseAddrMsg(m)
		return a, ok, nil
	})
}

// parseAddrMsg reads an RTM_NEWADDR payload: struct ifaddrmsg (family,
// prefixlen, flags, scope, index) and its attributes. The address is
// IFA_LOCAL where there is one (IFA_ADDRESS is then the peer's), else
// IFA_ADDRESS; IFA_FLAGS, where given, has all the flags.
func parseAddrMsg(m []byte) (netlink.Addr, bool) {
	if len(m) < unix.SizeofIfAddrmsg {
		return netlink.Addr{}, false
	}
	family, prefix := int(m[0]), int(m[1])
	flags := int(m[2])
	index := int(binary.NativeEndian.Uint32(m[4:8]))
	var local, address net.IP
	eachAttr(m[unix.SizeofIfAddrmsg:], func(typ uint16, v []byte) {
		switch typ {
		case unix.IFA_LOCAL:
			local = slices.Clone(net.IP(v))
		case unix.IFA_ADDRESS:
			address = slices.Clone(net.IP(v))
		case unix.IFA_FLAGS:
			if len(v) >= 4 {
				flags = int(u32(v))
			}
		}
	})
	ip := local
	if ip == nil {
		ip = address
	}
	if ip == nil {
		return netlink.Addr{}, false
	}
	return netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(prefix, addrBits(family))}, LinkIndex: index, Flags: flags}, true
}

// routeDump lists the routes of the namespace's main table (as netlink's
// RouteListFiltered with RT_FILTER_TABLE and FAMILY_ALL: what observation
// reads of them), and the addresses the local table routes to (its
// routes of type local: IPv6, and IPv4).
func (h *nsHandle) routeDump() ([]netlink.Route, map[string]bool, []string, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETROUTE, unix.NLM_F_DUMP)
	req.AddData(nl.NewRtMsg())
	var locals map[string]bool
	var otherV6 []string // IPv6 routes of others' outside the main table
	routes, err := dumpAll(h, req, unix.RTM_NEWROUTE, func(m []byte) (netlink.Route, bool, error) {
		r, ok := parseRouteMsg(m)
		if ok && r.Type == unix.RTN_LOCAL && r.Dst != nil { // table local, or a VRF's
			if locals == nil {
				locals = map[string]bool{}
			}
			locals[r.Dst.IP.String()] = true
		}
		if ok && r.Family == unix.AF_INET6 && r.Table != unix.RT_TABLE_MAIN && r.Table != unix.RT_TABLE_LOCAL &&
			r.Protocol != unix.RTPROT_KERNEL && r.Protocol != unix.RTPROT_RA && r.Dst != nil {
			otherV6 = append(otherV6, fmt.Sprintf("route %s (table %d)", r.Dst, r.Table))
		}
		return r, ok && r.Table == unix.RT_TABLE_MAIN, nil
	})
	return routes, locals, otherV6, err
}

// addrBits is the length of an address of family.
func addrBits(family int) int {
	if family == unix.AF_INET6 {
		return 128
	}
	return 32
}

// parseRouteMsg reads an RTM_NEWROUTE payload: struct rtmsg (family,
// dst_len, src_len, tos, table, protocol, scope, type, flags) and the
// attributes observation uses (RTA_TABLE overrides the 8-bit table).
func parseRouteMsg(m []byte) (netlink.Route, bool) {
	if len(m) < unix.SizeofRtMsg {
		return netlink.Route{}, false
	}
	r := netlink.Route{
		Family:   int(m[0]),
		Table:    int(m[4]),
		Protocol: netlink.RouteProtocol(m[5]),
		Scope:    netlink.Scope(m[6]),
		Type:     int(m[7]),
		Flags:    int(binary.NativeEndian.Uint32(m[8:12])),
	}
	dstLen, srcLen := int(m[1]), int(m[2])
	if srcLen > 0 {
		// A source-specific route ("from ..."), which a lab never makes:
		// left out, so it neither stands for nor blocks the lab's route
		// to the same destination.
		return netlink.Route{}, false
	}
	bits := addrBits(r.Family)
	eachAttr(m[unix.SizeofRtMsg:], func(typ uint16, v []byte) {
		switch typ {
		case unix.RTA_DST:
			r.Dst = &net.IPNet{IP: slices.Clone(net.IP(v)), Mask: net.CIDRMask(dstLen, bits)}
		case unix.RTA_GATEWAY:
			r.Gw = slices.Clone(net.IP(v))
		case unix.RTA_OIF:
			if len(v) >= 4 {
				r.LinkIndex = int(u32(v))
			}
		case unix.RTA_PRIORITY:
			if len(v) >= 4 {
				r.Priority = int(u32(v))
			}
		case unix.RTA_TABLE:
			if len(v) >= 4 {
				r.Table = int(u32(v))
			}
		case unix.RTA_MULTIPATH:
			r.MultiPath = parseNexthops(v)
		}
	})
	return r, true
}

// parseNexthops reads RTA_MULTIPATH: struct rtnexthop (len, flags, hops,
// ifindex) each followed by its attributes (RTA_GATEWAY).
func parseNexthops(b []byte) []*netlink.NexthopInfo {
	var out []*netlink.NexthopInfo
	for len(b) >= unix.SizeofRtNexthop {
		n := int(binary.NativeEndian.Uint16(b[0:2]))
		if n < unix.SizeofRtNexthop || n > len(b) {
			break
		}
		nh := &netlink.NexthopInfo{LinkIndex: int(int32(binary.NativeEndian.Uint32(b[4:8]))), Hops: int(b[3]), Flags: int(b[2])}
		eachAttr(b[unix.SizeofRtNexthop:n], func(typ uint16, v []byte) {
			if typ == unix.RTA_GATEWAY {
				nh.Gw = slices.Clone(net.IP(v))
			}
		})
		out = append(out, nh)
		step := (n + 3) &^ 3 // each rtnexthop is 4-aligned
		if step > len(b) {
			break
		}
		b = b[step:]
	}
	return out
}
