package linux

import (
	"fmt"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// removeOrphan deletes the lab's macvlan l left up, on the parent with
// ifindex parentIndex, in a namespace that is no longer pinned but still
// held by a process, and reports whether it found one.
//
// A lab namespace deleted by hand (`ip netns del`) while a process is in
// it (a shell), or holds it open, lives on without a name, and its macvlan stays on its
// parent outside it, with the MAC the lab derives for that macvlan
// (reconcile.DerivedMAC): making the namespace and its macvlan again
// then fails with EADDRINUSE until the process exits. The orphan is
// found among the namespaces of running processes, and those they hold
// open, that no pin under /run/netns names: a link of this lab (its mark), with l's name and
// MAC, up (a macvlan that is down holds no MAC) and on the same parent.
// Nothing else is touched, and only on that error. A passthru macvlan
// (which takes its parent's MAC) holds its parent whole, up or down: its
// orphan is found by the lab's mark, l's name, the mode and the parent,
// when making l fails with EINVAL.
func (k *Kernel) removeOrphan(l *reconcile.Link, parentIndex int) bool {
	if l.Kind != reconcile.KindMacvlan || (l.MAC == "" && l.Mode != "passthru") {
		return false
	}
	seen := map[[2]uint64]bool{}
	if pins, err := os.ReadDir(NetnsDir); err == nil {
		for _, p := range pins {
			if dev, ino, err := identity(netnsPath(p.Name())); err == nil {
				seen[[2]uint64{dev, ino}] = true
			}
		}
	}
	if dev, ino, err := identity(fmt.Sprintf("/proc/%d/ns/net", os.Getpid())); err == nil {
		seen[[2]uint64{dev, ino}] = true
	}
	try := func(path string) bool {
		dev, ino, err := identity(path)
		if err != nil || seen[[2]uint64{dev, ino}] {
			return false
		}
		seen[[2]uint64{dev, ino}] = true
		return k.removeOrphanIn(path, dev, ino, l, parentIndex)
	}
	procs := pids()
	for _, pid := range procs {
		if try("/proc/" + pid + "/ns/net") {
			return true
		}
	}
	// Then namespaces that processes hold open, not run in (a shell's
	// `exec 3</run/netns/x` before `ip netns del x`): files of the
	// namespace file system (nsfs; their link reads "/" once their pin is
	// gone, not net:[...]); those of other kinds of namespace are no
	// network namespace to look in.
	nsfs, _, err := identity(fmt.Sprintf("/proc/%d/ns/net", os.Getpid()))
	if err != nil {
		return false
	}
	for _, pid := range procs {
		for _, path := range fdPaths(pid) {
			if dev, _, err := identity(path); err == nil && dev == nsfs && try(path) {
				return true
			}
		}
	}
	return false
}

// removeOrphanIn deletes l's orphan in the namespace at path, if it is
// there and still the namespace identified by dev and ino.
func (k *Kernel) removeOrphanIn(path string, dev, ino uint64, l *reconcile.Link, parentIndex int) bool {
	fd, err := netns.GetFromPath(path)
	if err != nil {
		return false
	}
	defer fd.Close()
	var st unix.Stat_t
	if unix.Fstat(int(fd), &st) != nil || st.Dev != dev || st.Ino != ino {
		return false // the process went, and its pid is someone else's
	}
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	if err != nil {
		return false
	}
	defer h.Close()
	got, err := h.LinkByName(l.Name)
	if err != nil {
		return false
	}
	a := got.Attrs()
	m, ok := got.(*netlink.Macvlan)
	if !ok || a.ParentIndex != parentIndex {
		return false
	}
	if l.Mode == "passthru" {
		if m.Mode != netlink.MACVLAN_MODE_PASSTHRU {
			return false
		}
	} else if !strings.EqualFold(a.HardwareAddr.String(), l.MAC) || a.RawFlags&unix.IFF_UP == 0 {
		return false
	}
	if owned, _ := k.ownedAlias(a.Alias); !owned {
		return false
	}
	return h.LinkDel(got) == nil
}
