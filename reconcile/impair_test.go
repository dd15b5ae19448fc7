package reconcile_test

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/reconcile/fake"
)

const impairBase = `
name: lab
namespaces: {a: {}, b: {}}
links:
  - endpoints: ["a:eth0", "b:eth0"]
`

func withImpair(link, end string) string {
	s := impairBase
	if link != "" {
		s += "    impair: {" + link + "}\n"
	}
	if end != "" {
		s += `  - a: {namespace: a, name: eth1, impair: {` + end + `}}
    b: {namespace: b, name: eth1}
`
	} else {
		s += "  - endpoints: [\"a:eth1\", \"b:eth1\"]\n"
	}
	return s
}

func TestImpairPlans(t *testing.T) {
	cases := []struct {
		name     string
		from, to string
		expect   []string
	}{
		{"added to both ends of a link", withImpair("", ""), withImpair("rate: 8mbit", ""),
			[]string{"+ a impair on eth0: rate 8mbit", "+ b impair on eth0: rate 8mbit"}},
		{"changed in place", withImpair("rate: 8mbit", ""), withImpair("rate: 20mbit", ""),
			[]string{"~ a impair on eth0 (rate: 8mbit -> 20mbit)", "~ b impair on eth0 (rate: 8mbit -> 20mbit)"}},
		{"a key added, from tbf to netem", withImpair("rate: 8mbit", ""), withImpair("rate: 8mbit, delay: 50ms, loss: 1%", ""),
			[]string{"~ a impair on eth0 (delay: (none) -> 50ms, loss: (none) -> 1%)", "~ b impair on eth0 (delay: (none) -> 50ms, loss: (none) -> 1%)"}},
		{"removed", withImpair("delay: 1.5ms", ""), withImpair("", ""),
			[]string{"- a impair on eth0: delay 1.5ms", "- b impair on eth0: delay 1.5ms"}},
		{"one end only", withImpair("", ""), withImpair("", "loss: 0.5%, limit: 50"),
			[]string{"+ a impair on eth1: loss 0.5% limit 50"}},
		{"netem's default limit said aloud changes nothing", withImpair("delay: 10ms", ""), withImpair("delay: 10ms, limit: 1000", ""), nil},
		{"a renamed link keeps it", withImpair("rate: 1mbit", ""),
			strings.Replace(withImpair("rate: 1mbit", ""), `["a:eth0", "b:eth0"]`, `["a:eth0", "b:eth9"]`, 1),
			[]string{"~ a veth eth0 <-> b:eth9 (peer: b:eth0 -> b:eth9)", "~ b veth eth9 <-> a:eth0 (name: eth0 -> eth9, mac: aa:40:7b:2e:45:ac -> 96:75:8c:59:2b:14)"}},
		{"a re-made link gets it again", withImpair("rate: 1mbit", ""),
			strings.Replace(withImpair("rate: 1mbit", ""), `["a:eth0", "b:eth0"]`, `["a:eth0", "a:eth9"]`, 1),
			[]string{"-/+ a veth eth0 <-> a:eth9 (peer: b:eth0 -> a:eth9)", "+ a impair on eth0: rate 1mbit", "+ a impair on eth9: rate 1mbit", "- b veth eth0 <-> a:eth0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := planLinesFrom(t, tc.from, tc.to)
			if !reflect.DeepEqual(got, tc.expect) {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.expect, "\n"))
			}
		})
	}
}

func TestImpairForeignQdisc(t *testing.T) {
	k := fake.New("lab")
	apply(t, k, parse(t, withImpair("", "")))
	if err := k.W.SetForeignQdisc("a", "eth0", "htb 1:"); err != nil {
		t.Fatal(err)
	}
	// Without impair: there, it is left alone.
	if p := plan(t, k, parse(t, withImpair("", ""))); !p.Empty() || len(p.Conflicts) > 0 {
		t.Fatalf("a foreign qdisc on an interface without impair: changed:\n%v", p)
	}
	p := plan(t, k, parse(t, withImpair("rate: 8mbit", "")))
	want := `t.yaml:5:17: links[0].endpoints[0]: interface "eth0" in namespace "a" has a root qdisc that netplan-lab did not make (htb 1:): remove it, or remove impair: from the file`
	if len(p.Conflicts) != 1 || p.Conflicts[0] != want {
		t.Fatalf("conflicts %q, want %q", p.Conflicts, want)
	}
}

