package indep

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netplan-lab/netplan-lab/topology"
)

// ---------------------------------------------------------------------------
// Without root: rendering nft JSON and comparing made-up snapshots.

func TestRuleText(t *testing.T) {
	// Expressions as `nft -j list ruleset` (nftables 1.0.6) prints them.
	for _, tc := range []struct{ expr, want string }{
		{`[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "172.18.0.0", "len": 24}}}},
		   {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "dbr0"}},
		   {"counter": {"packets": 0, "bytes": 0}}, {"masquerade": null}]`,
			"ip saddr == 172.18.0.0/24; meta oifname != dbr0; masquerade"},
		{`[{"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}},
		   {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "uplink"}},
		   {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
		   {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
		   {"counter": {"packets": 3, "bytes": 180}}, {"dnat": {"family": "ip", "addr": "172.18.0.2", "port": 80}}]`,
			"meta nfproto == ipv4; meta iifname == uplink; fib daddr type == local; tcp dport == 8080; dnat ip to 172.18.0.2:80"},
		{`[{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": {"prefix": {"addr": "fd20::", "len": 64}}}},
		   {"snat": {"family": "ip6", "addr": "fd00:1::1"}}]`,
			"ip6 saddr == fd20::/64; snat ip6 to fd00:1::1"},
		{`[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.0.0.5", "len": 32}}}},
		   {"dnat": {"family": "ip6", "addr": "fd20::2", "port": 443}}]`,
			"ip saddr == 10.0.0.5; dnat ip6 to [fd20::2]:443"},
		{`[{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"set": [80, 443]}}}, {"accept": null}]`,
			"tcp dport == {80, 443}; accept"},
		{`[{"limit": {"rate": 10, "per": "second"}}]`, `limit {"per":"second","rate":10}`},
	} {
		var exprs []map[string]any
		dec := json.NewDecoder(strings.NewReader(tc.expr))
		dec.UseNumber()
		if err := dec.Decode(&exprs); err != nil {
			t.Fatal(err)
		}
		if got := ruleText(exprs); got != tc.want {
			t.Errorf("ruleText:\n got %s\nwant %s", got, tc.want)
		}
	}
}

const smallLab = `
name: small
namespaces:
  host:
    sysctls: {net.ipv4.ip_forward: "1"}
  c1:
    routes: [{to: default, via: 10.0.0.1}]
bridges:
  - {name: br0, addresses: [10.0.0.1/24]}
links:
  - a: {namespace: c1, name: eth0, addresses: [10.0.0.2/24, 10.0.0.3/24], mtu: 1400}
    b: {namespace: host, name: veth-c1, bridge: br0}
nat:
  - masquerade: {source: 10.0.0.0/24, not_out: br0}
  - port_forward: {proto: tcp, port: 8080, to: "10.0.0.2:80", in: br0}
`

// smallSnapshot is what the kernel would hold for smallLab.
func smallSnapshot() *Snapshot {
	pf := "meta nfproto == ipv4; fib daddr type == local; tcp dport == 8080; dnat ip to 10.0.0.2:80"
	return &Snapshot{Namespaces: map[string]*NS{
		"host": {Netns: "sb", Links: map[string]*Link{
			"br0":     {Name: "br0", Kind: "bridge", Up: true, Addresses: []string{"10.0.0.1/24"}},
			"veth-c1": {Name: "veth-c1", Kind: "veth", Up: true, Master: "br0", Peer: "p-c1:eth0"},
			"eth0":    {Name: "eth0", Kind: "", Up: true}, // the sandbox's own: not the lab's
		},
			Routes:  []Route{{Dst: "192.0.2.0/24", Via: "10.9.9.9", Dev: "eth0", Proto: "boot"}},
			Sysctls: map[string]string{"net.ipv4.ip_forward": "1"},
			NAT: map[string][]NATRule{
				"owner":       {{Comment: "mark owner"}},
				"prerouting":  {{Text: "meta nfproto == ipv4; meta iifname == br0; fib daddr type == local; tcp dport == 8080; dnat ip to 10.0.0.2:80"}},
				"output":      {{Text: pf}},
				"postrouting": {{Text: "ip saddr == 10.0.0.0/24; meta oifname != br0; masquerade"}},
			}},
		"c1": {Netns: "p-c1", Links: map[string]*Link{
			"eth0": {Name: "eth0", Kind: "veth", Up: true, MTU: 1400, Addresses: []string{"10.0.0.2/24", "10.0.0.3/24", "fd00::9/64"}, Peer: "sb:veth-c1"},
		},
			Routes: []Route{{Dst: "default", Via: "10.0.0.1", Dev: "eth0", Proto: "157"}}},
	}}
}

