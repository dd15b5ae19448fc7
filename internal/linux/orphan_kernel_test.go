package linux

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// holdAndUnpin starts a process in the lab's namespace short (from a
// thread in it) and removes the namespace's pin, as `ip netns del` does:
// the namespace lives on, unnamed. It returns the process, and a netlink
// handle in that namespace; the process is killed when the test ends.
func holdAndUnpin(t *testing.T, k *Kernel, short string) (*exec.Cmd, *netlink.Handle) {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("needs sleep(1) to hold a namespace")
	}
	fd, err := k.OpenNetns(short)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	p := exec.Command(sleep, "60")
	if err := InNetns(fd, p.Start); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Process.Kill()
		p.Wait()
	})
	k.forget(short)
	if err := DeleteNamed(k.KernelName(short)); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(fd), unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return p, h
}

// TestOrphanMacvlanOfAHeldNamespace: a lab namespace deleted by hand (its
// pin removed, as `ip netns del` does) while a process is in it keeps
// its macvlan on the host's bridge, with the MAC the lab derives for it;
// the next apply makes the namespace and the macvlan again, which needs
// that MAC: it removes the orphan macvlan (the lab's, by its mark) and
// succeeds, and leaves the process and its namespace otherwise alone.
func TestOrphanMacvlanOfAHeldNamespace(t *testing.T) {
	k := kernelFor(t, "orphan")
	want := desiredOf(t, `name: orphan
namespaces:
  c1: {}
bridges:
  - {name: br0, addresses: [10.77.9.1/24]}
macvlans:
  - {namespace: c1, name: m0, parent: "host:br0", addresses: [10.77.9.2/24]}
`)
	ctx := context.Background()
	if _, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	// The first orphan's macvlan is down: it holds no MAC, and the lab
	// is made again beside it without touching it.
	_, h1 := holdAndUnpin(t, k, "c1")
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
	p2, h2 := holdAndUnpin(t, k, "c1")
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

// TestOrphanMacvlanOfANamespaceHeldOpen: the same when the namespace is
// held open by a process that is not in it (as a shell's `exec
// 3</run/netns/x` before `ip netns del x` holds it), not run in.
func TestOrphanMacvlanOfANamespaceHeldOpen(t *testing.T) {
	k := kernelFor(t, "orphanfd")
	want := desiredOf(t, `name: orphanfd
namespaces:
  c1: {}
bridges:
  - {name: br0, addresses: [10.77.11.1/24]}
macvlans:
  - {namespace: c1, name: m0, parent: "host:br0", addresses: [10.77.11.2/24]}
`)
	ctx := context.Background()
	if _, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("needs sleep(1) to hold a namespace")
	}
	fd, err := k.OpenNetns("c1")
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE) // a socket: not found by the scan
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	f := os.NewFile(uintptr(fd), "c1")
	p := exec.Command(sleep, "60")
	p.ExtraFiles = []*os.File{f} // its fd 3; it runs where the test does
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Process.Kill()
		p.Wait()
	})
	f.Close()
	k.forget("c1")
	if err := DeleteNamed(k.KernelName("c1")); err != nil {
		t.Fatal(err)
	}
	res, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{})
	if err != nil {
		t.Fatalf("apply after c1 was deleted by hand while held open: %v", err)
	}
	if res.Applied == 0 {
		t.Fatal("nothing was made again: the test shows nothing")
	}
	if _, err := h.LinkByName("m0"); err == nil {
		t.Errorf("the namespace held open still has its m0")
	}
	if err := p.Process.Signal(unix.Signal(0)); err != nil {
		t.Errorf("the process holding the old c1 open: %v", err)
	}
}

// TestOrphanPassthruMacvlan: the same for a passthru macvlan, which takes
// its parent whole (a second one on it is EINVAL) and its parent's MAC:
// its orphan is found by the lab's mark, its name, the mode and the
// parent (an audit: the re-apply failed with EINVAL).
func TestOrphanPassthruMacvlan(t *testing.T) {
	k := kernelFor(t, "orphanpt")
	want := desiredOf(t, `name: orphanpt
namespaces:
  c1: {}
bridges:
  - {name: br0}
macvlans:
  - {namespace: c1, name: m0, parent: "host:br0", mode: passthru, addresses: [10.77.10.2/24]}
`)
	ctx := context.Background()
	if _, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	_, h := holdAndUnpin(t, k, "c1")
	if _, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{}); err != nil {
		t.Fatalf("apply after c1 was deleted by hand while held: %v", err)
	}
	if _, err := h.LinkByName("m0"); err == nil {
		t.Errorf("the held namespace still has its passthru m0")
	}
}
