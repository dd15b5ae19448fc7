package linux

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// TestOrphanMacvlanOfAHeldNamespace: a lab namespace deleted by hand (its
// pin removed, as `ip netns del` does) while a process is in it keeps
// its macvlan on the host's bridge, with the MAC the lab derives for it;
// the next apply makes the namespace and the macvlan again, which needs
// that MAC: it removes the orphan macvlan (the lab's, by its mark) and
// succeeds, and leaves the process and its namespace otherwise alone.
func TestOrphanMacvlanOfAHeldNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes namespaces")
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("needs sleep(1) to hold a namespace")
	}
	y := `name: orphan
namespaces:
  c1: {}
bridges:
  - {name: br0, addresses: [10.77.9.1/24]}
macvlans:
  - {namespace: c1, name: m0, parent: "host:br0", addresses: [10.77.9.2/24]}
`
	top, err := topology.Parse("orphan.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	want, err := reconcile.Desired(top)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%04x", rand.Intn(0xffff))
	k := New(Options{Name: top.Name, Prefix: "t" + id + "-", Netns: "npl-test-" + id})
	var holders []*exec.Cmd
	defer func() {
		for _, p := range holders {
			p.Process.Kill()
			p.Wait()
		}
		if _, err := reconcile.Reconcile(context.Background(), k, reconcile.Nothing(), reconcile.ExecOptions{}); err != nil {
			t.Errorf("destroy: %v", err)
		}
		if _, err := k.RemoveHostIfCreated(); err != nil {
			t.Error(err)
		}
		k.Close()
		_ = DeleteNamed("npl-test-" + id)
		if left, _ := ListNamed("t" + id + "-"); len(left) > 0 {
			t.Errorf("left behind: %v", left)
			for _, l := range left {
				_ = DeleteNamed(l)
			}
		}
	}()
	ctx := context.Background()
	if _, err := k.EnsureHost(); err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	// hold starts a process in c1 (from a thread in it) and deletes c1's
	// pin, as `ip netns del` does.
	hold := func() (*exec.Cmd, netns.NsHandle, *netlink.Handle) {
		t.Helper()
		c1, err := k.OpenNetns("c1")
		if err != nil {
			t.Fatal(err)
		}
		var p *exec.Cmd
		err = InNetns(c1, func() error {
			p = exec.Command(sleep, "60")
			return p.Start()
		})
		if err != nil {
			t.Fatal(err)
		}
		holders = append(holders, p)
		k.forget("c1")
		if err := DeleteNamed(k.KernelName("c1")); err != nil {
			t.Fatal(err)
		}
		h, err := netlink.NewHandleAt(c1, unix.NETLINK_ROUTE)
		if err != nil {
			t.Fatal(err)
		}
		return p, c1, h
	}
	// The first orphan's macvlan is down: it holds no MAC, and the lab
	// is made again beside it without touching it.
	_, fd1, h1 := hold()
	defer fd1.Close()
	defer h1.Close()
	m0, err := h1.LinkByName("m0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h1.LinkSetDown(m0); err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{}); err != nil {
		t.Fatalf("apply beside an orphan macvlan that is down: %v", err)
	}
	// The second one's is up, with the MAC the lab needs: it goes, and
	// only it (an audit: the first found, the down one, went instead, and
	// the apply failed).
	p2, fd2, h2 := hold()
	defer fd2.Close()
	defer h2.Close()
	res, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{})
	if err != nil {
		t.Fatalf("apply after c1 was deleted by hand while held: %v", err)
	}
	if res.Applied == 0 {
		t.Fatal("nothing was made again: the test shows nothing")
	}
	if _, err := h2.LinkByName("m0"); err == nil {
		t.Errorf("the second held namespace still has its m0")
	}
	if _, err := h1.LinkByName("m0"); err != nil {
		t.Errorf("the first held namespace's m0, down, was touched: %v", err)
	}
	if _, err := h2.LinkByName("lo"); err != nil {
		t.Errorf("the held namespace: %v", err)
	}
	if err := p2.Process.Signal(unix.Signal(0)); err != nil {
		t.Errorf("the process holding the old c1: %v", err)
	}
}
