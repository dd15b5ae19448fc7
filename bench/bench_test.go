// Package bench measures netplan-lab against the same lab built and torn
// down by a shell script of `ip` commands and by the floor (bench/floor:
// plain netlink calls, nothing read or recorded), in the same run, for
// N = 10, 100, 1000 and 3000 namespaces, with whole processes of the CLI
// timed from outside; plus 10 000 bare namespaces, and the memory a
// 100 000-namespace file takes. Everything happens inside a sandbox
// namespace.
//
//	make bench
package bench

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/lab"
)

// A bridge takes at most 1024 ports (BR_MAX_PORTS; more is EXFULL), so
// the benchmark lab puts up to 1000 namespaces on each bridge: bridge k is
// br<k> with 10.k.0.1/16, and namespace i is on bridge i/1000.
const perBridge = 1000

func bridgeOf(i int) int { return i / perBridge }

func addr(i int) string {
	j := i%perBridge + 2
	return fmt.Sprintf("10.%d.%d.%d", bridgeOf(i), j>>8, j&255)
}

func gateway(i int) string { return fmt.Sprintf("10.%d.0.1", bridgeOf(i)) }

// labYAML is N namespaces, each joined to a bridge by a veth, with an
// address and a default route to the bridge.
//
// Its namespaces have IPv6 off, the default for a lab without IPv6; with
// BENCH_IPV6_ON=1 each says ipv6: true (what every lab was before that
// default), to measure what the default saves.
func labYAML(n int) string {
	var b strings.Builder
	b.WriteString("name: bench\nnamespaces:\n")
	v6on := ""
	if os.Getenv("BENCH_IPV6_ON") == "1" {
		v6on = "    ipv6: true\n"
	}
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  n%d:\n    routes: [{to: default, via: %s}]\n%s", i, gateway(i), v6on)
	}
	b.WriteString("bridges:\n")
	for k := 0; k <= bridgeOf(n-1); k++ {
		fmt.Fprintf(&b, "  - {name: br%d, addresses: [10.%d.0.1/16]}\n", k, k)
	}
	b.WriteString("links:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - a: {namespace: n%d, name: eth0, addresses: [%s/16]}\n    b: {namespace: host, name: v%d, bridge: br%d}\n", i, addr(i), i, bridgeOf(i))
	}
	return b.String()
}

// ipScript is the same lab as a script of `ip` commands, as a person
// would type them.
func ipScript(n int, sandbox, prefix string) (up, down string) {
	var u, d strings.Builder
	u.WriteString("set -e\n")
	fmt.Fprintf(&u, "ip netns add %s\nip -n %s link set lo up\n", sandbox, sandbox)
	for k := 0; k <= bridgeOf(n-1); k++ {
		fmt.Fprintf(&u, "ip -n %[1]s link add br%[2]d type bridge\nip -n %[1]s addr add 10.%[2]d.0.1/16 dev br%[2]d\nip -n %[1]s link set br%[2]d up\n", sandbox, k)
	}
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("%sn%d", prefix, i)
		fmt.Fprintf(&u, "ip netns add %s\n", ns)
		fmt.Fprintf(&u, "ip -n %s link set lo up\n", ns)
		fmt.Fprintf(&u, "ip -n %s link add v%d type veth peer name eth0 netns %s\n", sandbox, i, ns)
		fmt.Fprintf(&u, "ip -n %s link set v%d master br%d up\n", sandbox, i, bridgeOf(i))
		fmt.Fprintf(&u, "ip -n %s addr add %s/16 dev eth0\n", ns, addr(i))
		fmt.Fprintf(&u, "ip -n %s link set eth0 up\n", ns)
		fmt.Fprintf(&u, "ip -n %s route add default via %s\n", ns, gateway(i))
	}
	d.WriteString("set -e\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&d, "ip netns del %sn%d\n", prefix, i)
	}
	for k := 0; k <= bridgeOf(n-1); k++ {
		fmt.Fprintf(&d, "ip -n %s link del br%d\n", sandbox, k)
	}
	fmt.Fprintf(&d, "ip netns del %s\n", sandbox)
	return u.String(), d.String()
}

func runScript(b *testing.B, script string) time.Duration {
	f := filepath.Join(b.TempDir(), "lab.sh")
	if err := os.WriteFile(f, []byte(script), 0o755); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	out, err := exec.Command("bash", f).CombinedOutput()
	if err != nil {
		b.Fatalf("ip script: %v\n%s", err, out)
	}
	return time.Since(start)
}

