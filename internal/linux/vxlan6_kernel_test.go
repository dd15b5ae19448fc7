package linux

import (
	"context"
	"strings"
	"testing"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// TestHostVxlanOverIPv6WithIPv6Off: a VXLAN with an IPv6 group to make in
// host, over a dev that would have IPv6 off there (the lab never switches
// host's IPv6), is refused before anything changes, with the key to
// turn, instead of failing half-way (EPERM) and rolling back.
func TestHostVxlanOverIPv6WithIPv6Off(t *testing.T) {
	k := kernelFor(t, "vx6")
	want := desiredOf(t, `name: vx6
namespaces:
  c1: {}
bridges:
  - {name: br0, addresses: [10.77.8.1/24]}
vxlans:
  - {namespace: host, name: vx0, vni: 42, group: "ff05::42", dev: br0}
`)
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
