package linux

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// TestSysctlDroppedFromTheFileGoesBack: a sysctl the file no longer sets
// goes back to what it was before the lab set it (an outside audit: it
// stayed, and plan said "No changes"), in a lab namespace, on an
// interface and in the sandbox; the record of those values goes with
// them, and with the namespaces.
func TestSysctlDroppedFromTheFileGoesBack(t *testing.T) {
	k := kernelFor(t, "sback")
	ctx := context.Background()
	links := "links:\n  - a: {namespace: c1, name: eth0, addresses: [10.9.0.2/24]}\n    b: {namespace: host, name: v0, addresses: [10.9.0.1/24]}\n"
	with := "name: sback\nnamespaces:\n  host:\n    sysctls: {net.ipv4.ip_forward: \"1\"}\n  c1:\n    sysctls: {net.ipv4.ip_forward: \"1\", net.ipv4.conf.eth0.accept_local: \"1\"}\n" + links
	without := "name: sback\nnamespaces:\n  c1: {}\n" + links
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, without), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, sk := range []string{"host net.ipv4.ip_forward", "c1 net.ipv4.ip_forward", "c1 net.ipv4.conf.eth0.accept_local"} {
		short, key, _ := strings.Cut(sk, " ")
		before[sk] = sysctlIn(t, k, short, key)
		if before[sk] == "1" {
			t.Fatalf("%s is 1 before the lab sets it", sk)
		}
	}
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, with), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	for sk := range before {
		short, key, _ := strings.Cut(sk, " ")
		if v := sysctlIn(t, k, short, key); v != "1" {
			t.Fatalf("%s: %q after the lab set it", sk, v)
		}
	}
	if _, err := os.Stat(k.recordFile("c1")); err != nil {
		t.Fatalf("no record for c1: %v", err)
	}
	res, err := reconcile.Reconcile(ctx, k, desiredOf(t, without), reconcile.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	restores := 0
	for _, c := range res.Plan.Changes {
		if c.Restore {
			restores++
		}
	}
	if restores != 3 {
		t.Errorf("want 3 sysctls put back, plan:\n%v", res.Plan)
	}
	for sk, v := range before {
		short, key, _ := strings.Cut(sk, " ")
		if now := sysctlIn(t, k, short, key); now != v {
			t.Errorf("%s: %q, want %q back", sk, now, v)
		}
	}
	for _, short := range []string{"c1", reconcile.HostNS} {
		if _, err := os.Stat(k.recordFile(short)); !os.IsNotExist(err) {
			t.Errorf("the record of %s stays: %v", short, err)
		}
	}
	if p := planNow(t, k, desiredOf(t, without)); !p.Empty() {
		t.Fatalf("after going back:\n%v", p)
	}
	// Set again, then the namespace goes: its record with it.
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, with), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, "name: sback\n"), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(k.recordFile("c1")); !os.IsNotExist(err) {
		t.Errorf("the record of c1 stays after c1 went: %v", err)
	}
	if v := sysctlIn(t, k, reconcile.HostNS, "net.ipv4.ip_forward"); v != before["host net.ipv4.ip_forward"] {
		t.Errorf("host's ip_forward %q after the file dropped it", v)
	}
	if _, err := os.Stat(k.recordDir()); !os.IsNotExist(err) {
		t.Errorf("the lab's record directory stays: %v", err)
	}
}

