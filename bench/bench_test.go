// Package bench measures netplan-lab against the same lab built and torn
// down by a shell script of `ip` commands, in the same run, for N = 10, 100
// and 1000 namespaces. Everything happens inside a sandbox namespace.
//
//	make bench
package bench

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

func addr(i int) string { return fmt.Sprintf("10.0.%d.%d", (i+2)>>8, (i+2)&255) }

// labYAML is N namespaces, each joined to bridge br0 by a veth, with an
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
		fmt.Fprintf(&b, "  n%d:\n    routes: [{to: default, via: 10.0.0.1}]\n%s", i, v6on)
	}
	b.WriteString("bridges:\n  - {name: br0, addresses: [10.0.0.1/16]}\nlinks:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - a: {namespace: n%d, name: eth0, addresses: [%s/16]}\n    b: {namespace: host, name: v%d, bridge: br0}\n", i, addr(i), i)
	}
	return b.String()
}

// ipScript is the same lab as a script of `ip` commands, as a person
// would type them.
func ipScript(n int, sandbox, prefix string) (up, down string) {
	var u, d strings.Builder
	u.WriteString("set -e\n")
	fmt.Fprintf(&u, "ip netns add %s\nip -n %s link set lo up\n", sandbox, sandbox)
	fmt.Fprintf(&u, "ip -n %s link add br0 type bridge\nip -n %s addr add 10.0.0.1/16 dev br0\nip -n %s link set br0 up\n", sandbox, sandbox, sandbox)
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("%sn%d", prefix, i)
		fmt.Fprintf(&u, "ip netns add %s\n", ns)
		fmt.Fprintf(&u, "ip -n %s link set lo up\n", ns)
		fmt.Fprintf(&u, "ip -n %s link add v%d type veth peer name eth0 netns %s\n", sandbox, i, ns)
		fmt.Fprintf(&u, "ip -n %s link set v%d master br0 up\n", sandbox, i)
		fmt.Fprintf(&u, "ip -n %s addr add %s/16 dev eth0\n", ns, addr(i))
		fmt.Fprintf(&u, "ip -n %s link set eth0 up\n", ns)
		fmt.Fprintf(&u, "ip -n %s route add default via 10.0.0.1\n", ns)
	}
	d.WriteString("set -e\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&d, "ip netns del %sn%d\n", prefix, i)
	}
	fmt.Fprintf(&d, "ip -n %s link del br0\nip netns del %s\n", sandbox, sandbox)
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
		if strings.HasPrefix(e.Name(), prefix) || e.Name() == sandbox {
			p := filepath.Join(linux.NetnsDir, e.Name())
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
			_ = os.Remove(p)
		}
	}
}

// settle gives the kernel time to finish freeing the namespaces of the
// previous phase (that work is asynchronous) so it does not land on the next.
func settle(n int) { time.Sleep(time.Second + time.Duration(n)*3*time.Millisecond) }

func benchLab(b *testing.B, n int) {
	if os.Geteuid() != 0 {
		b.Skip("the benchmark needs root: it makes namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		b.Skip("the baseline needs the ip command (apt-get install iproute2)")
	}
	id := fmt.Sprintf("%04x", rand.Intn(0xffff))
	sandbox, prefix := "npl-bench-"+id, "b"+id+"-"
	defer cleanup(prefix, sandbox)

	// Baseline: the ip script (BENCH_SKIP_IP=1 skips it for experiments).
	ipUp, ipDown := time.Duration(1), time.Duration(1)
	if os.Getenv("BENCH_SKIP_IP") != "1" {
		up, down := ipScript(n, sandbox+"-ip", prefix+"ip-")
		ipUp = runScript(b, up)
		ipDown = runScript(b, down)
		settle(n)
	}

	top, err := topology.Parse("bench.yaml", []byte(labYAML(n)))
	if err != nil {
		b.Fatal(err)
	}
	want, err := reconcile.Desired(top)
	if err != nil {
		b.Fatal(err)
	}
	empty := reconcile.Nothing()
	ctx := context.Background()
	k := linux.New(linux.Options{Name: top.Name, Prefix: prefix, Netns: sandbox})
	defer k.Close()

	stages := reconcile.ExecOptions{OnStage: func(stage string, changes int, took time.Duration) {
		fmt.Printf("N=%-5d   stage %-22s %5d changes %9.1f ms\n", n, stage, changes, float64(took.Microseconds())/1000)
	}}
	start := time.Now()
	if _, err := k.EnsureHost(); err != nil {
		b.Fatal(err)
	}
	if _, err := reconcile.Reconcile(ctx, k, want, stages); err != nil {
		b.Fatal(err)
	}
	apply := time.Since(start)

	// The no-op re-apply starts cold, as a new `netplan-lab apply` process
	// would: no cached namespace handles.
	k.Close()
	k = linux.New(linux.Options{Name: top.Name, Prefix: prefix, Netns: sandbox})
	defer k.Close()
	start = time.Now()
	res, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{})
	if err != nil || res.Applied != 0 {
		b.Fatalf("no-op re-apply: %v, %d changes", err, res.Applied)
	}
	noop := time.Since(start)

	start = time.Now()
	if _, err := reconcile.Reconcile(ctx, k, empty, reconcile.ExecOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := k.RemoveHostIfCreated(); err != nil {
		b.Fatal(err)
	}
	destroy := time.Since(start)

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(apply), "apply-ms")
	b.ReportMetric(ms(noop), "noop-ms")
	b.ReportMetric(ms(destroy), "destroy-ms")
	b.ReportMetric(ms(ipUp), "ip-up-ms")
	b.ReportMetric(ms(ipDown), "ip-down-ms")
	b.ReportMetric(float64(ipUp)/float64(apply), "x-faster-apply")
	b.ReportMetric(float64(noop)/float64(apply)*100, "noop-%-of-apply")
	b.ReportMetric(float64(ipDown)/float64(destroy), "x-faster-destroy")
	fmt.Printf("N=%-5d apply %8.1f ms  ip script %8.1f ms  (%.1fx)  | no-op %7.1f ms (%.1f%% of apply) | destroy %8.1f ms  ip teardown %8.1f ms (%.2fx)\n",
		n, ms(apply), ms(ipUp), float64(ipUp)/float64(apply), ms(noop), float64(noop)/float64(apply)*100,
		ms(destroy), ms(ipDown), float64(ipDown)/float64(destroy))
	settle(n)
}

func BenchmarkLab10(b *testing.B)   { benchLab(b, 10) }
func BenchmarkLab100(b *testing.B)  { benchLab(b, 100) }
func BenchmarkLab1000(b *testing.B) { benchLab(b, 1000) }
