// Package fake is an in-memory kernel for tests of the reconciler. It keeps
// the kernel's rules that matter to a plan's order and ownership: a link
// needs its namespace, its bridge and its parent; deleting a veth end deletes
// its peer; deleting a namespace deletes what is in it and the peers of its
// veths; a gateway must be on a connected subnet; creating what exists is
// EEXIST. Every call works on a copy and commits only on success.
package fake

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// World is the machine: every namespace, each object marked with its owner.
// Several Kernels (owners) may share one World.
type World struct {
	mu  sync.Mutex
	nss map[string]*ns
	// Unsupported link kinds, as a kernel without the module would have.
	Unsupported map[string]string // kind -> kernel option
	// Defaults overrides what a key ending in a suffix (".rp_filter")
	// reads before it is set: IPv4 settings of a new namespace come from
	// the machine's own, which tests can read and tell the fake.
	Defaults map[string]string
}

// SetSysctl sets a sysctl by hand.
func (w *World) SetSysctl(nsName, key, value string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nss[nsName].sysctls[key] = value
}

type ns struct {
	owner   string
	sysctls map[string]string
	links   map[string]*link
	routes  map[string]*reconcile.Route
	nat     map[string]*natRule // by owner + "|" + ID
	// natChains: owner + "|" + chain -> IDs in the chain's order (each
	// owner has a table of its own).
	natChains map[string][]string
	// forwardDrop: foreign chains that drop forwarded packets.
	forwardDrop []string
	// before: by owner, the values of the sysctls it set before it first
	// set them (the record the real kernel keeps under /run).
	before map[string]map[string]string
}

type natRule struct {
	owner string
	r     *reconcile.NATRule
}

type link struct {
	owner string
	l     *reconcile.Link
	// kparent is the parent the kernel links a child to (by ifindex: it
	// follows a rename), where l.Parent is what the mark records.
	kparent *reconcile.Ref
	// mtuSet: a bridge whose MTU was set; else it follows its ports.
	mtuSet bool
	// foreignQdisc is a root qdisc someone else put there ("htb 1:").
	foreignQdisc string
	// ready is IPv6's IF_READY: the link came up with carrier since it
	// last went down (settleReady).
	ready bool
}

// SetForeignQdisc puts someone else's root qdisc (desc, as "htb 1:") on
// an interface, or takes it away with "".
func (w *World) SetForeignQdisc(nsName, ifname, desc string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.nss[nsName]
	if n == nil || n.links[ifname] == nil {
		return errf(syscall.ENODEV, "link %q in netns %q", ifname, nsName)
	}
	n.links[ifname].foreignQdisc = desc
	return nil
}

func cloneRef(r *reconcile.Ref) *reconcile.Ref {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

// NewWorld returns a machine with an empty host namespace.
func NewWorld() *World {
	w := &World{nss: map[string]*ns{}}
	w.nss[reconcile.HostNS] = newNS("")
	return w
}

func newNS(owner string) *ns {
	return &ns{owner: owner, sysctls: map[string]string{}, links: map[string]*link{}, routes: map[string]*reconcile.Route{},
		nat: map[string]*natRule{}, natChains: map[string][]string{}}
}

// SysctlOf reads a sysctl as the kernel would (false if there is no
// such key, such as one of an interface that is not there).
func (w *World) SysctlOf(nsName, key string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.nss[nsName] == nil {
		return "", false
	}
	return w.sysctl(nsName, key)
}

// AddAddressByHand puts an address of nobody's on a link (ip addr add):
// observed as the link's Foreign.
func (w *World) AddAddressByHand(nsName, link, cidr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.nss[nsName].links[link]
	l.l.Foreign = append(l.l.Foreign, cidr)
}

// AddRouteByHand puts a route of nobody's in a namespace (ip route add).
func (w *World) AddRouteByHand(nsName string, r *reconcile.Route) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := r.Clone()
	c.Owned, c.Proto = false, "boot"
	w.nss[nsName].routes[c.Key()] = c
}

// SetMTU sets a link's MTU by hand (ip link set NAME mtu N): what follows
// it follows, as in the kernel.
func (w *World) SetMTU(nsName, name string, mtu int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.nss[nsName]
	w.mtuIs(nsName, n, n.links[name], mtu)
}

// AddForeignLink puts an interface owned by nobody (a NIC, another tool's
// bridge) into a namespace, creating the namespace (unowned) if needed.
func (w *World) AddForeignLink(nsName string, l *reconcile.Link) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.nss[nsName]
	if n == nil {
		n = newNS("")
		w.nss[nsName] = n
	}
	c := l.Clone()
	c.Owned = false
	n.links[l.Name] = &link{l: c}
}

// AddForeignNamespace creates a namespace owned by nobody.
func (w *World) AddForeignNamespace(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.nss[name] == nil {
		w.nss[name] = newNS("")
	}
}

// Dump returns the whole machine as the owner sees it, for comparisons.
func (w *World) Dump(owner string) *reconcile.State {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := reconcile.NewState()
	for name, n := range w.nss {
		s.Namespaces[name] = w.view(name, owner, nil)
		for _, l := range s.Namespaces[name].Links {
			l.MTUSet = false // how it got its MTU, not what it is
		}
		// Every sysctl that is not what a new namespace has.
		for k, v := range n.sysctls {
			if v != w.fresh(k) {
				s.Namespaces[name].Sysctls[k] = v
			}
		}
	}
	return s
}

// DeleteLink removes a link by hand, as `ip link del` would.
func (w *World) DeleteLink(nsName, name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.delLink(nsName, name)
}

// Kernel is one owner's view of the World.
type Kernel struct {
	W     *World
	Owner string
	// FailOn, if set, is asked before each change; an error fails it.
	FailOn func(c *reconcile.Change) error
	writes int
}

// New returns a kernel for owner on a new world.
func New(owner string) *Kernel { return &Kernel{W: NewWorld(), Owner: owner} }

// Writes returns the number of successful changes.
func (k *Kernel) Writes() int {
	k.W.mu.Lock()
	defer k.W.mu.Unlock()
	return k.writes
}

// defaultSysctl is what a new namespace reads for a key.
func defaultSysctl(key string) string {
	switch {
	case strings.HasSuffix(key, ".rp_filter"):
		return "2"
	case strings.HasSuffix(key, ".accept_ra"):
		return "1"
	}
	return "0"
}

