package capture

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/internal/linux"
)

// Source is a packet socket on one interface of one namespace: it sees
// what the interface receives and what it sends.
type Source struct {
	fd     int
	Ifname string
}

// ErrTimeout is what Read returns when nothing came within the poll time.
var ErrTimeout = errors.New("no packet")

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Open makes the socket inside namespace ns (the socket stays bound to it)
// on interface ifname.
func Open(ns netns.NsHandle, ifname string) (*Source, error) {
	s := &Source{fd: -1, Ifname: ifname}
	err := linux.InNetns(ns, func() error {
		iface, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("no interface %q in this namespace", ifname)
		}
		// Protocol 0 until bound: nothing from other interfaces slips in.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		s.fd = fd
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: iface.Index})
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	_ = unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Read waits up to 200 ms for a packet. It returns how much of it is in
// buf, its length on the wire, and whether the interface sent it.
func (s *Source) Read(buf []byte) (n, length int, outgoing bool, err error) {
	length, from, err := unix.Recvfrom(s.fd, buf, unix.MSG_TRUNC)
	if err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return 0, 0, false, ErrTimeout
		}
		return 0, 0, false, err
	}
	n = min(length, len(buf))
	if sll, ok := from.(*unix.SockaddrLinklayer); ok {
		outgoing = sll.Pkttype == unix.PACKET_OUTGOING
	}
	return n, length, outgoing, nil
}

// Close closes the socket.
func (s *Source) Close() {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
}
