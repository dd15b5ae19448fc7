package watch_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netplan-lab/netplan-lab/internal/watch"
	"github.com/netplan-lab/netplan-lab/reconcile/fake"
)

type events struct{ c chan string }

func (e *events) Sync([]string) error { return nil }
func (e *events) Chan() <-chan string { return e.c }

const lab = `name: lab
namespaces: {c1: {}}
links:
  - a: {namespace: c1, name: eth0, addresses: [10.0.0.2/24]}
    b: {namespace: host, name: veth-c1, addresses: [10.0.0.1/24]}
`

// The watch loop on the fake kernel: no root needed.
func TestWatchLoopOnFakeKernel(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(file, []byte(lab), 0o644); err != nil {
		t.Fatal(err)
	}
	k := fake.New("lab")
	ev := &events{c: make(chan string, 10)}
	rec := &watch.Recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- watch.Run(ctx, watch.Config{
			File: file, Kernel: k, Events: ev, Debounce: 300 * time.Millisecond, KernelDebounce: 10 * time.Millisecond, Resync: time.Hour,
			Report: rec.Report,
		})
	}()
	wait := func(kind string, n int) watch.Event {
		t.Helper()
		e, err := rec.Wait(kind, n, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	wait("applied", 1)
	// A burst of saves: one apply, of the last content.
	for i := 0; i < 10; i++ {
		os.WriteFile(file, []byte(strings.Replace(lab, "10.0.0.2/24", "10.0.0."+string(rune('3'+i%7))+"/24", 1)), 0o644)
		time.Sleep(5 * time.Millisecond)
	}
	e := wait("applied", 2)
	if len(e.Changes) != 2 || !strings.Contains(strings.Join(e.Changes, "\n"), "+ address 10.0.0.") {
		t.Fatalf("applied: %+v", e)
	}
	time.Sleep(500 * time.Millisecond)
	if applies := rec.Count("applied"); applies != 2 {
		t.Fatalf("%d applies for one burst", applies-1)
	}
	// Invalid: reported with its position, nothing changes.
	writes := k.Writes()
	os.WriteFile(file, []byte("name: lab\nbogus: 1\n"), 0o644)
	inv := wait("invalid_file", 1)
	if !strings.Contains(strings.Join(inv.Errors, "\n"), file+":2:1: bogus: unknown key") || k.Writes() != writes {
		t.Fatalf("invalid: %+v, writes %d -> %d", inv, writes, k.Writes())
	}
	// Drift: a veth deleted by hand, a kernel event, a repair.
	if err := k.W.DeleteLink("host", "veth-c1"); err != nil {
		t.Fatal(err)
	}
	ev.c <- "link veth-c1 deleted in netns host"
	r := wait("drift_repaired", 1)
	if r.Drift[0] != "link veth-c1 deleted in netns host" || !strings.Contains(strings.Join(r.Changes, "\n"), "+ veth eth0 <-> host:veth-c1") {
		t.Fatalf("repair: %+v", r)
	}
	// The file fixed, as it was before: nothing to do, and said so.
	os.WriteFile(file, []byte(strings.Replace(lab, "10.0.0.2/24", "10.0.0."+string(rune('3'+9%7))+"/24", 1)), 0o644)
	if fixed := wait("applied", 3); len(fixed.Changes) != 0 || fixed.Summary != "The file is valid again. No changes: the kernel matches it." {
		t.Fatalf("fixed: %+v", fixed)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wait("stopped", 1)
}

// TestResyncRepairsWithoutEvents: with no kernel events at all, the
// periodic resync still finds and repairs drift.
func TestResyncRepairsWithoutEvents(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(file, []byte(lab), 0o644); err != nil {
		t.Fatal(err)
	}
	k := fake.New("lab")
	got := make(chan watch.Event, 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go watch.Run(ctx, watch.Config{
		File: file, Kernel: k, Resync: 50 * time.Millisecond,
		Report: func(e watch.Event) { got <- e },
	})
	for e := range got {
		if e.Kind == "applied" {
			break
		}
	}
	if err := k.W.DeleteLink("c1", "eth0"); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e := <-got:
			if e.Kind == "drift_repaired" {
				if e.Trigger != "resync" || !strings.Contains(strings.Join(e.Changes, "\n"), "+ veth eth0 <-> host:veth-c1") {
					t.Fatalf("repair: %+v", e)
				}
				return
			}
		case <-timeout:
			t.Fatal("no repair by resync")
		}
	}
}

// TestWatchEmptyMidSave: a file read empty (a save that truncates, then
// writes, read in between: a CI run under load saw it) is read once more
// after another debounce; the content written meanwhile is applied, and
// nothing is called invalid. A file that stays empty is reported.
func TestWatchEmptyMidSave(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(file, []byte(lab), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := &watch.Recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	const debounce = 200 * time.Millisecond
	go func() {
		done <- watch.Run(ctx, watch.Config{File: file, Kernel: fake.New("lab"), Debounce: debounce, Resync: time.Hour, Report: rec.Report})
	}()
	defer func() { cancel(); <-done }()
	if _, err := rec.Wait("applied", 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(debounce * 3 / 2) // read empty once, by now
	if err := os.WriteFile(file, []byte(strings.Replace(lab, "10.0.0.2/24", "10.0.0.3/24", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Wait("applied", 2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := rec.Count("invalid_file"); n != 0 {
		t.Fatalf("%d invalid_file events for a file empty for a moment", n)
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := rec.Wait("invalid_file", 1, 5*time.Second)
	if err != nil || !strings.Contains(strings.Join(inv.Errors, "\n"), "empty file") {
		t.Fatalf("a file that stays empty: %+v %v", inv, err)
	}
}