func (w *World) view(name, owner string, keys []string) *reconcile.Namespace {
	n := w.nss[name]
	out := reconcile.NewNamespace(name, name != reconcile.HostNS && n.owner == owner && owner != "")
	out.LabDefaults = out.Owned
	for ln, l := range n.links {
		c := l.l.Clone()
		c.Owned = owner != "" && l.owner == owner
		c.MTUSet = l.mtuSet
		c.QdiscForeign = l.foreignQdisc
		c.OwnPromote, _ = w.sysctl(name, "net.ipv4.conf."+topology.SysctlKeyName(ln)+".promote_secondaries")
		out.Links[ln] = c
	}
	for k, r := range n.routes {
		c := r.Clone()
		out.Routes[k] = c
	}
	for _, k := range keys {
		if v, ok := w.sysctl(name, k); ok {
			out.Sysctls[k] = v
		}
	}
	for _, r := range n.nat {
		c := *r.r
		c.Owned = owner != "" && r.owner == owner
		if c.Owned {
			out.NAT[c.ID()] = &c
		}
	}
	if owner != "" {
		for _, chain := range reconcile.NATChainOrder {
			if ids := n.natChains[owner+"|"+chain]; len(ids) > 0 {
				if out.NATChains == nil {
					out.NATChains = map[string][]string{}
				}
				out.NATChains[chain] = append([]string(nil), ids...)
			}
		}
	}
	out.ForwardDrop = append([]string(nil), n.forwardDrop...)
	return out
}

// fresh is what key reads in a new namespace.
func (w *World) fresh(key string) string {
	for suffix, v := range w.Defaults {
		if strings.HasSuffix(key, suffix) {
			return v
		}
	}
	return defaultSysctl(key)
}

func (w *World) sysctl(nsName, key string) (string, bool) {
	n := w.nss[nsName]
	parts := strings.Split(key, ".")
	// net.ipv4.conf.IFNAME.x and net.ipv6.conf.IFNAME.x need the interface;
	// the IPv6 ones an MTU of at least 1280 (whatever was written to them
	// while they were there), and the IPv6 MTU is the interface's until set.
	if len(parts) >= 5 && parts[2] == "conf" && parts[3] != "all" && parts[3] != "default" && parts[3] != "lo" {
		l := n.links[topology.SysctlIfname(parts[3])]
		if l == nil || parts[1] == "ipv6" && l.l.MTU < 1280 {
			return "", false
		}
		if v, ok := n.sysctls[key]; ok {
			return v, true
		}
		if parts[1] == "ipv6" && len(parts) == 5 && parts[4] == "mtu" {
			return strconv.Itoa(l.l.MTU), true
		}
	} else if v, ok := n.sysctls[key]; ok {
		return v, true
	}
	for suffix, v := range w.Defaults {
		if strings.HasSuffix(key, suffix) {
			return v, true
		}
	}
	return defaultSysctl(key), true
}

// Observe implements reconcile.Kernel.
func (k *Kernel) Observe(ctx context.Context, q reconcile.Query) (*reconcile.State, error) {
	k.W.mu.Lock()
	defer k.W.mu.Unlock()
	s := reconcile.NewState()
	for _, name := range q.Namespaces {
		if k.W.nss[name] != nil {
			s.Namespaces[name] = k.W.view(name, k.Owner, q.Sysctls[name])
		}
	}
	for name, n := range k.W.nss {
		if n.owner == k.Owner && s.Namespaces[name] == nil {
			s.Namespaces[name] = k.W.view(name, k.Owner, q.Sysctls[name])
		}
	}
	if s.Namespaces[reconcile.HostNS] == nil {
		s.Namespaces[reconcile.HostNS] = k.W.view(reconcile.HostNS, k.Owner, q.Sysctls[reconcile.HostNS])
	}
	// The record of what the owner's sysctls were before it set them, and
	// the keys in it read too.
	for name, out := range s.Namespaces {
		for owner, rec := range k.W.nss[name].before {
			if owner == k.Owner || name != reconcile.HostNS {
				continue
			}
			for key := range rec {
				if out.SysctlsShared == nil {
					out.SysctlsShared = map[string]bool{}
				}
				out.SysctlsShared[key] = true
				// Read too: a write that rewrites it writes it again.
				if _, read := out.Sysctls[key]; !read && !strings.HasPrefix(key, "@") {
					if v, ok := k.W.sysctl(name, key); ok {
						out.Sysctls[key] = v
					}
				}
			}
		}
		if rec := k.W.nss[name].before[k.Owner]; len(rec) > 0 {
			out.SysctlsBefore = map[string]string{}
			for key, v := range rec {
				if strings.HasPrefix(key, "@") {
					continue // "@by:KEY": why KEY was noted
				}
				out.SysctlsBefore[key] = v
				if v, ok := k.W.sysctl(name, key); ok {
					out.Sysctls[key] = v
				}
			}
		}
	}
	return s, nil
}

// NoteBefore implements reconcile.SysctlRecords.
func (k *Kernel) NoteBefore(ctx context.Context, p *reconcile.Plan) error {
	k.W.mu.Lock()
	defer k.W.mu.Unlock()
	for _, c := range p.Changes {
		if c.Kind != reconcile.KindSysctl || c.Restore || c.Action == reconcile.Delete {
			continue
		}
		if n := k.W.nss[c.Namespace]; n != nil {
			_, setBefore := n.before[k.Owner][c.Name]
			if v, ok := k.W.sysctl(c.Namespace, c.Name); ok {
				k.noteIn(n, c.Namespace, c.Name, v)
			}
			// The keys its write rewrites, as they are before it, unless
			// the owner had set it before (they are its doing then).
			if prefix, suffix, ok := reconcile.Rewrites(c.Name); ok && !setBefore {
				names := []string{"default"}
				for ln := range n.links {
					names = append(names, ln)
				}
				for _, ln := range names {
					other := prefix + topology.SysctlKeyName(ln) + suffix
					if v, ok := k.W.sysctl(c.Namespace, other); ok && other != c.Name {
						if _, noted := n.before[k.Owner][other]; !noted {
							k.noteIn(n, c.Namespace, other, v)
							n.before[k.Owner]["@by:"+other] = c.Name
						}
					}
				}
			}
		}
	}
	return nil
}

// noteIn notes value as what key was in n before the owner set it, unless
// noted (or another owner noted it in host: its value).
func (k *Kernel) noteIn(n *ns, nsName, key, value string) {
	if _, noted := n.before[k.Owner][key]; noted {
		return
	}
	if n.before == nil {
		n.before = map[string]map[string]string{}
	}
	if n.before[k.Owner] == nil {
		n.before[k.Owner] = map[string]string{}
	}
	for owner, rec := range n.before {
		if owner == k.Owner || nsName != reconcile.HostNS {
			continue
		}
		if v, ok := rec[key]; ok {
			value = v // another lab set it first: its value from before
		} else if v, ok := rec[reconcile.SysctlAlias[key]]; ok {
			value = v // under the other name of the same kernel value
		}
	}
	n.before[k.Owner][key] = value
}

