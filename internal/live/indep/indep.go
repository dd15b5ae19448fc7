// Package indep is an independent observer of the kernel for netplan-lab's
// tests: it reads a lab's namespaces with iproute2 (`ip -j`), nftables
// (`nft -j`) and /proc/sys, and compares what it finds with a topology file.
//
// It shares no code with netplan-lab's own observation (internal/linux,
// reconcile): it imports only the topology package, for the decoded file.
// It never writes to the kernel.
package indep

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/netplan-lab/netplan-lab/topology"
)

// Snapshot is what the kernel holds in a lab's namespaces.
type Snapshot struct {
	// Namespaces by the topology's short name ("host" included). A
	// namespace asked for that does not exist under /run/netns is absent.
	Namespaces map[string]*NS
}

// NS is one namespace as read from the kernel.
type NS struct {
	Netns   string               // kernel name (under /run/netns); "" for the caller's own namespace
	Links   map[string]*Link     // by interface name, lo excluded
	Routes  []Route              // main table, IPv4 then IPv6; no proto kernel, fe80::/64 or ff00::/8 routes
	Sysctls map[string]string    // values of the keys asked for (white space normalised); unreadable keys absent
	NAT     map[string][]NATRule // chain name -> rules in chain order, lab's table only; nil when the table is absent

	nsids map[int]string // netnsid (as this namespace sees it) -> kernel name
}

// Link is one interface.
type Link struct {
	Name, Kind string // kind: linkinfo info_kind ("bridge", "veth", "macvlan", "ipvlan", "vxlan", "" for none)
	Index      int
	MAC        string // lower case
	MTU        int
	Up         bool     // administratively up (flags contain "UP")
	Master     string   // name of the bridge it is enslaved to, or ""
	Addresses  []string // CIDR, kernel order, without IPv6 link-local (fe80::/10)
	Peer       string   // veth: "NETNS:IFNAME" of the other end (kernel namespace name), "" if unresolvable
	Parent     string   // macvlan/ipvlan: "NETNS:IFNAME" of the parent (kernel namespace name), "" if unresolvable
	Mode       string   // macvlan/ipvlan mode
	VNI, Port  int      // vxlan
	Remote     string   // vxlan
	Group      string   // vxlan
	Local      string   // vxlan
	Dev        string   // vxlan underlay interface, by name
	STP        bool     // bridge: stp_state != 0

	// Where the kernel says the peer (veth) or parent (macvlan/ipvlan) is:
	// a name in the same namespace, or an ifindex in the namespace netnsid.
	refName  string
	refIndex int
	refNSID  *int
}

// Route is one route of the main table.
type Route struct {
	Dst    string // "default" or CIDR (host routes get /32 or /128); "TYPE CIDR" for blackhole, unreachable, ... routes
	Via    string
	Dev    string
	Metric int
	Proto  string // as iproute2 names it: "kernel", "boot", "static", "157", ...
	IPv6   bool
}

