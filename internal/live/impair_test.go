package live

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/reconcile"
)

// impairLab: two namespaces joined by one veth whose both ends are
// impaired (IMPAIR), and a second, plain veth.
const impairLab = `name: imp
namespaces: {a: {}, b: {}}
links:
  - a: {namespace: a, name: eth0, addresses: [10.77.0.1/24]}
    b: {namespace: b, name: eth0, addresses: [10.77.0.2/24]}
    impair: {IMPAIR}
  - a: {namespace: a, name: eth1, addresses: [10.77.1.1/24]}
    b: {namespace: b, name: eth1, addresses: [10.77.1.2/24]}
`

func impairSrc(impair string) []byte {
	return []byte(strings.Replace(impairLab, "IMPAIR", impair, 1))
}

// throughput sends TCP data from namespace cli to srv's addr for d and
// returns what the receiver counted, in Mbit/s.
func (e *env) throughput(srv, cli, addr string, d time.Duration) float64 {
	e.t.Helper()
	var ln net.Listener
	e.in(srv, func() {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			e.t.Fatalf("listen %s in %s: %v", addr, srv, err)
		}
	})
	defer ln.Close()
	type result struct {
		n    int64
		took time.Duration
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{}
			return
		}
		defer c.Close()
		// Count from the first byte: slow start is part of it, as it is
		// for any transfer.
		buf := make([]byte, 64<<10)
		n, err := c.Read(buf)
		start := time.Now()
		total := int64(0)
		for err == nil {
			n, err = c.Read(buf)
			total += int64(n)
		}
		got <- result{total, time.Since(start)}
	}()
	var conn net.Conn
	e.in(cli, func() {
		var err error
		if conn, err = net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
			e.t.Fatalf("dial %s from %s: %v", addr, cli, err)
		}
	})
	buf := make([]byte, 64<<10)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		conn.SetWriteDeadline(end)
		if _, err := conn.Write(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			e.t.Fatalf("send: %v", err)
		}
	}
	conn.Close()
	r := <-got
	if r.took == 0 {
		e.t.Fatal("the receiver saw nothing")
	}
	return float64(r.n) * 8 / r.took.Seconds() / 1e6
}

// tcQdiscs lists the root qdiscs of an interface as tc itself prints them
// (an observer independent of the code under test): "kind handle".
func (e *env) tcQdiscs(ns, dev string) []string {
	e.t.Helper()
	out, err := exec.Command("nsenter", "--net="+e.nsPath(ns), "tc", "-j", "qdisc", "show", "dev", dev).Output()
	if err != nil {
		e.t.Fatalf("tc qdisc show dev %s in %s: %v", dev, ns, err)
	}
	var qs []struct {
		Kind   string `json:"kind"`
		Handle string `json:"handle"`
		Root   bool   `json:"root"`
	}
	if err := json.Unmarshal(out, &qs); err != nil {
		e.t.Fatalf("tc -j: %v\n%s", err, out)
	}
	var s []string
	for _, q := range qs {
		if q.Root {
			s = append(s, q.Kind+" "+q.Handle)
		}
	}
	return s
}

func (e *env) tc(ns string, args ...string) {
	e.t.Helper()
	if out, err := exec.Command("nsenter", append([]string{"--net=" + e.nsPath(ns), "tc"}, args...)...).CombinedOutput(); err != nil {
		e.t.Fatalf("tc %v in %s: %v\n%s", args, ns, err, out)
	}
}

func (e *env) ifindex(ns, dev string) int {
	e.t.Helper()
	var idx int
	e.in(ns, func() {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			e.t.Fatal(err)
		}
		idx = l.Attrs().Index
	})
	return idx
}

func needTC(t *testing.T) {
	t.Helper()
	// iproute2's tc, not busybox's (the test-kernel guest has only that).
	if out, err := exec.Command("tc", "-V").CombinedOutput(); err != nil || !strings.Contains(string(out), "iproute2") {
		t.Skip("needs tc from iproute2 as the independent observer; .ci/run installs it (the test-kernel guest has none: this kernel's tbf is tested on the host)")
	}
}

