// Package live holds the tests that run against the real kernel. Each test
// works in a sandbox namespace of its own (--netns) with a random prefix for
// the namespaces it creates, and leaves nothing behind. They need root and
// skip without it.
package live

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("live test skipped: it needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to make namespaces; CI runs it as root")
	}
}

// env is one test's lab: a sandbox host and a namespace prefix of its own.
type env struct {
	t       *testing.T
	sandbox string
	prefix  string
	topo    *topology.Topology
	k       *linux.Kernel
	// before: the links' identities before an edit (editCase).
	before map[string]string
}

func newEnv(t *testing.T, file string, src []byte) *env {
	t.Helper()
	needRoot(t)
	id := fmt.Sprintf("%04x", rand.Intn(0xffff))
	e := &env{t: t, sandbox: "npl-test-" + id, prefix: "t" + id + "-"}
	e.load(file, src)
	t.Cleanup(e.cleanup)
	return e
}

func (e *env) load(file string, src []byte) {
	e.t.Helper()
	var err error
	if src == nil {
		e.topo, err = topology.Load(file)
	} else {
		e.topo, err = topology.Parse(file, src)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	if e.k != nil {
		e.k.Close()
	}
	e.k = linux.New(linux.Options{Name: e.topo.Name, Prefix: e.prefix, Netns: e.sandbox})
}

func (e *env) desired() *reconcile.State {
	s, err := reconcile.Desired(e.topo)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) apply(k reconcile.Kernel) (*reconcile.Result, error) {
	if _, err := e.k.EnsureHost(); err != nil {
		e.t.Fatal(err)
	}
	return reconcile.Reconcile(context.Background(), k, e.desired(), reconcile.ExecOptions{})
}

func (e *env) mustApply() *reconcile.Result {
	e.t.Helper()
	res, err := e.apply(e.k)
	if err != nil {
		e.t.Fatalf("apply: %v", err)
	}
	return res
}

func (e *env) plan() *reconcile.Plan {
	e.t.Helper()
	obs, err := e.k.Observe(context.Background(), reconcile.QueryFor(e.desired()))
	if err != nil {
		e.t.Fatal(err)
	}
	return reconcile.Diff(e.desired(), obs)
}

func (e *env) destroy() {
	e.t.Helper()
	empty := reconcile.Nothing()
	if _, err := reconcile.Reconcile(context.Background(), e.k, empty, reconcile.ExecOptions{}); err != nil {
		e.t.Fatalf("destroy: %v", err)
	}
	if _, err := e.k.RemoveHostIfCreated(); err != nil {
		e.t.Fatalf("remove sandbox: %v", err)
	}
}

// cleanup removes whatever the test left, even after a failure.
func (e *env) cleanup() {
	if e.k != nil {
		e.k.Close()
	}
	entries, _ := os.ReadDir(linux.NetnsDir)
	for _, d := range entries {
		if strings.HasPrefix(d.Name(), e.prefix) || d.Name() == e.sandbox {
			p := filepath.Join(linux.NetnsDir, d.Name())
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
			_ = os.Remove(p)
		}
	}
	_ = os.Remove(linux.LockPath(e.sandbox))
	_ = os.Remove(linux.PrefixLockPath(e.prefix))
	linux.ForgetSandboxRecords(e.sandbox)
	// Hosts files a CLI apply wrote (a CLI destroy removes them; env's
	// own destroy goes through reconcile and does not).
	etc, _ := os.ReadDir("/etc/netns")
	for _, d := range etc {
		if strings.HasPrefix(d.Name(), e.prefix) || d.Name() == e.sandbox {
			p := filepath.Join("/etc/netns", d.Name())
			if to, err := os.Readlink(p); err == nil && strings.HasPrefix(to, ".netplan-lab/") {
				_ = os.RemoveAll(filepath.Join("/etc/netns", to)) // the lab's shared file
			}
			_ = os.RemoveAll(p)
		}
	}
	for _, d := range []string{"/etc/netns/.netplan-lab", "/etc/netns"} {
		if left, err := os.ReadDir(d); err == nil && len(left) == 0 {
			_ = os.Remove(d)
		}
	}
}

// path of a namespace of the lab: "host" is the sandbox.
func (e *env) nsPath(short string) string {
	if short == reconcile.HostNS {
		return filepath.Join(linux.NetnsDir, e.sandbox)
	}
	return filepath.Join(linux.NetnsDir, e.prefix+short)
}

// in runs fn with the calling goroutine's thread inside namespace short.
// Sockets made in fn stay in that namespace.
func (e *env) in(short string, fn func()) {
	e.t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	origin, err := netns.Get()
	if err != nil {
		e.t.Fatal(err)
	}
	defer origin.Close()
	target, err := netns.GetFromPath(e.nsPath(short))
	if err != nil {
		e.t.Fatalf("open netns %s: %v", short, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		e.t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(origin); err != nil {
			panic("cannot return to the original netns: " + err.Error())
		}
	}()
	fn()
}

// tcp proves traffic: a server listening on addr in namespace srv answers a
// client dialing from namespace cli with a line naming the address it saw.
// It returns that address.
func (e *env) tcp(srv, cli, listen, dial string) string {
	e.t.Helper()
	var ln net.Listener
	e.in(srv, func() {
		var err error
		ln, err = net.Listen("tcp", listen)
		if err != nil {
			e.t.Fatalf("listen %s in %s: %v", listen, srv, err)
		}
	})
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "hello %s\n", c.RemoteAddr())
		c.Close()
	}()
	var conn net.Conn
	e.in(cli, func() {
		var err error
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err = d.Dial("tcp", dial)
		if err != nil {
			e.t.Fatalf("dial %s from %s: %v", dial, cli, err)
		}
	})
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		e.t.Fatalf("read from %s: %v", dial, err)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "hello "))
}

