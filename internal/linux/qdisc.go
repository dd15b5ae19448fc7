package linux

import (
	"errors"
	"fmt"
	"math"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// An impairment is the lab's root qdisc on an interface: netem, or tbf for
// a rate alone. Its handle says it is the lab's (the interface carries the
// lab's mark already): 4e50: for netem, 4e51: for tbf. Two handles, because
// the kernel changes a qdisc in place only as the same kind under the same
// handle; a new kind under a new handle replaces the old one at the root in
// one message (the interface is kept).
const (
	handleNetem = 0x4e50 << 16
	handleTbf   = 0x4e51 << 16
	// qdiscAttr in an interface's mark says the lab put a qdisc on it, so
	// Observe reads the namespace's qdiscs even when the file has none
	// (to remove it).
	qdiscAttr = "q"
	// tbfCell is the bytes a packet of `limit:` counts for in tbf, whose
	// queue is in bytes: a full Ethernet frame.
	tbfCell = 1514
)

func ourHandle(h uint32) bool { return h == handleNetem || h == handleTbf }

// tbfCellFor is the largest frame an interface of MTU mtu sends: its
// MTU and an Ethernet header, 1514 at least (a limit of N packets is N
// such frames).
func tbfCellFor(mtu int) uint64 { return uint64(max(tbfCell, mtu+14)) }

// tbfBurst is the bucket: 10 ms at the rate, and at least two frames
// (tbf drops a packet bigger than its bucket: an outside audit saw every
// full-size packet of a 9000-byte MTU link dropped).
func tbfBurst(rateBytes, cell uint64) uint32 {
	b := max(rateBytes/100, 2*cell)
	if b > math.MaxUint32/2 {
		b = math.MaxUint32 / 2
	}
	return uint32(b)
}

// tbfDefaultLimit is the queue when the file gives no limit: 100 ms at the
// rate on top of the bucket, never a whole number of frames (a limit the
// file gives is one, so the two cannot be mistaken when read back).
func tbfDefaultLimit(rateBytes, cell uint64) uint32 {
	l := rateBytes/10 + uint64(tbfBurst(rateBytes, cell))
	if l > math.MaxUint32-1 {
		l = math.MaxUint32 - 1
	}
	if l%cell == 0 {
		l++
	}
	return uint32(l)
}

// qdiscFor builds the netlink qdisc for an impairment on link index,
// whose MTU is mtu.
func qdiscFor(index int, im *reconcile.Impair, mtu int) netlink.Qdisc {
	if im.Qdisc() == "netem" {
		attrs := netlink.QdiscAttrs{LinkIndex: index, Handle: handleNetem, Parent: netlink.HANDLE_ROOT}
		return netlink.NewNetem(attrs, netlink.NetemQdiscAttrs{
			Latency: im.Delay, Jitter: im.Jitter, Loss: float32(im.Loss), Duplicate: float32(im.Duplicate),
			ReorderProb: float32(im.Reorder), CorruptProb: float32(im.Corrupt), Limit: im.Limit, Rate64: im.Rate / 8,
		})
	}
	rate, cell := im.Rate/8, tbfCellFor(mtu)
	burst := tbfBurst(rate, cell)
	limit := tbfDefaultLimit(rate, cell)
	if im.Limit != 0 {
		limit = uint32(min(uint64(im.Limit)*cell, math.MaxUint32))
	}
	return &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Handle: handleTbf, Parent: netlink.HANDLE_ROOT},
		Rate:       rate, Buffer: netlink.Xmittime(rate, burst), Limit: limit,
	}
}

