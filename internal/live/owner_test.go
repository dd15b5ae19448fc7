package live

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	netplanlab "github.com/netplan-lab/netplan-lab/lab"
	"github.com/netplan-lab/netplan-lab/reconcile"
)

// TestConcurrentApplies starts two applies of one file at once, five
// times: the lock makes the second wait, and the lab ends complete every
// time. Then a destroy and an apply at once: whichever runs second wins,
// and an apply that says it succeeded leaves the lab complete.
func TestConcurrentApplies(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	file := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(file, []byte(routedLab(20)), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, file, nil)
	both := func(a, b string) [2]int {
		var codes [2]int
		var outs [2]string
		var wg sync.WaitGroup
		for i, cmd := range []string{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, out, errOut := e.cli(bin, cmd, file)
				codes[i], outs[i] = code, out+errOut
			}()
		}
		wg.Wait()
		for i, c := range codes {
			if c != 0 {
				t.Fatalf("%s exited %d:\n%s", []string{a, b}[i], c, outs[i])
			}
		}
		return codes
	}
	for round := 0; round < 5; round++ {
		both("apply", "apply")
		if code, out, errOut := e.cli(bin, "plan", "--detailed-exitcode", file); code != 0 {
			t.Fatalf("round %d: the lab is not complete after two applies at once:\n%s%s", round, out, errOut)
		}
		if round%2 == 1 {
			e.destroysAll(bin, file, fmt.Sprintf("round %d", round))
		}
	}
	both("destroy", "apply")
	// Both exited 0: either the apply ran last (the lab is complete) or the
	// destroy did (nothing is left).
	code, _, _ := e.cli(bin, "plan", "--detailed-exitcode", file)
	entries, _ := os.ReadDir(linux.NetnsDir)
	left := 0
	for _, d := range entries {
		if strings.HasPrefix(d.Name(), e.prefix) {
			left++
		}
	}
	if code != 0 && left != 0 {
		t.Fatalf("after a destroy and an apply at once, the lab is half there: plan exit %d, %d namespaces", code, left)
	}
	e.destroysAll(bin, file, "the end")
}

// TestLockWaitsThenTimesOut: a run that finds the sandbox locked says whom
// it waits for, and gives up after --lock-timeout having changed nothing;
// it goes ahead as soon as the lock is free.
func TestLockWaitsThenTimesOut(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	e := newEnv(t, "../../examples/bridge.yaml", nil)
	unlock, err := linux.Lock(context.Background(), e.sandbox, time.Second, "the test holding it", nil)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := e.cli(bin, "--lock-timeout", "300ms", "apply", "../../examples/bridge.yaml")
	wantWait := fmt.Sprintf("waiting for pid %d: the test holding it to finish with sandbox %s (up to 300ms)\n", os.Getpid(), e.sandbox)
	wantErr := fmt.Sprintf("error: timed out waiting for the lock on %s after 300ms: held by pid %d: the test holding it (--lock-timeout)\n", linux.LockPath(e.sandbox), os.Getpid())
	if code != 1 || errOut != wantWait+wantErr || out != "" {
		t.Fatalf("locked apply: exit %d\nstdout %q\nstderr %q\nwant stderr %q", code, out, errOut, wantWait+wantErr)
	}
	if _, err := os.Stat(filepath.Join(linux.NetnsDir, e.sandbox)); err == nil {
		t.Fatal("an apply that never had the lock created the sandbox")
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		unlock()
	}()
	wantWait = strings.Replace(wantWait, "(up to 300ms)", "(up to 30s)", 1)
	if code, out, errOut := e.cli(bin, "apply", "../../examples/bridge.yaml"); code != 0 || errOut != wantWait {
		t.Fatalf("apply after the lock is freed: exit %d\n%s\nstderr %q", code, out, errOut)
	}
	e.destroysAll(bin, "../../examples/bridge.yaml", "the lock test")
}

// nsOnlyLab has nothing in the host: two labs of it share a sandbox.
const nsOnlyLab = `name: pair
namespaces:
  left: {sysctls: {net.ipv4.ip_forward: "1"}}
  right: {routes: [{to: default, via: 10.1.0.1}]}
links:
  - a: {namespace: left, name: eth0, addresses: [10.1.0.1/24, "fd01::1/64"]}
    b: {namespace: right, name: eth0, addresses: [10.1.0.2/24]}
nat:
  - namespace: left
    masquerade: {source: 10.1.0.0/24, out: eth0}
`

// ifindexes maps "ns:link" to ifindex and MAC for every link of the
// namespaces named (kernel names).
func ifindexes(t *testing.T, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		h := handleIn(t, filepath.Join(linux.NetnsDir, n))
		links, err := h.LinkList()
		h.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			a := l.Attrs()
			out[n+":"+a.Name] = fmt.Sprintf("%d %s", a.Index, a.HardwareAddr)
		}
	}
	return out
}

