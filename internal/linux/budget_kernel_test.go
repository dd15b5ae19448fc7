package linux

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"testing"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// TestHandleBudget: a Kernel that may keep only a few namespace handles
// open builds, re-applies as a no-op and destroys a lab of more namespaces
// than that, and holds no more files open than its budget allows.
func TestHandleBudget(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes namespaces")
	}
	const n = 16
	var y strings.Builder
	y.WriteString("name: budget\nnamespaces:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&y, "  n%d: {}\n", i)
	}
	y.WriteString("bridges:\n  - {name: br0, addresses: [10.77.0.1/24]}\nlinks:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&y, "  - a: {namespace: n%d, name: eth0, addresses: [10.77.0.%d/24]}\n    b: {namespace: host, name: v%d, bridge: br0}\n", i, i+2, i)
	}
	top, err := topology.Parse("budget.yaml", []byte(y.String()))
	if err != nil {
		t.Fatal(err)
	}
	want, err := reconcile.Desired(top)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%04x", rand.Intn(0xffff))
	k := New(Options{Name: top.Name, Prefix: "t" + id + "-", Netns: "npl-test-" + id})
	k.budget = 4
	defer func() {
		k.Close()
		_ = DeleteNamed("npl-test-" + id)
		if left, _ := ListNamed("t" + id + "-"); len(left) > 0 {
			t.Errorf("left behind: %v", left)
			for _, l := range left {
				_ = DeleteNamed(l)
			}
		}
	}()
	fds := func() int {
		e, _ := os.ReadDir("/proc/self/fd")
		return len(e)
	}
	before := fds()
	ctx := context.Background()
	if _, err := k.EnsureHost(); err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(k.handles) > k.budget {
		t.Errorf("%d handles kept open, budget %d", len(k.handles), k.budget)
	}
	if open := fds() - before; open > k.budget*4+8 {
		t.Errorf("%d more files open after apply, for a budget of %d handles", open, k.budget)
	}
	res, err := reconcile.Reconcile(ctx, k, want, reconcile.ExecOptions{})
	if err != nil || res.Applied != 0 || !res.Plan.Empty() {
		t.Fatalf("re-apply: %v, %d changes:\n%v", err, res.Applied, res.Plan)
	}
	if _, err := reconcile.Reconcile(ctx, k, reconcile.Nothing(), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.RemoveHostIfCreated(); err != nil {
		t.Fatal(err)
	}
	for _, h := range k.handles {
		if h.users != 0 {
			t.Errorf("a handle is still marked in use by %d calls", h.users)
		}
	}
}