// tcpFails asserts that a connection cannot be made.
func (e *env) tcpFails(cli, dial string) {
	e.t.Helper()
	e.in(cli, func() {
		d := net.Dialer{Timeout: 1 * time.Second}
		c, err := d.Dial("tcp", dial)
		if err == nil {
			c.Close()
			e.t.Fatalf("dial %s from %s worked; it should not", dial, cli)
		}
	})
}

// assertGone checks that nothing of the lab is left: no namespace with the
// prefix, no sandbox.
func (e *env) assertGone(keep ...string) {
	e.t.Helper()
	entries, _ := os.ReadDir(linux.NetnsDir)
	for _, d := range entries {
		n := d.Name()
		if (strings.HasPrefix(n, e.prefix) || n == e.sandbox) && !contains(keep, n) {
			e.t.Errorf("netns %s is still there", n)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (e *env) assertNoOp() {
	e.t.Helper()
	if p := e.plan(); !p.Empty() || len(p.Conflicts) > 0 {
		e.t.Fatalf("plan after apply is not empty:\n%v", p)
	}
	ck := &reconcile.CountingKernel{Kernel: e.k}
	if _, err := e.apply(ck); err != nil {
		e.t.Fatal(err)
	}
	if ck.Writes() != 0 {
		e.t.Fatalf("re-apply made %d kernel writes", ck.Writes())
	}
}

// assertUnsupported: apply stops before touching anything, naming the kind
// and the kernel option.
func (e *env) assertUnsupported(kind, option string) {
	e.t.Helper()
	before := e.snapshotAll()
	ck := &reconcile.CountingKernel{Kernel: e.k}
	_, err := reconcile.Reconcile(context.Background(), ck, e.desired(), reconcile.ExecOptions{})
	if err == nil || !strings.Contains(err.Error(), "cannot create "+kind+" interfaces") || !strings.Contains(err.Error(), option) {
		e.t.Fatalf("want an error naming %s and %s, got %v", kind, option, err)
	}
	if ck.Writes() != 0 || e.snapshotAll() != before {
		e.t.Fatalf("an unsupported apply changed the kernel (%d writes)", ck.Writes())
	}
}

// snapshotAll lists every pinned namespace and the links of this one.
func (e *env) snapshotAll() string {
	var b strings.Builder
	entries, _ := os.ReadDir(linux.NetnsDir)
	for _, d := range entries {
		fmt.Fprintf(&b, "netns %s\n", d.Name())
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		fmt.Fprintf(&b, "link %s\n", l.Attrs().Name)
	}
	return b.String()
}

// exampleEdits is one in-place edit per example: from, to.
var exampleEdits = map[string][2]string{
	"bridge.yaml":         {"name: hwchiu0", "name: hwchiu0\n    mtu: 1400"},
	"router.yaml":         {"name: br0", "name: br0\n    stp: true"},
	"veth-pair.yaml":      {"mtu: 9000", "mtu: 1500"},
	"container.yaml":      {"name: cbr0", "name: cbr0\n    mac: \"02:00:00:00:0c:01\""},
	"nat.yaml":            {"name: br0", "name: br0\n    mtu: 1400"},
	"published-port.yaml": {"172.18.0.1/24]", "172.18.0.1/24, \"fd18::1/64\"]"},
	"host.yaml":           {"198.18.0.1/24]", "198.18.0.1/24, \"fd19::1/64\"]"},
	"overlay.yaml":        {"10.200.0.1/24], mtu: 1450", "10.200.0.1/24], mtu: 1400"},
	"macvlan.yaml":        {"addresses: [192.168.111.11/24]", "addresses: [192.168.111.11/24, \"fd11::11/64\"]"},
	"ipvlan-l2.yaml":      {"addresses: [192.168.112.11/24]", "addresses: [192.168.112.11/24, 192.168.112.12/24]"},
	"ipvlan-l3.yaml":      {"addresses: [10.0.2.10/24]", "addresses: [10.0.2.10/24]\n    mtu: 1400"},
	"veth-self.yaml":      {"addresses: [192.168.1.2/24]}", "addresses: [192.168.1.2/24]}\n    mtu: 1400"},
	"impair.yaml":         {"      rate: 8mbit", "      rate: 20mbit"},
}

// exampleChecks prove, with real traffic, what each example teaches.
var exampleChecks = map[string]func(e *env){
	"bridge.yaml": func(e *env) {
		e.tcp("c2", "c1", "10.55.66.3:8080", "10.55.66.3:8080")
		e.tcp("host", "c1", "10.55.66.1:8081", "10.55.66.1:8081")
	},
	"router.yaml": func(e *env) {
		// Across the router: two subnets.
		if from := e.tcp("ns1", "ns0", "192.168.89.2:80", "192.168.89.2:80"); !strings.HasPrefix(from, "192.168.88.2:") {
			e.t.Fatalf("ns1 saw ns0 as %s", from)
		}
		e.tcp("host", "ns1", "192.168.89.1:81", "192.168.89.1:81")
		sc, err := e.k.Observe(context.Background(), reconcile.Query{Sysctls: map[string][]string{"host": {"net.ipv4.ip_forward"}}})
		if err != nil || sc.NS("host").Sysctls["net.ipv4.ip_forward"] != "1" {
			e.t.Fatalf("ip_forward in the sandbox: %v %v", sc.NS("host").Sysctls, err)
		}
	},
	"veth-pair.yaml": func(e *env) {
		e.tcp("right", "left", "10.0.0.2:80", "10.0.0.2:80")
		e.tcp("left", "right", "[fd00::1]:80", "[fd00::1]:80")
	},
	"none.yaml": func(e *env) {
		e.in("box", func() {
			links, err := netlink.LinkList()
			if err != nil || len(links) != 1 || links[0].Attrs().Name != "lo" || links[0].Attrs().Flags&net.FlagUp == 0 {
				e.t.Fatalf("box should hold only lo, up: %v %v", links, err)
			}
		})
		e.tcp("box", "box", "127.0.0.1:80", "127.0.0.1:80")
		e.tcpFails("box", "10.55.66.1:80")
	},
	"nat.yaml": func(e *env) {
		// ns0 reaches the "internet" masqueraded as the host's uplink address.
		if from := e.tcp("internet", "ns0", "203.0.113.2:80", "203.0.113.2:80"); !strings.HasPrefix(from, "203.0.113.1:") {
			e.t.Fatalf("internet saw ns0 from %s, want 203.0.113.1", from)
		}
		// Inside the LAN nothing is translated (not_out: br0).
		if from := e.tcp("ns1", "ns0", "192.168.88.3:80", "192.168.88.3:80"); !strings.HasPrefix(from, "192.168.88.2:") {
			e.t.Fatalf("ns1 saw ns0 from %s", from)
		}
	},
	"published-port.yaml": func(e *env) {
		// docker run -p 8080:80: the internet reaches the container.
		if from := e.tcp("web", "internet", "172.18.0.2:80", "198.51.100.1:8080"); !strings.HasPrefix(from, "198.51.100.2:") {
			e.t.Fatalf("web saw the client as %s", from)
		}
		// So does a client on the host side itself.
		e.tcp("web", "host", "172.18.0.2:80", "198.51.100.1:8080")
	},
	"host.yaml": func(e *env) {
		// A process in the host namespace uses the host's uplink directly.
		if from := e.tcp("internet", "host", "198.18.0.2:80", "198.18.0.2:80"); !strings.HasPrefix(from, "198.18.0.1:") {
			e.t.Fatalf("internet saw the host-model process as %s", from)
		}
	},
	"overlay.yaml": func(e *env) {
		// c1 and c2 live on different "hosts" and meet through VXLAN 4097.
		if from := e.tcp("c2", "c1", "10.200.0.2:80", "10.200.0.2:80"); !strings.HasPrefix(from, "10.200.0.1:") {
			e.t.Fatalf("c2 saw c1 as %s", from)
		}
		e.in("host1", func() {
			l, err := netlink.LinkByName("vx0")
			if err != nil {
				e.t.Fatal(err)
			}
			v, ok := l.(*netlink.Vxlan)
			if !ok || v.VxlanId != 4097 || v.Port != 4789 || v.Group.String() != "192.168.111.129" {
				e.t.Fatalf("vx0 in host1: %#v", l)
			}
		})
	},
	"macvlan.yaml": func(e *env) {
		// The two children talk to each other inside the parent ...
		e.tcp("web2", "web1", "192.168.111.11:80", "192.168.111.11:80")
		// ... and to the third machine on the parent's LAN.
		if from := e.tcp("lan", "web1", "192.168.111.1:80", "192.168.111.1:80"); !strings.HasPrefix(from, "192.168.111.10:") {
			e.t.Fatalf("lan saw web1 as %s", from)
		}
		e.in("web1", func() {
			l, err := netlink.LinkByName("eth1")
			if err != nil {
				e.t.Fatal(err)
			}
			if m, ok := l.(*netlink.Macvlan); !ok || m.Mode != netlink.MACVLAN_MODE_BRIDGE {
				e.t.Fatalf("eth1 in web1: %#v", l)
			}
		})
	},
	"ipvlan-l2.yaml": func(e *env) {
		e.tcp("bbox2", "bbox1", "192.168.112.11:80", "192.168.112.11:80")
		if from := e.tcp("lan", "bbox1", "192.168.112.1:80", "192.168.112.1:80"); !strings.HasPrefix(from, "192.168.112.10:") {
			e.t.Fatalf("lan saw bbox1 as %s", from)
		}
		e.in("bbox1", func() {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				e.t.Fatal(err)
			}
			if v, ok := l.(*netlink.IPVlan); !ok || v.Mode != netlink.IPVLAN_MODE_L2 {
				e.t.Fatalf("eth0 in bbox1: %#v", l)
			}
		})
	},
	"ipvlan-l3.yaml": func(e *env) {
		// Different subnets, no router: the parent routes in L3 mode.
		if from := e.tcp("bbox2", "bbox1", "10.0.2.10:80", "10.0.2.10:80"); !strings.HasPrefix(from, "10.0.1.10:") {
			e.t.Fatalf("bbox2 saw bbox1 as %s", from)
		}
		e.in("bbox1", func() {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				e.t.Fatal(err)
			}
			if v, ok := l.(*netlink.IPVlan); !ok || v.Mode != netlink.IPVLAN_MODE_L3 {
				e.t.Fatalf("eth0 in bbox1: %#v", l)
			}
		})
	},
	"veth-self.yaml": func(e *env) {
		// What makes the pair answer itself (TestVethSelfNeedsItsSysctls
		// shows it failing without them): read back from the kernel.
		sc, err := e.k.Observe(context.Background(), reconcile.Query{Namespaces: []string{"solo"}, Sysctls: map[string][]string{
			"solo": {"net.ipv4.conf.veth0.accept_local", "net.ipv4.conf.veth1.accept_local", "net.ipv4.conf.veth1.rp_filter", "net.ipv4.conf.all.rp_filter"}}})
		if err != nil {
			e.t.Fatal(err)
		}
		got := sc.NS("solo").Sysctls
		if got["net.ipv4.conf.veth0.accept_local"] != "1" || got["net.ipv4.conf.veth1.accept_local"] != "1" || got["net.ipv4.conf.veth1.rp_filter"] != "0" || got["net.ipv4.conf.all.rp_filter"] != "0" {
			e.t.Fatalf("solo's sysctls: %v", got)
		}
	},
	"impair.yaml": func(e *env) {
		// The WAN line carries what its rate says (within 25%).
		rate := float64(e.topo.Links[0].A.Impair.Rate) / 1e6
		if mbit := e.throughput("hq", "branch", "10.20.0.1:5001", 2*time.Second); mbit < 0.75*rate || mbit > 1.25*rate {
			e.t.Fatalf("through rate %.0fmbit: %.2f Mbit/s", rate, mbit)
		}
	},
	"container.yaml": func(e *env) {
		// Two "processes" in one namespace: loopback is shared.
		e.tcp("pod", "pod", "127.0.0.1:8000", "127.0.0.1:8000")
		e.tcp("pod", "host", "172.30.0.2:80", "172.30.0.2:80")
	},
}

func TestExamples(t *testing.T) {
	needRoot(t)
	files, _ := filepath.Glob("../../examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			check, ok := exampleChecks[name]
			if !ok {
				t.Fatalf("example %s has no live check: add one to exampleChecks", name)
			}
			e := newEnv(t, f, nil)
			if strings.HasPrefix(name, "ipvlan") && linux.Probe("ipvlan") != nil {
				e.assertUnsupported("ipvlan", "CONFIG_IPVLAN")
				t.Skipf("%s: this kernel has no ipvlan; the unsupported path was checked instead (run make test-kernel for the real test)", name)
			}
			e.mustApply()
			check(e)
			e.fileChecks()
			e.assertNoOp()
			if edit, ok := exampleEdits[name]; ok {
				// One in-place edit: planned as changes, never a replace.
				src, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				edited := strings.Replace(string(src), edit[0], edit[1], 1)
				if edited == string(src) {
					t.Fatalf("edit %q not found in %s", edit[0], name)
				}
				e.load(name, []byte(edited))
				p := e.plan()
				if p.Empty() {
					t.Fatalf("edit %q planned nothing", edit[1])
				}
				for _, c := range p.Changes {
					if c.Action == reconcile.Replace || (c.Kind == reconcile.KindLink && c.Action != reconcile.Update) {
						t.Fatalf("edit %q is not in place:\n%v", edit[1], p)
					}
				}
				e.mustApply()
				check(e)
				e.fileChecks()
				e.assertNoOp()
			}
			e.destroy()
			e.assertGone()
		})
	}
}