func cleanup(prefix, sandbox string) {
	entries, _ := os.ReadDir(linux.NetnsDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) || e.Name() == sandbox || e.Name() == sandbox+"-ip" || e.Name() == sandbox+"-fl" {
			p := filepath.Join(linux.NetnsDir, e.Name())
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
			_ = os.Remove(p)
		}
	}
	entries, _ = os.ReadDir(lab.EtcNetns)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) || e.Name() == sandbox {
			p := filepath.Join(lab.EtcNetns, e.Name())
			if to, err := os.Readlink(p); err == nil && strings.HasPrefix(to, ".netplan-lab/") {
				_ = os.RemoveAll(filepath.Join(lab.EtcNetns, to)) // the lab's shared file
			}
			_ = os.RemoveAll(p)
		}
	}
	for _, d := range []string{filepath.Join(lab.EtcNetns, ".netplan-lab"), lab.EtcNetns} {
		if left, err := os.ReadDir(d); err == nil && len(left) == 0 {
			_ = os.Remove(d)
		}
	}
}

// settle gives the kernel time to finish freeing the namespaces of the
// previous phase (that work is asynchronous) so it does not land on the next.
//
// The kernel frees a namespace in a work queue after `ip netns del` (and
// destroy) return, a thousand of them for seconds: settle waits at least
// a second and then until the machine is idle (under 10 % busy over a
// quarter of a second, read from /proc/stat), at most a minute.
func settle(n int) {
	time.Sleep(time.Second)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		b0, t0 := cpuTimes()
		time.Sleep(250 * time.Millisecond)
		b1, t1 := cpuTimes()
		if t1 > t0 && float64(b1-b0)/float64(t1-t0) < 0.10 {
			return
		}
	}
}

