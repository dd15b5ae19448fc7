package linux

import (
	"context"
	"sort"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// LabInfo is a lab as the kernel's marks show it.
type LabInfo struct {
	Name    string `json:"name"`
	Sandbox string `json:"sandbox"` // "" is the machine's own namespace
	Prefix  string `json:"prefix"`
	// Namespaces are the kernel names of the namespaces it made.
	Namespaces []string `json:"namespaces"`
	// Links counts its interfaces, wherever they are.
	Links int `json:"links"`
	// NAT lists the kernel names of the namespaces holding its NAT table.
	NAT []string `json:"nat"`
}

// ListLabs finds every lab on the machine from the kernel's marks: the
// mark on lo of the namespaces a lab made, the marks on its interfaces
// (in every pinned namespace and in this process's own), and its NAT
// tables. It changes nothing.
func ListLabs(ctx context.Context) ([]LabInfo, error) {
	names, err := ListNamed("")
	if err != nil {
		return nil, err
	}
	names = append(names, "") // this process's own namespace
	var mu sync.Mutex
	labs := map[Options]*LabInfo{}
	type tableAt struct {
		name, prefix, ns string
		labNS            bool // ns is a namespace a lab made (not a sandbox)
	}
	var found []tableAt
	get := func(id Options) *LabInfo {
		if labs[id] == nil {
			labs[id] = &LabInfo{Name: id.Name, Sandbox: id.Netns, Prefix: id.Prefix, Namespaces: []string{}, NAT: []string{}}
		}
		return labs[id]
	}
	err = parallel(ctx, len(names), 8, func(i int) error {
		name := names[i]
		var fd netns.NsHandle
		var err error
		if name == "" {
			fd, err = netns.Get()
		} else {
			if readPin(netnsPath(name)).half {
				return nil
			}
			fd, err = netns.GetFromPath(netnsPath(name))
		}
		if err != nil {
			return nil // gone meanwhile, or a stale pin
		}
		defer fd.Close()
		h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
		if err != nil {
			return nil
		}
		defer h.Close()
		links, _ := h.LinkList()
		var tables []*nftables.Table
		if c, err := newNFT(nftables.WithNetNSFd(int(fd))); err == nil {
			tables, _ = c.ListTables()
			c.CloseLasting()
		}
		mu.Lock()
		defer mu.Unlock()
		for _, l := range links {
			id, ok := ParseMark(l.Attrs().Alias)
			if !ok {
				continue
			}
			if l.Attrs().Name == "lo" {
				if name != "" {
					lab := get(id)
					lab.Namespaces = append(lab.Namespaces, name)
				}
				continue
			}
			get(id).Links++
		}
		labNS := name != "" && !strings.HasPrefix(loAliasOf(links), "netplan-lab-sandbox:") && loAliasOf(links) != ""
		for _, t := range tables {
			if lname, prefix, ok := parseTableName(t.Name); ok {
				found = append(found, tableAt{lname, prefix, name, labNS})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// A lab's table is in its sandbox (or the machine's namespace), or in
	// one of its own namespaces.
	for _, t := range found {
		for id, lab := range labs {
			if id.Name != t.name || id.Prefix != t.prefix {
				continue
			}
			if (t.labNS && contains(lab.Namespaces, t.ns)) || (!t.labNS && id.Netns == t.ns) {
				where := t.ns
				if where == "" {
					where = "(this machine)"
				}
				lab.NAT = append(lab.NAT, where)
			}
		}
	}
	out := make([]LabInfo, 0, len(labs))
	for _, l := range labs {
		sort.Strings(l.Namespaces)
		sort.Strings(l.NAT)
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Sandbox != b.Sandbox {
			return a.Sandbox < b.Sandbox
		}
		return a.Prefix < b.Prefix
	})
	return out, nil
}

func loAliasOf(links []netlink.Link) string {
	for _, l := range links {
		if l.Attrs().Name == "lo" {
			return l.Attrs().Alias
		}
	}
	return ""
}

// parseTableName reads a lab NAT table's name: netplan-lab-NAME[.PREFIX].
func parseTableName(t string) (name, prefix string, ok bool) {
	rest, ok := strings.CutPrefix(t, "netplan-lab-")
	if !ok {
		return "", "", false
	}
	name, prefix, _ = strings.Cut(rest, ".")
	return name, prefix, name != ""
}
