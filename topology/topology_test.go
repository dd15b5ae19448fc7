package topology

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestInvalidReportsEveryProblem(t *testing.T) {
	_, err := Load("testdata/invalid.yaml")
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("want an ErrorList, got %v", err)
	}
	golden(t, "invalid.golden", list.Error()+"\n")
	// Every error names file:line:col and a path.
	for _, e := range list {
		if e.File != "testdata/invalid.yaml" || e.Line < 1 || e.Col < 1 {
			t.Errorf("error without a position: %#v", e)
		}
	}
}

func TestValid(t *testing.T) {
	top, err := Load("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if top.Name != "ok-lab" || top.Prefix != "t-" || len(top.Links) != 2 || len(top.Bridges) != 1 {
		t.Fatalf("decoded %+v", top)
	}
	l := top.Links[0]
	if l.A.Namespace != "c1" || l.A.Name != "eth0" || l.B.Namespace != "host" || l.B.Name != "veth-c1" {
		t.Errorf("short form endpoints decoded as %+v / %+v", l.A, l.B)
	}
	if top.Links[1].A.MTU != 1400 || top.Links[1].B.MTU != 1400 {
		t.Errorf("link mtu not given to both ends: %d %d", top.Links[1].A.MTU, top.Links[1].B.MTU)
	}
	if top.Links[1].B.IsUp() {
		t.Error("up: false was not kept")
	}
	if s := top.Namespace("host").Sysctls[0]; s.Value != "1" {
		t.Errorf("sysctl value %q", s.Value)
	}
	if b := top.Bridges[0]; b.STP == nil || !*b.STP || b.MAC != "02:00:00:00:00:01" {
		t.Errorf("bridge %+v", b)
	}
}

