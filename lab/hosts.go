package lab

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// EtcNetns is where iproute2 keeps per-namespace /etc files: `ip netns
// exec NAME` (and netplan-lab exec and shell) bind-mounts
// /etc/netns/NAME/hosts over /etc/hosts.
var EtcNetns = "/etc/netns"

// madeXattr marks an EtcNetns that netplan-lab made (it was missing), on
// the directory itself: the last lab to leave it empty removes it; one
// made by anyone else stays, empty or not. An attribute goes with its
// directory, so no record can outlive it or name another one.
const madeXattr = "user.netplan-lab"

// A hosts file of netplan-lab starts with hostsHeader; each lab's names
// are in a section of their own, between "# BEGIN MARK" and "# END MARK",
// so labs sharing a sandbox share its file and each removes only its own.
const (
	hostsHeader   = "# netplan-lab hosts file: each lab's names between its BEGIN and END lines (apply writes them, destroy removes them)\n"
	hostsPreamble = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
)

// hostsSection is one lab's names (mark: the lab's), or, with no mark,
// the lines someone added outside every lab's section: kept as they are.
type hostsSection struct{ mark, body string }

// parseHosts reads a file of ours into its sections (the lines outside
// them first, as a section without a mark, if there are any); ok is
// false for a file that is someone else's.
func parseHosts(b []byte) (sections []hostsSection, ok bool) {
	text := string(b)
	var outside strings.Builder
	if !strings.HasPrefix(text, hostsHeader) {
		// Lines someone put above the header: still ours, those lines
		// kept (an outside audit: the file was left as someone else's,
		// with the labs' names in it going stale).
		at := strings.Index(text, "\n"+hostsHeader)
		if at < 0 {
			return nil, false
		}
		outside.WriteString(text[:at+1])
		text = text[at+1:]
	}
	preamble := strings.SplitAfter(hostsPreamble, "\n")
	cur, start := -1, 0 // the open section, and where its body starts
	for off := len(hostsHeader); off < len(text); {
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
		case strings.HasPrefix(line, "# END "):
			if cur >= 0 {
				sections[cur].body = text[start:off]
				cur = -1
			} // else a stray END: dropped
		case cur < 0:
			if len(preamble) > 0 && preamble[0] != "" && line == preamble[0] {
				preamble = preamble[1:] // ours, written again
			} else {
				outside.WriteString(line)
				if !strings.HasSuffix(line, "\n") {
					outside.WriteString("\n")
				}
			}
		}
		off += end
	}
	if cur >= 0 {
		sections[cur].body = text[start:] // no END line: the rest is its body
	}
	if outside.Len() > 0 {
		sections = append([]hostsSection{{body: outside.String()}}, sections...)
	}
	return sections, true
}