// threeOnABridge is the bridge example with a third container.
const threeOnABridge = `name: bridge3
namespaces:
  c1: {routes: [{to: default, via: 10.55.66.1}]}
  c2: {routes: [{to: default, via: 10.55.66.1}]}
  c3: {routes: [{to: default, via: 10.55.66.1}]}
bridges:
  - {name: br0, addresses: [10.55.66.1/24]}
links:
  - a: {namespace: c1, name: eth0, addresses: [10.55.66.2/24]}
    b: {namespace: host, name: veth-c1, bridge: br0}
  - a: {namespace: c2, name: eth0, addresses: [10.55.66.3/24]}
    b: {namespace: host, name: veth-c2, bridge: br0}
  - a: {namespace: c3, name: eth0, addresses: [10.55.66.4/24]}
    b: {namespace: host, name: veth-c3, bridge: br0}
`

// TestEditOneAddressPlansExactlyThat: changing one address is a 2-line
// plan (the new address is added before the old one goes, so the route
// through the link stays), and a continuous ping between two other
// namespaces loses nothing while it applies; the route of the namespace
// whose address changed never goes away either.
func TestEditOneAddressPlansExactlyThat(t *testing.T) {
	e := newEnv(t, "bridge3.yaml", []byte(threeOnABridge))
	e.mustApply()
	e.load("bridge3.yaml", []byte(strings.Replace(threeOnABridge, "10.55.66.3/24", "10.55.66.9/24", 1)))
	p := e.plan()
	var got []string
	for _, c := range p.Changes {
		got = append(got, string(c.Action)+" "+c.Namespace+" "+c.Describe())
	}
	want := "+ c2 address 10.55.66.9/24 on eth0\n- c2 address 10.55.66.3/24 on eth0"
	if strings.Join(got, "\n") != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
	pinger := e.startPing("c1", "10.55.66.4", 5*time.Millisecond)
	routes := e.watchRoutes("c2")
	time.Sleep(100 * time.Millisecond)
	ck := &reconcile.CountingKernel{Kernel: e.k}
	if _, err := e.apply(ck); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	sent, lost := pinger.stop()
	if sent < 20 || lost != 0 {
		t.Fatalf("ping c1 -> c3 during the apply: %d sent, %d lost", sent, lost)
	}
	if removed := routes.stop(); len(removed) > 0 {
		t.Fatalf("routes in c2 went away during the apply: %v", removed)
	}
	if ck.Writes() != 2 {
		t.Fatalf("the edit took %d writes, want 2", ck.Writes())
	}
	e.tcp("c2", "c1", "10.55.66.9:80", "10.55.66.9:80")
	e.tcp("c3", "c2", "10.55.66.4:81", "10.55.66.4:81") // through c2's default route's subnet
	e.assertNoOp()
	e.destroy()
	e.assertGone()
}

