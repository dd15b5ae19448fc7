// Package reconcile holds the state model of a lab, the diff between a wanted
// and an observed state, the plan that diff produces, and the executor that
// carries a plan out through a Kernel. It imports nothing that touches the
// kernel: the Kernel interface is implemented by internal/linux for real and
// by reconcile/fake for tests.
package reconcile

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// HostNS is the short name of the namespace that plays "host".
const HostNS = "host"

// State is the normalised state of a lab: the same type describes what a
// topology wants and what the kernel has, so a diff is a plain comparison.
type State struct {
	Namespaces map[string]*Namespace `json:"namespaces"`
	// Where, in a desired state made from a file, says where in the file
	// an object is ("FILE:LINE:COL: PATH: "; "" if not there): a plan's
	// conflicts start with it. name is a route's Key, a sysctl's key.
	Where func(kind Kind, ns, name string) string `json:"-"`
}

// where is s.Where, or "" without one.
func (s *State) where(kind Kind, ns, name string) string {
	if s == nil || s.Where == nil {
		return ""
	}
	return s.Where(kind, ns, name)
}

// Namespace is one network namespace, keyed by its short name.
type Namespace struct {
	Name string `json:"name"`
	// Owned is true when the namespace carries this topology's mark (observed)
	// or is created by the topology (desired). The host namespace never is.
	Owned   bool                `json:"owned"`
	Sysctls map[string]string   `json:"sysctls,omitempty"`
	Links   map[string]*Link    `json:"links,omitempty"`
	Routes  map[string]*Route   `json:"routes,omitempty"`
	NAT     map[string]*NATRule `json:"nat,omitempty"` // by ID
	// NATOrder, in a desired state, is the NAT rules' IDs in the file's
	// order: first match wins, so the kernel's chains hold them in it.
	NATOrder []string `json:"nat_order,omitempty"`
	// NATChains, in an observed state, is the IDs of the lab's rules in
	// each chain, in the kernel's order.
	NATChains map[string][]string `json:"nat_chains,omitempty"`
	// Absent marks an observed host that does not exist yet: the --netns
	// sandbox, which apply creates first.
	Absent bool `json:"absent,omitempty"`
	// Stale marks an observed namespace of the lab that is only a pin file
	// with no namespace on it (a run killed while making or removing it):
	// the plan creates it again or removes the file.
	Stale bool `json:"stale,omitempty"`
	// LabDefaults, in an observed state, says the namespace was made by the
	// lab (or is its sandbox) and so has the settings every lab namespace
	// starts with: net.ipv4.conf.all.promote_secondaries=1 and
	// net.ipv6.conf.all.keep_addr_on_down=1.
	LabDefaults bool `json:"lab_defaults,omitempty"`
	// OtherLab, in an observed state, names the lab that owns a namespace
	// this one does not (read from its mark), for conflicts.
	OtherLab string `json:"other_lab,omitempty"`
	// Broken, in an observed state, says why a namespace with a wanted name
	// cannot be used (a pin file of someone else with nothing mounted).
	Broken string `json:"broken,omitempty"`
	// IPv6Inferred, in an observed state, says the IPv6Switch values were
	// taken from the interfaces (they agreed with the file), not read: a
	// plan that makes an interface there reads them first (ExactSysctls).
	IPv6Inferred bool `json:"ipv6_switch_inferred,omitempty"`
	// ForwardDrop lists, in an observed state, base chains of other owners
	// that drop forwarded packets by default (policy drop, as Docker sets);
	// one with no rules at all ends in ForwardDropNoRules.
	ForwardDrop []string `json:"forward_drop,omitempty"`
	// ForwardRules lists, in an observed state, base chains of other
	// owners on the forward hook that accept by default and hold rules
	// (any of which may drop): path says it does not evaluate them.
	ForwardRules []string `json:"forward_rules,omitempty"`
	// InputDrop and InputRules, in an observed state, are the same of the
	// input hook (packets to the namespace's own addresses): read for
	// path, which says what they may drop.
	InputDrop  []string `json:"input_drop,omitempty"`
	InputRules []string `json:"input_rules,omitempty"`
	// NATStrays, in an observed state, lists rules in the lab's NAT chains
	// that are not the lab's (added by hand): left, and warned about.
	NATStrays []string `json:"nat_strays,omitempty"`
	// NATRepair, in an observed state, says what of the lab's own NAT
	// table was changed by hand (its marker gone, a chain's policy set to
	// drop): the plan makes the table's rules again, which puts it back.
	NATRepair string `json:"nat_repair,omitempty"`
	// NATTableForeign, in an observed state, says that a table with the
	// lab's NAT table name is there and is someone else's.
	NATTableForeign string `json:"nat_table_foreign,omitempty"`
	// SysctlsBefore, in an observed state, holds what the kernel's record
	// says the namespace's sysctls were before the lab first set them: a
	// key the file no longer sets goes back to it (and the namespace's
	// Sysctls hold its value now).
	SysctlsBefore map[string]string `json:"sysctls_before,omitempty"`
	// SysctlsShared, in an observed host, holds the keys another lab of
	// the sandbox set too: one this lab lets go stays as it is for that
	// lab, which puts it back when it lets it go.
	SysctlsShared map[string]bool `json:"sysctls_shared,omitempty"`
	// IPv6Default, in a desired state, says the IPv6 switch's keys are
	// the lab's default (IPv6 off: the file gives the namespace no IPv6),
	// not the file's own.
	IPv6Default bool `json:"-"`
	// HandIPv6, in an observed state, lists IPv6 that someone else added
	// where the rest of the state does not show it (an address on lo, a
	// route outside the main table): turning IPv6 off would take it.
	HandIPv6 []string `json:"-"`
	// AltNames, in an observed state, are the interfaces' alternative
	// names (ip link property add ... altname), each with its interface:
	// the kernel refuses a new interface by one of those names.
	AltNames map[string]string `json:"alt_names,omitempty"`
}