// KeepRecords implements reconcile.SysctlRecords.
func (k *Kernel) KeepRecords(desired *reconcile.State) error {
	k.W.mu.Lock()
	defer k.W.mu.Unlock()
	if host, n := desired.NS(reconcile.HostNS), k.W.nss[reconcile.HostNS]; host != nil && n != nil {
		for key := range host.Sysctls {
			for owner, rec := range n.before {
				if owner == k.Owner {
					continue
				}
				v, ok := rec[key]
				if !ok {
					v, ok = rec[reconcile.SysctlAlias[key]]
				}
				if _, noted := n.before[k.Owner][key]; ok && !noted {
					k.noteIn(n, reconcile.HostNS, key, v)
				}
			}
		}
		// What another lab noted because a key this lab sets too rewrote
		// it: the last to let go puts it back.
		for owner, rec := range n.before {
			if owner == k.Owner {
				continue
			}
			for key, v := range rec {
				src := rec["@by:"+key]
				if strings.HasPrefix(key, "@") || src == "" {
					continue
				}
				_, a := host.Sysctls[src]
				_, b := host.Sysctls[reconcile.SysctlAlias[src]]
				if _, noted := n.before[k.Owner][key]; (a || b) && !noted {
					k.noteIn(n, reconcile.HostNS, key, v)
					n.before[k.Owner]["@by:"+key] = src
				}
			}
		}
	}
	for name, n := range k.W.nss {
		rec := n.before[k.Owner]
		var want map[string]string
		if ns := desired.NS(name); ns != nil {
			want = ns.Sysctls
		}
		for key := range rec {
			if strings.HasPrefix(key, "@") {
				continue
			}
			_, ok := want[key]
			if src := rec["@by:"+key]; src != "" {
				_, a := want[src]
				_, b := want[reconcile.SysctlAlias[src]]
				ok = ok || a || b // kept while what rewrites it is set
			}
			if !ok {
				delete(rec, key)
				delete(rec, "@by:"+key)
			}
		}
	}
	return nil
}

// Preflight implements reconcile.Kernel.
func (k *Kernel) Preflight(ctx context.Context, p *reconcile.Plan) error {
	for _, c := range p.Changes {
		if c.Kind == reconcile.KindImpair && c.Action != reconcile.Delete {
			if opt, ok := k.W.Unsupported[c.Link.Impair.Qdisc()]; ok {
				return fmt.Errorf("this kernel cannot impair with %s (it needs %s); nothing was changed", c.Link.Impair.Qdisc(), opt)
			}
		}
		if c.Kind == reconcile.KindLink && c.Link != nil && c.Action != reconcile.Delete {
			if opt, ok := k.W.Unsupported[c.Link.Kind]; ok {
				return fmt.Errorf("this kernel does not support %s interfaces (needs %s); nothing was changed", c.Link.Kind, opt)
			}
		}
	}
	return nil
}

func errf(errno syscall.Errno, format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errno)...)
}

// Apply implements reconcile.Kernel.
func (k *Kernel) Apply(ctx context.Context, c *reconcile.Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if k.FailOn != nil {
		if err := k.FailOn(c); err != nil {
			return err
		}
	}
	w := k.W
	w.mu.Lock()
	defer w.mu.Unlock()
	// Work on a copy; commit on success.
	saved := w.snapshot()
	if err := k.apply(c); err != nil {
		w.nss = saved
		return err
	}
	w.settleReady()
	k.writes++
	return nil
}

// settleReady does what the kernel's IPv6 does when a link becomes
// ready, up with carrier, for the first time since it went down: its
// IPv6 MTU becomes its MTU (a value written before is lost).
func (w *World) settleReady() {
	for nsName, n := range w.nss {
		for _, l := range n.links {
			if l.ready || !w.carrier(nsName, l, 0) {
				continue
			}
			l.ready = true
			delete(n.sysctls, "net.ipv6.conf."+topology.SysctlKeyName(l.l.Name)+".mtu")
		}
	}
}

// carrier says whether a link is up with carrier: a veth whose peer is
// up, a bridge with a port that has carrier, a macvlan or ipvlan whose
// parent has it; any other up link.
func (w *World) carrier(nsName string, l *link, depth int) bool {
	if !l.l.Up || depth > 4 {
		return false
	}
	switch l.l.Kind {
	case reconcile.KindVeth:
		if l.l.Peer == nil || w.nss[l.l.Peer.NS] == nil {
			return false
		}
		p := w.nss[l.l.Peer.NS].links[l.l.Peer.Name]
		return p != nil && p.l.Up
	case reconcile.KindBridge:
		for _, p := range w.nss[nsName].links {
			if p.l.Master == l.l.Name && w.carrier(nsName, p, depth+1) {
				return true
			}
		}
		return false
	case reconcile.KindMacvlan, reconcile.KindIpvlan:
		if l.kparent == nil || w.nss[l.kparent.NS] == nil {
			return true
		}
		p := w.nss[l.kparent.NS].links[l.kparent.Name]
		return p != nil && w.carrier(l.kparent.NS, p, depth+1)
	}
	return true
}

func (w *World) snapshot() map[string]*ns {
	out := map[string]*ns{}
	for name, n := range w.nss {
		c := newNS(n.owner)
		for k, v := range n.sysctls {
			c.sysctls[k] = v
		}
		for ln, l := range n.links {
			c.links[ln] = &link{owner: l.owner, l: l.l.Clone(), kparent: cloneRef(l.kparent), mtuSet: l.mtuSet, foreignQdisc: l.foreignQdisc, ready: l.ready}
		}
		for rk, r := range n.routes {
			c.routes[rk] = r.Clone()
		}
		for rk, r := range n.nat {
			cr := *r.r
			c.nat[rk] = &natRule{owner: r.owner, r: &cr}
		}
		for ck, ids := range n.natChains {
			c.natChains[ck] = append([]string(nil), ids...)
		}
		c.forwardDrop = n.forwardDrop
		for owner, rec := range n.before {
			if c.before == nil {
				c.before = map[string]map[string]string{}
			}
			c.before[owner] = maps.Clone(rec)
		}
		out[name] = c
	}
	// Swap: the live map becomes the working copy; saved is returned.
	saved := w.nss
	w.nss = out
	return saved
}