// TestAddressEditSurvivesConfAllByHand: conf.all.promote_secondaries and
// keep_addr_on_down set to 0 by hand in a lab namespace (observation does
// not read them) must not break make-before-break: each interface has its
// own 1 from conf.default, which the kernel takes as well. (With the lab's
// defaults in conf.all only, the new address went with the old primary and
// the apply failed its confirmation.)
func TestAddressEditSurvivesConfAllByHand(t *testing.T) {
	e := newEnv(t, "bridge3.yaml", []byte(threeOnABridge))
	e.mustApply()
	e.in("c2", func() {
		for _, k := range []string{"ipv4/conf/all/promote_secondaries", "ipv6/conf/all/keep_addr_on_down"} {
			if err := os.WriteFile("/proc/sys/net/"+k, []byte("0"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
	e.load("bridge3.yaml", []byte(strings.Replace(threeOnABridge, "10.55.66.3/24", "10.55.66.9/24", 1)))
	routes := e.watchRoutes("c2")
	if _, err := e.apply(e.k); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if removed := routes.stop(); len(removed) > 0 {
		t.Fatalf("routes in c2 went away during the apply: %v", removed)
	}
	e.tcp("c2", "c1", "10.55.66.9:80", "10.55.66.9:80")
	e.assertNoOp()
	e.destroy()
	e.assertGone()
}

func TestFailureMidApplyRollsBack(t *testing.T) {
	for _, n := range []int64{1, 3, 5, 7} {
		t.Run(fmt.Sprintf("fail-step-%d", n), func(t *testing.T) {
			e := newEnv(t, "../../examples/router.yaml", nil)
			if _, err := e.k.EnsureHost(); err != nil {
				t.Fatal(err)
			}
			before := e.snapshot()
			fk := &reconcile.FailingKernel{Kernel: e.k, N: n, Err: errors.New("injected failure")}
			res, err := e.apply(fk)
			if err == nil || !strings.Contains(err.Error(), "injected failure") {
				t.Fatalf("want the injected failure, got %v", err)
			}
			if !res.RolledBack || res.RollbackErr != nil {
				t.Fatalf("rolled back %v, rollback error %v", res.RolledBack, res.RollbackErr)
			}
			if after := e.snapshot(); after != before {
				t.Fatalf("the kernel after rollback differs:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if _, err := e.k.RemoveHostIfCreated(); err != nil {
				t.Fatal(err)
			}
			e.assertGone()
		})
	}
}

// snapshot lists the lab's namespaces and the sandbox's links, addresses,
// routes and ip_forward, as text.
func (e *env) snapshot() string {
	e.t.Helper()
	var b strings.Builder
	entries, _ := os.ReadDir(linux.NetnsDir)
	for _, d := range entries {
		if strings.HasPrefix(d.Name(), e.prefix) {
			fmt.Fprintf(&b, "netns %s\n", d.Name())
		}
	}
	e.in("host", func() {
		links, _ := netlink.LinkList()
		for _, l := range links {
			fmt.Fprintf(&b, "link %s %s\n", l.Attrs().Name, l.Type())
		}
		addrs, _ := netlink.AddrList(nil, netlink.FAMILY_V4)
		for _, a := range addrs {
			fmt.Fprintf(&b, "addr %s\n", a.IPNet)
		}
		v, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		fmt.Fprintf(&b, "ip_forward %s", v)
	})
	return b.String()
}

func TestDestroyLeavesForeignObjects(t *testing.T) {
	e := newEnv(t, "../../examples/bridge.yaml", nil)
	e.mustApply()
	// A foreign namespace that even carries the lab's prefix, and a foreign
	// bridge in the sandbox, beside the lab.
	foreign := e.prefix + "foreign"
	if err := newNamedNS(foreign); err != nil {
		t.Fatal(err)
	}
	e.in("host", func() {
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "foreign0"}}); err != nil {
			t.Fatal(err)
		}
	})
	// A foreign object with a name the lab wants is a conflict, not a takeover.
	e.in("c1", func() {
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "eth1"}}); err != nil {
			t.Fatal(err)
		}
	})
	e.destroy()
	if _, err := os.Stat(filepath.Join(linux.NetnsDir, foreign)); err != nil {
		t.Fatalf("the foreign namespace was removed: %v", err)
	}
	e.in("host", func() {
		if _, err := netlink.LinkByName("foreign0"); err != nil {
			t.Fatalf("the foreign bridge was removed: %v", err)
		}
		if _, err := netlink.LinkByName("hwchiu0"); err == nil {
			t.Fatal("the lab's bridge survived destroy")
		}
	})
	// The sandbox holds a foreign link, so destroy kept it.
	e.assertGone(foreign, e.sandbox)
}

