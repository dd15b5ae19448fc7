// Package check runs a topology's reachability checks from inside the
// lab's namespaces: ICMP echo (native, no ping binary), TCP connections
// and UDP exchanges, with listeners of its own that answer with their
// namespace's name, so a check can say where a forwarded connection lands.
package check

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/topology"
)

// Result is the outcome of one check.
type Result struct {
	From    string  `json:"from"`
	To      string  `json:"to"`
	Address string  `json:"address"`
	Proto   string  `json:"proto"`
	Port    int     `json:"port,omitempty"`
	Expect  string  `json:"expect"`
	Seen    string  `json:"seen"`
	Lands   string  `json:"lands,omitempty"`  // expected
	Landed  string  `json:"landed,omitempty"` // the namespace whose listener answered
	TimeMS  float64 `json:"time_ms"`
	Detail  string  `json:"detail,omitempty"`
	OK      bool    `json:"ok"`
	Line    int     `json:"line,omitempty"`
}

// Env is what checks need of a lab.
type Env struct {
	Topo *topology.Topology
	// Open opens a namespace of the lab by short name.
	Open func(short string) (netns.NsHandle, error)
	// Listen lists the namespaces where check may listen for tcp/udp
	// checks ("host" only when it is a sandbox).
	Listen []string
	// Timeout is how long one probe waits (default DefaultTimeout); ICMP tries three
	// times within it.
	Timeout time.Duration
	busy    []busyPort // where a server of someone's listens already
}

type busyPort struct {
	ns, proto string
	port      int
}

// realServer is the one namespace where something else listens on a port
// a connection of proto to port may land on (the port or, through a
// port_forward of it, its destination port), or "".
func (e *Env) realServer(proto string, port int) string {
	ports := map[int]bool{port: true}
	for _, n := range e.Topo.NAT {
		if pf := n.PortForward; pf != nil && pf.Proto == proto && pf.Port == port {
			if ap, err := netip.ParseAddrPort(pf.To); err == nil {
				ports[int(ap.Port())] = true
			}
		}
	}
	found := ""
	for _, b := range e.busy {
		if b.proto == proto && ports[b.port] {
			if found != "" && found != b.ns {
				return "" // more than one: cannot tell
			}
			found = b.ns
		}
	}
	return found
}

// The line a listener of check answers with.
const banner = "netplan-lab "

// DefaultTimeout is how long a check waits for an answer: more than the
// kernel's one second before it asks a neighbour's address again
// (retrans_time): when the first ARP request or neighbour solicitation
// goes unanswered, the packets waiting on it leave a second later. (Two
// ends of a veth in one namespace asking for each other at once lose
// the first exchange now and then: with one second, the veth-self
// example's check failed 2 times in 15 on a busy machine.)
const DefaultTimeout = 1500 * time.Millisecond

func (e *Env) timeout() time.Duration {
	if e.Timeout > 0 {
		return e.Timeout
	}
	return DefaultTimeout
}

// in runs fn inside namespace short.
func (e *Env) in(short string, fn func() error) error {
	fd, err := e.Open(short)
	if err != nil {
		return err
	}
	defer fd.Close()
	return linux.InNetns(fd, fn)
}

// Run runs every check of the topology, one after another in file order,
// and returns the results. Not at once: the traffic of one check teaches
// the network (neighbour caches, a VXLAN's learned remotes, conntrack)
// what another then sees, so checks run together could pass each other
// through a lab that is broken one way (an outside audit: an overlay with
// one wrong remote passed every check). In order, a check sees what the
// ones before it left, as traffic in use would.
func Run(ctx context.Context, e *Env) ([]Result, error) {
	stop, err := e.listen(ctx)
	if err != nil {
		return nil, err
	}
	defer stop()
	out := make([]Result, 0, len(e.Topo.Checks))
	for _, c := range e.Topo.Checks {
		if ctx.Err() != nil {
			break
		}
		out = append(out, e.one(c))
	}
	return out, ctx.Err()
}

