package topology

import (
	"strings"
	"testing"
)

func TestParseTCUnits(t *testing.T) {
	times := map[string]uint32{"50ms": 50000, "1.5ms": 1500, "200us": 200, "1s": 1000000, "0ms": 0, "2 ms": 2000}
	for s, want := range times {
		if got, err := ParseTCTime(s); err != nil || got != want {
			t.Errorf("ParseTCTime(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"50", "ms", "-1ms", "5m", "61s", "0.1us"} {
		if _, err := ParseTCTime(s); err == nil {
			t.Errorf("ParseTCTime(%q) accepted", s)
		}
	}
	rates := map[string]uint64{"10mbit": 10_000_000, "512kbit": 512_000, "1gbit": 1_000_000_000, "100kbps": 800_000,
		"1mibit": 1 << 20, "8bit": 8, "2.5Mbit": 2_500_000}
	for s, want := range rates {
		if got, err := ParseTCRate(s); err != nil || got != want {
			t.Errorf("ParseTCRate(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"10", "10mb", "fast", "1bit", "-1mbit", "9tbit"} {
		if _, err := ParseTCRate(s); err == nil {
			t.Errorf("ParseTCRate(%q) accepted", s)
		}
	}
	if v, err := ParsePercent("0.5%"); err != nil || v != 0.5 {
		t.Errorf("ParsePercent(0.5%%) = %v, %v", v, err)
	}
	for _, s := range []string{"1", "101%", "x%"} {
		if _, err := ParsePercent(s); err == nil {
			t.Errorf("ParsePercent(%q) accepted", s)
		}
	}
}

func TestImpairDecode(t *testing.T) {
	src := `name: imp
namespaces: {a: {}, b: {}, c: {}}
links:
  - endpoints: ["a:eth0", "b:eth0"]
    impair: {delay: 50ms, jitter: 5ms, loss: 1%, rate: 10mbit}
  - a: {namespace: a, name: eth1, impair: {rate: 1mbit}}
    b: {namespace: c, name: eth0}
    impair: {loss: 2%}
`
	top, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	l := top.Links[0]
	for _, e := range []*Iface{&l.A, &l.B} {
		im := e.Impair
		if im == nil || im.Delay != 50000 || im.Jitter != 5000 || im.Loss != 1 || im.Rate != 10_000_000 {
			t.Errorf("%s:%s impair = %+v", e.Namespace, e.Name, im)
		}
	}
	l = top.Links[1]
	if l.A.Impair == nil || l.A.Impair.Rate != 1_000_000 || l.A.Impair.Loss != 0 {
		t.Errorf("an end's own impair should replace the link's: %+v", l.A.Impair)
	}
	if l.B.Impair == nil || l.B.Impair.Loss != 2 {
		t.Errorf("the link's impair should reach the end without one: %+v", l.B.Impair)
	}
}

func TestImpairErrors(t *testing.T) {
	src := `name: imp
namespaces: {a: {}, b: {}}
links:
  - endpoints: ["a:eth0", "b:eth0"]
    impair: {delay: 50, loss: 1}
  - endpoints: ["a:eth1", "b:eth1"]
    impair: {jitter: 5ms, rate: 10mb, limit: 0}
  - endpoints: ["a:eth2", "b:eth2"]
    impair: {}
  - endpoints: ["a:eth3", "b:eth3"]
    impair: {delay: 1ms, speed: 1mbit}
`
	_, err := Parse("t.yaml", []byte(src))
	if err == nil {
		t.Fatal("accepted")
	}
	want := []string{
		`t.yaml:5:21: links[0].impair.delay: "50" is not a time like 50ms, 1.5ms, 200us or 1s`,
		`t.yaml:5:31: links[0].impair.loss: "1" is not a percentage like 1% or 0.5%`,
		`t.yaml:7:33: links[1].impair.rate: "10mb" is not a rate like 10mbit, 512kbit or 1gbit`,
		`t.yaml:7:46: links[1].impair.limit: limit is a number of packets, at least 1`,
		`t.yaml:7:13: links[1].impair.jitter: jitter varies the delay: it needs delay`,
		`t.yaml:9:13: links[2].impair: impair needs at least one of delay, jitter, loss, duplicate, reorder, corrupt, rate`,
		`t.yaml:11:26: links[3].impair.speed: unknown key "speed"`,
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in\n%v", w, err)
		}
	}
}

func TestChecksDecode(t *testing.T) {
	src := `name: chk
namespaces: {a: {}, b: {}}
links:
  - a: {namespace: a, name: eth0, addresses: [10.1.0.1/24]}
    b: {namespace: b, name: eth0, addresses: [10.1.0.2/24]}
checks:
  - {from: a, to: b}
  - {from: a, to: "b:eth0", proto: tcp, port: 80, lands: b}
  - {from: a, to: 10.9.9.9, expect: unreachable}
`
	top, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c := top.Checks[0]; c.Proto != "icmp" || c.Expect != "reachable" {
		t.Errorf("defaults: %+v", c)
	}
	if a, ns, err := top.CheckTarget("b"); err != nil || a.String() != "10.1.0.2" || ns != "b" {
		t.Errorf("CheckTarget(b) = %v %q %v", a, ns, err)
	}
	bad := `name: chk
namespaces: {a: {}, b: {}}
links:
  - endpoints: ["a:eth0", "b:eth0"]
checks:
  - {from: z, to: b}
  - {from: a, to: "b:eth9"}
  - {from: a, to: b, proto: icmp, port: 80}
  - {from: a, to: nowhere}
  - {from: a, to: 10.0.0.1, proto: tcp}
  - {from: a, to: 10.0.0.1, proto: sctp, expect: maybe}
  - {from: a, to: 10.0.0.1, proto: tcp, port: 1, lands: b, expect: unreachable}
`
	_, err = Parse("t.yaml", []byte(bad))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{
		`t.yaml:6:12: checks[0].from: namespace "z" is not listed under namespaces`,
		`t.yaml:6:19: checks[0].to: namespace "b" has no address to check (none of its interfaces has one)`,
		`t.yaml:7:19: checks[1].to: interface "eth9" is not declared in namespace "b"`,
		`t.yaml:8:41: checks[2].port: icmp has no port; use proto: tcp or udp`,
		`t.yaml:9:19: checks[3].to: "nowhere" is neither a namespace of the file, NS:IF, nor an IP address`,
		`t.yaml:10:5: checks[4].port: tcp needs a port in 1-65535`,
		`t.yaml:11:36: checks[5].proto: "sctp" is not one of icmp, tcp, udp`,
		`t.yaml:11:50: checks[5].expect: "maybe" is not one of reachable, unreachable`,
		`t.yaml:12:57: checks[6].lands: lands says where a connection arrives: it needs expect: reachable`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in\n%v", w, err)
		}
	}
}

func TestMeaningChecks(t *testing.T) {
	src := `name: mean
namespaces:
  a:
    routes:
      - {to: 10.3.0.5/24, via: 10.1.0.254}
      - {to: default, via: 192.0.2.1}
      - {to: 10.9.0.0/16, via: 192.0.2.1, dev: eth0, onlink: true}
  b: {}
  c: {}
links:
  - a: {namespace: a, name: eth0, addresses: [10.1.0.1/24]}
    b: {namespace: b, name: eth0, addresses: [10.1.0.1/24]}
  - a: {namespace: a, name: eth1, addresses: [10.2.0.1/24]}
    b: {namespace: c, name: eth1, addresses: [10.2.0.2/24]}
`
	_, err := Parse("t.yaml", []byte(src))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{
		`namespaces.a.routes[0].to: 10.3.0.5/24 has host bits set: the network is 10.3.0.0/24 (or, for one host, 10.3.0.5/32)`,
		`namespaces.a.routes[1].via: gateway 192.0.2.1 is on no subnet of namespace "a" (it has 10.1.0.0/24, 10.2.0.0/24): give an interface an address in its subnet, or say dev: and onlink: true`,
		`links[0].b.addresses[0]: address 10.1.0.1 is also on a:eth0 (line 11), on the same L2 segment: both would answer ARP or neighbour discovery for it`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "routes[2]") {
		t.Errorf("an onlink route was refused:\n%v", err)
	}
	nat := `name: shadow
namespaces: {r: {routes: [{to: 10.1.0.0/24, via: 203.0.113.2}]}}
links:
  - a: {namespace: r, name: wan, addresses: [203.0.113.1/24]}
    b: {namespace: host, name: x}
nat:
  - {namespace: r, masquerade: {source: 10.0.0.0/8}}
  - {namespace: r, snat: {source: 10.1.0.0/24, to: 203.0.113.1, out: wan}}
  - {namespace: r, masquerade: {source: 192.168.0.0/24, out: wan}}
  - {namespace: r, port_forward: {proto: tcp, port: 80, to: "10.1.0.2:80"}}
  - {namespace: r, port_forward: {proto: tcp, port: 80, to: "10.1.0.3:80", in: wan}}
`
	top, err := Parse("n.yaml", []byte(nat))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range top.Warnings {
		got = append(got, w.Error())
	}
	want := []string{
		"n.yaml:8:5: nat[1]: this rule never applies: the masquerade at line 7 matches its packets first (first match wins)",
		"n.yaml:11:5: nat[4]: this port_forward never applies: the one at line 10 matches its packets first",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestMoreMeaningChecks(t *testing.T) {
	src := `name: more
namespaces:
  r:
    sysctls:
      net.ipv4.conf.eth5.rp_filter: "0"
links:
  - a: {namespace: r, name: eth0, addresses: [10.2.0.1/24]}
    b: {namespace: host, name: x}
`
	_, err := Parse("m.yaml", []byte(src))
	if err == nil || !strings.Contains(err.Error(), `m.yaml:5:7: namespaces.r.sysctls.net.ipv4.conf.eth5.rp_filter: interface "eth5" is not declared in namespace "r": this key would have nothing to set`) {
		t.Fatalf("an interface key without its interface: %v", err)
	}
	nat := `name: shadow2
namespaces: {r: {}}
links:
  - a: {namespace: r, name: br1, addresses: [203.0.113.1/24]}
    b: {namespace: host, name: x}
nat:
  - {namespace: r, masquerade: {source: 10.2.0.0/24, not_out: br0}}
  - {namespace: r, snat: {source: 10.2.0.0/24, to: 203.0.113.1, out: br1}}
  - {namespace: r, snat: {source: 10.2.0.0/24, to: 203.0.113.1, out: br0}}
`
	top, err := Parse("n.yaml", []byte(nat))
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Warnings) != 1 || !strings.HasPrefix(top.Warnings[0].Error(), "n.yaml:8:5: nat[1]: this rule never applies: the masquerade at line 7") {
		t.Fatalf("warnings: %v", top.Warnings)
	}
}

func TestIPv6SwitchInTheFile(t *testing.T) {
	src := `name: v6
namespaces:
  a:
    sysctls: {net.ipv6.conf.all.disable_ipv6: "1"}
links:
  - a: {namespace: a, name: eth0, addresses: ["fd00::1/64"]}
    b: {namespace: host, name: x}
`
	_, err := Parse("v.yaml", []byte(src))
	if err == nil || !strings.Contains(err.Error(), `v.yaml:4:15: namespaces.a.sysctls.net.ipv6.conf.all.disable_ipv6: this turns IPv6 off, but the file gives namespace "a" IPv6 addresses, routes or VXLAN endpoints`) {
		t.Fatalf("disable_ipv6 1 with an IPv6 address: %v", err)
	}
}

// TestIPv6OffOnAnInterface: an interface's own disable_ipv6 = 1 is refused
// where the file gives that interface IPv6, in host too (an audit: apply
// never converged), and allowed on another interface of a namespace that
// uses IPv6.
func TestIPv6OffOnAnInterface(t *testing.T) {
	src := `name: v6
namespaces:
  host:
    sysctls: {net.ipv6.conf.br0.disable_ipv6: "1"}
  a:
    sysctls: {net.ipv6.conf.eth1.disable_ipv6: "1"}
bridges:
  - {name: br0, addresses: ["fd77:1::1/64"]}
links:
  - a: {namespace: a, name: eth0, addresses: ["fd00::1/64"]}
    b: {namespace: host, name: x, bridge: br0}
  - a: {namespace: a, name: eth1, addresses: [10.0.0.1/24]}
    b: {namespace: host, name: y}
`
	_, err := Parse("v.yaml", []byte(src))
	want := `v.yaml:4:15: namespaces.host.sysctls.net.ipv6.conf.br0.disable_ipv6: this turns IPv6 off on "br0", but the file gives it IPv6 addresses or routes, or a VXLAN over IPv6 on it, in namespace "host"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("disable_ipv6 1 on br0 with an IPv6 address: %v", err)
	}
	if strings.Contains(err.Error(), "eth1") {
		t.Errorf("eth1 has no IPv6: %v", err)
	}
	src = strings.Replace(src, `net.ipv6.conf.br0.disable_ipv6: "1"`, `net.ipv6.conf.all.disable_ipv6: "1"`, 1)
	_, err = Parse("v.yaml", []byte(src))
	if err == nil || !strings.Contains(err.Error(), `namespaces.host.sysctls.net.ipv6.conf.all.disable_ipv6: this turns IPv6 off, but the file gives namespace "host"`) {
		t.Fatalf("all.disable_ipv6 1 in host with IPv6 there: %v", err)
	}
}

// TestMacvlanMACsOnOneParent: two macvlans with one MAC on a parent, or
// one with its parent's own, are refused (the kernel: EADDRINUSE at
// apply; an audit found both passed validate and plan).
func TestMacvlanMACsOnOneParent(t *testing.T) {
	src := `name: m
namespaces:
  c1: {}
  c2: {}
  c3: {}
bridges:
  - {name: br0, mac: "02:00:00:00:00:09"}
  - {name: br1}
  - {name: br2, mac: "02:00:00:00:00:0a"}
macvlans:
  - {namespace: c1, name: m0, parent: "host:br0", mac: "02:00:00:00:01:01"}
  - {namespace: c2, name: m0, parent: "host:br0", mac: "02:00:00:00:01:01"}
  - {namespace: c3, name: m0, parent: "host:br1", mac: "02:00:00:00:01:01"}
  - {namespace: c3, name: m1, parent: "host:br0", mac: "02:00:00:00:00:09"}
  - {namespace: c3, name: m2, parent: "host:br0", mac: "02:00:00:00:01:01", up: false}
  - {namespace: c2, name: m1, parent: "host:br2", mac: "02:00:00:00:00:0a", mode: passthru}
`
	_, err := Parse("m.yaml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`m.yaml:12:56: macvlans[1].mac: mac 02:00:00:00:01:01 is also macvlan c1:m0's (line 11), on the same parent host:br0`,
		`m.yaml:14:56: macvlans[3].mac: mac 02:00:00:00:00:09 is its parent host:br0's own`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "macvlans[2]") {
		t.Errorf("c3's m0 is on another parent: %v", err)
	}
	if strings.Contains(err.Error(), "macvlans[4]") || strings.Contains(err.Error(), "macvlans[5]") {
		t.Errorf("a macvlan that is down holds no MAC, and a passthru one takes its parent's: %v", err)
	}
}

// TestIPv6OffMoreWays: outside audits' misses: disable_ipv6 = 2 or 0x1 is off
// too, and a VXLAN over IPv6 needs IPv6 on its dev; and a passthru
// macvlan cannot share its parent.
func TestIPv6OffMoreWays(t *testing.T) {
	src := `name: v6
namespaces:
  a:
    sysctls: {net.ipv6.conf.eth0.disable_ipv6: "0x1", net.ipv6.conf.eth1.disable_ipv6: "1"}
links:
  - a: {namespace: a, name: eth0, addresses: ["fd01::2/64"]}
    b: {namespace: host, name: x}
  - a: {namespace: a, name: eth1, addresses: [10.0.0.1/24]}
    b: {namespace: host, name: y}
vxlans:
  - {namespace: a, name: vx0, vni: 100, remote: "fd00::9", dev: eth1}
bridges:
  - {name: brp}
macvlans:
  - {namespace: a, name: m0, parent: "host:brp"}
  - {namespace: a, name: m1, parent: "host:brp", mode: passthru}
`
	_, err := Parse("v.yaml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`namespaces.a.sysctls.net.ipv6.conf.eth0.disable_ipv6: this turns IPv6 off on "eth0"`,
		`namespaces.a.sysctls.net.ipv6.conf.eth1.disable_ipv6: this turns IPv6 off on "eth1", but the file gives it IPv6 addresses or routes, or a VXLAN over IPv6 on it`,
		`macvlans[1].mode: a passthru macvlan takes its parent host:brp whole, but macvlan a:m0 (line 15) is on it too`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
}

// TestSysctlsOfDottedInterfaces: an interface with a dot in its name
// (br.0) is written with a slash in its sysctl keys, as sysctl(8) does;
// the checks that read an interface from a key read it so; the key with
// the dots says how to write it; a part that would be "." or ".." under
// /proc/sys is no sysctl.
func TestSysctlsOfDottedInterfaces(t *testing.T) {
	base := `name: d
namespaces:
  a:
    sysctls: {SYSCTL}
bridges:
  - {namespace: a, name: br.0, addresses: ["fd00::1/64"]}
`
	parse := func(sysctl string) error {
		_, err := Parse("d.yaml", []byte(strings.Replace(base, "SYSCTL", sysctl, 1)))
		return err
	}
	if err := parse(`net.ipv4.conf.br/0.forwarding: "1"`); err != nil {
		t.Errorf("br/0: %v", err)
	}
	if err := parse(`net.ipv4.conf.br.0.forwarding: "1"`); err == nil || !strings.Contains(err.Error(),
		`"net.ipv4.conf.br.0.forwarding" has more parts than net.ipv4.conf.IF.KEY: an interface's dots are written as slashes in its keys, as sysctl(8) does (for interface "br.0": net.ipv4.conf.br/0.forwarding)`) {
		t.Errorf("br.0 with its dot: %v", err)
	}
	// From an outside audit: in host too; with an interface br declared
	// beside br.0; for lo.1, all.0 and default.1; and the hint names the
	// whole name, e.1.2, not e.1.
	for _, c := range []struct{ file, want string }{
		{"name: d\nnamespaces:\n  host:\n    sysctls: {net.ipv6.conf.h.0.disable_ipv6: \"1\"}\nbridges:\n  - {name: h.0, addresses: [\"fd00::1/64\"]}\n",
			`(for interface "h.0": net.ipv6.conf.h/0.disable_ipv6)`},
		{"name: d\nnamespaces:\n  a:\n    sysctls: {net.ipv4.conf.br.0.forwarding: \"1\"}\nbridges:\n  - {namespace: a, name: br}\n  - {namespace: a, name: br.0}\n",
			`(for interface "br.0": net.ipv4.conf.br/0.forwarding)`},
		{"name: d\nnamespaces:\n  a:\n    sysctls: {net.ipv4.conf.lo.1.forwarding: \"1\", net.ipv4.conf.all.0.forwarding: \"1\", net.ipv4.neigh.default.1.gc_stale_time: \"9\"}\nbridges:\n  - {namespace: a, name: lo.1}\n  - {namespace: a, name: all.0}\n  - {namespace: a, name: default.1}\n",
			`(for interface "default.1": net.ipv4.neigh.default/1.gc_stale_time)`},
		{"name: d\nnamespaces:\n  a:\n    sysctls: {net.ipv4.conf.e.1.2.rp_filter: \"1\"}\nbridges:\n  - {namespace: a, name: e.1}\n  - {namespace: a, name: e.1.2}\n",
			`(for interface "e.1.2": net.ipv4.conf.e/1/2.rp_filter)`},
	} {
		_, err := Parse("d.yaml", []byte(c.file))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s\nwant %s, got %v", c.file, c.want, err)
		}
	}
	if _, err := Parse("d.yaml", []byte("name: d\nnamespaces:\n  a:\n    sysctls: {net.ipv4.conf.lo.1.forwarding: \"1\", net.ipv4.conf.all.0.forwarding: \"1\"}\nbridges:\n  - {namespace: a, name: lo.1}\n  - {namespace: a, name: all.0}\n")); err == nil || strings.Count(err.Error(), "has more parts") != 2 {
		t.Errorf("lo.1 and all.0 written with their dots: %v", err)
	}
	if err := parse(`net.ipv4.conf.br/1.forwarding: "1"`); err == nil || !strings.Contains(err.Error(), `interface "br.1" is not declared in namespace "a"`) {
		t.Errorf("br/1, not declared: %v", err)
	}
	if err := parse(`net.ipv6.conf.br/0.disable_ipv6: "1"`); err == nil || !strings.Contains(err.Error(), `this turns IPv6 off on "br.0", but the file gives it IPv6 addresses`) {
		t.Errorf("IPv6 off on br/0, which has an IPv6 address: %v", err)
	}
	// From a third audit: a trailing dot is no key either (it was taken
	// for an interface "h0.forwarding"); and the hint's interface name has
	// its dots back (a.b.c, not a/b.c).
	if _, err := Parse("d.yaml", []byte("name: d\nnamespaces:\n  a:\n    sysctls: {net.ipv4.conf.a/b.c.forwarding: \"1\"}\nbridges:\n  - {namespace: a, name: a.b.c}\n")); err == nil ||
		!strings.Contains(err.Error(), `(for interface "a.b.c": net.ipv4.conf.a/b/c.forwarding)`) {
		t.Errorf("a/b.c: %v", err)
	}
	for _, key := range []string{"net.ipv4.conf", "net.ipv4.conf.br/0", "net.ipv6.neigh.br/0"} {
		if err := parse(key + `: "1"`); err == nil || !strings.Contains(err.Error(), "is a directory of sysctls, not one") {
			t.Errorf("%s: %v", key, err)
		}
	}
	for _, key := range []string{"net.ipv4.conf.//.forwarding", "net.ipv4.conf./.forwarding", "net.ipv4.conf.a..forwarding", "net.ipv4.conf.br/0.forwarding.", ".net.ipv4.ip_forward"} {
		if err := parse(key + `: "1"`); err == nil || !strings.Contains(err.Error(), "is not a network sysctl") {
			t.Errorf("%s: %v", key, err)
		}
	}
	if got := SysctlPath("net.ipv4.conf.br/0.forwarding"); got != "net/ipv4/conf/br.0/forwarding" {
		t.Errorf("SysctlPath: %s", got)
	}
}

// TestCheckTargetSaysWhatIsWrong: a target that is no address, names a
// namespace the file has not, or an interface it has not, says so (an
// outside audit: each said "has no address").
func TestCheckTargetSaysWhatIsWrong(t *testing.T) {
	top, err := Parse("t.yaml", []byte("name: x\nnamespaces: {a: {}, b: {}}\nlinks:\n  - a: {namespace: a, name: eth0, addresses: [10.1.0.1/24]}\n    b: {namespace: b, name: eth0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for to, want := range map[string]string{
		"300.1.1.1":   `"300.1.1.1" is not an address`,
		"nosuch":      `"nosuch" is neither an address, a namespace of the file, nor NAMESPACE:INTERFACE`,
		"nosuch:eth0": `namespace "nosuch" is not in the file`,
		"a:eth9":      `namespace "a" has no interface "eth9" in the file`,
		"b:eth0":      "interface b:eth0 has no address",
		"b":           `namespace "b" has no address`,
	} {
		if _, _, err := top.CheckTarget(to); err == nil || err.Error() != want {
			t.Errorf("CheckTarget(%q) = %v, want %s", to, err, want)
		}
	}
}