func TestExamplesAreValid(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples found")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(data), "# yaml-language-server: $schema=../schema/topology.schema.json\n") {
			t.Errorf("%s does not start with the schema comment", f)
		}
		if _, err := Parse(f, data); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestCases(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"empty", "", "empty file"},
		{"not yaml", "name: [", "invalid YAML"},
		{"two documents", "name: a\n---\nname: b\n", "only one YAML document"},
		{"missing name", "prefix: x\n", `missing required key "name"`},
		{"duplicate key", "name: a\nname: b\n", `duplicate key "name"`},
		{"name too long", "name: abcdefghijklmnopq\n", "at most 16 characters"},
		{"ifname 16 chars", "name: a\nbridges: [{name: abcdefghijklmnop}]\n", "at most 15"},
		{"ifname slash", "name: a\nbridges: [{name: a/b}]\n", "contains '/'"},
		{"two claims", "name: a\nbridges: [{name: x}, {name: x}]\n", `interface "x" in namespace "host" is already claimed by bridge x at line 2`},
		{"lo", "name: a\nbridges: [{name: lo}]\n", "loopback"},
		{"bad cidr", "name: a\nbridges: [{name: b, addresses: [10.0.0.1]}]\n", "not an address in CIDR form"},
		{"dup address", "name: a\nbridges: [{name: b, addresses: [10.0.0.1/24]}, {name: c, addresses: [10.0.0.1/16]}]\n", "already used"},
		{"unknown ns", "name: a\nlinks: [{endpoints: [\"x:eth0\", \"host:v\"]}]\n", `namespace "x" is not listed`},
		{"port in other ns", "name: a\nnamespaces: {c: {}}\nbridges: [{name: br0}]\nlinks: [{a: {namespace: c, name: e, bridge: br0}, b: {name: v}}]\n", "a port must be in its bridge's namespace"},
		{"route dev unknown", "name: a\nnamespaces: {c: {routes: [{to: default, dev: eth9}]}}\n", `interface "eth9" is not declared`},
		{"route family", "name: a\nnamespaces: {c: {routes: [{to: 10.0.0.0/8, via: \"fd00::1\"}]}}\n", "different address families"},
		{"route needs via or dev", "name: a\nnamespaces: {c: {routes: [{to: default}]}}\n", "needs via"},
		{"sysctl not net", "name: a\nnamespaces: {host: {sysctls: {vm.swappiness: 1}}}\n", "not a network sysctl"},
		{"mtu type", "name: a\nbridges: [{name: b, mtu: big}]\n", "expected an integer"},
		{"ipv6 under 1280", "name: a\nbridges: [{name: b, mtu: 1200, addresses: [\"fd00::1/64\"]}]\n", "2:44: bridges[0].addresses[0]: fd00::1/64 is IPv6, but this interface's mtu 1200 is under IPv6's minimum of 1280"},
		{"ipv6 on a veth end without mtu, the other's under 1280", "name: a\nnamespaces: {c: {}}\nlinks: [{a: {namespace: c, name: e, addresses: [\"fd00::2/64\"]}, b: {name: v, mtu: 1200}}]\n",
			"links[0].a.addresses[0]: fd00::2/64 is IPv6, but without mtu: this end takes the other end's, host:v's mtu 1200, under IPv6's minimum of 1280: give this end an mtu: of at least 1280"},
		{"ipv6 on a macvlan whose parent, a veth end, has the other end's mtu", "name: a\nnamespaces: {u: {}, m: {}}\nlinks: [{a: {namespace: u, name: eth0, mtu: 1200}, b: {name: up0}}]\nmacvlans: [{name: mv0, namespace: m, parent: \"host:up0\", addresses: [\"fd00::5/64\"]}]\n",
			"fd00::5/64 is IPv6, but without mtu: this takes its parent host:up0's mtu 1200, under IPv6's minimum of 1280"},
		{"ipv6 on a vxlan whose dev, a veth end, has the other end's mtu", "name: a\nnamespaces: {r: {}}\nlinks: [{a: {namespace: r, name: u0}, b: {name: u0, mtu: 1300}}]\nvxlans: [{name: vx0, namespace: r, vni: 1, remote: 10.2.0.1, dev: u0, addresses: [\"fd00:8::1/64\"]}]\n",
			"fd00:8::1/64 is IPv6, but without mtu: this VXLAN takes 1250 from dev u0's mtu 1300 (less 50 for its headers)"},
		{"ipv6 under 1280, link mtu", "name: a\nnamespaces: {c: {}}\nlinks: [{mtu: 1000, a: {namespace: c, name: e, addresses: [\"fd00::2/64\"]}, b: {name: v}}]\n", "under IPv6's minimum"},
		{"indented first line", " name: a\nbridges: []\n", "first document that ends before the file does"},
		{"unknown key", "name: a\nbridges: [{name: b, colour: red}]\n", `unknown key "colour"`},
		{"zero mac", "name: a\nbridges: [{name: b, mac: \"00:00:00:00:00:00\"}]\n", `2:26: bridges[0].mac: "00:00:00:00:00:00" is the all-zero MAC address, which the kernel refuses`},
		{"macvlan mtu over its parent's", "name: a\nbridges: [{name: br0, mtu: 1400}]\nnamespaces: {m: {}}\nmacvlans: [{name: mv0, namespace: m, parent: \"host:br0\", mtu: 1500}]\n",
			`macvlans[0].mtu: mtu 1500 is over its parent host:br0's mtu 1400`},
		{"vxlan mtu over its dev's", "name: a\nnamespaces: {n: {}}\nlinks: [{endpoints: [\"n:e1\", \"host:x1\"], mtu: 1500}]\nvxlans: [{name: v1, namespace: n, vni: 7, remote: 10.0.0.1, dev: e1, mtu: 1460}]\n",
			`vxlans[0].mtu: mtu 1460 is over what dev e1's mtu 1500 leaves a VXLAN (1450, less 50 for its headers)`},
		{"vxlan vni twice", "name: a\nnamespaces: {n: {}}\nlinks: [{endpoints: [\"n:e1\", \"host:x1\"]}, {endpoints: [\"n:e2\", \"host:x2\"]}]\nvxlans: [{name: v1, namespace: n, vni: 7, remote: 10.0.0.1, dev: e1}, {name: v2, namespace: n, vni: 7, remote: 10.0.0.2, dev: e2}]\n",
			`vxlans[1].vni: vxlan v1 at line 4 has vni 7 and port 4789 in namespace "n" already`},
		{"vxlan group without dev", "name: a\nvxlans: [{name: vx, vni: 1, group: 239.1.1.1}]\n", "needs dev"},
		{"ipvlan mode", "name: a\nipvlans: [{name: i, parent: eth0, mode: l4}]\n", `"l4" is not one of l2, l3, l3s`},
		{"vxlan dev elsewhere", "name: a\nnamespaces: {v: {}, n: {}}\nlinks: [{endpoints: [\"n:up0\", \"host:x\"]}]\nvxlans: [{name: vx, namespace: v, vni: 1, remote: 10.0.0.1, dev: up0}]\n",
			`vxlans[0].dev: interface "up0" is not declared in namespace "v"`},
		{"macvlan of a macvlan", "name: a\nnamespaces: {m: {}}\nlinks: [{endpoints: [\"m:e\", \"host:x\"]}]\nmacvlans: [{name: m1, namespace: m, parent: \"m:e\", mode: bridge}, {name: m2, namespace: m, parent: \"m:m1\", mode: bridge}]\n",
			"parent m:m1 is itself a macvlan: the kernel would attach this one to its parent instead; name that parent"},
		{"ipv6 on a bridge without mtu whose port, a veth end, has the other end's under 1280", "name: a\nnamespaces: {c: {}}\nbridges: [{name: br0, addresses: [\"fd00::1/64\"]}]\nlinks: [{a: {namespace: c, name: e, mtu: 1200}, b: {name: v, bridge: br0}}]\n",
			"3:35: bridges[0].addresses[0]: fd00::1/64 is IPv6, but without mtu: this bridge follows its ports' smallest MTU, port v's mtu 1200 (without mtu: a veth end takes the other end's), under IPv6's minimum of 1280"},
		{"ipv6 on a bridge without mtu, a port's mtu under 1280", "name: a\nnamespaces: {c: {}}\nbridges: [{name: br0, addresses: [\"10.0.0.1/24\", \"fd00::1/64\"]}]\nlinks: [{a: {namespace: c, name: e}, b: {name: v, bridge: br0, mtu: 1100}}, {a: {namespace: c, name: f}, b: {name: w, bridge: br0, mtu: 1200}}]\n",
			"bridges[0].addresses[1]: fd00::1/64 is IPv6, but without mtu: this bridge follows its ports' smallest MTU, port v's mtu 1100, under"},
		{"duplicate namespace", "name: a\nnamespaces:\n  c: {}\n  d: {}\n  c: {}\n", `5:3: namespaces.c: duplicate namespace "c" (first at line 3)`},
		{"ipv6 on a bridge without mtu whose VXLAN port takes a small dev's", "name: a\nnamespaces: {u: {}}\nbridges:\n  - {name: br0, addresses: [\"fd00::1/64\"]}\nlinks:\n  - a: {namespace: u, name: eth0, addresses: [192.0.2.2/24]}\n    b: {name: up0, addresses: [192.0.2.1/24], mtu: 1300}\nvxlans:\n  - {name: vx0, vni: 10, remote: 192.0.2.2, dev: up0, bridge: br0}\n",
			"port vx0's mtu 1250 (without mtu: a VXLAN takes its dev's, less its headers), under IPv6's minimum of 1280"},
		// An outside audit: routes validate passed and the kernel refused.
		{"gateway on another interface's subnet than dev's", "name: a\nnamespaces:\n  a: {routes: [{to: 10.70.0.0/16, via: 10.61.0.1, dev: eth1}]}\n  b: {}\nlinks:\n  - {a: {namespace: a, name: eth0, addresses: [10.61.0.2/24]}, b: {namespace: b, name: eth0, addresses: [10.61.0.1/24]}}\n  - {a: {namespace: a, name: eth1, addresses: [10.62.0.2/24]}, b: {namespace: b, name: eth1, addresses: [10.62.0.1/24]}}\n",
			"namespaces.a.routes[0].via: gateway 10.61.0.1 is on no subnet of dev eth1 (it has 10.62.0.0/24)"},
		{"broadcast gateway", "name: a\nnamespaces:\n  a: {routes: [{to: 10.70.0.0/16, via: 10.61.0.255}]}\nlinks:\n  - {a: {namespace: a, name: eth0, addresses: [10.61.0.2/24]}, b: {name: v}}\n",
			"gateway 10.61.0.255 is the broadcast address of 10.61.0.0/24"},
		{"onlink without via", "name: a\nnamespaces:\n  a: {routes: [{to: 10.98.1.0/24, dev: eth0, onlink: true}]}\nlinks:\n  - {a: {namespace: a, name: eth0, addresses: [10.5.0.2/24]}, b: {name: v}}\n",
			`namespaces.a.routes[0].onlink: onlink needs via: it says a gateway is on the wire of dev`},
		{"gateway of its own", "name: a\nnamespaces:\n  a: {routes: [{to: 10.70.0.0/16, via: 10.61.0.2, dev: eth0, onlink: true}]}\nlinks:\n  - {a: {namespace: a, name: eth0, addresses: [10.61.0.2/24]}, b: {name: v}}\n",
			`namespaces.a.routes[0].via: gateway 10.61.0.2 is an address of namespace "a" itself (on eth0): a gateway is a neighbour's address`},
		{"the kernel's own route", "name: a\nnamespaces:\n  a: {routes: [{to: 10.61.0.0/24, via: 10.61.0.1}]}\nlinks:\n  - {a: {namespace: a, name: eth0, addresses: [10.61.0.2/24]}, b: {name: v}}\n",
			"namespaces.a.routes[0]: the kernel makes the route to 10.61.0.0/24 with metric 0 itself, for 10.61.0.2/24 of eth0"},
		// An outside audit: NAT rules that mix families, and a source with
		// host bits (taken as its network, silently).
		{"snat to the other family", "name: a\nnamespaces: {r: {}}\nnat: [{namespace: r, snat: {source: 10.1.0.0/16, to: \"fd00::1\"}}]\n", `nat[0].snat.to: fd00::1 is IPv6, but source 10.1.0.0/16 is IPv4: a rule translates within one family`},
		{"snat of IPv6 to IPv4", "name: a\nnamespaces: {r: {}}\nnat: [{namespace: r, snat: {source: \"fd00::/64\", to: 10.0.0.1}}]\n", `10.0.0.1 is IPv4, but source fd00::/64 is IPv6`},
		// An outside audit: a tag the value's kind does not have validated.
		{"mapping tagged int", "name: a\nnamespaces:\n  c: !!int {}\n", `3:6: namespaces.c: a mapping tagged !!int`},
		{"list tagged map", "name: a\nbridges: !!map [{name: b}]\n", `2:10: bridges: a list tagged !!map`},
		{"sysctls tagged str", "name: a\nnamespaces: {c: {sysctls: !!str {net.ipv4.ip_forward: 1}}}\n", `namespaces.c.sysctls: a mapping tagged !!str`},
		{"root tagged str", "--- !!str\nname: a\n", `1:5: (document): a mapping tagged !!str`},
		// Found by FuzzParse: present but empty values.
		{"empty name", "name: >\n", `name: "" must match`},
		{"empty ifname", "name: a\nbridges: [{name: \"\"}]\n", "interface name is empty"},
		{"empty route", "name: a\nnamespaces: {c: {routes: [{to: \"\"}]}}\n", "to is empty"},
		{"empty source", "name: a\nnat: [{masquerade: {source: \"\"}}]\n", "empty: a CIDR is needed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(c.yaml))
			if err == nil {
				t.Fatalf("want an error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "t.yaml:") {
				t.Fatalf("error %q does not start with the file name", err)
			}
		})
	}
}

