package linux

import (
	"encoding/binary"
	"errors"
	"net"

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

// rtextFilterSkipStats is RTEXT_FILTER_SKIP_STATS: the dump leaves out
// interface counters, which observation does not use.
const rtextFilterSkipStats = 1 << 3

// dumpedLink is a link from a raw dump with its IPv6 disable_ipv6 (-1: the
// kernel gave none, as for an interface with an MTU below IPv6's minimum).
type dumpedLink struct {
	link        netlink.Link
	disableIPv6 int
	stp         *bool // a bridge's STP state
}

// linkDump lists the namespace's links, as netlink's LinkList does, with
// each one's disable_ipv6.
func (h *nsHandle) linkDump() ([]dumpedLink, error) {
	return retry(func() ([]dumpedLink, error) {
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
		req.AddData(nl.NewRtAttr(unix.IFLA_EXT_MASK, nl.Uint32Attr(rtextFilterSkipStats)))
		msgs, err := h.exec(req, unix.RTM_NEWLINK)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
		out := make([]dumpedLink, 0, len(msgs))
		for _, m := range msgs {
			l, derr := netlink.LinkDeserialize(nil, m)
			if derr != nil {
				return nil, derr
			}
			d := dumpedLink{link: l, disableIPv6: disableIPv6Of(m)}
			if on, ok := stpOf(m); ok {
				d.stp = &on
			}
			out = append(out, d)
		}
		return out, err
	})
}

// disableIPv6Of finds disable_ipv6 in an RTM_NEWLINK message, or -1.
func disableIPv6Of(m []byte) int {
	if len(m) < unix.SizeofIfInfomsg {
		return -1
	}
	attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
	if err != nil {
		return -1
	}
	for _, a := range attrs {
		if a.Attr.Type != unix.IFLA_AF_SPEC {
			continue
		}
		fams, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return -1
		}
		for _, f := range fams {
			if f.Attr.Type != unix.AF_INET6 {
				continue
			}
			v6, err := nl.ParseRouteAttr(f.Value)
			if err != nil {
				return -1
			}
			for _, x := range v6 {
				if x.Attr.Type == unix.IFLA_INET6_CONF && len(x.Value) >= 4*(devconfDisableIPv6+1) {
					return int(int32(binary.NativeEndian.Uint32(x.Value[4*devconfDisableIPv6:])))
				}
			}
		}
	}
	return -1
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
	return retry(func() ([]netlink.Addr, error) {
		req := nl.NewNetlinkRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfAddrmsg(unix.AF_UNSPEC))
		msgs, err := h.exec(req, unix.RTM_NEWADDR)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
		out := make([]netlink.Addr, 0, len(msgs))
		for _, m := range msgs {
			if a, ok := parseAddrMsg(m); ok {
				out = append(out, a)
			}
		}
		return out, err
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
	attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfAddrmsg:])
	if err != nil {
		return netlink.Addr{}, false
	}
	var local, address net.IP
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.IFA_LOCAL:
			local = net.IP(a.Value)
		case unix.IFA_ADDRESS:
			address = net.IP(a.Value)
		case unix.IFA_FLAGS:
			if len(a.Value) >= 4 {
				flags = int(binary.NativeEndian.Uint32(a.Value[:4]))
			}
		}
	}
	ip := local
	if ip == nil {
		ip = address
	}
	if ip == nil {
		return netlink.Addr{}, false
	}
	bits := 32
	if family == unix.AF_INET6 {
		bits = 128
	}
	return netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(prefix, bits)}, LinkIndex: index, Flags: flags}, true
}

// routeDump lists the routes of the namespace's main table (as netlink's
// RouteListFiltered with RT_FILTER_TABLE and FAMILY_ALL: what observation
// reads of them).
func (h *nsHandle) routeDump() ([]netlink.Route, error) {
	return retry(func() ([]netlink.Route, error) {
		req := nl.NewNetlinkRequest(unix.RTM_GETROUTE, unix.NLM_F_DUMP)
		req.AddData(nl.NewRtMsg())
		msgs, err := h.exec(req, unix.RTM_NEWROUTE)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
		out := make([]netlink.Route, 0, len(msgs))
		for _, m := range msgs {
			if r, ok := parseRouteMsg(m); ok && r.Table == unix.RT_TABLE_MAIN {
				out = append(out, r)
			}
		}
		return out, err
	})
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
	attrs, err := nl.ParseRouteAttr(m[unix.SizeofRtMsg:])
	if err != nil {
		return netlink.Route{}, false
	}
	bits := 32
	if r.Family == unix.AF_INET6 {
		bits = 128
	}
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.RTA_DST:
			r.Dst = &net.IPNet{IP: net.IP(a.Value), Mask: net.CIDRMask(dstLen, bits)}
		case unix.RTA_GATEWAY:
			r.Gw = net.IP(a.Value)
		case unix.RTA_OIF:
			if len(a.Value) >= 4 {
				r.LinkIndex = int(binary.NativeEndian.Uint32(a.Value[:4]))
			}
		case unix.RTA_PRIORITY:
			if len(a.Value) >= 4 {
				r.Priority = int(binary.NativeEndian.Uint32(a.Value[:4]))
			}
		case unix.RTA_TABLE:
			if len(a.Value) >= 4 {
				r.Table = int(binary.NativeEndian.Uint32(a.Value[:4]))
			}
		case unix.RTA_MULTIPATH:
			r.MultiPath = parseNexthops(a.Value)
		}
	}
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
		if attrs, err := nl.ParseRouteAttr(b[unix.SizeofRtNexthop:n]); err == nil {
			for _, a := range attrs {
				if a.Attr.Type == unix.RTA_GATEWAY {
					nh.Gw = net.IP(a.Value)
				}
			}
		}
		out = append(out, nh)
		step := (n + 3) &^ 3 // each rtnexthop is 4-aligned
		if step > len(b) {
			break
		}
		b = b[step:]
	}
	return out
}
