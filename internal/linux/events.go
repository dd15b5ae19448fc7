package linux

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/fsnotify/fsnotify"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// Events streams what changes in the lab's namespaces: link, address and
// route updates from netlink subscriptions (one set per namespace), and
// namespaces pinned or unpinned under /run/netns. Each event is a short
// description for people. Sync sets which namespaces are watched.
type Events struct {
	k  *Kernel
	C  chan string
	mu sync.Mutex
	// subs: short name -> the watched namespace's identity and its stop.
	subs map[string]*sub
	fsw  *fsnotify.Watcher
	ctx  context.Context
}

type sub struct {
	dev, ino uint64
	stop     chan struct{}
	fd       netns.NsHandle
}

// Events starts watching; call Sync with the namespaces to follow.
func (k *Kernel) Events(ctx context.Context) (*Events, error) {
	e := &Events{k: k, C: make(chan string, 1024), subs: map[string]*sub{}, ctx: ctx}
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return nil, err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(NetnsDir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", NetnsDir, err)
	}
	e.fsw = w
	go e.fsLoop()
	go func() {
		<-ctx.Done()
		e.closeAll()
	}()
	return e, nil
}

func (e *Events) send(s string) {
	select {
	case e.C <- s:
	default: // a burst: the loop resyncs anyway, one signal is enough
	}
}

func (e *Events) fsLoop() {
	for {
		select {
		case ev, ok := <-e.fsw.Events:
			if !ok {
				return
			}
			name := filepath.Base(ev.Name)
			short, mine := e.shortName(name)
			if !mine {
				continue
			}
			switch {
			case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
				e.drop(short) // let the kernel free it
				e.send(fmt.Sprintf("netns %s was deleted", name))
			case ev.Has(fsnotify.Create):
				e.send(fmt.Sprintf("netns %s appeared", name))
			}
		case _, ok := <-e.fsw.Errors:
			if !ok {
				return
			}
			e.send("namespace watch error")
		}
	}
}

// shortName maps a /run/netns entry to a watched short name.
func (e *Events) shortName(kernelName string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for short := range e.subs {
		if e.k.KernelName(short) == kernelName {
			return short, true
		}
	}
	return "", false
}

func identity(path string) (uint64, uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, 0, err
	}
	return st.Dev, st.Ino, nil
}

func (e *Events) nsPath(short string) string {
	if short == reconcile.HostNS && e.k.opt.Netns == "" {
		return fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
	}
	return netnsPath(e.k.KernelName(short))
}

// Sync subscribes to the namespaces given (short names) that exist, and
// drops subscriptions of namespaces no longer wanted or replaced.
func (e *Events) Sync(names []string) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	e.mu.Lock()
	for short, s := range e.subs {
		dev, ino, err := identity(e.nsPath(short))
		if !want[short] || err != nil || dev != s.dev || ino != s.ino {
			close(s.stop)
			s.fd.Close()
			delete(e.subs, short)
		}
	}
	e.mu.Unlock()
	for n := range want {
		e.mu.Lock()
		_, have := e.subs[n]
		e.mu.Unlock()
		if have {
			continue
		}
		if err := e.subscribe(n); err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return err
		}
	}
	return nil
}

