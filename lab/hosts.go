package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// EtcNetns is where iproute2 keeps per-namespace /etc files: `ip netns
// exec NAME` (and netplan-lab exec and shell) bind-mounts
// /etc/netns/NAME/hosts over /etc/hosts.
var EtcNetns = "/etc/netns"

// A hosts file of netplan-lab starts with hostsHeader; each lab's names
// are in a section of their own, between "# BEGIN MARK" and "# END MARK",
// so labs sharing a sandbox share its file and each removes only its own.
const (
	hostsHeader   = "# netplan-lab hosts file: each lab's names between its BEGIN and END lines (apply writes them, destroy removes them)\n"
	hostsPreamble = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
)

type hostsSection struct{ mark, body string }

// parseHosts reads a file of ours into its sections; ok is false for a
// file that is someone else's.
func parseHosts(b []byte) (sections []hostsSection, ok bool) {
	text := string(b)
	if !strings.HasPrefix(text, hostsHeader) {
		return nil, false
	}
	cur, start := -1, 0 // the open section, and where its body starts
	for off := 0; off < len(text); {
		end := strings.IndexByte(text[off:], '\n') + 1
		if end == 0 {
			end = len(text) - off
		}
		line := text[off : off+end]
		switch {
		case strings.HasPrefix(line, "# BEGIN "):
			if cur >= 0 {
				sections[cur].body = text[start:off] // no END line before it
			}
			sections = append(sections, hostsSection{mark: strings.TrimSpace(strings.TrimPrefix(line, "# BEGIN "))})
			cur, start = len(sections)-1, off+end
		case strings.HasPrefix(line, "# END ") && cur >= 0:
			sections[cur].body = text[start:off]
			cur = -1
		}
		off += end
	}
	if cur >= 0 {
		sections[cur].body = text[start:] // no END line: the rest is its body
	}
	return sections, true
}

func formatHosts(sections []hostsSection) []byte {
	var b strings.Builder
	b.WriteString(hostsHeader + hostsPreamble)
	for _, sec := range sections {
		fmt.Fprintf(&b, "# BEGIN %s\n%s# END %s\n", sec.mark, sec.body, sec.mark)
	}
	return []byte(b.String())
}

// HostsFile is the hosts file every namespace of the lab sees: each
// namespace's short name stands for its first address, and NS-IF for an
// interface's first address.
func HostsFile(t *topology.Topology) string {
	var b strings.Builder
	seen := map[string]bool{}
	names := []string{}
	ix := t.Index()
	if ix.Namespace(topology.Host) == nil {
		names = append(names, topology.Host)
	}
	for _, n := range t.Namespaces {
		names = append(names, n.Name)
	}
	for _, ns := range names {
		if a, _, ok := ix.FirstAddr(ns); ok && !seen[ns] {
			seen[ns] = true
			fmt.Fprintf(&b, "%s\t%s\n", a, ns)
		}
	}
	for _, i := range ix.Interfaces() {
		if len(i.Addresses) == 0 {
			continue
		}
		p, err := topology.ParseCIDR(i.Addresses[0])
		name := i.Namespace + "-" + i.Name
		if a := p.Addr(); err == nil && !seen[name] {
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
	mine := HostsFile(t)
	want := map[string]bool{}
	for _, name := range l.hostsNamespaces(t) {
		want[name] = true
		dir := filepath.Join(EtcNetns, name)
		path := filepath.Join(dir, "hosts")
		var sections []hostsSection
		old, err := os.ReadFile(path)
		if err == nil {
			var ok bool
			if sections, ok = parseHosts(old); !ok {
				continue // someone else's: left alone
			}
		}
		found := false
		for i := range sections {
			if sections[i].mark == l.k.Mark() {
				sections[i].body, found = mine, true
			}
		}
		if !found {
			sections = append(sections, hostsSection{l.k.Mark(), mine})
		}
		content := formatHosts(sections)
		if err == nil && bytes.Equal(old, content) {
			continue
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

// removeHosts removes the lab's section from every hosts file but those
// of keep; a file left with no section goes, and its directory when
// nothing else is in it.
func (l *Lab) removeHosts(keep map[string]bool) error {
	entries, err := os.ReadDir(EtcNetns)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		dir := filepath.Join(EtcNetns, e.Name())
		path := filepath.Join(dir, "hosts")
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		sections, ok := parseHosts(b)
		if !ok {
			continue
		}
		var rest []hostsSection
		for _, sec := range sections {
			if sec.mark != l.k.Mark() {
				rest = append(rest, sec)
			}
		}
		switch {
		case len(rest) == len(sections):
			continue // not ours
		case len(rest) > 0:
			if err := os.WriteFile(path, formatHosts(rest), 0o644); err != nil {
				return err
			}
		default:
			if err := os.Remove(path); err != nil {
				return err
			}
			_ = os.Remove(dir) // only if empty
		}
	}
	if left, err := os.ReadDir(EtcNetns); err == nil && len(left) == 0 {
		_ = os.Remove(EtcNetns)
	}
	return nil
}
