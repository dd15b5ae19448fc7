package watch

import (
	"fmt"
	"sync"
	"time"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// ParseFile is the default Config.Load: decode and validate the file and
// turn it into the state it asks for.
func ParseFile(file string, data []byte) (*reconcile.State, error) {
	t, err := topology.Parse(file, data)
	if err != nil {
		return nil, err
	}
	return reconcile.Desired(t)
}

// Recorder keeps the events a Run reports, for a program that waits on
// them (tests, benchmarks). Its Report method is a Config.Report.
type Recorder struct {
	mu     sync.Mutex
	events []Event
}

// Report records e.
func (r *Recorder) Report(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// Count returns how many events of kind were reported.
func (r *Recorder) Count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// Last returns the last event of kind, if any.
func (r *Recorder) Last(kind string) Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Kind == kind {
			return r.events[i]
		}
	}
	return Event{}
}

// Wait returns the nth event of kind (1-based), waiting up to timeout for
// it to be reported.
func (r *Recorder) Wait(kind string, n int, timeout time.Duration) (Event, error) {
	for deadline := time.Now().Add(timeout); ; time.Sleep(time.Millisecond) {
		r.mu.Lock()
		c := 0
		for _, e := range r.events {
			if e.Kind == kind {
				if c++; c == n {
					r.mu.Unlock()
					return e, nil
				}
			}
		}
		all := append([]Event(nil), r.events...)
		r.mu.Unlock()
		if time.Now().After(deadline) {
			return Event{}, fmt.Errorf("no %d %q events within %v; events: %+v", n, kind, timeout, all)
		}
	}
}

// Events returns a copy of every event reported so far.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}