func newNamedNS(name string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	origin, err := netns.Get()
	if err != nil {
		return err
	}
	defer origin.Close()
	h, err := netns.NewNamed(name)
	if err != nil {
		return err
	}
	h.Close()
	return netns.Set(origin)
}

func TestConflictWithForeignLinkChangesNothing(t *testing.T) {
	e := newEnv(t, "../../examples/bridge.yaml", nil)
	if _, err := e.k.EnsureHost(); err != nil {
		t.Fatal(err)
	}
	e.in("host", func() {
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "hwchiu0"}}); err != nil {
			t.Fatal(err)
		}
	})
	before := e.snapshot()
	ck := &reconcile.CountingKernel{Kernel: e.k}
	_, err := e.apply(ck)
	if !errors.Is(err, reconcile.ErrConflict) || !strings.Contains(err.Error(), `bridge "hwchiu0" in namespace "host" already exists and is not owned`) {
		t.Fatalf("want a conflict on hwchiu0, got %v", err)
	}
	if ck.Writes() != 0 || e.snapshot() != before {
		t.Fatal("a conflicting plan changed the kernel")
	}
}

// TestBridgeSTPInPlace flips a bridge's STP on and off in place. Reading and
// setting go through different netlink messages, so a broken setter or a
// reader that always answers the same would leave a plan behind.
func TestBridgeSTPInPlace(t *testing.T) {
	src := "name: stp\nbridges:\n  - {name: br-stp, stp: true, mtu: 1400, mac: \"02:00:00:00:00:42\"}\n"
	e := newEnv(t, "stp.yaml", []byte(src))
	e.mustApply()
	e.assertNoOp()
	for _, edit := range []struct{ from, to, field string }{
		{"stp: true", "stp: false", "stp: true -> false"},
		{"stp: false", "stp: true", "stp: false -> true"},
		{"mtu: 1400", "mtu: 1500", "mtu: 1400 -> 1500"},
		{"02:00:00:00:00:42", "02:00:00:00:00:43", "mac: 02:00:00:00:00:42 -> 02:00:00:00:00:43"},
	} {
		src = strings.Replace(src, edit.from, edit.to, 1)
		e.load("stp.yaml", []byte(src))
		p := e.plan()
		if len(p.Changes) != 1 || p.Changes[0].Action != reconcile.Update || !strings.Contains(p.Changes[0].Describe(), edit.field) {
			t.Fatalf("edit %q: plan\n%v", edit.to, p)
		}
		e.mustApply()
		e.assertNoOp()
	}
	e.destroy()
	e.assertGone()
}

