package capture

import (
	"encoding/binary"
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
// (PACKET_RX_RING, TPACKET_V3, as tcpdump has it) as it passes, with the
// time it passed: a socket read with recvfrom copies the packet only when
// it is read, and the kernel may have changed its bytes by then (an
// outside audit: fragments a namespace sent showed the source address
// masquerade gave them later, in the next namespace), and the time of the
// read is not the time it passed (another: replies before requests).
type Source struct {
	fd     int
	Ifname string
	ring   []byte
	block  int // the block being read
	left   int // its packets not read yet
	at     int // the offset of the next of them in the ring
}

// The ring: 4 blocks of 1 MiB, packets packed in them (a full GSO frame
// too); the kernel hands a block over when it is full or 50 ms after its
// first packet.
const (
	blockSize      = 1 << 20
	blockNr        = 4
	frameSize      = 2048 // for the kernel's arithmetic; V3 packs packets whatever their size
	blockTimeoutMs = 50
	// In a block: its status at offset 8 (tpacket_block_desc, then
	// tpacket_hdr_v1), its packets' count at 12, the first's offset at
	// 16. Each packet: a tpacket3_hdr (48 bytes), then its sockaddr_ll
	// (pkttype 10 bytes in).
	blkStatus, blkNum, blkFirst = 8, 12, 16
	pktHdrLen                   = 48
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
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
			return fmt.Errorf("packet socket: TPACKET_V3: %w", err)
		}
		req := unix.TpacketReq3{Block_size: blockSize, Block_nr: blockNr, Frame_size: frameSize,
			Frame_nr: blockSize / frameSize * blockNr, Retire_blk_tov: blockTimeoutMs}
		if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			return fmt.Errorf("packet socket: ring: %w", err)
		}
		if s.ring, err = unix.Mmap(fd, 0, blockSize*blockNr, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
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

func (s *Source) u32(off int) uint32 { return binary.NativeEndian.Uint32(s.ring[off:]) }

// status is the status word of block b of the ring.
func (s *Source) status(b int) *uint32 {
	return (*uint32)(unsafe.Pointer(&s.ring[b*blockSize+blkStatus]))
}

// Read waits up to 200 ms for a packet. It returns how much of it is in
// buf, its length on the wire, whether the interface sent it, and when it
// passed.
func (s *Source) Read(buf []byte) (n, length int, outgoing bool, at time.Time, err error) {
	if s.left == 0 {
		st := s.status(s.block)
		if atomic.LoadUint32(st)&unix.TP_STATUS_USER == 0 {
			fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN | unix.POLLERR}}
			if _, err := unix.Poll(fds, int((200 * time.Millisecond).Milliseconds())); err != nil && !errors.Is(err, unix.EINTR) {
				return 0, 0, false, time.Time{}, err
			}
			if atomic.LoadUint32(st)&unix.TP_STATUS_USER == 0 {
				return 0, 0, false, time.Time{}, ErrTimeout
			}
		}
		base := s.block * blockSize
		s.left, s.at = int(s.u32(base+blkNum)), base+int(s.u32(base+blkFirst))
		if s.left == 0 {
			s.release()
			return 0, 0, false, time.Time{}, ErrTimeout
		}
	}
	p := s.at
	next, sec, nsec := s.u32(p), s.u32(p+4), s.u32(p+8)
	snap, wire := int(s.u32(p+12)), int(s.u32(p+16))
	mac := int(binary.NativeEndian.Uint16(s.ring[p+24:]))
	end := min(p+mac+snap, (s.block+1)*blockSize)
	n = copy(buf, s.ring[p+mac:end])
	outgoing = s.ring[p+pktHdrLen+10] == unix.PACKET_OUTGOING
	s.left--
	s.at = p + int(next)
	if s.left == 0 {
		s.release()
	}
	return n, wire, outgoing, time.Unix(int64(sec), int64(nsec)), nil
}

// release gives the block read back to the kernel and goes to the next.
func (s *Source) release() {
	atomic.StoreUint32(s.status(s.block), unix.TP_STATUS_KERNEL)
	s.block = (s.block + 1) % blockNr
	s.left = 0
}

// Dropped is how many packets the kernel dropped since the last call (the
// ring was full: the capture did not keep up).
func (s *Source) Dropped() (int, error) {
	st, err := unix.GetsockoptTpacketStatsV3(s.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return 0, err
	}
	return int(st.Drops), nil
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
