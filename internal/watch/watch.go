// Package watch keeps a lab in line with its file, and with itself: it
// applies edits to the file as minimal plans, and repairs drift that kernel
// events (or a periodic resync) reveal. It never fights objects the topology
// does not own: those never appear in a plan.
package watch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// EventSource streams descriptions of kernel changes in the namespaces it
// was last synced to.
type EventSource interface {
	Sync(namespaces []string) error
	Chan() <-chan string
}

// Event is one thing watch did or saw; its JSON form is one line of
// `apply --watch -o json`.
type Event struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"event"` // started, applied, drift_repaired, warning, invalid_file, error, stopped, destroyed
	Trigger string    `json:"trigger,omitempty"`
	// Drift lists the kernel events that led to a repair.
	Drift   []string `json:"drift,omitempty"`
	Changes []string `json:"changes,omitempty"`
	Errors  []string `json:"errors,omitempty"`
	// Warnings are the plan's (something of someone else's in the lab,
	// NAT without forwarding, ...), reported when they change.
	Warnings []string `json:"warnings,omitempty"`
	Summary  string   `json:"summary,omitempty"`
}

// Config is what Run needs.
type Config struct {
	File   string
	Kernel reconcile.Kernel
	Events EventSource // nil: periodic resync only
	// Load reads and validates the file (default ParseFile); an error
	// that is a topology.ErrorList is reported position by position.
	Load func(file string, data []byte) (*reconcile.State, error)
	// Debounce is how long the file must be quiet before it is read
	// (a burst of saves gives one apply).
	Debounce time.Duration
	// KernelDebounce gathers a burst of kernel events into one repair.
	KernelDebounce time.Duration
	// Resync is the period of the full resync safety net.
	Resync time.Duration
	// Report receives every event, never concurrently.
	Report func(Event)
	// OnChange sees each change as it is applied.
	OnChange func(c *reconcile.Change, err error)
	// Lock, if set, is held around each apply, so no other writer works
	// on the same sandbox at the same time.
	Lock func(ctx context.Context) (unlock func(), err error)
	// AfterApply, if set, runs after each apply that succeeded, still
	// holding the lock (the command writes the lab's hosts files).
	AfterApply func() error
	// Where, if set, gives the place in the file ("FILE:LINE:COL: path: ")
	// an apply's error is about, as a one-shot apply says it.
	Where func(err error) string
}

type watcher struct {
	cfg      Config
	desired  *reconcile.State
	lastHash [32]byte
	drift    []string
	// known is the kernel as last seen matching the file: a repair puts
	// objects back as they were, with the MAC addresses the kernel had
	// picked, so neighbours' ARP caches stay right.
	known *reconcile.State
	// warned is the last set of the plan's warnings reported.
	warned string
	// emptyOnce: the last read found the file empty (mid-save, perhaps),
	// and it is read once more before that is reported.
	emptyOnce bool
	// invalid says the last version of the file read was not valid: the
	// next valid one is reported even if it changes nothing, so that one
	// sees the fix was taken (a new user's audit: silence).
	invalid bool
	// failed says the last apply failed (a conflict, a step the kernel
	// refused): the next that succeeds is reported even if it changes
	// nothing, so that one sees the error is gone.
	failed bool
	// gone says a resync found no file (its directory renamed or
	// deleted): said once, until it is back.
	gone bool
	// dirs are the directories watched, each with the identity (device,
	// inode) its path had when it was added.
	dirs map[string][2]uint64
}

// Run applies the file, then keeps the kernel matching it until ctx ends.
// An apply in progress when ctx ends completes: the lab is never left half
// way; one still waiting for the lock is not started. Run returns nil when
// stopped by ctx.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Debounce <= 0 {
		cfg.Debounce = 300 * time.Millisecond
	}
	if cfg.KernelDebounce <= 0 {
		cfg.KernelDebounce = 100 * time.Millisecond
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 10 * time.Second
	}
	if cfg.Report == nil {
		cfg.Report = func(Event) {}
	}
	if cfg.Load == nil {
		cfg.Load = ParseFile
	}
	w := &watcher{cfg: cfg}
	file, err := filepath.Abs(cfg.File)
	if err != nil {
		return err
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer fsw.Close()
	// Watch the directory, not the file: editors replace files by rename,
	// and a ConfigMap swaps a ..data symlink beside it.
	dir := filepath.Dir(file)
	if err := fsw.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	w.dirs = map[string][2]uint64{}
	if id, err := dirIdentity(dir); err == nil {
		w.dirs[dir] = id
	}
	w.follow(fsw, file) // and a symlink's target's
	w.report(Event{Kind: "started", Trigger: file})
	w.fileChanged(ctx, file, "start")

	var events <-chan string
	if cfg.Events != nil {
		events = cfg.Events.Chan()
	}
	fileTimer := stoppedTimer()
	kernelTimer := stoppedTimer()
	resync := time.NewTicker(cfg.Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			w.report(Event{Kind: "stopped"})
			return nil
		case ev, ok := <-fsw.Events:
			if !ok {
				return errors.New("file watch closed")
			}
			// Only the file's own names: a log written beside it every
			// 100 ms would otherwise hold an edit back for as long.
			if w.concerns(file, ev.Name) {
				fileTimer.Reset(cfg.Debounce)
			}
		case err, ok := <-fsw.Errors:
			if ok {
				w.report(Event{Kind: "error", Errors: []string{"watching the file: " + err.Error()}})
			}
		case <-fileTimer.C:
			w.follow(fsw, file)
			if w.fileChanged(ctx, file, "file changed") {
				fileTimer.Reset(cfg.Debounce)
			}
		case s := <-events:
			if len(w.drift) < 20 && !contains(w.drift, s) {
				w.drift = append(w.drift, s)
			}
			kernelTimer.Reset(cfg.KernelDebounce)
		case <-kernelTimer.C:
			drift := w.drift
			w.drift = nil
			w.repair(ctx, "kernel events", drift)
		case <-resync.C:
			// What the directory watch cannot see (the directory renamed
			// or made again, a symlinked directory swapped, a symlink's
			// target written in another directory) is read here.
			w.follow(fsw, file)
			before := w.lastHash
			w.fileChanged(ctx, file, "resync")
			if w.lastHash == before || w.invalid {
				w.repair(ctx, "resync", nil)
			}
		}
	}
}

// follow keeps the directories of the file watched: the one its path
// names and the one its symlinks lead to, each added again when its path
// now leads to another directory (renamed, deleted and made again).
func (w *watcher) follow(fsw *fsnotify.Watcher, file string) {
	want := map[string]bool{filepath.Dir(file): true}
	if real, err := filepath.EvalSymlinks(file); err == nil {
		want[filepath.Dir(real)] = true
	}
	for dir, id := range w.dirs {
		if now, err := dirIdentity(dir); !want[dir] || err != nil || now != id {
			_ = fsw.Remove(dir)
			delete(w.dirs, dir)
		}
	}
	for dir := range want {
		if _, ok := w.dirs[dir]; ok {
			continue
		}
		id, err := dirIdentity(dir)
		if err != nil {
			continue // not there (yet): the next resync looks again
		}
		_ = fsw.Remove(dir) // a watch on what the path led to before
		if err := fsw.Add(dir); err == nil {
			w.dirs[dir] = id
		}
	}
}

// concerns says whether a change to path (in a watched directory) may
// change what file reads: the file's own name, its symlink's target's,
// or a ConfigMap's ..data swap.
func (w *watcher) concerns(file, path string) bool {
	base := filepath.Base(path)
	if base == filepath.Base(file) || base == "..data" {
		return true
	}
	real, err := filepath.EvalSymlinks(file)
	return err != nil || base == filepath.Base(real) || path == real
}

func dirIdentity(dir string) ([2]uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return [2]uint64{}, err
	}
	return [2]uint64{uint64(st.Dev), st.Ino}, nil
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

func (w *watcher) report(e Event) {
	e.Time = time.Now()
	w.cfg.Report(e)
}

// fileChanged reads the file; if its content is new and valid, it becomes
// the desired state and is applied. It asks to be called again after
// another debounce (true) when it found the file empty for the first
// time: a save that truncates, then writes, may be read in between (a CI
// run under load saw it); an empty file is never a topology, and one that
// stays empty is reported then.
func (w *watcher) fileChanged(ctx context.Context, file, trigger string) (again bool) {
	data, err := topology.ReadFile(file, topology.MaxFileSize)
	if err != nil {
		// Deleted, or between a delete and a re-create: wait for the next
		// event. Still not there at a resync: say so, once.
		if !errors.Is(err, os.ErrNotExist) {
			w.report(Event{Kind: "error", Trigger: trigger, Errors: []string{err.Error()}})
		} else if trigger == "resync" && !w.gone {
			w.gone = true
			w.report(Event{Kind: "warning", Trigger: trigger, Warnings: []string{file + " is not there (deleted, or its directory moved): the lab stays as the file last said; still watching for it"}})
		}
		return false
	}
	w.gone = false
	if len(data) == 0 && !w.emptyOnce {
		w.emptyOnce = true
		return true
	}
	w.emptyOnce = false
	h := sha256.Sum256(data)
	if h == w.lastHash && w.desired != nil {
		return
	}
	w.lastHash = h
	desired, err := w.cfg.Load(w.cfg.File, data)
	if err != nil {
		var list topology.ErrorList
		ev := Event{Kind: "invalid_file", Trigger: trigger}
		if errors.As(err, &list) {
			for _, e := range list {
				ev.Errors = append(ev.Errors, e.Error())
			}
		} else {
			ev.Errors = []string{err.Error()}
		}
		ev.Summary = "the file is not valid: nothing was changed; still watching"
		w.report(ev)
		w.invalid = true
		return
	}
	w.desired = desired
	w.apply(ctx, "applied", trigger, nil)
	w.invalid = false
	return false
}

func (w *watcher) repair(ctx context.Context, trigger string, drift []string) {
	if w.desired == nil {
		return
	}
	w.apply(ctx, "drift_repaired", trigger, drift)
}

// apply reconciles; it reports only when something changed or failed. The
// apply itself runs to its end even if ctx is cancelled meanwhile.
func (w *watcher) apply(ctx context.Context, kind, trigger string, drift []string) {
	var changes []string
	want := w.desired
	if kind == "drift_repaired" {
		want = withKnownMACs(w.desired, w.known)
	}
	if w.cfg.Lock != nil {
		// Waiting for the lock is no apply in progress: a signal then
		// ends the wait, and nothing was changed.
		unlock, err := w.cfg.Lock(ctx)
		if err != nil && ctx.Err() != nil {
			w.report(Event{Kind: "warning", Trigger: trigger, Warnings: []string{"stopped while waiting for the lock: this " + map[string]string{"applied": "apply", "drift_repaired": "repair"}[kind] + " was not started, nothing was changed"}})
			return
		}
		if err != nil {
			w.report(Event{Kind: "error", Trigger: trigger, Errors: []string{err.Error()}})
			return
		}
		defer unlock()
	}
	res, err := reconcile.Reconcile(context.WithoutCancel(ctx), w.cfg.Kernel, want, reconcile.ExecOptions{
		OnChange: func(c *reconcile.Change, err error) {
			status := ""
			if err != nil {
				status = " (FAILED)"
			}
			changes = append(changes, fmt.Sprintf("%s: %s %s%s", c.Namespace, c.Action, c.Describe(), status))
			if w.cfg.OnChange != nil {
				w.cfg.OnChange(c, err)
			}
		},
	})
	w.sync()
	if err == nil && w.cfg.AfterApply != nil {
		err = w.cfg.AfterApply()
	}
	if err == nil && res.Observed != nil {
		w.known = res.Observed
	}
	if res != nil && res.Plan != nil {
		if now := strings.Join(res.Plan.Warnings, "\n"); now != w.warned {
			w.warned = now
			if now != "" {
				w.report(Event{Kind: "warning", Trigger: trigger, Warnings: res.Plan.Warnings})
			}
		}
	}
	if err != nil {
		msg := err.Error()
		if w.cfg.Where != nil {
			msg = w.cfg.Where(err) + msg
		}
		ev := Event{Kind: "error", Trigger: trigger, Changes: changes, Errors: []string{msg}}
		if res != nil && res.RolledBack {
			ev.Summary = "a step failed; this apply was rolled back"
		}
		w.report(ev)
		w.failed = true
		return
	}
	failed := w.failed
	w.failed = false
	if len(changes) == 0 && !(kind == "applied" && (trigger == "start" || w.invalid)) && !failed {
		return
	}
	ev := Event{Kind: kind, Trigger: trigger, Drift: drift, Changes: changes}
	if res != nil {
		ev.Summary = res.Plan.Summary()
		if res.Plan.Empty() {
			ev.Summary = "No changes. The kernel matches the topology."
			if w.invalid && kind == "applied" {
				ev.Summary = "The file is valid again. No changes: the kernel matches it."
			} else if failed {
				ev.Summary = "The error is gone. No changes: the kernel matches the file."
			}
		}
	}
	w.report(ev)
}

// sync points the kernel event source at the lab's namespaces.
func (w *watcher) sync() {
	if w.cfg.Events == nil || w.desired == nil {
		return
	}
	names := w.desired.SortedNames()
	sort.Strings(names)
	if err := w.cfg.Events.Sync(names); err != nil {
		w.report(Event{Kind: "error", Errors: []string{"kernel events: " + err.Error()}})
	}
}

// FormatText renders an event for people.
func FormatText(e Event) string {
	var b bytes.Buffer
	ts := e.Time.Format("15:04:05.000")
	switch e.Kind {
	case "started":
		fmt.Fprintf(&b, "%s watching %s\n", ts, e.Trigger)
	case "stopped":
		fmt.Fprintf(&b, "%s stopped watching\n", ts)
	case "destroyed":
		fmt.Fprintf(&b, "%s destroyed the lab on exit:\n", ts)
		for _, s := range e.Changes {
			fmt.Fprintf(&b, "  %s\n", s)
		}
		fmt.Fprintf(&b, "  %s\n", e.Summary)
	case "invalid_file":
		fmt.Fprintf(&b, "%s %s:\n", ts, e.Summary)
		for _, s := range e.Errors {
			fmt.Fprintf(&b, "  %s\n", s)
		}
	case "error":
		fmt.Fprintf(&b, "%s error (%s):\n", ts, e.Trigger)
		for _, s := range e.Changes {
			fmt.Fprintf(&b, "  %s\n", s)
		}
		for _, s := range e.Errors {
			fmt.Fprintf(&b, "  %s\n", s)
		}
		if e.Summary != "" {
			fmt.Fprintf(&b, "  %s\n", e.Summary)
		}
	case "warning":
		fmt.Fprintf(&b, "%s warning (%s):\n", ts, e.Trigger)
		for _, s := range e.Warnings {
			fmt.Fprintf(&b, "  %s\n", s)
		}
	case "applied", "drift_repaired":
		what := "applied (" + e.Trigger + ")"
		if e.Kind == "drift_repaired" {
			what = "drift repaired (" + e.Trigger + ")"
		}
		fmt.Fprintf(&b, "%s %s:\n", ts, what)
		for _, s := range e.Drift {
			fmt.Fprintf(&b, "  seen: %s\n", s)
		}
		for _, s := range e.Changes {
			fmt.Fprintf(&b, "  %s\n", s)
		}
		fmt.Fprintf(&b, "  %s\n", e.Summary)
	}
	return b.String()
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// withKnownMACs gives links whose MAC the file leaves to the kernel the MAC
// they had when last seen, to be re-created with if they are gone. It only
// prefers, never enforces: a link that exists keeps the MAC it has. Bridges
// are left out: a bridge's MAC follows its ports.
func withKnownMACs(desired, known *reconcile.State) *reconcile.State {
	if known == nil {
		return desired
	}
	out := desired.Clone()
	for name, ns := range out.Namespaces {
		for ln, l := range ns.Links {
			if l.MAC != "" || l.Kind == reconcile.KindBridge {
				continue
			}
			if k := known.Link(reconcile.Ref{NS: name, Name: ln}); k != nil && k.Owned && k.Kind == l.Kind {
				l.PreferMAC = k.MAC
			}
		}
	}
	return out
}