// TestTwoPrefixesOneSandbox: the same file under two prefixes (nested: P
// and P + "y-") in one sandbox gives two exact labs; destroying one leaves
// the other exact and untouched, and the sandbox stays until the last.
func TestTwoPrefixesOneSandbox(t *testing.T) {
	e1 := newEnv(t, "pair.yaml", []byte(nsOnlyLab))
	e2 := newEnv(t, "pair.yaml", []byte(nsOnlyLab))
	e2.sandbox = e1.sandbox
	e2.prefix = e1.prefix + "y-"
	e2.load("pair.yaml", []byte(nsOnlyLab))
	e1.mustApply()
	e2.mustApply()
	e1.assertNoOp()
	e2.assertNoOp()
	second := ifindexes(t, e2.prefix+"left", e2.prefix+"right")
	e1.destroy()
	e2.assertNoOp()
	if after := ifindexes(t, e2.prefix+"left", e2.prefix+"right"); fmt.Sprint(after) != fmt.Sprint(second) {
		t.Fatalf("destroying the first lab touched the second:\nbefore %v\nafter  %v", second, after)
	}
	if _, err := os.Stat(filepath.Join(linux.NetnsDir, e1.sandbox)); err != nil {
		t.Fatalf("destroying the first lab removed the sandbox the second lives in: %v", err)
	}
	for _, n := range []string{"left", "right"} {
		if _, err := os.Stat(filepath.Join(linux.NetnsDir, e1.prefix+n)); err == nil {
			t.Fatalf("the first lab's %s is still there", n)
		}
	}
	e2.destroy()
	e2.assertGone()
}

// TestHostNameHeldByAnotherLab: two labs of one file under two prefixes
// want the same host bridge: the second is a conflict that names the
// first lab, and changes nothing.
func TestHostNameHeldByAnotherLab(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	e1 := newEnv(t, "../../examples/bridge.yaml", nil)
	e2 := newEnv(t, "../../examples/bridge.yaml", nil)
	e2.sandbox = e1.sandbox
	e1.mustApply()
	before := ifindexes(t, e1.sandbox)
	code, out, _ := e2.cli(bin, "apply", "../../examples/bridge.yaml")
	want := fmt.Sprintf(`bridge "hwchiu0" in namespace "host" already exists and is not owned by this topology (it belongs to lab "bridge" (sandbox %s, prefix %s))`, e1.sandbox, e1.prefix)
	if code != 1 || !strings.Contains(out, want) {
		t.Fatalf("second lab: exit %d, want a conflict %q in:\n%s", code, want, out)
	}
	if after := ifindexes(t, e1.sandbox); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("the refused apply changed the sandbox:\n%v\n%v", before, after)
	}
	for _, n := range []string{"c1", "c2"} {
		if _, err := os.Stat(filepath.Join(linux.NetnsDir, e2.prefix+n)); err == nil {
			t.Fatalf("the refused apply created %s", e2.prefix+n)
		}
	}
	e1.assertNoOp()
	e1.destroy()
}

func addForeignAddr(t *testing.T, e *env, ns, dev, cidr string) {
	t.Helper()
	e.in(ns, func() {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := netlink.ParseAddr(cidr)
		if err := netlink.AddrAdd(l, a); err != nil {
			t.Fatalf("add %s to %s:%s: %v", cidr, ns, dev, err)
		}
	})
}

func hasAddr(t *testing.T, e *env, ns, dev, cidr string) bool {
	t.Helper()
	found := false
	e.in(ns, func() {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_ALL)
		for _, a := range addrs {
			if a.IPNet.String() == cidr {
				found = true
			}
		}
	})
	return found
}

