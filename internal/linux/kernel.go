// Package linux is the only package that talks to the kernel: namespaces
// through /run/netns and setns; links, addresses and routes read through
// one netlink socket of our own per namespace (rtsocket.go, dumps.go) and
// changed through it and the netlink library's handle; sysctls through
// /proc/sys inside the namespace. It implements reconcile.Kernel.
package linux

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// RouteProtocol marks the routes netplan-lab installs (rtm_protocol). It is
// how a later run, with no memory of this one, knows which routes it owns.
const RouteProtocol = netlink.RouteProtocol(157)

const markPrefix = "netplan-lab:"

// Options say which lab a Kernel works on.
type Options struct {
	// Name is the topology's name: the owner of everything it creates.
	Name string
	// Prefix is prepended to every namespace name the topology creates.
	Prefix string
	// Netns, if set, names the namespace that plays "host"
	// (/run/netns/Netns); otherwise host is the namespace we run in.
	Netns string
}

// Kernel is the real kernel, for one lab.
type Kernel struct {
	opt   Options
	mark  string
	group uint32 // the lab's link group (IFLA_GROUP)

	// recMu guards the records of sysctls before the lab set them
	// (sysctlrecord.go).
	recMu sync.Mutex
	// making is the links the lab set out to make and may not have
	// marked yet (making.go), as "NAMESPACE/NAME"; makingMu guards it.
	making   map[string]bool
	makingMu sync.Mutex

	// srcRoutes holds, by namespace and address, the routes of someone
	// else's that name an address the run deletes as their source
	// (srcroutes.go); srcMu guards it.
	srcRoutes map[string][]netlink.Route
	srcMu     sync.Mutex

	mu      sync.Mutex
	handles map[string]*nsHandle // by short name
	// retired handles are no longer handed out but may still be in use by
	// a call in flight; they are closed at the next Observe (the start of
	// every reconcile) or at Close.
	retired []*nsHandle
	probed  map[string]error
	// budget is how many handles are kept open between uses: each holds
	// two to four files (the namespace, netlink sockets), and a lab of ten
	// thousand namespaces would pass the limit on open files. Beyond it,
	// handles no call is using are closed (and opened again if needed).
	budget int
	// unready counts, by namespace, what the last Observe saw of the lab
	// not ready yet: links up, with carrier, not running; IPv6 addresses
	// on running links without their local route (WaitReady).
	unready map[string]int
}

type nsHandle struct {
	mu sync.Mutex
	// dev, ino identify the pinned namespace the handle was opened on: a
	// namespace deleted and made again by someone else is a new one.
	dev, ino uint64
	fd       netns.NsHandle
	h        *netlink.Handle
	rt       *rtSocket // our own NETLINK_ROUTE socket (rtsocket.go)
	nft      *nftables.Conn
	users    int // calls using it now (under Kernel.mu)
}

// New returns a Kernel for the lab described by o.
func New(o Options) *Kernel {
	mark := MarkOf(o)
	return &Kernel{opt: o, mark: mark, group: groupOf(mark), handles: map[string]*nsHandle{}, probed: map[string]error{}, budget: handleBudget(), unready: map[string]int{}}
}

// Identity is the lab this Kernel works on.
func (k *Kernel) Identity() Options { return k.opt }

// Mark is the alias every owned object carries.
func (k *Kernel) Mark() string { return k.mark }

// KernelName is the name of a namespace as `ip netns` shows it.
func (k *Kernel) KernelName(short string) string {
	if short == reconcile.HostNS {
		if k.opt.Netns != "" {
			return k.opt.Netns
		}
		return "host"
	}
	return k.opt.Prefix + short
}

// Close releases every handle.
func (k *Kernel) Close() {
	k.reap()
	k.mu.Lock()
	defer k.mu.Unlock()
	for name, h := range k.handles {
		h.close()
		delete(k.handles, name)
	}
}

func (h *nsHandle) close() {
	if h.h != nil {
		h.h.Close()
	}
	if h.rt != nil {
		h.rt.close()
	}
	if h.nft != nil {
		h.nft.CloseLasting()
	}
	h.fd.Close()
}

// errNoNetns says a namespace does not exist.
var errNoNetns = errors.New("network namespace does not exist")

// handle returns the cached handle of a namespace, opening it if needed.
// The caller gives it back with k.release when done.
// A cached handle whose pinned namespace is gone or replaced is dropped, so
// a long-lived Kernel (watch mode) never works on, or keeps alive, a
// namespace someone deleted.
func (k *Kernel) handle(short string) (*nsHandle, error) {
	h, _, err := k.handleReading(short, nil)
	if err != nil {
		return nil, err
	}
	if err := h.ensure(); err != nil {
		k.release(h)
		return nil, fmt.Errorf("netlink handle in netns %q: %w", k.KernelName(short), err)
	}
	return h, nil
}

// ensure gives the handle its netlink library handle (h.h), which changes
// need and observation does not: observation reads through h.rt alone.
// (A second netlink socket made in each namespace as it is opened was
// measured to cost more than all of observation's dumps there.)
func (h *nsHandle) ensure() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h != nil {
		return nil
	}
	nh, err := netlink.NewHandleAt(h.fd, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	h.h = nh
	return nil
}

