package linux

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// Apply implements reconcile.Kernel: one change, through netlink.
func (k *Kernel) Apply(ctx context.Context, c *reconcile.Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var err error
	switch c.Kind {
	case reconcile.KindNamespace:
		err = k.applyNamespace(c)
	case reconcile.KindLink:
		err = k.applyLink(c)
	case reconcile.KindAddress:
		err = k.applyAddress(c)
	case reconcile.KindRoute:
		err = k.applyRoute(c)
	case reconcile.KindSysctl:
		err = k.applySysctl(c)
	case reconcile.KindImpair:
		err = k.applyImpair(c)
	default:
		err = fmt.Errorf("unknown change kind %q", c.Kind)
	}
	return err
}

func (k *Kernel) opErr(verb, what, name, ns string, err error) error {
	return fmt.Errorf("%s %s %q in netns %q: %w", verb, what, name, k.KernelName(ns), err)
}

func (k *Kernel) applyNamespace(c *reconcile.Change) error {
	name := k.KernelName(c.Namespace)
	switch c.Action {
	case reconcile.Create:
		if c.Namespace == reconcile.HostNS {
			made, err := k.EnsureHost()
			if made {
				k.dropRecord(reconcile.HostNS) // a sandbox made anew
			}
			return err
		}
		k.forget(c.Namespace)
		k.dropRecord(c.Namespace) // a namespace made anew has nothing to go back to
		nh, err := createNamed(name, k.mark, c.IPv6Off)
		if err != nil {
			return fmt.Errorf("create netns %q: %w", name, err)
		}
		k.adopt(c.Namespace, nh)
	case reconcile.Delete:
		k.forget(c.Namespace)
		if err := DeleteNamed(name); err != nil {
			return fmt.Errorf("delete netns %q: %w", name, err)
		}
		k.dropRecord(c.Namespace)
	default:
		return fmt.Errorf("netns %q: cannot %s a namespace", name, c.Action)
	}
	return nil
}

// createMAC is the MAC a new link is made with: the wanted one, else the
// preferred one, else "" (the kernel picks).
func createMAC(l *reconcile.Link) string {
	if l.MAC != "" {
		return l.MAC
	}
	return l.PreferMAC
}

func hwAddr(s string) (net.HardwareAddr, error) {
	if s == "" {
		return nil, nil
	}
	return net.ParseMAC(s)
}

