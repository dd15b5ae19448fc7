// Package lab is netplan-lab for Go programs: load a topology (a file or
// bytes), plan, apply and destroy it, in a sandbox and with a prefix of the
// caller's choosing. It is what the command line does, without the
// printing; labtest builds test fixtures on it.
package lab

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// Options say where a lab lives and how its file is read.
type Options struct {
	// Netns is the sandbox namespace that plays "host" (created by Apply
	// if missing); "" is the calling process's own namespace.
	Netns string
	// Prefix is prepended to every namespace the topology creates; ""
	// takes the file's.
	Prefix string
	// Vars give ${NAME} in the file its value (then the environment, then
	// ${NAME:-default}).
	Vars map[string]string
	// NoEnvironment: variables come from Vars and defaults only, not from
	// the environment (what a test fixture wants: the same file gives
	// the same lab on every machine).
	NoEnvironment bool
	// LockTimeout bounds the wait for another writer of the same sandbox
	// (default 30 s).
	LockTimeout time.Duration
	// OnChange, if set, sees each change as it is carried out.
	OnChange func(c *reconcile.Change, err error)
	// OnStage, if set, is told how long each layer of changes took.
	OnStage func(stage string, changes int, took time.Duration)
	// LockWho describes this process to another that waits for the lock;
	// LockWaiting, if set, is told once whom this one waits for.
	LockWho     string
	LockWaiting func(holder string)
}

// readOptions is how the file is read: a prefix given here leaves the
// file's prefix: unread.
func (o Options) readOptions() []topology.Option {
	if o.Prefix != "" {
		return []topology.Option{topology.PrefixGiven}
	}
	return nil
}

func (o Options) vars() topology.Vars {
	if o.NoEnvironment {
		return topology.VarsOnly(o.Vars)
	}
	return topology.VarsFrom(o.Vars)
}

// Lab is a loaded topology and the kernel it is applied to.
type Lab struct {
	Topology *topology.Topology
	desired  *reconcile.State
	opt      Options
	k        *linux.Kernel
	// hostsRemoved is how many namespaces' /etc/netns entries the last
	// destroy took the lab's names from.
	hostsRemoved int
	// prefixGiven: the prefix came from Options, not the file's prefix:
	// (which is then not read, in Update too).
	prefixGiven bool
}

// HostsEntriesRemoved is how many namespaces' /etc/netns entries the last
// Destroy took the lab's names from: after namespaces deleted by hand
// (ip netns del), they are all that is left of a lab.
func (l *Lab) HostsEntriesRemoved() int { return l.hostsRemoved }

// Load reads and validates the topology file at path.
func Load(path string, o Options) (*Lab, error) {
	t, err := topology.LoadWith(path, o.vars(), o.readOptions()...)
	if err != nil {
		return nil, err
	}
	return newLab(t, o)
}

// LoadIdentity is Load for Destroy alone: it reads only the file's name
// and prefix, which is all Destroy needs (the lab's objects carry its
// mark), so a file that has problems elsewhere (a variable not given, an
// edit half done) can still take its lab down. The Lab it returns wants
// nothing of its own: Plan and Apply of it would remove the whole lab.
func LoadIdentity(path string, o Options) (*Lab, error) {
	t, err := topology.LoadIdentity(path, o.vars(), o.Prefix == "")
	if err != nil {
		return nil, err
	}
	return newLab(t, o)
}

// Parse reads and validates a topology from bytes; name is used in error
// positions.
func Parse(name string, data []byte, o Options) (*Lab, error) {
	t, err := topology.ParseWith(name, data, o.vars(), o.readOptions()...)
	if err != nil {
		return nil, err
	}
	return newLab(t, o)
}

func newLab(t *topology.Topology, o Options) (*Lab, error) {
	if msg := topology.CheckPartName("netns", o.Netns, topology.MaxNetnsLen); msg != "" {
		return nil, fmt.Errorf("%s", msg)
	}
	if msg := topology.CheckPartName("prefix", o.Prefix, topology.MaxPrefixLen); msg != "" {
		return nil, fmt.Errorf("%s", msg)
	}
	desired, err := reconcile.Desired(t)
	if err != nil {
		return nil, err
	}
	prefix := t.Prefix
	if o.Prefix != "" {
		prefix = o.Prefix
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = 30 * time.Second
	}
	given := o.Prefix != ""
	o.Prefix = prefix
	return &Lab{Topology: t, desired: desired, opt: o, prefixGiven: given,
		k: linux.New(linux.Options{Name: t.Name, Prefix: prefix, Netns: o.Netns})}, nil
}