func (e *Env) one(c *topology.Check) Result {
	r := Result{From: c.From, To: c.To, Proto: c.Proto, Port: c.Port, Expect: c.Expect, Lands: c.Lands, Line: int(c.Pos.Line)}
	addr, _, err := e.Topo.CheckTarget(c.To)
	if err != nil {
		r.Seen, r.Detail = "error", err.Error()
		return r
	}
	r.Address = addr.String()
	start := time.Now()
	var reached bool
	switch c.Proto {
	case "icmp":
		var rtt time.Duration
		rtt, err = e.ping(c.From, c.Dev, addr)
		reached = err == nil
		if reached {
			r.TimeMS = ms(rtt)
		}
	case "tcp":
		var ours bool
		r.Landed, ours, err = e.tcp(c.From, c.Dev, addr, c.Port)
		reached = err == nil && !(ours && c.Expect == "unreachable")
	case "udp":
		var ours bool
		r.Landed, ours, err = e.udp(c.From, c.Dev, addr, c.Port)
		reached = err == nil && !(ours && c.Expect == "unreachable")
	}
	if err == nil && !reached {
		// Check's own listener (there for another check) answered: it
		// does not count for one that expects nothing to listen (an
		// outside audit's find).
		r.Landed, err = "", errors.New("only check's own listener, there for another check, answered: nothing listens")
	}
	if r.TimeMS == 0 {
		r.TimeMS = ms(time.Since(start))
	}
	r.Seen = "unreachable"
	if reached {
		r.Seen = "reachable"
	}
	if err != nil {
		r.Detail = err.Error()
	}
	r.OK = r.Seen == r.Expect
	var silent *silentServer
	if r.OK && errors.As(err, &silent) {
		r.OK = false // "unreachable" is not known: the datagram may have arrived
	}
	if r.OK && c.Lands != "" && r.Landed != c.Lands {
		r.OK = false
		if r.Landed == "" {
			r.Detail = "answered by a server check cannot place (servers of their own listen on this port in more than one namespace)"
		} else {
			r.Detail = "landed in " + r.Landed + ", not " + c.Lands
		}
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Ping sends ICMP echo requests from namespace ns to addr and returns the
// round trip of the first reply: three tries within the timeout.
func (e *Env) Ping(ns string, addr netip.Addr) (time.Duration, error) {
	return e.ping(ns, "", addr)
}

// bindTo is a socket option setter: SO_BINDTODEVICE dev (ping -I).
func bindTo(dev string) func(network, address string, c syscall.RawConn) error {
	if dev == "" {
		return nil
	}
	return func(network, address string, c syscall.RawConn) error {
		var err error
		cerr := c.Control(func(fd uintptr) { err = unix.BindToDevice(int(fd), dev) })
		if cerr != nil {
			return cerr
		}
		return err
	}
}

func (e *Env) ping(ns, dev string, addr netip.Addr) (time.Duration, error) {
	var conn net.PacketConn
	network, laddr, proto := "ip4:icmp", "0.0.0.0", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if addr.Is6() {
		network, laddr, proto = "ip6:ipv6-icmp", "::", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	if err := e.in(ns, func() error {
		var err error
		lc := net.ListenConfig{Control: bindTo(dev)}
		conn, err = lc.ListenPacket(context.Background(), network, laddr)
		return err
	}); err != nil {
		return 0, fmt.Errorf("icmp socket in %s: %w", ns, err)
	}
	defer conn.Close()
	id := rand.IntN(0xffff)
	to := &net.IPAddr{IP: addr.AsSlice()}
	deadline := time.Now().Add(e.timeout())
	tries := 3
	sentAt := make([]time.Time, tries+1)
	buf := make([]byte, 1500)
	said := "" // an ICMP error that came back instead of a reply
	for seq := 1; seq <= tries; seq++ {
		msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("netplan-lab check")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return 0, err
		}
		sentAt[seq] = time.Now()
		if _, err := conn.WriteTo(b, to); err != nil {
			return 0, simplify(err) // no route: network unreachable
		}
		try := time.Until(deadline) / time.Duration(tries-seq+1)
		conn.SetReadDeadline(time.Now().Add(try))
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				break // this try's time is up
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil {
				continue
			}
			if m.Type != replyType {
				// An error about one of this check's requests (a router
				// with no route says so at once): the verdict stays
				// "no reply", with what came back instead (an outside
				// audit: ping said "Destination Net Unreachable", check
				// only that no reply came).
				if why := icmpError(m, id, addr.Is6()); why != "" {
					said = fmt.Sprintf("%s said %s", from, why)
				}
				continue
			}
			// A reply to any of this check's requests: those that waited
			// for the neighbour's address leave together.
			echo, ok := m.Body.(*icmp.Echo)
			if ok && echo.ID == id && echo.Seq >= 1 && echo.Seq <= seq && from.String() == addr.String() {
				return time.Since(sentAt[echo.Seq]), nil
			}
		}
	}
	if said != "" {
		return 0, fmt.Errorf("no echo reply within %v: %s", e.timeout(), said)
	}
	return 0, fmt.Errorf("no echo reply within %v", e.timeout())
}

// icmpError is what an ICMP error about an echo request of id says
// ("destination net unreachable"), or "" if m is not one.
func icmpError(m *icmp.Message, id int, v6 bool) string {
	var data []byte
	var what string
	code := m.Code
	switch b := m.Body.(type) {
	case *icmp.DstUnreach:
		data = b.Data
		what = "destination unreachable"
		names := map[int]string{0: "destination net unreachable", 1: "destination host unreachable", 3: "destination port unreachable",
			9: "destination net prohibited", 10: "destination host prohibited", 13: "communication administratively prohibited"}
		if v6 {
			names = map[int]string{0: "no route to destination", 1: "communication administratively prohibited", 3: "destination address unreachable", 4: "destination port unreachable"}
		}
		if n, ok := names[code]; ok {
			what = n
		}
	case *icmp.TimeExceeded:
		data, what = b.Data, "time to live exceeded"
	default:
		return ""
	}
	// data is the request as it was sent: its IP header, then its ICMP
	// header (type, code, checksum, id, seq).
	hl := 40
	if !v6 {
		if len(data) < 1 {
			return ""
		}
		hl = int(data[0]&0x0f) * 4
	}
	if len(data) < hl+8 || int(data[hl+4])<<8|int(data[hl+5]) != id {
		return ""
	}
	return what
}

// tcp connects from ns to addr:port; a listener of check says its
// namespace.
// tcp connects from ns to addr:port and says where it landed, and
// whether one of check's own listeners answered.
func (e *Env) tcp(ns, dev string, addr netip.Addr, port int) (string, bool, error) {
	var c net.Conn
	err := e.in(ns, func() error {
		var err error
		d := net.Dialer{Timeout: e.timeout(), Control: bindTo(dev)}
		c, err = d.Dial("tcp", netip.AddrPortFrom(addr, uint16(port)).String())
		return err
	})
	if err != nil {
		return "", false, simplify(err)
	}
	defer c.Close()
	// A listener of check answers at once; a real server may say nothing
	// until asked.
	c.SetReadDeadline(time.Now().Add(min(e.timeout(), 300*time.Millisecond)))
	line, _ := bufio.NewReader(c).ReadString('\n')
	landed, ok := strings.CutPrefix(strings.TrimSpace(line), banner)
	if !ok {
		landed = e.realServer("tcp", port)
	}
	return landed, ok, nil
}

// udp sends a datagram from ns to addr:port and waits for an answer (as
// tcp).
func (e *Env) udp(ns, dev string, addr netip.Addr, port int) (string, bool, error) {
	var c net.Conn
	err := e.in(ns, func() error {
		var err error
		d := net.Dialer{Control: bindTo(dev)}
		c, err = d.Dial("udp", netip.AddrPortFrom(addr, uint16(port)).String())
		return err
	})
	if err != nil {
		return "", false, simplify(err)
	}
	defer c.Close()
	buf := make([]byte, 512)
	deadline := time.Now().Add(e.timeout())
	for try := 0; try < 3; try++ {
		if _, err := c.Write([]byte("netplan-lab check\n")); err != nil {
			return "", false, simplify(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Until(deadline) / time.Duration(3-try)))
		n, err := c.Read(buf)
		if err == nil {
			landed, ok := strings.CutPrefix(strings.TrimSpace(string(buf[:n])), banner)
			if !ok {
				landed = e.realServer("udp", port)
			}
			return landed, ok, nil
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return "", false, errors.New("port unreachable (ICMP)")
		}
	}
	srv := e.realServer("udp", port)
	if srv == "" {
		if ns := e.holder(addr); ns != "" && e.udpListens(ns, port) {
			srv = ns
		}
	}
	if srv != "" {
		// Someone else's server there may have had the datagram and
		// not answered: UDP does not tell (an outside audit: it read as
		// if nothing had arrived, and passed a check expecting
		// unreachable).
		return "", false, &silentServer{fmt.Sprintf("no answer within %v from the server listening on udp/%d in %s (it may have had the datagram and not answered: UDP does not tell)", e.timeout(), port, srv)}
	}
	return "", false, fmt.Errorf("no answer within %v", e.timeout())
}

// silentServer is a UDP check's error when a server listens where the
// datagram went and did not answer: whether it arrived is not known.
type silentServer struct{ msg string }

func (e *silentServer) Error() string { return e.msg }

// udpListens reports whether a UDP socket in namespace ns is bound to
// port (read from the kernel's table there, /proc/thread-self/net/udp and
// udp6, on a thread in ns).
func (e *Env) udpListens(ns string, port int) bool {
	found := false
	_ = e.in(ns, func() error {
		for _, f := range []string{"/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n")[1:] {
				fields := strings.Fields(line)
				if len(fields) < 2 {
					continue
				}
				_, hexPort, ok := strings.Cut(fields[1], ":")
				if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && int(p) == port {
					found = true
				}
			}
		}
		return nil
	})
	return found
}

