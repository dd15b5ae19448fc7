package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netplan-lab/netplan-lab/topology"
)

// Query says what Observe must read: the namespaces a topology names (by
// short name) and the sysctl keys it cares about. Observe always adds the
// host and every namespace that carries the topology's mark.
type Query struct {
	Namespaces []string
	Sysctls    map[string][]string
	// NAT names the namespaces whose NAT rules must be read (the host's
	// always are, and so are those the kernel says hold ours).
	NAT map[string]bool
	// Impair names the namespaces whose root qdiscs must be read (those
	// whose lab interfaces carry the lab's qdisc are read anyway).
	Impair map[string]bool
	// IPv6Switch gives, for namespaces where the wanted state sets both
	// IPv6Switch keys to one value, that value: a kernel may take the
	// switches to have it when every interface shows it, instead of
	// reading them (internal/linux: reading them costs O(namespaces)).
	IPv6Switch map[string]string
}

// Kernel is everything the reconciler needs from the kernel. The real one is
// internal/linux; reconcile/fake is an in-memory one for tests.
type Kernel interface {
	// Observe reads the current state of the namespaces in q and of every
	// namespace the topology owns.
	Observe(ctx context.Context, q Query) (*State, error)
	// Apply carries out one change. For a Replace it does the create half;
	// the executor sends the delete half first as a Delete.
	Apply(ctx context.Context, c *Change) error
	// Preflight checks, before anything changes, that the kernel supports
	// everything the plan uses.
	Preflight(ctx context.Context, p *Plan) error
	// ApplyNAT carries out all NAT changes of one namespace as one atomic
	// batch: all of them happen or none. order is every wanted rule's ID in
	// the file's order: new rules go where it puts them.
	ApplyNAT(ctx context.Context, ns string, changes []*Change, order []string) error
}

// RunStarter is a Kernel that forgets, when a reconcile starts, what it
// kept from one run to put back later in the same run.
type RunStarter interface {
	StartRun()
}