func (k *Kernel) apply(c *reconcile.Change) error {
	w := k.W
	n := w.nss[c.Namespace]
	if c.Kind != reconcile.KindNamespace && n == nil {
		return errf(syscall.ENOENT, "netns %q", c.Namespace)
	}
	switch c.Kind {
	case reconcile.KindNamespace:
		switch c.Action {
		case reconcile.Create:
			if n != nil {
				return errf(syscall.EEXIST, "create netns %q", c.Namespace)
			}
			n := newNS(k.Owner)
			// What netplan-lab sets in every namespace it makes.
			for key, v := range reconcile.LabDefaults {
				n.sysctls[key] = v
			}
			if c.IPv6Off {
				for _, key := range reconcile.IPv6Switch {
					n.sysctls[key] = "1"
				}
			}
			w.nss[c.Namespace] = n
		case reconcile.Delete:
			if n == nil {
				return nil
			}
			for ln := range n.links {
				if err := w.delLink(c.Namespace, ln); err != nil {
					return err
				}
			}
			delete(w.nss, c.Namespace)
		}
	case reconcile.KindImpair:
		l := n.links[c.Name]
		if l == nil {
			return errf(syscall.ENODEV, "impair on %q in netns %q", c.Name, c.Namespace)
		}
		if c.Action == reconcile.Delete {
			if l.l.Impair == nil {
				return errf(syscall.ENOENT, "delete qdisc of %q in netns %q", c.Name, c.Namespace)
			}
			l.l.Impair = nil
			return nil
		}
		if l.foreignQdisc != "" {
			return errf(syscall.EEXIST, "qdisc on %q in netns %q: %s is there", c.Name, c.Namespace, l.foreignQdisc)
		}
		if opt, ok := w.Unsupported[c.Link.Impair.Qdisc()]; ok {
			return errf(syscall.ENOENT, "qdisc %s on %q (kernel lacks %s)", c.Link.Impair.Qdisc(), c.Name, opt)
		}
		l.l.Impair = c.Link.Impair.Clone()
		return nil
	case reconcile.KindLink:
		switch c.Action {
		case reconcile.Create:
			return k.createLink(c)
		case reconcile.Delete:
			if l := n.links[c.Name]; l != nil && l.owner != k.Owner {
				return fmt.Errorf("fake: refusing to delete %q in %q: not owned (a bug in the planner)", c.Name, c.Namespace)
			}
			return w.delLink(c.Namespace, c.Name)
		case reconcile.Update:
			name := c.Name
			if c.OldName != "" {
				name = c.OldName // renamed in this step
			}
			l := n.links[name]
			if l == nil {
				return errf(syscall.ENODEV, "link %q in netns %q", c.Name, c.Namespace)
			}
			for _, f := range c.Fields {
				switch f.Name {
				case "mtu":
					if err := w.setMTU(c.Namespace, n, l, c.Link.MTU); err != nil {
						return err
					}
				case "mac":
					l.l.MAC = c.Link.MAC
				case "up":
					if l.l.Up && !c.Link.Up {
						w.linkDown(c.Namespace, n, l)
					}
					l.l.Up = c.Link.Up
				case "stp":
					v := *c.Link.STP
					l.l.STP = &v
				case "master":
					if err := checkMaster(n, c.Link.Master); err != nil {
						return err
					}
					if c.Link.Master != "" && w.hasChildren(c.Namespace, name) {
						return errf(syscall.EBUSY, "%q has macvlan or ipvlan children", name)
					}
					old := l.l.Master
					l.l.Master = c.Link.Master
					w.bridgeMTU(c.Namespace, n, old)
					w.bridgeMTU(c.Namespace, n, l.l.Master)
				case "name":
					// Renamed in place: down for a moment, the same link.
					if l.l.Up {
						w.linkDown(c.Namespace, n, l)
					}
					delete(n.links, c.OldName)
					l.l.Name = c.Name
					n.links[c.Name] = l
					l.l.Peer = cloneRef(c.Link.Peer)
					// What follows the ifindex follows: sysctls, VXLAN devs.
					for key, v := range n.sysctls {
						if parts := strings.Split(key, "."); len(parts) >= 5 && parts[3] == topology.SysctlKeyName(c.OldName) {
							parts[3] = topology.SysctlKeyName(c.Name)
							delete(n.sysctls, key)
							n.sysctls[strings.Join(parts, ".")] = v
						}
					}
					// And the notes of them (the record follows the ifindex).
					for _, rec := range n.before {
						for key, v := range rec {
							if parts := strings.Split(key, "."); len(parts) >= 5 && parts[3] == topology.SysctlKeyName(c.OldName) {
								parts[3] = topology.SysctlKeyName(c.Name)
								delete(rec, key)
								rec[strings.Join(parts, ".")] = v
							}
						}
					}
					for _, o := range n.links {
						if o.l.VXLAN != nil && o.l.VXLAN.Dev == c.OldName {
							o.l.VXLAN.Dev = c.Name
						}
					}
					for _, other := range w.nss {
						for _, o := range other.links {
							if o.kparent != nil && o.kparent.NS == c.Namespace && o.kparent.Name == c.OldName {
								o.kparent = &reconcile.Ref{NS: c.Namespace, Name: c.Name} // the kernel's link, not the mark
							}
						}
					}
				case "peer":
					l.l.Peer = cloneRef(c.Link.Peer)
				case "owner":
					l.owner = "" // left to whoever else uses it
				case "parent":
					l.l.Parent = cloneRef(c.Link.Parent)
				case "mode":
					l.l.Mode = c.Link.Mode
				case "flag":
					l.l.Flag = c.Link.Flag
				case "remote", "group", "local", "dev":
					if c.Link.VXLAN.Dev != "" && n.links[c.Link.VXLAN.Dev] == nil {
						return errf(syscall.ENODEV, "vxlan dev %q", c.Link.VXLAN.Dev)
					}
					v := *c.Link.VXLAN
					l.l.VXLAN = &v
					// Held under what its (new) dev leaves it, silently:
					// the kernel sets it without telling anyone (its IPv6
					// addresses stay, unusable under 1280).
					if max := w.maxMTU(c.Namespace, n, l.l); l.l.MTU > max {
						l.l.MTU = max
					}
				default:
					return fmt.Errorf("fake: cannot change %s in place", f.Name)
				}
			}
		}
	case reconcile.KindAddress:
		l := n.links[c.Dev]
		if l == nil {
			return errf(syscall.ENODEV, "link %q in netns %q", c.Dev, c.Namespace)
		}
		switch c.Action {
		case reconcile.Create:
			for _, a := range l.l.Addresses {
				if a == c.Name {
					return nil // there already: adopted, as the real kernel code does
				}
			}
			if addrFamily(c.Name) == 6 && l.l.MTU < 1280 {
				return errf(syscall.EINVAL, "no IPv6 on %q: its MTU %d is under 1280", c.Dev, l.l.MTU)
			}
			if off, _ := w.sysctl(c.Namespace, "net.ipv6.conf."+topology.SysctlKeyName(c.Dev)+".disable_ipv6"); addrFamily(c.Name) == 6 && off == "1" {
				return errf(syscall.EPERM, "IPv6 is disabled on %q", c.Dev)
			}
			l.l.Addresses = insertAddr(l.l.Addresses, c.Name)
		case reconcile.Delete:
			w.delAddr(c.Namespace, n, l, c.Name)
		}
	case reconcile.KindRoute:
		switch c.Action {
		case reconcile.Delete:
			delete(n.routes, c.Route.Key())
		case reconcile.Create, reconcile.Update:
			if c.Action == reconcile.Create && !c.Readd && !c.Displace && n.routes[c.Route.Key()] != nil {
				return errf(syscall.EEXIST, "route %s", c.Route)
			}
			r := c.Route.Clone()
			dev, err := w.routeDev(n, r)
			if err != nil {
				return err
			}
			r.Dev = dev
			r.Owned = true
			r.Proto = "netplan-lab"
			n.routes[r.Key()] = r
		}
	case reconcile.KindSysctl:
		was, ok := w.sysctl(c.Namespace, c.Name)
		if !ok {
			return errf(syscall.ENOENT, "sysctl %s", c.Name)
		}
		// The record: what a key was before its owner first set it, gone
		// once it is put back.
		if c.Restore {
			delete(n.before[k.Owner], c.Name)
		} else {
			k.noteIn(n, c.Namespace, c.Name, was)
		}
		// (Noted first, as linux notes before it writes.)
		if parts := strings.Split(c.Name, "."); len(parts) == 5 && parts[1] == "ipv6" && parts[4] == "mtu" && parts[3] != "all" && parts[3] != "default" {
			// Between IPv6's minimum and the interface's own MTU.
			v, err := strconv.Atoi(c.Value)
			if l := n.links[topology.SysctlIfname(parts[3])]; err != nil || v < 1280 || l != nil && v > l.l.MTU {
				return errf(syscall.EINVAL, "sysctl %s = %s", c.Name, c.Value)
			}
		}
		n.sysctls[c.Name] = c.Value
		w.ipv6Switched(n, c.Name, c.Value)
		w.forwardSwitched(n, c.Name, c.Value)
	}
	return nil
}

