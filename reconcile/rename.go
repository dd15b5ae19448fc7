package reconcile

// Identity of links: which observed link is "the same" as a wanted one.
//
//   - A link is the same when it is the lab's, has the wanted name in the
//     wanted namespace, and the same kind and identity fields (a veth's
//     peer, a child's parent, a VXLAN's VNI and port; identityFields).
//     Everything else about it changes in place.
//   - A veth pair whose ends keep their namespaces but change names is the
//     same pair, renamed in place (`ip link set NAME name NEW`): it keeps
//     its ifindexes and MACs, so the bridge it is a port of, neighbours'
//     ARP caches and the children on it are undisturbed. The kernel renames
//     only a link that is down, so one that is up goes down for a moment:
//     its routes are added again.
//
// Renames are decided first, for the whole plan, and the observed state is
// then read as if the renamed links already had their new names (on a copy:
// Diff does not change its arguments).

// planRenames finds the veth pairs to rename and plans the renames.
func (d *differ) planRenames() {
	var renames [][2]Ref // old, new
	claimed := map[Ref]bool{}
	for _, name := range d.want.SortedNames() {
		w := d.want.Namespaces[name]
		if !w.Owned && name != HostNS {
			continue
		}
		for _, ln := range sortedKeys(w.Links) {
			wl := w.Links[ln]
			ref := Ref{name, ln}
			if !wl.Owned || wl.Kind != KindVeth || wl.Peer == nil || ref.String() > wl.Peer.String() {
				continue
			}
			peer := *wl.Peer
			if d.pairThere(ref, peer) {
				continue
			}
			o1, o2, ok := d.renameCandidate(ref, peer, claimed)
			if !ok || (o1 != ref && d.altName(ref)) || (o2 != peer && d.altName(peer)) {
				continue // a name another interface has as an altname: links() says so
			}
			claimed[o1], claimed[o2] = true, true
			if o1 != ref {
				renames = append(renames, [2]Ref{o1, ref})
			}
			if o2 != peer {
				renames = append(renames, [2]Ref{o2, peer})
			}
		}
	}
	if len(renames) == 0 {
		return
	}
	d.have = d.have.Clone()
	newName := map[Ref]Ref{}
	for _, r := range renames {
		newName[r[0]] = r[1]
	}
	to := func(r Ref) Ref {
		if n, ok := newName[r]; ok {
			return n
		}
		return r
	}
	d.renamed = map[Ref]*Change{}
	for _, r := range renames {
		old, nw := r[0], r[1]
		h := d.have.Namespaces[old.NS]
		hl := h.Links[old.Name]
		c := &Change{Action: Update, Kind: KindLink, Namespace: nw.NS, Name: nw.Name, OldName: old.Name,
			Link: d.want.Link(nw).Clone(), OldLink: hl.Clone(), Fields: []Field{{Name: "name", Old: old.Name, New: nw.Name}}}
		d.add(c)
		d.renamed[nw] = c
		// Read the kernel as if the rename were done. The rename takes the
		// link down for a moment if it is up: its routes go.
		delete(h.Links, old.Name)
		hl.Name = nw.Name
		if hl.Peer != nil {
			p := to(*hl.Peer)
			hl.Peer = &p
		}
		h.Links[nw.Name] = hl
		if hl.Up {
			d.shaken[shake{nw, 4}], d.shaken[shake{nw, 6}] = true, true
			d.bounced = append(d.bounced, nw)
		}
		for _, rt := range h.Routes {
			if rt.Dev == old.Name {
				rt.Dev = nw.Name
			}
		}
	}
	// The other end of a pair renamed on one side records its peer's name.
	for _, r := range renames {
		nw := r[1]
		hl := d.have.Link(nw)
		p := *hl.Peer
		if _, renamedToo := d.renamed[p]; renamedToo {
			continue
		}
		pl := d.have.Link(p)
		if pl == nil {
			continue
		}
		old := "(none)"
		if pl.Peer != nil {
			old = pl.Peer.String()
		}
		pl.Peer = &Ref{nw.NS, nw.Name}
		d.add(&Change{Action: Update, Kind: KindLink, Namespace: p.NS, Name: p.Name,
			Link: d.want.Link(p).Clone(), OldLink: pl.Clone(), Fields: []Field{{Name: "peer", Old: old, New: nw.String()}}})
	}
	// Children record their parent's name; a VXLAN's dev is read by
	// ifindex, so it follows by itself.
	for _, name := range d.have.SortedNames() {
		h := d.have.Namespaces[name]
		for _, ln := range sortedKeys(h.Links) {
			l := h.Links[ln]
			if l.Kind == KindVxlan && l.VXLAN != nil && l.VXLAN.Dev != "" {
				l.VXLAN.Dev = to(Ref{name, l.VXLAN.Dev}).Name
			}
			if l.Parent == nil || !l.Owned {
				continue
			}
			p := to(*l.Parent)
			if p == *l.Parent {
				continue
			}
			wl := d.want.Link(Ref{name, ln})
			if wl == nil || wl.Parent == nil || *wl.Parent != p {
				continue // replaced or deleted anyway
			}
			moved := l.Clone()
			moved.Parent = &p
			if len(identityFields(wl, moved)) > 0 {
				// Replaced anyway (into or out of passthru): an update
				// too had the plan change it after deleting it (an
				// outside audit: "Link not found", every time). It is on
				// the renamed parent meanwhile.
				l.Parent = &p
				continue
			}
			d.add(&Change{Action: Update, Kind: KindLink, Namespace: name, Name: ln,
				Link: wl.Clone(), OldLink: l.Clone(), Fields: []Field{{Name: "parent", Old: l.Parent.String(), New: p.String()}}})
			l.Parent = &p
		}
	}
}

