package linux

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// firstNexthop is the id of a nexthop object in the namespace of h (ip
// nexthop add), or 0 if there is none or the kernel has no nexthop
// objects (before 5.3).
func (h *nsHandle) firstNexthop() uint32 {
	req := nl.NewNetlinkRequest(unix.RTM_GETNEXTHOP, unix.NLM_F_DUMP)
	req.AddRawData(make([]byte, 8)) // struct nhmsg, zero: all of them
	var id uint32
	err := h.do(req, unix.RTM_NEWNEXTHOP, func(m []byte) {
		if id != 0 || len(m) < 8 {
			return
		}
		attrs, err := nl.ParseRouteAttr(m[8:])
		if err != nil {
			return
		}
		for _, a := range attrs {
			if a.Attr.Type == unix.NHA_ID && len(a.Value) >= 4 {
				id = nl.NativeEndian().Uint32(a.Value)
			}
		}
	})
	if err != nil {
		return 0
	}
	return id
}

// socketIn describes a TCP, UDP, unix or packet socket open in the
// namespace fd ("tcp socket 10.0.0.1:80", "unix socket @name"), or "". Only sockets
// with a file count: one a process holds (or held by a thread that
// entered the namespace and left). What the kernel keeps after their
// owners closed them (TIME_WAIT, FIN_WAIT...) has none and goes with the
// namespace. A kernel without sock_diag for a family (inet_diag,
// tcp_diag, udp_diag, unix_diag, af_packet_diag) says nothing of it.
func socketIn(fd netns.NsHandle) string {
	s, err := nl.GetNetlinkSocketAt(fd, netns.None(), unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return ""
	}
	defer s.Close()
	for _, p := range []struct {
		name     string
		family   uint8
		protocol uint8
	}{
		{"tcp", unix.AF_INET, unix.IPPROTO_TCP}, {"tcp", unix.AF_INET6, unix.IPPROTO_TCP},
		{"udp", unix.AF_INET, unix.IPPROTO_UDP}, {"udp", unix.AF_INET6, unix.IPPROTO_UDP},
	} {
		// struct inet_diag_req_v2: family, protocol, ext, pad, states
		// (all), then struct inet_diag_sockid (48 bytes, zero: any).
		body := make([]byte, 56)
		body[0], body[1] = p.family, p.protocol
		binary.NativeEndian.PutUint32(body[4:8], ^uint32(0))
		found := ""
		diagDump(s, body, func(d []byte) bool {
			// struct inet_diag_msg: family, state, timer, retrans, sockid
			// (sport and dport big-endian, src, dst, if, cookie),
			// expires, rqueue, wqueue, uid, inode.
			if len(d) < 72 || binary.NativeEndian.Uint32(d[68:72]) == 0 {
				return true
			}
			port := binary.BigEndian.Uint16(d[4:6])
			var src netip.Addr
			if p.family == unix.AF_INET {
				src = netip.AddrFrom4([4]byte(d[8:12]))
			} else {
				src = netip.AddrFrom16([16]byte(d[8:24]))
			}
			found = fmt.Sprintf("%s socket %s", p.name, netip.AddrPortFrom(src, port)) + socketOwner(binary.NativeEndian.Uint32(d[68:72]))
			return false
		})
		if found != "" {
			return found
		}
	}
	// struct unix_diag_req: family, protocol, pad, states (all), ino,
	// show (UDIAG_SHOW_NAME), cookie.
	body := make([]byte, 24)
	body[0] = unix.AF_UNIX
	binary.NativeEndian.PutUint32(body[4:8], ^uint32(0))
	binary.NativeEndian.PutUint32(body[12:16], 1)
	found := ""
	diagDump(s, body, func(d []byte) bool {
		// struct unix_diag_msg: family, type, state, pad, ino, cookie;
		// then UNIX_DIAG_NAME (0), the bound name, if any.
		if len(d) < 16 {
			return true
		}
		name := ""
		if attrs, err := nl.ParseRouteAttr(d[16:]); err == nil {
			for _, a := range attrs {
				if a.Attr.Type == 0 && len(a.Value) > 0 {
					name = strings.TrimRight(string(a.Value), "\x00")
					if a.Value[0] == 0 {
						name = "@" + strings.TrimRight(string(a.Value[1:]), "\x00") // abstract
					}
				}
			}
		}
		found = "unix socket"
		if name != "" {
			found += " " + name
		}
		found += socketOwner(binary.NativeEndian.Uint32(d[4:8]))
		return false
	})
	if found != "" {
		return found
	}
	// struct packet_diag_req: family, protocol, pad, ino, show
	// (none), cookie. A packet socket (tcpdump's, a raw
	// Ethernet tool's) always has a file.
	body = make([]byte, 20)
	body[0] = unix.AF_PACKET
	diagDump(s, body, func(d []byte) bool {
		// struct packet_diag_msg: family, type, num, ino, cookie.
		if len(d) < 16 {
			return true
		}
		found = "packet socket" + socketOwner(binary.NativeEndian.Uint32(d[4:8]))
		return false
	})
	return found
}

// socketOwner says which process holds the socket of inode ino (" of
// process 12 (nc)"), or " (inode N)" if no process's files show it. A
// socket this process inherited (made without close-on-exec by the one
// that started it) is named by the other holder.
func socketOwner(ino uint32) string {
	link := fmt.Sprintf("socket:[%d]", ino)
	self, selfHolds := strconv.Itoa(os.Getpid()), false
	for _, pid := range pids() {
		for _, path := range fdPaths(pid) {
			if l, err := os.Readlink(path); err == nil && l == link {
				if pid == self {
					selfHolds = true
					break
				}
				return " of process " + procName(pid)
			}
		}
	}
	if selfHolds {
		return " of this process (inherited from the one that started it)"
	}
	return fmt.Sprintf(" (inode %d)", ino)
}

// diagDump sends a sock_diag dump request with body through s and hands
// each socket's message to each until it returns false; errors end it.
func diagDump(s *nl.NetlinkSocket, body []byte, each func(d []byte) bool) {
	req := nl.NewNetlinkRequest(nl.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP)
	req.AddRawData(body)
	if err := s.Send(req); err != nil {
		return
	}
	more := true
	for {
		msgs, from, err := s.Receive()
		if err != nil || from.Pid != nl.PidKernel {
			return
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				return
			case nl.SOCK_DIAG_BY_FAMILY:
				if more {
					more = each(m.Data)
				}
			}
		}
	}
}