// forwardSwitched does what the kernel does when forwarding is written
// namespace-wide: ip_forward (or conf.all.forwarding) sets all, default
// and every interface's forwarding; IPv6's all.forwarding likewise.
func (w *World) forwardSwitched(n *ns, key, v string) {
	fam := ""
	switch key {
	case "net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding":
		fam = "ipv4"
		n.sysctls["net.ipv4.ip_forward"] = v
	case "net.ipv6.conf.all.forwarding":
		fam = "ipv6"
	default:
		return
	}
	n.sysctls["net."+fam+".conf.all.forwarding"] = v
	n.sysctls["net."+fam+".conf.default.forwarding"] = v
	for ln := range n.links {
		n.sysctls["net."+fam+".conf."+topology.SysctlKeyName(ln)+".forwarding"] = v
	}
}

// ipv6Switched does what the kernel does when disable_ipv6 is written:
// "all" sets default and every interface too; an interface turned off
// loses its IPv6 addresses, and the routes through it.
func (w *World) ipv6Switched(n *ns, key, v string) {
	parts := strings.Split(key, ".")
	if len(parts) != 5 || parts[1] != "ipv6" || parts[2] != "conf" || parts[4] != "disable_ipv6" {
		return
	}
	var devs []string
	switch parts[3] {
	case "default":
		return
	case "all":
		n.sysctls["net.ipv6.conf.default.disable_ipv6"] = v
		for ln := range n.links {
			n.sysctls["net.ipv6.conf."+topology.SysctlKeyName(ln)+".disable_ipv6"] = v
			devs = append(devs, ln)
		}
	default:
		devs = []string{topology.SysctlIfname(parts[3])}
	}
	if v != "1" {
		return
	}
	for _, ln := range devs {
		l := n.links[ln]
		if l == nil {
			continue
		}
		var keep []string
		for _, a := range l.l.Addresses {
			if addrFamily(a) != 6 {
				keep = append(keep, a)
			}
		}
		l.l.Addresses = keep
		var foreign []string
		for _, a := range l.l.Foreign {
			if addrFamily(a) != 6 {
				foreign = append(foreign, a)
			}
		}
		l.l.Foreign = foreign
		for k, r := range n.routes {
			if routeFamily(r) == 6 && r.Dev == ln {
				delete(n.routes, k)
			}
		}
	}
}

// routeDev checks a route the way the kernel does and returns its device.
func (w *World) routeDev(n *ns, r *reconcile.Route) (string, error) {
	if r.Dev != "" {
		l := n.links[r.Dev]
		if l == nil {
			return "", errf(syscall.ENODEV, "route %s: device %q", r, r.Dev)
		}
		if !l.l.Up {
			return "", errf(syscall.ENETDOWN, "route %s: device %q is down", r, r.Dev)
		}
	}
	if r.Via == "" || (r.OnLink && r.Dev != "") {
		return r.Dev, nil
	}
	gw, err := netip.ParseAddr(r.Via)
	if err != nil {
		return "", errf(syscall.EINVAL, "route %s", r)
	}
	names := make([]string, 0, len(n.links))
	for ln := range n.links {
		names = append(names, ln)
	}
	sort.Strings(names)
	for _, ln := range names {
		l := n.links[ln]
		if !l.l.Up || (r.Dev != "" && ln != r.Dev) {
			continue
		}
		for _, a := range l.l.Addresses {
			if p, err := netip.ParsePrefix(a); err == nil && p.Masked().Contains(gw) {
				return ln, nil
			}
		}
	}
	return "", errf(syscall.ENETUNREACH, "route %s: gateway %s is not on a connected network", r, r.Via)
}

func (w *World) flushRoutes(n *ns, dev string) {
	for k, r := range n.routes {
		if r.Dev == dev {
			delete(n.routes, k)
		}
	}
}

