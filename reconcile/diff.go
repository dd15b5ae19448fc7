package reconcile

import (
	"fmt"
	"github.com/netplan-lab/netplan-lab/topology"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Diff computes the plan that takes the observed state to the desired one.
// It is pure: it only reads its arguments.
//
// Only owned objects are created, changed or deleted. A wanted object whose
// name is taken by one the topology does not own is a conflict, as is a
// macvlan or ipvlan whose parent exists nowhere.
func Diff(desired, observed *State) *Plan {
	if observed == nil {
		observed = NewState()
	}
	d := &differ{want: desired, have: observed, plan: &Plan{},
		gone: map[Ref]bool{}, fresh: map[Ref]bool{}, deletedNS: map[string]bool{}, shaken: map[shake]bool{}}
	d.run()
	d.plan.sort()
	sort.Strings(d.plan.Conflicts)
	return d.plan
}

type differ struct {
	want, have *State
	plan       *Plan
	// gone holds observed links that this plan deletes or replaces: their
	// addresses, routes and bridge ports disappear with them.
	gone map[Ref]bool
	// fresh holds links this plan creates: they start with nothing.
	fresh     map[Ref]bool
	deletedNS map[string]bool
	// shaken holds links whose routes of one family the kernel may flush
	// during this apply: the link goes down, or loses its last address of
	// that family for a moment.
	shaken map[shake]bool
	// renamed holds the rename of each link renamed in place, by its new
	// name; bounced the links a rename takes down for a moment.
	renamed map[Ref]*Change
	bounced []Ref
}

func (d *differ) add(c *Change) { d.plan.Changes = append(d.plan.Changes, c) }

// conflict adds a conflict about the object kind name in namespace ns
// (for a route its Key, for a sysctl its key), said where the file has it.
func (d *differ) conflict(kind Kind, ns, name, format string, args ...any) {
	d.plan.Conflicts = append(d.plan.Conflicts, d.want.where(kind, ns, name)+fmt.Sprintf(format, args...))
}

func (d *differ) run() {
	// Namespaces.
	for _, name := range d.want.SortedNames() {
		w := d.want.Namespaces[name]
		h := d.have.NS(name)
		if !w.Owned {
			if name != HostNS && h == nil {
				d.conflict(KindNamespace, name, name, "namespace %q does not exist and is not owned by this topology", name)
			}
			// The sandbox is made only for something to put in it: a
			// destroy never creates anything.
			if name == HostNS && h != nil && h.Absent && wantsAnything(d.want) {
				d.add(&Change{Action: Create, Kind: KindNamespace, Namespace: name, Name: name})
			}
			continue
		}
		off := w.Sysctls[IPv6Switch[0]] == "1" && w.Sysctls[IPv6Switch[1]] == "1"
		switch {
		case h == nil:
			d.add(&Change{Action: Create, Kind: KindNamespace, Namespace: name, Name: name, IPv6Off: off})
		case h.Stale:
			d.add(&Change{Action: Create, Kind: KindNamespace, Namespace: name, Name: name, IPv6Off: off, Why: "its pin was left half-made by a killed run"})
		case h.Broken != "":
			d.conflict(KindNamespace, name, name, "namespace %q cannot be used: %s", name, h.Broken)
		case !h.Owned:
			d.conflict(KindNamespace, name, name, "namespace %q already exists and is not owned by this topology%s", name, heldBy(h.OtherLab))
		}
	}
	for _, name := range d.have.SortedNames() {
		h := d.have.Namespaces[name]
		if h.Owned && d.want.NS(name) == nil {
			c := &Change{Action: Delete, Kind: KindNamespace, Namespace: name, Name: name}
			if h.Stale {
				c.Why = "only a pin file left by a killed run"
			}
			d.add(c)
			d.deletedNS[name] = true
		}
	}

	// Links: first decide which observed links are renamed, and which go
	// away, so that addresses, ports and routes of replaced links are
	// planned against what will be.
	d.planRenames()
	for _, name := range d.want.SortedNames() {
		d.links(name)
	}
	for _, name := range d.have.SortedNames() {
		if d.deletedNS[name] {
			d.childrenOfOutside(name)
			continue
		}
		h := d.have.Namespaces[name]
		for _, ln := range sortedKeys(h.Links) {
			hl := h.Links[ln]
			ref := Ref{name, ln}
			if !hl.Owned || d.want.Link(ref) != nil || d.gone[ref] {
				continue
			}
			if hl.Kind == KindVeth && hl.Peer != nil && d.deletedNS[hl.Peer.NS] {
				// Deleting the peer's namespace takes this end too, in the
				// kernel's batched namespace cleanup: far cheaper than a
				// delete of its own.
				d.gone[ref] = true
				d.add(&Change{Action: Delete, Kind: KindLink, Namespace: name, Name: ln, Link: hl.Clone(), Implicit: true})
				continue
			}
			if len(hl.Foreign) > 0 && hl.Kind != KindVeth {
				// Someone put addresses of their own on it: it is left
				// to them, without the lab's mark and addresses.
				d.add(&Change{Action: Update, Kind: KindLink, Namespace: name, Name: ln, Link: hl.Clone(), OldLink: hl.Clone(),
					Fields: []Field{{Name: "owner", Old: "this lab", New: "(none)"}},
					Why:    "it carries addresses the lab did not add (" + strings.Join(hl.Foreign, ", ") + "): it stays for them, unmarked; the lab's own addresses go"})
				// Its connected route for such an address's subnet may win
				// over the lab's for the same subnet on another interface
				// (an outside audit: a bridge renamed, the old one kept for
				// an address in the lab's subnet, and the containers lost
				// their gateway).
				for _, fa := range hl.Foreign {
					fp, err := netip.ParsePrefix(fa)
					if err != nil {
						continue
					}
					wn := d.want.NS(name)
					if wn == nil {
						continue
					}
					for _, on := range sortedKeys(wn.Links) {
						for _, a := range wn.Links[on].Addresses {
							if op, err := netip.ParsePrefix(a); err == nil && on != ln && op.Masked() == fp.Masked() {
								d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf("%q in namespace %q stays for %s, which the lab did not add, in the subnet of %s the lab puts on %q: two connected routes to %s, and the kernel may send through %q what is for %q; remove %s from %q",
									ln, name, fa, a, on, fp.Masked(), ln, on, fa, ln))
							}
						}
					}
				}
				if hl.Impair != nil {
					d.add(&Change{Action: Delete, Kind: KindImpair, Namespace: name, Name: ln, Dev: ln, Link: hl.Clone()})
				}
				continue
			}
			d.deleteLink(ref, hl)
		}
	}
	d.cascade()
	for _, name := range d.want.SortedNames() {
		if d.want.Namespaces[name].Owned || d.have.NS(name) != nil {
			d.linkUpdates(name)
			d.impairs(name)
			d.routes(name)
			d.sysctls(name)
			d.nat(name)
		}
	}
	d.foreignAddrsGoing()
	d.ipv6MTUs()
	d.ipv6Settings()
	d.childMTUs()
}

// cascade plans what the kernel takes with the links this plan deletes or
// replaces: a macvlan or ipvlan goes with its parent, a VXLAN with its
// underlay dev. What the file still wants is re-created (a replace that
// says why), the rest is deleted; a dependent of a dependent follows, until
// nothing changes. A child whose parent does not exist any more (its
// namespace was deleted and the kernel is still cleaning up) is dead too.
func (d *differ) cascade() {
	for changed := true; changed; {
		changed = false
		for _, name := range d.have.SortedNames() {
			h := d.have.Namespaces[name]
			if d.deletedNS[name] || (d.want.NS(name) != nil && d.want.NS(name).Owned && !h.Owned) {
				continue
			}
			for _, ln := range sortedKeys(h.Links) {
				hl := h.Links[ln]
				ref := Ref{name, ln}
				if !hl.Owned || d.gone[ref] || d.fresh[ref] {
					continue
				}
				why := d.dependsOnGone(ref, hl)
				if why == "" {
					continue
				}
				changed = true
				if wl := d.want.Link(ref); wl != nil && wl.Owned {
					d.retire(ref, hl, true)
					d.fresh[ref] = true
					c := &Change{Action: Replace, Kind: KindLink, Namespace: name, Name: ln,
						Link: wl.Clone(), OldLink: hl.Clone(), Why: why}
					if wl.Kind == KindVeth && wl.Peer != nil {
						d.fresh[*wl.Peer] = true
						c.PeerLink = d.want.Link(*wl.Peer).Clone()
					}
					d.add(c)
				} else {
					c := &Change{Action: Delete, Kind: KindLink, Namespace: name, Name: ln, Link: hl.Clone(), Why: why}
					d.add(c)
					d.retire(ref, hl, false)
				}
			}
		}
	}
}