// TestSysctlNotesAgainstTheKernel (an outside audit's finds, on the real
// kernel): a key of an interface renamed in place goes back under its new
// name; two labs of one sandbox setting one host key leave it to each
// other, and the last puts back the value from before either.
func TestSysctlNotesAgainstTheKernel(t *testing.T) {
	k := kernelFor(t, "snote")
	ctx := context.Background()
	src := "name: snote\nnamespaces:\n  c1: {sysctls: {net.ipv4.conf.eth0.rp_filter: \"2\"}}\nlinks:\n  - a: {namespace: c1, name: eth0}\n    b: {namespace: host, name: v0}\n"
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, strings.Replace(src, `{sysctls: {net.ipv4.conf.eth0.rp_filter: "2"}}`, "{}", 1)), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	before := sysctlIn(t, k, "c1", "net.ipv4.conf.eth0.rp_filter")
	if before == "2" {
		t.Fatal("rp_filter is 2 before the lab sets it")
	}
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, src), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	renamed := strings.Replace(strings.Replace(src, `{sysctls: {net.ipv4.conf.eth0.rp_filter: "2"}}`, "{}", 1), "name: eth0}", "name: eth9}", 1)
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, renamed), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := sysctlIn(t, k, "c1", "net.ipv4.conf.eth9.rp_filter"); v != before {
		t.Errorf("eth9 (eth0 renamed) rp_filter %q, want %q back", v, before)
	}

	// A second lab in the same sandbox.
	k2 := secondLab(t, k, "snote2")
	const ttl = "net.ipv4.ip_default_ttl"
	orig := sysctlIn(t, k, reconcile.HostNS, ttl)
	host := func(name, v string) *reconcile.State {
		s := "name: " + name + "\n"
		if v != "" {
			s += "namespaces:\n  host:\n    sysctls: {" + ttl + ": \"" + v + "\"}\n"
		}
		return desiredOf(t, s)
	}
	for _, step := range []struct {
		k    *Kernel
		name string
		v    string
		want string
	}{{k, "snote", "100", "100"}, {k2, "snote2", "200", "200"}, {k, "snote", "", "200"}, {k2, "snote2", "", orig}} {
		if _, err := reconcile.Reconcile(ctx, step.k, host(step.name, step.v), reconcile.ExecOptions{}); err != nil {
			t.Fatal(err)
		}
		if v := sysctlIn(t, k, reconcile.HostNS, ttl); v != step.want {
			t.Fatalf("%s sets %q: ttl %q, want %q", step.name, step.v, v, step.want)
		}
	}
}

// TestSysctlNotesOfWhatIsThere (a third outside audit, on the real
// kernel): a second lab that finds a host key set already notes it too;
// a key the kernel rewrites when another is written is noted as it was;
// a key kept through a rename, then dropped, goes back; a sandbox or a
// foreign interface made again by hand has no notes of the old one.
func TestSysctlNotesOfWhatIsThere(t *testing.T) {
	k := kernelFor(t, "snow")
	ctx := context.Background()
	apply := func(k *Kernel, y string) *reconcile.Result {
		t.Helper()
		res, err := reconcile.Reconcile(ctx, k, desiredOf(t, y), reconcile.ExecOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	const ai = "net.ipv4.conf.all.arp_ignore"
	orig := sysctlIn(t, k, reconcile.HostNS, ai)
	k2 := secondLab(t, k, "snow2")
	apply(k, "name: snow\nnamespaces:\n  host:\n    sysctls: {"+ai+": \"1\"}\n")
	if p := apply(k2, "name: snow2\nnamespaces:\n  host:\n    sysctls: {"+ai+": \"1\"}\n").Plan; !p.Empty() {
		t.Fatalf("the second lab: want nothing to write:\n%v", p)
	}
	apply(k, "name: snow\n")
	if v := sysctlIn(t, k, reconcile.HostNS, ai); v != "1" {
		t.Fatalf("the first lab let go of %s: %q, want 1 kept for the second", ai, v)
	}
	apply(k2, "name: snow2\n")
	if v := sysctlIn(t, k, reconcile.HostNS, ai); v != orig {
		t.Fatalf("the last lab let go of %s: %q, want %q back", ai, v, orig)
	}

	const df = "net.ipv4.conf.default.forwarding"
	before := sysctlIn(t, k, reconcile.HostNS, df)
	apply(k, "name: snow\nnamespaces:\n  host:\n    sysctls: {net.ipv4.ip_forward: \""+flip(before)+"\", "+df+": \""+before+"\"}\n")
	apply(k, "name: snow\n")
	if v := sysctlIn(t, k, reconcile.HostNS, df); v != before {
		t.Fatalf("%s: %q, want %q back (noted before ip_forward rewrote it)", df, v, before)
	}

	// A foreign interface of the sandbox, made again by hand.
	h := netlinkIn(t, k, reconcile.HostNS)
	mk := func() {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "fx0"}, PeerName: "fx1"}); err != nil {
			t.Fatal(err)
		}
	}
	del := func() {
		if l, err := h.LinkByName("fx0"); err == nil {
			h.LinkDel(l)
		}
	}
	mk()
	defer del()
	const rp = "net.ipv4.conf.fx0.arp_ignore"
	apply(k, "name: snow\nnamespaces:\n  host:\n    sysctls: {"+rp+": \"1\"}\n")
	del()
	mk()
	h2, err := k.handle(reconcile.HostNS)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeSysctl(h2.fd, rp, "2"); err != nil {
		t.Fatal(err)
	}
	k.release(h2)
	if p := apply(k, "name: snow\n").Plan; !p.Empty() {
		t.Fatalf("fx0 made again by hand: want its key left alone, plan:\n%v", p)
	}
	if v := sysctlIn(t, k, reconcile.HostNS, rp); v != "2" {
		t.Fatalf("%s: %q, want 2 (set by hand on the new fx0)", rp, v)
	}
}