// handleReading is handle for observation: the handle has its own socket
// but maybe not h.h (ensure makes it), and sysctls keys are read in the
// namespace, when the handle is opened in the same visit that makes the
// socket (one setns there and one back instead of two each).
func (k *Kernel) handleReading(short string, keys []string) (*nsHandle, map[string]string, error) {
	sc := map[string]string{}
	pinned := !(short == reconcile.HostNS && k.opt.Netns == "")
	var dev, ino uint64
	if pinned {
		var err error
		dev, ino, err = identity(netnsPath(k.KernelName(short)))
		if err != nil {
			k.forget(short)
			if errors.Is(err, os.ErrNotExist) {
				return nil, nil, errNoNetns
			}
			return nil, nil, fmt.Errorf("open netns %q: %w", k.KernelName(short), err)
		}
	}
	k.mu.Lock()
	if h, ok := k.handles[short]; ok {
		if h.dev == dev && h.ino == ino {
			h.users++
			k.mu.Unlock()
			if len(keys) == 0 {
				return h, sc, nil
			}
			sc, err := readSysctls(h.fd, keys)
			if err != nil {
				k.release(h)
				return nil, nil, fmt.Errorf("netns %q: %w", k.KernelName(short), err)
			}
			return h, sc, nil
		}
		k.retired = append(k.retired, h)
		delete(k.handles, short)
	}
	k.mu.Unlock()
	var fd netns.NsHandle
	var err error
	if !pinned {
		fd, err = netns.Get()
	} else {
		path := netnsPath(k.KernelName(short))
		if p := readPin(path); p.half {
			return nil, nil, &halfPinError{path: path, pin: p}
		}
		fd, err = netns.GetFromPath(path)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, errNoNetns
		}
		return nil, nil, fmt.Errorf("open netns %q: %w", k.KernelName(short), err)
	}
	var rt *rtSocket
	err = InNetns(fd, func() error {
		var err error
		if rt, err = newRTSocket(); err != nil {
			return fmt.Errorf("netlink socket in netns %q: %w", k.KernelName(short), err)
		}
		if err := readSysctlsHere(keys, sc); err != nil {
			return fmt.Errorf("netns %q: %w", k.KernelName(short), err)
		}
		return nil
	})
	if err != nil {
		if rt != nil {
			rt.close()
		}
		fd.Close()
		return nil, nil, err
	}
	nh := &nsHandle{fd: fd, dev: dev, ino: ino, rt: rt}
	k.mu.Lock()
	if old, ok := k.handles[short]; ok {
		k.retired = append(k.retired, nh) // lost a race: nobody uses nh
		old.users++
		k.mu.Unlock()
		return old, sc, nil
	}
	nh.users++
	k.handles[short] = nh
	idle := k.trimLocked()
	k.mu.Unlock()
	closeAll(idle)
	return nh, sc, nil
}

// adopt makes nh the handle of a namespace (one just created).
func (k *Kernel) adopt(short string, nh *nsHandle) {
	k.mu.Lock()
	if old, ok := k.handles[short]; ok {
		k.retired = append(k.retired, old)
	}
	k.handles[short] = nh
	idle := k.trimLocked()
	k.mu.Unlock()
	closeAll(idle)
}

// release says a call is done with a handle k.handle or k.handleReading
// gave it.
func (k *Kernel) release(h *nsHandle) {
	k.mu.Lock()
	h.users--
	idle := k.trimLocked()
	k.mu.Unlock()
	closeAll(idle)
}

// trimLocked takes handles no call is using out of the cache while it
// holds more than the budget, down to nine tenths of it, and returns them
// to be closed.
func (k *Kernel) trimLocked() []*nsHandle {
	if len(k.handles) <= k.budget {
		return nil
	}
	var idle []*nsHandle
	for name, h := range k.handles {
		if len(k.handles) <= k.budget*9/10 {
			break
		}
		if h.users == 0 {
			idle = append(idle, h)
			delete(k.handles, name)
		}
	}
	return idle
}

func closeAll(hs []*nsHandle) {
	for _, h := range hs {
		h.close()
	}
}

// handleBudget is how many handles a Kernel keeps open between uses: a
// quarter of what the process's limit on open files leaves after 64 for
// everything else (a handle holds up to four files), at least 4.
func handleBudget() int {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil || lim.Cur > 1<<22 {
		return 1 << 20
	}
	return max(4, (int(lim.Cur)-64)/4)
}

// forget stops handing out the handle of a namespace (deleted, replaced);
// it is closed later, when no call can be using it.
func (k *Kernel) forget(short string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if h, ok := k.handles[short]; ok {
		k.retired = append(k.retired, h)
		delete(k.handles, short)
	}
}

// reap closes retired handles, letting the kernel free their namespaces.
func (k *Kernel) reap() {
	k.mu.Lock()
	old := k.retired
	k.retired = nil
	k.mu.Unlock()
	for _, h := range old {
		h.close()
	}
}

// EnsureHost creates the --netns namespace if it is missing and reports
// whether it did. Without --netns it does nothing.
func (k *Kernel) EnsureHost() (bool, error) {
	if k.opt.Netns == "" {
		return false, nil
	}
	path := netnsPath(k.opt.Netns)
	if _, err := os.Stat(path); err == nil {
		p := readPin(path)
		if !p.half {
			return false, nil
		}
		if !p.ownedBy(k.sandboxMark()) {
			return false, &halfPinError{path: path, pin: p}
		}
		// createNamed removes a half-made pin of ours.
	}
	k.forget(reconcile.HostNS)
	nh, err := createNamed(k.opt.Netns, k.sandboxMark(), false)
	if err != nil {
		return false, fmt.Errorf("create netns %q: %w", k.opt.Netns, err)
	}
	k.adopt(reconcile.HostNS, nh)
	return true, nil
}

func (k *Kernel) sandboxMark() string { return "netplan-lab-sandbox:" + k.opt.Netns }

// RemoveHostIfCreated deletes the --netns namespace if netplan-lab created
// it and nothing but lo is left in it (no other link, no nftables table).
// It reports whether it did.
func (k *Kernel) RemoveHostIfCreated() (bool, error) {
	stays, err := k.SandboxStays()
	if err != nil || stays != "" {
		return false, err
	}
	if k.opt.Netns == "" {
		return false, nil
	}
	if _, err := os.Lstat(netnsPath(k.opt.Netns)); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	k.forget(reconcile.HostNS)
	k.dropRecord(reconcile.HostNS)
	return true, DeleteNamed(k.opt.Netns)
}

