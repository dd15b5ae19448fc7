package linux

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// TestRenamedBridgeIsAnnounced: a bridge renamed in the file is made
// again, with the MAC of its new name; apply tells the neighbours
// (gratuitous ARP), so an entry a container had for the gateway at the
// old MAC takes the new one at once instead of after about 30 s of
// silence (a new user's audit). So too when the old bridge stays, left to
// an address added to it by hand (an outside audit: nothing was sent,
// and the containers lost their gateway).
func TestRenamedBridgeIsAnnounced(t *testing.T) {
	for _, byHand := range []bool{false, true} {
		t.Run(map[bool]string{false: "the old bridge goes", true: "the old bridge stays for an address added by hand"}[byHand], func(t *testing.T) {
			k := kernelFor(t, "garp")
			ctx := context.Background()
			lab := "name: garp\nnamespaces:\n  c1: {}\nbridges:\n  - {name: gbr0, addresses: [10.77.0.1/24]}\nlinks:\n  - a: {namespace: c1, name: eth0, addresses: [10.77.0.2/24]}\n    b: {namespace: host, name: v0, bridge: gbr0}\n"
			if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, lab), reconcile.ExecOptions{}); err != nil {
				t.Fatal(err)
			}
			h, c := netlinkIn(t, k, reconcile.HostNS), netlinkIn(t, k, "c1")
			old, err := h.LinkByName("gbr0")
			if err != nil {
				t.Fatal(err)
			}
			if byHand {
				if err := addAddrByHand(h, old, "10.98.0.1/24"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { h.LinkDel(old) })
			}
			eth0, err := c.LinkByName("eth0")
			if err != nil {
				t.Fatal(err)
			}
			// The container knows its gateway, as after a ping.
			if err := c.NeighSet(&netlink.Neigh{LinkIndex: eth0.Attrs().Index, State: netlink.NUD_REACHABLE, IP: net.ParseIP("10.77.0.1"), HardwareAddr: old.Attrs().HardwareAddr}); err != nil {
				t.Fatal(err)
			}
			if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, strings.ReplaceAll(lab, "gbr0", "gbr1")), reconcile.ExecOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.LinkByName("gbr0"); (err == nil) != byHand {
				t.Fatalf("gbr0 after the rename: %v", err)
			}
			br, err := h.LinkByName("gbr1")
			if err != nil {
				t.Fatal(err)
			}
			if br.Attrs().HardwareAddr.String() == old.Attrs().HardwareAddr.String() {
				t.Fatal("the renamed bridge kept its MAC: nothing to announce")
			}
			if seen, ok := neighFollows(t, c, eth0.Attrs().Index, "10.77.0.1", br.Attrs().HardwareAddr.String()); !ok {
				t.Fatalf("c1 still has 10.77.0.1 at %s, the bridge is at %s", seen, br.Attrs().HardwareAddr)
			}
		})
	}
}

// addAddrByHand adds cidr to l as a person would (ip addr add).
func addAddrByHand(h *netlink.Handle, l netlink.Link, cidr string) error {
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	return h.AddrAdd(l, a)
}

// neighFollows waits (a moment: the announcement is on its way when apply
// returns, far less than the 30 s without it) until h's neighbour entry
// for ip on link index has MAC want; it returns the MAC last seen.
func neighFollows(t *testing.T, h *netlink.Handle, index int, ip, want string) (string, bool) {
	t.Helper()
	seen := ""
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		family := netlink.FAMILY_V4
		if strings.Contains(ip, ":") {
			family = netlink.FAMILY_V6
		}
		neighs, err := h.NeighList(index, family)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range neighs {
			if n.IP.String() == ip {
				seen = n.HardwareAddr.String()
			}
		}
		if seen == want {
			return seen, true
		}
	}
	return seen, false
}

// TestMovedAddressIsAnnounced: an address moved from one container to
// another (a VIP failing over) is announced from its new interface, so a
// neighbour that knew it at the old MAC follows at once (an outside
// audit: 37 s of lost pings). An IPv4 one by gratuitous ARP, an IPv6 one
// by an unsolicited neighbour advertisement.
func TestMovedAddressIsAnnounced(t *testing.T) {
	for _, vip := range []string{"10.78.0.50/24", "fd78::50/64"} {
		t.Run(vip, func(t *testing.T) {
			k := kernelFor(t, "garp2")
			ctx := context.Background()
			lab := "name: garp2\nnamespaces:\n  c1: {}\n  c2: {}\n  c3: {}\nbridges:\n  - {name: gbr, addresses: [10.78.0.1/24, \"fd78::1/64\"]}\nlinks:\n" +
				"  - a: {namespace: c1, name: eth0, addresses: [10.78.0.2/24, \"fd78::2/64\"]}\n    b: {namespace: host, name: v1, bridge: gbr}\n" +
				"  - a: {namespace: c2, name: eth0, addresses: [10.78.0.3/24, \"fd78::3/64\", VIP2]}\n    b: {namespace: host, name: v2, bridge: gbr}\n" +
				"  - a: {namespace: c3, name: eth0, addresses: [10.78.0.4/24, \"fd78::4/64\"VIP3]}\n    b: {namespace: host, name: v3, bridge: gbr}\n"
			at2 := strings.NewReplacer("VIP2", `"`+vip+`"`, "VIP3", "").Replace(lab)
			at3 := strings.NewReplacer(", VIP2", "", "VIP3", `, "`+vip+`"`).Replace(lab)
			if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, at2), reconcile.ExecOptions{}); err != nil {
				t.Fatal(err)
			}
			c1, c2, c3 := netlinkIn(t, k, "c1"), netlinkIn(t, k, "c2"), netlinkIn(t, k, "c3")
			mac := func(h *netlink.Handle) string {
				l, err := h.LinkByName("eth0")
				if err != nil {
					t.Fatal(err)
				}
				return l.Attrs().HardwareAddr.String()
			}
			eth0, err := c1.LinkByName("eth0")
			if err != nil {
				t.Fatal(err)
			}
			ip := strings.Split(vip, "/")[0]
			hw, _ := net.ParseMAC(mac(c2))
			if err := c1.NeighSet(&netlink.Neigh{LinkIndex: eth0.Attrs().Index, State: netlink.NUD_REACHABLE, IP: net.ParseIP(ip), HardwareAddr: hw}); err != nil {
				t.Fatal(err)
			}
			if _, err := reconcile.Reconcile(ctx, k, desiredOf(t, at3), reconcile.ExecOptions{}); err != nil {
				t.Fatal(err)
			}
			if seen, ok := neighFollows(t, c1, eth0.Attrs().Index, ip, mac(c3)); !ok {
				t.Fatalf("c1 has %s at %s, c3 (which has it now) is %s", ip, seen, mac(c3))
			}
		})
	}
}