func (k *Kernel) linkByName(h *nsHandle, name, ns string) (netlink.Link, error) {
	l, err := h.h.LinkByName(name)
	if err != nil {
		return nil, k.opErr("find", "link", name, ns, err)
	}
	return l, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

func (k *Kernel) applyLink(c *reconcile.Change) error {
	h, err := k.handle(c.Namespace)
	if err != nil {
		return k.opErr("open", "netns for", c.Name, c.Namespace, err)
	}
	defer k.release(h)
	switch c.Action {
	case reconcile.Delete:
		l, err := h.h.LinkByName(c.Name)
		if isNotFound(err) {
			return nil // already gone (a veth's peer, a namespace's content)
		}
		if err != nil {
			return k.opErr("find", c.Link.Kind, c.Name, c.Namespace, err)
		}
		if !k.ownsLink(l.Attrs(), c.Namespace) {
			return k.opErr("delete", c.Link.Kind, c.Name, c.Namespace, errors.New("it is not owned by this topology"))
		}
		if err := h.h.LinkDel(l); err != nil && !isNotFound(err) {
			return k.opErr("delete", c.Link.Kind, c.Name, c.Namespace, err)
		}
		return nil
	case reconcile.Create:
		return k.createLink(h, c)
	case reconcile.Update:
		name := c.Name
		if c.OldName != "" {
			name = c.OldName // renamed in this step
		}
		l, err := k.linkByName(h, name, c.Namespace)
		if err != nil {
			return err
		}
		// What a rename (down and up) or a MAC change takes with it, of
		// someone else's: put back after.
		var kept *keptOnLink
		for _, f := range c.Fields {
			if f.Name == "name" && l.Attrs().Flags&net.FlagUp != 0 || f.Name == "mac" {
				noted, err := h.keepOnLink(l)
				if err != nil {
					return k.opErr("list what is on", c.Link.Kind, c.Name, c.Namespace, err)
				}
				kept = &noted
				break
			}
		}
		vxlanDone := false
		for _, f := range c.Fields {
			switch f.Name {
			case "remote", "group", "local", "dev":
				if vxlanDone {
					continue // one message sets them all
				}
				vxlanDone = true
			}
			if err := k.updateField(h, l, c, f.Name); err != nil {
				return k.opErr("set "+f.Name+" of", c.Link.Kind, c.Name, c.Namespace, err)
			}
		}
		if kept != nil {
			if err := h.putBackOnLink(l, *kept); err != nil {
				return k.opErr("put back what was added by hand to", c.Link.Kind, c.Name, c.Namespace, err)
			}
		}
		if c.OldName != "" {
			// Its sysctls follow it, and so do the notes of them.
			if err := k.renameNotes(c.Namespace, c.OldName, c.Name); err != nil {
				return k.opErr("move the sysctl notes of", c.Link.Kind, c.Name, c.Namespace, err)
			}
		}
		return nil
	}
	return k.opErr(string(c.Action), "link", c.Name, c.Namespace, errors.New("unsupported action"))
}

func (k *Kernel) updateField(h *nsHandle, l netlink.Link, c *reconcile.Change, field string) error {
	want := c.Link
	switch field {
	case "mtu":
		if want.Kind == reconcile.KindBridge {
			if err := h.setBridgeMTU(l, want.MTU); err != nil {
				return err
			}
			return k.setAliasAttr(h, l, "mtu", "set") // the kernel keeps it now: say so
		}
		return h.h.LinkSetMTU(l, want.MTU)
	case "mac":
		hw, err := hwAddr(want.MAC)
		if err != nil {
			return err
		}
		old := l.Attrs().HardwareAddr
		if err := h.h.LinkSetHardwareAddr(l, hw); err != nil {
			return err
		}
		return h.followLinkLocal(l.Attrs().Index, want.Name, old, hw)
	case "master":
		if want.Master == "" {
			return h.h.LinkSetNoMaster(l)
		}
		m, err := h.h.LinkByName(want.Master)
		if err != nil {
			return fmt.Errorf("bridge %q: %w", want.Master, err)
		}
		return h.h.LinkSetMasterByIndex(l, m.Attrs().Index)
	case "up":
		if want.Up {
			return h.h.LinkSetUp(l)
		}
		return h.h.LinkSetDown(l)
	case "stp":
		return h.setSTP(l.Attrs().Index, want.STP != nil && *want.STP)
	case "name":
		// The kernel renames only a link that is down, and down it drops
		// the routes through it: the lab's are in the plan again, anyone
		// else's are put back here (an outside audit: a route added by
		// hand went with a rename).
		wasUp := l.Attrs().Flags&net.FlagUp != 0
		var others []netlink.Route
		if wasUp {
			var err error
			if others, err = h.othersRoutes(l.Attrs().Index); err != nil {
				return err
			}
			if err := h.h.LinkSetDown(l); err != nil {
				return err
			}
		}
		if err := h.h.LinkSetName(l, want.Name); err != nil {
			return err
		}
		if want.Peer != nil {
			if err := k.setAliasAttr(h, l, "peer", want.Peer.String()); err != nil {
				return err
			}
		}
		if wasUp && want.Up {
			if err := h.h.LinkSetUp(l); err != nil {
				return err
			}
			for _, r := range others {
				if err := h.h.RouteAdd(&r); err != nil && !errors.Is(err, unix.EEXIST) {
					return fmt.Errorf("put back the route %s added by hand through it: %w", r, err)
				}
			}
		}
		return nil
	case "peer":
		return k.setAliasAttr(h, l, "peer", want.Peer.String())
	case "owner":
		return k.disown(h, l, c.Namespace)
	case "parent":
		return k.setAliasAttr(h, l, "parent", want.Parent.String())
	case "mode", "flag":
		var data []*nl.RtAttr
		if want.Kind == reconcile.KindMacvlan {
			data = append(data, nl.NewRtAttr(nl.IFLA_MACVLAN_MODE, nl.Uint32Attr(kernelMacvlanMode[want.Mode])))
		} else {
			data = append(data, nl.NewRtAttr(nl.IFLA_IPVLAN_MODE, nl.Uint16Attr(uint16(ipvlanMode(want.Mode)))),
				nl.NewRtAttr(nl.IFLA_IPVLAN_FLAG, nl.Uint16Attr(uint16(ipvlanFlag(want.Flag)))))
		}
		return h.changeLink(l.Attrs().Index, want.Kind, data)
	case "remote", "group", "local", "dev":
		return h.changeVxlan(l.Attrs().Index, want.VXLAN)
	}
	return fmt.Errorf("%s cannot be changed in place", field)
}

// attrs builds the attributes a new link is created with: name, alias
// (ownership mark), mtu, mac, and its bridge, all in the one RTM_NEWLINK.
func (k *Kernel) attrs(h *nsHandle, l *reconcile.Link) (netlink.LinkAttrs, error) {
	a := netlink.NewLinkAttrs()
	a.Name = l.Name
	a.Group = k.group // the mark that is there from the first moment
	a.MTU = l.MTU
	hw, err := hwAddr(createMAC(l))
	if err != nil {
		return a, err
	}
	a.HardwareAddr = hw
	if l.Master != "" {
		if a.MasterIndex, err = h.linkIndex(l.Master); err != nil {
			return a, fmt.Errorf("bridge %q: %w", l.Master, err)
		}
	}
	return a, nil
}

func (k *Kernel) createLink(h *nsHandle, c *reconcile.Change) error {
	l := c.Link
	fail := func(err error) error { return k.opErr("create", l.Kind, l.Name, c.Namespace, err) }
	// Noted before it exists (NoteBefore notes a plan's links at once;
	// this is for those a rollback or a second pass makes).
	if err := k.noteMaking([]*reconcile.Change{c}); err != nil {
		return fail(fmt.Errorf("note it in the lab's records: %w", err))
	}
	a, err := k.attrs(h, l)
	if err != nil {
		return fail(err)
	}
	var nl netlink.Link
	switch l.Kind {
	case reconcile.KindBridge:
		// A bridge's MTU given at creation follows its ports' as they
		// join; one set afterwards stays (the kernel marks it as set).
		a.MTU = 0
		nl = &netlink.Bridge{LinkAttrs: a}
	case reconcile.KindVeth:
		peerH, err := k.handle(l.Peer.NS)
		if err != nil {
			return fail(fmt.Errorf("peer netns: %w", err))
		}
		defer k.release(peerH)
		var peerMTU int
		var peerMAC net.HardwareAddr
		if p := c.PeerLink; p != nil {
			peerMTU = p.MTU
			if peerMAC, err = hwAddr(createMAC(p)); err != nil {
				return fail(err)
			}
		}
		// This end comes up as it is made; configure marks it, and marks
		// the peer and brings it up.
		index, err := h.addVeth(a, l.Up, l.Peer.Name, peerMTU, peerMAC, peerH.fd)
		if err != nil {
			return fail(err)
		}
		var created netlink.Link = &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.Name, Index: index}}
		if index == 0 { // a kernel that does not echo
			if created, err = h.h.LinkByName(l.Name); err != nil {
				return fail(err)
			}
		}
		if err := k.finishPeer(peerH, c); err != nil {
			return k.cleanup(h, created, err)
		}
		return k.finishLink(h, created, l, c.Namespace)
	case reconcile.KindMacvlan, reconcile.KindIpvlan:
		ph, err := k.handle(l.Parent.NS)
		if err != nil {
			return fail(fmt.Errorf("parent netns: %w", err))
		}
		defer k.release(ph)
		parent, err := ph.h.LinkByName(l.Parent.Name)
		if err != nil {
			return fail(fmt.Errorf("parent %s: %w", l.Parent, err))
		}
		a.ParentIndex = parent.Attrs().Index
		master := a.MasterIndex
		a.MasterIndex = 0
		if l.Parent.NS != c.Namespace {
			// Created next to its parent and moved in the same message.
			a.Namespace = netlink.NsFd(h.fd)
		}
		build := func() error {
			var nl netlink.Link
			if l.Kind == reconcile.KindMacvlan {
				nl = &netlink.Macvlan{LinkAttrs: a, Mode: macvlanMode(l.Mode)}
			} else {
				nl = &netlink.IPVlan{LinkAttrs: a, Mode: ipvlanMode(l.Mode), Flag: ipvlanFlag(l.Flag)}
			}
			if err := ph.h.LinkAdd(nl); err != nil {
				return fail(err)
			}
			created, err := h.h.LinkByName(l.Name)
			if err != nil {
				return fail(err)
			}
			if master != 0 {
				if err := h.h.LinkSetMasterByIndex(created, master); err != nil {
					return k.cleanup(h, created, fail(err))
				}
			}
			return k.finishLink(h, created, l, c.Namespace)
		}
		err = build()
		if errors.Is(err, unix.EINVAL) && l.Kind == reconcile.KindMacvlan && l.Mode == "passthru" && k.removeOrphan(l, a.ParentIndex) {
			return build() // its parent was held by a passthru orphan of a namespace deleted by hand
		}
		if errors.Is(err, unix.EADDRINUSE) && l.Kind == reconcile.KindMacvlan && l.MAC != "" {
			if !k.removeOrphan(l, a.ParentIndex) {
				return fmt.Errorf("%w (its MAC %s is taken on %s: by another macvlan there, or by this lab's own in a namespace deleted by hand that a socket, a thread or a mount still holds; it goes when that does)", err, l.MAC, l.Parent)
			}
			err = build() // its MAC was held by an orphan of a namespace deleted by hand
		}
		return err
	case reconcile.KindVxlan:
		x := l.VXLAN
		v := &netlink.Vxlan{LinkAttrs: a, VxlanId: x.VNI, Port: x.Port, Learning: true}
		if x.Remote != "" {
			v.Group = net.ParseIP(x.Remote)
		}
		if x.Group != "" {
			v.Group = net.ParseIP(x.Group)
		}
		if x.Local != "" {
			v.SrcAddr = net.ParseIP(x.Local)
		}
		if x.Dev != "" {
			d, err := h.h.LinkByName(x.Dev)
			if err != nil {
				return fail(fmt.Errorf("underlay dev %q: %w", x.Dev, err))
			}
			v.VtepDevIndex = d.Attrs().Index
		}
		nl = v
	default:
		return fail(fmt.Errorf("unknown kind %q", l.Kind))
	}
	if nl != nil {
		if err := h.h.LinkAdd(nl); err != nil {
			return fail(err)
		}
	}
	created, err := h.h.LinkByName(l.Name)
	if err != nil {
		return fail(err)
	}
	if l.Kind == reconcile.KindBridge && l.MTU != 0 {
		if err := h.setBridgeMTU(created, l.MTU); err != nil {
			return k.cleanup(h, created, fail(fmt.Errorf("set mtu: %w", err)))
		}
	}
	if l.Kind == reconcile.KindBridge && l.STP != nil && *l.STP {
		if err := h.setSTP(created.Attrs().Index, true); err != nil {
			return k.cleanup(h, created, fail(fmt.Errorf("enable stp: %w", err)))
		}
	}
	return k.finishLink(h, created, l, c.Namespace)
}