func flip(v string) string {
	if v == "1" {
		return "0"
	}
	return "1"
}

// TestSysctlNotesOfASandboxMadeAgain: a sandbox deleted and made again by
// hand has none of the notes of the old one (a third outside audit: the
// lab wrote its old note over a value set by hand).
func TestSysctlNotesOfASandboxMadeAgain(t *testing.T) {
	k := kernelFor(t, "sagain")
	ctx := context.Background()
	const ttl = "net.ipv4.ip_default_ttl"
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, "name: sagain\nnamespaces:\n  host:\n    sysctls: {"+ttl+": \"100\"}\n"), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	k.Close()
	if err := DeleteNamed(k.opt.Netns); err != nil {
		t.Fatal(err)
	}
	k2 := New(k.opt)
	defer k2.Close()
	if _, err := k2.EnsureHost(); err != nil {
		t.Fatal(err)
	}
	h, err := k2.handle(reconcile.HostNS)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeSysctl(h.fd, ttl, "77"); err != nil {
		t.Fatal(err)
	}
	k2.release(h)
	res, err := reconcile.Reconcile(ctx, k2, desiredOf(t, "name: sagain\n"), reconcile.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Plan.Empty() {
		t.Fatalf("a sandbox made again by hand: want its ttl left alone, plan:\n%v", res.Plan)
	}
	if _, err := os.Stat(k2.recordFile(reconcile.HostNS)); !os.IsNotExist(err) {
		t.Errorf("the old sandbox's note stays: %v", err)
	}
}

// sysctlIn reads key in namespace short of k's lab.
func sysctlIn(t *testing.T, k *Kernel, short, key string) string {
	t.Helper()
	h, err := k.handle(short)
	if err != nil {
		t.Fatal(err)
	}
	defer k.release(h)
	v, err := readSysctls(h.fd, []string{key})
	if err != nil {
		t.Fatal(err)
	}
	return v[key]
}

// TestSysctlNotesShareAnAlias: two labs of one sandbox setting one kernel
// value under its two names (ip_forward, conf.all.forwarding) share it as
// one key: the first to let go leaves it, the last puts it back (a fourth
// outside audit).
func TestSysctlNotesShareAnAlias(t *testing.T) {
	k := kernelFor(t, "salias")
	ctx := context.Background()
	k2 := secondLab(t, k, "salias2")
	orig := sysctlIn(t, k, reconcile.HostNS, "net.ipv4.ip_forward")
	for _, step := range []struct {
		k    *Kernel
		file string
		want string
	}{
		{k, "name: salias\nnamespaces:\n  host:\n    sysctls: {net.ipv4.ip_forward: \"1\"}\n", "1"},
		{k2, "name: salias2\nnamespaces:\n  host:\n    sysctls: {net.ipv4.conf.all.forwarding: \"1\"}\n", "1"},
		{k, "name: salias\n", "1"},
		{k2, "name: salias2\n", orig},
	} {
		if _, err := reconcile.Reconcile(ctx, step.k, desiredOf(t, step.file), reconcile.ExecOptions{}); err != nil {
			t.Fatal(err)
		}
		if v := sysctlIn(t, k, reconcile.HostNS, "net.ipv4.ip_forward"); v != step.want {
			t.Fatalf("after %q: ip_forward %q, want %q", step.file, v, step.want)
		}
	}
}