func TestCompareMadeUp(t *testing.T) {
	topo, err := topology.Parse("small.yaml", []byte(smallLab))
	if err != nil {
		t.Fatal(err)
	}
	s := smallSnapshot()
	s.Namespaces["c1"].Links["eth0"].Addresses = []string{"10.0.0.2/24", "10.0.0.3/24"}
	expectLines(t, Compare(topo, s), nil)

	s = smallSnapshot() // fd00::9/64 is not in the file
	c1 := s.Namespaces["c1"]
	c1.Links["eth0"].MTU = 1500
	c1.Links["eth0"].Addresses = []string{"10.0.0.3/24", "10.0.0.2/24", "fd00::9/64"}
	c1.Links["eth0"].Peer = "elsewhere:veth-c1"
	c1.Links["x0"] = &Link{Name: "x0", Kind: "veth"}
	c1.Routes = append(c1.Routes, Route{Dst: "10.5.0.0/16", Via: "10.0.0.1", Dev: "eth0", Proto: "boot"})
	host := s.Namespaces["host"]
	host.Links["br0"].STP = true
	host.Links["veth-c1"].Master = ""
	host.Sysctls["net.ipv4.ip_forward"] = "0"
	host.NAT["output"] = nil
	host.NAT["postrouting"] = []NATRule{{Text: "ip saddr == 10.0.0.0/24; meta oifname != br9; masquerade"}}
	expectLines(t, Compare(topo, s), []string{
		"c1: eth0: mtu 1500, want 1400",
		"c1: eth0: address fd00::9/64 not in the file",
		"c1: eth0: primary address of 10.0.0.0/24 10.0.0.3/24, want 10.0.0.2/24",
		"c1: eth0: veth peer elsewhere:veth-c1, want host:veth-c1",
		"c1: x0: veth link not in the file",
		"c1: route 10.5.0.0/16 via 10.0.0.1 dev eth0 metric 0 proto boot not in the file",
		"host: br0: stp true, want false",
		"host: veth-c1: master (none), want br0",
		"host: sysctl net.ipv4.ip_forward = \"0\", want \"1\"",
		"host: nat output: nat rule 2 (port_forward tcp 8080 to 10.0.0.2:80 in br0) missing",
		"host: nat postrouting: nat rule 1 (masquerade 10.0.0.0/24 not_out br0): kernel rule 1 differs: lacks [meta oifname != br0], has unexpected [meta oifname != br9]",
	})

	s = smallSnapshot()
	s.Namespaces["c1"].Links["eth0"].Addresses = []string{"10.0.0.2/24", "10.0.0.3/24"}
	delete(s.Namespaces, "c1") // as if deleted by hand: its veth goes with it
	delete(s.Namespaces["host"].Links, "veth-c1")
	s.Namespaces["host"].NAT = nil
	expectLines(t, Compare(topo, s), []string{
		"c1: namespace missing",
		"host: veth-c1: missing (want veth)",
		"host: nat table missing (2 nat entries in the file)",
	})
}

// expectLines fails unless got and want hold the same lines (in any order).
func expectLines(t *testing.T, got, want []string) {
	t.Helper()
	g, w := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if slices.Equal(g, w) {
		return
	}
	var b strings.Builder
	for _, l := range g {
		if !slices.Contains(w, l) {
			b.WriteString("\n  unexpected: " + l)
		}
	}
	for _, l := range w {
		if !slices.Contains(g, l) {
			b.WriteString("\n  missing:    " + l)
		}
	}
	t.Errorf("Compare differs from what the test expects:%s", b.String())
}