// Ref names an interface in a namespace.
type Ref struct {
	NS   string `json:"namespace"`
	Name string `json:"name"`
}

func (r Ref) String() string { return r.NS + ":" + r.Name }

// Link kinds the topology manages.
const (
	KindBridge  = "bridge"
	KindVeth    = "veth"
	KindMacvlan = "macvlan"
	KindIpvlan  = "ipvlan"
	KindVxlan   = "vxlan"
)

// Link is one network interface. In a desired state, MTU 0, MAC "" and STP
// nil mean "whatever the kernel picks".
type Link struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Owned bool   `json:"owned"`
	Up    bool   `json:"up"`
	MTU   int    `json:"mtu,omitempty"`
	MAC   string `json:"mac,omitempty"`
	// MTUAuto, in a desired state, says MTU is what the kernel had picked
	// (a rollback's): it is restored if it changed, not pinned if not.
	MTUAuto bool `json:"mtu_auto,omitempty"`
	// AutoMAC, in a desired state, says MAC is the derived one (the file
	// gives none): not shown in plans.
	AutoMAC bool `json:"auto_mac,omitempty"`
	// PreferMAC is the MAC to create the link with when MAC is left to the
	// kernel (watch mode re-creates a deleted link with the MAC it had, so
	// neighbours' ARP caches stay right). The diff never compares it.
	PreferMAC string   `json:"prefer_mac,omitempty"`
	Master    string   `json:"master,omitempty"`
	Addresses []string `json:"addresses,omitempty"` // canonical CIDRs, in the file's order (observed: the kernel's)
	// Foreign lists, in an observed state, addresses on an owned link that
	// the lab did not add: never changed, never compared.
	Foreign []string `json:"foreign,omitempty"`
	// OtherLab, in an observed state, names the lab that owns a link this
	// one does not (read from its mark), for conflicts.
	OtherLab string `json:"other_lab,omitempty"`
	// MTUSet, on an observed bridge, says the lab set its MTU (the kernel
	// then keeps it; before, it follows the bridge's ports).
	MTUSet bool `json:"mtu_set,omitempty"`
	// Primaries, in an observed state, lists the link's primary IPv4
	// addresses, the lab's and others' (the first of each subnet).
	Primaries []string `json:"primaries,omitempty"`
	// NoRoute, in an observed state, lists the primary IPv4 addresses
	// (the lab's or others') and the lab's IPv6 addresses of the lab's
	// (up) link whose subnet has lost the route the kernel made for it
	// (ip route flush, ip route del by hand): routes via the subnet
	// cannot be added, and adding the address again makes it.
	NoRoute []string `json:"no_route,omitempty"`
	// NoLocal, in an observed state, lists the lab's IPv4 addresses of the
	// lab's link (up or down) whose local route (table local) is gone (ip route
	// flush table local): the address does not answer, and adding it
	// again makes the route.
	NoLocal []string `json:"no_local,omitempty"`
	// HalfMade marks an observed link of the lab that a killed run left
	// without its full mark: it is replaced.
	HalfMade bool   `json:"half_made,omitempty"`
	STP      *bool  `json:"stp,omitempty"`    // bridges
	Peer     *Ref   `json:"peer,omitempty"`   // veth
	Parent   *Ref   `json:"parent,omitempty"` // macvlan, ipvlan
	Mode     string `json:"mode,omitempty"`   // macvlan, ipvlan
	Flag     string `json:"flag,omitempty"`   // ipvlan
	VXLAN    *VXLAN `json:"vxlan,omitempty"`
	// Impair is the lab's root qdisc on the interface (desired: from the
	// file; observed: read back from the kernel), nil if none.
	Impair *Impair `json:"impair,omitempty"`
	// Ifindex, in an observed state (linux), is the interface's index:
	// what the notes of its sysctls are of (internal/linux).
	Ifindex int `json:"-"`
	// OwnPromote, in an observed state, is the interface's own
	// net.ipv4.conf.IF.promote_secondaries ("" if not read): the kernel
	// promotes a secondary when "all" or this is 1, and an interface
	// takes "default"'s when made (1 in a lab's namespaces).
	OwnPromote string `json:"-"`
	// QdiscForeign, in an observed state, describes a root qdisc that
	// someone else put on the interface ("htb 1:"): left alone, and a
	// conflict if the file wants an impairment there.
	QdiscForeign string `json:"qdisc_foreign,omitempty"`
}

