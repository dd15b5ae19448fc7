package linux

import (
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TestDumpsMatchTheNetlinkLibrary: observation's own dumps (links with
// disable_ipv6, addresses, main-table routes) read what the netlink
// library reads, on a namespace with a bit of everything, and each
// interface's disable_ipv6 is what /proc/sys says.
func TestDumpsMatchTheNetlinkLibrary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a throwaway network namespace)")
	}
	var fd netns.NsHandle
	if err := inNetnsNew(func(f netns.NsHandle) { fd = f }); err != nil {
		t.Fatal(err)
	}
	h := &nsHandle{fd: fd}
	defer h.close()
	if err := h.ensure(); err != nil {
		t.Fatal(err)
	}
	nh := h.h
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	must("bridge", nh.LinkAdd(br))
	must("veth", nh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "v0", MTU: 1400}, PeerName: "v1"}))
	v0, _ := nh.LinkByName("v0")
	v1, _ := nh.LinkByName("v1")
	must("master", nh.LinkSetMaster(v1, br))
	must("alias", nh.LinkSetAlias(v0, "some alias"))
	must("altname", nh.LinkAddAltName(v0, "v0-other-name"))
	lo, _ := nh.LinkByName("lo")
	for _, l := range []netlink.Link{lo, br, v0, v1} {
		must("up", nh.LinkSetUp(l))
	}
	// Kinds the dump leaves to the library's parser.
	must("macvlan", nh.LinkAdd(&netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "mv0", ParentIndex: br.Attrs().Index}, Mode: netlink.MACVLAN_MODE_BRIDGE}))
	must("vxlan", nh.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx0", Alias: "over"}, VxlanId: 42, Port: 4789, Group: net.ParseIP("10.2.0.9")}))
	must("small mtu", nh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tiny", MTU: 1000}, PeerName: "tiny1"}))
	addr := func(l netlink.Link, cidr, peer string, flags int) {
		a, err := netlink.ParseAddr(cidr)
		must(cidr, err)
		if peer != "" {
			a.Peer, err = netlink.ParseIPNet(peer)
			must(peer, err)
		}
		a.Flags = flags
		must("address "+cidr, nh.AddrAdd(l, a))
	}
	addr(v0, "10.1.0.1/24", "", 0)
	addr(v0, "10.1.0.2/24", "", 0) // a secondary
	addr(v0, "192.168.9.1/32", "192.168.9.2/32", 0)
	addr(v0, "fd00::1/64", "", unix.IFA_F_NODAD)
	addr(br, "10.2.0.1/16", "", 0)
	addr(br, "fd01::1/64", "", unix.IFA_F_NODAD)
	_, def4, _ := net.ParseCIDR("0.0.0.0/0")
	_, dst, _ := net.ParseCIDR("10.9.0.0/16")
	_, dst6, _ := net.ParseCIDR("fd09::/48")
	_, black, _ := net.ParseCIDR("10.66.0.0/16")
	_, mp, _ := net.ParseCIDR("10.67.0.0/16")
	for _, r := range []*netlink.Route{
		{Dst: def4, Gw: net.ParseIP("10.1.0.254"), LinkIndex: v0.Attrs().Index},
		{Dst: dst, Gw: net.ParseIP("10.2.0.9"), Priority: 50, Protocol: RouteProtocol},
		{Dst: dst, LinkIndex: v0.Attrs().Index, Priority: 60},
		{Dst: dst6, Gw: net.ParseIP("fd00::9"), LinkIndex: v0.Attrs().Index},
		{Dst: black, Type: unix.RTN_BLACKHOLE},
		{Dst: dst, Gw: net.ParseIP("10.1.0.77"), LinkIndex: v0.Attrs().Index, Flags: int(netlink.FLAG_ONLINK), Priority: 70},
		{Dst: dst, LinkIndex: v0.Attrs().Index, Table: 100}, // not the main table
		{Dst: mp, MultiPath: []*netlink.NexthopInfo{{LinkIndex: v0.Attrs().Index, Gw: net.ParseIP("10.1.0.31")}, {LinkIndex: br.Attrs().Index, Gw: net.ParseIP("10.2.0.32")}}},
	} {
		must(fmt.Sprintf("route %v", r), nh.RouteAdd(r))
	}
	must("disable_ipv6 on v1", InNetns(fd, func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/v1/disable_ipv6", []byte("1"), 0o644)
	}))

	must("bridge br1", nh.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br1"}}))
	must("stp on br0", h.setSTP(br.Attrs().Index, true))

	// The kernel goes on changing the namespace after the last call
	// above (IPv6 link-local addresses, their DAD flags and routes come
	// and go on timers), so each comparison reads the library before and
	// after observation's dump and uses a moment when the two agree.

	// Links.
	linkKey := func(l netlink.Link) string {
		a := l.Attrs()
		return fmt.Sprintf("%s/%s idx=%d master=%d parent=%d mtu=%d up=%v alias=%q mac=%s group=%d altnames=%q", a.Name, l.Type(), a.Index, a.MasterIndex, a.ParentIndex, a.MTU, a.Flags&net.FlagUp != 0, a.Alias, a.HardwareAddr, a.Group, strings.Join(a.AltNames, ","))
	}
	var got []dumpedLink
	ws, gs := stableRead(t, "links", func() []string {
		want, err := nh.LinkList()
		must("LinkList", err)
		var ws []string
		for _, l := range want {
			ws = append(ws, linkKey(l))
		}
		return ws
	}, func() []string {
		var err error
		got, err = h.linkDump()
		must("linkDump", err)
		var gs []string
		for _, d := range got {
			gs = append(gs, linkKey(d.link))
		}
		return gs
	})
	for _, d := range got {
		// disable_ipv6 as /proc says it.
		var proc string
		must("read disable_ipv6", InNetns(fd, func() error {
			b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + d.link.Attrs().Name + "/disable_ipv6")
			if os.IsNotExist(err) {
				proc = "-1" // no IPv6 on it: an MTU below 1280
				return nil
			}
			proc = strings.TrimSpace(string(b))
			return err
		}))
		switch name := d.link.Attrs().Name; {
		case name == "br0" && (d.stp == nil || !*d.stp), name == "br1" && (d.stp == nil || *d.stp), name != "br0" && name != "br1" && d.stp != nil:
			t.Errorf("%s: stp from the dump %v; br0 has it on, br1 off, and nothing else has any", name, d.stp)
		}
		if fmt.Sprint(d.disableIPv6) != proc {
			t.Errorf("%s: disable_ipv6 from the dump %d, /proc %s", d.link.Attrs().Name, d.disableIPv6, proc)
		}
	}
	sameSets(t, "links", ws, gs)

	// Addresses.
	addrKey := func(a netlink.Addr) string {
		return fmt.Sprintf("%d %s flags=%#x", a.LinkIndex, a.IPNet, a.Flags)
	}
	ws, gs = stableRead(t, "addresses", func() []string {
		wa, err := nh.AddrList(nil, netlink.FAMILY_ALL)
		must("AddrList", err)
		var ws []string
		for _, a := range wa {
			ws = append(ws, addrKey(a))
		}
		return ws
	}, func() []string {
		ga, err := h.addrDump()
		must("addrDump", err)
		var gs []string
		for _, a := range ga {
			gs = append(gs, addrKey(a))
		}
		return gs
	})
	sameSets(t, "addresses", ws, gs)

	// Routes of the main table.
	routeKey := func(r netlink.Route) string {
		d := "default"
		if r.Dst != nil && !isDefault(r.Dst) {
			d = r.Dst.String()
		}
		nhs := ""
		for _, nh := range r.MultiPath {
			nhs += fmt.Sprintf(" nexthop(dev=%d via=%v)", nh.LinkIndex, nh.Gw)
		}
		return fmt.Sprintf("fam=%d %s via=%v dev=%d metric=%d proto=%d type=%d flags=%#x table=%d%s", r.Family, d, r.Gw, r.LinkIndex, r.Priority, r.Protocol, r.Type, r.Flags, r.Table, nhs)
	}
	var gr []netlink.Route
	ws, gs = stableRead(t, "routes", func() []string {
		wr, err := nh.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		must("RouteListFiltered", err)
		var ws []string
		for _, r := range wr {
			ws = append(ws, routeKey(r))
		}
		return ws
	}, func() []string {
		var err error
		gr, _, _, err = h.routeDump()
		must("routeDump", err)
		var gs []string
		for _, r := range gr {
			gs = append(gs, routeKey(r))
		}
		return gs
	})
	sameSets(t, "routes", ws, gs)
	if len(gr) < 9 || !strings.Contains(strings.Join(gs, "\n"), "nexthop(") {
		t.Errorf("only %d routes read: the test's own routes are missing\n%s", len(gr), strings.Join(gs, "\n"))
	}
}

// stableRead reads lib, ours, lib again until the two library reads
// agree (the namespace held still while ours read it) and returns the
// library's read and ours of that moment.
func stableRead(t *testing.T, what string, lib, ours func() []string) (want, got []string) {
	t.Helper()
	for try := 0; try < 50; try++ {
		before := lib()
		got = ours()
		after := lib()
		sort.Strings(before)
		sort.Strings(after)
		if strings.Join(before, "\n") == strings.Join(after, "\n") {
			return before, got
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: the kernel never held still for two library reads in 5 s", what)
	return nil, nil
}

func sameSets(t *testing.T, what string, want, got []string) {
	t.Helper()
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Errorf("%s differ\nthe netlink library:\n  %s\nobservation's dump:\n  %s", what, strings.Join(want, "\n  "), strings.Join(got, "\n  "))
	}
}