// cleanup removes a link this step half-made, so a failed step leaves
// nothing behind, and returns err.
func (k *Kernel) cleanup(h *nsHandle, l netlink.Link, err error) error {
	_ = h.h.LinkDel(l)
	return err
}

// finishLink marks the link as owned (the kernel ignores IFLA_IFALIAS in
// RTM_NEWLINK), adds its addresses and brings it up.
func (k *Kernel) finishLink(h *nsHandle, l netlink.Link, want *reconcile.Link, ns string) error {
	if err := h.configure(l.Attrs().Index, "", k.linkAlias(want), 0, want.Up); err != nil {
		return k.cleanup(h, l, k.opErr("mark and set up", want.Kind, want.Name, ns, err))
	}
	for _, a := range want.Addresses {
		if err := addAddr(h, l, a); err != nil {
			return k.cleanup(h, l, k.opErr("add address "+a+" to", want.Kind, want.Name, ns, err))
		}
	}
	return nil
}

// wantedPeer is the other end of the veth a change makes, as it is to be:
// the change's PeerLink (or a plain end that is up), naming this end as
// its peer.
func wantedPeer(c *reconcile.Change) *reconcile.Link {
	p := c.PeerLink
	if p == nil {
		p = &reconcile.Link{Name: c.Link.Peer.Name, Kind: reconcile.KindVeth, Up: true}
	}
	p = p.Clone()
	p.Peer = &reconcile.Ref{NS: c.Namespace, Name: c.Link.Name}
	return p
}