// TestForeignAddressesSurviveApply: addresses added by hand to a lab
// interface and a lab bridge are not the lab's: a plan does not mention
// them, and an apply that changes the lab's own addresses of those
// interfaces leaves them.
func TestForeignAddressesSurviveApply(t *testing.T) {
	e := newEnv(t, "../../examples/bridge.yaml", nil)
	e.mustApply()
	addForeignAddr(t, e, "host", "hwchiu0", "10.99.0.1/24")
	addForeignAddr(t, e, "c1", "eth0", "10.98.0.7/24")
	e.assertNoOp()
	src, _ := os.ReadFile("../../examples/bridge.yaml")
	edited := strings.Replace(strings.Replace(string(src), "10.55.66.2/24", "10.55.66.5/24", 1), "[10.55.66.1/24]", "[10.55.66.1/24, 10.55.67.1/24]", 1)
	e.load("bridge.yaml", []byte(edited))
	e.mustApply()
	e.assertNoOp()
	if !hasAddr(t, e, "host", "hwchiu0", "10.99.0.1/24") || !hasAddr(t, e, "c1", "eth0", "10.98.0.7/24") {
		t.Fatal("apply removed an address the lab did not add")
	}
	if !hasAddr(t, e, "c1", "eth0", "10.55.66.5/24") || hasAddr(t, e, "c1", "eth0", "10.55.66.2/24") || !hasAddr(t, e, "host", "hwchiu0", "10.55.67.1/24") {
		t.Fatal("the lab's own address edit was not applied")
	}
	// Destroy: the bridge, which someone put an address of their own on,
	// stays for them, unmarked, without the lab's addresses; the veth in
	// c1 goes with its namespace, and the kernel takes its address along:
	// the plan says both.
	obs, err := e.k.Observe(context.Background(), reconcile.QueryFor(reconcile.Nothing()))
	if err != nil {
		t.Fatal(err)
	}
	p := reconcile.Diff(reconcile.Nothing(), obs)
	warnings := strings.Join(p.Warnings, "\n")
	if want := `veth "eth0" in namespace "c1" carries addresses the lab did not add (10.98.0.7/24): they go with it`; !strings.Contains(warnings, want) {
		t.Errorf("destroy's plan does not warn %q; warnings:\n%s", want, warnings)
	}
	if got := strings.Join(planLines(p), "\n"); !strings.Contains(got, "~ host bridge hwchiu0 (owner: this lab -> (none)) (it carries addresses the lab did not add (10.99.0.1/24): it stays for them, unmarked; the lab's own addresses go)") {
		t.Errorf("destroy's plan:\n%s", got)
	}
	e.destroy()
	if !hasAddr(t, e, "host", "hwchiu0", "10.99.0.1/24") || hasAddr(t, e, "host", "hwchiu0", "10.55.66.1/24") || hasAddr(t, e, "host", "hwchiu0", "10.55.67.1/24") {
		t.Fatal("after destroy, the bridge should hold the foreign address and none of the lab's")
	}
	e.in("host", func() {
		l, _ := netlink.LinkByName("hwchiu0")
		if a := l.Attrs(); a.Alias != "" || a.Group != 0 {
			t.Fatalf("the bridge left behind still carries a mark: alias %q group %d", a.Alias, a.Group)
		}
	})
	e.assertGone(e.sandbox) // the sandbox stays: something that is not the lab's lives in it
	if p := e.plan(); len(p.Conflicts) != 1 || !strings.Contains(p.Conflicts[0], `bridge "hwchiu0" in namespace "host" already exists and is not owned`) {
		t.Fatalf("a new apply should see the bridge as someone else's: %v", p.Conflicts)
	}
}

// TestForeignAddressesSurviveWatch: the same, under apply --watch, which
// repairs the lab's drift around them.
func TestForeignAddressesSurviveWatch(t *testing.T) {
	src, _ := os.ReadFile("../../examples/bridge.yaml")
	w := startWatch(t, string(src))
	addForeignAddr(t, w.env, "host", "hwchiu0", "10.99.0.1/24")
	addForeignAddr(t, w.env, "c1", "eth0", "10.98.0.7/24")
	// Drift of the lab's own: its address on c2 goes; watch puts it back.
	w.in("c2", func() {
		l, _ := netlink.LinkByName("eth0")
		a, _ := netlink.ParseAddr("10.55.66.3/24")
		if err := netlink.AddrDel(l, a); err != nil {
			t.Fatal(err)
		}
	})
	w.waitEvent("drift_repaired", 1)
	if !hasAddr(t, w.env, "c2", "eth0", "10.55.66.3/24") {
		t.Fatal("watch did not repair the lab's address")
	}
	if !hasAddr(t, w.env, "host", "hwchiu0", "10.99.0.1/24") || !hasAddr(t, w.env, "c1", "eth0", "10.98.0.7/24") {
		t.Fatalf("watch removed an address the lab did not add: %+v", w.Last("drift_repaired"))
	}
}

