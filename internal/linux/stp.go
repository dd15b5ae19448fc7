package linux

import "github.com/vishvananda/netlink/nl"

// The netlink library does not expose a bridge's STP state: it is read
// from observation's own link dump (parseLinkMsg) and set with a
// changelink on the handle's socket.
func (h *nsHandle) setSTP(index int, on bool) error {
	v := uint32(0)
	if on {
		v = 1
	}
	return h.changeLink(index, "bridge", []*nl.RtAttr{nl.NewRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(v))})
}
