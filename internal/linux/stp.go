package linux

import (
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The netlink library does not expose a bridge's STP state, so it is read
// and set with a raw RTM_GETLINK / RTM_NEWLINK on a socket of our own in the
// bridge's namespace (IFLA_LINKINFO > IFLA_INFO_DATA > IFLA_BR_STP_STATE).

type rawConn struct{ sh *nl.SocketHandle }

func (c *rawConn) close() { c.sh.Close() }

func (h *nsHandle) rawSocket() (*nl.SocketHandle, error) {
	if h.raw != nil {
		return h.raw.sh, nil
	}
	s, err := nl.GetNetlinkSocketAt(h.fd, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	h.raw = &rawConn{sh: &nl.SocketHandle{Socket: s}}
	return h.raw.sh, nil
}

func (h *nsHandle) rawSocketLocked() (*nl.SocketHandle, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rawSocket()
}

func (h *nsHandle) request(proto, flags int) (*nl.NetlinkRequest, error) {
	sh, err := h.rawSocketLocked()
	if err != nil {
		return nil, err
	}
	req := nl.NewNetlinkRequest(proto, flags)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: sh}
	return req, nil
}

func (h *nsHandle) stpState(index int) (bool, error) {
	req, err := h.request(unix.RTM_GETLINK, unix.NLM_F_ACK)
	if err != nil {
		return false, err
	}
	msg := nl.NewIfInfomsg(unix.AF_BRIDGE)
	msg.Family = unix.AF_UNSPEC
	msg.Index = int32(index)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return false, err
	}
	for _, m := range msgs {
		attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
		if err != nil {
			return false, err
		}
		for _, a := range attrs {
			if a.Attr.Type != unix.IFLA_LINKINFO {
				continue
			}
			info, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return false, err
			}
			for _, i := range info {
				if i.Attr.Type != nl.IFLA_INFO_DATA {
					continue
				}
				data, err := nl.ParseRouteAttr(i.Value)
				if err != nil {
					return false, err
				}
				for _, d := range data {
					if d.Attr.Type == nl.IFLA_BR_STP_STATE && len(d.Value) >= 4 {
						return native.Uint32(d.Value[:4]) != 0, nil
					}
				}
			}
		}
	}
	return false, fmt.Errorf("the kernel did not report the bridge's stp_state")
}

func (h *nsHandle) setSTP(index int, on bool) error {
	v := uint32(0)
	if on {
		v = 1
	}
	return h.changeLink(index, "bridge", []*nl.RtAttr{nl.NewRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(v))})
}

var native = nl.NativeEndian()
