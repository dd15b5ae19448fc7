package linux

import (
	"context"
	"os"
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

	// A veth's host end, made by the change of its other end's namespace,
	// starts with "default" too (an audit: it was not seen as made).
	_, err = reconcile.Reconcile(context.Background(), k, desiredOf(t, `name: vx6
namespaces:
  c1: {}
links:
  - a: {namespace: c1, name: eth0}
    b: {namespace: host, name: vh}
vxlans:
  - {namespace: host, name: vx0, vni: 42, remote: "fd00::2", dev: vh}
`), reconcile.ExecOptions{})
	if err == nil || !strings.Contains(err.Error(), `IPv6 is off on its dev "vh"`) {
		t.Errorf("a VXLAN over a new veth end with IPv6 off by default: %v", err)
	}

	// An existing dev with IPv6 on, though "default" is off, takes a VXLAN
	// with only an IPv6 local address, in the same apply as a change to
	// the dev (an audit: a changed dev was taken for a new one, and a
	// valid file refused).
	if _, err := reconcile.Reconcile(context.Background(), k, desiredOf(t, `name: vx6
namespaces:
  c1: {}
bridges:
  - {name: br0}
`), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := writeSysctl(host, "net.ipv6.conf.br0.disable_ipv6", "0"); err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Reconcile(context.Background(), k, desiredOf(t, `name: vx6
namespaces:
  c1: {}
bridges:
  - {name: br0, mtu: 1400}
vxlans:
  - {namespace: host, name: vx0, vni: 42, local: "fd00::1", remote: "fd00::2", dev: br0}
`), reconcile.ExecOptions{}); err != nil {
		t.Errorf("a VXLAN over a dev with IPv6 on: %v", err)
	}

	// The same over a dev with a dot in its name, which no dotted key
	// reaches (an audit: taken for a new dev, read from "default").
	dotted := `name: vx6
namespaces:
  c1: {}
bridges:
  - {name: br.0}
`
	if _, err := reconcile.Reconcile(context.Background(), k, desiredOf(t, dotted), reconcile.ExecOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := InNetns(host, func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/br.0/disable_ipv6", []byte("0"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Reconcile(context.Background(), k, desiredOf(t, dotted+`vxlans:
  - {namespace: host, name: vx0, vni: 42, remote: "fd00::2", dev: br.0}
`), reconcile.ExecOptions{}); err != nil {
		t.Errorf("a VXLAN over a dev named br.0 with IPv6 on: %v", err)
	}
}
