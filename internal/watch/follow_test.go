package watch_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netplan-lab/netplan-lab/internal/watch"
	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/reconcile/fake"
)

// runWatch starts a watch of file on a fake kernel; cancel stops it, and
// waits for it to return.
func runWatch(t *testing.T, file string, cfg watch.Config, prep ...func(*fake.Kernel)) (*watch.Recorder, *fake.Kernel, func()) {
	t.Helper()
	k := fake.New("lab")
	for _, p := range prep {
		p(k)
	}
	rec := &watch.Recorder{}
	cfg.File, cfg.Kernel, cfg.Report = file, k, rec.Report
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- watch.Run(ctx, cfg) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the watch did not stop within 10 s of its context's end")
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return rec, k, stop
}

// withAddr is the lab with c1's address changed.
func withAddr(a string) []byte { return []byte(strings.Replace(lab, "10.0.0.2/24", a, 1)) }

func waitApplied(t *testing.T, rec *watch.Recorder, n int, addr string, within time.Duration) {
	t.Helper()
	e, err := rec.Wait("applied", n, within)
	if err != nil {
		t.Fatal(err)
	}
	if addr != "" && !strings.Contains(strings.Join(e.Changes, "\n"), addr) {
		t.Fatalf("applied %d: %+v, want %s added", n, e, addr)
	}
}

// TestWatchFollowsItsDirectory: the file's directory renamed away and
// made again (an outside audit: the watch went on watching the old
// directory, silently, and repaired the lab back to the old content),
// or deleted and made again: the new file is applied at the next resync
// and watched by events from then on; a resync that finds no file says
// so, once.
func TestWatchFollowsItsDirectory(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "w")
	file := filepath.Join(dir, "lab.yaml")
	os.Mkdir(dir, 0o755)
	os.WriteFile(file, withAddr("10.0.0.2/24"), 0o644)
	rec, _, _ := runWatch(t, file, watch.Config{Debounce: 50 * time.Millisecond, Resync: 300 * time.Millisecond})
	waitApplied(t, rec, 1, "10.0.0.2/24", 5*time.Second)

	// Renamed away; an edit in the old place is not the file's.
	if err := os.Rename(dir, filepath.Join(top, "w2")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(top, "w2", "lab.yaml"), withAddr("10.0.0.9/24"), 0o644)
	if _, err := rec.Wait("warning", 1, 5*time.Second); err != nil {
		t.Fatal("no word that the file is gone:", err)
	}
	if w := rec.Last("warning"); !strings.Contains(strings.Join(w.Warnings, "\n"), file+" is not there") {
		t.Fatalf("warning: %+v", w)
	}
	os.Mkdir(dir, 0o755)
	os.WriteFile(file, withAddr("10.0.0.3/24"), 0o644)
	waitApplied(t, rec, 2, "10.0.0.3/24", 5*time.Second)
	// Watched by events again: an edit is applied within the debounce,
	// well before a resync would (made long by waiting less than it).
	os.WriteFile(file, withAddr("10.0.0.4/24"), 0o644)
	waitApplied(t, rec, 3, "10.0.0.4/24", 5*time.Second)

	// Deleted and made again.
	os.RemoveAll(dir)
	time.Sleep(100 * time.Millisecond)
	os.Mkdir(dir, 0o755)
	os.WriteFile(file, withAddr("10.0.0.5/24"), 0o644)
	waitApplied(t, rec, 4, "10.0.0.5/24", 5*time.Second)
	if n := rec.Count("warning"); n > 2 {
		t.Fatalf("%d warnings: the file's absence is said once each time", n)
	}
}

// TestWatchFollowsSymlinks: a file that is a symlink into another
// directory is watched there too (edits of the target by events), and a
// symlinked directory swapped for another (a deploy's "current") is read
// at the next resync.
func TestWatchFollowsSymlinks(t *testing.T) {
	top := t.TempDir()
	targets, here := filepath.Join(top, "targets"), filepath.Join(top, "here")
	os.Mkdir(targets, 0o755)
	os.Mkdir(here, 0o755)
	os.WriteFile(filepath.Join(targets, "a.yaml"), withAddr("10.0.0.2/24"), 0o644)
	file := filepath.Join(here, "lab.yaml")
	os.Symlink(filepath.Join(targets, "a.yaml"), file)
	rec, _, stop := runWatch(t, file, watch.Config{Debounce: 50 * time.Millisecond, Resync: time.Hour})
	waitApplied(t, rec, 1, "10.0.0.2/24", 5*time.Second)
	// sed -i on the target: a new file renamed over it, in targets/.
	tmp := filepath.Join(targets, "sed123")
	os.WriteFile(tmp, withAddr("10.0.0.3/24"), 0o644)
	os.Rename(tmp, filepath.Join(targets, "a.yaml"))
	waitApplied(t, rec, 2, "10.0.0.3/24", 5*time.Second)
	stop()

	// A symlinked directory swapped (no event in any watched directory).
	v1, v2, current := filepath.Join(top, "v1"), filepath.Join(top, "v2"), filepath.Join(top, "current")
	os.Mkdir(v1, 0o755)
	os.Mkdir(v2, 0o755)
	os.WriteFile(filepath.Join(v1, "lab.yaml"), withAddr("10.0.0.2/24"), 0o644)
	os.WriteFile(filepath.Join(v2, "lab.yaml"), withAddr("10.0.0.7/24"), 0o644)
	os.Symlink("v1", current)
	rec, _, _ = runWatch(t, filepath.Join(current, "lab.yaml"), watch.Config{Debounce: 50 * time.Millisecond, Resync: 300 * time.Millisecond})
	waitApplied(t, rec, 1, "10.0.0.2/24", 5*time.Second)
	os.Symlink("v2", current+".tmp")
	if err := os.Rename(current+".tmp", current); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, rec, 2, "10.0.0.7/24", 5*time.Second)
}