// dependsOnGone says why an observed link goes with another, or "".
func (d *differ) dependsOnGone(ref Ref, hl *Link) string {
	gone := func(r Ref) bool {
		return d.gone[r] || d.fresh[r] || d.deletedNS[r.NS] || d.haveLink(r) == nil
	}
	switch {
	case hl.Parent != nil && (hl.Kind == KindMacvlan || hl.Kind == KindIpvlan) && gone(*hl.Parent):
		return "goes with its parent " + hl.Parent.String()
	case hl.Kind == KindVxlan && hl.VXLAN != nil && hl.VXLAN.Dev != "" && gone(Ref{ref.NS, hl.VXLAN.Dev}):
		return "goes with its underlay dev " + hl.VXLAN.Dev
	}
	return ""
}

// foreignAddrsGoing warns about addresses someone else added to a link
// that this plan deletes or replaces (or whose namespace it deletes): the
// kernel takes them with the link.
func (d *differ) foreignAddrsGoing() {
	for _, name := range d.have.SortedNames() {
		h := d.have.Namespaces[name]
		if d.deletedNS[name] {
			var others []string
			for _, ln := range sortedKeys(h.Links) {
				if !h.Links[ln].Owned {
					others = append(others, ln)
				}
			}
			if len(others) > 0 {
				d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf(
					"namespace %q holds interfaces the lab did not make (%s): they go with it", name, strings.Join(others, ", ")))
			}
			// And routes someone added (an outside audit: they went
			// without a word, while hand-made interfaces were warned of).
			var routes []string
			for _, k := range sortedKeys(h.Routes) {
				if r := h.Routes[k]; !r.Owned && r.Proto != "ra" {
					routes = append(routes, r.String())
				}
			}
			if len(routes) > 0 {
				d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf(
					"namespace %q holds routes the lab did not add (%s): they go with it", name, strings.Join(routes, "; ")))
			}
		}
		for _, ln := range sortedKeys(h.Links) {
			l := h.Links[ln]
			if len(l.Foreign) == 0 || !(d.gone[Ref{name, ln}] || d.deletedNS[name]) {
				continue
			}
			d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf(
				"%s %q in namespace %q carries addresses the lab did not add (%s): they go with it",
				l.Kind, ln, name, strings.Join(l.Foreign, ", ")))
		}
	}
}

// derefOr is *r, or the zero Ref.
func derefOr(r *Ref) Ref {
	if r == nil {
		return Ref{}
	}
	return *r
}

func containsRef(s []Ref, v Ref) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// lcs is a longest common subsequence of a and b (elements unique in each).
func lcs(a, b []string) []string {
	n, m := len(a), len(b)
	t := make([][]int, n+1)
	for i := range t {
		t[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				t[i][j] = t[i+1][j+1] + 1
			} else {
				t[i][j] = max(t[i+1][j], t[i][j+1])
			}
		}
	}
	var out []string
	for i, j := 0, 0; i < n && j < m; {
		switch {
		case a[i] == b[j]:
			out = append(out, a[i])
			i++
			j++
		case t[i+1][j] >= t[i][j+1]:
			i++
		default:
			j++
		}
	}
	return out
}

func heldBy(lab string) string {
	if lab == "" {
		return ""
	}
	return " (it belongs to " + lab + ")"
}