// TestSysctlNotesOfWhatAWriteRewritesOnTheKernel: on the real kernel, a key the
// lab's own write of conf.all.forwarding rewrote (the default's, an
// interface's) goes back to its own value when the file, having set it
// later, drops it (a fourth outside audit: it stayed at 1).
func TestSysctlNotesOfWhatAWriteRewritesOnTheKernel(t *testing.T) {
	k := kernelFor(t, "srw")
	ctx := context.Background()
	const df, vf = "net.ipv4.conf.default.forwarding", "net.ipv4.conf.v0.forwarding"
	base := "name: srw\nnamespaces:\n  c1: {}\nlinks:\n  - a: {namespace: c1, name: eth0}\n    b: {namespace: host, name: v0}\n"
	with := func(kv string) string {
		if kv == "" {
			return base
		}
		return strings.Replace(base, "namespaces:\n", "namespaces:\n  host:\n    sysctls: {"+kv+"}\n", 1)
	}
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, base), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	origD, origV := sysctlIn(t, k, reconcile.HostNS, df), sysctlIn(t, k, reconcile.HostNS, vf)
	if origD == "1" || origV == "1" {
		t.Fatalf("forwarding on before the lab: %s %s", origD, origV)
	}
	for _, f := range []string{with(`net.ipv4.conf.all.forwarding: "1"`), with(df + `: "1", ` + vf + `: "1"`), base} {
		if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, f), reconcile.ExecOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if d, v := sysctlIn(t, k, reconcile.HostNS, df), sysctlIn(t, k, reconcile.HostNS, vf); d != origD || v != origV {
		t.Fatalf("after the file dropped them: %s %q, %s %q; want %q, %q", df, d, vf, v, origD, origV)
	}
}

// TestSysctlForwardingOnOffDropped (an outside audit, on the real
// kernel): ip_forward set to 1, then to 0, then dropped from the file:
// every forwarding key is 0 again, as a fresh apply leaves them. The
// second write's notes took the forwarding the first had written (1) as
// what it was before the lab, and the third put 1 back: the sandbox
// routed with ip_forward 0. With and without an interface of someone
// else's in the sandbox; IPv6's all.forwarding too.
func TestSysctlForwardingOnOffDropped(t *testing.T) {
	for _, c := range []struct{ name, key, df, vf string }{
		{"ipv4", "net.ipv4.ip_forward", "net.ipv4.conf.default.forwarding", "net.ipv4.conf.va.forwarding"},
		{"ipv6", "net.ipv6.conf.all.forwarding", "net.ipv6.conf.default.forwarding", "net.ipv6.conf.va.forwarding"},
	} {
		for _, foreign := range []bool{false, true} {
			t.Run(fmt.Sprint(c.name, " foreign interface ", foreign), func(t *testing.T) {
				k := kernelFor(t, "sfo")
				ctx := context.Background()
				base := "name: sfo\nnamespaces:\n  a: {ipv6: true}\nlinks:\n  - a: {namespace: a, name: eth0, addresses: [10.60.0.2/24]}\n    b: {namespace: host, name: va, addresses: [10.60.0.1/24]}\n"
				with := func(v string) string {
					return strings.Replace(base, "namespaces:\n", "namespaces:\n  host:\n    sysctls: {"+c.key+": \""+v+"\"}\n", 1)
				}
				keys := []string{c.key, c.df, c.vf}
				if foreign {
					bridgeOfTheSandbox(t, k, "keep0")
					keys = append(keys, strings.Replace(c.vf, ".va.", ".keep0.", 1))
				}
				for _, f := range []string{with("1"), with("0"), base} {
					if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, f), reconcile.ExecOptions{}); err != nil {
						t.Fatal(err)
					}
				}
				for _, key := range keys {
					if v := sysctlIn(t, k, reconcile.HostNS, key); v != "0" {
						t.Errorf("%s = %s after 1, 0, dropped: want 0", key, v)
					}
				}
			})
		}
	}
}