func TestImpairPreflightNamesTheOption(t *testing.T) {
	k := fake.New("lab")
	k.W.Unsupported = map[string]string{"netem": "CONFIG_NET_SCH_NETEM"}
	apply(t, k, parse(t, withImpair("", "")))
	before := k.Writes()
	_, err := reconcile.Reconcile(context.Background(), k, parse(t, withImpair("delay: 50ms", "")), reconcile.ExecOptions{})
	if err == nil || !strings.Contains(err.Error(), "CONFIG_NET_SCH_NETEM") {
		t.Fatalf("err = %v", err)
	}
	if k.Writes() != before {
		t.Errorf("a refused plan wrote %d changes", k.Writes()-before)
	}
	// A rate alone is tbf, which this kernel has.
	apply(t, k, parse(t, withImpair("rate: 8mbit", "")))
}

const v6base = `
name: lab
namespaces: {a: {}, b: {}, c: {ipv6: true}}
links:
  - a: {namespace: a, name: eth0, addresses: [10.0.0.1/24]}
    b: {namespace: b, name: eth0, addresses: [10.0.0.2/24]}
  - a: {namespace: a, name: eth1, addresses: [10.0.1.1/24]}
    b: {namespace: c, name: eth1, addresses: [10.0.1.2/24]}
`

// TestIPv6Default: IPv6 is off, as a namespace is made, where the file
// gives it none; turned on (before the address) when an IPv6 address
// comes, and off again (after the address goes) when it goes.
func TestIPv6Default(t *testing.T) {
	got := planLinesFrom(t, "name: lab\n", v6base)
	want := []string{"+ a namespace a (IPv6 off)", "+ b namespace b (IPv6 off)", "+ c namespace c"}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("missing %q in\n%s", w, strings.Join(got, "\n"))
		}
	}
	withV6 := strings.Replace(v6base, "addresses: [10.0.0.1/24]", `addresses: [10.0.0.1/24, "fd00::1/64"]`, 1)
	got = planLinesFrom(t, v6base, withV6)
	want = []string{
		`~ a sysctl net.ipv6.conf.all.disable_ipv6: "1" -> "0"`,
		`~ a sysctl net.ipv6.conf.default.disable_ipv6: "1" -> "0"`,
		"+ a address fd00::1/64 on eth0",
	}
	if !reflect.DeepEqual(sorted(got), sorted(want)) {
		t.Errorf("turning IPv6 on:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	got = planLinesFrom(t, withV6, v6base)
	want = []string{
		`~ a sysctl net.ipv6.conf.all.disable_ipv6: "0" -> "1"`,
		`~ a sysctl net.ipv6.conf.default.disable_ipv6: "0" -> "1"`,
		"- a address fd00::1/64 on eth0",
	}
	if !reflect.DeepEqual(sorted(got), sorted(want)) {
		t.Errorf("turning IPv6 off:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The file's own setting wins.
	own := strings.Replace(v6base, "namespaces: {a: {}", `namespaces: {a: {sysctls: {net.ipv6.conf.all.disable_ipv6: "0", net.ipv6.conf.default.disable_ipv6: "0"}}`, 1)
	if got := planLinesFrom(t, "name: lab\n", own); !slices.Contains(got, "+ a namespace a") {
		t.Errorf("the file's own disable_ipv6 should win:\n%s", strings.Join(got, "\n"))
	}
}

func sorted(s []string) []string {
	c := append([]string(nil), s...)
	slices.Sort(c)
	return c
}

// TestSysctlRewrites: ip_forward rewrites every interface's forwarding,
// so an interface's own forwarding is set again after it.
func TestSysctlRewrites(t *testing.T) {
	router := func(fwd string) string {
		return `
name: lab
namespaces:
  r:
    sysctls: {net.ipv4.ip_forward: "` + fwd + `", net.ipv4.conf.eth0.forwarding: "0"}
  a: {}
links:
  - a: {namespace: r, name: eth0, addresses: [10.0.0.1/24]}
    b: {namespace: a, name: eth0, addresses: [10.0.0.2/24]}
`
	}
	got := planLinesFrom(t, router("0"), router("1"))
	want := []string{`~ r sysctl net.ipv4.ip_forward: "0" -> "1"`, `+ r sysctl net.ipv4.conf.eth0.forwarding = "0" (again: writing net.ipv4.ip_forward rewrites it)`}
	if !reflect.DeepEqual(sorted(got), sorted(want)) {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