// finishPeer configures the other end of a new veth in its namespace.
func (k *Kernel) finishPeer(ph *nsHandle, c *reconcile.Change) error {
	p, ref := wantedPeer(c), *c.Link.Peer
	master := 0
	if p.Master != "" {
		var err error
		if master, err = ph.linkIndex(p.Master); err != nil {
			return k.opErr("attach to bridge "+p.Master+":", "veth", ref.Name, ref.NS, err)
		}
	}
	// By name: the index is needed only for addresses.
	if err := ph.configure(0, ref.Name, k.linkAlias(p), master, p.Up); err != nil {
		what := "mark and set up"
		if master != 0 {
			what = "mark, attach to bridge " + p.Master + " and set up"
		}
		return k.opErr(what, "veth", ref.Name, ref.NS, err)
	}
	if len(p.Addresses) == 0 {
		return nil
	}
	index, err := ph.linkIndex(ref.Name)
	if err != nil {
		return k.opErr("find veth peer", "link", ref.Name, ref.NS, err)
	}
	l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ref.Name, Index: index}}
	for _, a := range p.Addresses {
		if err := addAddr(ph, l, a); err != nil {
			return k.opErr("add address "+a+" to", "veth", ref.Name, ref.NS, err)
		}
	}
	return nil
}

func parseAddr(cidr string) (*netlink.Addr, error) {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, err
	}
	n.IP = ip
	a := &netlink.Addr{IPNet: n}
	if ip.To4() == nil {
		a.Flags = unix.IFA_F_NODAD // a lab wants its IPv6 addresses usable at once
	}
	return a, nil
}

func addAddr(h *nsHandle, l netlink.Link, cidr string) error {
	a, err := parseAddr(cidr)
	if err != nil {
		return err
	}
	err = h.h.AddrAdd(l, a)
	if errors.Is(err, unix.EACCES) && a.IP.To4() == nil {
		// The kernel's answer to an IPv6 address on an interface whose
		// IPv6 is off, by its own switch (the namespace's is the lab's).
		return fmt.Errorf("%w: IPv6 is off on this interface (net.ipv6.conf.%s.disable_ipv6 is 1)", err, topology.SysctlKeyName(l.Attrs().Name))
	}
	if errors.Is(err, unix.EINVAL) && a.IP.To4() == nil {
		// The kernel's answer to an IPv6 address on an interface with an
		// MTU under IPv6's minimum: validate refuses that where the file
		// sets the MTU; a macvlan, ipvlan or VXLAN without mtu: takes its
		// parent's, which only the kernel knows.
		if now, lerr := h.h.LinkByIndex(l.Attrs().Index); lerr == nil && now.Attrs().MTU < 1280 {
			return fmt.Errorf("%w: its MTU is %d, under IPv6's minimum of 1280 (an interface without mtu: in the file takes its parent's or its dev's)", err, now.Attrs().MTU)
		}
	}
	return err
}