// TestImpairRateInPlace: a rate is measured in TCP throughput, changed in
// place (same interface, the new rate measured), repaired after a hand
// deletion, and left alone as someone else's elsewhere.
func TestImpairRateInPlace(t *testing.T) {
	needTC(t)
	e := newEnv(t, "impair.yaml", impairSrc("rate: 8mbit"))
	e.mustApply()
	defer e.destroy()
	for _, ns := range []string{"a", "b"} {
		if got := e.tcQdiscs(ns, "eth0"); len(got) != 1 || got[0] != "tbf 4e51:" {
			t.Fatalf("root qdisc of %s:eth0 = %q, want the lab's tbf 4e51:", ns, got)
		}
	}
	e.assertNoOp()
	if mbit := e.throughput("b", "a", "10.77.0.2:5001", 3*time.Second); mbit < 6 || mbit > 10 {
		t.Fatalf("throughput through rate 8mbit: %.2f Mbit/s, want 6-10", mbit)
	} else {
		t.Logf("rate 8mbit: %.2f Mbit/s", mbit)
	}
	plain := e.throughput("b", "a", "10.77.1.2:5002", time.Second)
	if plain < 50 {
		t.Fatalf("the plain link carries only %.2f Mbit/s: the rate leaks to other links", plain)
	}
	idxA, idxB := e.ifindex("a", "eth0"), e.ifindex("b", "eth0")

	e.load("impair.yaml", impairSrc("rate: 20mbit"))
	want := []string{"~ a impair on eth0 (rate: 8mbit -> 20mbit)", "~ b impair on eth0 (rate: 8mbit -> 20mbit)"}
	if got := planLines(e.plan()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan of the rate edit:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	e.mustApply()
	if e.ifindex("a", "eth0") != idxA || e.ifindex("b", "eth0") != idxB {
		t.Fatal("the interfaces were re-made: the change was not in place")
	}
	e.assertNoOp()
	if mbit := e.throughput("b", "a", "10.77.0.2:5003", 3*time.Second); mbit < 15 || mbit > 25 {
		t.Fatalf("throughput through rate 20mbit: %.2f Mbit/s, want 15-25", mbit)
	} else {
		t.Logf("rate 20mbit: %.2f Mbit/s", mbit)
	}

	// Deleted by hand: the plan sees it, apply puts it back.
	e.tc("a", "qdisc", "del", "dev", "eth0", "root")
	want = []string{"+ a impair on eth0: rate 20mbit"}
	if got := planLines(e.plan()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan after a hand deletion:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	e.mustApply()
	if got := e.tcQdiscs("a", "eth0"); len(got) != 1 || got[0] != "tbf 4e51:" {
		t.Fatalf("after repair, root qdisc of a:eth0 = %q", got)
	}

	// Someone else's qdisc on an interface without impair: left alone.
	e.tc("a", "qdisc", "add", "dev", "eth1", "root", "handle", "1:", "tbf", "rate", "1mbit", "burst", "10kb", "latency", "50ms")
	e.assertNoOp()
	if got := e.tcQdiscs("a", "eth1"); len(got) != 1 || got[0] != "tbf 1:" {
		t.Fatalf("the foreign qdisc on a:eth1 is now %q", got)
	}
	// ... and a conflict where the file wants an impairment.
	e.load("impair.yaml", []byte(strings.Replace(string(impairSrc("rate: 20mbit")),
		"b: {namespace: b, name: eth1, addresses: [10.77.1.2/24]}",
		"b: {namespace: b, name: eth1, addresses: [10.77.1.2/24]}\n    impair: {rate: 5mbit}", 1)))
	p := e.plan()
	if len(p.Conflicts) != 1 || !strings.Contains(p.Conflicts[0], `interface "eth1" in namespace "a" has a root qdisc that netplan-lab did not make (tbf 1:)`) {
		t.Fatalf("conflicts = %q", p.Conflicts)
	}
	if _, err := e.apply(e.k); !errors.Is(err, reconcile.ErrConflict) {
		t.Fatalf("apply over a foreign qdisc: %v", err)
	}
	if got := e.tcQdiscs("a", "eth1"); len(got) != 1 || got[0] != "tbf 1:" {
		t.Fatalf("the foreign qdisc on a:eth1 is now %q", got)
	}

	// Removed from the file: the lab's qdisc goes, the kernel's default is back.
	e.load("impair.yaml", []byte(strings.Replace(impairLab, "    impair: {IMPAIR}\n", "", 1)))
	e.mustApply()
	for _, ns := range []string{"a", "b"} {
		if got := e.tcQdiscs(ns, "eth0"); len(got) != 1 || !strings.HasPrefix(got[0], "noqueue") {
			t.Fatalf("after impair: went, root qdisc of %s:eth0 = %q", ns, got)
		}
	}
	e.assertNoOp()
}

// TestImpairNetemRefusedWithoutNetem: on a kernel without netem, delay and
// loss are refused before anything changes, naming the kernel option, by
// plan and apply alike; a bad value is a validation error at its place.
func TestImpairNetemRefusedWithoutNetem(t *testing.T) {
	needRoot(t)
	if linux.Probe("netem") == nil {
		t.Skip("this kernel has netem: TestImpairNetemDelayAndLoss measures it instead")
	}
	bin := binary(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "imp.yaml")
	if err := os.WriteFile(file, impairSrc("delay: 50ms, loss: 1%"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, file, nil)
	before := e.snapshotAll()
	ck := &reconcile.CountingKernel{Kernel: e.k}
	_, err := reconcile.Reconcile(context.Background(), ck, e.desired(), reconcile.ExecOptions{})
	if err == nil || !strings.Contains(err.Error(), "CONFIG_NET_SCH_NETEM") {
		t.Fatalf("apply of delay/loss here: %v", err)
	}
	if ck.Writes() != 0 {
		t.Fatalf("a refused apply made %d writes", ck.Writes())
	}
	for _, cmd := range []string{"plan", "apply"} {
		code, out, errOut := e.cli(bin, cmd, file)
		if code != 1 || !strings.Contains(out+errOut, "it needs CONFIG_NET_SCH_NETEM (impair on eth0 in netns") ||
			(cmd == "plan" && !strings.Contains(out, "unsupported: "+file+":6:21: links[0].impair.delay: this kernel cannot delay")) ||
			!strings.Contains(out+errOut, "nothing was changed") {
			t.Fatalf("%s exited %d:\n%s%s", cmd, code, out, errOut)
		}
	}
	if after := e.snapshotAll(); after != before {
		t.Fatalf("a refused plan/apply changed the machine:\n%s\nwas:\n%s", after, before)
	}
	if err := os.WriteFile(file, impairSrc("delay: fast"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := e.cli(bin, "validate", file)
	if want := file + `:6:21: links[0].impair.delay: "fast" is not a time like 50ms, 1.5ms, 200us or 1s`; code != 1 || !strings.Contains(out+errOut, want) {
		t.Fatalf("validate exited %d:\n%s%s\nwant %s", code, out, errOut, want)
	}

	// Under a watch, the refusal says where in the file too (an outside
	// audit: it came without a place).
	if err := os.WriteFile(file, impairSrc("rate: 8mbit"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--netns", e.sandbox, "--prefix", e.prefix, "-o", "json", "apply", "--watch", "--destroy-on-exit", file)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.destroy()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	wait := func(what string) string {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the watch ended before %q", what)
				}
				if strings.Contains(l, what) {
					return l
				}
			case <-deadline:
				cmd.Process.Kill()
				t.Fatalf("no %q from the watch", what)
			}
		}
	}
	wait(`"event":"applied"`)
	if err := os.WriteFile(file, impairSrc("delay: 50ms"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l := wait(`"event":"error"`); !strings.Contains(l, file+":6:21: links[0].impair.delay: ") || !strings.Contains(l, "CONFIG_NET_SCH_NETEM") {
		t.Fatalf("the watch's refusal: %s", l)
	}
	cmd.Process.Signal(syscall.SIGINT)
	for range lines {
	}
	cmd.Wait()
}

// TestImpairNetemDelayAndLoss (under make test-kernel, whose stock kernel
// has netem): 50 ms on both ends is a round trip of at least 100 ms; 20%
// loss on one end drops between 10% and 30% of 200 pings; the change
// from one to the other is in place.
func TestImpairNetemDelayAndLoss(t *testing.T) {
	needRoot(t)
	if err := linux.Probe("netem"); err != nil {
		t.Skipf("this kernel has no netem (%v): make test-kernel runs this under Debian's stock kernel", err)
	}
	e := newEnv(t, "impair.yaml", impairSrc("delay: 50ms"))
	e.mustApply()
	defer e.destroy()
	e.assertNoOp()
	rtt := e.rtt("a", "10.77.0.2", 5)
	if rtt < 100*time.Millisecond || rtt > 400*time.Millisecond {
		t.Fatalf("round trip through delay 50ms on both ends: %v, want at least 100ms", rtt)
	}
	t.Logf("delay 50ms each way: round trip %v", rtt)
	idx := e.ifindex("a", "eth0")

	src := strings.Replace(impairLab, "    impair: {IMPAIR}\n", "", 1)
	src = strings.Replace(src, "a: {namespace: a, name: eth0, addresses: [10.77.0.1/24]}",
		"a: {namespace: a, name: eth0, addresses: [10.77.0.1/24], impair: {loss: 20%}}", 1)
	e.load("impair.yaml", []byte(src))
	want := []string{"~ a impair on eth0 (delay: 50ms -> (none), loss: (none) -> 20%)", "- b impair on eth0: delay 50ms"}
	if got := planLines(e.plan()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	e.mustApply()
	e.assertNoOp()
	if e.ifindex("a", "eth0") != idx {
		t.Fatal("a:eth0 was re-made")
	}
	p := e.startPing("a", "10.77.0.2", 5*time.Millisecond)
	for {
		p.mu.Lock()
		n := p.sent
		p.mu.Unlock()
		if n >= 200 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	sent, lost := p.stop()
	frac := float64(lost) / float64(sent)
	t.Logf("loss 20%%: %d of %d pings lost (%.1f%%)", lost, sent, 100*frac)
	if frac < 0.10 || frac > 0.30 {
		t.Fatalf("loss 20%%: %d of %d pings lost, want 10%%-30%%", lost, sent)
	}
	// Every key at once reads back as written: nothing left to do.
	e.load("impair.yaml", impairSrc("delay: 20ms, jitter: 5ms, loss: 1%, duplicate: 1%, reorder: 5%, corrupt: 0.1%, rate: 10mbit, limit: 500"))
	e.mustApply()
	e.assertNoOp()
	if e.ifindex("a", "eth0") != idx {
		t.Fatal("a:eth0 was re-made")
	}
}

// rtt is the shortest of n round trips to dst from ns, each a TCP
// connection to a port nothing listens on: the SYN goes out, the RST comes
// back.
func (e *env) rtt(ns, dst string, n int) time.Duration {
	e.t.Helper()
	var best time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		var c net.Conn
		e.in(ns, func() {
			var err error
			c, err = net.DialTimeout("tcp", dst+":9", 3*time.Second)
			if err == nil {
				c.Close()
			}
		})
		took := time.Since(start)
		if best == 0 || took < best {
			best = took
		}
	}
	return best
}

// TestWatchImpair: watch applies an impairment edit in place and repairs
// a qdisc deleted by hand from its netlink event (the resync is an hour).
func TestWatchImpair(t *testing.T) {
	src := string(impairSrc("rate: 8mbit"))
	w := startWatch(t, src)
	idx := w.ifindex("a", "eth0")
	v2 := string(impairSrc("rate: 20mbit"))
	if err := os.WriteFile(w.file, []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	w.waitMatches(v2)
	if w.ifindex("a", "eth0") != idx {
		t.Fatal("the edit re-made a:eth0")
	}
	// Let the new links' own events (IPv6 coming up, slow under qemu) pass
	// first: the repair below must be the qdisc event's.
	for n, quiet, deadline := len(w.Events()), time.Now(), time.Now().Add(15*time.Second); time.Since(quiet) < 1500*time.Millisecond && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := len(w.Events()); m != n {
			n, quiet = m, time.Now()
		}
	}
	n := len(w.Events())
	w.in("b", func() {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		qs, err := netlink.QdiscList(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			if q.Attrs().Parent == netlink.HANDLE_ROOT {
				if err := netlink.QdiscDel(q); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
	w.waitMatches(v2)
	ev := w.waitEventMatching("drift_repaired", "qdisc deleted on link")
	if len(ev.Changes) != 1 || ev.Changes[0] != "b: + impair on eth0: rate 20mbit" {
		t.Fatalf("the repair: %+v (events before it: %d)", ev, n)
	}
}