// pairThere reports whether the veth pair ref <-> peer exists as wanted.
func (d *differ) pairThere(ref, peer Ref) bool {
	hl, hp := d.haveLink(ref), d.haveLink(peer)
	return hl != nil && hp != nil && hl.Owned && hp.Owned && hl.Kind == KindVeth && hp.Kind == KindVeth &&
		hl.Peer != nil && *hl.Peer == peer && hp.Peer != nil && *hp.Peer == ref
}

// renameCandidate finds an observed pair of the lab between the same two
// namespaces that the file names no more, whose ends can take the wanted
// names.
func (d *differ) renameCandidate(ref, peer Ref, claimed map[Ref]bool) (Ref, Ref, bool) {
	h := d.have.NS(ref.NS)
	if h == nil || d.deletedNS[ref.NS] || d.deletedNS[peer.NS] {
		return Ref{}, Ref{}, false
	}
	for _, ln := range sortedKeys(h.Links) {
		o1 := Ref{ref.NS, ln}
		l1 := d.haveLink(o1)
		if l1 == nil || !l1.Owned || l1.HalfMade || l1.Kind != KindVeth || l1.Peer == nil || l1.Peer.NS != peer.NS || claimed[o1] {
			continue
		}
		o2 := *l1.Peer
		l2 := d.haveLink(o2)
		if l2 == nil || !l2.Owned || l2.Kind != KindVeth || l2.Peer == nil || *l2.Peer != o1 || claimed[o2] {
			continue
		}
		// Neither end is wanted under its name by anything else.
		if (o1 != ref && d.want.Link(o1) != nil) || (o2 != peer && d.want.Link(o2) != nil) {
			continue
		}
		// The wanted names are free, or are these very ends.
		if (d.haveLink(ref) != nil && ref != o1) || (d.haveLink(peer) != nil && peer != o2) {
			continue
		}
		return o1, o2, true
	}
	return Ref{}, Ref{}, false
}

// altName reports whether r's name is another interface's alternative
// name in r's namespace: the kernel refuses it to a new or renamed link.
func (d *differ) altName(r Ref) bool {
	h := d.have.NS(r.NS)
	return h != nil && h.AltNames[r.Name] != ""
}