func (e *Events) subscribe(short string) error {
	path := e.nsPath(short)
	dev, ino, err := identity(path)
	if err != nil {
		return err
	}
	fd, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	kname := e.k.KernelName(short)
	s := &sub{dev: dev, ino: ino, stop: make(chan struct{}), fd: fd}
	onErr := func(err error) {
		// A namespace going away ends its subscriptions with an error:
		// that is the namespace event (fsnotify says it), not a problem.
		if d, i, serr := identity(path); serr != nil || d != dev || i != ino {
			return
		}
		select {
		case <-s.stop:
			return
		default:
		}
		e.send(fmt.Sprintf("netns %s: subscription error: %v", kname, err))
	}
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.LinkSubscribeWithOptions(links, s.stop, netlink.LinkSubscribeOptions{Namespace: &fd, ErrorCallback: onErr}); err != nil {
		fd.Close()
		return fmt.Errorf("subscribe to links in netns %q: %w", kname, err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, s.stop, netlink.AddrSubscribeOptions{Namespace: &fd, ErrorCallback: onErr}); err != nil {
		close(s.stop)
		fd.Close()
		return fmt.Errorf("subscribe to addresses in netns %q: %w", kname, err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, s.stop, netlink.RouteSubscribeOptions{Namespace: &fd, ErrorCallback: onErr}); err != nil {
		close(s.stop)
		fd.Close()
		return fmt.Errorf("subscribe to routes in netns %q: %w", kname, err)
	}
	nftEvents, err := e.subscribeNFT(s, kname)
	if err != nil {
		close(s.stop)
		fd.Close()
		return fmt.Errorf("subscribe to nftables in netns %q: %w", kname, err)
	}
	if err := e.subscribeTC(s, fd, kname); err != nil {
		close(s.stop)
		fd.Close()
		return fmt.Errorf("subscribe to qdiscs in netns %q: %w", kname, err)
	}
	e.mu.Lock()
	e.subs[short] = s
	e.mu.Unlock()
	go func() {
		for {
			select {
			case u, ok := <-links:
				if !ok {
					return
				}
				verb := "changed"
				switch {
				case u.Header.Type == unix.RTM_DELLINK && u.IfInfomsg.Family == unix.AF_BRIDGE:
					verb = "left its bridge" // the bridge's own notice of a port gone (nomaster)
				case u.Header.Type == unix.RTM_DELLINK:
					verb = "deleted"
				}
				e.send(fmt.Sprintf("link %s %s in netns %s", u.Attrs().Name, verb, kname))
			case u, ok := <-addrs:
				if !ok {
					return
				}
				if u.LinkAddress.IP.To4() == nil && (u.LinkAddress.IP.IsLinkLocalUnicast() || u.LinkAddress.IP.IsMulticast()) {
					continue // the kernel's own IPv6 link-local addresses
				}
				verb := "removed from"
				if u.NewAddr {
					verb = "added to"
				}
				e.send(fmt.Sprintf("address %s %s link %d in netns %s", u.LinkAddress.String(), verb, u.LinkIndex, kname))
			case u, ok := <-routes:
				if !ok {
					return
				}
				localGone := u.Type == unix.RTM_DELROUTE && u.Route.Type == unix.RTN_LOCAL && u.Route.Dst != nil && u.Route.Dst.IP.To4() != nil
				if u.Route.Table != unix.RT_TABLE_MAIN && !localGone {
					// Local and broadcast routes follow addresses, but an
					// IPv4 address's local route deleted by hand (ip route
					// flush table local) is drift: the address again.
					continue
				}
				if u.Route.Protocol == unix.RTPROT_KERNEL && (u.Type == unix.RTM_NEWROUTE || u.Route.Dst == nil ||
					u.Route.Dst.IP.To4() == nil && (u.Route.Dst.IP.IsLinkLocalUnicast() || u.Route.Dst.IP.IsMulticast())) {
					// Connected routes follow addresses; one deleted by hand
					// is drift the plan repairs (its address again). The
					// kernel's fe80::/64 and ff00::/8 are not the lab's.
					continue
				}
				verb := "removed"
				if u.Type == unix.RTM_NEWROUTE {
					verb = "added"
				}
				e.send(fmt.Sprintf("route %s %s in netns %s", u.Route.Dst, verb, kname))
			case ev, ok := <-nftEvents:
				if !ok {
					nftEvents = nil // closed: the namespace went, or no nf_tables
					continue
				}
				if what := e.nftEvent(ev); what != "" {
					e.send(fmt.Sprintf("%s in netns %s", what, kname))
				}
			case <-s.stop:
				return
			}
		}
	}()
	return nil
}

// subscribeTC follows qdisc changes in the sub's namespace (RTNLGRP_TC),
// so an impairment deleted or changed by hand is repaired at once.
func (e *Events) subscribeTC(s *sub, fd netns.NsHandle, kname string) error {
	sock, err := nl.SubscribeAt(fd, netns.None(), unix.NETLINK_ROUTE, unix.RTNLGRP_TC)
	if err != nil {
		return err
	}
	go func() {
		<-s.stop
		sock.Close()
	}()
	go func() {
		for {
			msgs, _, err := sock.Receive()
			if err != nil {
				return // closed: stopped, or the namespace went
			}
			for _, m := range msgs {
				if m.Header.Type != unix.RTM_NEWQDISC && m.Header.Type != unix.RTM_DELQDISC || len(m.Data) < 8 {
					continue
				}
				verb := "changed"
				if m.Header.Type == unix.RTM_DELQDISC {
					verb = "deleted"
				}
				index := int32(nl.NativeEndian().Uint32(m.Data[4:8])) // struct tcmsg: family, pad, ifindex
				e.send(fmt.Sprintf("qdisc %s on link %d in netns %s", verb, index, kname))
			}
		}
	}()
	return nil
}

// subscribeNFT follows nftables changes in the sub's namespace (the
// NFNLGRP_NFTABLES multicast group), so a NAT rule deleted or edited by
// hand is repaired at once. A kernel without nf_tables gives no events.
func (e *Events) subscribeNFT(s *sub, kname string) (<-chan *nftables.MonitorEvent, error) {
	c, err := newNFT(nftables.WithNetNSFd(int(s.fd)))
	if err != nil {
		return nil, err
	}
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(64))
	ch, err := c.AddMonitor(mon)
	if err != nil {
		if noNFTables(err) {
			return nil, nil
		}
		return nil, err
	}
	go func() {
		<-s.stop
		mon.Close()
	}()
	return ch, nil
}

// nftEvent describes an nftables change to the lab's table, or "".
func (e *Events) nftEvent(ev *nftables.MonitorEvent) string {
	table, kind := "", ""
	switch d := ev.Data.(type) {
	case *nftables.Table:
		table, kind = d.Name, "table"
	case *nftables.Chain:
		kind = "chain " + d.Name
		if d.Table != nil {
			table = d.Table.Name
		}
	case *nftables.Rule:
		kind = "rule"
		if d.Table != nil {
			table = d.Table.Name
		}
	default:
		return ""
	}
	if table != e.k.TableName() {
		return ""
	}
	verb := "changed"
	switch ev.Type {
	case nftables.MonitorEventTypeDelTable, nftables.MonitorEventTypeDelChain, nftables.MonitorEventTypeDelRule:
		verb = "deleted"
	case nftables.MonitorEventTypeNewTable, nftables.MonitorEventTypeNewChain, nftables.MonitorEventTypeNewRule:
		verb = "added"
	}
	return fmt.Sprintf("nftables %s %s in table %s", kind, verb, table)
}

func (e *Events) drop(short string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s, ok := e.subs[short]; ok {
		close(s.stop)
		s.fd.Close()
		delete(e.subs, short)
	}
	// The kernel handle cache must not keep the namespace alive either.
	e.k.forget(short)
}

func (e *Events) closeAll() {
	e.mu.Lock()
	for short, s := range e.subs {
		close(s.stop)
		s.fd.Close()
		delete(e.subs, short)
	}
	e.mu.Unlock()
	e.fsw.Close()
}

// Chan is the stream of event descriptions.
func (e *Events) Chan() <-chan string { return e.C }
