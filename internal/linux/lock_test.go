package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestLockFileGoesWithItsSandbox: unlock removes the lock file of a
// sandbox that is gone, and one who waited on the removed file does not
// take it for the lock: it locks the file at the path, which a third
// then waits on.
func TestLockFileGoesWithItsSandbox(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandbox-x.lock")
	ctx := context.Background()
	gone := func() bool { return true }
	unlockA, err := lockFile(ctx, path, gone, time.Second, "A", nil)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan string, 1)
	bHas := make(chan func(), 1)
	go func() {
		unlock, err := lockFile(ctx, path, gone, 5*time.Second, "B", func(holder string) { waited <- holder })
		if err != nil {
			t.Error(err)
			bHas <- func() {}
			return
		}
		bHas <- unlock
	}()
	if holder := <-waited; holder != fmt.Sprintf("pid %d: A", os.Getpid()) {
		t.Fatalf("B waited on %q", holder)
	}
	unlockA() // the sandbox is gone: the file goes, then the lock
	unlockB := <-bHas
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("B holds the lock, but no file is at the path: %v", err)
	}
	// B's lock is the path's: a third waits on it.
	if _, err := lockFile(ctx, path, gone, 100*time.Millisecond, "C", nil); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("C got %v while B holds the lock", err)
	}
	unlockB()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the lock file stays after its sandbox is gone: %v", err)
	}
	// A sandbox that stays keeps its file.
	unlock, err := lockFile(ctx, path, func() bool { return false }, time.Second, "D", nil)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the lock file of a sandbox that stays went: %v", err)
	}
}

// TestOnThreadPassesPanicsAndGoexit: fn's panic panics in the caller's
// goroutine, and fn's runtime.Goexit (t.Fatal) ends the caller's, so a
// test's cleanups run (an outside audit: t.Fatal inside labtest's Do hung
// the test; a panic there killed the binary before its labs went).
func TestOnThreadPassesPanicsAndGoexit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the thread is put back in its namespace (setns)")
	}
	enter := func() error { return nil }
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want fn's panic", v)
			}
		}()
		onThread(enter, func() error { panic("boom") })
		t.Error("onThread returned after fn panicked")
	}()
	done := make(chan bool)
	go func() {
		defer close(done)
		onThread(enter, func() error { runtime.Goexit(); return nil })
		t.Error("onThread returned after fn's Goexit")
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("onThread hung after fn's Goexit")
	}
	if err := onThread(enter, func() error { return errors.New("plain") }); err == nil || err.Error() != "plain" {
		t.Errorf("fn's error: %v", err)
	}
}