// TestForeignTableWithTheLabsName: an nftables table that has the name the
// lab's NAT table would have, but not its owner marker, is someone else's:
// plan and apply report a conflict and change nothing, destroy leaves it.
func TestForeignTableWithTheLabsName(t *testing.T) {
	e := newEnv(t, "../../examples/nat.yaml", nil)
	if _, err := e.k.EnsureHost(); err != nil {
		t.Fatal(err)
	}
	comment := "a firewall's own rule"
	e.in("host", func() {
		c, err := nftables.New()
		if err != nil {
			t.Fatal(err)
		}
		tb := c.AddTable(&nftables.Table{Name: e.k.TableName(), Family: nftables.TableFamilyINet})
		ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: tb, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
		c.AddRule(&nftables.Rule{Table: tb, Chain: ch, UserData: userdata.AppendString(nil, userdata.TypeComment, comment)})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	p := e.plan()
	want := fmt.Sprintf(`../../examples/nat.yaml:43:5: nat[0]: namespace "host": table inet %s exists and is not this lab's (neither its owner chain nor any rule in it has the lab's mark)`, e.k.TableName())
	if len(p.Conflicts) != 1 || p.Conflicts[0] != want {
		t.Fatalf("conflicts %q, want %q", p.Conflicts, want)
	}
	ck := &reconcile.CountingKernel{Kernel: e.k}
	if _, err := e.apply(ck); !errors.Is(err, reconcile.ErrConflict) || ck.Writes() != 0 {
		t.Fatalf("apply: %v, %d writes", err, ck.Writes())
	}
	e.load("../../examples/nat.yaml", nil)
	if _, err := reconcile.Reconcile(context.Background(), e.k, reconcile.Nothing(), reconcile.ExecOptions{}); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	e.in("host", func() {
		c, _ := nftables.New()
		chains, err := c.ListChains()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, ch := range chains {
			if ch.Table.Name == e.k.TableName() && ch.Name == "postrouting" {
				rules, _ := c.GetRules(ch.Table, ch)
				for _, r := range rules {
					if s, _ := userdata.GetString(r.UserData, userdata.TypeComment); s == comment {
						found = true
					}
				}
			}
		}
		if !found {
			t.Fatal("the foreign table lost its chain or rule")
		}
	})
}

// TestNotRoot: without CAP_NET_ADMIN/CAP_SYS_ADMIN every command that
// touches the kernel says so in one line and exits 1; validate works.
func TestNotRoot(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	dir, err := os.MkdirTemp("", "npl-nonroot")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	b, _ := os.ReadFile(bin)
	nbin := filepath.Join(dir, "netplan-lab")
	src, _ := os.ReadFile("../../examples/bridge.yaml")
	file := filepath.Join(dir, "bridge.yaml")
	if os.WriteFile(nbin, b, 0o755) != nil || os.WriteFile(file, src, 0o644) != nil {
		t.Fatal("copy")
	}
	sb := fmt.Sprintf("npl-test-nr%d", os.Getpid())
	const want = "error: this command reads and changes network namespaces, which needs root (it lacks CAP_NET_ADMIN and CAP_SYS_ADMIN); run it with sudo\n"
	for _, cmd := range []string{"plan", "apply", "destroy", "show"} {
		code, out, errOut := runAs(t, 65534, nbin, "--netns", sb, cmd, file)
		if code != 1 || out != "" || errOut != want {
			t.Errorf("%s as nobody: exit %d, stdout %q, stderr %q", cmd, code, out, errOut)
		}
	}
	if code, out, errOut := runAs(t, 65534, nbin, "validate", file); code != 0 || !strings.HasSuffix(out, ": valid\n") {
		t.Errorf("validate as nobody: exit %d %q %q", code, out, errOut)
	}
	// Root of a user namespace has both capabilities, for its own objects
	// only (an outside audit: labtest failed with a bare "permission
	// denied" there instead of skipping).
	if err := exec.Command("unshare", "-Ur", "true").Run(); err != nil {
		t.Logf("no user namespace here (unshare -Ur true: %v): that case not tried", err)
	} else {
		c := exec.Command("unshare", "-Ur", nbin, "--netns", sb, "plan", file)
		var stderr strings.Builder
		c.Stderr = &stderr
		err := c.Run()
		if want := `error: this command reads and changes network namespaces, which needs the machine's root: it runs in a user namespace (uid map "0 0 1"), whose root cannot`; err == nil || !strings.HasPrefix(stderr.String(), want) {
			t.Errorf("plan as root of a user namespace: %v, stderr %q\nwant it to start %q", err, stderr.String(), want)
		}
	}
	if _, err := os.Stat(filepath.Join(linux.NetnsDir, sb)); err == nil {
		t.Fatal("a run without privileges created the sandbox")
	}
}

func runAs(t *testing.T, uid uint32, bin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = nonRoot(uid)
	return runCmd(t, cmd)
}

// hintsHere drops from destroy's output the hints that name labs in
// sandboxes other than sandbox: someone trying an example elsewhere on
// the machine is not the test's business.
func hintsHere(out, sandbox string) string {
	var keep []string
	for _, line := range strings.SplitAfter(out, "\n") {
		if strings.HasPrefix(line, "Hint: lab ") && !strings.Contains(line, "(sandbox "+sandbox+",") {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "")
}

// TestDestroyCreatesNothing: destroy of a lab that is not there creates
// nothing and says so; with the wrong prefix it names the lab that is
// there; a pin file of someone else's in the way is a clear conflict.
func TestDestroyCreatesNothing(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	f := "../../examples/bridge.yaml"
	e := newEnv(t, f, nil)
	code, out, errOut := e.cli(bin, "destroy", f)
	out = hintsHere(out, e.sandbox)
	want := fmt.Sprintf("Nothing of lab \"bridge\" (sandbox %s, prefix %s) was found; nothing was changed.\n", e.sandbox, e.prefix)
	if code != 0 || out != want {
		t.Fatalf("destroy of nothing: exit %d\n%q\nwant %q\n%s", code, out, want, errOut)
	}
	if _, err := os.Stat(filepath.Join(linux.NetnsDir, e.sandbox)); err == nil {
		t.Fatal("destroy created the sandbox")
	}
	// A lab with sysctls in the sandbox (ip_forward): nothing there, so
	// no word of the sandbox's sysctls either (it said they kept their
	// values "because something else is in it").
	code, out, errOut = e.cli(bin, "destroy", "../../examples/nat.yaml")
	out = hintsHere(out, e.sandbox)
	want = fmt.Sprintf("Nothing of lab \"nat\" (sandbox %s, prefix %s) was found; nothing was changed.\n", e.sandbox, e.prefix)
	if code != 0 || out != want {
		t.Fatalf("destroy of nothing (nat.yaml): exit %d\n%q\nwant %q\n%s", code, out, want, errOut)
	}
	e.mustApply()
	other := *e
	other.prefix = e.prefix + "z-"
	code, out, _ = other.cli(bin, "destroy", f)
	out = hintsHere(out, e.sandbox)
	want = fmt.Sprintf("Nothing of lab \"bridge\" (sandbox %s, prefix %s) was found; nothing was changed.\n"+
		"Hint: lab \"bridge\" (sandbox %s, prefix %s) is there (2 namespaces); to destroy it: netplan-lab --netns %s --prefix %s destroy FILE\n",
		e.sandbox, other.prefix, e.sandbox, e.prefix, e.sandbox, e.prefix)
	if code != 0 || out != want {
		t.Fatalf("destroy with the wrong prefix: exit %d\n%q\nwant %q", code, out, want)
	}
	e.assertNoOp()
	e.destroy()

	// An empty pin file, as a killed `ip netns add` leaves, where the lab
	// wants a namespace.
	pin := filepath.Join(linux.NetnsDir, e.prefix+"c1")
	if err := os.WriteFile(pin, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(pin)
	code, out, _ = e.cli(bin, "plan", f)
	want = fmt.Sprintf("namespace \"c1\" cannot be used: %s is a pin file with no namespace mounted on it, left by nobody we know (a killed `ip netns add`?); remove it with `rm %s`", pin, pin)
	if code != 1 || !strings.Contains(out, want) {
		t.Fatalf("plan with a foreign half pin: exit %d, want %q in\n%s", code, want, out)
	}
}

// handleIn is a netlink handle in the namespace pinned at path.
func handleIn(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	fd, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestFailedApplyKeepsTheSandbox: an apply that fails (here: a conflict)
// over a lab that is there leaves the sandbox, and says nothing about "no
// changes".
func TestFailedApplyKeepsTheSandbox(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "pair.yaml")
	os.WriteFile(file, []byte(nsOnlyLab), 0o644)
	e := newEnv(t, file, nil)
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %s%s", out, errOut)
	}
	// Someone's interface where the edited file wants one.
	e.in("left", func() {
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "q0"}}); err != nil {
			t.Fatal(err)
		}
	})
	edited := filepath.Join(dir, "edited.yaml")
	os.WriteFile(edited, []byte(nsOnlyLab+"bridges:\n  - {name: q0, namespace: left}\n"), 0o644)
	code, out, _ := e.cli(bin, "apply", edited)
	if code != 1 || !strings.Contains(out, `bridges[0]: bridge "q0" in namespace "left" already exists and is not owned by this topology`) || strings.Contains(out, "No changes") {
		t.Fatalf("conflicting apply: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(linux.NetnsDir, e.sandbox)); err != nil {
		t.Fatalf("the failed apply removed the sandbox the lab lives in: %v", err)
	}
	if code, out, errOut := e.cli(bin, "plan", "--detailed-exitcode", file); code != 0 {
		t.Fatalf("the lab is not as it was:\n%s%s", out, errOut)
	}
	e.destroysAll(bin, file, "the end")
}

// TestForeignAddressAndRuleWarned: an address added by hand in the
// subnet of a lab interface's addresses can take the primary's place, and
// a rule added by hand to the lab's NAT chain is matched where it sits;
// the lab removes neither, and says so in the plan.
func TestForeignAddressAndRuleWarned(t *testing.T) {
	base := engineLab(t)
	swapped := edit(t, base, "addresses: [10.1.0.2/24, 10.1.0.12/24,", "addresses: [10.1.0.12/24, 10.1.0.2/24,")
	e := newEnv(t, "engine.yaml", []byte(swapped))
	e.mustApply()
	e.in("a1", func() {
		l, _ := netlink.LinkByName("eth0")
		a, _ := netlink.ParseAddr("10.1.0.99/24")
		if err := netlink.AddrAdd(l, a); err != nil {
			t.Fatal(err)
		}
	})
	// The file's first address of the subnet changes: making it the primary
	// would take the foreign secondary away (or make it the primary).
	e.load("engine.yaml", []byte(base))
	e.in("r", func() {
		c, _ := nftables.New()
		tb := &nftables.Table{Name: e.k.TableName(), Family: nftables.TableFamilyINet}
		c.InsertRule(&nftables.Rule{Table: tb, Chain: &nftables.Chain{Name: "postrouting", Table: tb},
			Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	p := e.plan()
	if !p.Empty() || len(p.Conflicts) > 0 {
		t.Fatalf("the lab should have nothing to do:\n%v", p)
	}
	warnings := strings.Join(p.Warnings, "\n")
	for _, want := range []string{
		`10.1.0.2/24, first in the file, cannot become the primary address of its subnet on eth0 in namespace "a1" without taking away 10.1.0.99/24, which the lab did not add: 10.1.0.12/24 stays the primary`,
		`namespace "r": the lab's NAT holds what the lab did not add (table inet ` + e.k.TableName() + `, chain postrouting, handle`,
	} {
		if !strings.Contains(warnings, want) {
			t.Errorf("plan does not warn %q; warnings:\n%s", want, warnings)
		}
	}
	// The file drops its NAT: the lab's table goes, and the rule with it,
	// which the plan says (an outside audit: it said the rule stayed).
	noNAT := base[:strings.Index(base, "nat:\n")]
	e.load("engine.yaml", []byte(noNAT))
	p = e.plan()
	if want := `namespace "r": the lab's NAT goes, its table with it, and so does what someone else added to the table (table inet ` + e.k.TableName() + `, chain postrouting, handle`; !strings.Contains(strings.Join(p.Warnings, "\n"), want) {
		t.Errorf("plan does not warn %q; warnings:\n%s", want, strings.Join(p.Warnings, "\n"))
	}
	e.destroy()
}

// TestTwoLabsMacvlansOnOneNIC: the same file under two prefixes, with a
// macvlan on a NIC the file does not make, in one sandbox: the macvlans'
// MACs are not derived from names the two labs share (the kernel refuses
// two children with one MAC on one parent), so both labs come up.
func TestTwoLabsMacvlansOnOneNIC(t *testing.T) {
	const src = `name: mvl
namespaces: {web1: {}}
macvlans:
  - {name: eth1, namespace: web1, parent: "host:nic0", mode: bridge, addresses: [192.168.111.10/24]}
`
	e1 := newEnv(t, "mv.yaml", []byte(src))
	e2 := newEnv(t, "mv.yaml", []byte(src))
	e2.sandbox = e1.sandbox
	e2.load("mv.yaml", []byte(src))
	if _, err := e1.k.EnsureHost(); err != nil {
		t.Fatal(err)
	}
	e1.in("host", func() {
		la := netlink.NewLinkAttrs()
		la.Name = "nic0"
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "nic0-peer"}); err != nil {
			t.Fatal(err)
		}
		l, _ := netlink.LinkByName("nic0")
		netlink.LinkSetUp(l)
	})
	e1.mustApply()
	e2.mustApply()
	e1.assertNoOp()
	e2.assertNoOp()
	e1.destroy()
	e2.destroy()
}

// TestChangedVariableAppliedInPlace: a variable given with --var that
// changes is an in-place change of what it feeds.
func TestChangedVariableAppliedInPlace(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	file := filepath.Join(t.TempDir(), "v.yaml")
	os.WriteFile(file, []byte("name: vars\nnamespaces: {c1: {}}\nbridges: [{name: br0, mtu: \"${MTU}\", addresses: [\"${NET:-10.8.0}.1/24\"]}]\nlinks:\n  - a: {namespace: c1, name: eth0, addresses: [\"${NET:-10.8.0}.2/24\"]}\n    b: {namespace: host, name: v-c1, bridge: br0}\n"), 0o644)
	e := newEnv(t, file, []byte("name: vars\n"))
	if code, out, errOut := e.cli(bin, "--var", "MTU=1400", "apply", file); code != 0 {
		t.Fatalf("apply: %s%s", out, errOut)
	}
	before := ifindexes(t, e.sandbox)[e.sandbox+":br0"]
	code, out, _ := e.cli(bin, "--var", "MTU=1300", "-o", "json", "plan", file)
	if code != 0 || !strings.Contains(out, `"description": "bridge br0 (mtu: 1400 -> 1300)"`) || !strings.Contains(out, `"MTU": "1300"`) || !strings.Contains(out, `"NET": "10.8.0"`) {
		t.Fatalf("plan with a changed variable: exit %d\n%s", code, out)
	}
	if code, out, errOut := e.cli(bin, "--var", "MTU=1300", "apply", file); code != 0 {
		t.Fatalf("apply: %s%s", out, errOut)
	}
	if after := ifindexes(t, e.sandbox)[e.sandbox+":br0"]; after == "" || strings.Fields(after)[0] != strings.Fields(before)[0] {
		t.Fatalf("the bridge was re-made: %s -> %s", before, after)
	}
	// destroy reads the file too: its variables are needed.
	if code, out, errOut := e.cli(bin, "--var", "MTU=1300", "destroy", file); code != 0 {
		t.Fatalf("destroy: %s%s", out, errOut)
	}
	e.assertGone()
}

// TestDestroyStale: `netplan-lab destroy --stale` removes a test lab whose
// creating process is gone, and says so.
func TestDestroyStale(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	e := newEnv(t, "pair.yaml", []byte(nsOnlyLab))
	e.mustApply()
	dead := exec.Command("true")
	dead.Run()
	if err := os.MkdirAll(netplanlab.Registry, 0o755); err != nil {
		t.Fatal(err)
	}
	// A record as labtest.Up writes it, for a process that has exited.
	if err := os.WriteFile(filepath.Join(netplanlab.Registry, e.sandbox), []byte(fmt.Sprintf("%d 1 %s\n", dead.Process.Pid, e.prefix)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runTool(t, bin, "destroy", "--stale")
	if code != 0 || !strings.Contains(out, "Removed the lab in sandbox "+e.sandbox+": the test process that made it is gone.\n") {
		t.Fatalf("destroy --stale: exit %d\n%s%s", code, out, errOut)
	}
	e.assertGone()
}

func runTool(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	return runCmd(t, exec.Command(bin, args...))
}

// runCmd runs cmd and returns its exit code, stdout and stderr; a command
// that cannot be run at all fails the test.
func runCmd(t *testing.T, cmd *exec.Cmd) (int, string, string) {
	t.Helper()
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	return 0, out.String(), errb.String()
}

// TestForeignRoutesBesideTheLabs: routes someone adds next to the lab's own,
// to the same destination and metric, are neither taken for the lab's nor
// changed. A second IPv4 route (ip route append) leaves the plan empty
// whichever the kernel lists first; a nexthop appended to the lab's IPv6
// route (the kernel merges them into one route) is a conflict, not a
// change that would drop it; a source-specific route (from ...) to the
// lab's destination does not stand in for the lab's.
func TestForeignRoutesBesideTheLabs(t *testing.T) {
	src := `name: routes
namespaces:
  a:
    routes:
      - {to: 10.88.0.0/16, via: 10.87.0.2}
      - {to: "fd88::/64", via: "fd87::2"}
  b: {}
links:
  - a: {namespace: a, name: eth0, addresses: [10.87.0.1/24, "fd87::1/64"]}
    b: {namespace: b, name: eth0, addresses: [10.87.0.2/24, "fd87::2/64"]}
`
	e := newEnv(t, "routes.yaml", []byte(src))
	e.mustApply()
	defer e.destroy()
	_, v4, _ := net.ParseCIDR("10.88.0.0/16")
	_, v6, _ := net.ParseCIDR("fd88::/64")
	e.in("a", func() {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		// Appended, before and after the lab's in the kernel's list.
		for _, gw := range []string{"10.87.0.50", "10.87.0.3"} {
			if err := netlink.RouteAppend(&netlink.Route{Dst: v4, Gw: net.ParseIP(gw), LinkIndex: eth0.Attrs().Index}); err != nil {
				t.Fatalf("append route via %s: %v", gw, err)
			}
		}
	})
	if p := e.plan(); !p.Empty() || len(p.Conflicts) > 0 {
		t.Fatalf("two more IPv4 routes to the lab's destination: the plan should be empty:\n%v\n%q", p, p.Conflicts)
	}
	e.mustApply()
	countV4 := func() int {
		n := 0
		e.in("a", func() {
			rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: v4}, netlink.RT_FILTER_DST)
			if err != nil {
				t.Fatal(err)
			}
			n = len(rs)
		})
		return n
	}
	if n := countV4(); n != 3 {
		t.Fatalf("after apply, %d routes to 10.88.0.0/16; want the lab's and the two appended", n)
	}

	// A nexthop appended to the lab's IPv6 route.
	e.in("a", func() {
		eth0, _ := netlink.LinkByName("eth0")
		if err := netlink.RouteAppend(&netlink.Route{Dst: v6, Gw: net.ParseIP("fd87::77"), LinkIndex: eth0.Attrs().Index, Priority: 1024}); err != nil {
			t.Fatalf("append nexthop: %v", err)
		}
	})
	p := e.plan()
	if len(p.Conflicts) != 1 || !strings.Contains(p.Conflicts[0], "fd88::/64") {
		t.Fatalf("a nexthop added to the lab's IPv6 route: want one conflict naming it, got %q\n%v", p.Conflicts, p)
	}
	for _, c := range p.Changes {
		if c.Kind == reconcile.KindRoute {
			t.Fatalf("the plan changes a route the lab no longer solely owns: %s", c.Describe())
		}
	}
	if _, err := e.apply(e.k); err == nil {
		t.Fatal("apply went ahead over the merged route")
	}
	e.in("a", func() {
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Dst: v6}, netlink.RT_FILTER_DST)
		if err != nil || len(rs) != 1 || len(rs[0].MultiPath) != 2 {
			t.Fatalf("the merged route should be as it was, with both nexthops: %v %+v", err, rs)
		}
	})
}

// TestPinsSurviveALaterIPNetnsAdd: on a machine where /run/netns is not
// a mount point yet, a lab applied and then an `ip netns add` (which
// makes /run/netns a shared mount of itself) leave the lab's pins usable:
// destroy removes it, and ip netns exec enters it. An outside audit: the
// pins were covered by ip's mount, and no lab made before it could be
// destroyed (EBUSY). It runs in a mount namespace of its own, where
// /run/netns is first unmounted, as on a machine that never ran ip netns.
func TestPinsSurviveALaterIPNetnsAdd(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"unshare", "ip", "mountpoint"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	if err := exec.Command("ip", "netns", "list").Run(); err != nil {
		t.Skipf("needs an ip with netns (iproute2; the test kernel's guest has busybox's): %v", err)
	}
	bin := binary(t)
	id := fmt.Sprintf("%04x", rand.Intn(0xffff))
	sb, pfx, other := "npl-test-"+id, "t"+id+"-", "npl-test-"+id+"-ip"
	script := `set -u
umount -l /run/netns 2>/dev/null
mountpoint -q /run/netns && { echo "/run/netns is still a mount point"; exit 3; }
"$BIN" --netns "$SB" --prefix "$PFX" apply ../../examples/veth-pair.yaml >/dev/null || { echo "apply failed"; exit 4; }
ip netns add "$OTHER" || exit 5
ip netns exec "${PFX}left" true || echo "EXEC FAILED"
"$BIN" --netns "$SB" --prefix "$PFX" destroy ../../examples/veth-pair.yaml >/dev/null 2>&1 || echo "DESTROY FAILED"
ip netns del "$OTHER"
ls /run/netns | grep -e "$PFX" -e "$SB" && echo "LEFT BEHIND"
exit 0
`
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "BIN="+bin, "SB="+sb, "PFX="+pfx, "OTHER="+other)
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() {
		// Whatever the script left (its mounts went with its mount
		// namespace; the pin files did not, nor the lab's records).
		exec.Command(bin, "--netns", sb, "--prefix", pfx, "destroy", "../../examples/veth-pair.yaml").Run()
		for _, n := range []string{sb, other, pfx + "left", pfx + "right"} {
			os.Remove(filepath.Join("/run/netns", n))
		}
	})
	if err != nil || strings.Contains(string(out), "FAILED") || strings.Contains(string(out), "LEFT BEHIND") {
		t.Fatalf("%v\n%s", err, out)
	}
}