func (r Route) String() string {
	s := r.Dst
	if r.IPv6 && r.Dst == "default" {
		s = "default (IPv6)"
	}
	if r.Via != "" {
		s += " via " + r.Via
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	s += " metric " + strconv.Itoa(r.Metric)
	if r.Proto != "" {
		s += " proto " + r.Proto
	}
	return s
}

// NATRule is one rule of the lab's nftables table.
type NATRule struct {
	Comment string
	// Text is the rule's expressions, one clause each, joined by "; ":
	// matches as "LEFT OP RIGHT" ("meta oifname != dbr0", "ip saddr ==
	// 172.18.0.0/24", "fib daddr type == local", "tcp dport == 8080"),
	// statements as "masquerade", "snat ip to 203.0.113.5", "dnat ip to
	// 172.18.0.2:80". Counters are left out; anything else is shown as
	// compact JSON so that it can never look like an expected clause.
	Text string
}

// Clauses splits Text back into its clauses.
func (r NATRule) Clauses() []string {
	if r.Text == "" {
		return nil
	}
	return strings.Split(r.Text, "; ")
}

// ---------------------------------------------------------------------------
// Mapping a topology to kernel names.

// Namespaces returns the short names of every namespace the topology uses,
// "host" first, then sorted.
func Namespaces(t *topology.Topology) []string {
	seen := map[string]bool{topology.Host: true}
	for _, n := range t.Namespaces {
		seen[n.Name] = true
	}
	for _, i := range t.Interfaces() {
		seen[i.Namespace] = true
	}
	for _, r := range t.NAT {
		seen[r.Namespace] = true
	}
	var out []string
	for n := range seen {
		if n != topology.Host {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return append([]string{topology.Host}, out...)
}

// Prefix is the prefix netplan-lab uses: the --prefix flag if set, else the file's.
func Prefix(t *topology.Topology, flag string) string {
	if flag != "" {
		return flag
	}
	return t.Prefix
}

// NSMap maps each short name of the topology to its kernel namespace:
// "host" to the sandbox, every other N to prefix+N.
func NSMap(t *topology.Topology, sandbox, prefix string) map[string]string {
	m := map[string]string{}
	for _, n := range Namespaces(t) {
		if n == topology.Host {
			m[n] = sandbox
		} else {
			m[n] = prefix + n
		}
	}
	return m
}

// SysctlKeys lists the sysctl keys the file sets, by short namespace name.
func SysctlKeys(t *topology.Topology) map[string][]string {
	m := map[string][]string{}
	for _, n := range t.Namespaces {
		for _, s := range n.Sysctls {
			m[n.Name] = append(m[n.Name], s.Key)
		}
	}
	return m
}

// NATTable is the name of the lab's nftables table (family inet).
func NATTable(t *topology.Topology, prefix string) string {
	if prefix == "" {
		return "netplan-lab-" + t.Name
	}
	return "netplan-lab-" + t.Name + "." + prefix
}

// ---------------------------------------------------------------------------
// Reading the kernel.

// Read reads the namespaces given: short name -> kernel netns name (as under
// /run/netns; "" means the caller's own namespace). sysctls: short name ->
// keys to read. natTable: the lab's inet table ("" to skip nftables).
// A namespace that is not under /run/netns is left out of the snapshot.
func Read(ctx context.Context, nsmap map[string]string, sysctls map[string][]string, natTable string) (*Snapshot, error) {
	s := &Snapshot{Namespaces: map[string]*NS{}}
	for short, netns := range nsmap {
		if netns != "" {
			if _, err := os.Stat(filepath.Join("/run/netns", netns)); err != nil {
				continue
			}
		}
		ns, err := readNS(ctx, netns, sysctls[short], natTable)
		if err != nil {
			return nil, fmt.Errorf("%s (netns %q): %w", short, netns, err)
		}
		s.Namespaces[short] = ns
	}
	r := &resolver{byNetns: map[string]map[int]string{}}
	for _, ns := range s.Namespaces {
		names := map[int]string{}
		for _, l := range ns.Links {
			names[l.Index] = l.Name
		}
		names[1] = "lo"
		r.byNetns[ns.Netns] = names
	}
	for _, ns := range s.Namespaces {
		for _, l := range ns.Links {
			switch l.Kind {
			case "veth":
				l.Peer = r.resolve(ctx, ns, l)
			case "macvlan", "ipvlan":
				l.Parent = r.resolve(ctx, ns, l)
			}
		}
	}
	return s, nil
}

// run runs a command and returns its standard output.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// ipJSON runs `ip -j [-n netns] args...` and decodes its output into v.
func ipJSON(ctx context.Context, netns string, v any, args ...string) error {
	full := []string{"-j"}
	if netns != "" {
		full = append(full, "-n", netns)
	}
	out, err := run(ctx, "ip", append(full, args...)...)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil // some ip versions print nothing for an empty list
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("ip %s: decoding JSON: %v", strings.Join(args, " "), err)
	}
	return nil
}

// inNetns runs a command inside netns (through `ip netns exec`).
func inNetns(ctx context.Context, netns string, name string, args ...string) ([]byte, error) {
	if netns == "" {
		return run(ctx, name, args...)
	}
	return run(ctx, "ip", append([]string{"netns", "exec", netns, name}, args...)...)
}

// ipLink is one entry of `ip -j -d link show`.
type ipLink struct {
	Ifindex     int      `json:"ifindex"`
	Ifname      string   `json:"ifname"`
	Flags       []string `json:"flags"`
	MTU         int      `json:"mtu"`
	Master      string   `json:"master"`
	Address     string   `json:"address"`
	Link        any      `json:"link"`       // peer/parent name when in the same namespace (or null)
	LinkIndex   int      `json:"link_index"` // peer/parent ifindex when in another namespace
	LinkNetnsid *int     `json:"link_netnsid"`
	Linkinfo    struct {
		InfoKind string         `json:"info_kind"`
		InfoData map[string]any `json:"info_data"`
	} `json:"linkinfo"`
}

type ipAddr struct {
	Ifname   string `json:"ifname"`
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		Prefixlen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

type ipRoute struct {
	Type     string `json:"type"` // absent for unicast
	Dst      string `json:"dst"`
	Gateway  string `json:"gateway"`
	Dev      string `json:"dev"`
	Protocol any    `json:"protocol"`
	Metric   int    `json:"metric"`
}

type ipNsid struct {
	Nsid int    `json:"nsid"`
	Name string `json:"name"`
}

func readNS(ctx context.Context, netns string, sysctls []string, natTable string) (*NS, error) {
	ns := &NS{Netns: netns, Links: map[string]*Link{}, Sysctls: map[string]string{}, nsids: map[int]string{}}

	var links []ipLink
	if err := ipJSON(ctx, netns, &links, "-d", "link", "show"); err != nil {
		return nil, err
	}
	for _, j := range links {
		if j.Ifname == "lo" {
			continue
		}
		l := &Link{
			Name:   j.Ifname,
			Kind:   j.Linkinfo.InfoKind,
			Index:  j.Ifindex,
			MAC:    strings.ToLower(j.Address),
			MTU:    j.MTU,
			Up:     slices.Contains(j.Flags, "UP"),
			Master: j.Master,
		}
		if name, ok := j.Link.(string); ok {
			l.refName = name
		}
		l.refIndex, l.refNSID = j.LinkIndex, j.LinkNetnsid
		data := j.Linkinfo.InfoData
		switch l.Kind {
		case "bridge":
			l.STP = number(data["stp_state"]) != 0
		case "macvlan", "ipvlan":
			l.Mode = str(data["mode"])
		case "vxlan":
			l.VNI = number(data["id"])
			l.Port = number(data["port"])
			l.Remote = str(data["remote"])
			if l.Remote == "" {
				l.Remote = str(data["remote6"])
			}
			l.Group = str(data["group"])
			if l.Group == "" {
				l.Group = str(data["group6"])
			}
			l.Local = str(data["local"])
			if l.Local == "" {
				l.Local = str(data["local6"])
			}
			l.Dev = str(data["link"])
		}
		ns.Links[l.Name] = l
	}

	var addrs []ipAddr
	if err := ipJSON(ctx, netns, &addrs, "addr", "show"); err != nil {
		return nil, err
	}
	for _, a := range addrs {
		l := ns.Links[a.Ifname]
		if l == nil {
			continue
		}
		for _, ai := range a.AddrInfo {
			p, err := netip.ParsePrefix(ai.Local + "/" + strconv.Itoa(ai.Prefixlen))
			if err != nil || (p.Addr().Is6() && p.Addr().IsLinkLocalUnicast()) {
				continue
			}
			l.Addresses = append(l.Addresses, p.String())
		}
	}

	for _, fam := range []string{"-4", "-6"} {
		var routes []ipRoute
		if err := ipJSON(ctx, netns, &routes, fam, "route", "show", "table", "main"); err != nil {
			return nil, err
		}
		for _, j := range routes {
			// iproute2 leaves "protocol" out when it is boot (what `ip
			// route add` gives by default).
			r := Route{Dst: j.Dst, Via: j.Gateway, Dev: j.Dev, Metric: j.Metric, Proto: "boot", IPv6: fam == "-6"}
			if j.Protocol != nil {
				r.Proto = fmt.Sprint(j.Protocol)
			}
			if r.Dst != "default" && !strings.Contains(r.Dst, "/") {
				if r.IPv6 {
					r.Dst += "/128"
				} else {
					r.Dst += "/32"
				}
			}
			if j.Type != "" && j.Type != "unicast" {
				// blackhole, unreachable, prohibit, ...: a file cannot ask
				// for these, so they can only show up as not in the file.
				r.Dst = j.Type + " " + r.Dst
			}
			if r.Proto == "kernel" || (r.IPv6 && (strings.HasPrefix(r.Dst, "fe80::/64") || strings.HasPrefix(r.Dst, "ff00::/8"))) {
				continue
			}
			ns.Routes = append(ns.Routes, r)
		}
	}

	var ids []ipNsid
	if err := ipJSON(ctx, netns, &ids, "netns", "list-id"); err != nil {
		return nil, err
	}
	for _, id := range ids {
		if id.Name != "" {
			ns.nsids[id.Nsid] = id.Name
		}
	}

	for _, key := range sysctls {
		path := key
		if !strings.Contains(key, "/") {
			path = strings.ReplaceAll(key, ".", "/")
		}
		out, err := inNetns(ctx, netns, "cat", filepath.Join("/proc/sys", path))
		if err != nil {
			continue // left out: Compare reports it as unreadable
		}
		ns.Sysctls[key] = strings.Join(strings.Fields(string(out)), " ")
	}

	if natTable != "" {
		nat, err := readNAT(ctx, netns, natTable)
		if err != nil {
			return nil, err
		}
		ns.NAT = nat
	}
	return ns, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func number(v any) int {
	if n, ok := v.(json.Number); ok {
		i, _ := strconv.Atoi(n.String())
		return i
	}
	return 0
}

// resolver turns a link's (netnsid, ifindex) reference into "NETNS:IFNAME".
type resolver struct {
	byNetns map[string]map[int]string // kernel netns -> ifindex -> name
}

func (r *resolver) resolve(ctx context.Context, ns *NS, l *Link) string {
	if l.refNSID == nil {
		if l.refName == "" {
			return ""
		}
		return ns.Netns + ":" + l.refName // same namespace
	}
	other, ok := ns.nsids[*l.refNSID]
	if !ok {
		return ""
	}
	names, ok := r.byNetns[other]
	if !ok {
		// A namespace outside the snapshot: read its link names once.
		names = map[int]string{}
		var links []ipLink
		if err := ipJSON(ctx, other, &links, "link", "show"); err == nil {
			for _, j := range links {
				names[j.Ifindex] = j.Ifname
			}
		}
		r.byNetns[other] = names
	}
	name, ok := names[l.refIndex]
	if !ok {
		return ""
	}
	return other + ":" + name
}

// ---------------------------------------------------------------------------
// nftables.

type nftRule struct {
	Family  string           `json:"family"`
	Table   string           `json:"table"`
	Chain   string           `json:"chain"`
	Comment string           `json:"comment"`
	Expr    []map[string]any `json:"expr"`
}

type nftChain struct {
	Family string `json:"family"`
	Table  string `json:"table"`
	Name   string `json:"name"`
}

type nftTable struct {
	Family string `json:"family"`
	Name   string `json:"name"`
}

// readNAT reads the rules of table inet natTable, by chain; nil if the
// table does not exist.
func readNAT(ctx context.Context, netns, natTable string) (map[string][]NATRule, error) {
	out, err := inNetns(ctx, netns, "nft", "-j", "list", "ruleset")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("nft -j list ruleset: %v", err)
	}
	var nat map[string][]NATRule
	for _, obj := range doc.Nftables {
		if raw, ok := obj["table"]; ok {
			var t nftTable
			if err := json.Unmarshal(raw, &t); err != nil {
				return nil, err
			}
			if t.Family == "inet" && t.Name == natTable && nat == nil {
				nat = map[string][]NATRule{}
			}
		}
		if raw, ok := obj["chain"]; ok {
			var c nftChain
			if err := json.Unmarshal(raw, &c); err != nil {
				return nil, err
			}
			if c.Family == "inet" && c.Table == natTable && nat != nil {
				if _, ok := nat[c.Name]; !ok {
					nat[c.Name] = []NATRule{}
				}
			}
		}
		if raw, ok := obj["rule"]; ok {
			var r nftRule
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			if err := dec.Decode(&r); err != nil {
				return nil, err
			}
			if r.Family == "inet" && r.Table == natTable && nat != nil {
				nat[r.Chain] = append(nat[r.Chain], NATRule{Comment: r.Comment, Text: ruleText(r.Expr)})
			}
		}
	}
	return nat, nil
}

func ruleText(exprs []map[string]any) string {
	var clauses []string
	for _, e := range exprs {
		for key, v := range e { // each expression is an object with one key
			if c := clause(key, v); c != "" {
				clauses = append(clauses, c)
			}
		}
	}
	return strings.Join(clauses, "; ")
}

func clause(key string, v any) string {
	switch key {
	case "counter":
		return ""
	case "match":
		m, _ := v.(map[string]any)
		return value(m["left"]) + " " + str(m["op"]) + " " + value(m["right"])
	case "snat", "dnat", "masquerade", "redirect":
		m, _ := v.(map[string]any)
		if m == nil {
			return key
		}
		s := key
		if f := str(m["family"]); f != "" {
			s += " " + f
		}
		to := ""
		if a, ok := m["addr"]; ok {
			to = value(a)
		}
		if p, ok := m["port"]; ok {
			if strings.Contains(to, ":") { // IPv6 address
				to = "[" + to + "]"
			}
			to += ":" + value(p)
		}
		if to != "" {
			s += " to " + to
		}
		if f, ok := m["flags"]; ok {
			s += " " + value(f)
		}
		return s
	}
	if v == nil {
		return key // accept, drop, return, ...
	}
	return key + " " + compact(v)
}

// value renders an expression's operand.
func value(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = value(e)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case map[string]any:
		if len(x) != 1 {
			return compact(x)
		}
		for k, inner := range x {
			m, _ := inner.(map[string]any)
			switch k {
			case "meta":
				return "meta " + str(m["key"])
			case "ct":
				return "ct " + str(m["key"])
			case "payload":
				if str(m["protocol"]) != "" {
					return str(m["protocol"]) + " " + str(m["field"])
				}
			case "fib":
				var flags []string
				switch f := m["flags"].(type) {
				case []any:
					for _, e := range f {
						flags = append(flags, value(e))
					}
				case string:
					flags = []string{f}
				}
				return "fib " + strings.Join(append(flags, str(m["result"])), " ")
			case "prefix":
				addr, bits := str(m["addr"]), number(m["len"])
				if a, err := netip.ParseAddr(addr); err == nil && a.BitLen() == bits {
					return addr
				}
				return addr + "/" + strconv.Itoa(bits)
			case "set":
				return value(inner)
			case "range":
				if r, ok := inner.([]any); ok && len(r) == 2 {
					return value(r[0]) + "-" + value(r[1])
				}
			}
		}
	}
	return compact(v)
}

func compact(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// ---------------------------------------------------------------------------
// Comparing.

// Compare lists every difference between what the topology file asks for
// and the snapshot, one human-readable line each, prefixed with the short
// namespace name. Empty means equal. It checks, per namespace of the file:
//
//   - the namespace exists (and reports snapshot namespaces the file lacks);
//   - each declared interface exists with the right kind; mtu and mac only
//     when the file sets them; up (default true); master = the file's
//     bridge: (none when unset); addresses as a set, both ways, and the
//     file's first IPv4 address of each subnet must be the kernel's
//     primary of it; veth:
//     the peer is the other end of the file's pair; bridge: stp (default
//     false); macvlan/ipvlan: parent ("ns:name") and mode (not the ipvlan
//     flag); vxlan: vni, port, remote and group always, local and dev when
//     set;
//   - links the file does not declare, in every namespace but host (the
//     host side has links that are not the lab's);
//   - routes of the main table: each file route by to, via, dev (when set)
//     and metric (IPv6 0 means 1024); kernel routes no file route claims
//     are reported everywhere but host, and in host when they use a link the
//     file declares there; proto kernel, fe80::/64 and ff00::/8 routes are
//     never looked at;
//   - the sysctls the file sets;
//   - the lab's NAT table: per chain (prerouting, output, postrouting and
//     any other but "owner"), the kernel's rules must be exactly the file's
//     rules for that chain, in file order, each with the right content.
//     Rule comments are not used.
func Compare(t *topology.Topology, s *Snapshot) []string {
	c := &comparer{t: t, s: s, kernelToShort: map[string]string{}}
	for short, ns := range s.Namespaces {
		c.kernelToShort[ns.Netns] = short
	}
	wanted := Namespaces(t)
	for _, short := range wanted {
		ns := s.Namespaces[short]
		if ns == nil {
			c.add(short, "namespace missing")
			continue
		}
		c.links(short, ns)
		c.routes(short, ns)
		c.sysctls(short, ns)
		c.nat(short, ns)
	}
	var extra []string
	for short := range s.Namespaces {
		if !slices.Contains(wanted, short) {
			extra = append(extra, short)
		}
	}
	sort.Strings(extra)
	for _, short := range extra {
		c.add(short, "namespace exists but the file does not ask for it")
	}
	return c.out
}

type comparer struct {
	t             *topology.Topology
	s             *Snapshot
	kernelToShort map[string]string
	out           []string
}

func (c *comparer) add(ns, format string, args ...any) {
	c.out = append(c.out, ns+": "+fmt.Sprintf(format, args...))
}

// wantLink is one interface the file asks for, with what is specific to its kind.
type wantLink struct {
	iface   *topology.Iface
	kind    string
	peer    *topology.Iface   // veth
	bridge  *topology.Bridge  // bridge
	macvlan *topology.Macvlan // macvlan
	ipvlan  *topology.Ipvlan  // ipvlan
	vxlan   *topology.Vxlan   // vxlan
}

func (c *comparer) wantLinks(short string) []wantLink {
	var out []wantLink
	for _, b := range c.t.Bridges {
		out = append(out, wantLink{iface: &b.Iface, kind: "bridge", bridge: b})
	}
	for _, l := range c.t.Links {
		out = append(out, wantLink{iface: &l.A, kind: "veth", peer: &l.B}, wantLink{iface: &l.B, kind: "veth", peer: &l.A})
	}
	for _, m := range c.t.Macvlans {
		out = append(out, wantLink{iface: &m.Iface, kind: "macvlan", macvlan: m})
	}
	for _, m := range c.t.Ipvlans {
		out = append(out, wantLink{iface: &m.Iface, kind: "ipvlan", ipvlan: m})
	}
	for _, v := range c.t.Vxlans {
		out = append(out, wantLink{iface: &v.Iface, kind: "vxlan", vxlan: v})
	}
	return slices.DeleteFunc(out, func(w wantLink) bool { return w.iface.Namespace != short })
}

// ref turns "KERNEL-NETNS:IFNAME" into "short:IFNAME" when the namespace is
// in the snapshot.
func (c *comparer) ref(kernel string) string {
	netns, name, ok := strings.Cut(kernel, ":")
	if !ok {
		return kernel
	}
	if short, ok := c.kernelToShort[netns]; ok {
		return short + ":" + name
	}
	return kernel
}

func (c *comparer) links(short string, ns *NS) {
	wanted := map[string]bool{}
	for _, w := range c.wantLinks(short) {
		i := w.iface
		wanted[i.Name] = true
		l := ns.Links[i.Name]
		if l == nil {
			c.add(short, "%s: missing (want %s)", i.Name, w.kind)
			continue
		}
		if l.Kind != w.kind {
			c.add(short, "%s: kind %q, want %s", i.Name, l.Kind, w.kind)
			continue
		}
		if i.MTU != 0 && l.MTU != i.MTU {
			c.add(short, "%s: mtu %d, want %d", i.Name, l.MTU, i.MTU)
		}
		if i.MAC != "" {
			if want, err := net.ParseMAC(i.MAC); err == nil && want.String() != l.MAC {
				c.add(short, "%s: mac %s, want %s", i.Name, l.MAC, want)
			}
		}
		if l.Up != i.IsUp() {
			c.add(short, "%s: %s, want %s", i.Name, upDown(l.Up), upDown(i.IsUp()))
		}
		if l.Master != i.Bridge {
			c.add(short, "%s: master %s, want %s", i.Name, orNone(l.Master), orNone(i.Bridge))
		}
		c.addresses(short, i, l)
		switch {
		case w.peer != nil:
			want := w.peer.Namespace + ":" + w.peer.Name
			if got := c.ref(l.Peer); got != want {
				c.add(short, "%s: veth peer %s, want %s", i.Name, orNone(got), want)
			}
		case w.bridge != nil:
			want := w.bridge.STP != nil && *w.bridge.STP
			if l.STP != want {
				c.add(short, "%s: stp %v, want %v", i.Name, l.STP, want)
			}
		case w.macvlan != nil:
			c.child(short, l, w.macvlan.ParentNS, w.macvlan.ParentName, w.macvlan.Mode)
		case w.ipvlan != nil:
			c.child(short, l, w.ipvlan.ParentNS, w.ipvlan.ParentName, w.ipvlan.Mode)
		case w.vxlan != nil:
			c.vxlanAttrs(short, l, w.vxlan)
		}
	}
	if short == topology.Host {
		return // the host side holds links that are not the lab's
	}
	var names []string
	for name := range ns.Links {
		if !wanted[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		c.add(short, "%s: %s link not in the file", name, orNone(ns.Links[name].Kind))
	}
}

func (c *comparer) addresses(short string, i *topology.Iface, l *Link) {
	var want []string
	for _, a := range i.Addresses {
		if p, err := netip.ParsePrefix(a); err == nil {
			want = append(want, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).String())
		} else {
			want = append(want, a)
		}
	}
	for _, a := range want {
		if !slices.Contains(l.Addresses, a) {
			c.add(short, "%s: address %s missing", i.Name, a)
		}
	}
	for _, a := range l.Addresses {
		if !slices.Contains(want, a) {
			c.add(short, "%s: address %s not in the file", i.Name, a)
		}
	}
	// Each IPv4 subnet's primary (the kernel lists it first of its
	// subnet) is the file's first address of that subnet; the order of
	// subnets after an edit is the kernel's (README: Order).
	wantFirst, gotFirst := firstIPv4(want), firstIPv4(l.Addresses)
	for sub, w := range wantFirst {
		if g, ok := gotFirst[sub]; ok && g != w && slices.Contains(l.Addresses, w) {
			c.add(short, "%s: primary address of %s %s, want %s", i.Name, sub, g, w)
		}
	}
}

// firstIPv4 is the first IPv4 address of each subnet in addrs.
func firstIPv4(addrs []string) map[netip.Prefix]string {
	out := map[netip.Prefix]string{}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a); err == nil && p.Addr().Is4() {
			if _, ok := out[p.Masked()]; !ok {
				out[p.Masked()] = a
			}
		}
	}
	return out
}

func (c *comparer) child(short string, l *Link, parentNS, parentName, mode string) {
	want := parentNS + ":" + parentName
	if got := c.ref(l.Parent); got != want {
		c.add(short, "%s: %s parent %s, want %s", l.Name, l.Kind, orNone(got), want)
	}
	if l.Mode != mode {
		c.add(short, "%s: %s mode %s, want %s", l.Name, l.Kind, orNone(l.Mode), mode)
	}
}

func (c *comparer) vxlanAttrs(short string, l *Link, v *topology.Vxlan) {
	if l.VNI != v.VNI {
		c.add(short, "%s: vxlan vni %d, want %d", l.Name, l.VNI, v.VNI)
	}
	if l.Port != v.Port {
		c.add(short, "%s: vxlan port %d, want %d", l.Name, l.Port, v.Port)
	}
	if !sameAddr(l.Remote, v.Remote) {
		c.add(short, "%s: vxlan remote %s, want %s", l.Name, orNone(l.Remote), orNone(v.Remote))
	}
	if !sameAddr(l.Group, v.Group) {
		c.add(short, "%s: vxlan group %s, want %s", l.Name, orNone(l.Group), orNone(v.Group))
	}
	if v.Local != "" && !sameAddr(l.Local, v.Local) {
		c.add(short, "%s: vxlan local %s, want %s", l.Name, orNone(l.Local), v.Local)
	}
	if v.Dev != "" && l.Dev != v.Dev {
		c.add(short, "%s: vxlan dev %s, want %s", l.Name, orNone(l.Dev), v.Dev)
	}
}

func sameAddr(a, b string) bool {
	x, err1 := netip.ParseAddr(a)
	y, err2 := netip.ParseAddr(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	return x.Unmap() == y.Unmap()
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// routes: every route of the file must be in the kernel (to, via, dev when
// set, metric); kernel routes the file does not ask for are reported in
// every namespace but host, and in host when their device is a link the file
// declares there.
func (c *comparer) routes(short string, ns *NS) {
	used := make([]bool, len(ns.Routes))
	var want []*topology.Route
	if n := c.t.Namespace(short); n != nil {
		want = n.Routes
	}
	var missing []*topology.Route
	for _, w := range want {
		if c.throughDownLink(short, w) {
			// The kernel holds no route through a link that is down (it
			// flushes them and refuses new ones): such a route is
			// dormant, and must not be there.
			continue
		}
		found := false
		for k, r := range ns.Routes {
			if !used[k] && routeMatches(w, r) {
				used[k], found = true, true
				if dev := c.gatewayOn(short, w); dev != "" && r.Dev != dev {
					c.add(short, "route %s goes out %s, but its gateway's subnet is on %s", describeRoute(w), r.Dev, dev)
				}
				break
			}
		}
		if !found {
			missing = append(missing, w)
		}
	}
	for _, w := range missing {
		msg := fmt.Sprintf("route %s missing", describeRoute(w))
		var others []string
		for k, r := range ns.Routes {
			if !used[k] && sameDst(w, r) {
				others = append(others, r.String())
			}
		}
		if len(others) > 0 {
			msg += " (kernel has " + strings.Join(others, ", ") + ")"
		}
		c.add(short, "%s", msg)
	}
	fileLinks := map[string]bool{}
	for _, w := range c.wantLinks(short) {
		fileLinks[w.iface.Name] = true
	}
	for k, r := range ns.Routes {
		if used[k] || (short == topology.Host && !fileLinks[r.Dev]) {
			continue
		}
		c.add(short, "route %s not in the file", r)
	}
}

// gatewayOn is the one interface of the file, up, with an address whose
// subnet holds the gateway of a route without dev: (the kernel sends it
// there); "" when it has dev:, onlink, or not exactly one such interface.
func (c *comparer) gatewayOn(short string, w *topology.Route) string {
	gw, err := netip.ParseAddr(w.Via)
	if err != nil || w.Dev != "" || w.OnLink || gw.IsLinkLocalUnicast() {
		return ""
	}
	var on []string
	for _, l := range c.wantLinks(short) {
		i := l.iface
		for _, a := range i.Addresses {
			if p, err := netip.ParsePrefix(a); err == nil && i.IsUp() && p.Masked().Contains(gw) && !slices.Contains(on, i.Name) {
				on = append(on, i.Name)
			}
		}
	}
	if len(on) != 1 {
		return ""
	}
	return on[0]
}

// throughDownLink reports whether a route of the file can only go through
// interfaces the file sets down: its dev, or every interface with an
// address whose subnet holds the gateway.
func (c *comparer) throughDownLink(short string, w *topology.Route) bool {
	gw, gwErr := netip.ParseAddr(w.Via)
	down, up := false, false
	for _, l := range c.wantLinks(short) {
		i := l.iface
		on := false
		if w.Dev != "" {
			on = w.Dev == i.Name
		} else {
			for _, a := range i.Addresses {
				if p, err := netip.ParsePrefix(a); err == nil && gwErr == nil && p.Masked().Contains(gw) {
					on = true
				}
			}
		}
		if on && i.IsUp() {
			up = true
		} else if on {
			down = true
		}
	}
	return down && !up
}

func describeRoute(w *topology.Route) string {
	s := w.To
	if w.Via != "" {
		s += " via " + w.Via
	}
	if w.Dev != "" {
		s += " dev " + w.Dev
	}
	if w.Metric != 0 {
		s += " metric " + strconv.Itoa(w.Metric)
	}
	return s
}

func kernelDst(r Route) (netip.Prefix, bool) {
	if r.Dst == "default" {
		if r.IPv6 {
			return netip.MustParsePrefix("::/0"), true
		}
		return netip.MustParsePrefix("0.0.0.0/0"), true
	}
	p, err := netip.ParsePrefix(r.Dst)
	return p.Masked(), err == nil
}

func sameDst(w *topology.Route, r Route) bool {
	want, err := topology.RouteDst(w.To, w.Via)
	got, ok := kernelDst(r)
	return err == nil && ok && want == got
}

func routeMatches(w *topology.Route, r Route) bool {
	if !sameDst(w, r) {
		return false
	}
	if w.Via != "" && !sameAddr(w.Via, r.Via) || w.Via == "" && r.Via != "" {
		return false
	}
	if w.Dev != "" && w.Dev != r.Dev {
		return false
	}
	metric := w.Metric
	if r.IPv6 && metric == 0 {
		metric = 1024
	}
	return r.Metric == metric
}

func (c *comparer) sysctls(short string, ns *NS) {
	n := c.t.Namespace(short)
	if n == nil {
		return
	}
	for _, s := range n.Sysctls {
		got, ok := ns.Sysctls[s.Key]
		want := strings.Join(strings.Fields(s.Value), " ")
		switch {
		case !ok:
			c.add(short, "sysctl %s not read (missing or unreadable), want %q", s.Key, want)
		case got != want:
			c.add(short, "sysctl %s = %q, want %q", s.Key, got, want)
		}
	}
}

// wantRule is one kernel rule a nat entry of the file asks for.
type wantRule struct {
	n        int    // the entry's number among its namespace's nat entries, from 1
	desc     string // the entry, in words
	chain    string
	required []string // clauses the rule must have
	allowed  []string // clauses it may have (dependencies nft adds or shows)
}

func (w wantRule) name() string { return fmt.Sprintf("nat rule %d (%s)", w.n, w.desc) }

// check returns the clauses the rule lacks and the ones it should not have.
func (w wantRule) check(r NATRule) (missing, unexpected []string) {
	got := r.Clauses()
	for _, c := range w.required {
		if !slices.Contains(got, c) {
			missing = append(missing, c)
		}
	}
	for _, c := range got {
		if !slices.Contains(w.required, c) && !slices.Contains(w.allowed, c) {
			unexpected = append(unexpected, c)
		}
	}
	return missing, unexpected
}

func (w wantRule) matches(r NATRule) bool {
	m, u := w.check(r)
	return len(m) == 0 && len(u) == 0
}

// natFamily is nft's family word for an address: "ip" or "ip6".
func natFamily(a netip.Addr) (family, nfproto string) {
	if a.Unmap().Is4() {
		return "ip", "ipv4"
	}
	return "ip6", "ipv6"
}

// sourceClause is the match on a source CIDR as Text shows it.
func sourceClause(cidr string) (clause, family, nfproto string) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "saddr == " + cidr, "ip", "ipv4"
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
	family, nfproto = natFamily(p.Addr())
	v := p.String()
	if p.IsSingleIP() {
		v = p.Addr().String()
	}
	return family + " saddr == " + v, family, nfproto
}

func outClauses(out, notOut string) []string {
	switch {
	case out != "":
		return []string{"meta oifname == " + out}
	case notOut != "":
		return []string{"meta oifname != " + notOut}
	}
	return nil
}

// wantRules lists the kernel rules the file's nat entries for namespace
// short ask for, in file order.
func (c *comparer) wantRules(short string) []wantRule {
	var out []wantRule
	n := 0
	for _, r := range c.t.NAT {
		if r.Namespace != short {
			continue
		}
		n++
		switch {
		case r.Masquerade != nil:
			m := r.Masquerade
			src, _, nfproto := sourceClause(m.Source)
			out = append(out, wantRule{
				n: n, desc: describeOut("masquerade "+m.Source, m.Out, m.NotOut), chain: "postrouting",
				required: append(append([]string{src}, outClauses(m.Out, m.NotOut)...), "masquerade"),
				allowed:  []string{"meta nfproto == " + nfproto},
			})
		case r.SNAT != nil:
			s := r.SNAT
			src, _, nfproto := sourceClause(s.Source)
			to, _ := netip.ParseAddr(s.To)
			family, _ := natFamily(to)
			out = append(out, wantRule{
				n: n, desc: describeOut("snat "+s.Source+" to "+s.To, s.Out, s.NotOut), chain: "postrouting",
				required: append(append([]string{src}, outClauses(s.Out, s.NotOut)...), "snat "+family+" to "+to.Unmap().String()),
				allowed:  []string{"meta nfproto == " + nfproto},
			})
		case r.PortForward != nil:
			f := r.PortForward
			to, _ := netip.ParseAddrPort(f.To)
			family, nfproto := natFamily(to.Addr())
			dnat := "dnat " + family + " to " + netip.AddrPortFrom(to.Addr().Unmap(), to.Port()).String()
			desc := fmt.Sprintf("port_forward %s %d to %s", f.Proto, f.Port, f.To)
			if f.In != "" {
				desc += " in " + f.In
			}
			common := []string{"fib daddr type == local", fmt.Sprintf("%s dport == %d", f.Proto, f.Port), dnat}
			allowed := []string{"meta nfproto == " + nfproto, "meta l4proto == " + f.Proto}
			pre := common
			if f.In != "" {
				pre = append([]string{"meta iifname == " + f.In}, common...)
			}
			out = append(out,
				wantRule{n: n, desc: desc, chain: "prerouting", required: pre, allowed: allowed},
				wantRule{n: n, desc: desc, chain: "output", required: common, allowed: allowed})
		}
	}
	return out
}

func describeOut(s, out, notOut string) string {
	if out != "" {
		return s + " out " + out
	}
	if notOut != "" {
		return s + " not_out " + notOut
	}
	return s
}

// nat checks the lab's table in one namespace: per chain, the kernel's rules
// must be exactly the file's, in file order. The chain "owner" is ignored.
func (c *comparer) nat(short string, ns *NS) {
	want := c.wantRules(short)
	if ns.NAT == nil {
		if len(want) > 0 {
			c.add(short, "nat table missing (%d nat entries in the file)", want[len(want)-1].n)
		}
		return
	}
	if len(want) == 0 {
		c.add(short, "nat table present but the file has no nat rules here")
	}
	chains := []string{"prerouting", "output", "postrouting"}
	for name := range ns.NAT {
		if name != "owner" && !slices.Contains(chains, name) {
			chains = append(chains, name)
		}
	}
	for _, chain := range chains {
		var w []wantRule
		for _, r := range want {
			if r.chain == chain {
				w = append(w, r)
			}
		}
		c.natChain(short, chain, w, ns.NAT[chain])
	}
}

// natChain aligns the wanted rules with the kernel's (longest common
// subsequence), then reports what is left on either side.
func (c *comparer) natChain(short, chain string, want []wantRule, got []NATRule) {
	// lcs[i][j]: length of the longest alignment of want[i:] and got[j:].
	lcs := make([][]int, len(want)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(got)+1)
	}
	for i := len(want) - 1; i >= 0; i-- {
		for j := len(got) - 1; j >= 0; j-- {
			if want[i].matches(got[j]) {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	wantDone := make([]bool, len(want))
	gotDone := make([]bool, len(got))
	for i, j := 0, 0; i < len(want) && j < len(got); {
		switch {
		case want[i].matches(got[j]) && lcs[i][j] == lcs[i+1][j+1]+1:
			wantDone[i], gotDone[j] = true, true
			i, j = i+1, j+1
		case lcs[i+1][j] >= lcs[i][j+1]:
			i++
		default:
			j++
		}
	}
	for i, w := range want {
		if wantDone[i] {
			continue
		}
		// Present, but not where it belongs?
		moved := -1
		for j, r := range got {
			if !gotDone[j] && w.matches(r) {
				moved = j
				break
			}
		}
		if moved >= 0 {
			gotDone[moved] = true
			c.add(short, "nat %s: %s is kernel rule %d, out of file order", chain, w.name(), moved+1)
			continue
		}
		// A kernel rule with the same action (masquerade, snat, dnat) that
		// differs in its matches: say how.
		near := -1
		action := strings.Fields(w.required[len(w.required)-1])[0]
		for j, r := range got {
			if cl := r.Clauses(); !gotDone[j] && len(cl) > 0 && strings.Fields(cl[len(cl)-1])[0] == action {
				near = j
				break
			}
		}
		if near >= 0 {
			gotDone[near] = true
			m, u := w.check(got[near])
			c.add(short, "nat %s: %s: kernel rule %d differs: lacks [%s], has unexpected [%s]",
				chain, w.name(), near+1, strings.Join(m, "; "), strings.Join(u, "; "))
			continue
		}
		c.add(short, "nat %s: %s missing", chain, w.name())
	}
	for j, r := range got {
		if !gotDone[j] {
			c.add(short, "nat %s: kernel rule %d not in the file: %s (comment %q)", chain, j+1, r.Text, r.Comment)
		}
	}
}
