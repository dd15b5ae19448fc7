package linux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// addVeth creates a veth pair with one RTM_NEWLINK: this end (attributes a:
// name, mtu, mac, master, group; up if up) here, and the peer already in
// the namespace peerNS with its own name, mtu, mac and the same group. The
// peer cannot come up in the same message (the kernel's veth_open answers
// ENOTCONN: the pair is not joined yet); configure does that. The netlink
// library cannot give the peer a group, and the group is the mark that
// must be there from the first moment on both ends (see owner.go). It
// returns this end's ifindex, from the kernel's echo of
// the new link (NLM_F_ECHO, Linux 6.1 and later), or 0 where the kernel
// sends none.
func (h *nsHandle) addVeth(a netlink.LinkAttrs, up bool, peerName string, peerMTU int, peerMAC net.HardwareAddr, peerNS netns.NsHandle) (int, error) {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK|unix.NLM_F_ECHO)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	if up {
		msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	}
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(a.Name)))
	// An end without an MTU takes the other's: a pair has one MTU where
	// one end gives it, whichever end is made first.
	if a.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(a.MTU))))
	} else if peerMTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(peerMTU))))
	}
	if a.HardwareAddr != nil {
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, []byte(a.HardwareAddr)))
	}
	if a.MasterIndex != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(a.MasterIndex))))
	}
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(a.Group)))
	// One queue each way, said at creation. Without it the kernel makes a
	// veth end with a queue per CPU and then, once it is registered, cuts
	// it to the one it uses, which waits for an RCU grace period under the
	// RTNL lock (veth_init_queues, netif_set_real_num_tx_queues), twice per
	// veth: 9 % of the veth stage of the 100-namespace benchmark lab. The
	// ends work as before (one queue each way); only `ethtool -L` can no
	// longer give them more.
	req.AddData(nl.NewRtAttr(unix.IFLA_NUM_TX_QUEUES, nl.Uint32Attr(1)))
	req.AddData(nl.NewRtAttr(unix.IFLA_NUM_RX_QUEUES, nl.Uint32Attr(1)))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	peer := data.AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(peerName))
	if peerMTU > 0 {
		peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(peerMTU)))
	} else if a.MTU > 0 {
		peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(a.MTU)))
	}
	if peerMAC != nil {
		peer.AddRtAttr(unix.IFLA_ADDRESS, []byte(peerMAC))
	}
	peer.AddRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(a.Group))
	peer.AddRtAttr(unix.IFLA_NUM_TX_QUEUES, nl.Uint32Attr(1))
	peer.AddRtAttr(unix.IFLA_NUM_RX_QUEUES, nl.Uint32Attr(1))
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(peerNS)))
	req.AddData(info)
	index := 0
	err := h.do(req, unix.RTM_NEWLINK, func(m []byte) {
		if i, name := linkIdentity(m); index == 0 && name == a.Name {
			index = i
		}
	})
	return index, err
}

// linkIndex finds a link's ifindex by name with one RTM_GETLINK on the
// handle's own socket (ENODEV if there is none).
func (h *nsHandle) linkIndex(name string) (int, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	req.AddData(nl.NewRtAttr(unix.IFLA_EXT_MASK, nl.Uint32Attr(rtextFilterSkipStats)))
	index := 0
	err := h.do(req, unix.RTM_NEWLINK, func(m []byte) {
		if i, n := linkIdentity(m); n == name {
			index = i
		}
	})
	if err == nil && index == 0 {
		err = unix.ENODEV
	}
	return index, err
}

// linkIdentity is the ifindex and name in an RTM_NEWLINK payload.
func linkIdentity(m []byte) (index int, name string) {
	if len(m) < unix.SizeofIfInfomsg {
		return 0, ""
	}
	eachAttr(m[unix.SizeofIfInfomsg:], func(typ uint16, v []byte) {
		if typ == unix.IFLA_IFNAME {
			name = cstring(v)
		}
	})
	return int(int32(binary.NativeEndian.Uint32(m[4:8]))), name
}

// changeLink sends a kind's settings to an existing link (RTM_NEWLINK
// without NLM_F_CREATE: the kernel's changelink), with only the attributes
// given: the netlink library sends all of a kind's attributes, and the
// kernel refuses a changelink that carries one it cannot change (a VXLAN's
// port, even unchanged).
func (h *nsHandle) changeLink(index int, kind string, data []*nl.RtAttr) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated(kind))
	d := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	for _, a := range data {
		d.AddChild(a)
	}
	req.AddData(info)
	return h.exec(req)
}

// changeVxlan sets a VXLAN's remote or group, local address and underlay
// dev in place (its VNI, unchanged, goes along: the kernel checks it).
func (h *nsHandle) changeVxlan(index int, x *reconcile.VXLAN) error {
	data := []*nl.RtAttr{nl.NewRtAttr(nl.IFLA_VXLAN_ID, nl.Uint32Attr(uint32(x.VNI)))}
	ipAttr := func(v4, v6 int, s string) {
		ip := net.ParseIP(s)
		if ip == nil {
			return
		}
		if ip4 := ip.To4(); ip4 != nil {
			data = append(data, nl.NewRtAttr(v4, []byte(ip4)))
		} else {
			data = append(data, nl.NewRtAttr(v6, []byte(ip.To16())))
		}
	}
	ipAttr(nl.IFLA_VXLAN_GROUP, nl.IFLA_VXLAN_GROUP6, x.Remote)
	ipAttr(nl.IFLA_VXLAN_GROUP, nl.IFLA_VXLAN_GROUP6, x.Group)
	ipAttr(nl.IFLA_VXLAN_LOCAL, nl.IFLA_VXLAN_LOCAL6, x.Local)
	if x.Dev != "" {
		d, err := h.h.LinkByName(x.Dev)
		if err != nil {
			return fmt.Errorf("underlay dev %q: %w", x.Dev, err)
		}
		data = append(data, nl.NewRtAttr(nl.IFLA_VXLAN_LINK, nl.Uint32Attr(uint32(d.Attrs().Index))))
	}
	if err := h.changeLink(index, "vxlan", data); err != nil {
		return err
	}
	return h.flushLearnedFDB(index)
}

// flushLearnedFDB deletes the forwarding entries a VXLAN learned (from
// the packets it received: a MAC and the endpoint it came from), keeping
// the permanent ones (its default destination, any added by hand). Made
// at its old endpoints, they would send to them until they age out, 300
// s (an outside audit: the overlay dead for minutes after its remote
// changed, while plan said nothing was to do).
func (h *nsHandle) flushLearnedFDB(index int) error {
	fdb, err := h.h.NeighList(index, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("list its forwarding entries: %w", err)
	}
	for _, e := range fdb {
		// The VXLAN's own (self) entries: a MAC and the endpoint it was
		// seen at. A bridge it is a port of lists its own for the port
		// (master, no endpoint), which stay right.
		if e.LinkIndex != index || e.Flags&netlink.NTF_SELF == 0 || e.IP == nil || e.State&(netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 {
			continue
		}
		del := netlink.Neigh{LinkIndex: index, Family: unix.AF_BRIDGE, HardwareAddr: e.HardwareAddr, IP: e.IP, Flags: netlink.NTF_SELF, State: e.State}
		if err := h.h.NeighDel(&del); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete the learned forwarding entry %s: %w", e.HardwareAddr, err)
		}
	}
	return nil
}