// ---------------------------------------------------------------------------
// Live: real labs in sandbox namespaces (root only).
//
// Safety: every namespace these tests create is either the sandbox
// npl-test-indep-XXXX or starts with the prefix tiXXXX-; every command that
// changes the kernel goes through lab.ip or lab.nft, which refuse any other
// namespace; cleanup deletes exactly those namespaces, also on failure.

var (
	buildOnce sync.Once
	toolPath  string
	toolDir   string // the temporary directory the binary was built in, if any
	srcDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if toolDir != "" {
		os.RemoveAll(toolDir)
	}
	os.Exit(code)
}

// tool returns the netplan-lab binary ($NETPLAN_LAB, else built from the
// module's source) and the module's source directory.
func tool(t *testing.T) (bin, src string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("live test: needs root")
	}
	for _, b := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("live test: %s not found (apt-get install -y iproute2 nftables)", b)
		}
	}
	buildOnce.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/netplan-lab/netplan-lab").Output()
		if err != nil {
			buildErr = err
			return
		}
		srcDir = strings.TrimSpace(string(out))
		if toolPath = os.Getenv("NETPLAN_LAB"); toolPath != "" {
			return
		}
		dir, err := os.MkdirTemp("", "indep-tool-")
		if err != nil {
			buildErr = err
			return
		}
		toolDir = dir
		toolPath = filepath.Join(dir, "netplan-lab")
		cmd := exec.Command("go", "build", "-o", toolPath, "./cmd/netplan-lab")
		cmd.Dir = srcDir
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{err, string(out)}
		}
	})
	if buildErr != nil {
		t.Fatalf("building netplan-lab: %v", buildErr)
	}
	return toolPath, srcDir
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// lab is one topology applied in its own sandbox with its own prefix.
type lab struct {
	t       *testing.T
	bin     string
	file    string
	topo    *topology.Topology
	sandbox string
	prefix  string
	nsmap   map[string]string
}

// applyLab applies file (a path, or an example's name under examples/) in a
// fresh sandbox and registers its removal.
func applyLab(t *testing.T, file string) *lab {
	t.Helper()
	bin, src := tool(t)
	if !strings.Contains(file, "/") {
		file = filepath.Join(src, "examples", file)
	}
	var r [2]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(r[:])
	l := &lab{t: t, bin: bin, file: file, sandbox: "npl-test-indep-" + id, prefix: "ti" + id + "-"}
	t.Cleanup(l.cleanup)

	topo, err := topology.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	l.topo = topo
	l.nsmap = NSMap(topo, l.sandbox, l.prefix)
	if out, err := l.run("apply"); err != nil {
		t.Fatalf("apply %s: %v\n%s", file, err, out)
	}
	return l
}

func (l *lab) run(command string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, l.bin, "--netns", l.sandbox, "--prefix", l.prefix, command, l.file).CombinedOutput()
	return string(out), err
}

// ours reports whether a kernel namespace name belongs to this lab.
func (l *lab) ours(netns string) bool {
	return netns == l.sandbox || strings.HasPrefix(netns, l.prefix)
}

// cleanup destroys the lab and then deletes whatever of its namespaces is left.
func (l *lab) cleanup() {
	if out, err := l.run("destroy"); err != nil {
		l.t.Logf("cleanup: destroy: %v\n%s", err, out)
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if l.ours(e.Name()) {
			if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
				l.t.Logf("cleanup: ip netns del %s: %v: %s", e.Name(), err, out)
			}
		}
	}
	os.Remove("/run/netplan-lab/locks/sandbox-" + l.sandbox + ".lock") // netplan-lab's lock of the sandbox
}

// destroy runs destroy and checks that none of the lab's namespaces is left.
func (l *lab) destroy() {
	l.t.Helper()
	if out, err := l.run("destroy"); err != nil {
		l.t.Fatalf("destroy: %v\n%s", err, out)
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if l.ours(e.Name()) {
			l.t.Errorf("destroy left namespace %s", e.Name())
		}
	}
}

func (l *lab) compare() []string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Read(ctx, l.nsmap, SysctlKeys(l.topo), NATTable(l.topo, l.prefix))
	if err != nil {
		l.t.Fatal(err)
	}
	return Compare(l.topo, s)
}