// wantsAnything reports whether a desired state asks for anything at all
// (a destroy's does not).
func wantsAnything(s *State) bool {
	for _, ns := range s.Namespaces {
		if ns.Owned || len(ns.Links) > 0 || len(ns.Routes) > 0 || len(ns.Sysctls) > 0 || len(ns.NAT) > 0 {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// haveLink returns the observed link at r unless the namespace it is in is
// being created or deleted by this plan.
func (d *differ) haveLink(r Ref) *Link {
	h := d.have.NS(r.NS)
	if h == nil || d.deletedNS[r.NS] {
		return nil
	}
	if w := d.want.NS(r.NS); w != nil && w.Owned && !h.Owned {
		return nil // conflict already reported
	}
	return h.Links[r.Name]
}

// childrenOfOutside plans, in namespace name that goes, the deletion of
// the lab's macvlans and ipvlans whose parent is outside it, before the
// namespace goes. Its deletion would take them, but only once nothing
// holds the namespace: one kept alive (a shell in it, an open handle)
// keeps them on their parent, and a lab that makes the namespace again
// makes them again with the same MAC, which the parent refuses (EADDRINUSE;
// an outside audit's find). Its veths need nothing: their other ends are
// observed and deleted when they linger.
func (d *differ) childrenOfOutside(name string) {
	h := d.have.Namespaces[name]
	for _, ln := range sortedKeys(h.Links) {
		hl := h.Links[ln]
		if !hl.Owned || hl.Parent == nil || hl.Parent.NS == name || (hl.Kind != KindMacvlan && hl.Kind != KindIpvlan) {
			continue
		}
		ref := Ref{name, ln}
		d.gone[ref] = true
		d.add(&Change{Action: Delete, Kind: KindLink, Namespace: name, Name: ln, Link: hl.Clone()})
	}
}

func (d *differ) deleteLink(ref Ref, hl *Link) {
	if d.gone[ref] {
		return
	}
	d.add(&Change{Action: Delete, Kind: KindLink, Namespace: ref.NS, Name: ref.Name, Link: hl.Clone()})
	d.retire(ref, hl, false)
}

// retire marks the observed link at r as going away, and with a veth its
// peer too: deleting one end of a pair deletes both. announcePeer adds a line
// for a peer that nothing else in the plan mentions.
func (d *differ) retire(r Ref, l *Link, announcePeer bool) {
	d.gone[r] = true
	if l.Kind != KindVeth || l.Peer == nil {
		return
	}
	p := *l.Peer
	if d.gone[p] {
		return
	}
	d.gone[p] = true
	if pl := d.haveLink(p); announcePeer && pl != nil && pl.Owned && d.want.Link(p) == nil {
		d.add(&Change{Action: Delete, Kind: KindLink, Namespace: p.NS, Name: p.Name, Link: pl.Clone()})
	}
}

// cur is the observed link at r unless this plan already removes it.
func (d *differ) cur(r Ref) *Link {
	if d.gone[r] {
		return nil
	}
	return d.haveLink(r)
}

// links plans creations and replacements of the links of namespace name.
func (d *differ) links(name string) {
	w := d.want.Namespaces[name]
	if w.Owned && d.have.NS(name) != nil && !d.have.NS(name).Owned {
		return
	}
	for _, ln := range sortedKeys(w.Links) {
		wl := w.Links[ln]
		if !wl.Owned {
			continue
		}
		ref := Ref{name, ln}
		hl := d.haveLink(ref)
		if hl != nil && !hl.Owned {
			d.conflict(KindLink, name, ln, "%s %q in namespace %q already exists and is not owned by this topology%s", hl.Kind, ln, name, heldBy(hl.OtherLab))
			continue
		}
		if hn := d.have.NS(name); hl == nil && hn != nil && hn.AltNames[ln] != "" {
			d.conflict(KindLink, name, ln, "%s %q in namespace %q: the name is taken by an alternative name of interface %q there (ip link property del dev %s altname %s, in that namespace, frees it)", wl.Kind, ln, name, hn.AltNames[ln], hn.AltNames[ln], ln)
			continue
		}
		if wl.Parent != nil && d.want.Link(*wl.Parent) == nil && d.haveLink(*wl.Parent) == nil {
			d.conflict(KindLink, name, ln, "parent %s of %s %q in namespace %q does not exist", wl.Parent, wl.Kind, ln, name)
		}
		if hp := d.haveLink(derefOr(wl.Parent)); wl.Parent != nil && d.want.Link(*wl.Parent) == nil && hp != nil && hp.Master != "" {
			// Someone else's interface, a port of a bridge: the bridge
			// holds its receive hook (EBUSY). The file's own ports are
			// validate's business.
			d.conflict(KindLink, name, ln, "parent %s of %s %q in namespace %q is a port of bridge %s: the kernel takes no %s on a bridge port",
				wl.Parent, wl.Kind, ln, name, hp.Master, wl.Kind)
		}
		if wl.Kind == KindVeth {
			d.veth(ref, wl, hl)
			continue
		}
		hl = d.cur(ref)
		switch {
		case hl == nil:
			d.fresh[ref] = true
			d.add(&Change{Action: Create, Kind: KindLink, Namespace: name, Name: ln, Link: wl}) // not a copy: see Change.Link
		case !sameIdentity(wl, hl):
			d.replace(ref, wl, hl)
		}
	}
}

func (d *differ) replace(ref Ref, wl, hl *Link) {
	d.retire(ref, hl, true)
	d.fresh[ref] = true
	d.add(&Change{Action: Replace, Kind: KindLink, Namespace: ref.NS, Name: ref.Name,
		Link: wl.Clone(), OldLink: hl.Clone(), Fields: identityFields(wl, hl)})
}

// veth plans one wanted veth end. The pair is created once, by the end whose
// "ns:name" sorts first; that end carries the peer's wanted settings too.
func (d *differ) veth(ref Ref, wl, hl *Link) {
	peer := *wl.Peer
	if ref.String() > peer.String() {
		return // planned with the other end
	}
	hp := d.haveLink(peer)
	if hp != nil && !hp.Owned {
		return // the conflict is reported for the peer
	}
	if !d.gone[ref] && !d.gone[peer] && d.pairThere(ref, peer) {
		return // the pair is there
	}
	old := d.cur(ref)
	if old != nil {
		d.retire(ref, old, true)
	}
	if op := d.cur(peer); op != nil {
		d.deleteLink(peer, op)
	}
	d.fresh[ref] = true
	d.fresh[peer] = true
	c := &Change{Action: Create, Kind: KindLink, Namespace: ref.NS, Name: ref.Name, Link: wl,
		PeerLink: d.want.Link(peer)} // not copies: see Change.Link
	if old != nil {
		c.Action, c.OldLink, c.Fields = Replace, old.Clone(), identityFields(wl, old)
	}
	d.add(c)
}

// sameIdentity reports whether hl can be turned into wl in place.
func sameIdentity(wl, hl *Link) bool { return len(identityFields(wl, hl)) == 0 }

// identityFields lists the differences the kernel cannot change in place.
func identityFields(wl, hl *Link) []Field {
	var f []Field
	diff := func(name, a, b string) {
		if a != b {
			f = append(f, Field{Name: name, Old: b, New: a})
		}
	}
	diff("kind", wl.Kind, hl.Kind)
	if wl.Kind != hl.Kind {
		return f
	}
	if hl.HalfMade {
		f = append(f, Field{Name: "mark", Old: "(none: a killed run left it half-made)", New: "set"})
	}
	refStr := func(r *Ref) string {
		if r == nil {
			return "(none)"
		}
		return r.String()
	}
	switch wl.Kind {
	case KindVeth:
		diff("peer", refStr(wl.Peer), refStr(hl.Peer))
	case KindMacvlan, KindIpvlan:
		// mode and flag change in place (kindUpdates), but the kernel
		// switches no macvlan into or out of passthru in place
		diff("parent", refStr(wl.Parent), refStr(hl.Parent))
		if wl.Kind == KindMacvlan && (wl.Mode == "passthru") != (hl.Mode == "passthru") {
			diff("mode", wl.Mode, hl.Mode)
		}
	case KindVxlan:
		a, b := wl.VXLAN, hl.VXLAN
		if a == nil || b == nil {
			if a != b {
				diff("vxlan", "set", "unset")
			}
			break
		}
		// The kernel refuses to change a VXLAN's VNI and port, to
		// switch between unicast (remote) and multicast (group), between
		// IPv4 and IPv6 (EOPNOTSUPP: an outside audit's find), or to drop
		// an address; the rest changes in place (kindUpdates).
		diff("vni", strconv.Itoa(a.VNI), strconv.Itoa(b.VNI))
		diff("port", strconv.Itoa(a.Port), strconv.Itoa(b.Port))
		if (a.Remote == "") != (b.Remote == "") || (a.Group == "") != (b.Group == "") ||
			family(a.Remote) != family(b.Remote) || family(a.Group) != family(b.Group) {
			diff("remote", a.Remote, b.Remote)
			diff("group", a.Group, b.Group)
		}
		if (a.Local == "") != (b.Local == "") || family(a.Local) != family(b.Local) {
			diff("local", a.Local, b.Local)
		}
		if (a.Dev == "") != (b.Dev == "") {
			diff("dev", a.Dev, b.Dev)
		}
	}
	return f
}

// kindUpdates lists what differs between two links of one kind that the
// kernel changes in place: a macvlan's or ipvlan's mode and flag; a
// VXLAN's remote, group, local address and underlay dev.
func kindUpdates(wl, hl *Link) []Field {
	var f []Field
	diff := func(name, a, b string) {
		if a != b {
			f = append(f, Field{Name: name, Old: orNone(b), New: orNone(a)})
		}
	}
	switch wl.Kind {
	case KindMacvlan:
		if (wl.Mode == "passthru") == (hl.Mode == "passthru") {
			diff("mode", wl.Mode, hl.Mode)
		}
	case KindIpvlan:
		diff("mode", wl.Mode, hl.Mode)
		diff("flag", wl.Flag, hl.Flag)
	case KindVxlan:
		if a, b := wl.VXLAN, hl.VXLAN; a != nil && b != nil {
			diff("remote", a.Remote, b.Remote)
			diff("group", a.Group, b.Group)
			diff("local", a.Local, b.Local)
			diff("dev", a.Dev, b.Dev)
		}
	}
	return f
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// linkUpdates plans in-place changes and address changes of links that
// exist and stay.
func (d *differ) linkUpdates(name string) {
	w := d.want.Namespaces[name]
	for _, ln := range sortedKeys(w.Links) {
		wl := w.Links[ln]
		ref := Ref{name, ln}
		if !wl.Owned || d.fresh[ref] {
			continue
		}
		hl := d.haveLink(ref)
		if hl == nil || !hl.Owned || d.gone[ref] {
			continue
		}
		f := kindUpdates(wl, hl)
		if wl.MTU != 0 && (wl.MTU != hl.MTU || wl.Kind == KindBridge && !hl.MTUSet && !wl.MTUAuto) {
			// A bridge's MTU follows its ports' until it is set (the
			// mark says when the lab set it): one equal to it now is set.
			f = append(f, Field{"mtu", strconv.Itoa(hl.MTU), strconv.Itoa(wl.MTU)})
		}
		if wl.MAC != "" && wl.MAC != hl.MAC {
			f = append(f, Field{"mac", orNone(hl.MAC), wl.MAC})
		}
		oldMaster, shown := hl.Master, orNone(hl.Master)
		if oldMaster != "" && d.gone[Ref{name, oldMaster}] {
			// Its bridge is deleted or replaced: it is on none by the
			// time this runs (an outside audit read "(none)" as wrong).
			oldMaster, shown = "", hl.Master+" (deleted by this plan)"
		}
		if wl.Master != oldMaster {
			f = append(f, Field{"master", shown, orNone(wl.Master)})
		}
		if wl.STP != nil && (hl.STP == nil || *wl.STP != *hl.STP) {
			old := "(unknown)"
			if hl.STP != nil {
				old = boolStr(*hl.STP)
			}
			f = append(f, Field{"stp", old, boolStr(*wl.STP)})
		}
		downs := (wl.Up != hl.Up && !wl.Up) || containsRef(d.bounced, ref)
		if wl.Up != hl.Up {
			f = append(f, Field{"up", boolStr(hl.Up), boolStr(wl.Up)})
			d.shaken[shake{ref, 4}], d.shaken[shake{ref, 6}] = true, true
		}
		if rc := d.renamed[ref]; rc != nil {
			rc.Fields = append(rc.Fields, f...) // after the rename, in the same step
		} else if len(f) > 0 {
			d.add(&Change{Action: Update, Kind: KindLink, Namespace: name, Name: ln,
				Link: wl.Clone(), OldLink: hl.Clone(), Fields: f})
		}

		d.addresses(name, ln, wl, hl, downs)
	}
}

// shake is a link and an address family (4 or 6).
type shake struct {
	ref    Ref
	family int
}

func family(cidr string) int {
	if strings.Contains(cidr, ":") {
		return 6
	}
	return 4
}

// promotes reports whether, in namespace name, deleting a primary IPv4
// address promotes a secondary instead of taking it along
// (promote_secondaries), and keepsV6 whether IPv6 addresses stay when a
// link goes down (keep_addr_on_down). Namespaces the lab creates, and the
// sandbox, have both (see Namespace.LabDefaults), unless the file says
// otherwise.
func (d *differ) promotes(name string) bool {
	return d.nsDefault(name, "net.ipv4.conf.all.promote_secondaries")
}

// promotesOn reports whether the kernel promotes a secondary address of
// link ln in namespace name when its primary goes: "all" or the link's
// own promote_secondaries is 1, and a link takes "default"'s when it is
// made (1 in the lab's namespaces: with all set to 0 the lab's links
// still promote, and a plan that thought not left the wrong primary; the
// randomized test).
func (d *differ) promotesOn(name, ln string, hl *Link) bool {
	if d.promotes(name) {
		return true
	}
	key := "net.ipv4.conf." + topology.SysctlKeyName(ln) + ".promote_secondaries"
	if w := d.want.NS(name); w != nil {
		if v, ok := w.Sysctls[key]; ok {
			return v != "0"
		}
	}
	if hl != nil && !d.fresh[Ref{name, ln}] && hl.OwnPromote != "" {
		return hl.OwnPromote != "0"
	}
	return d.nsDefault(name, "net.ipv4.conf.default.promote_secondaries")
}

func (d *differ) keepsV6(name string) bool {
	return d.nsDefault(name, "net.ipv6.conf.all.keep_addr_on_down")
}

func (d *differ) nsDefault(name, key string) bool {
	if w := d.want.NS(name); w != nil {
		if v, ok := w.Sysctls[key]; ok {
			return v != "0"
		}
	}
	h := d.have.NS(name)
	if h == nil || h.Stale || h.Absent || d.deletedNS[name] {
		return true // created by this plan, with the lab's defaults
	}
	return h.LabDefaults
}

// addresses plans the address changes of a link that stays. The file's
// order is kept: addresses are added in it, so the first is the primary.
// Where the kernel lets it (promote_secondaries), new addresses are added
// before old ones go, so the routes through the link never go away;
// otherwise old ones go first, and secondaries the kernel takes along with
// their primary are added again. Routes of a family are re-added when the
// link loses its last address of that family for a moment.
func (d *differ) addresses(name, ln string, wl, hl *Link, downs bool) {
	ref := Ref{name, ln}
	have, want := map[string]bool{}, map[string]bool{}
	for _, a := range hl.Addresses {
		have[a] = true
	}
	for _, a := range wl.Addresses {
		want[a] = true
	}
	addFirst := d.promotesOn(name, ln, hl)
	// What the kernel drops by itself (secondaries with their primary,
	// without promotion; IPv6 addresses when the link goes down, without
	// keep_addr_on_down), and subnets whose primary would not be the file's
	// first address: those are rebuilt, deleted and added again in the
	// file's order.
	dropped := map[string]string{}
	rebuilt := map[string]bool{}
	for _, sub := range subnets(wl.Addresses, hl.Addresses) {
		var k, f []string // kernel's and file's IPv4 addresses of the subnet, in order
		for _, a := range hl.Addresses {
			if sameSubnet(a, sub) {
				k = append(k, a)
			}
		}
		for _, a := range wl.Addresses {
			if sameSubnet(a, sub) {
				f = append(f, a)
			}
		}
		if len(f) == 0 {
			continue
		}
		// A route the kernel makes for the subnet's addresses, deleted by
		// hand: the route to the subnet (made with its primary), or an
		// address's local route (table local). The lab's addresses of the
		// subnet go and come again in the file's order, and the kernel
		// makes the routes with them.
		p, lost, fix, why, local := inSubnet(hl.NoRoute, sub), "", "", "", false
		if p != "" {
			lost = fmt.Sprintf("the route to %s that the kernel makes for %s", subnetOf(p), p)
			fix = fmt.Sprintf("routes via %s fail until it is back (ip route add %s dev %s proto kernel scope link src %s)", subnetOf(p), subnetOf(p), ln, strings.SplitN(p, "/", 2)[0])
			why = routeGone(f[0])
		} else if a := inSubnet(hl.NoLocal, sub); a != "" {
			ip := strings.SplitN(a, "/", 2)[0]
			p = a
			for _, pr := range hl.Primaries {
				if sameSubnet(pr, sub) {
					p = pr
				}
			}
			lost = fmt.Sprintf("the local route (table local) that the kernel makes for %s", a)
			fix = fmt.Sprintf("%s does not answer until it is back (ip route add table local local %s dev %s proto kernel scope host src %s)", ip, ip, ln, ip)
			why, local = localGone(a), true
		}
		if p != "" {
			var theirs []string
			for _, a := range hl.Foreign {
				if sameSubnet(a, sub) {
					theirs = append(theirs, a)
				}
			}
			switch {
			case contains(hl.Foreign, p) && !local:
				d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf(
					"%s, the subnet's primary address on %s in namespace %q, which the lab did not add, was deleted: the lab neither adds nor removes that address; %s",
					lost, ln, name, fix))
				continue
			case len(theirs) > 0 && !addFirst && !contains(hl.Foreign, p):
				d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf(
					"%s on %s in namespace %q was deleted: adding %s again would take %s, which the lab did not add, with it (promote_secondaries is 0 for it: net.ipv4.conf.all and its own); %s",
					lost, ln, name, p, strings.Join(theirs, ", "), fix))
				continue
			}
			for _, a := range k {
				rebuilt[a] = true
			}
			for _, a := range f {
				if have[a] {
					dropped[a] = why
				}
			}
			if len(theirs) > 0 && !contains(hl.Foreign, p) {
				d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf(
					"%s was deleted: while the lab adds its addresses of %s on %s in namespace %q again, the kernel makes %s, which the lab did not add, the primary, and the lab's stay secondaries",
					lost, subnetOf(p), ln, name, theirs[0]))
			}
			continue
		}
		if foreignIn(hl, sub) {
			// Someone else's address shares the subnet: the lab neither
			// removes it nor can put its own before it.
			for _, p := range hl.Primaries {
				switch {
				case !sameSubnet(p, sub) || p == f[0]:
				case contains(hl.Foreign, p):
					d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf(
						"the primary address of %s's subnet on %s in namespace %q is %s, which the lab did not add: %s, first in the file, stays a secondary",
						f[0], ln, name, p, f[0]))
				default:
					var theirs []string
					for _, a := range hl.Foreign {
						if sameSubnet(a, sub) {
							theirs = append(theirs, a)
						}
					}
					stays := p + " stays the primary"
					if !want[p] {
						stays = "the kernel promotes one of the addresses left when " + p + " goes"
					}
					d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf(
						"%s, first in the file, cannot become the primary address of its subnet on %s in namespace %q without taking away %s, which the lab did not add: %s",
						f[0], ln, name, strings.Join(theirs, ", "), stays))
				}
			}
			continue
		}
		primary := ""
		switch {
		case addFirst: // new ones go after, deleted ones go, the first left is primary
			for _, a := range append(append([]string(nil), k...), f...) {
				if want[a] {
					primary = a
					break
				}
			}
		case len(k) > 0 && !want[k[0]]: // the primary goes and takes the rest: all added in order
			primary = f[0]
			for _, a := range k[1:] {
				if want[a] {
					dropped[a] = "again: the kernel takes a primary address's secondaries with it"
				}
			}
		case len(k) > 0:
			primary = k[0]
		default:
			primary = f[0]
		}
		switch {
		case primary == f[0]:
		case addFirst && len(k) > 0 && !want[k[0]]:
			// Without a break: the others go first, the file's addresses
			// come as secondaries in its order, and when the old primary
			// goes last the kernel promotes the first of them.
			for _, a := range k[1:] {
				rebuilt[a] = true
				if want[a] {
					dropped[a] = "again: after " + f[0] + ", which becomes the primary"
				}
			}
		default:
			// The subnet is deleted and added again in the file's order.
			for _, a := range k {
				rebuilt[a] = true
			}
			for _, a := range f {
				if have[a] {
					dropped[a] = "again: in the file's order, so that " + f[0] + " is the primary"
				}
			}
		}
	}
	if downs && !d.keepsV6(name) {
		for _, b := range hl.Addresses {
			if want[b] && family(b) == 6 {
				dropped[b] = "again: the kernel drops IPv6 addresses when a link goes down"
			}
		}
	}
	// An IPv6 prefix route deleted by hand: the address goes and comes
	// again (the kernel makes the route with it; other addresses are
	// not touched).
	for _, a := range hl.NoRoute {
		if family(a) == 6 && want[a] && have[a] {
			rebuilt[a] = true
			dropped[a] = routeGone(a)
		}
	}
	var dels []string
	for _, a := range hl.Addresses {
		if !want[a] || rebuilt[a] {
			dels = append(dels, a)
		}
	}
	var peak *Link // made for the first add: wl with the old addresses that go only after the adds
	peakOf := func() *Link {
		if peak == nil {
			peak = wl.Clone()
			for _, a := range hl.Addresses {
				if !want[a] && addFirst {
					peak.Addresses = append(peak.Addresses, a)
				}
			}
		}
		return peak
	}
	for _, a := range wl.Addresses {
		if !have[a] {
			d.add(&Change{Action: Create, Kind: KindAddress, Namespace: name, Name: a, Dev: ln, Peak: peakOf()})
		} else if why := dropped[a]; why != "" {
			d.add(&Change{Action: Create, Kind: KindAddress, Namespace: name, Name: a, Dev: ln, Why: why, Peak: peakOf()})
		}
	}
	for _, a := range dels {
		c := &Change{Action: Delete, Kind: KindAddress, Namespace: name, Name: a, Dev: ln, AfterAdd: addFirst && !rebuilt[a]}
		if want[a] {
			c.Why = "to be added again in the file's order"
		}
		d.add(c)
	}
	// Does the link go without any address of a family for a moment? The
	// steps run in three phases: deletes that come first (and what the
	// kernel drops with them), adds, deletes that come after the adds.
	for _, fam := range []int{4, 6} {
		had, first, last := 0, 0, 0
		for _, a := range hl.Addresses {
			if family(a) != fam {
				continue
			}
			had++
			early := rebuilt[a] || dropped[a] != "" || (!want[a] && !addFirst)
			if !early {
				first++ // still there after the first phase
			}
			if want[a] && !early {
				last++ // still there at the end, without being added again
			}
		}
		for _, a := range wl.Addresses {
			if family(a) == fam && (!have[a] || dropped[a] != "") {
				last++ // added in the second phase
			}
		}
		if had > 0 && (first == 0 || last == 0) {
			d.shaken[shake{ref, fam}] = true
		}
	}
}

