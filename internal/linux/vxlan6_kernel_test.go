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

// TestHostVxlanOverIPv6WithIPv6Off: a VXLAN with an IPv6 group to make in
// host, over a dev that would have IPv6 off there (the lab never switches
// host's IPv6), is refused before anything changes, with the key to
// turn, instead of failing half-way (EPERM) and rolling back.
func TestHostVxlanOverIPv6WithIPv6Off(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes namespaces")
	}
	y := `name: vx6
namespaces:
  c1: {}
bridges:
  - {name: br0, addresses: [10.77.8.1/24]}
vxlans:
  - {namespace: host, name: vx0, vni: 42, group: "ff05::42", dev: br0}
`
	top, err := topology.Parse("vx6.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	want, err := reconcile.Desired(top)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%04x", rand.Intn(0xffff))
	k := New(Options{Name: top.Name, Prefix: "t" + id + "-", Netns: "npl-test-" + id})
	defer func() {
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
	if _, err := k.EnsureHost(); err != nil {
		t.Fatal(err)
	}
	host, err := k.OpenNetns(reconcile.HostNS)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	for _, key := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
		if err := writeSysctl(host, key, "1"); err != nil {
			t.Fatal(err)
		}
	}
	res, err := reconcile.Reconcile(context.Background(), k, want, reconcile.ExecOptions{})
	if err == nil || !strings.Contains(err.Error(), `IPv6 is off on its dev "br0"`) || !strings.Contains(err.Error(), "net.ipv6.conf.default.disable_ipv6 is 1") {
		t.Fatalf("want a refusal naming br0 and the key before any change, got: %v", err)
	}
	if res != nil && (res.Applied != 0 || res.RolledBack) {
		t.Errorf("%d changes applied, rolled back %v: the refusal came too late", res.Applied, res.RolledBack)
	}
}
