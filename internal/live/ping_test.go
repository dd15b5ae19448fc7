package live

import (
	"net"
	"os"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// pinger sends ICMP echo requests from a namespace at a fixed interval and
// counts the replies.
type pinger struct {
	conn    *icmp.PacketConn
	done    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	sent    int
	replies map[int]bool
}

// startPing pings dst from namespace ns every interval until stop.
func (e *env) startPing(ns, dst string, interval time.Duration) *pinger {
	e.t.Helper()
	p := &pinger{done: make(chan struct{}), replies: map[int]bool{}}
	e.in(ns, func() {
		c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			e.t.Fatalf("icmp socket in %s: %v", ns, err)
		}
		p.conn = c
	})
	to := &net.IPAddr{IP: net.ParseIP(dst)}
	id := os.Getpid() & 0xffff
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 1500)
		for {
			p.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, _, err := p.conn.ReadFrom(buf)
			if err != nil {
				select {
				case <-p.done:
					return
				default:
					continue
				}
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			if echo, ok := m.Body.(*icmp.Echo); ok && echo.ID == id {
				p.mu.Lock()
				p.replies[echo.Seq] = true
				p.mu.Unlock()
			}
		}
	}()
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-p.done:
				return
			case <-t.C:
			}
			msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("netplan-lab")}}
			b, _ := msg.Marshal(nil)
			p.mu.Lock()
			p.sent++
			p.mu.Unlock()
			p.conn.WriteTo(b, to)
		}
	}()
	return p
}

// waitSent waits until n pings have been sent (10 s at most).
func (p *pinger) waitSent(n int) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		p.mu.Lock()
		sent := p.sent
		p.mu.Unlock()
		if sent >= n {
			return
		}
	}
}

// stop ends the pings, waits for late replies, and returns how many were
// sent and how many got no reply.
func (p *pinger) stop() (sent, lost int) {
	p.mu.Lock()
	last := p.sent
	p.mu.Unlock()
	// Replies in flight: a reply lost is never coming, a late one (a
	// loaded machine) is not lost.
	answered := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for seq := 0; seq < last; seq++ {
			if !p.replies[seq] {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(2 * time.Second); !answered() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	close(p.done)
	p.wg.Wait()
	p.conn.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for seq := 0; seq < last; seq++ {
		if !p.replies[seq] {
			lost++
		}
	}
	return last, lost
}

// routeWatch records the routes deleted in a namespace.
type routeWatch struct {
	done    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	removed []string
}

func (e *env) watchRoutes(ns string) *routeWatch {
	e.t.Helper()
	rw := &routeWatch{done: make(chan struct{})}
	ch := make(chan netlink.RouteUpdate, 64)
	fd := e.nsHandle(ns)
	if err := netlink.RouteSubscribeWithOptions(ch, rw.done, netlink.RouteSubscribeOptions{Namespace: &fd}); err != nil {
		e.t.Fatal(err)
	}
	rw.wg.Add(1)
	go func() {
		defer rw.wg.Done()
		defer fd.Close()
		for u := range ch {
			if u.Type == unix.RTM_DELROUTE && u.Route.Table == unix.RT_TABLE_MAIN && u.Route.Protocol != unix.RTPROT_KERNEL {
				rw.mu.Lock()
				rw.removed = append(rw.removed, u.Route.String())
				rw.mu.Unlock()
			}
		}
	}()
	return rw
}

func (rw *routeWatch) stop() []string {
	close(rw.done)
	rw.wg.Wait()
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return rw.removed
}

// nsHandle opens a lab namespace; the caller closes it.
func (e *env) nsHandle(short string) netns.NsHandle {
	e.t.Helper()
	fd, err := netns.GetFromPath(e.nsPath(short))
	if err != nil {
		e.t.Fatal(err)
	}
	return fd
}