// foreignIn reports whether a link carries an address the lab did not add
// in sub's subnet.
func foreignIn(hl *Link, sub string) bool {
	for _, a := range hl.Foreign {
		if sameSubnet(a, sub) {
			return true
		}
	}
	return false
}

// subnets lists the IPv4 subnets of the addresses given, one address
// standing for each.
func subnets(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		for _, a := range l {
			if family(a) != 4 {
				continue
			}
			seen := false
			for _, s := range out {
				if sameSubnet(a, s) {
					seen = true
				}
			}
			if !seen {
				out = append(out, a)
			}
		}
	}
	return out
}

// isPrimary reports whether a is the first address of its subnet in the
// kernel's list (the kernel keeps primaries before their secondaries).
func isPrimary(a string, list []string) bool {
	for _, b := range list {
		if family(b) == 4 && sameSubnet(a, b) {
			return a == b
		}
	}
	return false
}

func sameSubnet(a, b string) bool {
	pa, err1 := netip.ParsePrefix(a)
	pb, err2 := netip.ParsePrefix(b)
	return err1 == nil && err2 == nil && pa.Bits() == pb.Bits() && pa.Masked() == pb.Masked()
}

// through is the wanted link a route goes through: its dev, or the link
// with an address whose subnet holds the gateway (one that is up, if any
// is: the kernel picks such one); "" if the file does not say (a foreign
// link).
func through(ns *Namespace, r *Route) string {
	if r.Dev != "" {
		return r.Dev
	}
	gw, err := netip.ParseAddr(r.Via)
	if err != nil {
		return ""
	}
	found := ""
	for _, ln := range sortedKeys(ns.Links) {
		for _, a := range ns.Links[ln].Addresses {
			if p, err := netip.ParsePrefix(a); err == nil && p.Masked().Contains(gw) {
				if ns.Links[ln].Up {
					return ln
				}
				if found == "" {
					found = ln
				}
			}
		}
	}
	return found
}

