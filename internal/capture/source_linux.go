package capture

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/internal/linux"
)

// Source is a packet socket on one interface of one namespace: it sees
// what the interface receives and what it sends.
//
// The kernel copies each packet into a ring shared with this process
// (PACKET_RX_RING, TPACKET_V2) as it passes, as tcpdump has it: a socket
// read with recvfrom copies the packet only when it is read, and the
// kernel may have changed its bytes by then (an outside audit: fragments
// sent by a namespace showed the source address masquerade gave them
// later, in the next namespace, where tcpdump beside it showed the one
// they had on the wire).
type Source struct {
	fd     int
	Ifname string
	ring   []byte
	next   int // the frame to read next
}

// The ring: frames of 128 KiB (a GSO frame of 64 KiB and its headers; a
// longer packet is cut there, its length on the wire kept), 64 of them.
const (
	frameSize = 128 << 10
	frameNr   = 64
	// sllPkttype is where sockaddr_ll's sll_pkttype is, after the frame's
	// tpacket2_hdr (32 bytes, TPACKET_ALIGNed).
	hdrLen     = 32
	sllPkttype = hdrLen + 10
)

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
		// Protocol 0 until bound: nothing from other interfaces slips in,
		// and nothing comes before the ring is there.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		s.fd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
			return fmt.Errorf("packet socket: TPACKET_V2: %w", err)
		}
		req := unix.TpacketReq{Block_size: frameSize, Block_nr: frameNr, Frame_size: frameSize, Frame_nr: frameNr}
		if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			return fmt.Errorf("packet socket: ring: %w", err)
		}
		if s.ring, err = unix.Mmap(fd, 0, frameSize*frameNr, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
			return fmt.Errorf("packet socket: map the ring: %w", err)
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: iface.Index})
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// status is the status word of frame i of the ring.
func (s *Source) status(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&s.ring[i*frameSize]))
}

// Read waits up to 200 ms for a packet. It returns how much of it is in
// buf, its length on the wire, and whether the interface sent it.
func (s *Source) Read(buf []byte) (n, length int, outgoing bool, err error) {
	st := s.status(s.next)
	if atomic.LoadUint32(st)&unix.TP_STATUS_USER == 0 {
		fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN | unix.POLLERR}}
		if _, err := unix.Poll(fds, int((200 * time.Millisecond).Milliseconds())); err != nil && !errors.Is(err, unix.EINTR) {
			return 0, 0, false, err
		}
		if atomic.LoadUint32(st)&unix.TP_STATUS_USER == 0 {
			return 0, 0, false, ErrTimeout
		}
	}
	f := s.ring[s.next*frameSize : (s.next+1)*frameSize]
	h := (*unix.Tpacket2Hdr)(unsafe.Pointer(&f[0]))
	start := int(h.Mac)
	end := min(start+int(h.Snaplen), len(f))
	n = copy(buf, f[start:end])
	length = int(h.Len)
	outgoing = f[sllPkttype] == unix.PACKET_OUTGOING
	atomic.StoreUint32(st, unix.TP_STATUS_KERNEL) // the frame back to the kernel
	s.next = (s.next + 1) % frameNr
	return n, length, outgoing, nil
}

// Close closes the socket.
func (s *Source) Close() {
	if s.ring != nil {
		unix.Munmap(s.ring)
		s.ring = nil
	}
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
}
