package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/internal/watch"
	"github.com/netplan-lab/netplan-lab/reconcile"
)

// BenchmarkWatch100 measures, on a 100-namespace lab under apply --watch
// with the default debounces (file 300 ms, kernel events 100 ms):
// edit-to-applied for a one-address change, and drift-to-repaired for a
// veth deleted by hand. Medians of 5 each.
func BenchmarkWatch100(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the benchmark needs root: it makes namespaces")
	}
	const n = 100
	fileDebounce, kernelDebounce := 300*time.Millisecond, 100*time.Millisecond
	sandbox, prefix := benchNames(b)
	dir := b.TempDir()
	file := filepath.Join(dir, "lab.yaml")
	src := labYAML(n)
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	k := linux.New(linux.Options{Name: "bench", Prefix: prefix, Netns: sandbox})
	defer k.Close()
	ctx, cancel := context.WithCancel(context.Background())
	events, err := k.Events(ctx)
	if err != nil {
		b.Fatal(err)
	}
	rec := &watch.Recorder{}
	done := make(chan error, 1)
	go func() {
		done <- watch.Run(ctx, watch.Config{File: file, Kernel: k, Events: events,
			Debounce: fileDebounce, KernelDebounce: kernelDebounce, Resync: time.Hour, Report: rec.Report})
	}()
	waitFor := func(kind string, n int) watch.Event {
		e, err := rec.Wait(kind, n, 60*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		return e
	}
	waitFor("applied", 1)

	var edits, repairs []time.Duration
	for i := 0; i < 5; i++ {
		edited := strings.Replace(src, addr(50)+"/16", fmt.Sprintf("10.0.200.%d/16", i+1), 1)
		start := time.Now()
		if err := os.WriteFile(file, []byte(edited), 0o644); err != nil {
			b.Fatal(err)
		}
		e := waitFor("applied", i+2)
		edits = append(edits, e.Time.Sub(start))
	}
	host, err := netlinkHandle(sandbox)
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close()
	for i := 0; i < 5; i++ {
		time.Sleep(500 * time.Millisecond) // let the previous repair's own events pass
		before := rec.Count("drift_repaired")
		l, err := host.LinkByName("v60")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := host.LinkDel(l); err != nil {
			b.Fatal(err)
		}
		e := waitFor("drift_repaired", before+1)
		repairs = append(repairs, e.Time.Sub(start))
	}
	cancel()
	<-done
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Printf("watch N=%d: edit-to-applied median %.1f ms (file debounce %v, so %.1f ms of work); drift-to-repaired median %.1f ms (event debounce %v, so %.1f ms of work)\n",
		n, ms(med(edits)), fileDebounce, ms(med(edits)-fileDebounce), ms(med(repairs)), kernelDebounce, ms(med(repairs)-kernelDebounce))
	b.ReportMetric(ms(med(edits)), "edit-to-applied-ms")
	b.ReportMetric(ms(med(repairs)), "drift-to-repaired-ms")

	// Tear the lab down.
	empty := reconcile.Nothing()
	if _, err := reconcile.Reconcile(context.Background(), k, empty, reconcile.ExecOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := k.RemoveHostIfCreated(); err != nil {
		b.Fatal(err)
	}
}

func netlinkHandle(sandbox string) (*netlink.Handle, error) {
	fd, err := netnsFromPath(filepath.Join(linux.NetnsDir, sandbox))
	if err != nil {
		return nil, err
	}
	return netlink.NewHandleAt(fd)
}

func netnsFromPath(p string) (netns.NsHandle, error) { return netns.GetFromPath(p) }