// gatewayDev is the one interface a route via a gateway, without dev:, goes
// through when added now: the only up link with an address (of the
// file's, or anyone's) whose subnet holds the gateway; "" when there is
// none or more than one (which one the kernel takes is its own).
func gatewayDev(w, h *Namespace, r *Route) string {
	gw, err := netip.ParseAddr(r.Via)
	if err != nil || gw.IsLinkLocalUnicast() {
		return ""
	}
	found := ""
	holds := func(ln string, addrs []string) {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a); err == nil && p.Masked().Contains(gw) && p.Addr() != gw {
				if found != "" && found != ln {
					found = "-"
				} else if found == "" {
					found = ln
				}
			}
		}
	}
	for _, ln := range sortedKeys(w.Links) {
		if l := w.Links[ln]; l.Up {
			holds(ln, l.Addresses)
		}
	}
	if h != nil {
		for _, ln := range sortedKeys(h.Links) {
			if l := h.Links[ln]; l.Up && (w.Links[ln] == nil || !w.Links[ln].Owned) {
				holds(ln, append(append([]string(nil), l.Addresses...), l.Foreign...))
			} else if l.Up {
				holds(ln, l.Foreign)
			}
		}
	}
	if found == "-" {
		return ""
	}
	return found
}

// gatewayReached reports whether route wr, to be added in host, goes
// through an interface of the lab there: by its dev:, or by its gateway
// on the subnet of one. If not, it is a conflict: a gateway on no subnet
// is one the kernel cannot reach ("network is unreachable", half-way
// through an apply), and one reached only through someone else's
// interface would make a route the lab could neither tell for its own
// nor remove (outside audits' finds). validate cannot tell in host,
// which has more than the file.
func (d *differ) gatewayReached(w, h *Namespace, wr *Route) bool {
	own := func(ln string) bool {
		l := w.Links[ln]
		return l != nil && l.Owned
	}
	if wr.Dev != "" && !own(wr.Dev) {
		d.conflict(KindRoute, HostNS, wr.Key(), "route %s in namespace host: dev %s is not an interface of the lab: the lab owns routes in host only on its own interfaces", wr.Dst, wr.Dev)
		return false
	}
	if wr.Via == "" || wr.OnLink {
		return true
	}
	gw, err := netip.ParseAddr(wr.Via)
	if err != nil || gw.IsLinkLocalUnicast() && wr.Dev != "" {
		return true
	}
	var have []string
	for _, ln := range sortedKeys(w.Links) {
		if !own(ln) || wr.Dev != "" && ln != wr.Dev {
			continue // with dev:, the gateway must be on its subnet
		}
		for _, a := range w.Links[ln].Addresses {
			if p, err := netip.ParsePrefix(a); err == nil && p.Addr().Is4() == gw.Is4() {
				if p.Masked().Contains(gw) {
					return true
				}
				have = append(have, p.Masked().String())
			}
		}
	}
	foreign := ""
	if h != nil && wr.Dev == "" {
		for _, ln := range sortedKeys(h.Links) {
			if l := h.Links[ln]; !l.Owned && foreign == "" {
				for _, a := range l.Addresses {
					if p, err := netip.ParsePrefix(a); err == nil && p.Masked().Contains(gw) {
						foreign = ln
					}
				}
			}
		}
	}
	if foreign != "" {
		d.conflict(KindRoute, HostNS, wr.Key(), "route %s via %s in namespace host: the gateway is reached through %s, which is not an interface of the lab: the lab owns routes in host only on its own interfaces (give one of them an address on that subnet)",
			wr.Dst, wr.Via, foreign)
		return false
	}
	if wr.Dev != "" {
		d.conflict(KindRoute, HostNS, wr.Key(), "route %s via %s dev %s: the gateway is on no subnet of %s in namespace host (it has %s): give it an address in that subnet, or say onlink: true",
			wr.Dst, wr.Via, wr.Dev, wr.Dev, orNone(strings.Join(slices.Compact(sortedStrings(have)), ", ")))
		return false
	}
	d.conflict(KindRoute, HostNS, wr.Key(), "route %s via %s: the gateway is on no subnet of the lab's interfaces in namespace host (they have %s): give one an address in its subnet",
		wr.Dst, wr.Via, orNone(strings.Join(slices.Compact(sortedStrings(have)), ", ")))
	return false
}

func sortedStrings(s []string) []string {
	sort.Strings(s)
	return s
}