// TestOnePrefixTwoSandboxesAtOnce: one prefix applied in two sandboxes at
// the same moment: the namespaces' names are the same under /run/netns,
// which every sandbox shares. One apply makes the lab, the other waits for
// it and reports the conflict (an outside audit: both often failed with
// "file exists" and rolled back, and neither lab was made).
func TestOnePrefixTwoSandboxesAtOnce(t *testing.T) {
	bin := binary(t)
	file := "../../examples/veth-pair.yaml"
	a := newEnv(t, file, nil)
	b := *a
	b.sandbox = a.sandbox + "-2"
	t.Cleanup(b.cleanup)
	for round := 0; round < 3; round++ {
		type result struct {
			code     int
			out, err string
		}
		res := make(chan result, 2)
		for _, e := range []*env{a, &b} {
			go func(e *env) {
				c := exec.Command(bin, "--netns", e.sandbox, "--prefix", e.prefix, "apply", file)
				var out, errOut strings.Builder
				c.Stdout, c.Stderr = &out, &errOut
				err := c.Run()
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				}
				res <- result{code, out.String(), errOut.String()}
			}(e)
		}
		r1, r2 := <-res, <-res
		if r1.code != 0 {
			r1, r2 = r2, r1
		}
		if r1.code != 0 || r2.code != 1 || !strings.Contains(r2.out, "already exists and is not owned by this topology") {
			t.Fatalf("round %d: want one apply made and one conflict:\n%d %s%s\n%d %s%s", round, r1.code, r1.out, r1.err, r2.code, r2.out, r2.err)
		}
		for _, e := range []*env{a, &b} {
			e.cli(bin, "destroy", file)
		}
	}
}