// QueryFor returns the query that observes what desired talks about.
func QueryFor(states ...*State) Query {
	q := Query{Sysctls: map[string][]string{}, NAT: map[string]bool{}, Impair: map[string]bool{}, IPv6Switch: map[string]string{}}
	mixed := map[string]bool{} // states that disagree on a namespace's switch
	seen := map[string]bool{}
	for _, s := range states {
		if s == nil {
			continue
		}
		for _, name := range s.SortedNames() {
			if !seen[name] {
				seen[name] = true
				q.Namespaces = append(q.Namespaces, name)
			}
			ns := s.Namespaces[name]
			for k := range ns.Sysctls {
				q.Sysctls[name] = appendUnique(q.Sysctls[name], k)
			}
			all, okA := ns.Sysctls[IPv6Switch[0]]
			dflt, okD := ns.Sysctls[IPv6Switch[1]]
			v, seenV := q.IPv6Switch[name]
			switch {
			case !okA && !okD:
			case !okA || !okD || NormaliseSysctl(all) != NormaliseSysctl(dflt) || (seenV && v != NormaliseSysctl(all)):
				mixed[name] = true
			default:
				q.IPv6Switch[name] = NormaliseSysctl(all)
			}
			if len(ns.NAT) > 0 {
				q.NAT[name] = true
			}
			for _, l := range ns.Links {
				if l.Impair != nil {
					q.Impair[name] = true
				}
			}
			// Whether a NAT namespace forwards, for the plan's warnings.
			for _, r := range ns.NAT {
				key := IPv4Forward
				if r.IPv6() {
					key = IPv6Forward
				}
				q.Sysctls[name] = appendUnique(q.Sysctls[name], key)
			}
		}
	}
	for _, v := range q.Sysctls {
		sort.Strings(v)
	}
	for name := range mixed {
		delete(q.IPv6Switch, name)
	}
	return q
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// InterfaceSysctl reports whether a sysctl key belongs to one interface
// (net.ipv4.conf.eth0.rp_filter), so it can only be set once the interface
// exists. Namespace-wide keys (ip_forward, conf.all, conf.default) are set
// right after the namespace is made, so interfaces created later inherit
// the defaults.
func InterfaceSysctl(key string) bool {
	parts := strings.Split(key, ".")
	if len(parts) < 5 || (parts[2] != "conf" && parts[2] != "neigh") {
		return false
	}
	return parts[3] != "all" && parts[3] != "default"
}

// sysctlIface is the interface an interface's sysctl key names: br.0 for
// net.ipv4.conf.br/0.forwarding (topology.SysctlIfname).
func sysctlIface(key string) string {
	return topology.SysctlIfname(strings.Split(key, ".")[3])
}

// ExecOptions tune Execute.
type ExecOptions struct {
	// Workers is how many namespaces are worked on at once (default 8).
	Workers int
	// OnChange, if set, is called after each change is applied or failed,
	// never concurrently.
	OnChange func(c *Change, err error)
	// OnStage, if set, is told how long each non-empty stage took.
	OnStage func(stage string, changes int, took time.Duration)
}

// StepError is a failed step: the change and the kernel's error.
type StepError struct {
	Change *Change
	Err    error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("%s %s in netns %q: %v", e.Change.Action, e.Change.Describe(), e.Change.Namespace, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// Execute applies the plan's changes in dependency order (see graph.go):
// layer by layer; within a layer, steps in different namespaces run
// concurrently, and steps in one namespace run in plan order. It stops at
// the first failure.
func Execute(ctx context.Context, k Kernel, p *Plan, o ExecOptions) error {
	workers := o.Workers
	if workers <= 0 {
		workers = 8
	}
	ls, err := layers(steps(p))
	if err != nil {
		return err
	}
	var mu sync.Mutex
	report := func(c *Change, err error) {
		if o.OnChange != nil {
			mu.Lock()
			o.OnChange(c, err)
			mu.Unlock()
		}
	}
	for li, layer := range ls {
		start := time.Now()
		groups := map[string][]*step{}
		var order []string
		for _, s := range layer {
			if _, ok := groups[s.ns]; !ok {
				order = append(order, s.ns)
			}
			groups[s.ns] = append(groups[s.ns], s)
		}
		lctx, cancel := context.WithCancel(ctx)
		var (
			wg       sync.WaitGroup
			firstErr atomic.Pointer[StepError]
			next     atomic.Int64
		)
		fail := func(c *Change, err error) {
			firstErr.CompareAndSwap(nil, &StepError{Change: c, Err: err})
			cancel()
		}
		n := min(workers, len(order))
		for w := 0; w < n; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= len(order) {
						return
					}
					for _, s := range groups[order[i]] {
						if lctx.Err() != nil {
							return
						}
						if s.changes[0].Kind == KindNAT {
							err := k.ApplyNAT(lctx, s.ns, s.changes, p.NATOrder[s.ns])
							for _, c := range s.changes {
								report(c, err)
							}
							if err != nil {
								fail(s.changes[0], err)
								return
							}
							continue
						}
						c := s.changes[0]
						err := k.Apply(lctx, c)
						report(c, err)
						if err != nil {
							fail(c, err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		cancel()
		if o.OnStage != nil {
			o.OnStage(fmt.Sprintf("%d: %s", li+1, layerName(layer)), len(layer), time.Since(start))
		}
		if e := firstErr.Load(); e != nil {
			return e
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// AsDesired turns an observed state into a desired one: what the topology
// owned then, exactly as it was. It is what a rollback goes back to.
func AsDesired(observed *State) *State {
	s := NewState()
	for name, ns := range observed.Clone().Namespaces {
		if !ns.Owned && name != HostNS {
			continue
		}
		out := NewNamespace(name, ns.Owned)
		out.Sysctls = ns.Sysctls
		out.IPv6Inferred = ns.IPv6Inferred
		for ln, l := range ns.Links {
			// A half-made link, or a veth whose peer does not check out,
			// is nothing to go back to: it was never whole.
			if l.Owned && !l.HalfMade && !(l.Kind == KindVeth && l.Peer == nil) {
				if l.Kind == KindBridge && !l.MTUSet {
					// It followed its ports: going back sets it only if it
					// changed (the kernel then keeps it: a bridge cannot be
					// told to follow its ports again, short of re-making it).
					l.MTUAuto = true
				}
				out.Links[ln] = l
			}
		}
		for k, r := range ns.Routes {
			if r.Owned {
				out.Routes[k] = r
			}
		}
		for id, r := range ns.NAT {
			if r.Owned && r.Drift == "" {
				out.NAT[id] = r
			}
		}
		// The order the kernel had: each chain's order is kept.
		for _, chain := range NATChainOrder {
			for _, id := range ns.NATChains[chain] {
				if out.NAT[id] != nil && !contains(out.NATOrder, id) {
					out.NATOrder = append(out.NATOrder, id)
				}
			}
		}
		out.NATChains = nil
		s.Namespaces[name] = out
	}
	if s.Namespaces[HostNS] == nil {
		s.Namespaces[HostNS] = NewNamespace(HostNS, false)
	}
	return s
}

// Result is what Reconcile did.
type Result struct {
	Plan        *Plan
	Applied     int   // changes applied
	RolledBack  bool  // a step failed and the run's changes were undone
	RollbackErr error // the rollback itself failed
	// Observed is the kernel as last seen: after the apply (it matched
	// desired), or before it when there was nothing to do.
	Observed *State
	// NotReady counts the lab's links that were up with carrier but not
	// yet running, and IPv6 addresses without their local route, when it
	// returned, after ReadyWait.
	NotReady int
}

// ReadyWaiter is a Kernel on which a link just brought up, or given its
// carrier, or an address just added, may not pass traffic at once (the
// kernel takes a carrier into account later, in linkwatch, and adds an
// IPv6 address's local route after it). Reconcile waits, at most
// ReadyWait, after a successful apply.
type ReadyWaiter interface {
	WaitReady(ctx context.Context, max time.Duration) int
}

// ReadyWait bounds how long Reconcile waits for the lab to be ready.
var ReadyWait = 2 * time.Second

// ErrConflict is returned when a plan has conflicts and nothing was changed.
var ErrConflict = errors.New("plan has conflicts")

// ConflictError lists a plan's conflicts.
type ConflictError struct{ Conflicts []string }

func (e *ConflictError) Error() string {
	s := "the plan cannot be applied, nothing was changed:"
	for _, c := range e.Conflicts {
		s += "\n  " + c
	}
	return s
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Reconcile observes the kernel, plans, checks, applies and verifies. If a
// step fails it rolls back what this run changed, so the kernel is as it
// was, and returns the step's error. OnChange in o sees every change,
// including those of a rollback.
func Reconcile(ctx context.Context, k Kernel, desired *State, o ExecOptions) (*Result, error) {
	stage := func(name string, n int, start time.Time) {
		if o.OnStage != nil {
			o.OnStage(name, n, time.Since(start))
		}
	}
	start := time.Now()
	if s, ok := k.(RunStarter); ok {
		s.StartRun()
	}
	q := QueryFor(desired)
	before, err := k.Observe(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("observe: %w", err)
	}
	stage("observe", 0, start)
	start = time.Now()
	plan := Diff(desired, before)
	if ExactIPv6Switch(ctx, k, plan, before) {
		plan = Diff(desired, before)
	}
	stage("plan", len(plan.Changes), start)
	res := &Result{Plan: plan, Observed: before}
	if len(plan.Conflicts) > 0 {
		return res, &ConflictError{plan.Conflicts}
	}
	if plan.Empty() {
		return res, keepRecords(k, desired)
	}
	start = time.Now()
	if err := k.Preflight(ctx, plan); err != nil {
		return res, err
	}
	stage("preflight", 0, start)
	if r, ok := k.(SysctlRecords); ok {
		if err := r.NoteBefore(ctx, plan); err != nil {
			return res, err
		}
	}
	inner := o.OnChange
	o.OnChange = func(c *Change, err error) {
		if err == nil {
			res.Applied++
		}
		if inner != nil {
			inner(c, err)
		}
	}
	execErr := Execute(ctx, k, plan, o)
	if execErr != nil {
		res.RolledBack = true
		res.RollbackErr = Rollback(context.WithoutCancel(ctx), k, before, q, ExecOptions{Workers: o.Workers, OnChange: inner})
		if res.RollbackErr == nil {
			// The kernel is as before: so are the notes of sysctls (an
			// outside audit: a note taken by the failed run later wrote
			// a value set by hand).
			if err := keepRecords(k, notedIn(before)); err != nil {
				res.RollbackErr = err
			}
		}
		return res, execErr
	}
	start = time.Now()
	var redone *Plan
	res.Observed, redone, err = finish(ctx, k, desired, q, plan, o)
	if err != nil {
		return res, err
	}
	stage("confirm", 0, start)
	if w, ok := k.(ReadyWaiter); ok {
		start = time.Now()
		res.NotReady = w.WaitReady(ctx, ReadyWait)
		stage("links running", 0, start)
		// The kernel sets an interface's IPv6 MTU to its MTU when the
		// interface becomes ready (up, with carrier, after being down),
		// which it learns a moment after the change that brought it up:
		// an IPv6 MTU the file sets, written before that, is written
		// again now.
		if wantsIPv6MTU(desired) {
			if after, err := k.Observe(ctx, q); err == nil {
				if rest := Diff(desired, after); !rest.Empty() && onlyIPv6MTU(rest) {
					if err := Execute(ctx, k, rest, o); err != nil {
						return res, err
					}
					if res.Observed, err = k.Observe(ctx, q); err != nil {
						return res, fmt.Errorf("observe after apply: %w", err)
					}
				}
			}
		}
	}
	if a, ok := k.(Announcer); ok {
		a.Announce(ctx, plan)
	}
	if err := keepRecords(k, desired); err != nil {
		return res, err
	}
	// What the kernel did by itself is done now too: say so, unless it
	// did not, and finish did it (and said so).
	done := map[changeKey]bool{}
	if redone != nil {
		for _, c := range redone.Changes {
			done[keyOf(c)] = true
		}
	}
	for _, c := range plan.Changes {
		if c.Implicit && !done[keyOf(c)] {
			o.OnChange(c, nil)
		}
	}
	return res, nil
}

// Announcer is what a Kernel that can tell neighbours of links with new
// MACs offers: called once the links are running (linux: gratuitous ARP).
type Announcer interface {
	Announce(ctx context.Context, p *Plan)
}

// SysctlRecords is what a Kernel that notes the sysctls the lab set
// (their values before, Namespace.SysctlsBefore) offers: once the kernel
// is as desired, the note of every key desired does not set goes. Such a
// key was put back, or had its value before anyway (set by hand since,
// or a run killed before it wrote): the lab lets it be from then on.
type SysctlRecords interface {
	// NoteBefore notes, before p runs, what the keys p sets are now.
	NoteBefore(ctx context.Context, p *Plan) error
	KeepRecords(desired *State) error
}

// notedIn is a state that sets the keys observed noted: what KeepRecords
// keeps the notes of to leave them as they were.
func notedIn(observed *State) *State {
	s := NewState()
	for name, ns := range observed.Namespaces {
		n := NewNamespace(name, ns.Owned)
		for k, v := range ns.SysctlsBefore {
			n.Sysctls[k] = v
		}
		s.Namespaces[name] = n
	}
	return s
}

func keepRecords(k Kernel, desired *State) error {
	if r, ok := k.(SysctlRecords); ok {
		if err := r.KeepRecords(desired); err != nil {
			return fmt.Errorf("forget the sysctls the lab no longer sets: %w", err)
		}
	}
	return nil
}

// ExactSysctls is what a Kernel that infers a namespace's IPv6 switch
// (Namespace.IPv6Inferred) offers to read it for certain.
type ExactSysctls interface {
	ReadSysctls(ns string, keys []string) (map[string]string, error)
}

// ExactIPv6Switch reads the IPv6 switch of each namespace where the plan
// makes or changes an interface and observation inferred it: a new
// interface (or one whose MTU reaches IPv6's minimum) starts with the
// namespace's "default", which the inference cannot see changed by hand
// (nothing shows it until then). It reports whether it changed before;
// the caller plans again then. Reconcile does it; so must anything that
// shows a plan.
func ExactIPv6Switch(ctx context.Context, k Kernel, p *Plan, before *State) bool {
	names := map[string]bool{}
	for _, c := range p.Changes {
		if c.Kind != KindLink || c.Action == Delete || c.Link == nil {
			continue
		}
		names[c.Namespace] = true
		if n := peerNS(c); n != "" {
			names[n] = true
		}
	}
	r, ok := k.(ExactSysctls)
	if !ok {
		return false
	}
	read := false
	for _, name := range sortedKeys(names) {
		ns := before.NS(name)
		if ns == nil || !ns.IPv6Inferred || ctx.Err() != nil {
			continue
		}
		sc, err := r.ReadSysctls(name, IPv6Switch)
		if err != nil {
			continue // the inferred values stand; the confirmation reads again
		}
		for _, key := range IPv6Switch {
			if v, ok := sc[key]; ok {
				ns.Sysctls[key] = v
			}
		}
		ns.IPv6Inferred, read = false, true
	}
	return read
}

func peerNS(c *Change) string {
	if c.Link.Peer != nil {
		return c.Link.Peer.NS
	}
	return ""
}

// changeKey names what a change is about, for matching one plan's changes
// against another's.
type changeKey struct {
	ns, name string
	kind     Kind
	action   Action
}

func keyOf(c *Change) changeKey { return changeKey{c.Namespace, c.Name, c.Kind, c.Action} }

// finish waits for the kernel to match desired. Changes the kernel makes
// by itself (implicit ones) may not come: something can keep a deleted
// namespace alive (a shell inside it, an open socket), and then its veth
// peers stay. If the kernel stops making progress, what is left is planned
// again and applied explicitly, once: that plan is redone (nil if none).
// It returns the last observation: the kernel as it now is.
func finish(ctx context.Context, k Kernel, desired *State, q Query, p *Plan, o ExecOptions) (after *State, redone *Plan, err error) {
	rest, after, err := settle(ctx, k, desired, q, p)
	if err != nil {
		return nil, nil, fmt.Errorf("observe after apply: %w", err)
	}
	// (Also when all that is left is IPv6 MTUs the file sets: the kernel
	// sets an interface's to its MTU when the interface becomes ready,
	// which another link's change can bring, a peer up or a first bridge
	// port: an outside audit.)
	if !rest.Empty() && len(rest.Conflicts) == 0 && (hasImplicit(p) || onlyIPv6MTU(rest)) {
		redone = rest
		if err := Execute(ctx, k, rest, o); err != nil {
			return nil, redone, err
		}
		if rest, after, err = settle(ctx, k, desired, q, rest); err != nil {
			return nil, redone, fmt.Errorf("observe after apply: %w", err)
		}
	}
	if !rest.Empty() || len(rest.Conflicts) > 0 {
		return after, redone, fmt.Errorf("the kernel does not match the topology after this run; still to do:\n%s", rest)
	}
	return after, redone, nil
}

// wantsIPv6MTU says whether a desired state sets an interface's IPv6 MTU
// (net.ipv6.conf.IF.mtu) anywhere.
func wantsIPv6MTU(s *State) bool {
	for _, ns := range s.Namespaces {
		for k := range ns.Sysctls {
			if _, ok := ipv6Iface(k); ok && strings.HasSuffix(k, ".mtu") {
				return true
			}
		}
	}
	return false
}

// onlyIPv6MTU says whether a plan only sets interfaces' IPv6 MTUs.
func onlyIPv6MTU(p *Plan) bool {
	for _, c := range p.Changes {
		if _, ok := ipv6Iface(c.Name); c.Kind != KindSysctl || !ok || !strings.HasSuffix(c.Name, ".mtu") {
			return false
		}
	}
	return len(p.Conflicts) == 0
}

func hasImplicit(p *Plan) bool {
	for _, c := range p.Changes {
		if c.Implicit {
			return true
		}
	}
	return false
}

// SettleTimeout bounds how long apply waits for changes the kernel makes
// asynchronously (the interfaces of a deleted namespace); SettleStall is how
// long it waits without seeing any progress.
var (
	SettleTimeout = 60 * time.Second
	SettleStall   = time.Second
)

// settle observes until the kernel matches desired. Only a plan with
// implicit changes waits, and only while the kernel makes progress.
func settle(ctx context.Context, k Kernel, desired *State, q Query, p *Plan) (*Plan, *State, error) {
	wait := hasImplicit(p)
	deadline := time.Now().Add(SettleTimeout)
	delay := 5 * time.Millisecond
	best, progress := -1, time.Now()
	for {
		after, err := k.Observe(ctx, q)
		if err != nil {
			return nil, nil, err
		}
		rest := Diff(desired, after)
		if !wait || (rest.Empty() && len(rest.Conflicts) == 0) {
			return rest, after, nil
		}
		now := time.Now()
		if n := len(rest.Changes); best < 0 || n < best {
			best, progress = n, now
		}
		if now.After(deadline) || now.Sub(progress) > SettleStall {
			return rest, after, nil
		}
		select {
		case <-ctx.Done():
			return rest, after, nil
		case <-time.After(delay):
		}
		if delay < 20*time.Millisecond {
			delay *= 2
		}
	}
}

// Rollback puts back what the topology owned in the state before, as seen
// by a fresh observation.
func Rollback(ctx context.Context, k Kernel, before *State, q Query, o ExecOptions) error {
	now, err := k.Observe(ctx, q)
	if err != nil {
		return fmt.Errorf("rollback: observe: %w", err)
	}
	want := AsDesired(before)
	back := Diff(want, now)
	if err := Execute(ctx, k, back, o); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if _, _, err := finish(ctx, k, want, q, back, o); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	return nil
}

// CountingKernel counts the writes that pass through it.
type CountingKernel struct {
	Kernel
	writes atomic.Int64
}

// Apply counts and forwards.
func (c *CountingKernel) Apply(ctx context.Context, ch *Change) error {
	c.writes.Add(1)
	return c.Kernel.Apply(ctx, ch)
}

// Writes returns how many changes were sent to the kernel.
func (c *CountingKernel) Writes() int64 { return c.writes.Load() }

// ApplyNAT counts each change of the batch and forwards.
func (c *CountingKernel) ApplyNAT(ctx context.Context, ns string, chs []*Change, order []string) error {
	c.writes.Add(int64(len(chs)))
	return c.Kernel.ApplyNAT(ctx, ns, chs, order)
}

// FailingKernel fails the Nth write (1-based) with Err, for testing
// rollback; the other writes pass through.
type FailingKernel struct {
	Kernel
	N   int64
	Err error
	n   atomic.Int64
}

// Apply fails the Nth call.
func (f *FailingKernel) Apply(ctx context.Context, ch *Change) error {
	if f.n.Add(1) == f.N {
		return f.Err
	}
	return f.Kernel.Apply(ctx, ch)
}

// ApplyNAT counts the batch as one write and fails it if it is the Nth.
func (f *FailingKernel) ApplyNAT(ctx context.Context, ns string, chs []*Change, order []string) error {
	if f.n.Add(1) == f.N {
		return f.Err
	}
	return f.Kernel.ApplyNAT(ctx, ns, chs, order)
}