// Close releases the lab's kernel handles (the lab stays as it is).
func (l *Lab) Close() { l.k.Close() }

// Desired is the state the topology asks for.
func (l *Lab) Desired() *reconcile.State { return l.desired }

// Linux is the lab's view of the kernel, for netplan-lab's own command line
// (show, watch); its type is internal to netplan-lab.
func (l *Lab) Linux() *linux.Kernel { return l.k }

// Netns is the kernel's name of a namespace of the lab, by its short name
// ("host" is the sandbox).
func (l *Lab) Netns(short string) string { return l.k.KernelName(short) }

// Prefix is the prefix the lab's namespaces have.
func (l *Lab) Prefix() string { return l.opt.Prefix }

// Plan reads the kernel and returns what Apply would do.
func (l *Lab) Plan(ctx context.Context) (*reconcile.Plan, error) {
	if err := linux.CheckPrivileges(); err != nil {
		return nil, err
	}
	if err := checkSysctls(l.Topology, l.opt.Netns == ""); err != nil {
		return nil, err
	}
	stage := func(name string, n int, start time.Time) {
		if l.opt.OnStage != nil {
			l.opt.OnStage(name, n, time.Since(start))
		}
	}
	start := time.Now()
	observed, err := l.k.Observe(ctx, reconcile.QueryFor(l.desired))
	if err != nil {
		return nil, err
	}
	stage("observe", 0, start)
	start = time.Now()
	p := reconcile.Diff(l.desired, observed)
	if reconcile.ExactIPv6Switch(ctx, l.k, p, observed) {
		p = reconcile.Diff(l.desired, observed)
	}
	stage("plan", len(p.Changes), start)
	p.Variables = l.Topology.Vars
	p.Netns = l.kernelNames(l.desired, p)
	l.notes(l.Topology, p)
	if len(p.Conflicts) == 0 && !p.Empty() {
		// What apply would check first: a plan the kernel cannot carry
		// out says so here, not only when applied.
		start = time.Now()
		if err := l.k.Preflight(ctx, p); err != nil {
			p.Unsupported = Where(l.Topology, err) + err.Error()
		}
		stage("preflight", 0, start)
	}
	return p, nil
}

// notes adds to a plan of t what the file itself warns of, and, without a
// sandbox, that the plan changes the machine's own namespace (first).
func (l *Lab) notes(t *topology.Topology, p *reconcile.Plan) {
	for _, w := range t.Warnings {
		p.Warnings = append(p.Warnings, w.Error())
	}
	if l.opt.Netns == "" {
		n := 0
		for _, c := range p.Changes {
			if c.Namespace == reconcile.HostNS {
				n++
			}
		}
		if n > 0 {
			p.Warnings = append([]string{fmt.Sprintf("no --netns: this plan changes this machine's own network namespace (host: %s); destroy undoes them and puts its sysctls back", plural(n, "change"))}, p.Warnings...)
		}
	}
}

// Apply makes the kernel match the topology, holding the sandbox's lock;
// a failed step is rolled back, and a sandbox this apply made is removed
// again.
func (l *Lab) Apply(ctx context.Context) (*reconcile.Result, error) {
	if err := linux.CheckPrivileges(); err != nil {
		return nil, err
	}
	if err := checkSysctls(l.Topology, l.opt.Netns == ""); err != nil {
		return nil, err
	}
	// Under the lock: another writer of the sandbox must not see it
	// between the failed run and its removal.
	return l.reconcile(ctx, l.desired, l.opt.OnChange, func(res *reconcile.Result, err error) error {
		if err != nil && res != nil && createsSandbox(res.Plan) && (res.RolledBack || res.Applied == 0) {
			_, _ = l.k.RemoveHostIfCreated()
		}
		if res != nil && res.Plan != nil {
			l.notes(l.Topology, res.Plan)
		}
		if w := Where(l.Topology, err); w != "" {
			return fmt.Errorf("%s%w", w, err)
		}
		if err == nil {
			start := time.Now()
			skipped, herr := l.writeHosts(l.Topology)
			if herr != nil {
				return fmt.Errorf("write the lab's hosts files under %s: %w", EtcNetns, herr)
			}
			if res != nil && res.Plan != nil {
				res.Plan.Warnings = append(res.Plan.Warnings, skipped...)
			}
			if l.opt.OnStage != nil {
				l.opt.OnStage("hosts files", 0, time.Since(start))
			}
		}
		return err
	})
}