func (k *Kernel) applyAddress(c *reconcile.Change) error {
	h, err := k.handle(c.Namespace)
	if err != nil {
		return k.opErr("open", "netns for", c.Dev, c.Namespace, err)
	}
	defer k.release(h)
	l, err := k.linkByName(h, c.Dev, c.Namespace)
	if err != nil {
		return err
	}
	a, err := parseAddr(c.Name)
	if err != nil {
		return err
	}
	// The link's alias records the addresses the lab added: recorded
	// before an address is added and forgotten after it is deleted, so a
	// kill in between leaves at most a record of an address that is not
	// there, never an address of ours that looks foreign.
	switch c.Action {
	case reconcile.Create:
		if err := k.recordAddr(h, l, c.Name, true); err != nil {
			return k.opErr("record address "+c.Name+" of", "link", c.Dev, c.Namespace, err)
		}
		// An address that is already there (added by hand exactly as the
		// file wants it) is adopted.
		if err := addAddr(h, l, c.Name); err != nil && !errors.Is(err, unix.EEXIST) {
			return k.opErr("add address "+c.Name+" to", "link", c.Dev, c.Namespace, err)
		}
		if err := k.putBackSrcRoutes(h, c.Namespace, a.IP); err != nil {
			return k.opErr("add address "+c.Name+" to", "link", c.Dev, c.Namespace, err)
		}
	case reconcile.Delete:
		if err := k.keepSrcRoutes(h, c.Namespace, a.IP); err != nil {
			return k.opErr("delete address "+c.Name+" from", "link", c.Dev, c.Namespace, err)
		}
		// Gone already is done: EADDRNOTAVAIL, or ENXIO for an IPv6
		// address of a link whose MTU this plan took under 1280 (the
		// kernel drops IPv6 from it whole; an outside audit's find).
		if err := h.h.AddrDel(l, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !(errors.Is(err, unix.ENXIO) && a.IP.To4() == nil) {
			return k.opErr("delete address "+c.Name+" from", "link", c.Dev, c.Namespace, err)
		}
		if err := k.recordAddr(h, l, c.Name, false); err != nil {
			return k.opErr("forget address "+c.Name+" of", "link", c.Dev, c.Namespace, err)
		}
	}
	return nil
}

// setBridgeMTU sets a bridge's MTU so that the kernel keeps it: a bridge
// follows its ports' MTUs until its own is changed, and setting the value
// it already has changes nothing (not even that), so an equal one is set by
// way of one byte more. More, not less: a macvlan or ipvlan on the bridge
// shrinks with it and does not grow back (the differential test's seed
// 1795389297255801011 found its child left at 1399 by a bridge set to the
// 1400 it had), and under 1280 the bridge would lose its IPv6 addresses.
// A bridge may be set above its ports. At 65535, the most a bridge takes,
// there is no byte more, and a byte less would shrink its macvlans (an
// outside audit's): the MTU is left as it is, following its ports, which
// at that MTU can only take it down, and the next plan shows that and
// sets it again.
func (h *nsHandle) setBridgeMTU(l netlink.Link, mtu int) error {
	cur, err := h.h.LinkByIndex(l.Attrs().Index)
	if err != nil {
		return err
	}
	if cur.Attrs().MTU == mtu {
		if mtu >= 65535 {
			return nil
		}
		if err := h.h.LinkSetMTU(l, mtu+1); err != nil {
			return err
		}
	}
	return h.h.LinkSetMTU(l, mtu)
}

// disown leaves a link of the lab to whoever put addresses of their own on
// it: the lab's addresses go, then its mark: the link group first, then
// the alias. A kill between the two leaves the alias, so the link is still
// the lab's, whole, and the next run disowns it again; the other order left
// an empty alias in the lab's group, which reads as a link half-made by a
// killed run, and the next apply replaced it, taking the addresses it was
// kept for (an outside audit).
func (k *Kernel) disown(h *nsHandle, l netlink.Link, short string) error {
	owned, attrs := k.ownedAlias(l.Attrs().Alias)
	if !owned && !k.halfMade(l.Attrs(), short) {
		return errors.New("it is not marked as this lab's")
	}
	tags := map[string]bool{}
	for _, t := range strings.Split(attrs["a"], ",") {
		tags[t] = true
	}
	addrs, err := h.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		ones, _ := a.Mask.Size()
		if tags[addrTag(fmt.Sprintf("%s/%d", canonIP(a.IP), ones))] {
			if err := h.h.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return err
			}
		}
	}
	if err := h.h.LinkSetGroup(l, 0); err != nil {
		return err
	}
	if err := disownBetween(); err != nil {
		return err
	}
	return h.h.LinkSetAlias(l, "")
}

// disownBetween runs between disown's two writes: a test stops there, as
// a kill would.
var disownBetween = func() error { return nil }

// othersRoutes lists the routes through link index that neither the
// kernel nor the lab made (added by hand, by a routing daemon), in every
// table.
func (h *nsHandle) othersRoutes(index int) ([]netlink.Route, error) {
	all, err := h.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list the routes through it: %w", err)
	}
	through := func(r netlink.Route) bool {
		if r.LinkIndex == index {
			return true
		}
		for _, nh := range r.MultiPath { // ip route add ... nexthop ... nexthop
			if nh.LinkIndex == index {
				return true
			}
		}
		return false
	}
	var out []netlink.Route
	for _, r := range all {
		switch {
		case !through(r), r.Protocol == unix.RTPROT_KERNEL, r.Protocol == RouteProtocol, r.Protocol == unix.RTPROT_RA, r.Type != unix.RTN_UNICAST:
		default:
			out = append(out, r)
		}
	}
	return out, nil
}

// setAliasAttr rewrites one attribute of a link's mark.
func (k *Kernel) setAliasAttr(h *nsHandle, l netlink.Link, key, v string) error {
	alias := withAttr(l.Attrs().Alias, key, v)
	if err := h.h.LinkSetAlias(l, alias); err != nil {
		return err
	}
	l.Attrs().Alias = alias
	return nil
}

// recordAddr adds (or removes) an address's tag in its link's alias.
func (k *Kernel) recordAddr(h *nsHandle, l netlink.Link, cidr string, add bool) error {
	alias := l.Attrs().Alias
	owned, attrs := k.ownedAlias(alias)
	if !owned {
		return errors.New("the link is not marked as this lab's")
	}
	tags := map[string]bool{}
	for _, t := range strings.Split(attrs["a"], ",") {
		if t != "" {
			tags[t] = true
		}
	}
	tag := addrTag(cidr)
	if tags[tag] == add {
		return nil
	}
	if add {
		tags[tag] = true
	} else {
		delete(tags, tag)
	}
	next := withAttr(alias, "a", joinSet(tags))
	if len(next) > maxAlias {
		return fmt.Errorf("the alias that records it would be %d bytes, over the kernel's %d", len(next), maxAlias)
	}
	if err := h.h.LinkSetAlias(l, next); err != nil {
		return err
	}
	l.Attrs().Alias = next
	return nil
}

