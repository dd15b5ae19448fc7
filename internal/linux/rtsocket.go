package linux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// configure marks a link it has just made and brings it up in one
// RTM_NEWLINK (the kernel's setlink): its alias, its bridge (master, an
// ifindex, if not 0) and IFF_UP when up. The link is the one with ifindex
// index, or, where index is 0, the one named name (the kernel looks it up
// by IFLA_IFNAME: no round trip to learn the index). Three round trips
// were one each, and each makes the kernel tell its listeners about the
// link again (for a veth, with its peer's namespace id, which the kernel
// finds by a search through every namespace id the sandbox knows).
func (h *nsHandle) configure(index int, name, alias string, master int, up bool) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	if up {
		msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	}
	req.AddData(msg)
	if index == 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	}
	req.AddData(nl.NewRtAttr(unix.IFLA_IFALIAS, []byte(alias)))
	if master != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(master))))
	}
	return h.exec(req)
}

// exec runs req (a request with NLM_F_ACK) on the handle's own socket.
func (h *nsHandle) exec(req *nl.NetlinkRequest) error { return h.do(req, 0, nil) }

// do runs req on the handle's own socket, handing each reply of type want
// to f (see rtSocket.each): a dump, or a request that asks for an
// acknowledgement and for replies (a link's echo, a link by name).
func (h *nsHandle) do(req *nl.NetlinkRequest, want uint16, f func(m []byte)) error {
	s, err := h.sock()
	if err != nil {
		return err
	}
	return s.each(req, want, f)
}

// sock is the handle's own socket, made if it has none.
func (h *nsHandle) sock() (*rtSocket, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rt == nil { // handles get one as they are opened; just in case
		err := InNetns(h.fd, func() error {
			var err error
			h.rt, err = newRTSocket()
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return h.rt, nil
}

// rtSocket is a plain blocking NETLINK_ROUTE socket of our own, one per
// namespace handle, made in the same visit to the namespace that opens the
// handle. Observation reads through it alone (dumps.go), and the requests
// the netlink library has no call for go through it too (a veth made with
// its peer's settings, changelink, a new link's alias, bridge and up
// state). A second socket per namespace was measured to cost more than
// all of observation's dumps there.
type rtSocket struct {
	mu  sync.Mutex
	fd  int
	seq uint32
}

// recvBufs are receive buffers shared by all the sockets: one kept per
// socket was 64 KiB for every namespace of the lab (64 MB of a
// 1000-namespace apply's RSS).
var recvBufs = sync.Pool{New: func() any { b := make([]byte, 1<<16); return &b }}

// newRTSocket opens one in the calling thread's namespace.
func newRTSocket() (*rtSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &rtSocket{fd: fd}, nil
}

func (s *rtSocket) close() { unix.Close(s.fd) }

// each sends a request, which must be a dump (NLM_F_DUMP) or ask for an
// acknowledgement (NLM_F_ACK), and reads until NLMSG_DONE or NLMSG_ERROR,
// handing the payload of each reply of type want to f. The payload is in
// a receive buffer that is used again: f copies what it keeps. A dump the
// kernel marks interrupted (NLM_F_DUMP_INTR) returns
// netlink.ErrDumpInterrupted once it is whole.
func (s *rtSocket) each(req *nl.NetlinkRequest, want uint16, f func(m []byte)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	req.Seq = s.seq
	if err := unix.Sendto(s.fd, req.Serialize(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	bp := recvBufs.Get().(*[]byte)
	defer recvBufs.Put(bp)
	buf := *bp
	var interrupted bool
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return fmt.Errorf("netlink: a reply of %d bytes in %d", l, len(b))
			}
			typ := binary.NativeEndian.Uint16(b[4:6])
			flags := binary.NativeEndian.Uint16(b[6:8])
			seq := binary.NativeEndian.Uint32(b[8:12])
			data := b[unix.NLMSG_HDRLEN:l]
			if step := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1); step < len(b) {
				b = b[step:]
			} else {
				b = nil
			}
			if seq != s.seq {
				continue // a reply to an earlier, abandoned request
			}
			if flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch typ {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				if len(data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(data[:4])); code < 0 {
						return syscall.Errno(-code)
					}
				}
				if interrupted {
					return netlink.ErrDumpInterrupted
				}
				return nil
			case want:
				if f != nil {
					f(data)
				}
			}
		}
	}
}