// createsSandbox reports whether a plan makes the --netns sandbox.
func createsSandbox(p *reconcile.Plan) bool {
	for _, c := range p.Changes {
		if c.Kind == reconcile.KindNamespace && c.Namespace == reconcile.HostNS && c.Action == reconcile.Create {
			return true
		}
	}
	return false
}

// Destroy removes everything the lab owns, and the sandbox if Apply made
// it and nothing else lives in it (which it reports). It creates nothing.
func (l *Lab) Destroy(ctx context.Context) (*reconcile.Result, bool, error) {
	// The sandbox goes under the same lock as the rest: an apply that
	// waited for this destroy must not make a sandbox that this destroy
	// then removes (a concurrency test caught that under qemu).
	return l.DestroyReporting(ctx, l.opt.OnChange)
}

// DestroyReporting is Destroy with onChange, not Options.OnChange, told
// of each change.
func (l *Lab) DestroyReporting(ctx context.Context, onChange func(c *reconcile.Change, err error)) (*reconcile.Result, bool, error) {
	removed := false
	res, err := l.reconcile(ctx, reconcile.Nothing(), onChange, func(res *reconcile.Result, err error) error {
		if err != nil {
			return err
		}
		n, err := l.removeHosts(nil)
		if err != nil {
			return fmt.Errorf("remove the lab's hosts files under %s: %w", EtcNetns, err)
		}
		l.hostsRemoved = n
		if removed, err = l.k.RemoveHostIfCreated(); err != nil {
			return fmt.Errorf("remove netns %q: %w", l.opt.Netns, err)
		}
		return nil
	})
	return res, removed, err
}

// Update replaces the lab's topology by another (same name, sandbox and
// prefix) and applies it.
func (l *Lab) Update(ctx context.Context, name string, data []byte) (*reconcile.Result, error) {
	var opts []topology.Option
	if l.prefixGiven {
		opts = append(opts, topology.PrefixGiven)
	}
	t, err := topology.ParseWith(name, data, l.opt.vars(), opts...)
	if err != nil {
		return nil, err
	}
	if t.Name != l.Topology.Name {
		return nil, fmt.Errorf("%s: the lab is %q, the new topology is %q: a lab keeps its name", name, l.Topology.Name, t.Name)
	}
	desired, err := reconcile.Desired(t)
	if err != nil {
		return nil, err
	}
	if err := checkSysctls(t, l.opt.Netns == ""); err != nil {
		return nil, err
	}
	res, err := l.reconcile(ctx, desired, l.opt.OnChange, func(res *reconcile.Result, err error) error {
		if res != nil && res.Plan != nil {
			l.notes(t, res.Plan)
		}
		if w := Where(t, err); w != "" {
			return fmt.Errorf("%s%w", w, err)
		}
		if err == nil {
			skipped, herr := l.writeHosts(t)
			if herr != nil {
				return fmt.Errorf("write the lab's hosts files under %s: %w", EtcNetns, herr)
			}
			if res != nil && res.Plan != nil {
				res.Plan.Warnings = append(res.Plan.Warnings, skipped...)
			}
		}
		return err
	})
	if err == nil {
		l.Topology, l.desired = t, desired
	}
	return res, err
}

// reconcile makes the kernel match want holding the sandbox's lock,
// telling onChange of each change, and runs after (if any) with the result
// before letting the lock go.
func (l *Lab) reconcile(ctx context.Context, want *reconcile.State, onChange func(*reconcile.Change, error), after func(*reconcile.Result, error) error) (*reconcile.Result, error) {
	if err := linux.CheckPrivileges(); err != nil {
		return nil, err
	}
	who := l.opt.LockWho
	if who == "" {
		who = "lab " + l.Topology.Name
	}
	start := time.Now()
	unlock, err := linux.LockLab(ctx, l.opt.Netns, l.opt.Prefix, l.opt.LockTimeout, who, l.opt.LockWaiting)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if l.opt.OnStage != nil {
		l.opt.OnStage("lock", 0, time.Since(start))
	}
	res, err := reconcile.Reconcile(ctx, l.k, want, reconcile.ExecOptions{OnChange: onChange, OnStage: l.opt.OnStage})
	if res != nil && res.Plan != nil {
		res.Plan.Netns = l.kernelNames(want, res.Plan)
	}
	if after != nil {
		err = after(res, err)
	}
	return res, err
}