// TestVxlanOverIPv6KeepsIPv6On: a VXLAN with an IPv6 endpoint needs IPv6
// in its namespace (the kernel refuses to make it there otherwise), so
// the default leaves it on; one over IPv4 does not.
func TestVxlanOverIPv6KeepsIPv6On(t *testing.T) {
	top, err := Parse("vx.yaml", []byte(`name: a
namespaces: {n6: {}, n4: {}}
links:
  - {endpoints: ["n6:e1", "host:x1"]}
  - {endpoints: ["n4:e1", "host:x2"]}
vxlans:
  - {name: v6, namespace: n6, vni: 7, remote: "fd00::2", dev: e1}
  - {name: v4, namespace: n4, vni: 7, remote: 10.0.0.2, dev: e1}
`))
	if err != nil {
		t.Fatal(err)
	}
	if !top.WantsIPv6("n6") || top.WantsIPv6("n4") {
		t.Fatalf("IPv6 wanted in n6: %v (want true), in n4: %v (want false)", top.WantsIPv6("n6"), top.WantsIPv6("n4"))
	}
}

// Load does not keep the file's bytes while it validates: a problem whose
// position the first pass did not record is placed by reading the file
// again. If the file changed in between, that problem keeps its object's
// position instead of one from the other file.
func TestLoadPlacesProblemsFromTheFileReadAgain(t *testing.T) {
	file := filepath.Join(t.TempDir(), "t.yaml")
	text := "name: t\nnamespaces:\n  a: {}\nlinks:\n  - a: {namespace: a, name: eth0,\n       addresses: [10.0.0.1/24, 10.0.0.300/24]}\n    b: {namespace: host, name: v0}\n"
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(file)
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 {
		t.Fatalf("want one problem, got %v", err)
	}
	if e := list[0]; e.Path != "links[0].a.addresses[1]" || e.Line != 6 || e.Col != 33 {
		t.Errorf("want links[0].a.addresses[1] at 6:33, got %s at %d:%d (%s)", e.Path, e.Line, e.Col, e.Msg)
	}
	// The same, with the file changed before the second reading.
	_, err = parse(file, []byte(text), func() []byte { return nil }, nil, nil)
	if !errors.As(err, &list) || len(list) != 1 {
		t.Fatalf("want one problem, got %v", err)
	}
	if e := list[0]; e.Path != "links[0].a.addresses[1]" || e.Line != 5 || e.Col != 8 {
		t.Errorf("with the file changed, want the interface's position 5:8, got %s at %d:%d", e.Path, e.Line, e.Col)
	}
}

