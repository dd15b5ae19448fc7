package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// EtcNetns is where iproute2 keeps per-namespace /etc files: `ip netns
// exec NAME` (and netplan-lab exec and shell) bind-mounts
// /etc/netns/NAME/hosts over /etc/hosts.
var EtcNetns = "/etc/netns"

// hostsHeader marks a hosts file as the lab's: destroy removes only those.
func hostsHeader(k *linux.Kernel) string {
	return "# " + k.Mark() + " (written by netplan-lab apply; destroy removes it)\n"
}

// HostsFile is the hosts file every namespace of the lab sees: each
// namespace's short name stands for its first address, and NS-IF for an
// interface's first address.
func HostsFile(t *topology.Topology) string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	seen := map[string]bool{}
	names := []string{}
	if t.Namespace(topology.Host) == nil {
		names = append(names, topology.Host)
	}
	for _, n := range t.Namespaces {
		names = append(names, n.Name)
	}
	for _, ns := range names {
		if a, _, ok := t.FirstAddr(ns); ok && !seen[ns] {
			seen[ns] = true
			fmt.Fprintf(&b, "%s\t%s\n", a, ns)
		}
	}
	for _, i := range t.Interfaces() {
		a, ok := t.IfaceAddr(i.Namespace, i.Name)
		name := i.Namespace + "-" + i.Name
		if ok && !seen[name] {
			seen[name] = true
			fmt.Fprintf(&b, "%s\t%s\n", a, name)
		}
	}
	return b.String()
}

// hostsNamespaces are the kernel names of the namespaces that get the
// lab's hosts file: every one the lab makes, and its sandbox. Never the
// machine's own /etc/hosts.
func (l *Lab) hostsNamespaces(t *topology.Topology) []string {
	var out []string
	if l.opt.Netns != "" {
		out = append(out, l.k.KernelName(reconcile.HostNS))
	}
	for _, n := range t.Namespaces {
		if n.Name != reconcile.HostNS {
			out = append(out, l.k.KernelName(n.Name))
		}
	}
	return out
}

// WriteHosts writes the hosts file of topology t (the lab's, or the one a
// watch applied) for each of the lab's namespaces, and removes those of
// namespaces it no longer has. Apply, Update and Destroy do it themselves.
func (l *Lab) WriteHosts(t *topology.Topology) error { return l.writeHosts(t) }

func (l *Lab) writeHosts(t *topology.Topology) error {
	content := []byte(hostsHeader(l.k) + HostsFile(t))
	want := map[string]bool{}
	for _, name := range l.hostsNamespaces(t) {
		want[name] = true
		dir := filepath.Join(EtcNetns, name)
		path := filepath.Join(dir, "hosts")
		if old, err := os.ReadFile(path); err == nil {
			if bytes.Equal(old, content) {
				continue
			}
			if !bytes.HasPrefix(old, []byte(hostsHeader(l.k))) {
				continue // someone else's: left alone
			}
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		tmp := path + ".netplan-lab.tmp"
		if err := os.WriteFile(tmp, content, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return l.removeHosts(want)
}

// removeHosts removes the lab's hosts files except those of keep, and
// their directories when nothing else is in them.
func (l *Lab) removeHosts(keep map[string]bool) error {
	entries, err := os.ReadDir(EtcNetns)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	header := []byte(hostsHeader(l.k))
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		dir := filepath.Join(EtcNetns, e.Name())
		path := filepath.Join(dir, "hosts")
		b, err := os.ReadFile(path)
		if err != nil || !bytes.HasPrefix(b, header) {
			continue
		}
		if err := os.Remove(path); err != nil {
			return err
		}
		_ = os.Remove(dir) // only if empty
	}
	if left, err := os.ReadDir(EtcNetns); err == nil && len(left) == 0 {
		_ = os.Remove(EtcNetns)
	}
	return nil
}