func formatHosts(sections []hostsSection) []byte {
	var b strings.Builder
	b.WriteString(hostsHeader + hostsPreamble)
	for _, sec := range sections {
		if sec.mark == "" {
			b.WriteString(sec.body) // someone else's lines
			continue
		}
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

// sandboxName is the kernel name of the lab's sandbox, or "" without one.
func (l *Lab) sandboxName() string {
	if l.opt.Netns == "" {
		return ""
	}
	return l.k.KernelName(reconcile.HostNS)
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
func (l *Lab) WriteHosts(t *topology.Topology) error {
	_, err := l.writeHosts(t)
	return err
}

// sharedRoot is the directory under EtcNetns where each lab keeps the one
// hosts file all the namespaces it makes share: /etc/netns/NAME of such a
// namespace is a symbolic link to the lab's directory there, which `ip netns
// exec` (and exec and shell) follow. One file for the lab instead of one per
// namespace, each listing every namespace: a lab of N namespaces writes and
// checks O(N) bytes, not O(N²), and makes one inode per namespace, not two.
// The sandbox, which labs may share, has a file of its own with a section
// per lab.
const sharedRoot = ".netplan-lab"

// sharedHosts is the lab's directory under sharedRoot, as the links name it
// (relative to EtcNetns) and as a path.
func (l *Lab) sharedHosts() (target, dir string) {
	sum := sha256.Sum256([]byte(l.k.Mark()))
	target = filepath.Join(sharedRoot, hex.EncodeToString(sum[:8]))
	return target, filepath.Join(EtcNetns, target)
}

// writeFileIfChanged writes content to path (through a temporary file and
// a rename, so a reader never sees half of it) unless it is there already.
// Files and directories are 0644 and 0755 whatever the umask: a process
// of any user in the lab reads its names.
func writeFileIfChanged(path string, content []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, content) {
		return nil
	}
	if err := mkdirReadable(filepath.Dir(path)); err != nil {
		return err
	}
	tmp := path + hostsTmpSuffix
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// hostsTmpSuffix names the file a hosts file is written to before it is
// renamed into place; one left by a killed run is removed with the lab's
// hosts files.
const hostsTmpSuffix = ".netplan-lab.tmp"

// mkdirReadable makes dir and its missing parents, mode 0755 (EtcNetns,
// if it makes it, marked: makeEtcNetns). Another lab's destroy may remove
// an empty EtcNetns before dir is made in it: then it starts again.
func mkdirReadable(dir string) error {
	var err error
	for range 3 {
		if err = mkdirParents(dir); !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return err
}

func mkdirParents(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := mkdirParents(filepath.Dir(dir)); err != nil {
		return err
	}
	if dir == EtcNetns {
		return makeEtcNetns()
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return os.Chmod(dir, 0o755)
}

// makeEtcNetns makes EtcNetns marked as netplan-lab's: under a temporary
// name beside it, marked, then renamed into place unless something is
// there by then. A killed run leaves only a temporary directory, which
// the next one removes.
func makeEtcNetns() error {
	sweepEtcNetnsTmp()
	tmp := etcNetnsTmp() + strconv.Itoa(os.Getpid())
	if err := os.Mkdir(tmp, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	defer os.Remove(tmp) // if it is still there
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := unix.Setxattr(tmp, madeXattr, []byte("made"), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
		return err
	}
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, EtcNetns, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EEXIST) {
		return nil // made meanwhile, by someone else or another run
	}
	return err
}

// etcNetnsTmp is the start of the temporary names EtcNetns is made under
// (the maker's pid follows).
func etcNetnsTmp() string {
	return filepath.Join(filepath.Dir(EtcNetns), "."+filepath.Base(EtcNetns)+".netplan-lab-tmp.")
}

// sweepEtcNetnsTmp removes the temporary directories of runs killed while
// making EtcNetns (their pid is gone), if empty.
func sweepEtcNetnsTmp() {
	prefix := etcNetnsTmp()
	old, _ := filepath.Glob(prefix + "*")
	for _, o := range old {
		if pid, err := strconv.Atoi(strings.TrimPrefix(o, prefix)); err == nil && pid != os.Getpid() && unix.Kill(pid, 0) != nil {
			_ = os.Remove(o)
		}
	}
}

// removeEtcNetnsIfMade removes EtcNetns when it is empty and netplan-lab
// made it (its mark), and what killed runs left making it. Where the
// filesystem keeps no extended attributes, an empty one is removed, as
// before there was a mark.
func removeEtcNetnsIfMade() {
	sweepEtcNetnsTmp()
	buf := make([]byte, 16)
	n, err := unix.Getxattr(EtcNetns, madeXattr, buf)
	if !(err == nil && string(buf[:n]) == "made") && !errors.Is(err, unix.ENOTSUP) {
		return
	}
	if left, err := os.ReadDir(EtcNetns); err == nil && len(left) == 0 {
		_ = os.Remove(EtcNetns)
	}
}

// It returns a warning for each namespace whose /etc/netns entry is
// someone else's, so that the lab's names are not there.
func (l *Lab) writeHosts(t *topology.Topology) ([]string, error) {
	var skipped []string
	skip := func(name, what string) {
		skipped = append(skipped, fmt.Sprintf("the lab's names are not in %s: it is %s, left alone (names do not resolve in netns %s)", filepath.Join(EtcNetns, name), what, name))
	}
	mine := HostsFile(t)
	want := map[string]bool{}
	target, shared := l.sharedHosts()
	sharedDone := false
	writeShared := func() error {
		if sharedDone {
			return nil
		}
		sharedDone = true
		return writeFileIfChanged(filepath.Join(shared, "hosts"), formatHosts([]hostsSection{{l.k.Mark(), mine}}))
	}
	sandbox := l.sandboxName()
	for _, name := range l.hostsNamespaces(t) {
		want[name] = true
		if name != sandbox {
			linked, err := l.linkHosts(name, target, writeShared, skip)
			if err != nil {
				return skipped, err
			}
			if linked {
				continue
			}
		}
		if err := l.writeSection(name, mine, skip); err != nil {
			return skipped, err
		}
	}
	_, err := l.removeHosts(want)
	return skipped, err
}

// linkHosts makes /etc/netns/name a link to the lab's shared directory
// target. It reports false, to have the lab's section written in a file of
// the namespace's own, where a directory with files of someone else's is
// there; and true, doing nothing, where anything else not netplan-lab's is.
func (l *Lab) linkHosts(name, target string, writeShared func() error, skip func(name, what string)) (bool, error) {
	p := filepath.Join(EtcNetns, name)
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return false, err
	case fi.Mode()&os.ModeSymlink != 0:
		to, err := os.Readlink(p)
		if err != nil {
			return false, err
		}
		if to == target {
			return true, writeShared()
		}
		if !strings.HasPrefix(to, sharedRoot+"/") {
			skip(name, "a link to "+to)
			return true, nil
		}
		if err := os.Remove(p); err != nil { // another lab's, by an old name
			return false, err
		}
	case fi.IsDir():
		// Written by an older netplan-lab, or someone's own files: a
		// directory holding only a hosts file of ours becomes the link.
		entries, err := os.ReadDir(p)
		if err != nil {
			return false, err
		}
		switch {
		case len(entries) == 0:
		case len(entries) == 1 && entries[0].Name() == "hosts" && hasOurHosts(p):
			if err := os.Remove(filepath.Join(p, "hosts")); err != nil {
				return false, err
			}
		default:
			return false, nil // a section in its own file (if it is ours)
		}
		if err := os.Remove(p); err != nil {
			return false, err
		}
	default:
		skip(name, "a file, not a directory")
		return true, nil
	}
	if err := writeShared(); err != nil {
		return false, err
	}
	return true, os.Symlink(target, p)
}

// hasOurHosts reports whether dir/hosts is a hosts file of netplan-lab's.
func hasOurHosts(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "hosts"))
	_, ok := parseHosts(b)
	return err == nil && ok
}

// writeSection writes the lab's section into /etc/netns/name/hosts, a
// file of sections that labs sharing the namespace share; a hosts file
// that is not netplan-lab's is left alone.
func (l *Lab) writeSection(name, mine string, skip func(name, what string)) error {
	if fi, err := os.Lstat(filepath.Join(EtcNetns, name)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		to, _ := os.Readlink(filepath.Join(EtcNetns, name))
		skip(name, "a link to "+to) // someone's, or another lab's shared file
		return nil
	}
	path := filepath.Join(EtcNetns, name, "hosts")
	var sections []hostsSection
	if old, err := os.ReadFile(path); err == nil {
		var ok bool
		if sections, ok = parseHosts(old); !ok {
			skip(name, "a directory whose hosts file is not netplan-lab's")
			return nil
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
	return writeFileIfChanged(path, formatHosts(sections))
}

// removeHosts removes the lab's hosts files from every namespace but those
// of keep: its links, and its section from files of sections (a file left
// with no section goes, and its directory when nothing else is in it). The
// lab's shared file goes when no link to it is left. It returns how many
// namespaces' entries it removed the lab's names from.
func (l *Lab) removeHosts(keep map[string]bool) (int, error) {
	sweepEtcNetnsTmp()
	entries, err := os.ReadDir(EtcNetns)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	removed := 0
	target, shared := l.sharedHosts()
	linked := false
	sandboxDir := "" // removed at the end if empty, then EtcNetns if it is
	defer func() {
		if sandboxDir != "" {
			_ = os.Remove(sandboxDir) // only if empty
		}
		removeEtcNetnsIfMade()
	}()
	for _, e := range entries {
		dir := filepath.Join(EtcNetns, e.Name())
		if e.Type()&os.ModeSymlink != 0 {
			if to, err := os.Readlink(dir); err == nil && to == target {
				if keep[e.Name()] {
					linked = true
				} else if err := os.Remove(dir); err != nil {
					return removed, err
				} else {
					removed++
				}
			}
			continue
		}
		if keep[e.Name()] || e.Name() == sharedRoot {
			continue
		}
		path := filepath.Join(dir, "hosts")
		if e.Name() == l.sandboxName() {
			// Ours to clean up (under the sandbox's lock): a killed write's.
			_ = os.Remove(path + hostsTmpSuffix)
			sandboxDir = dir
		}
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
				return removed, err
			}
			removed++
		default:
			if err := os.Remove(path); err != nil {
				return removed, err
			}
			removed++
			_ = os.Remove(path + hostsTmpSuffix) // a killed write's
			_ = os.Remove(dir)                   // only if empty
		}
	}
	if !linked {
		if err := removeShared(shared); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// removeShared removes a lab's shared hosts directory, and sharedRoot when
// it is left empty.
func removeShared(shared string) error {
	if err := os.Remove(filepath.Join(shared, "hosts")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_ = os.Remove(filepath.Join(shared, "hosts"+hostsTmpSuffix)) // a killed write's
	_ = os.Remove(shared)                                        // only if empty
	removeIfEmpty(filepath.Join(EtcNetns, sharedRoot))
	return nil
}

func removeIfEmpty(dir string) {
	if left, err := os.ReadDir(dir); err == nil && len(left) == 0 {
		_ = os.Remove(dir)
	}
}
