package linux

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWatchMarkOfAKilledWatchGoes: a running watch's mark names it and
// refuses a second watch; the mark a killed watch leaves (its file,
// nobody's lock on it: what kill -9 leaves) is not a watch, goes when it
// is looked at, and a new watch of the lab can start.
func TestWatchMarkOfAKilledWatchGoes(t *testing.T) {
	old := WatchDir
	WatchDir = filepath.Join(t.TempDir(), "watch")
	t.Cleanup(func() { WatchDir = old })

	release, err := HoldWatch("sb", "lab", "p-", "first")
	if err != nil {
		t.Fatal(err)
	}
	if w := Watcher("sb", "lab", "p-"); !strings.Contains(w, "(first)") {
		t.Fatalf("Watcher = %q, want the first watch", w)
	}
	if _, err := HoldWatch("sb", "lab", "p-", "second"); err == nil || !strings.Contains(err.Error(), "watches this lab already") {
		t.Fatalf("a second watch: %v", err)
	}
	release()
	if _, err := os.Stat(watchPath("sb", "lab", "p-")); !os.IsNotExist(err) {
		t.Fatalf("the mark stayed after release: %v", err)
	}

	// Killed: the file stays, its lock goes with the process.
	path := watchPath("sb", "lab", "p-")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("pid 1 (killed)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if w := Watcher("sb", "lab", "p-"); w != "" {
		t.Fatalf("Watcher = %q for a killed watch's mark", w)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the killed watch's mark stayed: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Fatalf("the sandbox's empty directory stayed: %v", err)
	}
	release, err = HoldWatch("sb", "lab", "p-", "third")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if w := Watcher("sb", "lab", "p-"); !strings.Contains(w, "(third)") {
		t.Fatalf("Watcher = %q, want the new watch", w)
	}
}
