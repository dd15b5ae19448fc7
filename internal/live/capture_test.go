package live

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// readPcap reads a pcap file with gopacket's reader (not ours) and
// returns its packets.
func readPcap(t *testing.T, r io.Reader) []gopacket.Packet {
	t.Helper()
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		t.Fatalf("pcap reader: %v", err)
	}
	var out []gopacket.Packet
	for {
		data, ci, err := pr.ReadPacketData()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("pcap packet %d: %v", len(out), err)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		p.Metadata().CaptureInfo = ci
		out = append(out, p)
	}
}

func countICMP(ps []gopacket.Packet) int {
	n := 0
	for _, p := range ps {
		if p.Layer(layers.LayerTypeICMPv4) != nil {
			n++
		}
	}
	return n
}

// TestCapture: capture -c 6 during a ping writes a pcap with at least 6
// packets, ICMP among them; -w - streams pcap to stdout; without -w each
// packet is a line; SIGINT ends a capture with a whole file.
func TestCapture(t *testing.T) {
	bin := binary(t)
	file := "../../examples/bridge.yaml"
	e := newEnv(t, file, nil)
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.destroy()
	dir := t.TempDir()
	ping := e.startPing("c1", "10.55.66.3", 20*time.Millisecond)
	defer ping.stop()
	time.Sleep(time.Second) // past the new links' IPv6 autoconfiguration chatter
	args := func(a ...string) []string { return append([]string{"--netns", e.sandbox, "--prefix", e.prefix}, a...) }

	out := filepath.Join(dir, "c.pcap")
	if code, stdout, errOut := e.cli(bin, "capture", file, "c1:eth0", "-c", "6", "-w", out); code != 0 || !strings.Contains(errOut, "6 packets captured on c1:eth0") {
		t.Fatalf("capture -c 6: %d\n%s%s", code, stdout, errOut)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	ps := readPcap(t, f)
	f.Close()
	if len(ps) != 6 || countICMP(ps) == 0 {
		t.Fatalf("the file holds %d packets, %d ICMP", len(ps), countICMP(ps))
	}

	// -w -: pcap on stdout, while it runs.
	cmd := exec.Command(bin, args("capture", file, "host:veth-c1", "-w", "-", "-c", "4", "--filter", "icmp")...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("capture -w -: %v\n%s", err, stderr.String())
	}
	if ps := readPcap(t, &stdout); len(ps) != 4 || countICMP(ps) != 4 {
		t.Fatalf("-w - gave %d packets, %d ICMP", len(ps), countICMP(ps))
	}

	// Lines.
	code, lines, errOut := e.cli(bin, "capture", file, "c1:eth0", "-c", "2", "--filter", "icmp")
	if code != 0 || !strings.Contains(lines, "IP 10.55.66.2 > 10.55.66.3: ICMP echo request") && !strings.Contains(lines, "ICMP echo reply") {
		t.Fatalf("capture lines: %d\n%s%s", code, lines, errOut)
	}

	// SIGINT: the file is whole.
	out2 := filepath.Join(dir, "int.pcap")
	cmd = exec.Command(bin, args("capture", file, "c1:eth0", "-w", out2)...)
	stderr.Reset()
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The file is made once the capture's socket is open (a loaded
	// machine can take longer than any fixed wait to get there); then a
	// few of the pings, 20 ms apart.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(out2); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("capture -w made no file in 10 s\n%s", stderr.String())
		}
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("capture after SIGINT: %v\n%s", err, stderr.String())
	}
	f, err = os.Open(out2)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ps := readPcap(t, f); countICMP(ps) == 0 || !strings.Contains(stderr.String(), "packets captured") {
		t.Fatalf("after SIGINT the file holds %d packets (%d ICMP); stderr %s", len(ps), countICMP(ps), stderr.String())
	}
}

// TestCaptureSeesPacketsAsSent: fragments a namespace sends are captured
// as they were on its interface: with recvfrom the capture read them
// after masquerade in the next namespace had rewritten their bytes, and
// showed the source address NAT gave them there (an outside audit;
// tcpdump beside it was right). Every packet web sends has web's address.
func TestCaptureSeesPacketsAsSent(t *testing.T) {
	bin := binary(t)
	file := "../../examples/published-port.yaml"
	e := newEnv(t, file, nil)
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.destroy()
	out := filepath.Join(t.TempDir(), "frag.pcap")
	cmd := exec.Command(bin, "--netns", e.sandbox, "--prefix", e.prefix, "capture", file, "web:eth0", "-w", out, "--filter", "udp")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(out); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("capture -w made no file in 10 s\n%s", stderr.String())
		}
	}
	var sent [5][2]time.Time // before and after each datagram was sent
	e.in("web", func() {
		// Not connected: the port unreachable that comes back fails no
		// later write.
		c, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		to := &net.UDPAddr{IP: net.ParseIP("198.51.100.2"), Port: 5000}
		for i := 0; i < 5; i++ {
			sent[i][0] = time.Now()
			if _, err := c.WriteTo(bytes.Repeat([]byte("x"), 3000), to); err != nil {
				t.Fatal(err)
			}
			sent[i][1] = time.Now()
			time.Sleep(50 * time.Millisecond)
		}
	})
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("capture after SIGINT: %v\n%s", err, stderr.String())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	frags := 0
	for _, p := range readPcap(t, f) {
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil || !ip.DstIP.Equal(net.ParseIP("198.51.100.2")) {
			continue
		}
		// Its time is when it passed, within its send: not when the
		// capture read it (an outside audit: up to 3 ms late, replies
		// before requests).
		ts, in := p.Metadata().Timestamp, false
		for _, w := range sent {
			if !ts.Before(w[0].Add(-time.Millisecond)) && !ts.After(w[1].Add(time.Millisecond)) {
				in = true
			}
		}
		if !in {
			t.Errorf("a fragment captured at %s, in none of the sends: %v", ts.Format("15:04:05.000000"), sent)
		}
		frags++
		if !ip.SrcIP.Equal(net.ParseIP("172.18.0.2")) {
			t.Errorf("a packet web sent is captured from %v (offset %d), not web's 172.18.0.2", ip.SrcIP, ip.FragOffset)
		}
	}
	if frags < 10 {
		t.Fatalf("captured %d fragments of the 5 datagrams, want 10 or more", frags)
	}
}
