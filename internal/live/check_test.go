package live

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/internal/check"
	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/reconcile"
)

// checkEnv is netplan-lab check's view of the test's lab.
func (e *env) checkEnv() *check.Env {
	listen := []string{reconcile.HostNS}
	for _, n := range e.topo.Namespaces {
		if n.Name != reconcile.HostNS {
			listen = append(listen, n.Name)
		}
	}
	return &check.Env{Topo: e.topo, Open: e.k.OpenNetns, Listen: listen}
}

// fileChecks runs the file's checks: (each example has some) and fails
// on any that does not hold.
func (e *env) fileChecks() {
	e.t.Helper()
	if len(e.topo.Checks) == 0 {
		e.t.Fatalf("%s has no checks: every example proves what it teaches with some", e.topo.File)
	}
	results, err := check.Run(context.Background(), e.checkEnv())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range results {
		if !r.OK {
			e.t.Errorf("%s:%d: check %s -> %s %s: seen %s (landed %q), expected %s (lands %q): %s",
				e.topo.File, r.Line, r.From, r.To, r.Proto, r.Seen, r.Landed, r.Expect, r.Lands, r.Detail)
		}
	}
}

// TestCheckCommand: check passes and fails with the right exit status,
// names where a forwarded connection lands, prints JSON, and runs after
// apply --check; check --all is a matrix.
func TestCheckCommand(t *testing.T) {
	bin := binary(t)
	src, err := os.ReadFile("../../examples/published-port.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// A check that fails: the published port does not land in internet.
	failing := string(src) + "  - {from: internet, to: \"host:uplink\", proto: tcp, port: 8080, lands: internet}\n" +
		"  - {from: web, to: 198.51.100.2, expect: unreachable}\n"
	dir := t.TempDir()
	file := filepath.Join(dir, "pp.yaml")
	if err := os.WriteFile(file, src, 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, file, nil)
	code, out, errOut := e.cli(bin, "apply", "--check", file)
	if code != 0 || !strings.Contains(out, "ok   internet -> host:uplink (198.51.100.1) tcp/8080: reachable, landed in web (expected reachable, landing in web)") ||
		!strings.Contains(out, "4 of 4 checks hold.") {
		t.Fatalf("apply --check: %d\n%s%s", code, out, errOut)
	}
	defer e.destroy()
	// A server of the user's own on the container's port (as the
	// example's comment starts one): check cannot listen there, and
	// still says where the connection landed.
	var ln net.Listener
	e.in("web", func() {
		var err error
		if ln, err = net.Listen("tcp", ":80"); err != nil {
			t.Fatal(err)
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // says nothing, as an HTTP server waiting for a request
		}
	}()
	code, out, errOut = e.cli(bin, "check", file)
	ln.Close()
	if code != 0 || !strings.Contains(out, "tcp/8080: reachable, landed in web (expected reachable, landing in web)") {
		t.Fatalf("check with a real server in web: %d\n%s%s", code, out, errOut)
	}
	if err := os.WriteFile(file, []byte(failing), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = e.cli(bin, "check", file)
	if code != 1 || !strings.Contains(out, "FAIL internet -> host:uplink (198.51.100.1) tcp/8080: reachable, landed in web (expected reachable, landing in internet)") ||
		!strings.Contains(out, "FAIL web -> 198.51.100.2 icmp: reachable (expected unreachable)") ||
		!strings.Contains(out, "4 of 6 checks hold.") || !strings.Contains(errOut, "error: 2 checks of "+file+" did not hold") {
		t.Fatalf("check with two failing: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = e.cli(bin, "-o", "json", "check", file)
	var doc struct {
		Results []check.Result `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 1 || len(doc.Results) != 6 {
		t.Fatalf("check -o json: %d %v\n%s", code, err, out)
	}
	if r := doc.Results[4]; r.OK || r.Landed != "web" || r.Lands != "internet" || r.Address != "198.51.100.1" {
		t.Fatalf("json result: %+v", r)
	}
	code, out, errOut = e.cli(bin, "check", "--all", file)
	// web reaches internet (masquerade), internet reaches no one inside.
	if code != 1 || !strings.Contains(out, "from\\to") || !strings.Contains(out, "X") || !strings.Contains(errOut, "did not reach") {
		t.Fatalf("check --all: %d\n%s%s", code, out, errOut)
	}
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "from\\to") || !strings.Contains(lines[0], "internet") || len(lines) < 4 {
		t.Fatalf("matrix:\n%s", out)
	}
}

// TestRouterNeedsForwarding: router.yaml's checks hold, and fail across
// the router (not to its near side) once ip_forward is 0.
func TestRouterNeedsForwarding(t *testing.T) {
	src, err := os.ReadFile("../../examples/router.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "router.yaml", src)
	e.mustApply()
	defer e.destroy()
	e.fileChecks()
	e.load("router.yaml", []byte(strings.Replace(string(src), `net.ipv4.ip_forward: "1"`, `net.ipv4.ip_forward: "0"`, 1)))
	e.mustApply()
	results, err := check.Run(context.Background(), e.checkEnv())
	if err != nil {
		t.Fatal(err)
	}
	seen := []string{}
	for _, r := range results {
		seen = append(seen, r.Seen)
	}
	if strings.Join(seen, " ") != "unreachable unreachable reachable" {
		t.Fatalf("with ip_forward 0: %v (ns0->ns1, ns1->ns0 tcp, ns0->router's far side)", seen)
	}
	e.tcpFails("ns0", "192.168.89.2:80")
}

// TestVethSelfNeedsItsSysctls: without rp_filter 0 and accept_local 1,
// the pair does not answer itself.
func TestVethSelfNeedsItsSysctls(t *testing.T) {
	src := `name: veth-self
namespaces:
  solo: {}
links:
  - a: {namespace: solo, name: veth0, addresses: [192.168.1.1/24]}
    b: {namespace: solo, name: veth1, addresses: [192.168.1.2/24]}
checks:
  - {from: solo, to: 192.168.1.2, dev: veth0}
`
	e := newEnv(t, "veth-self.yaml", []byte(src))
	e.mustApply()
	defer e.destroy()
	results, err := check.Run(context.Background(), e.checkEnv())
	if err != nil {
		t.Fatal(err)
	}
	if results[0].Seen != "unreachable" {
		t.Fatalf("without the sysctls the pair answered itself: %+v", results[0])
	}
}

// TestExecShellNames: exec passes stdin, stdout and the exit status
// through; inside, every lab namespace's name resolves (the hosts file
// apply writes) and /sys is the namespace's; shell takes commands on
// stdin; destroy removes the hosts files.
func TestExecShellNames(t *testing.T) {
	bin := binary(t)
	file := "../../examples/bridge.yaml"
	e := newEnv(t, file, nil)
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.destroy()
	hostsOf := func(ns string) string {
		b, _ := os.ReadFile(filepath.Join("/etc/netns", e.k.KernelName(ns), "hosts"))
		return string(b)
	}
	// The namespaces the lab makes share one file, through links; the
	// sandbox has a file of its own.
	shared, err := os.Readlink(filepath.Join("/etc/netns", e.k.KernelName("c1")))
	if err != nil || !strings.HasPrefix(shared, ".netplan-lab/") {
		t.Fatalf("/etc/netns/%s should be a link into .netplan-lab/: %q, %v", e.k.KernelName("c1"), shared, err)
	}
	if to, _ := os.Readlink(filepath.Join("/etc/netns", e.k.KernelName("c2"))); to != shared {
		t.Fatalf("c2's hosts link %q, c1's %q: the lab's namespaces should share one file", to, shared)
	}
	defer func() {
		if _, err := os.Stat(filepath.Join("/etc/netns", shared)); !os.IsNotExist(err) {
			t.Errorf("destroy left the lab's shared hosts directory /etc/netns/%s (%v)", shared, err)
		}
	}()
	for _, ns := range []string{"host", "c1", "c2"} {
		if h := hostsOf(ns); !strings.Contains(h, "10.55.66.3\tc2\n") || !strings.Contains(h, "10.55.66.2\tc1-eth0\n") || !strings.Contains(h, "10.55.66.1\thost\n") {
			t.Fatalf("hosts file of %s:\n%s", ns, h)
		}
	}
	run := func(stdin string, args ...string) (int, string, string) {
		cmd := exec.Command(bin, append([]string{"--netns", e.sandbox, "--prefix", e.prefix}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		return runCmd(t, cmd)
	}
	if code, _, _ := run("", "exec", file, "c1", "--", "sh", "-c", "exit 7"); code != 7 {
		t.Fatalf("exit status: %d, want 7", code)
	}
	if code, out, errOut := run("hello\n", "exec", file, "c2", "--", "cat"); code != 0 || out != "hello\n" {
		t.Fatalf("stdin/stdout: %d %q %s", code, out, errOut)
	}
	if code, _, errOut := run("", "exec", file, "c2", "--", "sh", "-c", "echo oops >&2; exit 1"); code != 1 || errOut != "oops\n" {
		t.Fatalf("stderr: %d %q", code, errOut)
	}
	// Another lab's file with a namespace of that name, under the same
	// prefix in another sandbox: not this lab's c1, refused (an outside
	// audit: exec ran in it).
	other := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(other, []byte("name: other\nnamespaces: {c1: {}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	elsewhere := exec.Command(bin, "--netns", e.sandbox+"-x", "--prefix", e.prefix, "exec", other, "c1", "--", "true")
	if code, _, errOut := runCmd(t, elsewhere); code != 1 || !strings.Contains(errOut, "namespace c1 (netns "+e.k.KernelName("c1")+") is not this lab's: it belongs to lab \"bridge\"") {
		t.Fatalf("exec in another lab's namespace: %d %s", code, errOut)
	}
	// check too (an outside audit: it ran in them).
	elsewhere = exec.Command(bin, "--netns", e.sandbox+"-x", "--prefix", e.prefix, "check", file)
	hint := fmt.Sprintf("Hint: lab \"bridge\" (sandbox %s, prefix %s) is there (2 namespaces); to use it: netplan-lab --netns %s --prefix %s check FILE ...", e.sandbox, e.prefix, e.sandbox, e.prefix)
	if code, out, errOut := runCmd(t, elsewhere); code != 1 || !strings.Contains(errOut, "is not this lab's: it belongs to lab \"bridge\"") || !strings.Contains(errOut, hint) {
		t.Fatalf("check in another lab's namespaces: %d %s%s\nwant the hint %q", code, out, errOut, hint)
	}
	var mac string
	e.in("c1", func() {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		mac = l.Attrs().HardwareAddr.String()
	})
	if code, out, errOut := run("", "exec", file, "c1", "--", "cat", "/sys/class/net/eth0/address"); code != 0 || strings.TrimSpace(out) != mac {
		t.Fatalf("/sys inside exec: %d %q (want %s) %s", code, out, mac, errOut)
	}
	if _, err := os.Stat("/etc/hosts"); err == nil {
		if code, out, errOut := run("", "exec", file, "c1", "--", "ping", "-c1", "-W2", "c2"); code != 0 || !strings.Contains(out, "10.55.66.3") {
			t.Fatalf("ping c2 by name inside exec: %d\n%s%s", code, out, errOut)
		}
	} else {
		t.Log("no /etc/hosts on this machine (the test-kernel guest): name resolution not tried")
	}
	if code, out, errOut := run("echo \"in $NETPLAN_LAB_NS\"\nexit 3\n", "shell", file, "c1"); code != 3 || !strings.Contains(out, "in c1") {
		t.Fatalf("shell via stdin: %d %q %s", code, out, errOut)
	}
	// exec becomes the command: a signal to it is the command's.
	sl := exec.Command(bin, "--netns", e.sandbox, "--prefix", e.prefix, "exec", file, "c1", "--", "sleep", "100")
	if err := sl.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	sl.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- sl.Wait() }()
	select {
	case err := <-done:
		if ws, ok := sl.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			t.Fatalf("exec after SIGTERM: %v (%v)", err, sl.ProcessState)
		}
	case <-time.After(5 * time.Second):
		sl.Process.Kill()
		t.Fatal("exec ignored SIGTERM: the command still runs")
	}
	if code, _, errOut := run("", "exec", file, "c1", "true"); code != 1 || !strings.Contains(errOut, "the command goes after --") {
		t.Fatalf("exec without --: %d %s", code, errOut)
	}
	if code, _, errOut := run("", "exec", file, "nope", "--", "true"); code != 1 || !strings.Contains(errOut, `namespace "nope" is not in`) {
		t.Fatalf("exec in an unknown namespace: %d %s", code, errOut)
	}
	if code, out, errOut := e.cli(bin, "destroy", file); code != 0 {
		t.Fatalf("destroy: %d\n%s%s", code, out, errOut)
	}
	for _, ns := range []string{"host", "c1", "c2"} {
		if _, err := os.Stat(filepath.Join("/etc/netns", e.k.KernelName(ns))); !os.IsNotExist(err) {
			t.Errorf("destroy left /etc/netns/%s (%v)", e.k.KernelName(ns), err)
		}
	}
}

// TestWithoutSandboxSaysSoAndRestoresSysctls runs the command with no
// --netns from inside a namespace of the test's own (to it, that is "this
// machine"): the plan says first that it changes the machine's namespace,
// and destroy puts back the sysctl the lab set.
func TestWithoutSandboxSaysSoAndRestoresSysctls(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	src := `name: hostsys
namespaces:
  host:
    sysctls:
      net.ipv4.ip_forward: "1"
  c1: {}
links:
  - a: {namespace: c1, name: eth0, addresses: [10.66.0.2/24]}
    b: {namespace: host, name: veth-c1, addresses: [10.66.0.1/24]}
`
	dir := t.TempDir()
	file := filepath.Join(dir, "hs.yaml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, file, []byte(src))
	if err := newNamedNS(e.sandbox); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		return runCmd(t, exec.Command("nsenter", append([]string{"--net=" + e.nsPath("host"), bin, "--prefix", e.prefix}, args...)...))
	}
	forward := func() string {
		b, err := exec.Command("nsenter", "--net="+e.nsPath("host"), "cat", "/proc/sys/net/ipv4/ip_forward").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if forward() != "0" {
		t.Fatalf("a new namespace forwards already")
	}
	code, out, errOut := run("plan", file)
	if first, _, _ := strings.Cut(out, "\n"); code != 0 || first != "warning: no --netns: this plan changes this machine's own network namespace (host: 1 change); destroy undoes them and puts its sysctls back" {
		t.Fatalf("plan: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run("apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	if forward() != "1" {
		t.Fatal("apply did not set ip_forward")
	}
	if code, out, errOut := run("destroy", file); code != 0 {
		t.Fatalf("destroy: %d\n%s%s", code, out, errOut)
	}
	if got := forward(); got != "0" {
		t.Fatalf("after destroy ip_forward is %s, want 0 as before the lab", got)
	}
	if err := linux.DeleteNamed(e.sandbox); err != nil {
		t.Fatal(err)
	}
}

// TestPlanRefusesWhatTheKernelLacks: plan (not only apply) exits 1 on an
// unknown sysctl, with did-you-mean, and on a kind the kernel cannot make.
func TestPlanRefusesWhatTheKernelLacks(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "typo.yaml")
	src := "name: typo\nnamespaces:\n  a:\n    sysctls:\n      net.ipv4.ip_foward: \"1\"\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, file, nil)
	code, out, errOut := e.cli(bin, "plan", file)
	if want := file + ":5:7: namespaces.a.sysctls.net.ipv4.ip_foward: this kernel has no sysctl net.ipv4.ip_foward (did you mean net.ipv4.ip_forward?)"; code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("plan with a sysctl typo: %d\n%s%s\nwant %s", code, out, errOut, want)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(src, `ip_foward: "1"`, `ip_forward: "yes"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = e.cli(bin, "plan", file)
	if want := file + `:5:7: namespaces.a.sysctls.net.ipv4.ip_forward: the kernel refuses "yes" for net.ipv4.ip_forward (invalid argument)`; code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("plan with a value the kernel refuses: %d\n%s%s\nwant %s", code, out, errOut, want)
	}
	// An interface's neigh key is known: a new namespace has no
	// neigh.default to ask (an outside audit: every neigh key was refused).
	neigh := "name: typo\nnamespaces:\n  a:\n    sysctls:\n      net.ipv4.neigh.eth0.gc_stale_time: \"120\"\nlinks:\n  - a: {namespace: a, name: eth0}\n    b: {namespace: host, name: v0}\n"
	if err := os.WriteFile(file, []byte(neigh), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut = e.cli(bin, "plan", file); code != 0 || !strings.Contains(out, "net.ipv4.neigh.eth0.gc_stale_time") {
		t.Fatalf("plan with an interface's neigh sysctl: %d\n%s%s", code, out, errOut)
	}
	// A value the kernel keeps otherwise (ms in jiffies) is refused
	// before apply, which could never see it as written (an outside
	// audit: every apply failed).
	if err := os.WriteFile(file, []byte(strings.Replace(neigh, `gc_stale_time: "120"`, `base_reachable_time_ms: "12345"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = e.cli(bin, "plan", file)
	if kept := keptIn(t, "net/ipv4/neigh/lo/base_reachable_time_ms", "12345"); kept == "12345" {
		// A kernel of HZ 1000 keeps every ms: nothing to refuse.
		if code != 0 {
			t.Fatalf("plan with a value the kernel keeps: %d\n%s%s", code, out, errOut)
		}
	} else if want := `the kernel refuses "12345" for net.ipv4.neigh.eth0.base_reachable_time_ms (it keeps "` + kept + `" instead: write "` + kept + `")`; code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("plan with a value the kernel rounds: %d\n%s%s\nwant %s", code, out, errOut, want)
	}
	if linux.Probe("ipvlan") == nil {
		return // this kernel has ipvlan: nothing more to refuse
	}
	code, out, errOut = e.cli(bin, "plan", "../../examples/ipvlan-l2.yaml")
	if code != 1 || !regexp.MustCompile(`unsupported: \.\./\.\./examples/ipvlan-l2\.yaml:\d+:\d+: ipvlans\[0\]: this kernel cannot create ipvlan interfaces \(it needs CONFIG_IPVLAN; the kernel said: `).MatchString(out) {
		t.Fatalf("plan of ipvlan here: %d\n%s%s", code, out, errOut)
	}
}

// keptIn writes value to /proc/sys/key in a new namespace of its own and
// says what the kernel keeps.
func keptIn(t *testing.T, key, value string) string {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	defer netns.Set(orig)
	if err := os.WriteFile("/proc/sys/"+key, []byte(value), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/sys/" + key)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestPath: path follows the kernel's lookups through router.yaml's
// router, and names the reason it stops once ip_forward is 0; through a
// port forward it shows the DNAT and where it lands.
func TestPath(t *testing.T) {
	bin := binary(t)
	src, err := os.ReadFile("../../examples/router.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "router.yaml")
	if err := os.WriteFile(file, src, 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, file, nil)
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.destroy()
	code, out, errOut := e.cli(bin, "path", file, "ns0", "ns1")
	want := []string{
		"path ns0 -> 192.168.89.2 (icmp)",
		" 1  ns0, out eth0 (via 192.168.88.1), src 192.168.88.2",
		"      over ns0:eth0 -> host:veth-ns0 -> host:br0 (bridge)",
		" 2  host, in br0, out br1 (on-link)",
		"      over host:br1 (bridge) -> host:veth-ns1 -> ns1:eth0",
		" 3  ns1, in eth0",
		"delivered: 192.168.89.2 is an address of ns1",
	}
	if code != 0 || strings.TrimSpace(out) != strings.Join(want, "\n") {
		t.Fatalf("path through the router: %d\n%s%s\nwant:\n%s", code, out, errOut, strings.Join(want, "\n"))
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(src), `net.ipv4.ip_forward: "1"`, `net.ipv4.ip_forward: "0"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = e.cli(bin, "-o", "json", "path", file, "ns0", "ns1")
	var r struct {
		Hops []struct {
			Namespace string `json:"namespace"`
			In        string `json:"in"`
		} `json:"hops"`
		Result string `json:"result"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 || r.Result != "dropped" || len(r.Hops) != 2 ||
		r.Hops[1].Namespace != "host" || r.Hops[1].In != "br0" ||
		r.Reason != "ip_forward is 0 in namespace host (net.ipv4.ip_forward): it does not route packets that are not its own" {
		t.Fatalf("path with ip_forward 0: %d %v\n%s", code, err, out)
	}
	// The kernel routes by the in-interface's forwarding: br0's and
	// br1's turned on by hand, with ip_forward 0, forward (an outside
	// audit: path said dropped where ping passed; the reply comes in on
	// br1).
	e.in("host", func() {
		for _, br := range []string{"br0", "br1"} {
			if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+br+"/forwarding", []byte("1"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
	if code, out, _ := e.cli(bin, "path", file, "ns0", "ns1"); code != 0 || !strings.Contains(out, "delivered: 192.168.89.2 is an address of ns1") {
		t.Fatalf("path with ip_forward 0 and br0's forwarding 1: %d\n%s", code, out)
	}
	if err := exec.Command("nsenter", "--net="+e.nsPath("ns0"), "ping", "-c1", "-W2", "192.168.89.2").Run(); err != nil {
		t.Fatalf("ping ns0 -> ns1 with br0's forwarding 1: %v (path said delivered)", err)
	}
	code, out, _ = e.cli(bin, "path", file, "host", "10.99.0.1")
	if code != 1 || !strings.HasSuffix(out, "no route: namespace host has no route to 10.99.0.1\n") {
		t.Fatalf("path to nowhere: %d\n%s", code, out)
	}
}

// TestLs: two labs, one in a sandbox and one beside it under another
// prefix, are both listed from the kernel's marks, with their namespaces,
// interfaces and NAT.
func TestLs(t *testing.T) {
	bin := binary(t)
	a := newEnv(t, "../../examples/nat.yaml", nil)
	b := newEnv(t, "../../examples/bridge.yaml", nil)
	for _, e := range []*env{a, b} {
		if code, out, errOut := e.cli(bin, "apply", e.topo.File); code != 0 {
			t.Fatalf("apply %s: %d\n%s%s", e.topo.File, code, out, errOut)
		}
		defer e.destroy()
	}
	code, out, errOut := runCmd(t, exec.Command(bin, "ls", "-o", "json"))
	var doc struct {
		Labs []linux.LabInfo `json:"labs"`
	}
	if err := json.Unmarshal([]byte(out), &doc); code != 0 || err != nil {
		t.Fatalf("ls -o json: %d %v\n%s%s", code, err, out, errOut)
	}
	find := func(e *env) *linux.LabInfo {
		for i, l := range doc.Labs {
			if l.Sandbox == e.sandbox && l.Prefix == e.prefix {
				return &doc.Labs[i]
			}
		}
		t.Fatalf("lab of %s (sandbox %s, prefix %s) not listed:\n%s", e.topo.File, e.sandbox, e.prefix, out)
		return nil
	}
	la, lb := find(a), find(b)
	if la.Name != "nat" || strings.Join(la.Namespaces, " ") != a.prefix+"internet "+a.prefix+"ns0 "+a.prefix+"ns1" ||
		la.Links != 7 || len(la.NAT) != 1 || la.NAT[0] != a.sandbox {
		t.Errorf("nat lab: %+v", *la)
	}
	if lb.Name != "bridge" || strings.Join(lb.Namespaces, " ") != b.prefix+"c1 "+b.prefix+"c2" || lb.Links != 5 || len(lb.NAT) != 0 {
		t.Errorf("bridge lab: %+v", *lb)
	}
	code, out, _ = runCmd(t, exec.Command(bin, "ls"))
	if code != 0 || !strings.HasPrefix(out, "NAME") || !strings.Contains(out, b.sandbox) || !strings.Contains(out, a.sandbox) {
		t.Fatalf("ls: %d\n%s", code, out)
	}
}

// TestHostsFileSharedSandbox: two labs in one sandbox each have their names
// in the sandbox's hosts file; destroying one leaves the other's.
func TestHostsFileSharedSandbox(t *testing.T) {
	bin := binary(t)
	a := newEnv(t, "../../examples/bridge.yaml", nil)
	b := newEnv(t, "../../examples/nat.yaml", nil)
	b.sandbox = a.sandbox // the same sandbox, another prefix
	run := func(e *env, args ...string) {
		t.Helper()
		if code, out, errOut := e.cli(bin, args...); code != 0 {
			t.Fatalf("%v: %d\n%s%s", args, code, out, errOut)
		}
	}
	run(a, "apply", a.topo.File)
	run(b, "apply", b.topo.File)
	path := filepath.Join("/etc/netns", a.sandbox, "hosts")
	read := func() string {
		s, _ := os.ReadFile(path)
		return string(s)
	}
	if h := read(); !strings.Contains(h, "10.55.66.3\tc2\n") || !strings.Contains(h, "192.168.88.2\tns0\n") {
		t.Fatalf("the sandbox's hosts file should name both labs:\n%s", h)
	}
	if _, err := os.Stat("/etc/hosts"); err == nil { // the test-kernel guest has none to mount over
		if code, out, errOut := b.cli(bin, "exec", b.topo.File, "host", "--", "cat", "/etc/hosts"); code != 0 || !strings.Contains(out, "ns0") || !strings.Contains(out, "c2") {
			t.Fatalf("exec in the shared sandbox: %d\n%s%s", code, out, errOut)
		}
	}
	run(b, "destroy", b.topo.File)
	if h := read(); !strings.Contains(h, "10.55.66.3\tc2\n") || strings.Contains(h, "ns0") {
		t.Fatalf("after destroying one lab:\n%s", h)
	}
	run(a, "destroy", a.topo.File)
	if _, err := os.Stat(filepath.Join("/etc/netns", a.sandbox)); !os.IsNotExist(err) {
		t.Fatalf("after destroying both, the sandbox's hosts directory is still there (%v)", err)
	}
}

// TestIPv6Default: a namespace the file gives no IPv6 has none (no
// link-local address either); ipv6: true keeps link-local; an IPv6
// address added later works at once, and IPv6 goes off again when the
// file's last IPv6 address goes.
func TestIPv6Default(t *testing.T) {
	src := `name: v6
namespaces: {a: {}, b: {ipv6: true}, c: {}}
links:
  - a: {namespace: a, name: eth0, addresses: [10.61.0.1/24]}
    b: {namespace: b, name: eth0, addresses: [10.61.0.2/24]}
  - a: {namespace: a, name: eth1, addresses: [10.61.1.1/24]}
    b: {namespace: c, name: eth1, addresses: [10.61.1.2/24, "fd61::2/64"]}
`
	e := newEnv(t, "v6.yaml", []byte(src))
	res := e.mustApply()
	defer e.destroy()
	for _, c := range res.Plan.Changes {
		if c.Kind == reconcile.KindSysctl {
			t.Errorf("IPv6 was switched by a sysctl step of its own, not as the namespace was made: %s", c.Describe())
		}
	}
	e.assertNoOp()
	v6addrs := func(ns, dev string) []string {
		var out []string
		e.in(ns, func() {
			l, err := netlink.LinkByName(dev)
			if err != nil {
				t.Fatal(err)
			}
			as, err := netlink.AddrList(l, netlink.FAMILY_V6)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range as {
				out = append(out, a.IPNet.String())
			}
		})
		return out
	}
	readSys := func(ns, key string) string {
		sc, err := e.k.ReadSysctls(ns, []string{key})
		if err != nil {
			t.Fatal(err)
		}
		return sc[key]
	}
	if got := v6addrs("a", "eth0"); len(got) != 0 || readSys("a", "net.ipv6.conf.eth0.disable_ipv6") != "1" {
		t.Fatalf("a has IPv6: %v (disable_ipv6 %s)", got, readSys("a", "net.ipv6.conf.eth0.disable_ipv6"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for got := v6addrs("b", "eth0"); len(got) == 0 || !strings.HasPrefix(got[0], "fe80::"); got = v6addrs("b", "eth0") {
		if time.Now().After(deadline) {
			t.Fatalf("b (ipv6: true) has no link-local address: %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// c has IPv6 from the file: it works (as veth-pair.yaml's does).
	e.tcp("c", "c", "[fd61::2]:80", "[fd61::2]:80")

	// An IPv6 address comes to a: IPv6 on first, then the address.
	withV6 := strings.Replace(src, "addresses: [10.61.1.1/24]", `addresses: [10.61.1.1/24, "fd61::1/64"]`, 1)
	e.load("v6.yaml", []byte(withV6))
	e.mustApply()
	e.assertNoOp()
	e.tcp("c", "a", "[fd61::2]:81", "[fd61::2]:81")
	// And goes: off again, nothing left to do.
	e.load("v6.yaml", []byte(src))
	e.mustApply()
	e.assertNoOp()
	if readSys("a", "net.ipv6.conf.all.disable_ipv6") != "1" || len(v6addrs("a", "eth1")) != 0 {
		t.Fatalf("a kept IPv6: %v", v6addrs("a", "eth1"))
	}

	// Turned on by hand: observation takes the switch from the interfaces
	// where they agree with the file, so this shows there, and apply
	// turns it off again.
	writeSys := func(ns, key, v string) {
		e.in(ns, func() {
			if err := os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
	writeSys("a", "net.ipv6.conf.all.disable_ipv6", "0") // the kernel sets default and every interface too
	var drift []string
	for _, c := range e.plan().Changes {
		drift = append(drift, c.Describe())
	}
	if len(drift) != 2 || !strings.Contains(strings.Join(drift, "\n"), "net.ipv6.conf.all.disable_ipv6") {
		t.Fatalf("IPv6 turned on by hand in a: the plan is %q", drift)
	}
	e.mustApply()
	e.assertNoOp()
	if readSys("a", "net.ipv6.conf.eth0.disable_ipv6") != "1" {
		t.Fatal("apply left IPv6 on on a's eth0")
	}
	// Only "default" turned on by hand changes no interface; it shows with
	// the next interface made there, and that apply puts it right.
	writeSys("a", "net.ipv6.conf.default.disable_ipv6", "0")
	e.load("v6.yaml", []byte(src+"  - a: {namespace: a, name: eth2}\n    b: {namespace: c, name: eth2}\n"))
	e.mustApply()
	e.assertNoOp()
	if readSys("a", "net.ipv6.conf.default.disable_ipv6") != "1" || readSys("a", "net.ipv6.conf.eth2.disable_ipv6") != "1" {
		t.Fatalf("after the next interface: default.disable_ipv6 %s, eth2's %s; want 1 and 1",
			readSys("a", "net.ipv6.conf.default.disable_ipv6"), readSys("a", "net.ipv6.conf.eth2.disable_ipv6"))
	}
}

// TestAuditFollowUps: what the second audit found, on the real kernel.
func TestAuditFollowUps(t *testing.T) {
	bin := binary(t)
	// ip_forward rewrites every interface's forwarding: an interface's
	// own 0 is set again after it, in the first apply.
	src, err := os.ReadFile("../../examples/router.yaml")
	if err != nil {
		t.Fatal(err)
	}
	withOwn := strings.Replace(string(src), `      net.ipv4.ip_forward: "1"`, `      net.ipv4.ip_forward: "1"`+"\n"+`      net.ipv4.conf.br0.forwarding: "0"`, 1)
	off := strings.Replace(withOwn, `net.ipv4.ip_forward: "1"`, `net.ipv4.ip_forward: "0"`, 1)
	e := newEnv(t, "router.yaml", []byte(withOwn))
	e.mustApply()
	defer e.destroy()
	e.assertNoOp()
	e.load("router.yaml", []byte(off))
	e.mustApply()
	e.assertNoOp()
	e.load("router.yaml", []byte(withOwn))
	e.mustApply()
	e.assertNoOp()

	// A check that expects a port closed is not answered by a listener
	// that another check of the same port needs elsewhere.
	dir := t.TempDir()
	file := filepath.Join(dir, "b.yaml")
	b, err := os.ReadFile("../../examples/bridge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(b), "name: bridge\n", "name: bridge-aud\n", 1) +
		"  - {from: c1, to: \"host:hwchiu0\", proto: tcp, port: 80, expect: unreachable}\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newEnv(t, file, nil)
	code, out, errOut := f.cli(bin, "apply", "--check", file)
	f.destroy()
	if code != 0 || !strings.Contains(out, "ok   c1 -> host:hwchiu0 (10.55.66.1) tcp/80: unreachable (expected unreachable)") {
		t.Fatalf("apply --check: %d\n%s%s", code, out, errOut)
	}

	// path: the source of a connection the output chain forwards is
	// chosen for the address before the rewrite.
	g := newEnv(t, "../../examples/published-port.yaml", nil)
	if code, out, errOut := g.cli(bin, "apply", g.topo.File); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer g.destroy()
	code, out, _ = g.cli(bin, "path", "--proto", "tcp", "--port", "8080", g.topo.File, "host", "host:uplink")
	if code != 0 || !strings.Contains(out, ", src 198.51.100.1\n") || !strings.Contains(out, "delivered: 172.18.0.2 is an address of web") {
		t.Fatalf("path through the output chain's DNAT: %d\n%s", code, out)
	}
}

// TestPathVXLANLocalGone: a VXLAN whose local address is no longer in its
// namespace drops what it would carry, and path says so.
func TestPathVXLANLocalGone(t *testing.T) {
	bin := binary(t)
	e := newEnv(t, "../../examples/overlay.yaml", nil)
	if code, out, errOut := e.cli(bin, "apply", e.topo.File); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.destroy()
	e.in("host1", func() {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		old, _ := netlink.ParseAddr("192.168.111.128/24")
		nw, _ := netlink.ParseAddr("192.168.111.200/24")
		if err := netlink.AddrDel(l, old); err != nil {
			t.Fatal(err)
		}
		if err := netlink.AddrAdd(l, nw); err != nil {
			t.Fatal(err)
		}
	})
	code, out, _ := e.cli(bin, "path", e.topo.File, "c1", "c2")
	if code != 1 || !strings.Contains(out, "dropped: the VXLAN host1:vx0 sends from local 192.168.111.128, which is no address of namespace host1 any more") {
		t.Fatalf("path with the VXLAN's local address gone: %d\n%s", code, out)
	}
}

// TestHostsFromEarlierVersions: a namespace's /etc/netns directory that
// holds only a hosts file of netplan-lab's (as versions before the shared
// file wrote) becomes a link to the lab's shared file; one that holds a
// file of the user's keeps it and gets the lab's section in a hosts file
// of its own, which destroy removes, leaving the user's file.
func TestHostsFromEarlierVersions(t *testing.T) {
	bin := binary(t)
	file := "../../examples/bridge.yaml"
	e := newEnv(t, file, nil)
	c1 := filepath.Join("/etc/netns", e.k.KernelName("c1"))
	c2 := filepath.Join("/etc/netns", e.k.KernelName("c2"))
	defer os.RemoveAll(c1)
	defer os.RemoveAll(c2)
	old := "# netplan-lab hosts file: each lab's names between its BEGIN and END lines (apply writes them, destroy removes them)\n" +
		"127.0.0.1\tlocalhost\n# BEGIN " + e.k.Mark() + "\n10.9.9.9\tstale\n# END " + e.k.Mark() + "\n"
	for _, d := range []string{c1, c2} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "hosts"), []byte(old), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(c2, "resolv.conf"), []byte("nameserver 10.55.66.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.destroy()
	if to, err := os.Readlink(c1); err != nil || !strings.HasPrefix(to, ".netplan-lab/") {
		t.Fatalf("c1's old hosts directory should now be a link to the shared file: %q, %v", to, err)
	}
	if fi, err := os.Lstat(c2); err != nil || !fi.IsDir() {
		t.Fatalf("c2's directory, which has the user's resolv.conf, should stay a directory: %v, %v", fi, err)
	}
	for _, d := range []string{c1, c2} {
		h, _ := os.ReadFile(filepath.Join(d, "hosts"))
		if !strings.Contains(string(h), "10.55.66.3\tc2\n") || strings.Contains(string(h), "stale") {
			t.Fatalf("%s/hosts:\n%s", d, h)
		}
	}
	if code, out, errOut := e.cli(bin, "destroy", file); code != 0 {
		t.Fatalf("destroy: %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Lstat(c1); !os.IsNotExist(err) {
		t.Errorf("destroy left %s (%v)", c1, err)
	}
	if _, err := os.Stat(filepath.Join(c2, "hosts")); !os.IsNotExist(err) {
		t.Errorf("destroy left %s/hosts (%v)", c2, err)
	}
	if b, err := os.ReadFile(filepath.Join(c2, "resolv.conf")); err != nil || string(b) != "nameserver 10.55.66.1\n" {
		t.Errorf("destroy touched the user's %s/resolv.conf: %q, %v", c2, b, err)
	}
}

// TestIPv6OffWhenMTUReachesIPv6: an interface below IPv6's minimum MTU has
// no IPv6 at all; raised past it, it takes the namespace's "default". With
// "default" turned on by hand, the apply that raises the MTU must still
// leave IPv6 off on it.
func TestIPv6OffWhenMTUReachesIPv6(t *testing.T) {
	src := `name: mtu6
namespaces: {a: {}, b: {}}
links:
  - a: {namespace: a, name: eth0, addresses: [10.62.0.1/24]}
    b: {namespace: b, name: eth0, addresses: [10.62.0.2/24]}
    mtu: 1200
`
	e := newEnv(t, "mtu6.yaml", []byte(src))
	e.mustApply()
	defer e.destroy()
	e.in("a", func() {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("0"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	e.load("mtu6.yaml", []byte(strings.Replace(src, "mtu: 1200", "mtu: 1500", 1)))
	e.mustApply()
	e.assertNoOp()
	sc, err := e.k.ReadSysctls("a", []string{"net.ipv6.conf.eth0.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"})
	if err != nil {
		t.Fatal(err)
	}
	if sc["net.ipv6.conf.eth0.disable_ipv6"] != "1" || sc["net.ipv6.conf.default.disable_ipv6"] != "1" {
		t.Fatalf("after the MTU reached 1280 with default turned on by hand: %v; want IPv6 off on eth0 and default 1", sc)
	}
}

// TestHostsFilesModesAndLeftovers: hosts files are readable by any user
// whatever the umask; a sandbox whose /etc/netns entry is a link (the
// user's) is not written through; the temporary file a killed write left
// in the sandbox's directory goes with destroy.
func TestHostsFilesModesAndLeftovers(t *testing.T) {
	bin := binary(t)
	file := "../../examples/bridge.yaml"
	e := newEnv(t, file, nil)
	old := syscall.Umask(0o077)
	code, out, errOut := e.cli(bin, "apply", file)
	syscall.Umask(old)
	if code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.destroy()
	shared, err := os.Readlink(filepath.Join("/etc/netns", e.k.KernelName("c1")))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{
		filepath.Join("/etc/netns", shared):             0o755 | os.ModeDir,
		filepath.Join("/etc/netns", shared, "hosts"):    0o644,
		filepath.Join("/etc/netns", e.sandbox):          0o755 | os.ModeDir,
		filepath.Join("/etc/netns", e.sandbox, "hosts"): 0o644,
		filepath.Join("/etc/netns", ".netplan-lab"):     0o755 | os.ModeDir,
	} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s: %v, %v; want mode %v (apply ran under umask 077)", path, fi.Mode(), err, want)
		}
	}
	// What a run killed between writing and renaming leaves.
	tmp := filepath.Join("/etc/netns", e.sandbox, "hosts.netplan-lab.tmp")
	if err := os.WriteFile(tmp, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := e.cli(bin, "destroy", file); code != 0 {
		t.Fatalf("destroy: %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join("/etc/netns", e.sandbox)); !os.IsNotExist(err) {
		t.Errorf("destroy left /etc/netns/%s (%v)", e.sandbox, err)
	}

	// The sandbox's entry is a link of the user's: left alone.
	mine := t.TempDir()
	link := filepath.Join("/etc/netns", e.sandbox)
	_, err = os.Stat("/etc/netns")
	madeHere := os.IsNotExist(err)
	if err := os.MkdirAll("/etc/netns", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(mine, link); err != nil {
		t.Fatal(err)
	}
	defer func() {
		os.Remove(link)
		if madeHere {
			// The test made /etc/netns, as a user would: netplan-lab
			// leaves it (it did not make it), so the test removes it.
			os.Remove("/etc/netns")
		}
	}()
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 || !strings.Contains(out, "warning: the lab's names are not in /etc/netns/"+e.sandbox+": it is a link to "+mine) {
		t.Fatalf("apply with the sandbox's entry a link of the user's should say the names are not there: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := e.cli(bin, "destroy", file); code != 0 {
		t.Fatalf("destroy: %d\n%s%s", code, out, errOut)
	}
	if entries, _ := os.ReadDir(mine); len(entries) != 0 {
		t.Errorf("the lab wrote through the user's link /etc/netns/%s into %s: %v", e.sandbox, mine, entries)
	}
	if to, err := os.Readlink(link); err != nil || to != mine {
		t.Errorf("the user's link was changed: %q, %v", to, err)
	}
}

// TestVerboseStageTimes: -v says how long each stage took, for plan and
// show as for apply (the numbers docs/benchmarks.md quotes come from these lines).
func TestVerboseStageTimes(t *testing.T) {
	bin := binary(t)
	file := "../../examples/bridge.yaml"
	e := newEnv(t, file, nil)
	stages := func(args ...string) []string {
		t.Helper()
		code, out, errOut := e.cli(bin, append([]string{"-v"}, args...)...)
		if code != 0 && !(args[0] == "plan" && code == 2) {
			t.Fatalf("%v: %d\n%s%s", args, code, out, errOut)
		}
		var got []string
		for _, line := range strings.Split(errOut, "\n") {
			if _, st, ok := strings.Cut(line, " stage "); ok {
				name, _, _ := strings.Cut(st, ":")
				got = append(got, name)
			}
		}
		return got
	}
	want := func(what string, got []string, names ...string) {
		t.Helper()
		for _, n := range names {
			if !slices.Contains(got, n) {
				t.Errorf("%s -v: no stage %q in %q", what, n, got)
			}
		}
	}
	want("plan (before apply)", stages("plan", "--detailed-exitcode", file), "observe", "plan", "preflight")
	want("apply", stages("apply", file), "observe", "plan", "preflight", "confirm", "hosts files")
	defer e.destroy()
	want("plan (after apply)", stages("plan", file), "observe", "plan")
	want("show", stages("show", file), "observe", "plan")
}

// TestDestroySaysWhyTheSandboxStays: two labs in one sandbox; destroying
// the first says the sandbox stays and why; destroying the second removes
// it.
func TestDestroySaysWhyTheSandboxStays(t *testing.T) {
	bin := binary(t)
	file, second := "../../examples/bridge.yaml", "../../examples/veth-pair.yaml"
	e := newEnv(t, file, nil)
	other := *e
	other.prefix = e.prefix + "b-"
	t.Cleanup(other.cleanup)
	for _, run := range []struct {
		x    *env
		file string
	}{{e, file}, {&other, second}} {
		if code, out, errOut := run.x.cli(bin, "apply", run.file); code != 0 {
			t.Fatalf("apply %s: %d\n%s%s", run.file, code, out, errOut)
		}
	}
	code, out, errOut := e.cli(bin, "destroy", file)
	want := fmt.Sprintf("The sandbox netns %s stays: lab \"veth-pair\" (sandbox %s, prefix %s) has namespaces there.\n", e.sandbox, e.sandbox, other.prefix)
	if code != 0 || !strings.HasSuffix(out, want) {
		t.Fatalf("destroy of the first lab: exit %d\n%s\nwant it to end with %q\n%s", code, out, want, errOut)
	}
	code, out, errOut = other.cli(bin, "destroy", second)
	if want := fmt.Sprintf("Removed netns %s, which apply had created.\n", e.sandbox); code != 0 || !strings.Contains(out, want) || strings.Contains(out, "stays") {
		t.Fatalf("destroy of the second lab: exit %d\n%s\nwant %q\n%s", code, out, want, errOut)
	}
	e.assertGone()
}

// TestSandboxStaysForWhatOthersPutThere: a sandbox apply made stays at
// destroy while an address added by hand, a route or a rule of someone
// else's, a proxy neighbour, a nexthop object, a socket or a process is in
// it (outside audits: they went with it, silently); once they are gone,
// the next destroy removes it.
func TestSandboxStaysForWhatOthersPutThere(t *testing.T) {
	bin := binary(t)
	file := "../../examples/veth-pair.yaml"
	e := newEnv(t, file, nil)
	for _, c := range []struct {
		what, want string
		add        func() func()
	}{
		{"an address on lo", "address 10.99.99.1/32 is in it, not the lab's", func() func() {
			a := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("10.99.99.1"), Mask: net.CIDRMask(32, 32)}}
			e.in("host", func() {
				lo, _ := netlink.LinkByName("lo")
				if err := netlink.AddrAdd(lo, a); err != nil {
					t.Fatal(err)
				}
			})
			return func() {
				e.in("host", func() {
					lo, _ := netlink.LinkByName("lo")
					netlink.AddrDel(lo, a)
				})
			}
		}},
		{"a blackhole route", "route 10.98.0.0/16 (table 254) is in it, not the lab's", func() func() {
			r := &netlink.Route{Dst: &net.IPNet{IP: net.ParseIP("10.98.0.0").To4(), Mask: net.CIDRMask(16, 32)}, Type: unix.RTN_BLACKHOLE}
			e.in("host", func() {
				if err := netlink.RouteAdd(r); err != nil {
					t.Fatal(err)
				}
			})
			return func() { e.in("host", func() { netlink.RouteDel(r) }) }
		}},
		{"a routing rule", "a routing rule (priority 500, table 200) is in it, not the lab's", func() func() {
			r := netlink.NewRule()
			r.Priority, r.Table = 500, 200
			r.Src = &net.IPNet{IP: net.ParseIP("10.96.0.0").To4(), Mask: net.CIDRMask(24, 32)}
			e.in("host", func() {
				if err := netlink.RuleAdd(r); err != nil {
					t.Fatal(err)
				}
			})
			return func() { e.in("host", func() { netlink.RuleDel(r) }) }
		}},
		{"a proxy neighbour", "proxy neighbour 10.97.0.1 is in it, not the lab's", func() func() {
			n := &netlink.Neigh{Family: netlink.FAMILY_V4, Flags: netlink.NTF_PROXY, IP: net.ParseIP("10.97.0.1")}
			e.in("host", func() {
				lo, _ := netlink.LinkByName("lo")
				n.LinkIndex = lo.Attrs().Index
				if err := netlink.NeighAdd(n); err != nil {
					t.Fatal(err)
				}
			})
			return func() { e.in("host", func() { netlink.NeighDel(n) }) }
		}},
		{"a nexthop object", "nexthop id 7 is in it, not the lab's", func() func() {
			nexthop := func(typ uint16, flags int, attrs ...*nl.RtAttr) error {
				req := nl.NewNetlinkRequest(int(typ), unix.NLM_F_ACK|flags)
				body := []byte{unix.AF_INET, 0, 0, 0, 0, 0, 0, 0} // struct nhmsg
				for _, a := range attrs {
					body = append(body, a.Serialize()...)
				}
				req.AddRawData(body) // raw data goes after Data: all of it here
				_, err := req.Execute(unix.NETLINK_ROUTE, 0)
				return err
			}
			id := nl.NewRtAttr(unix.NHA_ID, nl.Uint32Attr(7))
			e.in("host", func() {
				if err := nexthop(unix.RTM_NEWNEXTHOP, unix.NLM_F_CREATE|unix.NLM_F_EXCL, id, nl.NewRtAttr(unix.NHA_BLACKHOLE, nil)); err != nil {
					t.Fatal(err)
				}
			})
			return func() { e.in("host", func() { nexthop(unix.RTM_DELNEXTHOP, 0, id) }) }
		}},
		{"a socket made there by a thread that left", "tcp socket 127.0.0.1:", func() func() {
			var ln net.Listener
			e.in("host", func() {
				var err error
				if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
					t.Fatal(err)
				}
			})
			return func() { ln.Close() }
		}},
		// (lo has no ARP: the kernel keys its neighbours as 0.0.0.0.)
		{"a permanent neighbour", "permanent neighbour 0.0.0.0 on lo is in it, not the lab's", func() func() {
			n := &netlink.Neigh{Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: net.ParseIP("10.9.9.9"),
				HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
			e.in("host", func() {
				lo, _ := netlink.LinkByName("lo")
				n.LinkIndex = lo.Attrs().Index
				if err := netlink.NeighAdd(n); err != nil {
					t.Fatal(err)
				}
			})
			return func() {
				e.in("host", func() {
					ns, _ := netlink.NeighList(n.LinkIndex, netlink.FAMILY_V4)
					for _, x := range ns {
						if err := netlink.NeighDel(&x); err != nil {
							t.Errorf("delete the neighbour: %v", err)
						}
					}
				})
			}
		}},
		{"a qdisc on lo", "qdisc tbf on lo is in it, not the lab's", func() func() {
			var q netlink.Qdisc
			e.in("host", func() {
				lo, _ := netlink.LinkByName("lo")
				q = &netlink.Tbf{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: lo.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
					Rate: 125000, Limit: 10000, Buffer: 4000}
				if err := netlink.QdiscAdd(q); err != nil {
					t.Fatal(err)
				}
			})
			return func() { e.in("host", func() { netlink.QdiscDel(q) }) }
		}},
		{"a unix socket made there by a thread that left", fmt.Sprintf("unix socket @npl-test-sock of process %d (", os.Getpid()), func() func() {
			var ln net.Listener
			e.in("host", func() {
				var err error
				if ln, err = net.Listen("unix", "@npl-test-sock"); err != nil {
					t.Fatal(err)
				}
			})
			return func() { ln.Close() }
		}},
		{"an xfrm policy", "xfrm policy 10.94.1.0/24 -> 10.94.2.0/24 (dir out) is in it, not the lab's", func() func() {
			p := &netlink.XfrmPolicy{
				Src: &net.IPNet{IP: net.ParseIP("10.94.1.0").To4(), Mask: net.CIDRMask(24, 32)},
				Dst: &net.IPNet{IP: net.ParseIP("10.94.2.0").To4(), Mask: net.CIDRMask(24, 32)},
				Dir: netlink.XFRM_DIR_OUT,
				Tmpls: []netlink.XfrmPolicyTmpl{{Src: net.ParseIP("10.94.0.1"), Dst: net.ParseIP("10.94.0.2"),
					Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TUNNEL}},
			}
			e.in("host", func() {
				if err := netlink.XfrmPolicyAdd(p); err != nil {
					t.Fatal(err)
				}
			})
			return func() { e.in("host", func() { netlink.XfrmPolicyDel(p) }) }
		}},
		{"an xfrm state", "xfrm state 10.94.0.1 -> 10.94.0.2 (spi 0x100) is in it, not the lab's", func() func() {
			st := &netlink.XfrmState{Src: net.ParseIP("10.94.0.1"), Dst: net.ParseIP("10.94.0.2"), Proto: netlink.XFRM_PROTO_ESP,
				Mode: netlink.XFRM_MODE_TUNNEL, Spi: 0x100, Crypt: &netlink.XfrmStateAlgo{Name: "ecb(cipher_null)", Key: []byte{}}}
			e.in("host", func() {
				if err := netlink.XfrmStateAdd(st); err != nil {
					t.Fatal(err)
				}
			})
			return func() { e.in("host", func() { netlink.XfrmStateDel(st) }) }
		}},
		{"a packet socket made there by a thread that left", fmt.Sprintf("packet socket of process %d (", os.Getpid()), func() func() {
			var fd int
			e.in("host", func() {
				var err error
				if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL))); err != nil {
					t.Fatal(err)
				}
			})
			return func() { unix.Close(fd) }
		}},
		{"a process that holds the namespace open (not in it)", ") holds it open", func() func() {
			pin, err := os.Open(e.nsPath("host"))
			if err != nil {
				t.Fatal(err)
			}
			defer pin.Close()
			c := exec.Command("sleep", "60")
			c.ExtraFiles = []*os.File{pin}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			return func() { c.Process.Kill(); c.Wait() }
		}},
		{"a process", ") runs in it", func() func() {
			c := exec.Command("nsenter", "--net="+e.nsPath("host"), "sleep", "60")
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			// Until nsenter has entered and exec'd sleep (slow on a loaded machine).
			var pin unix.Stat_t
			if err := unix.Stat(e.nsPath("host"), &pin); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				var in unix.Stat_t
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c.Process.Pid))
				if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", c.Process.Pid), &in) == nil && in.Ino == pin.Ino && in.Dev == pin.Dev && strings.TrimSpace(string(comm)) == "sleep" {
					break
				}
				if time.Now().After(deadline) {
					c.Process.Kill()
					c.Wait()
					t.Fatal("nsenter did not enter the sandbox and run sleep in 10 s")
				}
			}
			return func() { c.Process.Kill(); c.Wait() }
		}},
	} {
		if c.what == "an xfrm state" {
			if err := espStates(); err != nil {
				t.Logf("no ESP states on this kernel (CONFIG_INET_ESP, CONFIG_CRYPTO_AUTHENC: %v): %s not tried (the stock-kernel guest loads esp4 and authenc and tries it)", err, c.what)
				continue
			}
		}
		if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
			t.Fatalf("apply: %d\n%s%s", code, out, errOut)
		}
		gone := c.add()
		code, out, errOut := e.cli(bin, "destroy", file)
		if code != 0 || !strings.Contains(out, fmt.Sprintf("The sandbox netns %s stays", e.sandbox)) || !strings.Contains(out, c.want) {
			if _, err := os.Stat(e.nsPath("host")); err == nil {
				gone() // (it enters the sandbox: not if destroy removed it)
			}
			t.Fatalf("destroy with %s in the sandbox: %d\n%s%s\nwant it to stay: %q", c.what, code, out, errOut, c.want)
		}
		gone()
		if _, err := os.Stat(e.nsPath("host")); err != nil {
			t.Fatalf("%s: the sandbox went: %v", c.what, err)
		}
	}
	// All gone: the sandbox is still the one apply made, and goes, with
	// the TIME_WAIT socket of a connection closed there (no one's).
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	e.in("host", func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close() // the side that closes first waits (TIME_WAIT)
		s.Close()
	})
	if code, out, errOut := e.cli(bin, "destroy", file); code != 0 || !strings.Contains(out, "Removed netns "+e.sandbox) {
		t.Fatalf("destroy with nothing of others there: %d\n%s%s", code, out, errOut)
	}
}

// TestDestroyAfterNamespacesDeletedByHand: with the lab's namespaces gone
// (ip netns del) and a sandbox apply did not make, destroy finds nothing
// in the kernel but the lab's names under /etc/netns, removes them and
// says so (it said "nothing was changed").
func TestDestroyAfterNamespacesDeletedByHand(t *testing.T) {
	bin := binary(t)
	file := "../../examples/veth-pair.yaml"
	e := newEnv(t, file, nil)
	if err := newNamedNS(e.sandbox); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	for _, ns := range []string{"left", "right"} {
		if err := linux.DeleteNamed(e.k.KernelName(ns)); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := e.cli(bin, "destroy", file)
	want := fmt.Sprintf("Nothing of lab \"veth-pair\" (sandbox %s, prefix %s) was found in the kernel; its names were removed from /etc/netns (the entries of 3 namespaces).\n", e.sandbox, e.prefix)
	if code != 0 || out != want {
		t.Fatalf("destroy: exit %d\n%q\nwant %q\n%s", code, out, want, errOut)
	}
	for _, ns := range []string{"left", "right"} {
		if _, err := os.Lstat(filepath.Join("/etc/netns", e.k.KernelName(ns))); !os.IsNotExist(err) {
			t.Errorf("/etc/netns/%s is still there (%v)", e.k.KernelName(ns), err)
		}
	}
	if err := linux.DeleteNamed(e.sandbox); err != nil {
		t.Fatal(err)
	}
}

// TestRaiseBridgeAndMacvlanMTUTogether: a bridge and the macvlan on it
// raised in one apply (an outside audit saw it fail 4 times in 5 when the
// macvlan's change could run first: its MTU may not pass its parent's).
func TestRaiseBridgeAndMacvlanMTUTogether(t *testing.T) {
	src := `name: mtumv
namespaces: {m1: {}, p1: {}}
bridges:
  - {name: br0, mtu: 1400, addresses: [10.63.0.1/24]}
links:
  - a: {namespace: p1, name: eth0, addresses: [10.63.0.2/24], mtu: 1500}
    b: {namespace: host, name: vp1, bridge: br0, mtu: 1500}
macvlans:
  - {namespace: m1, name: mv0, parent: "host:br0", mtu: 1400, addresses: [10.63.0.3/24]}
`
	e := newEnv(t, "mtumv.yaml", []byte(src))
	e.mustApply()
	defer e.destroy()
	for i := 0; i < 3; i++ {
		up := strings.ReplaceAll(src, "mtu: 1400", "mtu: 1500")
		e.load("mtumv.yaml", []byte(up))
		e.mustApply()
		e.assertNoOp()
		e.load("mtumv.yaml", []byte(src))
		e.mustApply()
		e.assertNoOp()
	}
}

// TestNamespaceHeldOpenGivesUpItsMacvlan: a namespace removed from the
// file while something holds it open (a shell in it; here an open file)
// lives on, and with it its macvlan on the host's bridge; making the
// namespace again then made the macvlan again with the same MAC, which
// the bridge refused (EADDRINUSE; an outside audit's find). The macvlan
// now goes first, explicitly.
func TestNamespaceHeldOpenGivesUpItsMacvlan(t *testing.T) {
	with := `name: held
namespaces: {c4: {}}
bridges:
  - {name: br0, addresses: [10.65.0.1/24]}
macvlans:
  - {namespace: c4, name: mv0, parent: "host:br0", addresses: [10.65.0.50/24]}
`
	without := "name: held\nbridges:\n  - {name: br0, addresses: [10.65.0.1/24]}\n"
	e := newEnv(t, "held.yaml", []byte(with))
	e.mustApply()
	defer e.destroy()
	f, err := os.Open(filepath.Join(linux.NetnsDir, e.k.KernelName("c4")))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // holds the namespace while it is removed from the file
	e.load("held.yaml", []byte(without))
	e.mustApply()
	e.load("held.yaml", []byte(with))
	e.mustApply()
	e.assertNoOp()
}

// TestVxlanSameVNIOverBothFamilies: one VXLAN per VNI, port and address
// family in a namespace: one over IPv4 and one over IPv6 with the same
// VNI both come up, and the IPv6 one keeps IPv6 on in its namespace (it
// was refused with EPERM when the default turned IPv6 off).
func TestVxlanSameVNIOverBothFamilies(t *testing.T) {
	src := `name: vx46
namespaces: {n: {}}
links:
  - {endpoints: ["n:e1", "host:x1"]}
vxlans:
  - {name: v1, namespace: n, vni: 7, remote: 10.0.0.1, dev: e1}
  - {name: v2, namespace: n, vni: 7, remote: "fd00::2", dev: e1}
`
	e := newEnv(t, "vx46.yaml", []byte(src))
	e.mustApply()
	defer e.destroy()
	e.assertNoOp()
}

// TestVxlanRenameAndFamilyChange: a VXLAN renamed with its VNI kept is
// made after the old one goes (EEXIST when the new name sorted first),
// and one whose remote changes between IPv4 and IPv6 is replaced (the
// kernel refuses that change in place: EOPNOTSUPP). Both from an outside
// audit.
func TestVxlanRenameAndFamilyChange(t *testing.T) {
	src := `name: vxrn
namespaces: {h1: {}}
links:
  - {endpoints: ["h1:e1", "host:x1"]}
vxlans:
  - {name: vz0, namespace: h1, vni: 10, remote: 10.0.0.2, dev: e1}
`
	e := newEnv(t, "vxrn.yaml", []byte(src))
	e.mustApply()
	defer e.destroy()
	steps := []string{
		strings.Replace(src, "vz0", "vx0", 1),
		strings.Replace(strings.Replace(src, "vz0", "vx0", 1), "10.0.0.2", `"fd00::5"`, 1),
		strings.Replace(src, "vz0", "vx0", 1),
		src,
	}
	for _, s := range steps {
		e.load("vxrn.yaml", []byte(s))
		e.mustApply()
		e.assertNoOp()
	}
}

// TestCheckUnreachableNotAnsweredByCheck: a check that expects
// unreachable on a port another check listens on is not answered by that
// listener (an outside audit: it failed, "reachable, landed in c1").
func TestCheckUnreachableNotAnsweredByCheck(t *testing.T) {
	needRoot(t)
	bin := binary(t)
	file := filepath.Join(t.TempDir(), "pair.yaml")
	src := "name: cu\nnamespaces:\n  c1: {}\n  c2: {}\nlinks:\n  - a: {namespace: c1, name: eth0, addresses: [10.61.0.1/24]}\n    b: {namespace: c2, name: eth0, addresses: [10.61.0.2/24]}\n" +
		"checks:\n  - {from: c2, to: c1, proto: tcp, port: 90, expect: unreachable}\n  - {from: c2, to: c1, proto: tcp, port: 90}\n  - {from: c2, to: c1, proto: udp, port: 91}\n  - {from: c2, to: c1, proto: udp, port: 91, expect: unreachable}\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, file, nil)
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.destroysAll(bin, file, "the check test")
	if code, out, errOut := e.cli(bin, "check", file); code != 0 {
		t.Fatalf("check: %d\n%s%s", code, out, errOut)
	}
}

// TestPathVXLANRemoteNamesNobody: a VXLAN whose remote is no address of
// the namespace its far end is in (a wrong remote:, or the address gone
// from the underlay) carries nothing there, and path says so (an outside
// audit: path said delivered).
func TestPathVXLANRemoteNamesNobody(t *testing.T) {
	bin := binary(t)
	e := newEnv(t, "../../examples/overlay.yaml", nil)
	if code, out, errOut := e.cli(bin, "apply", e.topo.File); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.destroy()
	e.in("host2", func() {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		a, _ := netlink.ParseAddr("192.168.111.129/24")
		if err := netlink.AddrDel(l, a); err != nil {
			t.Fatal(err)
		}
		b, _ := netlink.ParseAddr("192.168.111.199/24")
		if err := netlink.AddrAdd(l, b); err != nil {
			t.Fatal(err)
		}
	})
	code, out, _ := e.cli(bin, "path", e.topo.File, "c1", "c2")
	if code != 1 || !strings.Contains(out, "dropped: the VXLAN host1:vx0 sends to remote 192.168.111.129, which is no address of namespace host2, where its far end host2:vx0 is") {
		t.Fatalf("path with the VXLAN's remote gone from the far end: %d\n%s", code, out)
	}
	// The address back, the far end's underlay down (an outside audit:
	// path said delivered).
	e.in("host2", func() {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		a, _ := netlink.ParseAddr("192.168.111.129/24")
		if err := netlink.AddrAdd(l, a); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetDown(l); err != nil {
			t.Fatal(err)
		}
	})
	code, out, _ = e.cli(bin, "path", e.topo.File, "c1", "c2")
	if code != 1 || !strings.Contains(out, "dropped: the VXLAN host1:vx0 sends to remote 192.168.111.129, on host2:eth0, which is down") {
		t.Fatalf("path with the far end's underlay down: %d\n%s", code, out)
	}
}

// TestPathForwardPolicyDropIsANote: a forward chain of someone else's
// with policy drop decides only what its rules leave: path, which does not
// evaluate them, notes it and goes on (an outside audit: Docker's policy
// drop with an accept rule was reported as a drop). And a source whose
// interface is down has no route, because it is down.
func TestPathForwardPolicyDropIsANote(t *testing.T) {
	bin := binary(t)
	e := newEnv(t, "../../examples/router.yaml", nil)
	if code, out, errOut := e.cli(bin, "apply", e.topo.File); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.destroy()
	e.in("host", func() {
		c, err := nftables.New()
		if err != nil {
			t.Fatal(err)
		}
		tb := c.AddTable(&nftables.Table{Name: "npltestfw", Family: nftables.TableFamilyINet})
		drop := nftables.ChainPolicyDrop
		ch := c.AddChain(&nftables.Chain{Name: "ff", Table: tb, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
		c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	defer e.in("host", func() { // if the test stops before it is deleted below
		c, _ := nftables.New()
		c.DelTable(&nftables.Table{Name: "npltestfw", Family: nftables.TableFamilyINet})
		c.Flush()
	})
	code, out, _ := e.cli(bin, "path", e.topo.File, "ns0", "ns1")
	if code != 0 || !strings.Contains(out, "delivered: 192.168.89.2 is an address of ns1") ||
		!strings.Contains(out, "note: namespace host has a forward chain with policy drop (chain ff in table inet npltestfw): path does not evaluate its rules") {
		t.Fatalf("path past a policy drop with an accept rule: %d\n%s", code, out)
	}
	// With no rules at all, the drop is certain.
	e.in("host", func() {
		c, _ := nftables.New()
		c.FlushChain(&nftables.Chain{Name: "ff", Table: &nftables.Table{Name: "npltestfw", Family: nftables.TableFamilyINet}})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	code, out, _ = e.cli(bin, "path", e.topo.File, "ns0", "ns1")
	if code != 1 || !strings.Contains(out, "dropped: namespace host drops forwarded packets: a forward chain with policy drop and no rules (chain ff in table inet npltestfw)") {
		t.Fatalf("path past a policy drop with no rules: %d\n%s", code, out)
	}
	// Policy accept with a rule that drops: not evaluated either, and
	// said so (it was not mentioned at all).
	e.in("host", func() {
		c, _ := nftables.New()
		tb := &nftables.Table{Name: "npltestfw", Family: nftables.TableFamilyINet}
		c.DelTable(tb)
		accept := nftables.ChainPolicyAccept
		c.AddTable(tb)
		ch := c.AddChain(&nftables.Chain{Name: "fa", Table: tb, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	code, out, _ = e.cli(bin, "path", e.topo.File, "ns0", "ns1")
	if !strings.Contains(out, "note: namespace host has a forward chain with rules of someone else's (chain fa in table inet npltestfw): path does not evaluate them; one may drop this packet there") {
		t.Fatalf("path past a policy accept chain with a drop rule: %d\n%s", code, out)
	}
	e.in("host", func() {
		c, _ := nftables.New()
		c.DelTable(&nftables.Table{Name: "npltestfw", Family: nftables.TableFamilyINet})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	e.in("ns0", func() {
		l, _ := netlink.LinkByName("eth0")
		if err := netlink.LinkSetDown(l); err != nil {
			t.Fatal(err)
		}
	})
	code, out, _ = e.cli(bin, "path", e.topo.File, "ns0", "ns1")
	if code != 1 || !strings.Contains(out, "no route: namespace ns0 has no route to 192.168.89.2: eth0 is down, and the kernel drops the routes of an interface that is down") {
		t.Fatalf("path from a namespace whose interface is down: %d\n%s", code, out)
	}
	// The destination's interface down (an outside audit: delivered).
	code, out, _ = e.cli(bin, "path", e.topo.File, "ns1", "ns0")
	if code != 1 || !strings.Contains(out, "ns0:eth0 is down") {
		t.Fatalf("path to a namespace whose interface is down: %d\n%s", code, out)
	}
}

// TestPathSeesFirewallsOfARouterWithoutNAT: a forward chain of someone
// else's in a lab namespace that routes but has no NAT of the lab's is
// read too (an outside audit: path said delivered past a policy drop
// with no rules, its nftables were not read).
func TestPathSeesFirewallsOfARouterWithoutNAT(t *testing.T) {
	bin := binary(t)
	src := []byte(`name: pfw
namespaces:
  cli: {routes: [{to: default, via: 10.81.0.1}]}
  r: {sysctls: {net.ipv4.ip_forward: "1"}}
  srv: {routes: [{to: default, via: 10.82.0.1}]}
links:
  - {a: {namespace: cli, name: eth0, addresses: [10.81.0.2/24]}, b: {namespace: r, name: lan, addresses: [10.81.0.1/24]}}
  - {a: {namespace: srv, name: eth0, addresses: [10.82.0.2/24]}, b: {namespace: r, name: wan, addresses: [10.82.0.1/24]}}
`)
	e, file := envOfFile(t, "pfw.yaml", src)
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.destroy()
	e.in("r", func() {
		c, err := nftables.New()
		if err != nil {
			t.Fatal(err)
		}
		tb := c.AddTable(&nftables.Table{Name: "npltestfw", Family: nftables.TableFamilyINet})
		drop := nftables.ChainPolicyDrop
		c.AddChain(&nftables.Chain{Name: "ff", Table: tb, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	code, out, _ := e.cli(bin, "path", file, "cli", "srv")
	if code != 1 || !strings.Contains(out, "dropped: namespace r drops forwarded packets: a forward chain with policy drop and no rules (chain ff in table inet npltestfw)") {
		t.Fatalf("path through a router with a firewall of someone else's: %d\n%s", code, out)
	}
}

// TestIPv6RouterAnswersRightAfterApply: an IPv6 router in the sandbox the
// lab made routes at once after apply: no duplicate address detection
// holds its link-local addresses tentative (an outside audit: checks
// right after apply failed, the first replies came two seconds later).
func TestIPv6RouterAnswersRightAfterApply(t *testing.T) {
	bin := binary(t)
	src := []byte(`name: v6r
namespaces:
  host: {sysctls: {net.ipv6.conf.all.forwarding: "1"}}
  ns0: {routes: [{to: default, via: "fd00:63::1"}]}
  ns1: {routes: [{to: default, via: "fd00:63:1::1"}]}
bridges:
  - {name: br0, addresses: ["fd00:63::1/64"]}
  - {name: br1, addresses: ["fd00:63:1::1/64"]}
links:
  - {a: {namespace: ns0, name: eth0, addresses: ["fd00:63::2/64"]}, b: {name: v0, bridge: br0}}
  - {a: {namespace: ns1, name: eth0, addresses: ["fd00:63:1::2/64"]}, b: {name: v1, bridge: br1}}
checks:
  - {from: ns0, to: ns1}
  - {from: ns1, to: ns0}
`)
	e, file := envOfFile(t, "v6r.yaml", src)
	defer e.destroy()
	if code, out, errOut := e.cli(bin, "apply", "--check", file); code != 0 {
		t.Fatalf("apply --check: %d\n%s%s", code, out, errOut)
	}
}

// envOfFile is an env for a topology given as text, written to a file
// of that name (the CLI reads files).
func envOfFile(t *testing.T, name string, src []byte) (*env, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, src, 0o644); err != nil {
		t.Fatal(err)
	}
	return newEnv(t, file, nil), file
}

// TestShowListsOnlyItsOwnSysctls: show lists the sysctls the lab's file
// sets or its record noted, not those another lab of the sandbox set
// (host's observation reads them for that lab's sake): an outside audit
// saw another lab's ip_forward listed under a lab never applied, and no
// "Nothing of lab" line.
func TestShowListsOnlyItsOwnSysctls(t *testing.T) {
	bin := binary(t)
	fwd := filepath.Join(t.TempDir(), "fwd.yaml")
	if err := os.WriteFile(fwd, []byte("name: fwd\nnamespaces:\n  host:\n    sysctls:\n      net.ipv4.ip_forward: \"1\"\n  a: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, fwd, nil)
	if code, out, errOut := e.cli(bin, "apply", fwd); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.cli(bin, "destroy", fwd)
	other := *e
	other.prefix = e.prefix + "b-"
	t.Cleanup(other.cleanup)
	file := "../../examples/veth-pair.yaml"
	code, out, errOut := other.cli(bin, "show", file)
	if code != 0 || strings.Contains(out, "ip_forward") || !strings.Contains(out, `Nothing of lab "veth-pair" is in the kernel`) {
		t.Fatalf("show of a lab never applied: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := other.cli(bin, "-o", "json", "show", file); code != 0 || strings.Contains(out, "ip_forward") {
		t.Fatalf("show -o json of a lab never applied: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := e.cli(bin, "show", fwd); code != 0 || !strings.Contains(out, "sysctl   net.ipv4.ip_forward = 1\n") {
		t.Fatalf("show of the lab that sets it: %d\n%s%s", code, out, errOut)
	}
}

// TestDestroyRemovesTemporaryPinsOfDeadRuns: a run killed while it placed
// a pin leaves its temporary file in /run/netns (`ip netns list` fails on
// it); destroy removes those of processes that are gone, as apply does,
// and leaves those of a process that runs (an outside audit: destroy said
// nothing was found and left them).
func TestDestroyRemovesTemporaryPinsOfDeadRuns(t *testing.T) {
	bin := binary(t)
	file := "../../examples/veth-pair.yaml"
	e := newEnv(t, file, nil)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(linux.NetnsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(linux.NetnsDir, fmt.Sprintf(".netplan-lab-tmp.%d.1", dead.Process.Pid))
	live := filepath.Join(linux.NetnsDir, fmt.Sprintf(".netplan-lab-tmp.%d.1", os.Getpid()))
	for _, f := range []string{gone, live} {
		if err := os.WriteFile(f, nil, 0o444); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(f) })
	}
	if code, out, errOut := e.cli(bin, "destroy", file); code != 0 {
		t.Fatalf("destroy: %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("the temporary pin of a dead run is still there (%v)", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the temporary pin of a running process went: %v", err)
	}
}

// htons is a 16-bit value in network byte order, as socket(AF_PACKET)
// takes its protocol.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// espStates says why this kernel takes no ESP xfrm state (nil if it
// does), tried in a throwaway namespace.
func espStates() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	origin, err := netns.Get()
	if err != nil {
		return err
	}
	defer origin.Close()
	ns, err := netns.New()
	if err != nil {
		return err
	}
	defer ns.Close()
	st := &netlink.XfrmState{Src: net.ParseIP("10.94.0.1"), Dst: net.ParseIP("10.94.0.2"), Proto: netlink.XFRM_PROTO_ESP,
		Mode: netlink.XFRM_MODE_TUNNEL, Spi: 0x100, Crypt: &netlink.XfrmStateAlgo{Name: "ecb(cipher_null)", Key: []byte{}}}
	err = netlink.XfrmStateAdd(st)
	if serr := netns.Set(origin); serr != nil {
		panic("cannot return to the original netns: " + serr.Error())
	}
	return err
}

// TestPathFollowsTheReply: a packet that arrives but whose reply has no
// way back was "delivered", exit 0, where ping failed (an outside audit);
// path follows the reply and says where it stops, exit 1. An input chain
// with policy drop and no rules where the packet arrives is a drop.
func TestPathFollowsTheReply(t *testing.T) {
	bin := binary(t)
	src := []byte(`name: prt
namespaces:
  a: {routes: [{to: default, via: 10.83.0.1}]}
  r: {sysctls: {net.ipv4.ip_forward: "1"}}
  b: {routes: [{to: default, via: 10.84.0.1}]}
links:
  - {a: {namespace: a, name: eth0, addresses: [10.83.0.2/24]}, b: {namespace: r, name: ra, addresses: [10.83.0.1/24]}}
  - {a: {namespace: b, name: eth0, addresses: [10.84.0.2/24]}, b: {namespace: r, name: rb, addresses: [10.84.0.1/24]}}
`)
	e, file := envOfFile(t, "prt.yaml", src)
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.destroy()
	if code, out, _ := e.cli(bin, "path", file, "a", "b"); code != 0 || !strings.HasSuffix(out, "delivered: 10.84.0.2 is an address of b\n") {
		t.Fatalf("path a b: %d\n%s", code, out)
	}
	e.in("b", func() {
		if err := netlink.RouteDel(&netlink.Route{Dst: nil, Gw: net.ParseIP("10.84.0.1")}); err != nil {
			t.Fatal(err)
		}
	})
	code, out, _ := e.cli(bin, "path", file, "a", "b")
	want := "delivered: 10.84.0.2 is an address of b\nbut the reply does not come back:\npath b -> 10.83.0.2 (icmp)\n 1  b\nno route: namespace b has no route to 10.83.0.2\n"
	if code != 1 || !strings.HasSuffix(out, want) {
		t.Fatalf("path a b, b without its default route: %d\n%s\nwant it to end with:\n%s", code, out, want)
	}
	if err := exec.Command("nsenter", "--net="+e.nsPath("a"), "ping", "-c1", "-W1", "10.84.0.2").Run(); err == nil {
		t.Fatal("ping a -> b passes without b's way back (path said it does not)")
	}
	code, out, _ = e.cli(bin, "-o", "json", "path", file, "a", "b")
	var r struct {
		Result string `json:"result"`
		Reply  *struct {
			Result string `json:"result"`
			Reason string `json:"reason"`
		} `json:"reply"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 || r.Result != "delivered" || r.Reply == nil || r.Reply.Result != "no route" {
		t.Fatalf("path -o json: %d %v\n%s", code, err, out)
	}
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	e.in("b", func() {
		c, err := nftables.New()
		if err != nil {
			t.Fatal(err)
		}
		tb := c.AddTable(&nftables.Table{Name: "npltestin", Family: nftables.TableFamilyINet})
		drop := nftables.ChainPolicyDrop
		c.AddChain(&nftables.Chain{Name: "in", Table: tb, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &drop})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	code, out, _ = e.cli(bin, "path", file, "a", "b")
	if code != 1 || !strings.Contains(out, "dropped: namespace b drops packets to its own addresses: an input chain with policy drop and no rules (chain in in table inet npltestin)") {
		t.Fatalf("path a b, b's input chain dropping all: %d\n%s", code, out)
	}
	e.in("b", func() {
		c, _ := nftables.New()
		c.DelTable(&nftables.Table{Name: "npltestin", Family: nftables.TableFamilyINet})
		c.Flush()
	})
}

// TestCheckSaysWhatCameBack: a router with no route answers a ping with
// "destination net unreachable"; check said only that no reply came (an
// outside audit); it says what came back instead.
func TestCheckSaysWhatCameBack(t *testing.T) {
	bin := binary(t)
	src := []byte(`name: cwb
namespaces:
  a: {routes: [{to: default, via: 10.85.0.1}]}
  r: {sysctls: {net.ipv4.ip_forward: "1"}}
  b: {routes: [{to: default, via: 10.86.0.1}]}
links:
  - {a: {namespace: a, name: eth0, addresses: [10.85.0.2/24]}, b: {namespace: r, name: ra, addresses: [10.85.0.1/24]}}
  - {a: {namespace: b, name: eth0, addresses: [10.86.0.2/24]}, b: {namespace: r, name: rb, addresses: [10.86.0.1/24]}}
checks:
  - {from: a, to: b}
  - {from: a, to: b, proto: udp, port: 5353}
  - {from: a, to: b, proto: udp, port: 5353, expect: unreachable}
`)
	e, file := envOfFile(t, "cwb.yaml", src)
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.destroy()
	// A server of someone else's that reads and never answers: the
	// datagram may have arrived, and check says so.
	var silent net.PacketConn
	e.in("b", func() {
		var err error
		if silent, err = net.ListenPacket("udp4", ":5353"); err != nil {
			t.Fatal(err)
		}
	})
	defer silent.Close()
	code, out, errOut := e.cli(bin, "check", file)
	if code != 1 || strings.Count(out, "from the server listening on udp/5353 in b (it may have had the datagram and not answered: UDP does not tell)") != 2 {
		t.Fatalf("check with a silent UDP server: %d\n%s%s", code, out, errOut)
	}
	// Expecting unreachable, it does not pass: it may have arrived (an
	// outside audit: it passed).
	var res []struct {
		Expect string `json:"expect"`
		OK     bool   `json:"ok"`
	}
	jcode, jout, _ := e.cli(bin, "-o", "json", "check", file)
	var doc struct {
		Results json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal([]byte(jout), &doc); err != nil || json.Unmarshal(doc.Results, &res) != nil || jcode != 1 || len(res) != 3 || res[2].Expect != "unreachable" || res[2].OK {
		t.Fatalf("check -o json with a silent UDP server: %d\n%s", jcode, jout)
	}
	e.in("r", func() {
		l, err := netlink.LinkByName("rb")
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetDown(l); err != nil {
			t.Fatal(err)
		}
	})
	code, out, errOut = e.cli(bin, "check", file)
	if code != 1 || !strings.Contains(out, "10.85.0.1 said destination net unreachable") {
		t.Fatalf("check with r's rb down: %d\n%s%s", code, out, errOut)
	}
}

// TestPathSeesRPFilterWhereItArrives: strict rp_filter drops a packet
// that comes in where the way back does not go, delivered there or not:
// path checked it only where a packet was routed on, and said a reply
// that rp_filter dropped came back (an outside audit).
func TestPathSeesRPFilterWhereItArrives(t *testing.T) {
	bin := binary(t)
	src := []byte(`name: prp
namespaces:
  c1:
    sysctls: {net.ipv4.conf.all.rp_filter: "1"}
    routes: [{to: default, via: 10.87.1.1}]
  r:
    sysctls: {net.ipv4.ip_forward: "1"}
    routes: [{to: 10.87.1.2/32, via: 10.87.3.2}]
  c2:
    routes: [{to: default, via: 10.87.2.1}]
links:
  - a: {namespace: c1, name: eth0, addresses: [10.87.1.2/24]}
    b: {namespace: r, name: l1, addresses: [10.87.1.1/24]}
  - a: {namespace: c2, name: eth0, addresses: [10.87.2.2/24]}
    b: {namespace: r, name: l2, addresses: [10.87.2.1/24]}
  - a: {namespace: c1, name: eth1, addresses: [10.87.3.2/24]}
    b: {namespace: r, name: l3, addresses: [10.87.3.1/24]}
`)
	e, file := envOfFile(t, "prp.yaml", src)
	if code, out, errOut := e.cli(bin, "apply", file); code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errOut)
	}
	defer e.destroy()
	if err := exec.Command("nsenter", "--net="+e.nsPath("c1"), "ping", "-c1", "-W1", "10.87.2.2").Run(); err == nil {
		t.Fatal("ping c1 -> c2 passes: the reply comes back on eth1, which strict rp_filter should drop")
	}
	code, out, _ := e.cli(bin, "path", file, "c1", "c2")
	want := "rp_filter 1 (strict) in namespace c1: the way back to 10.87.2.2 is through eth0, not eth1, where it came in"
	if code != 1 || !strings.Contains(out, "but the reply does not come back:") || !strings.Contains(out, want) {
		t.Fatalf("path c1 c2: %d\n%s\nwant the reply dropped: %s", code, out, want)
	}
}