func (d *differ) routes(name string) {
	w := d.want.Namespaces[name]
	h := d.have.NS(name)
	if d.deletedNS[name] || (h != nil && w.Owned && !h.Owned) {
		return
	}
	have := map[string]*Route{}
	going := map[string]bool{} // routes that go with their interface
	if h != nil {
		for k, r := range h.Routes {
			if r.Dev != "" && (d.gone[Ref{name, r.Dev}] || d.fresh[Ref{name, r.Dev}]) {
				going[k] = true
				continue // goes with its interface
			}
			have[k] = r
		}
	}
	for _, k := range sortedKeys(w.Routes) {
		wr := w.Routes[k]
		if !wr.Owned {
			continue
		}
		hr := have[k]
		if name == HostNS && (hr == nil || hr.Via != wr.Via) && !d.gatewayReached(w, h, wr) {
			continue // a conflict: validate cannot tell in host, which has more than the file
		}
		if dev := through(w, wr); dev != "" && w.Links[dev] != nil && !w.Links[dev].Up {
			// Dormant: the kernel holds no route through a down link; it
			// is added when the link comes up. One still through another
			// interface (its gateway's subnet moved to this one) goes:
			// the kernel keeps it where it was (the randomized test).
			if hr != nil && hr.Owned && hr.Dev != "" && hr.Dev != dev {
				if on := d.want.Link(Ref{name, hr.Dev}); on != nil && on.Up {
					d.add(&Change{Action: Delete, Kind: KindRoute, Namespace: name, Name: k, Route: hr.Clone(),
						Why: "its gateway's subnet is on " + dev + " now, which is down: it comes back when " + dev + " is up"})
				}
			}
			delete(have, k)
			continue
		}
		switch {
		case hr != nil && hr.Owned && d.shaken[shake{Ref{name, hr.Dev}, family(wr.Dst)}]:
			dev := through(w, wr)
			if dev == "" {
				dev = hr.Dev
			}
			d.add(&Change{Action: Create, Kind: KindRoute, Namespace: name, Name: k, Route: wr.Clone(), Dev: dev, Readd: true})
		case hr == nil:
			// One of its key that goes with its interface may still be
			// there when this one is added: an interface that goes with
			// its peer's namespace goes when the kernel gets to it, after
			// the namespace's deletion returns (an outside audit: "file
			// exists", every time). It is replaced.
			d.add(&Change{Action: Create, Kind: KindRoute, Namespace: name, Name: k, Route: wr.Clone(), Dev: through(w, wr), Displace: going[k]})
		case !hr.Owned:
			proto := hr.Proto
			if proto == "" {
				proto = "another owner"
			}
			d.conflict(KindRoute, name, k, "route %s in namespace %q already exists and is not owned by this topology (proto %s)", hr, name, proto)
		default:
			var f []Field
			if wr.Via != hr.Via {
				f = append(f, Field{"via", orNone(hr.Via), orNone(wr.Via)})
			}
			if wr.Dev != "" && wr.Dev != hr.Dev {
				f = append(f, Field{"dev", orNone(hr.Dev), wr.Dev})
			}
			if wr.Dev == "" && !wr.OnLink && hr.Dev != "" {
				// The kernel picked the interface when the route was
				// added and keeps it when the gateway's subnet moves to
				// another (an outside audit: an edit swapped two links'
				// subnets; the route stayed on the old one, and plan saw
				// nothing). A replace picks it again.
				if dev := gatewayDev(w, h, wr); dev != "" && dev != hr.Dev {
					f = append(f, Field{"dev", hr.Dev, dev})
				}
			}
			if wr.OnLink != hr.OnLink {
				f = append(f, Field{"onlink", boolStr(hr.OnLink), boolStr(wr.OnLink)})
			}
			if len(f) > 0 {
				d.add(&Change{Action: Update, Kind: KindRoute, Namespace: name, Name: k, Dev: through(w, wr),
					Route: wr.Clone(), OldRoute: hr.Clone(), Fields: f})
			}
		}
	}
	for _, k := range sortedKeys(have) {
		hr := have[k]
		if hr.Owned && w.Routes[k] == nil {
			d.add(&Change{Action: Delete, Kind: KindRoute, Namespace: name, Name: k, Route: hr.Clone()})
		}
	}
}

func (d *differ) sysctls(name string) {
	w := d.want.Namespaces[name]
	h := d.have.NS(name)
	if h != nil && w.Owned && !h.Owned {
		return
	}
	made := h == nil || h.Stale || d.deletedNS[name]
	madeOff := w.Sysctls[IPv6Switch[0]] == "1" && w.Sysctls[IPv6Switch[1]] == "1"
	// The lab's default turns IPv6 off where the file gives no IPv6; not
	// over IPv6 added by hand, which it would take (an outside audit:
	// the last IPv6 address dropped from a file took a hand-added
	// address and route with it). It waits until they are gone.
	keepV6 := false
	if w.IPv6Default && !made && w.Sysctls[IPv6Switch[0]] == "1" && NormaliseSysctl(h.Sysctls[IPv6Switch[0]]) == "0" {
		if held := handIPv6(h); len(held) > 0 {
			keepV6 = true
			d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf("namespace %q keeps IPv6 on: the file gives it no IPv6, but turning IPv6 off would take what was added by hand (%s); the lab turns it off once they are gone (ipv6: true keeps it on)", name, strings.Join(held, ", ")))
		}
	}
	var out []*Change
	for _, k := range sortedKeys(w.Sysctls) {
		v := w.Sysctls[k]
		if keepV6 && contains(IPv6Switch, k) {
			continue
		}
		if name == HostNS && InterfaceSysctl(k) {
			if iface := sysctlIface(k); iface != "lo" && w.Links[iface] == nil && (h == nil || h.Links[iface] == nil) {
				// validate cannot tell in host, which has more than the
				// file (an outside audit: apply failed half-way, ENOENT).
				d.conflict(KindSysctl, HostNS, k, "sysctl %s in namespace host: there is no interface %s there, and the file makes none", k, iface)
				continue
			}
		}
		if made && w.Owned && (FreshSysctls[k] == v || (madeOff && contains(IPv6Switch, k))) {
			continue // a new namespace has it so, or is made so
		}
		old, ok := "", false
		if h != nil {
			old, ok = h.Sysctls[k]
		}
		if InterfaceSysctl(k) && d.fresh[Ref{name, sysctlIface(k)}] {
			// What was read belongs to the interface this plan replaces:
			// the new one starts from the defaults.
			if ok {
				out = append(out, &Change{Action: Create, Kind: KindSysctl, Namespace: name, Name: k, Value: v, Why: "again: its interface is re-created"})
			} else {
				out = append(out, &Change{Action: Create, Kind: KindSysctl, Namespace: name, Name: k, Value: v})
			}
			continue
		}
		switch {
		case !ok:
			out = append(out, &Change{Action: Create, Kind: KindSysctl, Namespace: name, Name: k, Value: v})
		case NormaliseSysctl(old) != v:
			out = append(out, &Change{Action: Update, Kind: KindSysctl, Namespace: name, Name: k, Value: v, OldValue: old})
			if h != nil && (h.SysctlsShared[k] || h.SysctlsShared[SysctlAlias[k]]) {
				// Another lab of the sandbox set it too, to what it has
				// now: each apply would set it back (an outside audit).
				d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf("sysctl %s in namespace %q: another lab of this sandbox sets it too, to %q; the last apply wins", k, name, NormaliseSysctl(old)))
			}
		}
	}
	// A key the lab set that the file no longer sets goes back to what it
	// was before (the kernel's record says what).
	if h != nil && !made {
		// An interface renamed in place keeps its settings: a key of its
		// old name is put back under its new one.
		renamedTo := map[string]string{}
		for ref, c := range d.renamed {
			if ref.NS == name && c.OldName != "" {
				renamedTo[c.OldName] = ref.Name
			}
		}
		// Keys another lab of the sandbox sets, and what it sets: one
		// they rewrite (ip_forward: every interface's forwarding) is that
		// lab's too (an outside audit: a lab letting go of ip_forward put
		// the other's interfaces' forwarding back to 0).
		shared := map[string]bool{}
		for k := range h.SysctlsShared {
			shared[k] = true
			if a := SysctlAlias[k]; a != "" {
				shared[a] = true
			}
		}
		for _, k := range sortedKeys(h.SysctlsBefore) {
			key := k
			if InterfaceSysctl(k) {
				ifname := sysctlIface(k)
				if to, ok := renamedTo[ifname]; ok {
					key = withIface(k, to)
				} else if !d.staysAsIs(Ref{name, ifname}) {
					continue // gone, or a new interface: it starts from the defaults
				}
			}
			if _, wanted := w.Sysctls[key]; wanted || h.SysctlsShared[k] || h.SysctlsShared[SysctlAlias[k]] {
				continue // wanted still, or by another lab here
			}
			if _, wanted := w.Sysctls[SysctlAlias[key]]; wanted {
				// The same kernel value under another name the file sets
				// (an outside audit: ip_forward put back turned off the
				// conf.all.forwarding the file had moved to).
				continue
			}
			if rewrittenBy(key, wantedSources(w)) != "" {
				continue // a key the file sets writes it (ip_forward: every forwarding)
			}
			if rewrittenBy(key, shared) != "" {
				continue // a key another lab here sets writes it
			}
			cur, ok := h.Sysctls[k]
			if before := h.SysctlsBefore[k]; ok && NormaliseSysctl(cur) != NormaliseSysctl(before) {
				out = append(out, &Change{Action: Update, Kind: KindSysctl, Namespace: name, Name: key, Value: NormaliseSysctl(before), OldValue: cur,
					Restore: true, Why: "no longer in the file: back to what it was before the lab set it"})
			}
		}
		// One that a key put back rewrites to its own value anyway (the
		// default's forwarding with ip_forward) needs no write of its own.
		back := map[string]bool{}
		for _, c := range out {
			if c.Restore {
				back[c.Name] = true
			}
		}
		kept := out[:0]
		for _, c := range out {
			if src := rewrittenBy(c.Name, back); c.Restore && src != "" {
				if v := h.SysctlsBefore[src]; NormaliseSysctl(v) == c.Value {
					continue
				}
			}
			kept = append(kept, c)
		}
		out = kept
		// And one it rewrites to another value than the one noted is put
		// back after it, though it has that value now (an outside audit:
		// ip_forward put back to 0 turned off an interface's forwarding
		// that was on before the lab, and apply failed).
		planned := map[string]bool{}
		for _, c := range out {
			planned[c.Name] = true
		}
		for _, k := range sortedKeys(h.SysctlsBefore) {
			src := rewrittenBy(k, back)
			if src == "" || planned[k] || InterfaceSysctl(k) && !d.staysAsIs(Ref{name, sysctlIface(k)}) {
				continue
			}
			if _, wanted := w.Sysctls[k]; wanted || h.SysctlsShared[k] || rewrittenBy(k, shared) != "" {
				continue // the file sets it (set again after src anyway), or another lab does
			}
			before := NormaliseSysctl(h.SysctlsBefore[k])
			if before == NormaliseSysctl(h.SysctlsBefore[src]) {
				continue
			}
			out = append(out, &Change{Action: Update, Kind: KindSysctl, Namespace: name, Name: k, Value: before, OldValue: NormaliseSysctl(h.SysctlsBefore[src]),
				Restore: true, Why: "no longer in the file: back to what it was before the lab set it, after " + src + " rewrites it"})
		}
	}
	// The kernel sets an interface's IPv6 MTU to its MTU whenever that
	// changes, and when the interface comes up (after being down, as a
	// rename takes it): one the file sets is set again after (an outside
	// finding: apply failed, the kernel not matching the file).
	planned := map[string]bool{}
	for _, c := range out {
		planned[c.Name] = true
	}
	// And when IPv6 comes on (an outside audit: apply set the IPv6 MTU a
	// second time, a step the plan had not shown).
	v6On := func(mtuKey string) bool {
		for _, k := range []string{IPv6Switch[0], strings.TrimSuffix(mtuKey, ".mtu") + ".disable_ipv6"} {
			if planned[k] && w.Sysctls[k] == "0" && h != nil && NormaliseSysctl(h.Sysctls[k]) == "1" {
				return true
			}
		}
		return false
	}
	for _, k := range sortedKeys(w.Sysctls) {
		iface, ok := ipv6Iface(k)
		if !ok || !strings.HasSuffix(k, ".mtu") || planned[k] || made {
			continue
		}
		ref := Ref{name, iface}
		if d.fresh[ref] {
			continue
		}
		if v6On(k) {
			out = append(out, &Change{Action: Create, Kind: KindSysctl, Namespace: name, Name: k, Value: w.Sysctls[k],
				Readd: true, Why: fmt.Sprintf("again: IPv6 comes on, and the kernel sets %s's IPv6 MTU to its MTU as it does", iface)})
			continue
		}
		wl := d.want.Link(ref)
		if rn := d.renamed[ref]; rn != nil && wl != nil && wl.Up {
			out = append(out, &Change{Action: Create, Kind: KindSysctl, Namespace: name, Name: k, Value: w.Sysctls[k],
				Readd: true, Why: fmt.Sprintf("again: %s is renamed, down and up, and the kernel sets its IPv6 MTU to its MTU as it comes up", iface)})
			continue
		}
		hl := d.cur(ref)
		if hl == nil {
			continue
		}
		switch m := d.mtuAfter(ref, 0); {
		case m.ok && m.mtu != hl.MTU:
			out = append(out, &Change{Action: Create, Kind: KindSysctl, Namespace: name, Name: k, Value: w.Sysctls[k],
				Readd: true, Why: fmt.Sprintf("again: %s's MTU changes to %d, and the kernel sets its IPv6 MTU with it", iface, m.mtu)})
		case !hl.Up && wl != nil && wl.Up:
			out = append(out, &Change{Action: Create, Kind: KindSysctl, Namespace: name, Name: k, Value: w.Sysctls[k],
				Readd: true, Why: fmt.Sprintf("again: %s comes up, and the kernel sets its IPv6 MTU to its MTU as it does", iface)})
		}
	}
	// The IPv6 switch's "default" acts only on interfaces made after it:
	// where it was changed, an interface made meanwhile (or one whose MTU
	// reached IPv6's minimum in this plan) has IPv6 on. "all" is written
	// again with it: it sets every interface.
	written := map[string]bool{}
	for _, c := range out {
		written[c.Name] = true
	}
	if all, ok := w.Sysctls[IPv6Switch[0]]; ok && written[IPv6Switch[1]] && !written[IPv6Switch[0]] {
		out = append(out, &Change{Action: Create, Kind: KindSysctl, Namespace: name, Name: IPv6Switch[0], Value: all,
			Readd: true, Why: "again: " + IPv6Switch[1] + " was changed, and this sets every interface"})
		written[IPv6Switch[0]] = true
	}
	// Writing some keys rewrites others (ip_forward sets every
	// interface's forwarding, "all" sets "default" and every interface):
	// those the file sets are set again after them.
	for _, k := range sortedKeys(w.Sysctls) {
		if written[k] || (made && w.Owned && FreshSysctls[k] == w.Sysctls[k]) {
			continue
		}
		if by := rewrittenBy(k, written); by != "" {
			out = append(out, &Change{Action: Create, Kind: KindSysctl, Namespace: name, Name: k, Value: w.Sysctls[k],
				Readd: true, Why: "again: writing " + by + " rewrites it"})
		}
	}
	// And those another lab of the sandbox sets, as they are: this lab's
	// write is not to change them (an outside audit: a lab letting
	// ip_forward go turned off the forwarding another lab had set on its
	// bridges, which stopped routing).
	if h != nil {
		for _, k := range sortedKeys(h.SysctlsShared) {
			if _, wanted := w.Sysctls[k]; wanted || written[k] || strings.HasPrefix(k, "@") {
				continue
			}
			by := rewrittenBy(k, written)
			v, ok := h.Sysctls[k]
			if by == "" || !ok || InterfaceSysctl(k) && !d.staysAsIs(Ref{name, sysctlIface(k)}) {
				continue
			}
			out = append(out, &Change{Action: Create, Kind: KindSysctl, Namespace: name, Name: k, Value: NormaliseSysctl(v),
				Readd: true, Why: "again: another lab of this sandbox sets it, and writing " + by + " rewrites it"})
		}
	}
	for _, c := range out {
		d.add(c)
	}
}