// kernelNames maps every namespace of want and of the plan to its kernel
// name.
func (l *Lab) kernelNames(want *reconcile.State, p *reconcile.Plan) map[string]string {
	m := map[string]string{reconcile.HostNS: l.k.KernelName(reconcile.HostNS)}
	for name := range want.Namespaces {
		m[name] = l.k.KernelName(name)
	}
	for _, c := range p.Changes {
		m[c.Namespace] = l.k.KernelName(c.Namespace)
	}
	return m
}

// KernelNames maps every namespace of the file to its kernel name.
func (l *Lab) KernelNames() map[string]string { return l.kernelNames(l.desired, &reconcile.Plan{}) }

// checkSysctls asks the kernel whether it has every sysctl t sets: a
// typo is an error at its place in the file, with the nearest key the
// kernel has. The keys of the lab's namespaces (and of host, when it is a
// sandbox) are asked of a throwaway namespace, which has what a new
// namespace has; host's, when host is the machine's own namespace
// (machineHost: no --netns), are looked up there, read only, since it
// may have keys no new namespace has (net.core.rmem_max, neigh.default:
// an outside audit's find).
func checkSysctls(t *topology.Topology, machineHost bool) error {
	values, hostKeys := map[string]string{}, []string{}
	for _, n := range t.Namespaces {
		for _, s := range n.Sysctls {
			if machineHost && n.Name == topology.Host {
				hostKeys = append(hostKeys, s.Key)
			} else {
				values[s.Key] = s.Value
			}
		}
	}
	unknown, refused, err := linux.UnknownSysctls(values)
	if err != nil {
		return err
	}
	hostUnknown := linux.UnknownHere(hostKeys)
	if len(unknown)+len(refused)+len(hostUnknown) == 0 {
		return nil
	}
	var list topology.ErrorList
	for _, n := range t.Namespaces {
		here := machineHost && n.Name == topology.Host
		for _, s := range n.Sysctls {
			if rerr, ok := refused[s.Key]; ok && !here {
				msg := fmt.Sprintf("the kernel refuses %q for %s (%v)", s.Value, s.Key, errors.Unwrap(rerr))
				list = append(list, &topology.Error{File: t.File, Pos: s.Pos, Path: s.Path, Msg: msg})
				continue
			}
			near, ok := unknown[s.Key]
			if here {
				near, ok = hostUnknown[s.Key]
			}
			if !ok {
				continue
			}
			msg := "this kernel has no sysctl " + s.Key
			switch {
			case near == s.Key:
				// It is there in the machine's own namespace only (an
				// outside audit: "did you mean" the same key).
				msg = "sysctl " + s.Key + " is in the machine's first namespace only: the kernel gives a namespace of its own (the sandbox, the lab's) none"
			case near != "":
				msg += " (did you mean " + near + "?)"
			}
			list = append(list, &topology.Error{File: t.File, Pos: s.Pos, Path: s.Path, Msg: msg})
		}
	}
	return list
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// Where is "FILE:LINE:COL: path: " of the object of file t that a
// preflight error names (a kernel without netem, say), or "".
func Where(t *topology.Topology, err error) string {
	var ue *linux.UnsupportedError
	if !errors.As(err, &ue) {
		return ""
	}
	at := func(p topology.Pos, path string) string {
		return fmt.Sprintf("%s:%d:%d: %s: ", t.File, p.Line, p.Col, path)
	}
	if ue.NAT {
		for _, n := range t.NAT {
			if n.Namespace == ue.Namespace {
				return at(n.Pos, n.Path)
			}
		}
		return ""
	}
	for _, i := range t.Interfaces() {
		if i.Namespace == ue.Namespace && i.Name == ue.Name {
			if ue.Impair && i.Impair != nil {
				if ue.Qdisc == "netem" && i.Impair.NetemPath != "" {
					return at(i.Impair.NetemPos, i.Impair.NetemPath)
				}
				return at(i.Impair.Pos, i.Impair.Path)
			}
			return at(i.Pos, i.Path)
		}
	}
	return ""
}