func (k *Kernel) netlinkRoute(h *nsHandle, r *reconcile.Route) (*netlink.Route, error) {
	_, dst, err := net.ParseCIDR(r.Dst)
	if err != nil {
		return nil, err
	}
	nr := &netlink.Route{Dst: dst, Priority: r.Metric, Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}
	if dst.IP.To4() != nil {
		nr.Family = unix.AF_INET
	} else {
		nr.Family = unix.AF_INET6
	}
	if r.Via != "" {
		nr.Gw = net.ParseIP(r.Via)
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	if r.Dev != "" {
		l, err := h.h.LinkByName(r.Dev)
		if err != nil {
			return nil, fmt.Errorf("dev %q: %w", r.Dev, err)
		}
		nr.LinkIndex = l.Attrs().Index
	}
	return nr, nil
}

func (k *Kernel) applyRoute(c *reconcile.Change) error {
	h, err := k.handle(c.Namespace)
	if err != nil {
		return k.opErr("open", "netns for route", c.Name, c.Namespace, err)
	}
	defer k.release(h)
	nr, err := k.netlinkRoute(h, c.Route)
	if err != nil {
		return k.opErr("build", "route", c.Route.String(), c.Namespace, err)
	}
	switch c.Action {
	case reconcile.Create:
		if c.Readd || c.Displace {
			err = h.h.RouteReplace(nr)
		} else {
			err = h.h.RouteAdd(nr)
		}
	case reconcile.Update:
		err = h.h.RouteReplace(nr)
	case reconcile.Delete:
		// Matched by destination, metric, table and protocol, of any
		// scope: an IPv4 delete matches only routes of the scope it
		// names, and a route with dev: alone has scope link (an outside
		// audit: it stayed, and ESRCH read as "gone already").
		nr.Gw, nr.LinkIndex, nr.Scope = nil, 0, netlink.SCOPE_NOWHERE
		if nr.Family == unix.AF_INET && nr.Priority == 0 {
			// IPv4 reads metric 0 in a delete as any metric: with the
			// route gone already (the kernel dropped it with an address
			// or a link going down), it took the one of another metric
			// that this plan had just added in its place (an outside
			// audit). Deleted only if it is there.
			there, lerr := h.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: nr.Dst, Table: nr.Table, Protocol: nr.Protocol},
				netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
			if lerr != nil {
				return k.opErr("list", "route", c.Route.String(), c.Namespace, lerr)
			}
			if !slices.ContainsFunc(there, func(r netlink.Route) bool { return r.Priority == 0 }) {
				return nil
			}
		}
		err = h.h.RouteDel(nr)
		if errors.Is(err, unix.ESRCH) {
			err = nil
		}
	}
	if err != nil {
		verb := map[reconcile.Action]string{reconcile.Create: "add", reconcile.Update: "replace", reconcile.Delete: "delete"}[c.Action]
		return k.opErr(verb, "route", c.Route.String(), c.Namespace, err)
	}
	return nil
}

func (k *Kernel) applySysctl(c *reconcile.Change) error {
	h, err := k.handle(c.Namespace)
	if err != nil {
		return k.opErr("open", "netns for sysctl", c.Name, c.Namespace, err)
	}
	defer k.release(h)
	k.recMu.Lock()
	_, noted := k.readRecord(c.Namespace)[c.Name]
	k.recMu.Unlock()
	if err := k.recordBefore(h, c); err != nil {
		return k.opErr("note the value before setting", "sysctl", c.Name, c.Namespace, err)
	}
	if err := writeSysctl(h.fd, c.Name, c.Value); err != nil {
		if errors.Is(err, os.ErrNotExist) && c.Value == "1" && slices.Contains(reconcile.IPv6Switch, c.Name) {
			return nil // a kernel without IPv6: it is off already
		}
		if !noted && !c.Restore {
			// Never written: no note of what it was before.
			_ = k.forgetBefore(c.Namespace, c.Name)
		}
		return k.opErr("set", "sysctl", c.Name, c.Namespace, err)
	}
	if c.Restore {
		if err := k.forgetBefore(c.Namespace, c.Name); err != nil {
			return k.opErr("forget the value before", "sysctl", c.Name, c.Namespace, err)
		}
	}
	return nil
}

// kernelMacvlanMode is IFLA_MACVLAN_MODE as the kernel numbers it (the
// netlink library's MacvlanMode is an index of its own).
var kernelMacvlanMode = map[string]uint32{
	"private": nl.MACVLAN_MODE_PRIVATE, "vepa": nl.MACVLAN_MODE_VEPA, "bridge": nl.MACVLAN_MODE_BRIDGE,
	"passthru": nl.MACVLAN_MODE_PASSTHRU, "source": nl.MACVLAN_MODE_SOURCE,
}

func macvlanMode(s string) netlink.MacvlanMode {
	for m, name := range macvlanModes {
		if name == s {
			return m
		}
	}
	return netlink.MACVLAN_MODE_BRIDGE
}

func ipvlanMode(s string) netlink.IPVlanMode {
	for m, name := range ipvlanModes {
		if name == s {
			return m
		}
	}
	return netlink.IPVLAN_MODE_L2
}

