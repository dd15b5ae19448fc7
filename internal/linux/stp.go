package linux

import (
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The netlink library does not expose a bridge's STP state: it is read
// from observation's own link dump (IFLA_LINKINFO > IFLA_INFO_DATA >
// IFLA_BR_STP_STATE) and set with a changelink on the handle's socket.

// stpOf finds a bridge's STP state in an RTM_NEWLINK message.
func stpOf(m []byte) (on, ok bool) {
	if len(m) < unix.SizeofIfInfomsg {
		return false, false
	}
	attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
	if err != nil {
		return false, false
	}
	for _, a := range attrs {
		if a.Attr.Type != unix.IFLA_LINKINFO {
			continue
		}
		info, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return false, false
		}
		for _, i := range info {
			if i.Attr.Type != nl.IFLA_INFO_DATA {
				continue
			}
			data, err := nl.ParseRouteAttr(i.Value)
			if err != nil {
				return false, false
			}
			for _, d := range data {
				if d.Attr.Type == nl.IFLA_BR_STP_STATE && len(d.Value) >= 4 {
					return native.Uint32(d.Value[:4]) != 0, true
				}
			}
		}
	}
	return false, false
}

func (h *nsHandle) setSTP(index int, on bool) error {
	v := uint32(0)
	if on {
		v = 1
	}
	return h.changeLink(index, "bridge", []*nl.RtAttr{nl.NewRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(v))})
}

var native = nl.NativeEndian()
