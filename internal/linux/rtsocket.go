package linux

import (
	"encoding/binary"
	"errors"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// configure marks a link it has just made and brings it up in one
// RTM_NEWLINK (the kernel's setlink): its alias, its bridge (master, an
// ifindex, if not 0) and IFF_UP when up. Three round trips were one each,
// and each makes the kernel tell its listeners about the link again (for
// a veth, with its peer's namespace id, which the kernel finds by a search
// through every namespace id the sandbox knows).
func (h *nsHandle) configure(index int, alias string, master int, up bool) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	if up {
		msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	}
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFALIAS, []byte(alias)))
	if master != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(master))))
	}
	_, err := h.exec(req, 0)
	return err
}

// exec runs req (a dump or a request with NLM_F_ACK) on the handle's own
// socket.
func (h *nsHandle) exec(req *nl.NetlinkRequest, want uint16) ([][]byte, error) {
	s, err := h.sock()
	if err != nil {
		return nil, err
	}
	return s.execute(req, want)
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

// execute sends a request, which must be a dump (NLM_F_DUMP) or ask for
// an acknowledgement (NLM_F_ACK): it reads until NLMSG_DONE or NLMSG_ERROR.
// It returns the payloads of the replies of type want; a dump the kernel
// marks interrupted (NLM_F_DUMP_INTR) returns what it got with
// netlink.ErrDumpInterrupted.
func (s *rtSocket) execute(req *nl.NetlinkRequest, want uint16) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	req.Seq = s.seq
	if err := unix.Sendto(s.fd, req.Serialize(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	bp := recvBufs.Get().(*[]byte)
	defer recvBufs.Put(bp)
	buf := *bp
	var out [][]byte
	var interrupted bool
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Seq != s.seq {
				continue // a reply to an earlier, abandoned request
			}
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code < 0 {
						return nil, syscall.Errno(-code)
					}
				}
				if interrupted {
					return out, netlink.ErrDumpInterrupted
				}
				return out, nil
			case want:
				out = append(out, append([]byte(nil), m.Data...))
			}
		}
	}
}