func simplify(err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("connection refused")
	case errors.Is(err, syscall.ENETUNREACH):
		return errors.New("network unreachable (no route)")
	case errors.Is(err, syscall.EHOSTUNREACH):
		return errors.New("host unreachable")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("no answer (timed out)")
	}
	return err
}

// listen starts, in every namespace of e.Listen, a TCP or UDP listener on
// every port a check uses and on the destination port of every
// port_forward of that port and protocol, unless something listens there
// already. Each answers with its namespace's name.
func (e *Env) listen(ctx context.Context) (func(), error) {
	type key struct {
		proto string
		port  int
	}
	allowed := map[string]bool{}
	for _, ns := range e.Listen {
		allowed[ns] = true
	}
	// Where each port is listened on: where the check's connection may
	// land (its target's namespace, lands:, and through a port_forward
	// its destination), or everywhere for an address the file does not
	// place. Nowhere else: a check that expects a port closed elsewhere
	// sees only what really listens there.
	where := map[key]map[string]bool{}
	add := func(k key, ns ...string) {
		if where[k] == nil {
			where[k] = map[string]bool{}
		}
		for _, n := range ns {
			if allowed[n] {
				where[k][n] = true
			}
		}
	}
	for _, c := range e.Topo.Checks {
		if (c.Proto != "tcp" && c.Proto != "udp") || c.Expect == "unreachable" {
			continue
		}
		k := key{c.Proto, c.Port}
		addr, ns, err := e.Topo.CheckTarget(c.To)
		if err == nil && ns == "" {
			ns = e.holder(addr)
		}
		if ns == "" {
			add(k, e.Listen...)
		} else {
			add(k, ns)
		}
		if c.Lands != "" {
			add(k, c.Lands)
		}
		for _, n := range e.Topo.NAT {
			pf := n.PortForward
			if pf == nil || pf.Proto != c.Proto || pf.Port != c.Port {
				continue
			}
			add(k, n.Namespace)
			if ap, err := netip.ParseAddrPort(pf.To); err == nil {
				dk := key{c.Proto, int(ap.Port())}
				if h := e.holder(ap.Addr()); h != "" {
					add(dk, h)
				} else {
					add(dk, e.Listen...)
				}
				if c.Lands != "" {
					add(dk, c.Lands)
				}
			}
		}
	}
	var closers []func()
	stop := func() {
		for _, c := range closers {
			c()
		}
	}
	for _, ns := range e.Listen {
		for k, nss := range where {
			if !nss[ns] {
				continue
			}
			name := ns
			addr := ":" + strconv.Itoa(k.port)
			err := e.in(ns, func() error {
				if k.proto == "tcp" {
					ln, err := net.Listen("tcp", addr)
					if err != nil {
						return err
					}
					closers = append(closers, func() { ln.Close() })
					go serveTCP(ln, name)
					return nil
				}
				pc, err := net.ListenPacket("udp", addr)
				if err != nil {
					return err
				}
				closers = append(closers, func() { pc.Close() })
				go serveUDP(pc, name)
				return nil
			})
			if errors.Is(err, syscall.EADDRINUSE) {
				// A server of its own listens there: if a connection is
				// answered by something else, it is the one.
				e.busy = append(e.busy, busyPort{ns, k.proto, k.port})
			} else if err != nil {
				stop()
				return nil, fmt.Errorf("listen on %s %s in %s: %w", k.proto, addr, ns, err)
			}
		}
	}
	return stop, nil
}