// TestWatchIgnoresOtherFilesInItsDirectory: a log written beside the
// file every 20 ms does not hold back an edit (each event in the
// directory used to start the debounce again: an outside audit).
func TestWatchIgnoresOtherFilesInItsDirectory(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lab.yaml")
	os.WriteFile(file, withAddr("10.0.0.2/24"), 0o644)
	rec, _, _ := runWatch(t, file, watch.Config{Debounce: 200 * time.Millisecond, Resync: time.Hour})
	waitApplied(t, rec, 1, "10.0.0.2/24", 5*time.Second)
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		log, _ := os.Create(filepath.Join(dir, "noise.log"))
		defer log.Close()
		for {
			select {
			case <-quit:
				return
			case <-time.After(20 * time.Millisecond):
				log.WriteString("x\n")
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	os.WriteFile(file, withAddr("10.0.0.3/24"), 0o644)
	// The noise goes on for the whole wait: only the file's quiet counts.
	waitApplied(t, rec, 2, "10.0.0.3/24", 3*time.Second)
}

// TestWatchStopsWhileWaitingForTheLock: a signal while an edit waits for
// the lock (another run holds it) ends the watch at once; the edit is not
// applied (an outside audit: it waited out the lock, applied, then
// stopped).
func TestWatchStopsWhileWaitingForTheLock(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lab.yaml")
	os.WriteFile(file, withAddr("10.0.0.2/24"), 0o644)
	var held atomic.Bool
	lock := func(ctx context.Context) (func(), error) {
		if !held.Load() {
			return func() {}, nil
		}
		<-ctx.Done() // someone else holds it for longer than this test
		return nil, errors.New("lock: " + ctx.Err().Error())
	}
	rec, k, stop := runWatch(t, file, watch.Config{Debounce: 50 * time.Millisecond, Resync: time.Hour, Lock: lock})
	waitApplied(t, rec, 1, "10.0.0.2/24", 5*time.Second)
	held.Store(true)
	writes := k.Writes()
	os.WriteFile(file, withAddr("10.0.0.3/24"), 0o644)
	time.Sleep(300 * time.Millisecond) // past the debounce: waiting for the lock
	start := time.Now()
	stop()
	if took := time.Since(start); took > time.Second {
		t.Fatalf("the watch took %v to stop while waiting for the lock", took)
	}
	if k.Writes() != writes || rec.Count("applied") != 1 {
		t.Fatalf("the edit was applied after the signal: writes %d -> %d, %d applies", writes, k.Writes(), rec.Count("applied"))
	}
	ev := rec.Events()
	var said bool
	for _, e := range ev {
		said = said || e.Kind == "warning" && strings.Contains(strings.Join(e.Warnings, ""), "stopped while waiting for the lock: this apply was not started, nothing was changed")
	}
	if !said || ev[len(ev)-1].Kind != "stopped" {
		t.Fatalf("events: %+v", ev)
	}
}

// TestWatchSaysAnErrorIsGone: after an edit whose apply failed, the edit
// reverted applies nothing (the failed apply was rolled back), and the
// watch says the error is gone (it said nothing: an outside audit).
func TestWatchSaysAnErrorIsGone(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lab.yaml")
	os.WriteFile(file, withAddr("10.0.0.2/24"), 0o644)
	var refuse atomic.Bool
	rec, _, _ := runWatch(t, file, watch.Config{Debounce: 50 * time.Millisecond, Resync: time.Hour}, func(k *fake.Kernel) {
		k.FailOn = func(c *reconcile.Change) error {
			if refuse.Load() && c.Name == "10.0.0.3/24" {
				return errors.New("refused by the test")
			}
			return nil
		}
	})
	waitApplied(t, rec, 1, "10.0.0.2/24", 5*time.Second)
	refuse.Store(true)
	os.WriteFile(file, withAddr("10.0.0.3/24"), 0o644)
	if _, err := rec.Wait("error", 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(file, withAddr("10.0.0.2/24"), 0o644)
	e, err := rec.Wait("applied", 2, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Changes) != 0 || e.Summary != "The error is gone. No changes: the kernel matches the file." {
		t.Fatalf("after the revert: %+v", e)
	}
}