// TestSysctlOtherLabsInterfaceKeysStay (an outside audit, on the real
// kernel): lab X sets ip_forward, lab Y of the same sandbox sets its
// bridge's forwarding; X letting ip_forward go (which rewrites every
// interface's forwarding) writes Y's again, as it was: Y kept routing.
// And X setting ip_forward to 0 in an edit does the same.
func TestSysctlOtherLabsInterfaceKeysStay(t *testing.T) {
	const fw, yf = "net.ipv4.ip_forward", "net.ipv4.conf.bry.forwarding"
	for _, how := range []string{"X goes", "X sets 0"} {
		t.Run(how, func(t *testing.T) {
			k := kernelFor(t, "sox")
			ctx := context.Background()
			x := "name: sox\nnamespaces:\n  host:\n    sysctls: {" + fw + ": \"1\"}\n"
			if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, x), reconcile.ExecOptions{}); err != nil {
				t.Fatal(err)
			}
			k2 := secondLab(t, k, "soy")
			y := desiredOf(t, "name: soy\nnamespaces:\n  host:\n    sysctls: {"+yf+": \"1\"}\nbridges:\n  - {name: bry}\n")
			if _, err := reconcile.Reconcile(ctx, k2, y, reconcile.ExecOptions{}); err != nil {
				t.Fatal(err)
			}
			next := reconcile.Nothing()
			if how == "X sets 0" {
				next = desiredOf(t, strings.Replace(x, `"1"`, `"0"`, 1))
			}
			res, err := reconcile.Reconcile(ctx, k, next, reconcile.ExecOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if v := sysctlIn(t, k2, reconcile.HostNS, fw); v != "0" {
				t.Errorf("%s = %s, want 0", fw, v)
			}
			if v := sysctlIn(t, k2, reconcile.HostNS, yf); v != "1" {
				t.Fatalf("%s = %s after %s, want 1: lab soy sets it\n%s", yf, v, how, res.Plan)
			}
			if p := planNow(t, k2, y); !p.Empty() {
				t.Fatalf("lab soy drifted:\n%s", p)
			}
		})
	}
}

// TestSysctlRecordLeftHalfWrittenGoes: a record a killed run left
// written but not renamed into place goes with the lab's last note (an
// outside audit: destroy left host.json.tmp and its directories).
func TestSysctlRecordLeftHalfWrittenGoes(t *testing.T) {
	k := kernelFor(t, "srt")
	ctx := context.Background()
	on := "name: srt\nnamespaces:\n  host:\n    sysctls: {net.ipv4.ip_forward: \"1\"}\n"
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, on), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	// What a destroy killed as it renamed its record into place leaves:
	// ip_forward put back, the record still noting it, the next one
	// beside it.
	tmp := k.recordFile(reconcile.HostNS) + ".tmp"
	if err := os.WriteFile(tmp, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := k.OpenNetns(reconcile.HostNS)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := writeSysctl(fd, "net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Reconcile(ctx, k, reconcile.Nothing(), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); err == nil {
		t.Fatalf("destroy left %s", tmp)
	}
}

