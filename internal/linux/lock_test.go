package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
