package linux

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Ownership lives in the kernel, so a later run with no memory of this one
// (or a run after a kill -9) knows what it made. A lab's identity is its
// topology name, its sandbox (--netns) and its prefix together; every mark
// carries all three:
//
//	netplan-lab:NAME[@SANDBOX][/PREFIX]
//
// '@' and '/' cannot appear in any of the three (topology.CheckPartName and
// the topology's name rule), so two labs never read each other's marks as
// theirs, not even with nested prefixes ("x-" and "x-y-").
//
//   - namespace: lo's alias is the mark (set before the namespace is pinned
//     under /run/netns, so a pinned namespace is always marked); the pin file
//     itself holds the mark before the namespace is mounted on it, so a pin
//     left half-made by a kill is recognisable and removed.
//   - link: its alias starts with the mark (|peer=, |parent= and |a= follow);
//     it is also created, in the same RTM_NEWLINK, in the lab's link group
//     (IFLA_GROUP, a hash of the mark), so a link whose alias a kill kept
//     from being set is still known as the lab's (half-made: replaced).
//   - address: the link's alias lists a short hash of each address the lab
//     added (|a=...); others on the same link are foreign and left alone.
//   - route: protocol 157 on a link of the lab or in a namespace of the lab.
//   - NAT: a table named for the lab (TableName) holding a marker rule whose
//     comment is the mark; each rule's comment is the mark and its id.

// MarkOf is the mark of the lab with identity o.
func MarkOf(o Options) string {
	m := markPrefix + o.Name
	if o.Netns != "" {
		m += "@" + o.Netns
	}
	if o.Prefix != "" {
		m += "/" + o.Prefix
	}
	return m
}

// ParseMark reads a mark (with or without attributes) back into the
// identity it names.
func ParseMark(alias string) (Options, bool) {
	if !strings.HasPrefix(alias, markPrefix) {
		return Options{}, false
	}
	s, _, _ := strings.Cut(strings.TrimPrefix(alias, markPrefix), "|")
	var o Options
	s, o.Prefix, _ = strings.Cut(s, "/")
	o.Name, o.Netns, _ = strings.Cut(s, "@")
	if o.Name == "" {
		return Options{}, false
	}
	return o, true
}

// String names a lab for people: name, sandbox and prefix.
func (o Options) String() string {
	sb := o.Netns
	if sb == "" {
		sb = "(none: this machine's namespace)"
	}
	pf := o.Prefix
	if pf == "" {
		pf = `""`
	}
	return fmt.Sprintf("lab %q (sandbox %s, prefix %s)", o.Name, sb, pf)
}

// groupOf is the link group (IFLA_GROUP) of a lab: a hash of its mark,
// never 0 (the default group), below 2^31.
func groupOf(mark string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(mark))
	g := h.Sum32()&0x7fffffff | 0x100 // never 0, and positive as `ip` prints it
	return g
}

// addrTag is the short hash an owned address is recorded under in its
// link's alias.
func addrTag(cidr string) string {
	h := fnv.New32a()
	h.Write([]byte(cidr))
	return strconv.FormatUint(uint64(h.Sum32()&0xffffff), 36)
}

// addrTags is the |a= attribute value for a set of owned addresses.
func addrTags(cidrs []string) string {
	tags := make([]string, 0, len(cidrs))
	for _, c := range cidrs {
		tags = append(tags, addrTag(c))
	}
	sort.Strings(tags)
	return strings.Join(tags, ",")
}

// pinContent is written into a pin file before the namespace is mounted
// on it: a pin file that is not a mount names who was making it.
func pinContent(mark string) string {
	return fmt.Sprintf("%s pid=%d\n", mark, os.Getpid())
}

// Lab is a lab found in the kernel by its marks.
type Lab struct {
	ID Options
	// Namespaces are the kernel names of the namespaces marked as its.
	Namespaces []string
}

// ScanLabs reads the mark of every namespace pinned under /run/netns and
// groups them by lab. It reads one link (lo) per namespace.
func ScanLabs(ctx context.Context) ([]Lab, error) {
	names, err := ListNamed("")
	if err != nil {
		return nil, err
	}
	marks := make([]string, len(names))
	err = parallel(ctx, len(names), 8, func(i int) error {
		marks[i] = loAlias(netnsPath(names[i]))
		return nil
	})
	if err != nil {
		return nil, err
	}
	byID := map[Options]*Lab{}
	for i, m := range marks {
		id, ok := ParseMark(m)
		if !ok {
			continue
		}
		if byID[id] == nil {
			byID[id] = &Lab{ID: id}
		}
		byID[id].Namespaces = append(byID[id].Namespaces, names[i])
	}
	res := make([]Lab, 0, len(byID))
	for _, l := range byID {
		res = append(res, *l)
	}
	sort.Slice(res, func(i, j int) bool { return res[i].ID.String() < res[j].ID.String() })
	return res, nil
}

// loAlias is the alias of lo in the namespace pinned at path, or "".
func loAlias(path string) string {
	if readPin(path).half {
		return ""
	}
	fd, err := netns.GetFromPath(path)
	if err != nil {
		return ""
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	if err != nil {
		return ""
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return ""
	}
	return lo.Attrs().Alias
}
