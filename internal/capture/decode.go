package capture

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Packet is what one frame says, as far as a one-line summary needs.
type Packet struct {
	Len       int
	Src, Dst  net.HardwareAddr
	EtherType uint16
	// Network layer.
	IP    bool // IPv4 or IPv6
	IPSrc netip.Addr
	IPDst netip.Addr
	Proto uint8 // IP protocol (after IPv6 extension headers are not followed)
	// FragOffset is where in its datagram an IPv4 fragment's data goes
	// (bytes); Later says it is not the first fragment (no transport
	// header), More that more fragments follow.
	FragOffset  int
	Later, More bool
	ARP         *ARP
	ICMPType    uint8
	ICMPCode    uint8
	ICMPID      uint16
	ICMPSeq     uint16
	// Transport.
	SrcPort, DstPort uint16
	TCPFlags         uint8
	TCPSeq, TCPAck   uint32
	Payload          int // transport payload length
}

// ARP is an Ethernet/IPv4 ARP message.
type ARP struct {
	Op       uint16
	SenderHW net.HardwareAddr
	SenderIP netip.Addr
	TargetIP netip.Addr
}

// IP protocol numbers used here.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// Decode reads what it can of an Ethernet frame; a short or odd frame
// gives what was read up to there.
func Decode(b []byte) *Packet {
	p := &Packet{Len: len(b)}
	if len(b) < 14 {
		return p
	}
	p.Dst, p.Src = net.HardwareAddr(b[0:6]), net.HardwareAddr(b[6:12])
	p.EtherType = binary.BigEndian.Uint16(b[12:14])
	b = b[14:]
	if p.EtherType == 0x8100 && len(b) >= 4 { // one VLAN tag
		p.EtherType = binary.BigEndian.Uint16(b[2:4])
		b = b[4:]
	}
	switch p.EtherType {
	case 0x0806:
		if len(b) >= 28 && binary.BigEndian.Uint16(b[0:2]) == 1 && binary.BigEndian.Uint16(b[2:4]) == 0x0800 {
			p.ARP = &ARP{Op: binary.BigEndian.Uint16(b[6:8]), SenderHW: net.HardwareAddr(b[8:14]),
				SenderIP: netip.AddrFrom4([4]byte(b[14:18])), TargetIP: netip.AddrFrom4([4]byte(b[24:28]))}
		}
	case 0x0800:
		if len(b) < 20 || b[0]>>4 != 4 {
			return p
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || len(b) < ihl {
			return p
		}
		p.IP, p.Proto = true, b[9]
		p.IPSrc, p.IPDst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		if total > len(b) || total < ihl {
			total = len(b) // GSO frames say 0 or more than is here
		}
		frag := binary.BigEndian.Uint16(b[6:8])
		p.FragOffset, p.More = int(frag&0x1fff)*8, frag&0x2000 != 0
		if p.FragOffset != 0 {
			p.Later = true
			return p // a later fragment: no transport header
		}
		p.transport(b[ihl:total])
		if p.More && p.Proto == protoUDP && total-ihl >= 8 {
			// The first fragment: the datagram's length is in its
			// header, not in what this fragment carries.
			if n := int(binary.BigEndian.Uint16(b[ihl+4 : ihl+6])); n >= 8 {
				p.Payload = n - 8
			}
		}
	case 0x86dd:
		if len(b) < 40 || b[0]>>4 != 6 {
			return p
		}
		p.IP, p.Proto = true, b[6]
		p.IPSrc, p.IPDst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		end := 40 + int(binary.BigEndian.Uint16(b[4:6]))
		if end > len(b) || end == 40 {
			end = len(b)
		}
		b = b[40:end]
		// Hop-by-hop, routing and destination options (MLD reports
		// come behind a hop-by-hop header).
		for (p.Proto == 0 || p.Proto == 43 || p.Proto == 60) && len(b) >= 8 {
			n := (int(b[1]) + 1) * 8
			if n > len(b) {
				return p
			}
			p.Proto, b = b[0], b[n:]
		}
		p.transport(b)
	}
	return p
}

func (p *Packet) transport(b []byte) {
	switch p.Proto {
	case protoICMP, protoICMPv6:
		if len(b) >= 4 {
			p.ICMPType, p.ICMPCode = b[0], b[1]
		}
		if len(b) >= 8 {
			p.ICMPID, p.ICMPSeq = binary.BigEndian.Uint16(b[4:6]), binary.BigEndian.Uint16(b[6:8])
		}
		p.Payload = len(b)
	case protoTCP:
		if len(b) < 20 {
			return
		}
		p.SrcPort, p.DstPort = binary.BigEndian.Uint16(b[0:2]), binary.BigEndian.Uint16(b[2:4])
		p.TCPSeq, p.TCPAck = binary.BigEndian.Uint32(b[4:8]), binary.BigEndian.Uint32(b[8:12])
		off := int(b[12]>>4) * 4
		p.TCPFlags = b[13]
		if off <= len(b) {
			p.Payload = len(b) - off
		}
	case protoUDP:
		if len(b) < 8 {
			return
		}
		p.SrcPort, p.DstPort = binary.BigEndian.Uint16(b[0:2]), binary.BigEndian.Uint16(b[2:4])
		p.Payload = len(b) - 8
	}
}

// TCP flags.
const (
	tcpFIN = 1 << iota
	tcpSYN
	tcpRST
	tcpPSH
	tcpACK
)

// Summary says in one line what the frame is, in tcpdump's words:
// "ARP, Request who-has 10.0.0.2 tell 10.0.0.1", "IP 10.0.0.1 > 10.0.0.2:
// ICMP echo request, id 7, seq 1, length 64", "IP 10.0.0.1.40000 >
// 10.0.0.2.80: Flags [S], seq 1234, length 0".
func Summary(b []byte) string {
	return Decode(b).String()
}

func (p *Packet) String() string {
	switch {
	case p.ARP != nil:
		a := p.ARP
		switch a.Op {
		case 1:
			return fmt.Sprintf("ARP, Request who-has %s tell %s, length %d", a.TargetIP, a.SenderIP, p.Len)
		case 2:
			return fmt.Sprintf("ARP, Reply %s is-at %s, length %d", a.SenderIP, a.SenderHW, p.Len)
		}
		return fmt.Sprintf("ARP, op %d, length %d", a.Op, p.Len)
	case p.IP:
		fam := "IP"
		if p.IPSrc.Is6() {
			fam = "IP6"
		}
		if p.Later {
			// tcpdump's words, and where the fragment goes.
			return fmt.Sprintf("%s %s > %s: ip-proto-%d (a fragment, at offset %d), length %d", fam, p.IPSrc, p.IPDst, p.Proto, p.FragOffset, p.Len)
		}
		switch p.Proto {
		case protoICMP:
			return fmt.Sprintf("%s %s > %s: ICMP %s, length %d", fam, p.IPSrc, p.IPDst, icmp4(p), p.Payload)
		case protoICMPv6:
			return fmt.Sprintf("%s %s > %s: ICMP6, %s, length %d", fam, p.IPSrc, p.IPDst, icmp6(p), p.Payload)
		case protoTCP:
			return fmt.Sprintf("%s %s.%d > %s.%d: Flags [%s], seq %d, ack %d, length %d", fam, p.IPSrc, p.SrcPort,
				p.IPDst, p.DstPort, tcpFlags(p.TCPFlags), p.TCPSeq, p.TCPAck, p.Payload)
		case protoUDP:
			return fmt.Sprintf("%s %s.%d > %s.%d: UDP, length %d", fam, p.IPSrc, p.SrcPort, p.IPDst, p.DstPort, p.Payload)
		}
		if p.Proto == 2 {
			return fmt.Sprintf("%s %s > %s: IGMP, length %d", fam, p.IPSrc, p.IPDst, p.Len)
		}
		return fmt.Sprintf("%s %s > %s: ip-proto-%d, length %d", fam, p.IPSrc, p.IPDst, p.Proto, p.Len)
	case p.Src != nil:
		return fmt.Sprintf("%s > %s, ethertype 0x%04x, length %d", p.Src, p.Dst, p.EtherType, p.Len)
	}
	return fmt.Sprintf("truncated frame, length %d", p.Len)
}

func icmp4(p *Packet) string {
	switch p.ICMPType {
	case 8:
		return fmt.Sprintf("echo request, id %d, seq %d", p.ICMPID, p.ICMPSeq)
	case 0:
		return fmt.Sprintf("echo reply, id %d, seq %d", p.ICMPID, p.ICMPSeq)
	case 3:
		return fmt.Sprintf("destination unreachable (code %d)", p.ICMPCode)
	case 11:
		return "time exceeded in-transit"
	}
	return fmt.Sprintf("type %d code %d", p.ICMPType, p.ICMPCode)
}

func icmp6(p *Packet) string {
	switch p.ICMPType {
	case 128:
		return fmt.Sprintf("echo request, id %d, seq %d", p.ICMPID, p.ICMPSeq)
	case 129:
		return fmt.Sprintf("echo reply, id %d, seq %d", p.ICMPID, p.ICMPSeq)
	case 133:
		return "router solicitation"
	case 134:
		return "router advertisement"
	case 135:
		return "neighbor solicitation"
	case 136:
		return "neighbor advertisement"
	case 143:
		return "multicast listener report v2"
	case 1:
		return fmt.Sprintf("destination unreachable (code %d)", p.ICMPCode)
	}
	return fmt.Sprintf("type %d code %d", p.ICMPType, p.ICMPCode)
}

func tcpFlags(f uint8) string {
	var b strings.Builder
	for _, x := range []struct {
		bit uint8
		c   string
	}{{tcpSYN, "S"}, {tcpFIN, "F"}, {tcpRST, "R"}, {tcpPSH, "P"}} {
		if f&x.bit != 0 {
			b.WriteString(x.c)
		}
	}
	if f&tcpACK != 0 {
		b.WriteString(".")
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}