// inNS runs a command inside the lab's namespace short (refusing any other).
func (l *lab) inNS(short string, args ...string) {
	l.t.Helper()
	netns := l.nsmap[short]
	if !l.ours(netns) {
		l.t.Fatalf("refusing to run %v in namespace %q: not this lab's", args, netns)
	}
	out, err := exec.Command("ip", append([]string{"netns", "exec", netns}, args...)...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v: %v\n%s", short, args, err, out)
	}
}

// ip runs `ip ARGS` in the lab's namespace short.
func (l *lab) ip(short string, args ...string) {
	l.t.Helper()
	l.inNS(short, append([]string{"ip"}, args...)...)
}

// nft runs `nft ARGS` in the lab's namespace short.
func (l *lab) nft(short string, args ...string) {
	l.t.Helper()
	l.inNS(short, append([]string{"nft"}, args...)...)
}

// deleteRule deletes the n-th rule (from 1) of chain in the lab's table.
func (l *lab) deleteRule(short, chain string, n int) {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", l.nsmap[short], "nft", "-j", "list", "chain", "inet", NATTable(l.topo, l.prefix), chain).Output()
	if err != nil {
		l.t.Fatal(err)
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Handle int `json:"handle"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		l.t.Fatal(err)
	}
	var handles []int
	for _, o := range doc.Nftables {
		if o.Rule != nil {
			handles = append(handles, o.Rule.Handle)
		}
	}
	if n > len(handles) {
		l.t.Fatalf("chain %s has %d rules, not %d", chain, len(handles), n)
	}
	l.nft(short, "delete", "rule", "inet", NATTable(l.topo, l.prefix), chain, "handle", strconv.Itoa(handles[n-1]))
}

func TestExamplesMatchKernel(t *testing.T) {
	for _, ex := range []string{"bridge.yaml", "router.yaml", "veth-pair.yaml", "nat.yaml", "published-port.yaml", "overlay.yaml", "macvlan.yaml", "host.yaml", "container.yaml", "none.yaml"} {
		t.Run(ex, func(t *testing.T) {
			l := applyLab(t, ex)
			expectLines(t, l.compare(), nil)
			l.destroy()
		})
	}
}

func TestDriftBridge(t *testing.T) {
	l := applyLab(t, "bridge.yaml")
	l.ip("c1", "addr", "del", "10.55.66.2/24", "dev", "eth0") // the kernel drops the default route with it
	l.ip("c2", "route", "add", "10.123.0.0/16", "via", "10.55.66.1")
	l.ip("c1", "route", "add", "blackhole", "10.66.0.0/16")
	l.ip("c2", "link", "add", "xtra0", "type", "veth", "peer", "name", "xtra1")
	l.ip("host", "link", "set", "veth-c2", "nomaster")
	l.ip("host", "link", "set", "hwchiu0", "type", "bridge", "stp_state", "1")
	l.ip("host", "route", "add", "10.124.0.0/16", "dev", "hwchiu0") // on a lab link: reported
	expectLines(t, l.compare(), []string{
		"c1: eth0: address 10.55.66.2/24 missing",
		"c1: route default via 10.55.66.1 missing",
		"c1: route blackhole 10.66.0.0/16 metric 0 proto boot not in the file",
		"c2: route 10.123.0.0/16 via 10.55.66.1 dev eth0 metric 0 proto boot not in the file",
		"c2: xtra0: veth link not in the file",
		"c2: xtra1: veth link not in the file",
		"host: veth-c2: master (none), want hwchiu0",
		"host: hwchiu0: stp true, want false",
		"host: route 10.124.0.0/16 dev hwchiu0 metric 0 proto boot not in the file",
	})
	l.destroy()
}

func TestDriftVethPair(t *testing.T) {
	l := applyLab(t, "veth-pair.yaml")
	l.ip("left", "link", "set", "veth0", "mtu", "1500")
	l.ip("left", "addr", "del", "fd00::1/64", "dev", "veth0")
	l.ip("right", "link", "set", "veth0", "down")
	l.ip("right", "link", "set", "veth0", "name", "veth9")
	expectLines(t, l.compare(), []string{
		"left: veth0: mtu 1500, want 9000",
		"left: veth0: address fd00::1/64 missing",
		"left: veth0: veth peer right:veth9, want right:veth0",
		"right: veth0: missing (want veth)",
		"right: veth9: veth link not in the file",
	})
	l.destroy()
}

func TestDriftRouterSysctl(t *testing.T) {
	l := applyLab(t, "router.yaml")
	l.inNS("host", "sysctl", "-qw", "net.ipv4.ip_forward=0")
	l.ip("ns0", "route", "del", "default")
	l.ip("ns0", "route", "add", "default", "via", "192.168.88.1", "metric", "7")
	expectLines(t, l.compare(), []string{
		`host: sysctl net.ipv4.ip_forward = "0", want "1"`,
		"ns0: route default via 192.168.88.1 missing (kernel has default via 192.168.88.1 dev eth0 metric 7 proto boot)",
		"ns0: route default via 192.168.88.1 dev eth0 metric 7 proto boot not in the file",
	})
	l.destroy()
}

func TestDriftNAT(t *testing.T) {
	l := applyLab(t, "published-port.yaml")
	table := NATTable(l.topo, l.prefix)
	l.deleteRule("host", "output", 1)
	l.deleteRule("host", "postrouting", 1)
	l.nft("host", "add", "rule", "inet", table, "postrouting", "ip", "saddr", "172.18.0.0/24", "oifname", "!=", "dbr9", "masquerade")
	l.nft("host", "add", "rule", "inet", table, "prerouting", "tcp", "dport", "22", "dnat", "ip", "to", "172.18.0.2")
	expectLines(t, l.compare(), []string{
		"host: nat output: nat rule 2 (port_forward tcp 8080 to 172.18.0.2:80 in uplink) missing",
		"host: nat postrouting: nat rule 1 (masquerade 172.18.0.0/24 not_out dbr0): kernel rule 1 differs: lacks [meta oifname != dbr0], has unexpected [meta oifname != dbr9]",
		`host: nat prerouting: kernel rule 2 not in the file: tcp dport == 22; dnat ip to 172.18.0.2 (comment "")`,
	})
	l.destroy()
}

func TestDriftOverlayMacvlan(t *testing.T) {
	l := applyLab(t, "overlay.yaml")
	l.ip("host1", "link", "del", "vx0")
	l.ip("host1", "link", "add", "vx0", "type", "vxlan", "id", "4098", "remote", "192.168.111.200", "local", "192.168.111.128", "dev", "eth0", "dstport", "4790")
	l.ip("host1", "link", "set", "vx0", "master", "br-overlay", "up")
	expectLines(t, l.compare(), []string{
		"host1: vx0: vxlan vni 4098, want 4097",
		"host1: vx0: vxlan port 4790, want 4789",
		"host1: vx0: vxlan remote 192.168.111.200, want 192.168.111.129",
	})
	l.destroy()

	m := applyLab(t, "macvlan.yaml")
	m.ip("web1", "link", "set", "eth1", "type", "macvlan", "mode", "private")
	expectLines(t, m.compare(), []string{"web1: eth1: macvlan mode private, want bridge"})
	m.destroy()
}

// mixed exercises what the examples do not: IPv6 routes and metrics, mtu,
// mac, stp, sysctls outside host, snat, IPv6 NAT, a port_forward without
// `in`. Its NAT rules are in the order netplan-lab happens to write them in.
const mixed = `
name: mixed
namespaces:
  host:
    sysctls:
      net.ipv4.ip_forward: "1"
      net.ipv6.conf.all.forwarding: "1"
  r:
    sysctls:
      net.ipv4.conf.all.rp_filter: "0"
    routes:
      - {to: 10.77.0.0/16, via: 192.0.2.1, metric: 50}
      - {to: "fd77::/64", via: "fd00:1::1"}
      - {to: default, dev: eth0}
links:
  - a: {namespace: host, name: up0, addresses: [192.0.2.1/24, 192.0.2.9/24, "fd00:1::1/64"], mtu: 1400, mac: "02:00:00:00:00:0a"}
    b: {namespace: r, name: eth0, addresses: [192.0.2.2/24, "fd00:1::2/64"]}
bridges:
  - {name: brx, stp: true, addresses: [10.20.0.1/24]}
nat:
  - masquerade: {source: 10.20.0.0/24, out: up0}
  - snat: {source: 10.21.0.5/32, to: 192.0.2.9, not_out: brx}
  - snat: {source: "fd20::/64", to: "fd00:1::1", out: up0}
  - port_forward: {proto: tcp, port: 8443, to: "[fd20::2]:443", in: up0}
  - port_forward: {proto: udp, port: 5353, to: 10.20.0.2:53}
`

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMixedLab(t *testing.T) {
	l := applyLab(t, writeFile(t, "mixed.yaml", mixed))
	expectLines(t, l.compare(), nil)

	l.ip("host", "link", "set", "up0", "address", "02:00:00:00:00:0b")
	l.ip("host", "link", "set", "brx", "down")
	l.ip("host", "addr", "flush", "dev", "up0", "scope", "global")
	l.ip("host", "addr", "add", "192.0.2.9/24", "dev", "up0")
	l.ip("host", "addr", "add", "192.0.2.1/24", "dev", "up0")
	l.ip("host", "addr", "add", "fd00:1::1/64", "dev", "up0", "nodad")
	l.ip("r", "route", "del", "fd77::/64")
	l.ip("r", "route", "add", "fd77::/64", "via", "fd00:1::1", "metric", "100")
	l.inNS("r", "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2")
	expectLines(t, l.compare(), []string{
		"host: up0: mac 02:00:00:00:00:0b, want 02:00:00:00:00:0a",
		"host: brx: down, want up",
		"host: up0: primary address of 192.0.2.0/24 192.0.2.9/24, want 192.0.2.1/24",
		"r: route fd77::/64 via fd00:1::1 missing (kernel has fd77::/64 via fd00:1::1 dev eth0 metric 100 proto boot)",
		"r: route fd77::/64 via fd00:1::1 dev eth0 metric 100 proto boot not in the file",
		`r: sysctl net.ipv4.conf.all.rp_filter = "2", want "0"`,
	})
	l.destroy()
}

// TestNATRuleOrder checks TOPOLOGY.md's "NAT rules apply in file order
// (first match wins)": a first apply writes each chain's rules in the file's
// order, and a rule deleted by hand is put back at its place, not at the
// chain's end. (Both failed before the engine knew NAT order.)
func TestNATRuleOrder(t *testing.T) {
	const unsorted = `
name: order
namespaces: {inside: {}}
bridges:
  - {name: br0, addresses: [10.20.0.1/24]}
links:
  - a: {namespace: host, name: up0, addresses: [192.0.2.1/24]}
    b: {namespace: inside, name: eth0, addresses: [192.0.2.2/24]}
nat:
  - snat: {source: 10.21.0.0/24, to: 192.0.2.1}
  - masquerade: {source: 10.20.0.0/24, out: up0}
`
	t.Run("first apply", func(t *testing.T) {
		l := applyLab(t, writeFile(t, "order.yaml", unsorted))
		expectLines(t, l.compare(), nil)
		l.destroy()
	})
	t.Run("re-apply after a rule was deleted", func(t *testing.T) {
		sorted := strings.Replace(unsorted, "10.21.0.0/24, to: 192.0.2.1}", "10.21.0.0/24, to: 192.0.2.1}\n  - snat: {source: 10.22.0.0/24, to: 192.0.2.1}", 1)
		sorted = strings.Replace(sorted, "  - masquerade: {source: 10.20.0.0/24, out: up0}\n", "", 1)
		l := applyLab(t, writeFile(t, "order.yaml", sorted))
		expectLines(t, l.compare(), nil)
		l.deleteRule("host", "postrouting", 1)
		expectLines(t, l.compare(), []string{"host: nat postrouting: nat rule 1 (snat 10.21.0.0/24 to 192.0.2.1) missing"})
		if out, err := l.run("apply"); err != nil {
			t.Fatalf("re-apply: %v\n%s", err, out)
		}
		expectLines(t, l.compare(), nil)
		l.destroy()
	})
}