// insertAddr adds an address where the kernel lists it: IPv4 primaries
// (the first of their subnet) after the primaries, IPv4 secondaries at the
// end of the IPv4 ones; IPv6 addresses after the IPv4 ones, newest first.
func insertAddr(list []string, a string) []string {
	var v4p, v4s, v6 []string
	p, _ := netip.ParsePrefix(a)
	secondary := false
	for _, x := range list {
		q, _ := netip.ParsePrefix(x)
		switch {
		case !q.Addr().Is4():
			v6 = append(v6, x)
		case len(v4p) == 0 || !isSecondary(x, v4p):
			v4p = append(v4p, x)
		default:
			v4s = append(v4s, x)
		}
		if p.Addr().Is4() && q.Addr().Is4() && q.Bits() == p.Bits() && q.Masked() == p.Masked() {
			secondary = true
		}
	}
	switch {
	case !p.Addr().Is4():
		v6 = append([]string{a}, v6...)
	case secondary:
		v4s = append(v4s, a)
	default:
		v4p = append(v4p, a)
	}
	return append(append(v4p, v4s...), v6...)
}

// insertPrimary puts an IPv4 address after the last primary.
func insertPrimary(list []string, a string) []string {
	var v4p, rest []string
	for _, x := range list {
		q, _ := netip.ParsePrefix(x)
		if q.Addr().Is4() && !isSecondary(x, v4p) {
			v4p = append(v4p, x)
		} else {
			rest = append(rest, x)
		}
	}
	return append(append(v4p, a), rest...)
}

// devConf is a setting the kernel reads as "all OR the interface's own"
// (promote_secondaries, keep_addr_on_down): "1" if either is set.
func (w *World) devConf(nsName, dev, prefix, key string) string {
	all, _ := w.sysctl(nsName, prefix+".all."+key)
	own, _ := w.sysctl(nsName, prefix+"."+dev+"."+key)
	if all == "1" || own == "1" {
		return "1"
	}
	return "0"
}

// isSecondary: x shares a subnet with one of the primaries before it.
func isSecondary(x string, primaries []string) bool {
	q, _ := netip.ParsePrefix(x)
	for _, y := range primaries {
		r, _ := netip.ParsePrefix(y)
		if r.Addr().Is4() && q.Bits() == r.Bits() && q.Masked() == r.Masked() {
			return true
		}
	}
	return false
}

func routeFamily(r *reconcile.Route) int {
	if strings.Contains(r.Dst, ":") {
		return 6
	}
	return 4
}

func addrFamily(a string) int {
	if strings.Contains(a, ":") {
		return 6
	}
	return 4
}

// delAddr removes an address as the kernel does: without
// promote_secondaries, a primary IPv4 address takes the secondaries of its
// subnet along; when a link loses its last address of a family, the routes
// of that family through it go.
func (w *World) delAddr(nsName string, n *ns, l *link, cidr string) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return
	}
	promote := w.devConf(nsName, l.l.Name, "net.ipv4.conf", "promote_secondaries")
	same := func(a string) bool {
		q, err := netip.ParsePrefix(a)
		return err == nil && q.Addr().Is4() && p.Addr().Is4() && q.Bits() == p.Bits() && q.Masked() == p.Masked()
	}
	primary := false
	for _, a := range l.l.Addresses {
		if same(a) {
			primary = a == cidr
			break
		}
	}
	var keep []string
	promoted := ""
	for _, a := range l.l.Addresses {
		if a == cidr {
			continue
		}
		if primary && same(a) {
			if promote != "1" {
				continue // a secondary of the deleted primary goes with it
			}
			if promoted == "" {
				promoted = a // the first secondary takes the primary's place
				continue
			}
		}
		keep = append(keep, a)
	}
	if promoted != "" {
		// It goes after the last primary, as a primary.
		var out []string
		for _, a := range keep {
			out = insertAddr(out, a)
		}
		keep = insertPrimary(out, promoted)
	}
	l.l.Addresses = keep
	fam := addrFamily(cidr)
	for _, a := range append(keep, l.l.Foreign...) {
		if addrFamily(a) == fam {
			return
		}
	}
	for k, r := range n.routes {
		if r.Dev == l.l.Name && routeFamily(r) == fam {
			delete(n.routes, k)
		}
	}
}

// linkDown is what the kernel does when a link goes down: its routes go,
// and its IPv6 addresses unless keep_addr_on_down.
func (w *World) linkDown(nsName string, n *ns, l *link) {
	l.ready = false
	w.flushRoutes(n, l.l.Name)
	if keep := w.devConf(nsName, l.l.Name, "net.ipv6.conf", "keep_addr_on_down"); keep != "1" {
		var v4 []string
		for _, a := range l.l.Addresses {
			if addrFamily(a) == 4 {
				v4 = append(v4, a)
			}
		}
		l.l.Addresses = v4
	}
}

func checkMaster(n *ns, master string) error {
	if master == "" {
		return nil
	}
	b := n.links[master]
	if b == nil {
		return errf(syscall.ENODEV, "master %q", master)
	}
	if b.l.Kind != reconcile.KindBridge {
		return errf(syscall.EINVAL, "master %q is a %s, not a bridge", master, b.l.Kind)
	}
	return nil
}