// handIPv6 lists the IPv6 of namespace h that nobody's file made: global
// addresses added by hand (on the lab's links, or on links of others) and
// routes of others (not the kernel's, not router advertisements').
func handIPv6(h *Namespace) []string {
	var out []string
	for _, ln := range sortedKeys(h.Links) {
		l := h.Links[ln]
		addrs := l.Foreign
		if !l.Owned {
			addrs = l.Addresses
		}
		for _, a := range addrs {
			if family(a) == 6 && !strings.HasPrefix(strings.ToLower(a), "fe80:") {
				out = append(out, a+" on "+ln)
			}
		}
	}
	for _, k := range sortedKeys(h.Routes) {
		r := h.Routes[k]
		if !r.Owned && family(r.Dst) == 6 && r.Proto != "ra" && r.Proto != "kernel" {
			out = append(out, "route "+r.Dst)
		}
	}
	return append(out, h.HandIPv6...)
}

// withIface is interface sysctl key k for interface ifname instead.
func withIface(k, ifname string) string {
	parts := strings.SplitN(k, ".", 5)
	if len(parts) < 5 {
		return k
	}
	parts[3] = topology.SysctlKeyName(ifname)
	return strings.Join(parts, ".")
}

// staysAsIs reports whether interface ref is there now and is the same
// interface after the plan: not made, replaced, renamed away or into,
// nor deleted (its sysctls are its own, not a new one's).
func (d *differ) staysAsIs(ref Ref) bool {
	hl := d.cur(ref)
	if hl == nil || d.fresh[ref] || d.renamed[ref] != nil {
		return false
	}
	if wl := d.want.Link(ref); wl != nil && wl.Owned {
		return true
	}
	return !hl.Owned // someone else's, which the lab leaves
}

// propagates maps a sysctl to the suffix of the keys a write of it
// rewrites in the kernel: net.ipv4.conf.{default,IF}.forwarding for
// ip_forward, and the like.
var propagates = map[string][2]string{
	"net.ipv4.ip_forward":            {"net.ipv4.conf.", ".forwarding"},
	"net.ipv4.conf.all.forwarding":   {"net.ipv4.conf.", ".forwarding"},
	"net.ipv6.conf.all.forwarding":   {"net.ipv6.conf.", ".forwarding"},
	"net.ipv6.conf.all.disable_ipv6": {"net.ipv6.conf.", ".disable_ipv6"},
}

// SysctlAlias pairs keys that are one value in the kernel: writing one
// writes the other.
var SysctlAlias = map[string]string{
	"net.ipv4.ip_forward":          "net.ipv4.conf.all.forwarding",
	"net.ipv4.conf.all.forwarding": "net.ipv4.ip_forward",
}

