package live

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/internal/watch"
	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

const watchDebounce = 150 * time.Millisecond

// watched is a running watch over a file in a directory of its own.
type watched struct {
	*env
	*watch.Recorder
	dir, file string
	stop      context.CancelFunc
	done      chan error
}

func startWatch(t *testing.T, src string) *watched {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	w := &watched{env: newEnv(t, file, nil), Recorder: &watch.Recorder{}, dir: dir, file: file, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	events, err := w.k.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.k.EnsureHost(); err != nil {
		t.Fatal(err)
	}
	go func() {
		w.done <- watch.Run(ctx, watch.Config{
			File: file, Kernel: w.k, Events: events, Debounce: watchDebounce, Resync: time.Hour,
			Report: w.Report,
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-w.done; err != nil {
			t.Errorf("watch: %v", err)
		}
		w.destroy()
	})
	w.waitEvent("applied", 1)
	return w
}

// waitEvent waits (bounded) until at least n events of kind were reported.
func (w *watched) waitEvent(kind string, n int) {
	w.t.Helper()
	if _, err := w.Wait(kind, n, 10*time.Second); err != nil {
		w.t.Fatal(err)
	}
}

// waitMatches waits (bounded) until the kernel matches src.
func (w *watched) waitMatches(src string) {
	w.t.Helper()
	top, err := topology.Parse("want.yaml", []byte(src))
	if err != nil {
		w.t.Fatal(err)
	}
	want, err := reconcile.Desired(top)
	if err != nil {
		w.t.Fatal(err)
	}
	// A kernel view of its own: the watch's is not shared with the test.
	k := linux.New(linux.Options{Name: w.topo.Name, Prefix: w.prefix, Netns: w.sandbox})
	defer k.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		obs, err := k.Observe(context.Background(), reconcile.QueryFor(want))
		if err != nil {
			w.t.Fatal(err)
		}
		p := reconcile.Diff(want, obs)
		if p.Empty() {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the kernel did not come to match the file within 10s; still:\n%v", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readExample(t *testing.T, name string) string {
	b, err := os.ReadFile("../../examples/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWatchSaves(t *testing.T) {
	src := readExample(t, "bridge.yaml")
	w := startWatch(t, src)

	// An in-place write.
	v1 := strings.Replace(src, "10.55.66.3/24", "10.55.66.4/24", 1)
	if err := os.WriteFile(w.file, []byte(v1), 0o644); err != nil {
		t.Fatal(err)
	}
	w.waitMatches(v1)
	w.waitEvent("applied", 2)

	// An editor's save: write a temporary file, rename it over the original.
	v2 := strings.Replace(v1, "10.55.66.4/24", "10.55.66.5/24", 1)
	tmp := filepath.Join(w.dir, ".lab.yaml.swp")
	if err := os.WriteFile(tmp, []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, w.file); err != nil {
		t.Fatal(err)
	}
	w.waitMatches(v2)
	w.waitEvent("applied", 3)

	// Delete and re-create.
	v3 := strings.Replace(v2, "10.55.66.5/24", "10.55.66.6/24", 1)
	if err := os.Remove(w.file); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * watchDebounce)
	if err := os.WriteFile(w.file, []byte(v3), 0o644); err != nil {
		t.Fatal(err)
	}
	w.waitMatches(v3)
	w.waitEvent("applied", 4)

	// An invalid edit changes nothing, says where, and watching goes on.
	applied := w.Count("applied")
	if err := os.WriteFile(w.file, []byte(strings.Replace(v3, "bridges:", "bridgez:", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	w.waitEvent("invalid_file", 1)
	if e := w.Last("invalid_file"); len(e.Errors) == 0 || !strings.Contains(e.Errors[0], w.file+":") || !strings.Contains(strings.Join(e.Errors, "\n"), `unknown key "bridgez"`) {
		t.Fatalf("invalid file event: %+v", e)
	}
	w.waitMatches(v3) // unchanged
	if w.Count("applied") != applied {
		t.Fatal("an invalid file was applied")
	}
	v4 := strings.Replace(v3, "10.55.66.6/24", "10.55.66.7/24", 1)
	if err := os.WriteFile(w.file, []byte(v4), 0o644); err != nil {
		t.Fatal(err)
	}
	w.waitMatches(v4)
	w.waitEvent("applied", 5)

	// Ten saves within the debounce: one apply.
	applied = w.Count("applied")
	var last string
	for i := 0; i < 10; i++ {
		last = strings.Replace(v4, "10.55.66.7/24", fmt.Sprintf("10.55.66.%d/24", 20+i), 1)
		if err := os.WriteFile(w.file, []byte(last), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(watchDebounce / 10)
	}
	w.waitMatches(last)
	time.Sleep(3 * watchDebounce)
	if got := w.Count("applied") - applied; got != 1 {
		t.Fatalf("ten quick saves gave %d applies, want 1", got)
	}
	w.tcp("c2", "c1", "10.55.66.29:80", "10.55.66.29:80")
}

// TestWatchConfigMapSwap: the file is a symlink through a ..data symlink,
// which is swapped atomically, as Kubernetes does with a ConfigMap volume.
func TestWatchConfigMapSwap(t *testing.T) {
	src := readExample(t, "veth-pair.yaml")
	w := startWatch(t, src)
	// Turn the plain file into the ConfigMap layout.
	mk := func(version, content string) {
		d := filepath.Join(w.dir, version)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "lab.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(w.dir, "..data_tmp")
		os.Remove(tmp)
		if err := os.Symlink(version, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(w.dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	mk("..2026_11_22_00_00_01.1", src)
	if err := os.Remove(w.file); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/lab.yaml", w.file); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * watchDebounce) // the layout change has the same content: no apply
	applied := w.Count("applied")
	v1 := strings.Replace(src, "mtu: 9000", "mtu: 4000", 1)
	mk("..2026_11_22_00_00_02.2", v1)
	w.waitMatches(v1)
	w.waitEvent("applied", applied+1) // the event follows the kernel's confirmation
	time.Sleep(3 * watchDebounce)
	if w.Count("applied") != applied+1 {
		t.Fatalf("the swap gave %d applies", w.Count("applied")-applied)
	}
}

func TestWatchRepairsDrift(t *testing.T) {
	// veth-c1 gets the lowest MAC, so the bridge takes it as its own and
	// changes MAC when veth-c1 goes: the repair must not pin the bridge's.
	src := strings.Replace(readExample(t, "bridge.yaml"), "name: veth-c1, bridge: hwchiu0}", "name: veth-c1, bridge: hwchiu0, mac: \"02:00:00:00:00:01\"}", 1)
	w := startWatch(t, src)

	// A veth deleted by hand comes back; its far end, whose MAC the file
	// leaves to the kernel, with the MAC it had; the bridge is not touched.
	mac := func() string {
		var m string
		w.in("c1", func() {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				t.Fatal(err)
			}
			m = l.Attrs().HardwareAddr.String()
		})
		return m
	}
	before := mac()
	mark := time.Now()
	w.in("host", func() {
		l, err := netlink.LinkByName("veth-c1")
		if err == nil {
			err = netlink.LinkDel(l)
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	// (Which batch of events the repair is reported under is not
	// asserted: see TestWatchRepairsNATDrift.)
	e := w.waitRepairAfter(mark, "veth eth0 <-> host:veth-c1")
	w.waitMatches(src)
	if strings.Contains(strings.Join(e.Changes, "\n"), "bridge hwchiu0") {
		t.Fatalf("drift event: %+v", e)
	}
	if after := mac(); after != before {
		t.Fatalf("c1's eth0 came back with MAC %s, it had %s", after, before)
	}
	w.tcp("c2", "c1", "10.55.66.3:80", "10.55.66.3:80")

	// An address removed by hand comes back.
	w.in("c2", func() {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		a, _ := netlink.ParseAddr("10.55.66.3/24")
		if err := netlink.AddrDel(l, a); err != nil {
			t.Fatal(err)
		}
	})
	w.waitEvent("drift_repaired", 2)
	w.waitMatches(src)

	// The route the kernel made for that address, deleted by hand: its
	// event starts the repair (the address again, which makes it). First
	// the echoes of the last repair pass (a repair they started would
	// find the deletion without its event).
	w.waitQuiet()
	mark = time.Now()
	w.in("c2", func() {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		_, sub, _ := net.ParseCIDR("10.55.66.0/24")
		if err := netlink.RouteDel(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: sub, Protocol: unix.RTPROT_KERNEL, Scope: netlink.SCOPE_LINK}); err != nil {
			t.Fatal(err)
		}
	})
	w.waitRepairAfter(mark, "address 10.55.66.3/24 on eth0")
	w.waitMatches(src)
	w.tcp("c1", "c2", "10.55.66.2:80", "10.55.66.2:80")

	// The address's local route (table local), deleted by hand: the
	// address does not answer; its event starts the repair.
	w.waitQuiet()
	mark = time.Now()
	w.in("c2", func() {
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Type == unix.RTN_LOCAL && r.Dst != nil && r.Dst.IP.String() == "10.55.66.3" {
				if err := netlink.RouteDel(&r); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
	w.waitRepairAfter(mark, "address 10.55.66.3/24 on eth0 (again: the local route of 10.55.66.3")
	w.waitMatches(src)
	w.tcp("c1", "c2", "10.55.66.2:80", "10.55.66.2:80")

	// A namespace deleted by hand comes back, with its veth.
	w.waitQuiet()
	mark = time.Now()
	if err := syscall.Unmount(w.nsPath("c2"), syscall.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(w.nsPath("c2")); err != nil {
		t.Fatal(err)
	}
	w.waitRepairAfter(mark, "namespace c2")
	w.waitMatches(src)
	w.tcp("c2", "c1", "10.55.66.3:80", "10.55.66.3:80")
	// A namespace going away is an event, not an error.
	if n := w.Count("error"); n != 0 {
		t.Fatalf("watch reported %d errors, the last: %+v", n, w.Last("error"))
	}

	// A foreign link beside the lab is left alone (counted once the
	// watch is quiet: the last repair's report and echoes are in).
	w.waitQuiet()
	repairs := w.Count("drift_repaired")
	w.in("host", func() {
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "foreign0"}}); err != nil {
			t.Fatal(err)
		}
	})
	time.Sleep(time.Second)
	w.in("host", func() {
		if _, err := netlink.LinkByName("foreign0"); err != nil {
			t.Fatalf("the foreign link is gone: %v", err)
		}
		netlink.LinkDel(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "foreign0"}})
	})
	if w.Count("drift_repaired") != repairs {
		t.Fatalf("watch repaired something after a foreign link appeared: %+v", w.Last("drift_repaired"))
	}
}

// bigLab is n namespaces on one bridge, as in the benchmark.
func bigLab(n int) string {
	var b strings.Builder
	b.WriteString("name: big\nnamespaces:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  n%d: {}\n", i)
	}
	b.WriteString("bridges:\n  - {name: br0, addresses: [10.0.0.1/16]}\nlinks:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - a: {namespace: n%d, name: eth0, addresses: [10.0.%d.%d/16]}\n    b: {namespace: host, name: v%d, bridge: br0}\n", i, (i+2)>>8, (i+2)&255, i)
	}
	return b.String()
}

// TestWatchSIGTERMDuringApply stops the real binary while it applies a
// large lab: afterwards the kernel holds the old state or the new one,
// never a mix.
func TestWatchSIGTERMDuringApply(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	for _, delay := range []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			src := bigLab(60)
			dir := t.TempDir()
			file := filepath.Join(dir, "big.yaml")
			if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, file, nil)
			cmd := exec.Command(bin, "--netns", e.sandbox, "--prefix", e.prefix, "apply", "--watch", file)
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Wait for the apply to be under way, then stop it.
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if strings.Contains(sc.Text(), "watching") {
					break
				}
			}
			time.Sleep(delay)
			cmd.Process.Signal(syscall.SIGTERM)
			var out strings.Builder
			for sc.Scan() {
				out.WriteString(sc.Text() + "\n")
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("watch exited with %v\n%s", err, out.String())
			}
			// Old (nothing) or new (everything), never a mix.
			entries, _ := os.ReadDir(linux.NetnsDir)
			n := 0
			for _, d := range entries {
				if strings.HasPrefix(d.Name(), e.prefix) {
					n++
				}
			}
			switch n {
			case 0:
			case 60:
				if p := e.plan(); !p.Empty() {
					t.Fatalf("all namespaces exist but the lab is incomplete:\n%v", p)
				}
			default:
				t.Fatalf("after SIGTERM %d of 60 namespaces exist: a mix\n%s", n, out.String())
			}
			if !strings.Contains(out.String(), "stopped watching") {
				t.Fatalf("no clean stop:\n%s", out.String())
			}
			e.destroy()
			e.assertGone()
		})
	}
}

// TestWatchJSONAndDestroyOnExit: -o json is one JSON event per line, and
// --destroy-on-exit leaves nothing behind.
func TestWatchJSONAndDestroyOnExit(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	e := newEnv(t, "../../examples/bridge.yaml", nil)
	cmd := exec.Command(bin, "--netns", e.sandbox, "--prefix", e.prefix, "-o", "json", "apply", "--watch", "--destroy-on-exit", "../../examples/bridge.yaml")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var kinds []string
	for sc.Scan() {
		var ev struct {
			Kind    string   `json:"event"`
			Changes []string `json:"changes"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("not one JSON event per line: %q: %v", sc.Text(), err)
		}
		kinds = append(kinds, ev.Kind)
		if ev.Kind == "applied" {
			if len(ev.Changes) != 8 {
				t.Fatalf("applied event: %s", sc.Text())
			}
			cmd.Process.Signal(syscall.SIGINT)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(kinds, ",") != "started,applied,stopped,destroyed" {
		t.Fatalf("events: %v", kinds)
	}
	e.assertGone()
}

// binary is the netplan-lab command: NETPLAN_LAB_BIN (as under
// make test-kernel, where there is no Go toolchain) or a fresh build.
func binary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("NETPLAN_LAB_BIN"); b != "" {
		return b
	}
	bin := filepath.Join(t.TempDir(), "netplan-lab")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/netplan-lab").CombinedOutput(); err != nil {
		t.Fatalf("build the binary: %v\n%s", err, out)
	}
	return bin
}

// TestWatchRepairsNATDrift: a NAT rule deleted by hand, and a whole table,
// are seen through nftables' netlink events (the periodic resync is an
// hour here) and put back.
//
// Which batch of events a repair is reported under is not asserted: on a
// slow machine (the stock kernel under TCG) the echo of the watch's own
// last repair can start the debounce, and the hand deletion is then read
// by that repair before its own events arrive (CI saw it). What is
// asserted is the outcome: a repair started by kernel events, after the
// deletion, that re-adds what was deleted.
func TestWatchRepairsNATDrift(t *testing.T) {
	w := startWatch(t, natLab)
	masq := w.k.Mark() + " masquerade 10.10.0.0/24 out wan"
	deleteRule := func() {
		w.in("router", func() {
			c, err := nftables.New()
			if err != nil {
				t.Fatal(err)
			}
			chains, err := c.ListChains()
			if err != nil {
				t.Fatal(err)
			}
			for _, ch := range chains {
				if ch.Table.Name != w.k.TableName() {
					continue
				}
				rules, _ := c.GetRules(ch.Table, ch)
				for _, r := range rules {
					if s, _ := userdata.GetString(r.UserData, userdata.TypeComment); s == masq {
						if err := c.DelRule(r); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
		})
	}
	mark := time.Now()
	deleteRule()
	w.waitRepairAfter(mark, "nat masquerade 10.10.0.0/24 out wan")
	w.waitMatches(natLab)
	if len(w.nftRules("router")[masq]) != 1 {
		t.Fatal("the masquerade rule is not back")
	}
	// The whole table.
	mark = time.Now()
	w.in("router", func() {
		c, _ := nftables.New()
		c.DelTable(&nftables.Table{Name: w.k.TableName(), Family: nftables.TableFamilyINet})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	w.waitRepairAfter(mark, "nat masquerade 10.10.0.0/24 out wan", "nat port_forward tcp 8080 to 10.10.0.2:80 in wan")
	w.waitMatches(natLab)
	if r := w.nftRules("router"); len(r[masq]) != 1 || len(r) != 2 {
		t.Fatalf("rules after the table came back: %v", r)
	}
}

// waitRepairAfter waits (bounded) for a drift_repaired event, started by
// kernel events after mark, whose changes add each of adds.
func (w *watched) waitRepairAfter(mark time.Time, adds ...string) watch.Event {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
	events:
		for _, e := range w.Events() {
			if e.Kind != "drift_repaired" || e.Trigger != "kernel events" || e.Time.Before(mark) || len(e.Drift) == 0 {
				continue
			}
			changes := strings.Join(e.Changes, "\n")
			for _, a := range adds {
				if !strings.Contains(changes, "+ "+a) {
					continue events
				}
			}
			return e
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatalf("no repair after %s started by kernel events adding %q; events: %+v", mark.Format("15:04:05.000"), adds, w.Events())
	return watch.Event{}
}

// waitQuiet waits (15 s at most) until the watch has reported nothing
// for a second: the echoes of its last repair are in.
func (w *watched) waitQuiet() {
	for n, quiet, deadline := len(w.Events()), time.Now(), time.Now().Add(15*time.Second); time.Since(quiet) < time.Second && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := len(w.Events()); m != n {
			n, quiet = m, time.Now()
		}
	}
}

// waitEventMatching waits (bounded) for an event of kind whose drift
// mentions what.
func (w *watched) waitEventMatching(kind, what string) watch.Event {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range w.Events() {
			if e.Kind == kind && strings.Contains(strings.Join(e.Drift, "\n"), what) {
				return e
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatalf("no %s event mentioning %q; events: %+v", kind, what, w.Events())
	return watch.Event{}
}

// TestWatchWarns: something of someone else's in the lab (a rule added by
// hand to the lab's NAT chain) changes nothing, and watch says so once.
func TestWatchWarns(t *testing.T) {
	w := startWatch(t, natLab)
	w.in("router", func() {
		c, _ := nftables.New()
		tb := &nftables.Table{Name: w.k.TableName(), Family: nftables.TableFamilyINet}
		c.InsertRule(&nftables.Rule{Table: tb, Chain: &nftables.Chain{Name: "postrouting", Table: tb},
			Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	e := w.firstEvent("warning")
	if !strings.Contains(strings.Join(e.Warnings, "\n"), "the lab's NAT holds what the lab did not add") {
		t.Fatalf("warning event: %+v", e)
	}
	if n := w.Count("drift_repaired"); n != 0 {
		t.Fatalf("watch repaired something: %+v", w.Last("drift_repaired"))
	}
	time.Sleep(3 * watchDebounce)
	if n := w.Count("warning"); n != 1 {
		t.Fatalf("%d warning events for one warning", n)
	}
}

func (w *watched) firstEvent(kind string) watch.Event {
	w.t.Helper()
	e, err := w.Wait(kind, 1, 10*time.Second)
	if err != nil {
		w.t.Fatal(err)
	}
	return e
}

// TestOneShotRefusedWhileWatched: a destroy or one-shot apply of a lab
// that `apply --watch` keeps would be undone by it a moment later (a new
// user's audit): it is refused, naming the watch, and changes nothing; a
// second watch of the lab is refused too; once the watch stops, destroy
// works.
func TestOneShotRefusedWhileWatched(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	e := newEnv(t, "../../examples/bridge.yaml", nil)
	args := func(a ...string) []string {
		return append([]string{"--netns", e.sandbox, "--prefix", e.prefix}, a...)
	}
	cmd := exec.Command(bin, args("-o", "json", "apply", "--watch", "../../examples/bridge.yaml")...)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A failure below stops the watch before the lab's cleanup, which it
	// would refuse while the watch runs.
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
			linux.Watcher(e.sandbox, "bridge", e.prefix) // clears the killed watch's registration
		}
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.Contains(sc.Text(), `"event":"applied"`) {
	}
	go func() {
		for sc.Scan() {
		}
	}()
	for _, verb := range [][]string{{"destroy"}, {"apply"}, {"apply", "--watch"}} {
		code, out, errOut := runTool(t, bin, args(append(verb, "../../examples/bridge.yaml")...)...)
		want := "keeps this lab in line with its file"
		if len(verb) == 2 {
			want = "watches this lab already"
		}
		if code != 1 || !strings.Contains(errOut, fmt.Sprintf("pid %d (netplan-lab", cmd.Process.Pid)) || !strings.Contains(errOut, want) {
			t.Fatalf("%v while watched: exit %d\n%s%s", verb, code, out, errOut)
		}
	}
	// With -o json, a script reading stdout gets a document saying why
	// (it got nothing: an outside audit).
	code, out, errOut := runTool(t, bin, args("-o", "json", "destroy", "../../examples/bridge.yaml")...)
	var doc struct {
		Error    string `json:"error"`
		ExitCode int    `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(out), &doc); code != 1 || err != nil || doc.ExitCode != 1 || !strings.Contains(doc.Error, "keeps this lab in line with its file") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("-o json destroy while watched: exit %d, %v\nstdout: %s\nstderr: %s", code, err, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(linux.NetnsDir, e.prefix+"c1")); err != nil {
		t.Fatalf("the refused destroy changed the lab: %v", err)
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	e.destroysAll(bin, "../../examples/bridge.yaml", "after the watch")
}

// TestWatchNameChangeUnderPrefix: under --prefix, a file whose name
// changes is refused naming the name (it said "name or prefix changed"
// with the file's empty prefix, not the one in use: an outside audit);
// the watch goes on, and stops on SIGINT.
func TestWatchNameChangeUnderPrefix(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	src := readExample(t, "veth-pair.yaml")
	file := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, file, nil)
	cmd := exec.Command(bin, "--netns", e.sandbox, "--prefix", e.prefix, "-o", "json", "apply", "--watch", "--destroy-on-exit", file)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	var got string
	for sc.Scan() {
		var ev struct {
			Kind   string   `json:"event"`
			Errors []string `json:"errors"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		switch ev.Kind {
		case "applied":
			renamed := strings.Replace(src, "name: veth-pair", "name: other-pair", 1)
			if renamed == src {
				t.Fatal("veth-pair.yaml has no 'name: veth-pair'")
			}
			os.WriteFile(file, []byte(renamed), 0o644)
		case "invalid_file":
			got = strings.Join(ev.Errors, "\n")
			cmd.Process.Signal(syscall.SIGINT)
		}
	}
	cmd.Wait()
	if want := file + `: name changed ("veth-pair" -> "other-pair"): a running watch keeps the lab it started with; restart it to move`; got != want {
		t.Fatalf("the rename: %q\nwant %q", got, want)
	}
	e.assertGone()
}

// TestWatchRepairKeepsHandAddedIPv6: in a namespace whose IPv6 is off by
// the lab's default, someone turns IPv6 on and adds an address to lo; the
// repair their event starts keeps IPv6 on (and says why) instead of
// taking the address. It took it: the repair planned with a clone of the
// desired state that had lost the IPv6 default (State.Clone went through
// JSON).
func TestWatchRepairKeepsHandAddedIPv6(t *testing.T) {
	w := startWatch(t, readExample(t, "bridge.yaml"))
	w.waitQuiet()
	w.in("c1", func() {
		for _, k := range []string{"all", "default", "lo"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("0"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		lo, _ := netlink.LinkByName("lo")
		a, _ := netlink.ParseAddr("fd00::9/128")
		if err := netlink.AddrAdd(lo, a); err != nil {
			t.Fatal(err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(strings.Join(w.Last("warning").Warnings, "\n"), `namespace "c1" keeps IPv6 on`) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning that c1 keeps IPv6 on; events: %+v", w.Events())
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.waitQuiet()
	for _, e := range w.Events() {
		if strings.Contains(strings.Join(e.Changes, "\n"), "disable_ipv6") {
			t.Fatalf("a repair changed the IPv6 switch over the hand-added address: %+v", e)
		}
	}
	w.in("c1", func() {
		lo, _ := netlink.LinkByName("lo")
		as, _ := netlink.AddrList(lo, netlink.FAMILY_V6)
		for _, a := range as {
			if a.IP.String() == "fd00::9" {
				return
			}
		}
		t.Fatalf("the hand-added fd00::9 on lo is gone: %v", as)
	})
}