// VXLAN holds the settings of a VXLAN interface that the kernel cannot
// change in place.
type VXLAN struct {
	VNI    int    `json:"vni"`
	Remote string `json:"remote,omitempty"`
	Group  string `json:"group,omitempty"`
	Local  string `json:"local,omitempty"`
	Dev    string `json:"dev,omitempty"`
	Port   int    `json:"port"`
}

// Route is one route in a namespace's main table.
type Route struct {
	Dst    string `json:"to"` // canonical prefix; 0.0.0.0/0 or ::/0 for default
	Via    string `json:"via,omitempty"`
	Dev    string `json:"dev,omitempty"`
	OnLink bool   `json:"onlink,omitempty"`
	Metric int    `json:"metric"`
	Owned  bool   `json:"owned"`
	// Proto is the kernel's routing protocol name, for conflicts (observed).
	Proto string `json:"proto,omitempty"`
}

// Key identifies a route the way the kernel does: destination and metric.
func (r *Route) Key() string { return RouteKey(r.Dst, r.Metric) }

// RouteKey is the key of a route to dst with metric.
func RouteKey(dst string, metric int) string {
	return fmt.Sprintf("%s metric %d", dst, metric)
}

// String shows the route as `ip route` would.
func (r *Route) String() string {
	var b strings.Builder
	if r.Dst == "0.0.0.0/0" || r.Dst == "::/0" {
		b.WriteString("default")
	} else {
		b.WriteString(r.Dst)
	}
	if r.Via != "" {
		b.WriteString(" via " + r.Via)
	}
	if r.Dev != "" {
		b.WriteString(" dev " + r.Dev)
	}
	if r.OnLink {
		b.WriteString(" onlink")
	}
	if r.Metric != 0 {
		fmt.Fprintf(&b, " metric %d", r.Metric)
	}
	return b.String()
}

// NewState returns an empty state.
func NewState() *State { return &State{Namespaces: map[string]*Namespace{}} }

// Nothing is the desired state of a destroyed lab: a host, untouched, and
// nothing else.
func Nothing() *State {
	s := NewState()
	s.Namespaces[HostNS] = NewNamespace(HostNS, false)
	return s
}

// NewNamespace returns an empty namespace.
func NewNamespace(name string, owned bool) *Namespace {
	return &Namespace{Name: name, Owned: owned, Sysctls: map[string]string{},
		Links: map[string]*Link{}, Routes: map[string]*Route{}, NAT: map[string]*NATRule{}}
}

// NS returns namespace name, or nil.
func (s *State) NS(name string) *Namespace {
	if s == nil {
		return nil
	}
	return s.Namespaces[name]
}