func (k *Kernel) createLink(c *reconcile.Change) error {
	w := k.W
	n := w.nss[c.Namespace]
	l := c.Link.Clone()
	if opt, ok := w.Unsupported[l.Kind]; ok {
		return errf(syscall.EOPNOTSUPP, "create %s %q (kernel lacks %s)", l.Kind, l.Name, opt)
	}
	if n.links[l.Name] != nil {
		return errf(syscall.EEXIST, "create %s %q in netns %q", l.Kind, l.Name, c.Namespace)
	}
	place := func(nsName string, n *ns, l *reconcile.Link) error {
		if err := checkMaster(n, l.Master); err != nil {
			return err
		}
		if l.MAC == "" {
			l.MAC = l.PreferMAC
		}
		l.PreferMAC, l.AutoMAC = "", false // what the file wants, not what the kernel has
		l.Impair = nil                     // a new interface has the kernel's default qdisc
		if l.MAC == "" {
			h := fnv.New32a()
			h.Write([]byte(nsName + "/" + l.Name))
			v := h.Sum32()
			l.MAC = fmt.Sprintf("02:fa:%02x:%02x:%02x:%02x", byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
		}
		set := l.MTU != 0
		if l.MTU == 0 {
			l.MTU = w.defaultMTU(nsName, n, l)
		} else if max := w.maxMTU(nsName, n, l); l.MTU > max {
			return errf(syscall.EINVAL, "create %s %q: mtu %d over %d", l.Kind, l.Name, l.MTU, max)
		}
		if l.Kind == reconcile.KindBridge && l.STP == nil {
			f := false
			l.STP = &f
		}
		var addrs []string
		for _, a := range l.Addresses {
			addrs = insertAddr(addrs, a)
		}
		l.Addresses = addrs
		if l.MTU < 1280 {
			for _, a := range l.Addresses {
				if addrFamily(a) == 6 {
					return errf(syscall.EINVAL, "no IPv6 on %q: its MTU %d is under 1280", l.Name, l.MTU)
				}
			}
		}
		n.links[l.Name] = &link{owner: k.Owner, l: l, kparent: cloneRef(l.Parent), mtuSet: set && l.Kind == reconcile.KindBridge}
		// An interface's own settings start from the namespace's default.
		for _, key := range []string{"net.ipv4.conf.%s.promote_secondaries", "net.ipv6.conf.%s.keep_addr_on_down", "net.ipv6.conf.%s.disable_ipv6",
			"net.ipv4.conf.%s.forwarding", "net.ipv6.conf.%s.forwarding"} {
			if v, ok := w.sysctl(nsName, fmt.Sprintf(key, "default")); ok {
				n.sysctls[fmt.Sprintf(key, topology.SysctlKeyName(l.Name))] = v
			}
		}
		w.bridgeMTU(nsName, n, l.Master)
		return nil
	}
	switch l.Kind {
	case reconcile.KindVeth:
		pn := w.nss[l.Peer.NS]
		if pn == nil {
			return errf(syscall.ENOENT, "veth peer netns %q", l.Peer.NS)
		}
		if pn.links[l.Peer.Name] != nil || (l.Peer.NS == c.Namespace && l.Peer.Name == l.Name) {
			return errf(syscall.EEXIST, "veth peer %s", l.Peer)
		}
		peer := c.PeerLink.Clone()
		if peer == nil {
			peer = &reconcile.Link{Name: l.Peer.Name, Kind: reconcile.KindVeth, Up: true}
		}
		// An end without an MTU takes the other's (the lab makes a pair
		// with one MTU where one end gives it).
		if peer.MTU == 0 {
			peer.MTU = l.MTU
		} else if l.MTU == 0 {
			l.MTU = peer.MTU
		}
		peer.Peer = &reconcile.Ref{NS: c.Namespace, Name: l.Name}
		if err := place(c.Namespace, n, l); err != nil {
			return err
		}
		return place(l.Peer.NS, pn, peer)
	case reconcile.KindMacvlan, reconcile.KindIpvlan:
		pn := w.nss[l.Parent.NS]
		if pn == nil || pn.links[l.Parent.Name] == nil {
			return errf(syscall.ENODEV, "parent %s", l.Parent)
		}
		// A bridge port's frames are the bridge's: no child can take them.
		if pn.links[l.Parent.Name].l.Master != "" {
			return errf(syscall.EBUSY, "parent %s is a bridge port", l.Parent)
		}
	case reconcile.KindVxlan:
		if l.VXLAN.Dev != "" && n.links[l.VXLAN.Dev] == nil {
			return errf(syscall.ENODEV, "vxlan dev %q", l.VXLAN.Dev)
		}
		// One VNI per UDP port in a namespace.
		for _, o := range n.links {
			if o.l.Kind == reconcile.KindVxlan && o.l.VXLAN.VNI == l.VXLAN.VNI && o.l.VXLAN.Port == l.VXLAN.Port {
				return errf(syscall.EEXIST, "vxlan vni %d port %d is in use by %q", l.VXLAN.VNI, l.VXLAN.Port, o.l.Name)
			}
		}
	}
	return place(c.Namespace, n, l)
}

// The kernel's MTU rules: a veth starts at 1500, a macvlan or ipvlan at
// its parent's MTU (and never above it), a VXLAN at its underlay's MTU less
// its 50-byte header (1450 without one, never above); a bridge follows the
// smallest of its ports' MTUs (1500 without ports) until its MTU is set.
func (w *World) defaultMTU(nsName string, n *ns, l *reconcile.Link) int {
	switch l.Kind {
	case reconcile.KindMacvlan, reconcile.KindIpvlan:
		if p := w.linkAt(*l.Parent); p != nil {
			return p.l.MTU
		}
	case reconcile.KindVxlan:
		return w.maxMTU(nsName, n, l)
	}
	return 1500
}

// kernelParent is the link a child is on (its kparent, which follows
// renames), for a link already placed.
func (w *World) kernelParent(n *ns, l *reconcile.Link) *link {
	if o := n.links[l.Name]; o != nil && o.l == l && o.kparent != nil {
		return w.linkAt(*o.kparent)
	}
	if l.Parent != nil {
		return w.linkAt(*l.Parent)
	}
	return nil
}

func (w *World) maxMTU(nsName string, n *ns, l *reconcile.Link) int {
	switch l.Kind {
	case reconcile.KindMacvlan, reconcile.KindIpvlan:
		if p := w.kernelParent(n, l); p != nil {
			return p.l.MTU
		}
	case reconcile.KindVxlan:
		head := topology.VxlanHeadroom(l.VXLAN.Remote, l.VXLAN.Group, l.VXLAN.Local)
		if d := n.links[l.VXLAN.Dev]; l.VXLAN.Dev != "" && d != nil {
			return d.l.MTU - head
		}
		return 1500 - head
	}
	return 65535
}

func (w *World) hasChildren(nsName, name string) bool {
	for _, other := range w.nss {
		for _, o := range other.links {
			if o.kparent != nil && o.kparent.NS == nsName && o.kparent.Name == name {
				return true
			}
		}
	}
	return false
}

func (w *World) linkAt(r reconcile.Ref) *link {
	if n := w.nss[r.NS]; n != nil {
		return n.links[r.Name]
	}
	return nil
}

// setMTU changes a link's MTU and what follows it: the bridge it is a
// port of, the macvlans on it (which shrink with it).
func (w *World) setMTU(nsName string, n *ns, l *link, mtu int) error {
	if max := w.maxMTU(nsName, n, l.l); mtu > max {
		return errf(syscall.EINVAL, "mtu %d of %q is over %d", mtu, l.l.Name, max)
	}
	if l.l.Kind == reconcile.KindBridge {
		l.mtuSet = true
	}
	w.mtuIs(nsName, n, l, mtu)
	return nil
}

// mtuIs gives a link a new MTU and makes what follows follow: the bridge
// it is a port of, the macvlans on it (which shrink with it), its IPv6
// addresses (gone under IPv6's minimum MTU of 1280).
func (w *World) mtuIs(nsName string, n *ns, l *link, mtu int) {
	l.l.MTU = mtu
	// The kernel's IPv6 settings of the interface: its IPv6 MTU follows
	// the new MTU, and under 1280 they are gone (made anew, with the
	// defaults, when it comes back).
	v6 := "net.ipv6.conf." + topology.SysctlKeyName(l.l.Name) + "."
	for k := range n.sysctls {
		if k == v6+"mtu" || mtu < 1280 && strings.HasPrefix(k, v6) {
			delete(n.sysctls, k)
		}
	}
	if mtu < 1280 {
		var v4 []string
		for _, a := range l.l.Addresses {
			if addrFamily(a) == 4 {
				v4 = append(v4, a)
			}
		}
		l.l.Addresses = v4
	}
	w.bridgeMTU(nsName, n, l.l.Master)
	for cn, other := range w.nss {
		for _, o := range other.links {
			if o.kparent != nil && o.kparent.NS == nsName && o.kparent.Name == l.l.Name && o.l.MTU > mtu {
				w.mtuIs(cn, other, o, mtu)
			}
		}
	}
}

// bridgeMTU sets a bridge's MTU to its smallest port's, unless it was set.
func (w *World) bridgeMTU(nsName string, n *ns, bridge string) {
	b := n.links[bridge]
	if bridge == "" || b == nil || b.mtuSet {
		return
	}
	min := 0
	for _, o := range n.links {
		if o.l.Master == bridge && (min == 0 || o.l.MTU < min) {
			min = o.l.MTU
		}
	}
	if min == 0 {
		min = 1500
	}
	if b.l.MTU != min {
		w.mtuIs(nsName, n, b, min)
	}
}

func (w *World) delLink(nsName, name string) error {
	n := w.nss[nsName]
	if n == nil {
		return nil
	}
	l := n.links[name]
	if l == nil {
		return nil
	}
	delete(n.links, name)
	w.flushRoutes(n, name)
	// Its own sysctls (net.ipv4.conf.NAME.x) go with it, and the notes of
	// them (the record is of that interface, by its ifindex).
	for k := range n.sysctls {
		if parts := strings.Split(k, "."); len(parts) >= 5 && parts[3] == topology.SysctlKeyName(name) {
			delete(n.sysctls, k)
		}
	}
	for _, rec := range n.before {
		for k := range rec {
			if parts := strings.Split(k, "."); len(parts) >= 5 && parts[3] == topology.SysctlKeyName(name) {
				delete(rec, k)
			}
		}
	}
	for _, o := range n.links {
		if o.l.Master == name {
			o.l.Master = ""
		}
	}
	w.bridgeMTU(nsName, n, l.l.Master)
	// A VXLAN goes with its underlay dev.
	for on, o := range n.links {
		if o.l.Kind == reconcile.KindVxlan && o.l.VXLAN != nil && o.l.VXLAN.Dev == name {
			_ = w.delLink(nsName, on)
		}
	}
	// Children of a deleted parent go with it.
	for nn, other := range w.nss {
		for on, o := range other.links {
			if o.kparent != nil && o.kparent.NS == nsName && o.kparent.Name == name {
				_ = w.delLink(nn, on)
			}
		}
	}
	if l.l.Kind == reconcile.KindVeth && l.l.Peer != nil {
		if pn := w.nss[l.l.Peer.NS]; pn != nil {
			if p := pn.links[l.l.Peer.Name]; p != nil && p.l.Peer != nil && *p.l.Peer == (reconcile.Ref{NS: nsName, Name: name}) {
				return w.delLink(l.l.Peer.NS, l.l.Peer.Name)
			}
		}
	}
	return nil
}

// SetForwardDrop makes namespace nsName hold a foreign forward chain with a
// drop policy, as Docker's filter table does.
func (w *World) SetForwardDrop(nsName, chain string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nss[nsName].forwardDrop = append(w.nss[nsName].forwardDrop, chain)
}

// ApplyNAT implements reconcile.Kernel: the batch applies whole or not at
// all; new rules go into each chain after the nearest rule that comes
// before them in order.
func (k *Kernel) ApplyNAT(ctx context.Context, nsName string, changes []*reconcile.Change, order []string) error {
	for _, c := range changes {
		if k.FailOn != nil {
			if err := k.FailOn(c); err != nil {
				return err
			}
		}
	}
	w := k.W
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.nss[nsName]
	if n == nil {
		return errf(syscall.ENOENT, "netns %q", nsName)
	}
	next := map[string]*natRule{}
	for key, r := range n.nat {
		next[key] = r
	}
	chains := map[string][]string{}
	for ck, ids := range n.natChains {
		chains[ck] = append([]string(nil), ids...)
	}
	remove := func(id string) {
		delete(next, k.Owner+"|"+id)
		for _, chain := range reconcile.NATChainOrder {
			ck := k.Owner + "|" + chain
			var keep []string
			for _, x := range chains[ck] {
				if x != id {
					keep = append(keep, x)
				}
			}
			chains[ck] = keep
		}
	}
	var created []string
	for _, c := range changes {
		key := k.Owner + "|" + c.Name
		switch c.Action {
		case reconcile.Create:
			if next[key] != nil {
				return errf(syscall.EEXIST, "nat rule %q in netns %q", c.Name, nsName)
			}
		case reconcile.Delete:
			remove(c.Name)
			continue
		case reconcile.Replace:
			remove(c.Name)
		default:
			return fmt.Errorf("fake: nat %s not supported", c.Action)
		}
		r := *c.NAT
		next[key] = &natRule{owner: k.Owner, r: &r}
		created = append(created, c.Name)
	}
	pos := map[string]int{}
	for i, id := range order {
		pos[id] = i
	}
	for _, id := range order {
		if !contains(created, id) {
			continue
		}
		for _, chain := range next[k.Owner+"|"+id].r.Chains() {
			ck := k.Owner + "|" + chain
			at := 0
			for i, x := range chains[ck] {
				if p, ok := pos[x]; ok && p < pos[id] {
					at = i + 1
				}
			}
			ids := append([]string(nil), chains[ck][:at]...)
			ids = append(ids, id)
			chains[ck] = append(ids, chains[ck][at:]...)
		}
	}
	for ck, ids := range chains {
		if len(ids) == 0 {
			delete(chains, ck)
		}
	}
	n.nat = next
	n.natChains = chains
	k.writes += len(changes)
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