// TestForeignLinkInTheLabsGroupIsLeft: a link someone put in the lab's
// link group (ip link set group N), with no mark, is not the lab's: apply
// and destroy leave it, and the address on it. Only a link the lab noted
// it was about to make reads as half-made (an outside audit: both deleted
// it, with its address).
func TestForeignLinkInTheLabsGroupIsLeft(t *testing.T) {
	bin := binary(t)
	file := "../../examples/bridge.yaml"
	e := newEnv(t, file, nil)
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	addr, _ := netlink.ParseAddr("10.123.0.1/24")
	e.in("host", func() {
		br, err := netlink.LinkByName("hwchiu0")
		if err != nil {
			t.Fatal(err)
		}
		la := netlink.NewLinkAttrs()
		la.Name, la.Group = "myv0", br.Attrs().Group
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "myv1"}); err != nil {
			t.Fatal(err)
		}
		l, err := netlink.LinkByName("myv0")
		if err != nil || l.Attrs().Group != br.Attrs().Group {
			t.Fatalf("myv0: %v, %+v", err, l)
		}
		if err := netlink.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() {
		e.in("host", func() { netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "myv0"}}) })
	})
	still := func(after string) {
		t.Helper()
		e.in("host", func() {
			l, err := netlink.LinkByName("myv0")
			if err != nil {
				t.Fatalf("after %s: myv0 is gone: %v", after, err)
			}
			addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
			if len(addrs) != 1 || !addrs[0].IPNet.IP.Equal(addr.IP) {
				t.Fatalf("after %s: myv0 has %v", after, addrs)
			}
		})
	}
	if code, out, errOut := e.cli(bin, "plan", "--detailed-exitcode", file); code != 0 {
		t.Fatalf("plan with a foreign link in the lab's group: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 || strings.Contains(out, "myv") {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	still("apply")
	code, out, errOut := e.cli(bin, "destroy", file)
	if code != 0 || !strings.Contains(out, "stays: interface myv") {
		t.Fatalf("destroy: %d\n%s%s", code, out, errOut)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "-   veth myv") {
			t.Fatalf("destroy deleted the foreign link:\n%s", out)
		}
	}
	still("destroy")
}