// SandboxStays says why the --netns namespace is not to be removed ("" if
// it may be, or there is none): apply did not make it, or something not
// this lab's is in it (a link, an nftables table, another lab).
func (k *Kernel) SandboxStays() (string, error) {
	if k.opt.Netns == "" {
		return "", nil
	}
	h, err := k.handle(reconcile.HostNS)
	if errors.Is(err, errNoNetns) {
		return "", nil
	}
	var hp *halfPinError
	if errors.As(err, &hp) {
		if !hp.pin.ownedBy(k.sandboxMark()) {
			return "its pin under " + NetnsDir + " is not netplan-lab's", nil
		}
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer k.release(h)
	links, err := listLinks(h.h)
	if err != nil {
		return "", err
	}
	for _, l := range links {
		a := l.Attrs()
		if a.Name == "lo" {
			if a.Alias != k.sandboxMark() {
				return "apply did not create it", nil
			}
			continue
		}
		if other, ok := ParseMark(a.Alias); ok {
			return fmt.Sprintf("interface %s is in it, of %s", a.Name, other), nil
		}
		return fmt.Sprintf("interface %s is in it, not the lab's", a.Name), nil
	}
	// Addresses added by hand (to lo: the lab's links are gone), routes
	// of others (a blackhole, ...), and processes that run there keep it
	// too (an outside audit: they went with it, silently).
	if why := handMadeIn(h); why != "" {
		return why, nil
	}
	if who := processIn(h.dev, h.ino); who != "" {
		return who, nil
	}
	// A socket someone holds there (made in it by a thread that left).
	if what := socketIn(h.fd); what != "" {
		return what + " is open in it", nil
	}
	// So may an nftables table of another owner.
	c, err := h.nftConn()
	if err != nil {
		return "", err
	}
	tables, err := c.ListTables()
	if err != nil && !noNFTables(err) {
		return "", fmt.Errorf("list nftables tables: %w", err)
	}
	if len(tables) > 0 {
		return fmt.Sprintf("nftables table %s is in it, not the lab's", tables[0].Name), nil
	}
	// And another lab may live in the sandbox with namespaces only.
	labs, err := ScanLabs(context.Background())
	if err != nil {
		return "", err
	}
	for _, l := range labs {
		if l.ID.Netns == k.opt.Netns { // another lab, or this one (a failed apply over it)
			return fmt.Sprintf("%s has namespaces there", l.ID), nil
		}
	}
	return "", nil
}

// handMadeIn describes an address on lo other than the loopback ones, a
// routing rule, a proxy neighbour, a nexthop object, an xfrm state or
// policy, a permanent neighbour, a qdisc on lo or a route that is not the
// kernel's, in the namespace of h ("" if none).
func handMadeIn(h *nsHandle) string {
	addrs, err := h.h.AddrList(nil, netlink.FAMILY_ALL)
	if err == nil {
		for _, a := range addrs {
			if a.IPNet != nil && !a.IP.IsLoopback() {
				return fmt.Sprintf("address %s is in it, not the lab's", a.IPNet)
			}
		}
	}
	// Policy rules other than the three every namespace starts with
	// (local, main, default).
	if rules, err := h.h.RuleList(netlink.FAMILY_ALL); err == nil {
		for _, r := range rules {
			plain := r.Src == nil && r.Dst == nil && r.IifName == "" && r.OifName == "" && r.Mark == 0
			if !plain || r.Priority != 0 && r.Priority != 32766 && r.Priority != 32767 {
				return fmt.Sprintf("a routing rule (priority %d, table %d) is in it, not the lab's", r.Priority, r.Table)
			}
		}
	}
	// Proxy neighbours (ip neigh add proxy) and nexthop objects (ip
	// nexthop add): the lab makes neither.
	if ps, err := h.h.NeighProxyList(0, netlink.FAMILY_ALL); err == nil && len(ps) > 0 {
		return fmt.Sprintf("proxy neighbour %s is in it, not the lab's", ps[0].IP)
	}
	if id := h.firstNexthop(); id != 0 {
		return fmt.Sprintf("nexthop id %d is in it, not the lab's", id)
	}
	// IPsec states and policies (ip xfrm): the lab makes none. A kernel
	// without XFRM_USER has none to show.
	if xh, err := netlink.NewHandleAt(h.fd, unix.NETLINK_XFRM); err == nil {
		defer xh.Close()
		if ss, err := xh.XfrmStateList(netlink.FAMILY_ALL); err == nil && len(ss) > 0 {
			return fmt.Sprintf("xfrm state %s -> %s (spi %#x) is in it, not the lab's", ss[0].Src, ss[0].Dst, ss[0].Spi)
		}
		if ps, err := xh.XfrmPolicyList(netlink.FAMILY_ALL); err == nil && len(ps) > 0 {
			return fmt.Sprintf("xfrm policy %v -> %v (%s) is in it, not the lab's", ps[0].Src, ps[0].Dst, ps[0].Dir)
		}
	}
	// Neighbours someone made permanent (ip neigh add ... nud
	// permanent), and a root qdisc on lo (it has none of its own).
	if ns, err := h.h.NeighList(0, netlink.FAMILY_ALL); err == nil {
		for _, n := range ns {
			if n.State&netlink.NUD_PERMANENT != 0 && n.IP != nil {
				dev := fmt.Sprint(n.LinkIndex)
				if l, err := h.h.LinkByIndex(n.LinkIndex); err == nil {
					dev = l.Attrs().Name
				}
				return fmt.Sprintf("permanent neighbour %s on %s is in it, not the lab's", n.IP, dev)
			}
		}
	}
	if lo, err := h.h.LinkByIndex(1); err == nil {
		if qs, err := h.h.QdiscList(lo); err == nil {
			for _, q := range qs {
				if a := q.Attrs(); a.Parent == netlink.HANDLE_ROOT && q.Type() != "noqueue" {
					return fmt.Sprintf("qdisc %s on lo is in it, not the lab's", q.Type())
				}
			}
		}
	}
	routes, err := h.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err == nil {
		for _, r := range routes {
			if r.Protocol != unix.RTPROT_KERNEL {
				dst := "default"
				if r.Dst != nil {
					dst = r.Dst.String()
				}
				return fmt.Sprintf("route %s (table %d) is in it, not the lab's", dst, r.Table)
			}
		}
	}
	return ""
}

// processIn says which process, other than this one, runs in the network
// namespace dev/ino ("process 12 (sleep) runs in it") or holds it open
// without being in it ("process 12 (prog) holds it open"): a program that
// kept a handle to setns into later would be left with a namespace no
// name leads to. "" if none.
func processIn(dev, ino uint64) string {
	self := strconv.Itoa(os.Getpid())
	link := fmt.Sprintf("net:[%d]", ino)
	holder := ""
	for _, pid := range pids() {
		if pid == self {
			continue
		}
		// Every thread: one that entered the namespace (setns) is in it
		// while its process's first thread is not (an outside audit).
		tasks, _ := os.ReadDir("/proc/" + pid + "/task")
		for _, task := range tasks {
			if d, i, err := identity("/proc/" + pid + "/task/" + task.Name() + "/ns/net"); err == nil && d == dev && i == ino {
				return "process " + procName(pid) + " runs in it"
			}
		}
		if holder != "" {
			continue
		}
		for _, path := range fdPaths(pid) {
			// "net:[INODE]" from /proc/PID/ns/net, the pin's path if
			// opened through it: a path is compared by what it is.
			if l, err := os.Readlink(path); err == nil && (l == link || strings.HasPrefix(l, "/")) {
				if d, i, err := identity(path); err == nil && d == dev && i == ino {
					holder = "process " + procName(pid) + " holds it open"
					break
				}
			}
		}
	}
	return holder
}

// markNamespace brings lo up and marks the namespace through lo's alias,
// in one message (lo is ifindex 1 in every namespace: LOOPBACK_IFINDEX).
func (k *Kernel) markNamespace(h *nsHandle, mark string) error {
	return h.configure(1, "", mark, 0, true)
}

// retry runs a netlink dump again when the kernel says it was interrupted
// (what it dumped changed meanwhile). Right away at first, then waiting
// longer each time, up to about five seconds in all: after a thousand
// namespaces are deleted the kernel removes their veths' ends from the
// sandbox for seconds, in the background, and ten dumps in a row there
// were all interrupted (destroy then failed its last look).
func retry[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	wait, waited := time.Millisecond, time.Duration(0)
	for i := 0; ; i++ {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) || waited >= retryFor {
			return v, err
		}
		if i >= 3 {
			time.Sleep(wait)
			waited += wait
			wait = min(2*wait, 200*time.Millisecond)
		}
	}
}