// TestSysctlRewrittenKeysPutBackOnTheKernel (two outside audits, on the
// real kernel): putting ip_forward back rewrites every interface's
// forwarding and the default's, so those noted with another value are put
// back after it in the same run; and while another lab of the sandbox
// sets ip_forward, a lab that lets it go puts back none of them (it
// turned off forwarding on the other lab's interfaces).
func TestSysctlRewrittenKeysPutBackOnTheKernel(t *testing.T) {
	k := kernelFor(t, "srb")
	ctx := context.Background()
	const fw, df, kf, vf = "net.ipv4.ip_forward", "net.ipv4.conf.default.forwarding", "net.ipv4.conf.keep0.forwarding", "net.ipv4.conf.v1.forwarding"
	hfd := bridgeOfTheSandbox(t, k, "keep0", kf, df)
	on := "name: srb\nnamespaces:\n  host:\n    sysctls: {" + fw + ": \"1\"}\n  x: {}\n"
	for _, f := range []string{on, "name: srb\nnamespaces:\n  x: {}\n"} {
		if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, f), reconcile.ExecOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for key, want := range map[string]string{fw: "0", kf: "1", df: "1"} {
		if v := sysctlIn(t, k, reconcile.HostNS, key); v != want {
			t.Errorf("%s = %s after the lab let ip_forward go, want %s (as before it)", key, v, want)
		}
	}
	if err := writeSysctl(hfd, df, "0"); err != nil {
		t.Fatal(err)
	}

	// Two labs set ip_forward; the first goes.
	k2 := secondLab(t, k, "srb2")
	if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, on), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	second := desiredOf(t, "name: srb2\nnamespaces:\n  host:\n    sysctls: {"+fw+": \"1\"}\n  c1: {}\nlinks:\n  - a: {namespace: c1, name: eth0}\n    b: {namespace: host, name: v1}\n")
	if _, err := reconcile.Reconcile(ctx, k2, second, reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Reconcile(ctx, k, reconcile.Nothing(), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{fw, df, vf} {
		if v := sysctlIn(t, k2, reconcile.HostNS, key); v != "1" {
			t.Errorf("%s = %s after the first lab went, want 1: the second sets %s", key, v, fw)
		}
	}
}

// TestSysctlRewrittenNoteOutlivesItsLab (an outside audit, on the real
// kernel): an interface of the sandbox whose forwarding was on before any
// lab; two labs set forwarding (one by ip_forward, one by its alias); the
// first to go puts nothing back (the other sets it), and its note of the
// interface passes to the other, which puts it back when it goes. Both
// orders.
func TestSysctlRewrittenNoteOutlivesItsLab(t *testing.T) {
	for _, firstGoes := range []int{0, 1} {
		t.Run(fmt.Sprint("lab ", firstGoes, " goes first"), func(t *testing.T) {
			k := kernelFor(t, "srn")
			ctx := context.Background()
			const kf = "net.ipv4.conf.keep0.forwarding"
			if _, err := k.EnsureHost(); err != nil {
				t.Fatal(err)
			}
			bridgeOfTheSandbox(t, k, "keep0", kf)
			k2 := secondLab(t, k, "srn2")
			labs := []*Kernel{k, k2}
			files := []string{"name: srn\nnamespaces:\n  host:\n    sysctls: {net.ipv4.ip_forward: \"1\"}\n  x: {}\n",
				"name: srn2\nnamespaces:\n  host:\n    sysctls: {net.ipv4.conf.all.forwarding: \"1\"}\n  y: {}\n"}
			for i, lk := range labs {
				if _, err := reconcile.Reconcile(ctx, lk, desiredOf(t, files[i]), reconcile.ExecOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			for _, i := range []int{firstGoes, 1 - firstGoes} {
				if _, err := reconcile.Reconcile(ctx, labs[i], reconcile.Nothing(), reconcile.ExecOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if v := sysctlIn(t, k, reconcile.HostNS, kf); v != "1" {
				t.Fatalf("%s = %s after both labs went, want 1 (as before them)", kf, v)
			}
		})
	}
}

// bridgeOfTheSandbox makes a bridge of someone else's in k's sandbox with
// the sysctls keys set to 1 (as before any lab), gone when the test ends;
// it returns the sandbox's handle.
func bridgeOfTheSandbox(t *testing.T, k *Kernel, name string, keys ...string) netns.NsHandle {
	t.Helper()
	h := netlinkIn(t, k, reconcile.HostNS)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.LinkDel(br) })
	fd, err := k.OpenNetns(reconcile.HostNS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	for _, key := range keys {
		if err := writeSysctl(fd, key, "1"); err != nil {
			t.Fatal(err)
		}
	}
	return fd
}

// secondLab is another lab, name, in k's sandbox under a prefix of its
// own, destroyed when the test ends.
func secondLab(t *testing.T, k *Kernel, name string) *Kernel {
	t.Helper()
	k2 := New(Options{Name: name, Prefix: k.opt.Prefix + "b-", Netns: k.opt.Netns})
	t.Cleanup(func() {
		if _, err := reconcile.Reconcile(context.Background(), k2, reconcile.Nothing(), reconcile.ExecOptions{}); err != nil {
			t.Errorf("destroy the second lab: %v", err)
		}
		k2.Close()
	})
	return k2
}