// cpuTimes is the machine's busy and total CPU time so far, in ticks.
func cpuTimes() (busy, total uint64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseUint(f, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// binary is a program of this module the benchmarks run, built once.
type binary struct {
	pkg, name string
	once      sync.Once
	path      string
	err       error
}

func (x *binary) get(b *testing.B) string {
	x.once.Do(func() {
		dir, err := os.MkdirTemp("", "netplan-lab-bench-")
		if err != nil {
			x.err = err
			return
		}
		x.path = filepath.Join(dir, x.name)
		if out, err := exec.Command("go", "build", "-o", x.path, x.pkg).CombinedOutput(); err != nil {
			x.err = fmt.Errorf("go build %s: %v\n%s", x.pkg, err, out)
		}
	})
	if x.err != nil {
		b.Fatal(x.err)
	}
	return x.path
}

var (
	// The CLI: whole processes are timed, as a user runs them (start-up,
	// the file, the lock, the hosts files and all).
	cliBinary = &binary{pkg: "../cmd/netplan-lab", name: "netplan-lab"}
	// The floor (bench/floor): the same lab made and removed by plain
	// netlink calls, with nothing read, compared or recorded.
	floorBinary = &binary{pkg: "./floor", name: "floor"}
)

func cli(b *testing.B) string   { return cliBinary.get(b) }
func floor(b *testing.B) string { return floorBinary.get(b) }

func runFloor(b *testing.B, args ...string) time.Duration {
	cmd := exec.Command(floor(b), args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("floor %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return time.Since(start)
}

// run is one process of the CLI: its wall time, its peak RSS (bytes), and
// the stage times it logged with -v.
type run struct {
	took   time.Duration
	rss    int64
	stages []string
}

func runCLI(b *testing.B, args ...string) run {
	cmd := exec.Command(cli(b), append([]string{"-v"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	took := time.Since(start)
	if err != nil {
		b.Fatalf("netplan-lab %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	r := run{took: took}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.rss = ru.Maxrss * 1024
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if _, st, ok := strings.Cut(line, " stage "); ok {
			r.stages = append(r.stages, st)
		}
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
func mb(n int64) float64         { return float64(n) / (1 << 20) }

// benchSandbox skips without root or without ip, then is benchNames.
func benchSandbox(b *testing.B) (sandbox, prefix string) {
	if os.Geteuid() != 0 {
		b.Skip("the benchmark needs root: it makes namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		b.Skip("the baseline needs the ip command (apt-get install iproute2)")
	}
	fsOnce.Do(func() {
		fmt.Printf("pins (/run/netns): %s; hosts files (/etc/netns): %s\n", fsType("/run/netns"), fsType("/etc/netns"))
	})
	return benchNames(b)
}

var fsOnce sync.Once

// fsType names the filesystem at path, for the record: where pins and
// hosts files go costs differently (scripts/bench-fs.sh).
func fsType(path string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return "not there"
	}
	switch st.Type {
	case 0x01021994:
		return "tmpfs (make bench's own mount namespace)"
	case 0xef53:
		return "ext4 (the machine's own)"
	}
	return fmt.Sprintf("filesystem 0x%x (the machine's own)", st.Type)
}

// benchNames names a sandbox and a prefix of the benchmark's own, whose
// namespaces go when it ends.
func benchNames(b *testing.B) (sandbox, prefix string) {
	id := fmt.Sprintf("%04x", rand.Intn(0xffff))
	sandbox, prefix = "npl-bench-"+id, "b"+id+"-"
	b.Cleanup(func() { cleanup(prefix, sandbox) })
	return sandbox, prefix
}

// benchLab times, in one run and as whole processes: the ip script up and
// down; then netplan-lab apply, the no-op re-apply (the median of three)
// and destroy. It prints each phase's peak RSS and apply's stage times.
func benchLab(b *testing.B, n int) {
	sandbox, prefix := benchSandbox(b)
	file := filepath.Join(b.TempDir(), "bench.yaml")
	if err := os.WriteFile(file, []byte(labYAML(n)), 0o644); err != nil {
		b.Fatal(err)
	}
	cli(b)
	floor(b)

	// Rounds: medians of three for the small labs (runs vary here by
	// ±20 %), one for the big ones. Each round: the ip script up and down
	// (BENCH_SKIP_IP=1 skips it), the floor up and down, then apply, three
	// no-op re-applies once the kernel has settled, destroy.
	rounds := 1
	if n <= 100 {
		rounds = 3
	}
	var ipUps, ipDowns, floorUps, floorDowns, applies, noops, destroys []time.Duration
	var apply, destroy run
	var noopRSS int64
	g := []string{"--netns", sandbox, "--prefix", prefix}
	for r := 0; r < rounds; r++ {
		if os.Getenv("BENCH_SKIP_IP") != "1" {
			up, down := ipScript(n, sandbox+"-ip", prefix+"ip-")
			ipUps = append(ipUps, runScript(b, up))
			ipDowns = append(ipDowns, runScript(b, down))
			settle(n)
		}
		fl := []string{strconv.Itoa(n), sandbox + "-fl", prefix + "fl-"}
		floorUps = append(floorUps, runFloor(b, append([]string{"up"}, fl...)...))
		floorDowns = append(floorDowns, runFloor(b, append([]string{"down"}, fl...)...))
		settle(n)
		a := runCLI(b, append(g, "apply", file)...)
		applies = append(applies, a.took)
		if r == 0 {
			apply = a
			for _, st := range a.stages {
				fmt.Printf("N=%-5d   stage %s\n", n, st)
			}
		}
		time.Sleep(time.Second) // what the kernel does after an apply (bridge ports coming up) is not the no-op's
		for i := 0; i < 3; i++ {
			nr := runCLI(b, append(g, "apply", file)...)
			noops = append(noops, nr.took)
			noopRSS = max(noopRSS, nr.rss)
		}
		destroy = runCLI(b, append(g, "destroy", file)...)
		destroys = append(destroys, destroy.took)
		settle(n)
	}
	if len(ipUps) == 0 {
		ipUps, ipDowns = []time.Duration{1}, []time.Duration{1}
	}
	ipUp, ipDown := median(ipUps), median(ipDowns)
	floorUp, floorDown := median(floorUps), median(floorDowns)
	apply.took, destroy.took = median(applies), median(destroys)
	noop := median(noops)

	b.ReportMetric(ms(apply.took), "apply-ms")
	b.ReportMetric(ms(noop), "noop-ms")
	b.ReportMetric(ms(destroy.took), "destroy-ms")
	b.ReportMetric(ms(ipUp), "ip-up-ms")
	b.ReportMetric(ms(ipDown), "ip-down-ms")
	b.ReportMetric(float64(ipUp)/float64(apply.took), "x-faster-apply")
	b.ReportMetric(float64(noop)/float64(apply.took)*100, "noop-%-of-apply")
	b.ReportMetric(float64(ipDown)/float64(destroy.took), "x-faster-destroy")
	b.ReportMetric(mb(apply.rss), "apply-peak-MB")
	b.ReportMetric(float64(apply.took)/float64(floorUp), "apply-x-floor")
	fmt.Printf("N=%-5d (%d round(s), medians)\n", n, rounds)
	fmt.Printf("N=%-5d apply %8.1f ms  ip script %8.1f ms  (%.1fx)  | no-op %7.1f ms (%.1f%% of apply) | destroy %8.1f ms  ip teardown %8.1f ms (%.2fx) | peak RSS apply %.1f MB, no-op %.1f MB, destroy %.1f MB\n",
		n, ms(apply.took), ms(ipUp), float64(ipUp)/float64(apply.took), ms(noop), float64(noop)/float64(apply.took)*100,
		ms(destroy.took), ms(ipDown), float64(ipDown)/float64(destroy.took), mb(apply.rss), mb(noopRSS), mb(destroy.rss))
	fmt.Printf("N=%-5d floor (bench/floor: plain netlink calls, nothing read or recorded) up %8.1f ms, down %8.1f ms | apply %.2fx the floor, destroy %.2fx\n",
		n, ms(floorUp), ms(floorDown), float64(apply.took)/float64(floorUp), float64(destroy.took)/float64(floorDown))
}

func BenchmarkLab10(b *testing.B)   { benchLab(b, 10) }
func BenchmarkLab100(b *testing.B)  { benchLab(b, 100) }
func BenchmarkLab1000(b *testing.B) { benchLab(b, 1000) }
func BenchmarkLab3000(b *testing.B) { benchLab(b, 3000) }

// BenchmarkBareNamespaces10000: 10 000 namespaces and nothing else, made
// and removed by netplan-lab and by `ip netns add`/`del`, to show what one
// namespace costs and how that grows (the time per namespace is printed
// for the first 1000 and for all 10 000).
func BenchmarkBareNamespaces10000(b *testing.B) {
	sandbox, prefix := benchSandbox(b)
	cli(b)
	for _, n := range []int{1000, 10000} {
		var y strings.Builder
		y.WriteString("name: bare\nnamespaces:\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&y, "  n%d: {}\n", i)
		}
		file := filepath.Join(b.TempDir(), "bare.yaml")
		if err := os.WriteFile(file, []byte(y.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		var up, down strings.Builder
		up.WriteString("set -e\n")
		down.WriteString("set -e\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&up, "ip netns add %sip-n%d\n", prefix, i)
			fmt.Fprintf(&down, "ip netns del %sip-n%d\n", prefix, i)
		}
		ipUp := runScript(b, up.String())
		ipDown := runScript(b, down.String())
		settle(n)
		g := []string{"--netns", sandbox, "--prefix", prefix}
		apply := runCLI(b, append(g, "apply", file)...)
		noop := runCLI(b, append(g, "apply", file)...)
		destroy := runCLI(b, append(g, "destroy", file)...)
		per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
		fmt.Printf("bare N=%-5d apply %8.1f ms (%.0f us/ns)  ip netns add %8.1f ms (%.0f us/ns) | no-op %7.1f ms (%.0f us/ns) | destroy %8.1f ms (%.0f us/ns)  ip netns del %8.1f ms (%.0f us/ns) | peak RSS apply %.1f MB\n",
			n, ms(apply.took), per(apply.took), ms(ipUp), per(ipUp), ms(noop.took), per(noop.took),
			ms(destroy.took), per(destroy.took), ms(ipDown), per(ipDown), mb(apply.rss))
		if n == 10000 {
			b.ReportMetric(per(apply.took), "apply-us/ns")
			b.ReportMetric(per(ipUp), "ip-add-us/ns")
			b.ReportMetric(per(destroy.took), "destroy-us/ns")
		}
		settle(n)
	}
}

// BenchmarkMemory100k: peak RSS of validate and of plan (nothing of the
// lab exists) for a file of 100 000 namespaces, each with a veth to the
// host, against the file's size.
func BenchmarkMemory100k(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("plan needs root: it reads the kernel")
	}
	const n = 100000
	var y strings.Builder
	y.WriteString("name: big\nnamespaces:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&y, "  n%d: {}\n", i)
	}
	y.WriteString("links:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&y, "  - a: {namespace: n%d, name: eth0, addresses: [10.%d.%d.2/30]}\n    b: {namespace: host, name: v%d}\n", i, i>>14, (i>>6)&255, i)
	}
	file := filepath.Join(b.TempDir(), "big.yaml")
	if err := os.WriteFile(file, []byte(y.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	size := int64(y.Len())
	sandbox, prefix := benchNames(b)
	val := runCLI(b, "validate", file)
	plan := runCLI(b, "--netns", sandbox, "--prefix", prefix, "plan", file)
	fmt.Printf("100k namespaces, file %.1f MB | validate %7.1f ms, peak RSS %.1f MB (%.1fx the file) | plan %7.1f ms, peak RSS %.1f MB (%.1fx the file)\n",
		mb(size), ms(val.took), mb(val.rss), float64(val.rss)/float64(size), ms(plan.took), mb(plan.rss), float64(plan.rss)/float64(size))
	b.ReportMetric(float64(val.rss)/float64(size), "validate-rss/file")
	b.ReportMetric(float64(plan.rss)/float64(size), "plan-rss/file")
}
