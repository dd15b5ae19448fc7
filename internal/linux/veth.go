package linux

import (
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// addVeth creates a veth pair with one RTM_NEWLINK: this end (attributes a:
// name, mtu, mac, master, group) here, and the peer already in the
// namespace peerNS with its own name, mtu, mac and the same group. The
// netlink library cannot give the peer a group, and the group is the mark
// that must be there from the first moment on both ends (see owner.go).
func (h *nsHandle) addVeth(a netlink.LinkAttrs, peerName string, peerMTU int, peerMAC net.HardwareAddr, peerNS netns.NsHandle) error {
	req, err := h.request(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	if err != nil {
		return err
	}
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(a.Name)))
	if a.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(a.MTU))))
	}
	if a.HardwareAddr != nil {
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, []byte(a.HardwareAddr)))
	}
	if a.MasterIndex != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(a.MasterIndex))))
	}
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(a.Group)))
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
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(peerNS)))
	req.AddData(info)
	_, err = req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
