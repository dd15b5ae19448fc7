package main

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestBoundHeapRaisesItsLimitForWhatIsLive: boundHeap keeps its limit
// while what is live is well under it, raises it (to one and a half
// times what is live) once the collector has no room left under it, so
// that it does not run without pause, and puts the default back when
// done.
func TestBoundHeapRaisesItsLimitForWhatIsLive(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const limit = 64 << 20
	restore := boundHeap(limit)
	time.Sleep(60 * time.Millisecond)
	if got := debug.SetMemoryLimit(-1); got != limit {
		restore()
		t.Fatalf("with little live, the limit is %d, want %d", got, limit)
	}
	live := make([][]byte, 0, 96)
	for i := 0; i < 96; i++ { // 96 MiB live: over the limit
		live = append(live, make([]byte, 1<<20))
		for j := range live[i] {
			live[i][j] = byte(i)
		}
	}
	runtime.GC()
	// Settled: room above what is live.
	deadline := time.Now().Add(5 * time.Second)
	for debug.SetMemoryLimit(-1) < 96<<20*17/16 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := debug.SetMemoryLimit(-1); got < 96<<20*17/16 {
		restore()
		t.Fatalf("with 96 MiB live, the limit is %d MiB: no room above it", got>>20)
	}
	runtime.KeepAlive(live)
	restore()
	if got := debug.SetMemoryLimit(-1); got < defaultMemoryLimit {
		t.Fatalf("after restore, the limit is %d MiB, want at least the default %d MiB", got>>20, defaultMemoryLimit>>20)
	}
}