// impairOf reads an impairment back from the lab's qdisc on an interface
// whose MTU is mtu.
func impairOf(q netlink.Qdisc, mtu int) *reconcile.Impair {
	pct := func(v uint32) float64 { return reconcile.RoundPercent(float64(v) / math.MaxUint32 * 100) }
	us := func(ticks uint32) uint32 { return uint32(math.Round(float64(ticks) / netlink.TickInUsec())) }
	switch q := q.(type) {
	case *netlink.Netem:
		im := &reconcile.Impair{Delay: us(q.Latency), Jitter: us(q.Jitter), Loss: pct(q.Loss), Duplicate: pct(q.Duplicate),
			Reorder: pct(q.ReorderProb), Corrupt: pct(q.CorruptProb), Rate: q.Rate64 * 8, Limit: q.Limit}
		if im.Limit == reconcile.NetemDefaultLimit {
			im.Limit = 0
		}
		return im
	case *netlink.Tbf:
		cell := tbfCellFor(mtu)
		im := &reconcile.Impair{Rate: q.Rate * 8}
		if q.Limit != tbfDefaultLimit(q.Rate, cell) {
			im.Limit = uint32((uint64(q.Limit) + cell - 1) / cell)
		}
		// Made for a smaller MTU (set since, by hand or by the lab): its
		// bucket holds no full frame now.
		if burst := uint64(float64(q.Buffer) / netlink.TickInUsec() * float64(q.Rate) / 1e6); burst+2 < cell {
			// (Its limit, sized for the old frames, says nothing now.)
			im.Short, im.Limit = fmt.Sprintf("%d bytes, under a frame at MTU %d", burst, mtu), 0
		}
		return im
	}
	return nil
}

// observeQdiscs reads the root qdiscs of a namespace onto its links: the
// lab's as Impair, anyone else's as QdiscForeign. The kernel's defaults
// (handle 0: noqueue, pfifo_fast, fq_codel, mq) are neither.
func observeQdiscs(h *nsHandle, ns *reconcile.Namespace, byIndex map[int]string) error {
	qs, err := retry(func() ([]netlink.Qdisc, error) { return h.h.QdiscList(nil) })
	if err != nil {
		return err
	}
	for _, q := range qs {
		a := q.Attrs()
		l := ns.Links[byIndex[a.LinkIndex]]
		if l == nil || a.Parent != netlink.HANDLE_ROOT || a.Handle == 0 {
			continue
		}
		if l.Owned && ourHandle(a.Handle) {
			if im := impairOf(q, l.MTU); im != nil {
				l.Impair = im
				continue
			}
		}
		l.QdiscForeign = fmt.Sprintf("%s %x:", q.Type(), a.Handle>>16)
	}
	return nil
}

// applyImpair puts, changes or removes the lab's qdisc on an interface.
func (k *Kernel) applyImpair(c *reconcile.Change) error {
	h, err := k.handle(c.Namespace)
	if err != nil {
		return err
	}
	defer k.release(h)
	l, err := k.linkByName(h, c.Name, c.Namespace)
	if err != nil {
		return err
	}
	what := "impairment (qdisc) on"
	if c.Action == reconcile.Delete {
		qs, err := retry(func() ([]netlink.Qdisc, error) { return h.h.QdiscList(l) })
		if err != nil {
			return k.opErr("list qdiscs of", "interface", c.Name, c.Namespace, err)
		}
		for _, q := range qs {
			if a := q.Attrs(); a.Parent == netlink.HANDLE_ROOT && ourHandle(a.Handle) {
				if err := h.h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) {
					return k.opErr("delete", what, c.Name, c.Namespace, err)
				}
			}
		}
		if owned, _ := k.ownedAlias(l.Attrs().Alias); owned {
			if err := k.setAliasAttr(h, l, qdiscAttr, ""); err != nil {
				return k.opErr("unmark", what, c.Name, c.Namespace, err)
			}
		}
		return nil
	}
	// The mark first: a run killed between the two leaves a flag that
	// makes the next Observe look, never a qdisc nobody looks for.
	if _, attrs := k.ownedAlias(l.Attrs().Alias); attrs[qdiscAttr] == "" {
		if err := k.setAliasAttr(h, l, qdiscAttr, "1"); err != nil {
			return k.opErr("mark", what, c.Name, c.Namespace, err)
		}
	}
	if err := h.h.QdiscReplace(qdiscFor(l.Attrs().Index, c.Link.Impair, l.Attrs().MTU)); err != nil {
		return k.opErr("set", what, c.Name, c.Namespace, err)
	}
	return nil
}

// probeQdisc reports whether the kernel has a qdisc kind ("netem", "tbf"),
// by putting one on a veth in a throwaway namespace.
func probeQdisc(h *netlink.Handle, kind string) error {
	a := netlink.NewLinkAttrs()
	a.Name = "probe0"
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: a, PeerName: "probe1"}); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	l, err := h.LinkByName("probe0")
	if err != nil {
		return err
	}
	im := &reconcile.Impair{Rate: 8_000_000}
	if kind == "netem" {
		im.Delay = 1000
	}
	return h.QdiscAdd(qdiscFor(l.Attrs().Index, im, l.Attrs().MTU))
}