// retryFor is how long retry keeps trying.
const retryFor = 5 * time.Second

func listLinks(h *netlink.Handle) ([]netlink.Link, error) {
	return retry(h.LinkList)
}

// ownedAlias reports whether alias marks an object of this lab, and returns
// the attributes after the mark ("peer=ns:name", "parent=ns:name").
func (k *Kernel) ownedAlias(alias string) (bool, map[string]string) {
	if alias != k.mark && !strings.HasPrefix(alias, k.mark+"|") {
		return false, nil
	}
	attrs := map[string]string{}
	for _, f := range strings.Split(alias, "|")[1:] {
		if key, v, ok := strings.Cut(f, "="); ok {
			attrs[key] = v
		}
	}
	return true, attrs
}

func (k *Kernel) linkAlias(l *reconcile.Link) string {
	a := k.mark
	if l.Peer != nil {
		a += "|peer=" + l.Peer.String()
	}
	if l.Parent != nil {
		a += "|parent=" + l.Parent.String()
	}
	if l.Kind == reconcile.KindBridge && l.MTU != 0 {
		a += "|mtu=set" // createLink sets it after creation: the kernel keeps it
	}
	if len(l.Addresses) > 0 {
		a += "|a=" + addrTags(l.Addresses)
	}
	return a
}

// maxAlias is the longest alias the kernel keeps (IFALIASZ - 1).
const maxAlias = 255

// withAttr returns alias with attribute key set to v ("" removes it).
func withAttr(alias, key, v string) string {
	parts := strings.Split(alias, "|")
	out := parts[:1]
	for _, f := range parts[1:] {
		if k, _, _ := strings.Cut(f, "="); k != key {
			out = append(out, f)
		}
	}
	if v != "" {
		out = append(out, key+"="+v)
	}
	return strings.Join(out, "|")
}

