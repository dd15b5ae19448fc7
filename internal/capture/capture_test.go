package capture

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	ipA  = net.IP{10, 0, 0, 1}
	ipB  = net.IP{10, 0, 0, 2}
)

// frame builds a packet with gopacket (a builder of its own, not this
// package's decoder).
func frame(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func frames(t *testing.T) map[string][]byte {
	eth := func(typ layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: typ}
	}
	ip4 := func(p layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: p, SrcIP: ipA, DstIP: ipB}
	}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1234, SYN: true, Window: 100}
	ip := ip4(layers.IPProtocolTCP)
	tcp.SetNetworkLayerForChecksum(ip)
	udp := &layers.UDP{SrcPort: 5000, DstPort: 6000}
	ipu := ip4(layers.IPProtocolUDP)
	udp.SetNetworkLayerForChecksum(ipu)
	// Fragments of a 3000-byte datagram (an outside audit: a later one
	// was an "ICMP echo reply, id 0", or "UDP" from port 0, and the first
	// said the length it carried, not the datagram's).
	frag := func(p layers.IPProtocol, offset uint16, more bool, data []byte) []byte {
		ip := ip4(p)
		ip.FragOffset = offset / 8
		if more {
			ip.Flags = layers.IPv4MoreFragments
		}
		return frame(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload(data))
	}
	udpHead := []byte{0x13, 0x88, 0x17, 0x70, 0x0b, 0xc0, 0, 0} // 5000 > 6000, length 3008
	return map[string][]byte{
		"IP 10.0.0.1.5000 > 10.0.0.2.6000: UDP, length 3000":                            frag(layers.IPProtocolUDP, 0, true, append(udpHead, make([]byte, 1472)...)),
		"IP 10.0.0.1 > 10.0.0.2: ip-proto-17 (a fragment, at offset 1480), length 1514": frag(layers.IPProtocolUDP, 1480, true, make([]byte, 1480)),
		"IP 10.0.0.1 > 10.0.0.2: ip-proto-1 (a fragment, at offset 2960), length 82":    frag(layers.IPProtocolICMPv4, 2960, false, make([]byte, 48)),
		"ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 60": frame(t, eth(layers.EthernetTypeARP), &layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: 1, SourceHwAddress: macA, SourceProtAddress: ipA, DstHwAddress: make([]byte, 6), DstProtAddress: ipB}),
		"ARP, Reply 10.0.0.2 is-at 02:00:00:00:00:02, length 60": frame(t, eth(layers.EthernetTypeARP), &layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: 2, SourceHwAddress: macB, SourceProtAddress: ipB, DstHwAddress: macA, DstProtAddress: ipA}),
		"IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 7, seq 3, length 64": frame(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 3}, gopacket.Payload(make([]byte, 56))),
		"IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [S], seq 1234, ack 0, length 0": frame(t, eth(layers.EthernetTypeIPv4), ip, tcp),
		"IP 10.0.0.1.5000 > 10.0.0.2.6000: UDP, length 5":                       frame(t, eth(layers.EthernetTypeIPv4), ipu, udp, gopacket.Payload("hello")),
	}
}

func TestSummary(t *testing.T) {
	for want, b := range frames(t) {
		if got := Summary(b); got != want {
			t.Errorf("Summary = %q, want %q", got, want)
		}
	}
	if got := Summary([]byte{1, 2}); got != "truncated frame, length 2" {
		t.Errorf("short frame: %q", got)
	}
}

// TestPcapReadBack: what Writer writes, gopacket's pcap reader reads back
// whole, with the times and lengths given.
func TestPcapReadBack(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var sent [][]byte
	ts := time.Date(2026, 11, 22, 12, 0, 0, 123456000, time.UTC)
	for _, b := range frames(t) {
		if err := w.Write(ts, b, len(b)+10); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, b)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Errorf("link type %v", r.LinkType())
	}
	for i, want := range sent {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !bytes.Equal(data, want) || ci.Length != len(want)+10 || !ci.Timestamp.Equal(ts) {
			t.Errorf("packet %d read back as %x (len %d, %v)", i, data, ci.Length, ci.Timestamp)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if p.ErrorLayer() != nil {
			t.Errorf("packet %d: %v", i, p.ErrorLayer().Error())
		}
	}
}

func TestFilter(t *testing.T) {
	fs := frames(t)
	// Fragments count as their protocol's (as tcpdump's "udp" keeps
	// them), and a later one has no port.
	cases := map[string]int{"": 8, "arp": 2, "icmp": 2, "tcp or udp": 4, "not arp": 6, "port 80": 1,
		"host 10.0.0.2 and not icmp": 6, "ip and udp and port 6000": 2}
	for expr, want := range cases {
		f, err := ParseFilter(expr)
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		n := 0
		for _, b := range fs {
			if f(Decode(b)) {
				n++
			}
		}
		if n != want {
			t.Errorf("filter %q kept %d, want %d", expr, n, want)
		}
	}
	for _, bad := range []string{"tcp and", "port x", "ether host 1", "tcp tcp"} {
		if _, err := ParseFilter(bad); err == nil {
			t.Errorf("filter %q accepted", bad)
		}
	}
	// tcpdump's implied and: the error shows the filter with it written.
	_, err := ParseFilter("tcp port 80 or icmp")
	if want := `filter "tcp port 80 or icmp": expected and/or before "port" (this filter wants them written: "tcp and port 80 or icmp")`; err == nil || err.Error() != want {
		t.Errorf("tcp port 80: %v\nwant %s", err, want)
	}
}
