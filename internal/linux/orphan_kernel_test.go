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
	var holder *exec.Cmd
	defer func() {
		if holder != nil {
			holder.Process.Kill()
			holder.Wait()
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
	// A process in c1, started from a thread in it.
	c1, err := k.OpenNetns("c1")
	if err != nil {
		t.Fatal(err)
	}
	err = InNetns(c1, func() error {
		holder = exec.Command(sleep, "60")
		return holder.Start()
	})
	c1.Close()
	if err != nil {
		t.Fatal(err)
	}
	k.forget("c1")
	if err := DeleteNamed(k.KernelName("c1")); err != nil {
		t.Fatal(err)
	}
	res, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{})
	if err != nil {
		t.Fatalf("apply after c1 was deleted by hand while held: %v", err)
	}
	if res.Applied == 0 {
		t.Fatal("nothing was made again: the test shows nothing")
	}
	// The orphan's macvlan is gone; the held namespace is still there,
	// with its lo.
	held, err := netns.GetFromPath(fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	hh, err := netlink.NewHandleAt(held, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer hh.Close()
	if _, err := hh.LinkByName("m0"); err == nil {
		t.Errorf("the held namespace still has m0")
	}
	if _, err := hh.LinkByName("lo"); err != nil {
		t.Errorf("the held namespace: %v", err)
	}
	if err := holder.Process.Signal(unix.Signal(0)); err != nil {
		t.Errorf("the process holding the old c1: %v", err)
	}
}