func joinSet(set map[string]bool) string {
	s := make([]string, 0, len(set))
	for v := range set {
		s = append(s, v)
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

// halfMade reports a link made by a run of ours that was killed before
// it could set the alias: the group is set in the creating message itself,
// and the lab noted that it was about to make it (making.go).
func (k *Kernel) halfMade(a *netlink.LinkAttrs, short string) bool {
	return a.Alias == "" && a.Group == k.group && k.isMaking(short, a.Name)
}

// ownsLink reports whether a link in namespace short is the lab's, whole
// or half-made.
func (k *Kernel) ownsLink(a *netlink.LinkAttrs, short string) bool {
	owned, _ := k.ownedAlias(a.Alias)
	return owned || k.halfMade(a, short)
}

func parseRef(s string) *reconcile.Ref {
	ns, name, ok := strings.Cut(s, ":")
	if !ok {
		return nil
	}
	return &reconcile.Ref{NS: ns, Name: name}
}

// Observe implements reconcile.Kernel.
func (k *Kernel) Observe(ctx context.Context, q reconcile.Query) (*reconcile.State, error) {
	k.reap()
	k.readMaking()
	k.mu.Lock()
	clear(k.unready)
	k.mu.Unlock()
	names := map[string]bool{reconcile.HostNS: true}
	for _, n := range q.Namespaces {
		names[n] = true
	}
	// Namespaces this lab owns that the topology no longer names.
	pinned, err := ListNamed(k.opt.Prefix)
	if err != nil {
		return nil, err
	}
	for _, p := range pinned {
		short := strings.TrimPrefix(p, k.opt.Prefix)
		if names[short] || short == "" || short == reconcile.HostNS || p == k.opt.Netns {
			continue
		}
		names[short] = false // to check
	}
	order := make([]string, 0, len(names))
	for n := range names {
		order = append(order, n)
	}
	sort.Strings(order)

	s := reconcile.NewState()
	idx := map[reconcile.Ref]obsLink{}
	var mu sync.Mutex
	records := k.recorded()
	err = parallel(ctx, len(order), 16, func(i int) error {
		short := order[i]
		if !names[short] {
			// Found under /run/netns with our prefix: read the whole
			// namespace only if its lo carries our mark.
			mine, err := k.ownsNamespace(short)
			var hp *halfPinError
			if errors.As(err, &hp) && hp.pin.ownedBy(k.mark) {
				mine, err = true, nil // observeNS reports it as stale
			}
			if err != nil || !mine {
				k.forget(short) // gone meanwhile, or someone else's
				return nil
			}
		}
		// The keys of the record of what the lab's sysctls were before it
		// set them are read too: those the file dropped go back.
		keys, rec := q.Sysctls[short], map[string]string(nil)
		var fromRecord []string
		if records[short] {
			if rec = k.readRecord(short); len(rec) > 0 {
				keys = slices.Clone(keys)
				for key := range rec {
					if !strings.HasPrefix(key, "@") && !slices.Contains(keys, key) {
						keys = append(keys, key)
						fromRecord = append(fromRecord, key)
					}
				}
			}
		}
		// And in host, the keys other labs of the sandbox set: a plan
		// that writes a key rewriting them (ip_forward) writes theirs
		// again, as they are.
		var siblings, sibIface map[string]string
		var sibRead []string // keys read for them alone
		if short == reconcile.HostNS {
			siblings, sibIface = k.siblingsKeys(short)
			if len(siblings)+len(sibIface) > 0 {
				keys = slices.Clone(keys)
				for _, m := range []map[string]string{siblings, sibIface} {
					for key := range m {
						if !slices.Contains(keys, key) {
							keys = append(keys, key)
							sibRead = append(sibRead, key)
						}
					}
				}
			}
		}
		ns, veths, err := k.observeNS(short, keys, q.IPv6Switch[short], q.NAT[short], q.Impair[short])
		if ns != nil && len(rec) > 0 {
			ns.SysctlsBefore = notesOfNow(rec, ns)
			// A note of an interface gone, read by name, is of another
			// interface by that name now, if any: not the lab's business.
			for _, key := range fromRecord {
				if _, ok := ns.SysctlsBefore[key]; !ok {
					delete(ns.Sysctls, key)
				}
			}
			// A note found under an interface's name now (renamed by a
			// run killed before it moved the notes) is read under it.
			var more []string
			for key := range ns.SysctlsBefore {
				if _, ok := ns.Sysctls[key]; !ok {
					more = append(more, key)
				}
			}
			if len(more) > 0 {
				if h, err := k.handle(short); err == nil {
					read, err := readSysctls(h.fd, more)
					k.release(h)
					if err == nil {
						maps.Copy(ns.Sysctls, read)
					}
				}
			}
		}
		if ns != nil && short == reconcile.HostNS {
			for key := range siblings {
				if ns.SysctlsShared == nil {
					ns.SysctlsShared = map[string]bool{}
				}
				ns.SysctlsShared[key] = true
			}
			// An interface's key is another lab's while the interface is
			// the one it was noted of (not another by its name since).
			for key, idx := range sibIface {
				if l := ns.Links[topology.SysctlIfname(strings.Split(key, ".")[3])]; l != nil && strconv.Itoa(l.Ifindex) == idx {
					if ns.SysctlsShared == nil {
						ns.SysctlsShared = map[string]bool{}
					}
					ns.SysctlsShared[key] = true
				} else if slices.Contains(sibRead, key) {
					delete(ns.Sysctls, key)
				}
			}
		}
		var hp *halfPinError
		if errors.As(err, &hp) {
			// A pin with no namespace on it: ours (a run was killed while
			// making or removing it) is stale, and the plan creates or
			// removes it; anyone else's is in the way.
			n := reconcile.NewNamespace(short, false)
			switch {
			case short == reconcile.HostNS && hp.pin.ownedBy(k.sandboxMark()):
				n.Absent = true
			case short != reconcile.HostNS && hp.pin.ownedBy(k.mark):
				n.Owned, n.Stale = true, true
			default:
				n.Broken = hp.Error()
			}
			mu.Lock()
			s.Namespaces[short] = n
			mu.Unlock()
			return nil
		}
		if errors.Is(err, errNoNetns) {
			if short == reconcile.HostNS {
				// --netns not created yet: an empty host.
				mu.Lock()
				s.Namespaces[short] = reconcile.NewNamespace(short, false)
				s.Namespaces[short].Absent = true
				mu.Unlock()
			}
			return nil
		}
		if err != nil {
			return err
		}
		mu.Lock()
		s.Namespaces[short] = ns
		for name, o := range veths {
			idx[reconcile.Ref{NS: short, Name: name}] = o
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	resolvePeers(s, idx)
	return s, nil
}

// resolvePeers checks each owned veth's recorded peer against the kernel:
// the two ends must name each other by ifindex. A peer that does not check
// out is forgotten, so the plan replaces the pair.
func resolvePeers(s *reconcile.State, idx map[reconcile.Ref]obsLink) {
	for nsName, ns := range s.Namespaces {
		for name, l := range ns.Links {
			if l.Kind != reconcile.KindVeth || l.Peer == nil {
				continue
			}
			me := reconcile.Ref{NS: nsName, Name: name}
			if s.NS(l.Peer.NS) == nil {
				continue // not observed: cannot check
			}
			p := s.Link(*l.Peer)
			a, b := idx[me], idx[*l.Peer]
			if p == nil || p.Kind != reconcile.KindVeth || p.Peer == nil || *p.Peer != me ||
				a.parentIndex != b.index || b.parentIndex != a.index {
				l.Peer = nil
			}
		}
	}
}

// ownsNamespace reads one link, lo, to tell whether a namespace is ours.
func (k *Kernel) ownsNamespace(short string) (bool, error) {
	h, err := k.handle(short)
	if err != nil {
		return false, err
	}
	defer k.release(h)
	lo, err := h.h.LinkByName("lo")
	if err != nil {
		return false, err
	}
	owned, _ := k.ownedAlias(lo.Attrs().Alias)
	return owned, nil
}

// parallel runs f(0..n-1) on up to workers goroutines, stopping at the
// first error.
func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	if workers > n {
		workers = n
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if first != nil || next >= n || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// observed links keep their kernel indexes until peers are resolved.
type obsLink struct{ index, parentIndex int }

func (k *Kernel) observeNS(short string, sysctls []string, ipv6Switch string, wantNAT, wantQdisc bool) (*reconcile.Namespace, map[string]obsLink, error) {
	// The IPv6 switch is read after the links, and only if they do not
	// show it (dumps.go); any other sysctl as the handle is opened.
	var switchKeys, others []string
	for _, key := range sysctls {
		if ipv6Switch != "" && slices.Contains(reconcile.IPv6Switch, key) {
			switchKeys = append(switchKeys, key)
		} else {
			others = append(others, key)
		}
	}
	h, sc, err := k.handleReading(short, others)
	if err != nil {
		return nil, nil, err
	}
	defer k.release(h)
	veths := map[string]obsLink{}
	// NAT is read where the file wants it, in the host, and in owned
	// namespaces whose lo carries the "nat" flag (ApplyNAT sets it): one
	// nftables dump fewer for every namespace without NAT.
	hasNAT := wantNAT || short == reconcile.HostNS
	kname := k.KernelName(short)
	inferred := false
	dumped, err := h.linkDump()
	if err != nil {
		return nil, nil, fmt.Errorf("list links in netns %q: %w", kname, err)
	}
	if len(switchKeys) > 0 {
		if ipv6SwitchFromLinks(dumped, ipv6Switch) {
			for _, key := range switchKeys {
				sc[key] = ipv6Switch
			}
			inferred = true
		} else {
			read, err := readSysctls(h.fd, switchKeys)
			if err != nil {
				return nil, nil, fmt.Errorf("netns %q: %w", kname, err)
			}
			maps.Copy(sc, read)
		}
	}
	ns := reconcile.NewNamespace(short, false)
	byIndex := map[int]string{}
	tags := map[string]map[string]bool{} // owned link -> its recorded address tags
	for _, d := range dumped {
		a := d.link.Attrs()
		byIndex[a.Index] = a.Name
		for _, alt := range a.AltNames {
			if ns.AltNames == nil {
				ns.AltNames = map[string]string{}
			}
			ns.AltNames[alt] = a.Name
		}
	}
	unready := 0
	running := map[int]bool{}
	for _, d := range dumped {
		l := d.link
		a := l.Attrs()
		if a.Name == "lo" {
			owned, attrs := k.ownedAlias(a.Alias)
			ns.Owned = short != reconcile.HostNS && owned
			ns.LabDefaults = owned || (short == reconcile.HostNS && k.opt.Netns != "" && a.Alias == k.sandboxMark())
			if other, ok := ParseMark(a.Alias); ok && !owned {
				ns.OtherLab = other.String()
			}
			hasNAT = hasNAT || attrs["nat"] != ""
			continue
		}
		owned, attrs := k.ownedAlias(a.Alias)
		half := k.halfMade(a, short)
		rl := &reconcile.Link{
			Name:     a.Name,
			Kind:     l.Type(),
			Owned:    owned || half,
			HalfMade: half,
			Up:       a.Flags&net.FlagUp != 0,
			MTU:      a.MTU,
			MAC:      a.HardwareAddr.String(),
			Ifindex:  a.Index,
		}
		if d.promote >= 0 {
			rl.OwnPromote = strconv.Itoa(min(d.promote, 1))
		}
		if a.MasterIndex != 0 {
			rl.Master = byIndex[a.MasterIndex]
		}
		switch v := l.(type) {
		case *netlink.Bridge:
			rl.MTUSet = attrs["mtu"] == "set"
			if owned {
				if d.stp == nil {
					return nil, nil, fmt.Errorf("read stp of bridge %q in netns %q: the kernel did not report the bridge's stp_state", a.Name, kname)
				}
				rl.STP = d.stp
			}
		case *netlink.Veth:
			if p := parseRef(attrs["peer"]); p != nil {
				rl.Peer = p
			}
			veths[a.Name] = obsLink{index: a.Index, parentIndex: a.ParentIndex}
		case *netlink.Macvlan:
			rl.Parent = parseRef(attrs["parent"])
			rl.Mode = macvlanModes[v.Mode]
		case *netlink.IPVlan:
			rl.Parent = parseRef(attrs["parent"])
			rl.Mode = ipvlanModes[v.Mode]
			rl.Flag = ipvlanFlags[v.Flag]
		case *netlink.Vxlan:
			x := &reconcile.VXLAN{VNI: v.VxlanId, Port: v.Port}
			if v.Group != nil {
				if v.Group.IsMulticast() {
					x.Group = v.Group.String()
				} else {
					x.Remote = v.Group.String()
				}
			}
			if v.SrcAddr != nil && !v.SrcAddr.IsUnspecified() {
				x.Local = v.SrcAddr.String()
			}
			if v.VtepDevIndex != 0 {
				x.Dev = byIndex[v.VtepDevIndex]
			}
			rl.VXLAN = x
		}
		ns.Links[a.Name] = rl
		if rl.Owned && a.RawFlags&(unix.IFF_UP|unix.IFF_LOWER_UP|unix.IFF_RUNNING) == unix.IFF_UP|unix.IFF_LOWER_UP {
			unready++
		}
		running[a.Index] = a.RawFlags&(unix.IFF_UP|unix.IFF_RUNNING) == unix.IFF_UP|unix.IFF_RUNNING
		if other, ok := ParseMark(a.Alias); ok && !owned {
			rl.OtherLab = other.String()
		}
		if owned {
			wantQdisc = wantQdisc || attrs[qdiscAttr] != ""
			tags[a.Name] = map[string]bool{}
			for _, t := range strings.Split(attrs["a"], ",") {
				tags[a.Name][t] = true
			}
		}
	}
	addrs, err := h.addrDump()
	if err != nil {
		return nil, nil, fmt.Errorf("list addresses in netns %q: %w", kname, err)
	}
	var v6OnRunning []string // the lab's IPv6 addresses on running links
	for _, a := range addrs {
		name := byIndex[a.LinkIndex]
		l := ns.Links[name]
		if name == "lo" && a.IPNet != nil && a.IP.To4() == nil && !a.IP.IsLoopback() {
			ns.HandIPv6 = append(ns.HandIPv6, canonIP(a.IP)+" on lo") // someone's, as the lab puts none there
		}
		if l == nil || a.IPNet == nil {
			continue
		}
		if a.IP.To4() == nil && a.IP.IsLinkLocalUnicast() {
			continue // the kernel's own fe80:: address
		}
		ones, _ := a.Mask.Size()
		ip := a.IP
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		cidr := fmt.Sprintf("%s/%d", ip, ones)
		if ip.To4() != nil && a.Flags&unix.IFA_F_SECONDARY == 0 {
			l.Primaries = append(l.Primaries, cidr)
		}
		if l.Owned && !tags[name][addrTag(cidr)] {
			l.Foreign = append(l.Foreign, cidr) // not added by the lab
			continue
		}
		l.Addresses = append(l.Addresses, cidr)
		if l.Owned && ip.To4() == nil && running[a.LinkIndex] {
			v6OnRunning = append(v6OnRunning, ip.String())
		}
	}
	routes, locals, otherV6, err := h.routeDump()
	if err != nil {
		return nil, nil, fmt.Errorf("list routes in netns %q: %w", kname, err)
	}
	ns.HandIPv6 = append(ns.HandIPv6, otherV6...)
	// The kernel routes to a new IPv6 address (its local route) only once
	// its address configuration work has run, after the address is added,
	// even with nodad: until then the address is listed but unreachable.
	for _, ip := range v6OnRunning {
		if !locals[ip] {
			unready++
		}
	}
	k.mu.Lock()
	if unready > 0 {
		k.unready[short] = unready
	} else {
		delete(k.unready, short)
	}
	k.mu.Unlock()
	// The routes the kernel makes for the lab's addresses: their local
	// routes, and on up links those to the subnets of the primary IPv4
	// addresses and of its IPv6 addresses. One gone (deleted by hand) is
	// noted on the link, and the plan adds the lab's addresses again.
	kernelRoutes := map[string]bool{}
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL && r.Type == unix.RTN_UNICAST && r.Dst != nil {
			kernelRoutes[byIndex[r.LinkIndex]+" "+canonNet(r.Dst)] = true
		}
	}
	for name, l := range ns.Links {
		if !l.Owned {
			continue
		}
		// IPv4: each of the lab's addresses has its local route (table
		// local), up or down (the kernel keeps it on a link that is
		// down); without it the address does not answer (ip route flush
		// table local).
		for _, a := range l.Addresses {
			pre, err := netip.ParsePrefix(a)
			if err == nil && pre.Addr().Is4() && !locals[pre.Addr().String()] {
				l.NoLocal = append(l.NoLocal, a)
			}
		}
		if !l.Up {
			continue
		}
		for _, p := range l.Primaries {
			pre, err := netip.ParsePrefix(p)
			if err != nil || !pre.Addr().Is4() || pre.Bits() == 32 || pre.Masked().Addr().IsUnspecified() {
				continue
			}
			if !kernelRoutes[name+" "+pre.Masked().String()] {
				l.NoRoute = append(l.NoRoute, p)
			}
		}
		// IPv6: each of the lab's addresses has its prefix route (made
		// with the address, and again when the link comes up).
		for _, a := range l.Addresses {
			pre, err := netip.ParsePrefix(a)
			if err == nil && pre.Addr().Is6() && pre.Bits() < 128 && !kernelRoutes[name+" "+pre.Masked().String()] {
				l.NoRoute = append(l.NoRoute, a)
			}
		}
	}
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL || r.Type != unix.RTN_UNICAST {
			continue
		}
		rr := &reconcile.Route{Metric: r.Priority, Dev: byIndex[r.LinkIndex], Proto: r.Protocol.String()}
		if r.Dst == nil || isDefault(r.Dst) {
			if r.Family == unix.AF_INET6 {
				rr.Dst = "::/0"
			} else {
				rr.Dst = "0.0.0.0/0"
			}
		} else {
			if r.Dst.IP.To4() == nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
				continue
			}
			rr.Dst = canonNet(r.Dst)
		}
		if r.Gw != nil {
			rr.Via = canonIP(r.Gw)
		}
		rr.OnLink = r.Flags&int(netlink.FLAG_ONLINK) != 0
		if len(r.MultiPath) > 0 {
			// Nexthops added to a route (ip route append): not the
			// route the lab made, whoever made the first.
			rr.Dev = byIndex[r.MultiPath[0].LinkIndex]
			if r.MultiPath[0].Gw != nil {
				rr.Via = canonIP(r.MultiPath[0].Gw)
			}
		}
		if r.Protocol == RouteProtocol && len(r.MultiPath) == 0 {
			l := ns.Links[rr.Dev]
			rr.Owned = (short != reconcile.HostNS && ns.Owned) || (l != nil && l.Owned)
		}
		if !rr.Owned {
			rr.Proto = protoName(r.Protocol)
		} else {
			rr.Proto = ""
		}
		if prev := ns.Routes[rr.Key()]; prev != nil && (prev.Owned || !rr.Owned) {
			// Two routes with one destination and metric (another added
			// with ip route append): the lab's stands for the key, else
			// the first listed; neither is taken for the other.
			continue
		}
		ns.Routes[rr.Key()] = rr
	}
	if wantQdisc {
		if err := h.ensure(); err != nil {
			return nil, nil, fmt.Errorf("netlink handle in netns %q: %w", kname, err)
		}
		if err := observeQdiscs(h, ns, byIndex); err != nil {
			return nil, nil, fmt.Errorf("list qdiscs in netns %q: %w", kname, err)
		}
	}
	if hasNAT {
		if err := k.observeNAT(h, ns); err != nil {
			return nil, nil, fmt.Errorf("netns %q: %w", kname, err)
		}
	}
	for _, k := range reconcile.IPv6Switch {
		if _, ok := sc[k]; !ok && slices.Contains(sysctls, k) {
			sc[k] = "1" // no IPv6 in this kernel at all: it is off
		}
	}
	ns.Sysctls = sc
	ns.IPv6Inferred = inferred
	return ns, veths, nil
}

// WaitReady waits, at most max, until every link of the lab that is up
// and has carrier is running too, and every IPv6 address of the lab on a
// running link has its local route, in the namespaces where the last
// Observe saw one that had not, and reports how many still have not.
//
// The kernel learns of a carrier through linkwatch, which may put the
// event off for up to a second; until then the link's operational state
// is not up, IPv6 does not count the interface ready, and packets to its
// addresses go unanswered (an outside audit: a bridge brought up by an
// edit, with an IPv6 address and a port, answered its first neighbour
// solicitation only a second later; the check run right after the apply
// failed 10 times in 10); and a new IPv6 address's local route is added by
// the address configuration work after the address, even with nodad.
// Apply returns once both are done.
func (k *Kernel) WaitReady(ctx context.Context, max time.Duration) int {
	deadline := time.Now().Add(max)
	for {
		k.mu.Lock()
		names, left := make([]string, 0, len(k.unready)), 0
		for n, c := range k.unready {
			names, left = append(names, n), left+c
		}
		k.mu.Unlock()
		if left == 0 || !time.Now().Before(deadline) {
			return left
		}
		select {
		case <-ctx.Done():
			return left
		case <-time.After(10 * time.Millisecond):
		}
		for _, short := range names {
			if _, _, err := k.observeNS(short, nil, "", false, false); err != nil {
				k.mu.Lock()
				delete(k.unready, short) // gone: nothing to wait for
				k.mu.Unlock()
			}
		}
	}
}

func protoName(p netlink.RouteProtocol) string {
	switch p {
	case unix.RTPROT_BOOT:
		return "boot"
	case unix.RTPROT_STATIC:
		return "static"
	case unix.RTPROT_RA:
		return "ra"
	case unix.RTPROT_DHCP:
		return "dhcp"
	}
	return fmt.Sprintf("%d", int(p))
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0 && n.IP.IsUnspecified()
}

func canonIP(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.String()
}

func canonNet(n *net.IPNet) string {
	ones, _ := n.Mask.Size()
	return fmt.Sprintf("%s/%d", canonIP(n.IP.Mask(n.Mask)), ones)
}

var (
	macvlanModes = map[netlink.MacvlanMode]string{
		netlink.MACVLAN_MODE_PRIVATE: "private", netlink.MACVLAN_MODE_VEPA: "vepa",
		netlink.MACVLAN_MODE_BRIDGE: "bridge", netlink.MACVLAN_MODE_PASSTHRU: "passthru",
		netlink.MACVLAN_MODE_SOURCE: "source",
	}
	ipvlanModes = map[netlink.IPVlanMode]string{
		netlink.IPVLAN_MODE_L2: "l2", netlink.IPVLAN_MODE_L3: "l3", netlink.IPVLAN_MODE_L3S: "l3s",
	}
	ipvlanFlags = map[netlink.IPVlanFlag]string{
		netlink.IPVLAN_FLAG_BRIDGE: "bridge", netlink.IPVLAN_FLAG_PRIVATE: "private", netlink.IPVLAN_FLAG_VEPA: "vepa",
	}
)