func ipvlanFlag(s string) netlink.IPVlanFlag {
	for m, name := range ipvlanFlags {
		if name == s {
			return m
		}
	}
	return netlink.IPVLAN_FLAG_BRIDGE
}

// kernelOption names the config option that provides a link kind.
var kernelOption = map[string]string{
	reconcile.KindBridge:  "CONFIG_BRIDGE",
	reconcile.KindVeth:    "CONFIG_VETH",
	reconcile.KindMacvlan: "CONFIG_MACVLAN",
	reconcile.KindIpvlan:  "CONFIG_IPVLAN",
	reconcile.KindVxlan:   "CONFIG_VXLAN",
	"nat":                 "CONFIG_NF_TABLES, CONFIG_NF_TABLES_INET, CONFIG_NFT_NAT, CONFIG_NFT_MASQ and CONFIG_NFT_FIB_INET",
	"netem":               "CONFIG_NET_SCH_NETEM",
	"tbf":                 "CONFIG_NET_SCH_TBF",
}

// Preflight implements reconcile.Kernel: before anything changes, it checks
// that the kernel can make every kind of link the plan creates, by making
// one in a throwaway namespace that vanishes when its last handle closes.
func (k *Kernel) Preflight(ctx context.Context, p *reconcile.Plan) error {
	for _, c := range p.Changes {
		if c.Kind == reconcile.KindNAT && c.Action == reconcile.Create {
			if err := k.probe("nat"); err != nil {
				return &UnsupportedError{Namespace: c.Namespace, NAT: true,
					Msg: fmt.Sprintf("this kernel cannot do NAT with nftables (it needs %s): %v; nothing was changed", kernelOption["nat"], err)}
			}
			break
		}
	}
	for _, c := range p.Changes {
		if c.Kind != reconcile.KindImpair || c.Action == reconcile.Delete {
			continue
		}
		q := c.Link.Impair.Qdisc()
		if err := k.probe(q); err != nil {
			what := "limit the rate of a link (impair: rate)"
			if q == "netem" {
				what = "delay, drop, duplicate, reorder or corrupt packets (impair: delay, jitter, loss, duplicate, reorder, corrupt)"
			}
			return &UnsupportedError{Namespace: c.Namespace, Name: c.Name, Impair: true, Qdisc: q,
				Msg: fmt.Sprintf("this kernel cannot %s: it needs %s (impair on %s in netns %q; the kernel said: %v); nothing was changed",
					what, kernelOption[q], c.Name, c.Namespace, err)}
		}
	}
	if err := k.checkAliases(p); err != nil {
		return err
	}
	if err := k.checkHostVxlanIPv6(p); err != nil {
		return err
	}
	for _, c := range p.Changes {
		if c.Kind != reconcile.KindLink || c.Action == reconcile.Delete {
			continue
		}
		kind := c.Link.Kind
		if err := k.probe(kind); err != nil {
			return &UnsupportedError{Namespace: c.Namespace, Name: c.Name,
				Msg: fmt.Sprintf("this kernel cannot create %s interfaces (it needs %s; the kernel said: %v); nothing was changed",
					kind, kernelOption[kind], err)}
		}
	}
	return nil
}

// checkHostVxlanIPv6 finds, before anything changes, a VXLAN to make in
// host with an IPv6 remote, group or local address over a dev on which
// IPv6 is off: the kernel refuses it (EPERM, "IPv6 support disabled by
// administrator"). In the lab's namespaces the plan turns IPv6 on where a
// VXLAN needs it; host's it never switches. The dev's own value is read
// where the dev exists, else "default", which a new one starts with; a
// plan that sets one of those itself (sysctls: under host) is left to the
// kernel.
func (k *Kernel) checkHostVxlanIPv6(p *reconcile.Plan) error {
	sets := map[string]bool{}
	for _, c := range p.Changes {
		if c.Namespace == reconcile.HostNS && c.Kind == reconcile.KindSysctl {
			sets[c.Name] = true
		}
	}
	for _, c := range p.Changes {
		if c.Kind != reconcile.KindLink || c.Action == reconcile.Delete || c.Namespace != reconcile.HostNS || c.Link.VXLAN == nil {
			continue
		}
		x := c.Link.VXLAN
		var ip net.IP
		for _, s := range []string{x.Remote, x.Group, x.Local} {
			if a := net.ParseIP(s); a != nil && a.To4() == nil {
				ip = a
			}
		}
		if x.Dev == "" || ip == nil {
			continue
		}
		own, dflt := "net.ipv6.conf."+topology.SysctlKeyName(x.Dev)+".disable_ipv6", "net.ipv6.conf.default.disable_ipv6"
		if sets[own] || sets[dflt] || sets["net.ipv6.conf.all.disable_ipv6"] {
			continue
		}
		// The dev's own value from the link list, else "default".
		key, v := own, -1
		if off, ok := k.hostDisableIPv6(x.Dev); ok {
			v = off
		} else if sc, err := k.ReadSysctls(reconcile.HostNS, []string{dflt}); err == nil {
			key = dflt // the dev is still to be made
			if n, err := strconv.Atoi(strings.TrimSpace(sc[dflt])); err == nil {
				v = n
			}
		}
		if v <= 0 {
			continue
		}
		return fmt.Errorf("vxlan %q in netns %q: its address %s is IPv6, but IPv6 is off on its dev %q there (%s is %d), and the lab never switches IPv6 in host: turn it on there first, or use IPv4; nothing was changed",
			c.Name, k.KernelName(reconcile.HostNS), ip, x.Dev, key, v)
	}
	return nil
}

