package linux

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A plan deletes an address of the lab's and adds it again (its subnet's
// route was deleted by hand, a primary comes back first): the kernel takes
// with an IPv4 address every route that names it as its source (`ip route
// add ... src ADDR`), whatever its interface or table. The lab's own are
// in the plan again; someone else's are kept here when the address goes
// and put back when it comes again in the same run (an outside audit: they
// went, unwarned). One whose address does not come back cannot be put
// back: the kernel takes no source that is not an address of its.

func srcKey(ns string, ip net.IP) string { return ns + "/" + ip.String() }

// keepSrcRoutes notes the routes of someone else's in the handle's
// namespace whose source is ip, before ip is deleted.
func (k *Kernel) keepSrcRoutes(h *nsHandle, ns string, ip net.IP) error {
	if ip.To4() == nil {
		return nil // IPv6 keeps such routes (without their source)
	}
	all, err := h.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list the routes with it as their source: %w", err)
	}
	var keep []netlink.Route
	for _, r := range all {
		if r.Src.Equal(ip) && r.Protocol != unix.RTPROT_KERNEL && r.Protocol != RouteProtocol && r.Type == unix.RTN_UNICAST {
			keep = append(keep, r)
		}
	}
	if len(keep) == 0 {
		return nil
	}
	k.srcMu.Lock()
	defer k.srcMu.Unlock()
	if k.srcRoutes == nil {
		k.srcRoutes = map[string][]netlink.Route{}
	}
	k.srcRoutes[srcKey(ns, ip)] = append(k.srcRoutes[srcKey(ns, ip)], keep...)
	return nil
}

// putBackSrcRoutes adds again, once ip is back, the routes keepSrcRoutes
// noted for it.
func (k *Kernel) putBackSrcRoutes(h *nsHandle, ns string, ip net.IP) error {
	k.srcMu.Lock()
	rs := k.srcRoutes[srcKey(ns, ip)]
	delete(k.srcRoutes, srcKey(ns, ip))
	k.srcMu.Unlock()
	for _, r := range rs {
		if err := h.h.RouteAdd(&r); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("put back the route %s added by hand with it as its source: %w", r, err)
		}
	}
	return nil
}

// StartRun forgets the routes kept for addresses an earlier run deleted
// and did not add again: they went with them, and a later run that adds
// the address does not bring them back (reconcile.RunStarter).
func (k *Kernel) StartRun() {
	k.srcMu.Lock()
	clear(k.srcRoutes)
	k.srcMu.Unlock()
}
