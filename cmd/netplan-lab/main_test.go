package main

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestBoundHeapRaisesItsLimitForWhatIsLive: boundHeap keeps its limit
// while what is live is well under it, raises it once what is live
// passes 90 % of it (to twice that), so that the collector does not run
// without pause, and puts the default back when done.
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
	// Settled: what is live is under 90 % of the limit.
	deadline := time.Now().Add(2 * time.Second)
	for debug.SetMemoryLimit(-1)/10*9 < 96<<20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := debug.SetMemoryLimit(-1); got/10*9 < 96<<20 {
		restore()
		t.Fatalf("with 96 MiB live, the limit is %d MiB: what is live is over 90 %% of it", got>>20)
	}
	runtime.KeepAlive(live)
	restore()
	if got := debug.SetMemoryLimit(-1); got < defaultMemoryLimit {
		t.Fatalf("after restore, the limit is %d MiB, want at least the default %d MiB", got>>20, defaultMemoryLimit>>20)
	}
}