// hostDisableIPv6 is interface name's disable_ipv6 in host, from the link
// list; false where there is no such interface (or its value is not
// reported).
func (k *Kernel) hostDisableIPv6(name string) (int, bool) {
	h, err := k.handle(reconcile.HostNS)
	if err != nil {
		return 0, false
	}
	defer k.release(h)
	links, err := h.linkDump()
	if err != nil {
		return 0, false
	}
	for _, d := range links {
		if d.link.Attrs().Name == name && d.disableIPv6 >= 0 {
			return d.disableIPv6, true
		}
	}
	return 0, false
}

// checkAliases finds, before anything changes, an interface whose
// record of ownership (its alias: the lab's mark, its peer or parent, one
// tag per address) would not fit in the kernel's 255 bytes, new or with
// the addresses it holds at once while the plan runs; the kernel would
// refuse it half-way through the apply (ERANGE).
func (k *Kernel) checkAliases(p *reconcile.Plan) error {
	check := func(ns string, l *reconcile.Link) error {
		if a := k.linkAlias(l); len(a) > maxAlias {
			return &UnsupportedError{Namespace: ns, Name: l.Name,
				Msg: fmt.Sprintf("interface %s in netns %q: the alias that marks it as the lab's (the lab's name, sandbox and prefix, its peer or parent, a tag per address: %d addresses here) would be %d bytes, over the kernel's %d; give it fewer addresses or use shorter names; nothing was changed",
					l.Name, k.KernelName(ns), len(l.Addresses), len(a), maxAlias)}
		}
		return nil
	}
	seen := map[reconcile.Ref]bool{}
	for _, c := range p.Changes {
		if c.Kind == reconcile.KindAddress && c.Peak != nil && !seen[reconcile.Ref{NS: c.Namespace, Name: c.Dev}] {
			// Addresses added to a link that stays: all it holds at once.
			seen[reconcile.Ref{NS: c.Namespace, Name: c.Dev}] = true
			if err := check(c.Namespace, c.Peak); err != nil {
				return err
			}
			continue
		}
		if c.Kind != reconcile.KindLink || c.Action == reconcile.Delete || c.Link == nil {
			continue
		}
		if err := check(c.Namespace, c.Link); err != nil {
			return err
		}
		if c.Link.Kind == reconcile.KindVeth && c.Link.Peer != nil {
			if err := check(c.Link.Peer.NS, wantedPeer(c)); err != nil {
				return err
			}
		}
	}
	return nil
}

// UnsupportedError is something a plan needs that this kernel lacks,
// found before anything changed, with the object that needs it.
type UnsupportedError struct {
	Msg       string
	Namespace string
	Name      string // the interface (to make, or to impair)
	Impair    bool
	Qdisc     string // with Impair: the qdisc it lacks
	NAT       bool
}

func (e *UnsupportedError) Error() string { return e.Msg }

func (k *Kernel) probe(kind string) error {
	k.mu.Lock()
	if err, ok := k.probed[kind]; ok {
		k.mu.Unlock()
		return err
	}
	k.mu.Unlock()
	err := probeKind(kind)
	k.mu.Lock()
	k.probed[kind] = err
	k.mu.Unlock()
	return err
}

func probeKind(kind string) error {
	if kind == "nat" {
		return probeNAT()
	}
	var fd netns.NsHandle
	err := inNetnsNew(func(f netns.NsHandle) { fd = f })
	if err != nil {
		return fmt.Errorf("probe namespace: %w", err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	if kind == "netem" || kind == "tbf" {
		return probeQdisc(h, kind)
	}
	a := netlink.NewLinkAttrs()
	a.Name = "probe0"
	var l netlink.Link
	switch kind {
	case reconcile.KindBridge:
		l = &netlink.Bridge{LinkAttrs: a}
	case reconcile.KindVeth:
		l = &netlink.Veth{LinkAttrs: a, PeerName: "probe1"}
	case reconcile.KindVxlan:
		l = &netlink.Vxlan{LinkAttrs: a, VxlanId: 1, Port: 4789}
	case reconcile.KindMacvlan, reconcile.KindIpvlan:
		// A child needs a parent: a veth end (itself probed first).
		pa := netlink.NewLinkAttrs()
		pa.Name = "probep"
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: pa, PeerName: "probeq"}); err != nil {
			return fmt.Errorf("veth parent: %w", err)
		}
		parent, err := h.LinkByName("probep")
		if err != nil {
			return err
		}
		a.ParentIndex = parent.Attrs().Index
		if kind == reconcile.KindMacvlan {
			l = &netlink.Macvlan{LinkAttrs: a, Mode: netlink.MACVLAN_MODE_BRIDGE}
		} else {
			l = &netlink.IPVlan{LinkAttrs: a, Mode: netlink.IPVLAN_MODE_L2}
		}
	default:
		return fmt.Errorf("unknown kind %q", kind)
	}
	return h.LinkAdd(l)
}

// Probe reports whether this kernel can create links of kind ("bridge",
// "veth", "macvlan", "ipvlan", "vxlan") or do NAT ("nat"), by trying in a
// throwaway namespace.
func Probe(kind string) error { return probeKind(kind) }