// TestDestroyWhileANamespaceIsHeld: something (a shell started with
// `ip netns exec`, an open socket) keeps a lab namespace alive after destroy
// unpins it. Its veth peer in the sandbox must still go, deleted by the
// lab, and reported once (not also as gone with its namespace).
func TestDestroyWhileANamespaceIsHeld(t *testing.T) {
	e := newEnv(t, "../../examples/bridge.yaml", nil)
	e.mustApply()
	held, err := netns.GetFromPath(e.nsPath("c1"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	var said []string
	res, err := reconcile.Reconcile(context.Background(), e.k, reconcile.Nothing(), reconcile.ExecOptions{OnChange: func(c *reconcile.Change, err error) {
		said = append(said, c.Namespace+": "+string(c.Action)+" "+c.Describe())
	}})
	if err != nil {
		t.Fatalf("destroy: %v", err)
	}
	if _, err := e.k.RemoveHostIfCreated(); err != nil {
		t.Fatalf("remove sandbox: %v", err)
	}
	e.assertGone()
	seen := map[string]bool{}
	for _, s := range said {
		what := strings.TrimSuffix(s, " (goes with netns c1)")
		if seen[what] {
			t.Errorf("reported twice: %s\nall:\n%s", what, strings.Join(said, "\n"))
		}
		seen[what] = true
	}
	if res.Applied != len(said) {
		t.Errorf("applied %d, reported %d", res.Applied, len(said))
	}
}

// TestVXLANReplaceAndMacvlanInPlace: what the kernel cannot change in place
// (a VXLAN's VNI) is a replace; what it can (a macvlan's MTU, up/down) is not.
func TestVXLANReplaceAndMacvlanInPlace(t *testing.T) {
	src, err := os.ReadFile("../../examples/overlay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "overlay.yaml", src)
	e.mustApply()
	e.load("overlay.yaml", []byte(strings.ReplaceAll(string(src), "vni: 4097", "vni: 4098")))
	p := e.plan()
	var got []string
	for _, c := range p.Changes {
		got = append(got, string(c.Action)+" "+c.Namespace+" "+c.Describe())
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], "-/+ host1 vxlan vx0 vni 4098 (vni: 4097 -> 4098)") ||
		!strings.HasPrefix(got[1], "-/+ host2 vxlan vx0 vni 4098 (vni: 4097 -> 4098)") {
		t.Fatalf("plan: want one replace of vx0 in each host, got\n%s", strings.Join(got, "\n"))
	}
	e.mustApply()
	e.tcp("c2", "c1", "10.200.0.2:80", "10.200.0.2:80") // re-attached to the bridge
	e.assertNoOp()
	e.destroy()

	msrc, err := os.ReadFile("../../examples/macvlan.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e2 := newEnv(t, "macvlan.yaml", msrc)
	e2.mustApply()
	e2.load("macvlan.yaml", []byte(strings.Replace(string(msrc), "mode: bridge\n    addresses: [192.168.111.11/24]", "mode: bridge\n    mtu: 1400\n    up: false\n    addresses: [192.168.111.11/24]", 1)))
	p = e2.plan()
	if len(p.Changes) != 1 || p.Changes[0].Action != reconcile.Update || !strings.Contains(p.Changes[0].Describe(), "mtu: 1500 -> 1400, up: true -> false") {
		t.Fatalf("plan:\n%v", p)
	}
	e2.mustApply()
	e2.assertNoOp()
	e2.destroy()
	e2.assertGone()
}

// TestChildOfAForeignParent: a macvlan's parent may be an interface the
// topology does not own (a NIC): used, never changed, never deleted. A
// missing parent is a conflict before anything changes.
func TestChildOfAForeignParent(t *testing.T) {
	src := "name: nic\nnamespaces:\n  web: {}\nmacvlans:\n  - {name: eth1, namespace: web, parent: \"host:nic0\", mode: bridge, addresses: [192.168.113.10/24]}\n"
	e := newEnv(t, "nic.yaml", []byte(src))
	ck := &reconcile.CountingKernel{Kernel: e.k}
	_, err := e.apply(ck)
	if !errors.Is(err, reconcile.ErrConflict) || !strings.Contains(err.Error(), `parent host:nic0 of macvlan "eth1" in namespace "web" does not exist`) || ck.Writes() != 0 {
		t.Fatalf("missing parent: err %v, %d writes", err, ck.Writes())
	}
	// The "NIC": a veth end nobody owns, with a peer on the "LAN".
	e.in("host", func() {
		la := netlink.NewLinkAttrs()
		la.Name, la.MTU = "nic0", 1500
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "nic0-peer"}); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"nic0", "nic0-peer"} {
			l, _ := netlink.LinkByName(n)
			netlink.LinkSetUp(l)
		}
	})
	nicState := func() string {
		var s string
		e.in("host", func() {
			l, err := netlink.LinkByName("nic0")
			if err != nil {
				t.Fatalf("nic0: %v", err)
			}
			a := l.Attrs()
			addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
			s = fmt.Sprintf("%s mtu %d mac %s alias %q flags %v master %d addrs %v", a.Name, a.MTU, a.HardwareAddr, a.Alias, a.Flags, a.MasterIndex, addrs)
		})
		return s
	}
	before := nicState()
	e.mustApply()
	e.assertNoOp()
	if got := nicState(); got != before {
		t.Fatalf("the parent NIC was changed:\n%s\n%s", before, got)
	}
	e.destroy()
	if got := nicState(); got != before {
		t.Fatalf("destroy changed the parent NIC:\n%s\n%s", before, got)
	}
	e.assertGone(e.sandbox) // the sandbox keeps the foreign NIC
}

// TestVXLANMulticastGroup: the overlay with a multicast group instead of a
// remote (group needs dev): VTEPs find each other by flooding to the group.
func TestVXLANMulticastGroup(t *testing.T) {
	src := readExample(t, "overlay.yaml")
	for _, r := range []string{"192.168.111.129", "192.168.111.128"} {
		src = strings.Replace(src, "remote: "+r+"\n", "group: 239.1.1.1\n", 1)
	}
	if strings.Contains(src, "remote:") {
		t.Fatal("the example's remotes were not replaced")
	}
	e := newEnv(t, "overlay-mcast.yaml", []byte(src))
	e.mustApply()
	e.assertNoOp()
	if from := e.tcp("c2", "c1", "10.200.0.2:80", "10.200.0.2:80"); !strings.HasPrefix(from, "10.200.0.1:") {
		t.Fatalf("c2 saw c1 as %s", from)
	}
	e.in("host2", func() {
		l, err := netlink.LinkByName("vx0")
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := l.(*netlink.Vxlan); !ok || v.Group.String() != "239.1.1.1" || v.VtepDevIndex == 0 {
			t.Fatalf("vx0 in host2: %#v", l)
		}
	})
	e.destroy()
	e.assertGone()
}