// Link returns the link at r, or nil.
func (s *State) Link(r Ref) *Link {
	if ns := s.NS(r.NS); ns != nil {
		return ns.Links[r.Name]
	}
	return nil
}

// SortedNames returns the namespace names with host first, then sorted.
func (s *State) SortedNames() []string {
	var names []string
	for n := range s.Namespaces {
		names = append(names, n)
	}
	SortNamespaces(names)
	return names
}

// SortNamespaces sorts short namespace names, host first.
func SortNamespaces(names []string) {
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == HostNS) != (names[j] == HostNS) {
			return names[i] == HostNS
		}
		return names[i] < names[j]
	})
}

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	if s == nil {
		return nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	out := NewState()
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	// What JSON leaves out (json:"-"): the file's positions, the IPv6
	// default (a watch's repairs plan with a clone: without it they took
	// IPv6 added by hand), observation's hand-made IPv6 and ifindexes.
	out.Where = s.Where
	for name, ns := range out.Namespaces {
		ns.fill()
		src := s.Namespaces[name]
		ns.IPv6Default = src.IPv6Default
		ns.HandIPv6 = append([]string(nil), src.HandIPv6...)
		for ln, l := range ns.Links {
			if sl := src.Links[ln]; sl != nil {
				l.Ifindex = sl.Ifindex
				l.OwnPromote = sl.OwnPromote
			}
		}
	}
	return out
}

func (ns *Namespace) fill() {
	if ns.Sysctls == nil {
		ns.Sysctls = map[string]string{}
	}
	if ns.Links == nil {
		ns.Links = map[string]*Link{}
	}
	if ns.Routes == nil {
		ns.Routes = map[string]*Route{}
	}
	if ns.NAT == nil {
		ns.NAT = map[string]*NATRule{}
	}
}

// Clone returns a deep copy of l.
func (l *Link) Clone() *Link {
	if l == nil {
		return nil
	}
	c := *l
	c.Addresses = append([]string(nil), l.Addresses...)
	c.Foreign = append([]string(nil), l.Foreign...)
	c.Primaries = append([]string(nil), l.Primaries...)
	c.NoRoute = append([]string(nil), l.NoRoute...)
	c.NoLocal = append([]string(nil), l.NoLocal...)
	if l.STP != nil {
		v := *l.STP
		c.STP = &v
	}
	if l.Peer != nil {
		p := *l.Peer
		c.Peer = &p
	}
	if l.Parent != nil {
		p := *l.Parent
		c.Parent = &p
	}
	if l.VXLAN != nil {
		v := *l.VXLAN
		c.VXLAN = &v
	}
	c.Impair = l.Impair.Clone()
	return &c
}

// Clone returns a copy of r.
func (r *Route) Clone() *Route {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

// LabDefaults are the settings every namespace the lab makes (and its
// sandbox) starts with, before any interface exists: deleting a primary
// IPv4 address promotes a secondary instead of taking it along, and IPv6
// addresses stay when a link goes down, as IPv4 ones do. Both make changes
// without breaks possible (an address replaced by adding the new one first
// keeps the routes through the link). "default" is what gives each
// interface its own value, which the kernel takes together with "all"
// (promote_secondaries if either is set; keep_addr_on_down from "all",
// else the interface's): with "all" alone, someone setting it to 0 by hand
// would break the next address change, and observation does not read
// these (an audit found that when "default" was left out to save two
// /proc writes per namespace). And no duplicate address detection on the
// interfaces to come (the file's addresses are unique, and it has nodad
// on them already): their link-local addresses are usable at once, not
// tentative for a second or two, during which an IPv6 router of the lab
// answered nothing (an outside audit: checks right after apply failed).
var LabDefaults = map[string]string{
	"net.ipv4.conf.all.promote_secondaries":     "1",
	"net.ipv4.conf.default.promote_secondaries": "1",
	"net.ipv6.conf.all.keep_addr_on_down":       "1",
	"net.ipv6.conf.default.keep_addr_on_down":   "1",
	"net.ipv6.conf.default.accept_dad":          "0",
}

// NormaliseSysctl compares sysctl values the way the kernel prints them:
// white space between fields does not matter.
func NormaliseSysctl(v string) string { return strings.Join(strings.Fields(v), " ") }

// ForwardDropNoRules ends a ForwardDrop entry of a chain with no rules: it
// drops every forwarded packet.
const ForwardDropNoRules = ", with no rules"