// Rewrites lists, for a key whose write rewrites others (ip_forward sets
// every interface's forwarding), the prefix and suffix of those keys;
// ok is false for any other key.
func Rewrites(key string) (prefix, suffix string, ok bool) {
	p, ok := propagates[key]
	return p[0], p[1], ok
}

// rewritable reports a key that some namespace-wide write rewrites.
func rewritable(k string) bool {
	all := map[string]bool{}
	for src := range propagates {
		all[src] = true
	}
	return rewrittenBy(k, all) != ""
}

// wantedSources are the keys w sets whose writes rewrite others.
func wantedSources(w *Namespace) map[string]bool {
	out := map[string]bool{}
	for k := range w.Sysctls {
		if _, ok := propagates[k]; ok {
			out[k] = true
		}
	}
	return out
}

// rewrittenBy names the key among written whose write rewrites k, or "".
func rewrittenBy(k string, written map[string]bool) string {
	for src, p := range propagates {
		if !written[src] || k == src || !strings.HasPrefix(k, p[0]) || !strings.HasSuffix(k, p[1]) {
			continue
		}
		if mid := strings.TrimSuffix(strings.TrimPrefix(k, p[0]), p[1]); mid != "all" && !strings.Contains(mid, ".") {
			return src
		}
	}
	return ""
}

// IPForwardKeys are the sysctls that make a namespace route.
const (
	IPv4Forward = "net.ipv4.ip_forward"
	IPv6Forward = "net.ipv6.conf.all.forwarding"
)

func (d *differ) nat(name string) {
	w := d.want.Namespaces[name]
	h := d.have.NS(name)
	if h != nil && w.Owned && !h.Owned {
		return
	}
	have := map[string]*NATRule{}
	if h != nil {
		have = h.NAT
		if h.NATTableForeign != "" && len(w.NAT) > 0 {
			d.conflict(KindNAT, name, "", "namespace %q: %s", name, h.NATTableForeign)
			return
		}
	}
	// An out: or not_out: that names no interface the namespace has or
	// will have matches nothing (or everything): likely a typo (a new
	// user's audit: masquerade {out: uplnk} said nothing).
	for _, id := range sortedKeys(w.NAT) {
		r := w.NAT[id]
		for _, dev := range []struct{ key, name, means string }{
			{"out", r.Out, "the rule never matches"},
			{"in", r.In, "the rule never matches"},
			{"not_out", r.NotOut, "it excludes nothing: the rule matches whatever interface packets leave by"},
		} {
			if dev.name == "" || strings.ContainsAny(dev.name, "*") || w.Links[dev.name] != nil || (h != nil && h.Links[dev.name] != nil) {
				continue
			}
			d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf("%snat %s in namespace %q: %s: names interface %s, which the namespace has not (a typo?): %s",
				d.want.where(KindNAT, name, id), id, name, dev.key, dev.name, dev.means))
		}
	}
	// A rule is known by its content (its ID, which the kernel's rule
	// carries in its comment, checked against the rule's expressions) and
	// its place: in each chain, the lab's rules must be in the file's order.
	order := w.NATOrder
	if len(order) != len(w.NAT) { // a state built by hand: any order
		order = sortedKeys(w.NAT)
	}
	replaced := map[string]string{}
	var creates []string
	for _, id := range order {
		switch r := have[id]; {
		case r == nil || !r.Owned:
			creates = append(creates, id)
		case r.Drift != "":
			replaced[id] = r.Drift
		}
	}
	if h != nil {
		for _, chain := range NATChainOrder {
			var want, got []string
			for _, id := range order {
				if contains(w.NAT[id].Chains(), chain) {
					want = append(want, id)
				}
			}
			for _, id := range h.NATChains[chain] {
				if w.NAT[id] != nil && replaced[id] == "" && !contains(got, id) {
					got = append(got, id)
				}
			}
			keep := map[string]bool{}
			for _, id := range lcs(want, got) {
				keep[id] = true
			}
			for _, id := range got {
				if !keep[id] {
					replaced[id] = "moved: NAT rules apply in the file's order, first match wins"
				}
			}
		}
	}
	// The table itself changed by hand (its marker, a chain's policy):
	// making a rule again puts it back (an outside audit: a marker deleted
	// by hand stayed gone, and the lab was later locked out).
	if h != nil && h.NATRepair != "" && len(order) > 0 && len(creates) == 0 && len(replaced) == 0 {
		replaced[order[0]] = "the lab's table: " + h.NATRepair
	}
	for _, id := range order {
		switch {
		case contains(creates, id):
			d.add(&Change{Action: Create, Kind: KindNAT, Namespace: name, Name: id, NAT: w.NAT[id]})
		case replaced[id] != "":
			d.add(&Change{Action: Replace, Kind: KindNAT, Namespace: name, Name: id, NAT: w.NAT[id], Why: replaced[id]})
		}
	}
	for _, id := range sortedKeys(have) {
		if r := have[id]; r.Owned && w.NAT[id] == nil {
			d.add(&Change{Action: Delete, Kind: KindNAT, Namespace: name, Name: id, NAT: r})
		}
	}
	if len(creates) > 0 || len(replaced) > 0 {
		if d.plan.NATOrder == nil {
			d.plan.NATOrder = map[string][]string{}
		}
		d.plan.NATOrder[name] = order
	}
	// Rules in the lab's table that are not the lab's.
	if h != nil {
		owned := false
		for _, r := range h.NAT {
			owned = owned || r.Owned
		}
		for _, r := range h.NATStrays {
			switch {
			case len(w.NAT) == 0 && owned:
				// The lab's last rule goes, and its table with it, and so
				// the rules in it (an outside audit: the plan said they
				// stayed).
				d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf(
					"namespace %q: the lab's NAT goes, its table with it, and so does what someone else added to the table (%s)",
					name, r))
			case len(w.NAT) > 0:
				d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf(
					"namespace %q: the lab's NAT holds what the lab did not add (%s); a rule is matched where it sits, before or after the lab's; netplan-lab does not remove it while the lab has NAT here (its table goes with the lab's last rule)",
					name, r))
			}
		}
	}
	if len(w.NAT) == 0 {
		return
	}
	// Forwarding the lab needs and the namespace blocks.
	v4, v6 := false, false
	for _, r := range w.NAT {
		if r.IPv6() {
			v6 = true
		} else {
			v4 = true
		}
	}
	for _, f := range []struct {
		need bool
		key  string
	}{{v4, IPv4Forward}, {v6, IPv6Forward}} {
		if !f.need {
			continue
		}
		val, ok := w.Sysctls[f.key]
		if !ok && h != nil {
			val, ok = h.Sysctls[f.key]
		}
		// What this plan writes there (a key the file dropped, put back):
		// the warning is of the kernel after it (an outside audit: it came
		// only with the next plan).
		for _, c := range d.plan.Changes {
			if c.Kind == KindSysctl && c.Namespace == name && (c.Name == f.key || c.Name == SysctlAlias[f.key]) {
				val, ok = c.Value, true
			}
		}
		if !ok {
			val = "0" // a new namespace starts with forwarding off
		}
		if NormaliseSysctl(val) != "1" {
			d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf(
				"namespace %q has NAT rules but %s is %q: it will not forward the lab's packets; add `%s: \"1\"` under namespaces.%s.sysctls",
				name, f.key, val, f.key, name))
		}
	}
	if h != nil {
		for _, c := range h.ForwardDrop {
			d.plan.Warnings = append(d.plan.Warnings, fmt.Sprintf(
				"namespace %q: %s drops forwarded packets by default (policy drop, as Docker sets): the lab's forwarded traffic needs an accept rule there, or the policy set to accept (iptables --policy FORWARD ACCEPT); netplan-lab does not change chains it does not own",
				name, strings.TrimSuffix(c, ForwardDropNoRules)))
		}
	}
}

// inSubnet is the first of addrs in subnet sub, or "": of a link's
// NoRoute, the primary whose route to the subnet is gone; of its NoLocal,
// the lab's address whose local route is.
func inSubnet(addrs []string, sub string) string {
	for _, a := range addrs {
		if sameSubnet(a, sub) {
			return a
		}
	}
	return ""
}

// localGone is why an address is added again whose local route, or that
// of a's (another of the lab's addresses in its subnet), was deleted.
func localGone(a string) string {
	return "again: the local route of " + strings.SplitN(a, "/", 2)[0] + " (table local) the kernel makes was deleted"
}

// routeGone is why an address is added again whose subnet lost the route
// the kernel made for it.
func routeGone(a string) string {
	return "again: the route to " + subnetOf(a) + " the kernel makes for it was deleted"
}

// subnetOf is the subnet of a CIDR address ("10.0.0.0/24" for
// "10.0.0.2/24"), or the address itself if it does not parse.
func subnetOf(a string) string {
	p, err := netip.ParsePrefix(a)
	if err != nil {
		return a
	}
	return p.Masked().String()
}