// TestIPv4MappedAddressRefused: an interface's ::ffff:10.0.0.1/120 is
// refused; it was taken in, and plan showed "invalid Prefix" (an outside
// audit's find).
func TestIPv4MappedAddressRefused(t *testing.T) {
	_, err := Parse("m.yaml", []byte("name: m\nnamespaces:\n  a: {}\nlinks:\n  - a: {namespace: a, name: eth0, addresses: [\"::ffff:10.0.0.1/120\"]}\n    b: {namespace: host, name: v0}\n"))
	if err == nil || !strings.Contains(err.Error(), `"::ffff:10.0.0.1/120" is an IPv4-mapped IPv6 address: write the IPv4 address itself`) {
		t.Fatalf("got %v", err)
	}
}

// TestIPv6UnderAParentsSmallMTU: a macvlan or VXLAN with an IPv6 address
// and no mtu: of its own takes its parent's (its dev's, less the VXLAN
// headers); where the file sets that under 1280, validate says so (an
// outside audit's find: plan passed and apply failed).
func TestIPv6UnderAParentsSmallMTU(t *testing.T) {
	src := "name: m\nnamespaces:\n  c1: {}\nbridges:\n  - {name: pbr, mtu: 1279}\n  - {name: dbr, mtu: 1329}\nmacvlans:\n  - {name: m0, namespace: c1, parent: \"host:pbr\", addresses: [fd00::1/64]}\nvxlans:\n  - {name: vx0, vni: 7, remote: 192.0.2.9, dev: dbr, addresses: [\"fd00:1::1/64\"]}\n"
	_, err := Parse("m.yaml", []byte(src))
	for _, want := range []string{
		`fd00::1/64 is IPv6, but without mtu: this takes its parent host:pbr's mtu 1279, under IPv6's minimum of 1280`,
		`fd00:1::1/64 is IPv6, but without mtu: this VXLAN takes 1279 from dev dbr's mtu 1329 (less 50 for its headers)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %s, got %v", want, err)
		}
	}
	ok := strings.NewReplacer("mtu: 1279", "mtu: 1280", "mtu: 1329", "mtu: 1330").Replace(src)
	if _, err := Parse("m.yaml", []byte(ok)); err != nil {
		t.Errorf("at 1280: %v", err)
	}
}

// TestLinkMTUOutOfRangeOnce: a link's mtu: out of range is one problem,
// at that mtu:, not one more at each end that has none (an outside audit
// saw three, two of them at lines with no mtu:).
func TestLinkMTUOutOfRangeOnce(t *testing.T) {
	_, err := Parse("t.yaml", []byte("name: x\nnamespaces: {a: {}, b: {}}\nlinks:\n  - a: {namespace: a, name: e0}\n    b: {namespace: b, name: e0}\n    mtu: 70000\n"))
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 || !strings.Contains(list[0].Error(), "t.yaml:6:10: links[0].mtu: mtu 70000 is outside 68-65535") {
		t.Fatalf("want one problem at the link's mtu:, got %v", err)
	}
}

// TestWarningsBesideErrors: a file with an error still has its warnings
// (validate reports both; an outside audit saw them dropped).
func TestWarningsBesideErrors(t *testing.T) {
	top, err := Parse("t.yaml", []byte("name: x\nnamespaces:\n  c1: {}\nbridges: [{name: br0, mtu: abc}]\nnat:\n  - {namespace: c1, masquerade: {source: 10.0.0.0/8}}\n  - {namespace: c1, masquerade: {source: 10.1.0.0/16}}\n"))
	if err == nil || top == nil || len(top.Warnings) != 1 || !strings.Contains(top.Warnings[0].Error(), "t.yaml:7:5: nat[1]: this rule never applies") {
		t.Fatalf("want the error and the warning, got %v, %+v", err, top)
	}
}

// TestAnchorsAliasesAndMerges: a value written once with an anchor is
// used by aliases and `<<` merges (own keys win), top-level x- keys hold
// anchors and are not read; an alias of a value holding it is an error
// (an outside audit: every alias was refused, "found an alias").
func TestAnchorsAliasesAndMerges(t *testing.T) {
	src := `name: al
x-port: &port {namespace: host, bridge: br0, mtu: 1300}
namespaces:
  c1: &ns {ipv6: false}
  c2: *ns
bridges:
  - {name: br0, mtu: &m 1400}
links:
  - a: {namespace: c1, name: eth0, addresses: [10.0.0.2/24], mtu: *m}
    b: {<<: *port, name: v1, mtu: 1400}
  - a: {namespace: c2, name: eth0}
    b: {<<: [*port], name: v2}
`
	top, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Namespaces) != 2 || top.Namespaces[1].IPv6 == nil || *top.Namespaces[1].IPv6 {
		t.Fatalf("c2: *ns: %+v", top.Namespaces[1])
	}
	l0, l1 := top.Links[0], top.Links[1]
	if l0.A.MTU != 1400 || l0.B.Bridge != "br0" || l0.B.Namespace != "host" || l0.B.MTU != 1400 || l1.B.MTU != 1300 || l1.B.Name != "v2" {
		t.Fatalf("aliases and merges: %+v %+v %+v", l0.A, l0.B, l1.B)
	}
	// A merge without an anchor (that file was cut in chunks, and the
	// merge never resolved); a literal $${ in an aliased value stays one
	// in each use (the uses shared one node, and the second read it as a
	// variable); two merge keys in one mapping are an error.
	if top, err := Parse("t.yaml", []byte("name: al\nlinks:\n  - a: {<<: {mtu: 1400}, name: e}\n    b: {name: v}\n")); err != nil || top.Links[0].A.MTU != 1400 {
		t.Fatalf("a merge without an anchor: %v", err)
	}
	if top, err := Parse("t.yaml", []byte("name: al\nx-s: &s {net.ipv4.conf.default.rp_filter: \"$${RP}\"}\nnamespaces:\n  a: {sysctls: *s}\n  b: {sysctls: *s}\n")); err != nil || top.Namespaces[1].Sysctls[0].Value != "${RP}" {
		t.Fatalf("$${ in an aliased value: %v %+v", err, top)
	}
	if _, err := Parse("t.yaml", []byte("name: al\nx-a: &a {mtu: 1400}\nlinks:\n  - a: {<<: *a, <<: *a, name: e}\n    b: {name: v}\n")); err == nil || !strings.Contains(err.Error(), `t.yaml:4:17: (document): duplicate key "<<"`) {
		t.Fatalf("two merge keys: %v", err)
	}
	_, err = Parse("t.yaml", []byte("name: al\nnamespaces:\n  c1: &ns {sysctls: *ns}\n"))
	if err == nil || !strings.Contains(err.Error(), "t.yaml:3:21: (document): alias *ns is of a value that holds it") {
		t.Fatalf("a recursive alias: %v", err)
	}
}

// TestNATSourceWithHostBitsWarns: a NAT source with host bits is taken as
// its network, and said so (an outside audit: it was silent).
func TestRoutesTheKernelTakes(t *testing.T) {
	// Found by an outside audit, refused by checks of routes the kernel
	// refuses: a gateway reached through a dev-only route (unnumbered),
	// a route to the subnet of an interface that is down (the kernel
	// makes none for it then), one to an IPv4 /32 address's own /32 (no
	// route of the kernel's either), a /32 point-to-point link.
	for name, src := range map[string]string{
		"unnumbered": "name: a\nnamespaces:\n  a: {routes: [{to: 10.1.0.254/32, dev: eth1}, {to: 10.70.0.0/16, via: 10.1.0.254, dev: eth1}]}\n  b: {routes: [{to: 10.1.0.1/32, dev: eth1}]}\nlinks:\n  - {a: {namespace: a, name: eth0, addresses: [10.1.0.1/24]}, b: {name: v}}\n  - {a: {namespace: a, name: eth1}, b: {namespace: b, name: eth1, addresses: [10.1.0.254/32]}}\n",
		"down":       "name: a\nnamespaces:\n  a: {routes: [{to: 10.5.0.0/24, via: 10.1.0.254}]}\nlinks:\n  - {a: {namespace: a, name: eth0, addresses: [10.1.0.1/24]}, b: {name: v}}\n  - {a: {namespace: a, name: eth1, addresses: [10.5.0.2/24], up: false}, b: {name: w}}\n",
		"/32":        "name: a\nnamespaces:\n  a: {routes: [{to: 10.9.0.5/32, dev: eth0}]}\nlinks:\n  - {a: {namespace: a, name: eth0, addresses: [10.9.0.5/32]}, b: {name: v}}\n",
		"p2p /32":    "name: a\nnamespaces:\n  a: {routes: [{to: 10.9.0.6/32, dev: eth0}, {to: default, via: 10.9.0.6, dev: eth0}]}\nlinks:\n  - {a: {namespace: a, name: eth0, addresses: [10.9.0.5/32]}, b: {name: v, addresses: [10.9.0.6/32]}}\n",
	} {
		if _, err := Parse("t.yaml", []byte(src)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestNATSourceWithHostBitsWarns(t *testing.T) {
	top, err := Parse("t.yaml", []byte("name: x\nnamespaces: {r: {}}\nnat: [{namespace: r, masquerade: {source: 10.0.0.1/8}}]\n"))
	if err != nil || len(top.Warnings) != 1 || !strings.Contains(top.Warnings[0].Error(), "nat[0].masquerade.source: 10.0.0.1/8 has host bits set: taken as the network 10.0.0.0/8 (for one host, write 10.0.0.1/32)") {
		t.Fatalf("want a warning, got %v, %+v", err, top)
	}
}

// TestInvalidYAMLAtItsLine: yaml.v3's parser counts lines from 0 in its
// messages, its scanner from 1: the problem is reported at its own line
// either way (an outside audit saw the line before it).
func TestInvalidYAMLAtItsLine(t *testing.T) {
	for src, want := range map[string]string{
		"name: x\nnamespaces:\n  c1: {}\nlinks:\n  - a: {namespace: c1, name: eth0}\n    b: {namespace: host, name: v-${NS}}\n": "t.yaml:6:5:",
		"name: x\nnamespaces:\n  c1: {}\n  c2: [}\n": "t.yaml:4:3:",
		"name: x\nnamespaces:\n  c1: {}\n  c2: @x\n": "t.yaml:4:7:", // the character
		// yaml.v3 gives no line for an alias with no anchor: found in the
		// text (it was at 1:1), not inside a quoted string.
		"name: x\nnamespaces:\n  c1: {sysctls: {a: \"*r\"}}\n  c2: {routes: *r}\n": "t.yaml:4:16:",
		"name: x # not *r\nnamespaces:\n  c2: {routes: *r}\n":                      "t.yaml:3:16:",
	} {
		_, err := Parse("t.yaml", []byte(src))
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: want %s..., got %v", src, want, err)
		}
	}
}

// TestKeysReferenceIsValid: the reference of every key in docs/topology.md
// is a file validate takes (an outside audit: a user who copied it as a
// start met four errors).
func TestKeysReferenceIsValid(t *testing.T) {
	doc, err := os.ReadFile("../docs/topology.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "## Keys\n")
	if !ok {
		t.Fatal("docs/topology.md has no Keys section")
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok || !strings.Contains(block, "vxlans:") {
		t.Fatal("no yaml block in the Keys section")
	}
	if _, err := Parse("docs/topology.md", []byte(block)); err != nil {
		t.Fatalf("the Keys reference does not validate:\n%v", err)
	}
}

// TestSyntaxErrorsAtTheMistake: yaml.v3 names the line where the
// collection it was parsing starts; the error is put where the mistake
// is (the line and column PyYAML gives these), with a hint for tabs and
// unquoted variables in flow collections (an outside audit: they were at
// 3:1, 5:1 and 3:1).
func TestSyntaxErrorsAtTheMistake(t *testing.T) {
	for src, want := range map[string]string{
		"name: indent\nbridges:\n  - name: br0\n  addresses: [10.0.0.1/24]\n":                                                    "t.yaml:4:3: (document): invalid YAML: did not find expected '-' indicator",
		"name: x\nnamespaces: {c1: {}}\nlinks:\n  # c\n  - a: {namespace: c1, name: eth0}\n     b: {namespace: host, name: v}\n": "t.yaml:6:6: (document): invalid YAML: did not find expected key",
		"name: indent\nbridges:\n- name: br0\n  addresses: [10.0.0.1/24]\n   mtu: 1400\n":                                        "t.yaml:5:4: (document): invalid YAML: did not find expected key",
		"name: x\nbridges:\n  - {name: br0, mtu: ${MTU:-1400}}\n":                                                                `t.yaml:3:3: (document): invalid YAML: did not find expected ',' or '}' (in a flow collection, {...} or [...], a value with a variable needs quotes: "${NAME}")`,
		"name: x\nbridges:\n\t- {name: br0}\n":                                                                                   "t.yaml:3:1: (document): invalid YAML: found character that cannot start any token (a tab: YAML indents with spaces)",
		"name: x\nbridges:\n  - name: br0\n    addresses: [10.0.0.1/24\n  - name: br1\n":                                         "t.yaml:4:5: (document): invalid YAML: did not find expected ',' or ']'",
		// A '[' at a line's end, blank lines and more below (a second
		// audit: put at the next line with text).
		"name: t\nnamespaces:\n  a: {}\n  b: [\n\n\n# c\n\n\nlinks: []\n": "t.yaml:4:3: (document): invalid YAML: did not find expected ',' or ']'",
		// A quote not closed: its line, not one past the end of the file.
		"name: \"t\nnamespaces:\n  a: {}\nlinks: []\nnat: []\n": "t.yaml:1:7: (document): invalid YAML: found unexpected end of stream",
	} {
		_, err := Parse("t.yaml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q:\n got %v\nwant %s", src, err, want)
		}
	}
}

// TestPrefixGivenLeavesTheFilesPrefixUnread: with the prefix given
// elsewhere (--prefix), the file's prefix: is not read: a variable in it
// needs no value (an outside audit: plan refused the file for one).
func TestPrefixGivenLeavesTheFilesPrefixUnread(t *testing.T) {
	src := []byte("name: pfx\nprefix: ${PFX}\nnamespaces:\n  a: {}\n")
	none := func(string) (string, bool) { return "", false }
	if _, err := ParseWith("t.yaml", src, none); err == nil || !strings.Contains(err.Error(), "t.yaml:2:9: prefix: variable PFX is not set") {
		t.Fatalf("without PrefixGiven: %v", err)
	}
	top, err := ParseWith("t.yaml", src, none, PrefixGiven)
	if err != nil || top.Prefix != "" || len(top.Warnings) != 0 {
		t.Fatalf("with PrefixGiven: %v, %+v", err, top)
	}
}

// TestPortForwardToWhereNothingReaches: a port forward to an address its
// namespace has no subnet of and no route to is a warning (a new user's
// audit: no word of it); a route there, a default route included, is
// reach.
func TestPortForwardToWhereNothingReaches(t *testing.T) {
	src := "name: pf\nbridges: [{name: br0, addresses: [10.0.0.1/24]}]\nnamespaces:\n  r:\n    routes: [{to: default, via: 10.9.0.1}]\nlinks:\n  - a: {namespace: r, name: eth0, addresses: [10.9.0.2/24]}\n    b: {name: v0}\nnat:\n" +
		"  - port_forward: {proto: tcp, port: 8080, to: \"10.0.5.2:80\"}\n" +
		"  - port_forward: {proto: tcp, port: 8081, to: \"10.0.0.2:80\"}\n" +
		"  - {namespace: r, port_forward: {proto: tcp, port: 8082, to: \"10.77.0.2:80\"}}\n" +
		"  - {namespace: r, port_forward: {proto: tcp, port: 8083, to: \"[fd00::2]:80\"}}\n"
	top, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range top.Warnings {
		got = append(got, w.Error())
	}
	want := []string{
		`t.yaml:10:48: nat[0].port_forward.to: 10.0.5.2: no interface of namespace "host" is on its subnet and no route there reaches it, unless an interface of the machine's (or the sandbox's) that the file does not make does: the connections forwarded to it go nowhere`,
		`t.yaml:13:63: nat[3].port_forward.to: fd00::2: no interface of namespace "r" is on its subnet and no route there reaches it: the connections forwarded to it go nowhere`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