// holder is the namespace whose interface the file gives address a, or "".
func (e *Env) holder(a netip.Addr) string {
	for _, i := range e.Topo.Interfaces() {
		for _, c := range i.Addresses {
			if p, err := topology.ParseCIDR(c); err == nil && p.Addr() == a {
				return i.Namespace
			}
		}
	}
	return ""
}

func serveTCP(ln net.Listener, ns string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%s%s\n", banner, ns)
		c.Close()
	}
}

func serveUDP(pc net.PacketConn, ns string) {
	buf := make([]byte, 512)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo([]byte(banner+ns+"\n"), from)
	}
}

// Matrix pings, from every namespace in names, the first address of every
// other one (mininet's pingall), concurrently. ok[i][j] says whether
// names[i] reached names[j]; a namespace without an address is skipped
// as a target.
func Matrix(e *Env, names []string) [][]*bool {
	out := make([][]*bool, len(names))
	var wg sync.WaitGroup
	for i, from := range names {
		out[i] = make([]*bool, len(names))
		for j, to := range names {
			if i == j {
				continue
			}
			addr, _, ok := e.Topo.FirstAddr(to)
			if !ok {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.Ping(from, addr)
				v := err == nil
				out[i][j] = &v
			}()
		}
	}
	wg.Wait()
	return out
}
