package linux

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// desiredOf is the desired state of topology y.
func desiredOf(t *testing.T, y string) *reconcile.State {
	t.Helper()
	top, err := topology.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	want, err := reconcile.Desired(top)
	if err != nil {
		t.Fatal(err)
	}
	return want
}

// planNow is what a plan of want against k says now.
func planNow(t *testing.T, k *Kernel, want *reconcile.State) *reconcile.Plan {
	t.Helper()
	obs, err := k.Observe(context.Background(), reconcile.QueryFor(want))
	if err != nil {
		t.Fatal(err)
	}
	return reconcile.Diff(want, obs)
}

// kernelFor is a Kernel for lab name under a prefix and sandbox of the
// test's own, with the sandbox made; when the test ends, the lab is
// destroyed and nothing of it is left. It skips without root.
func kernelFor(t *testing.T, name string) *Kernel {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes namespaces")
	}
	id := fmt.Sprintf("%04x", rand.Intn(0xffff))
	k := New(Options{Name: name, Prefix: "t" + id + "-", Netns: "npl-test-" + id})
	t.Cleanup(func() {
		if _, err := reconcile.Reconcile(context.Background(), k, reconcile.Nothing(), reconcile.ExecOptions{}); err != nil {
			t.Errorf("destroy: %v", err)
		}
		if _, err := k.RemoveHostIfCreated(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(k.recordDir()); err == nil {
			t.Errorf("destroy left the lab's sysctl records: %s", k.recordDir())
		}
		ForgetSandboxRecords("npl-test-" + id)
		k.Close()
		_ = DeleteNamed("npl-test-" + id)
		if left, _ := ListNamed("t" + id + "-"); len(left) > 0 {
			t.Errorf("left behind: %v", left)
			for _, l := range left {
				_ = DeleteNamed(l)
			}
		}
	})
	if _, err := k.EnsureHost(); err != nil {
		t.Fatal(err)
	}
	return k
}

// netlinkIn is a netlink handle in namespace short of k's lab, closed
// when the test ends.
func netlinkIn(t *testing.T, k *Kernel, short string) *netlink.Handle {
	t.Helper()
	fd, err := k.OpenNetns(short)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}
