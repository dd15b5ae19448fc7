package reconcile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Action is what a change does; its value is the symbol users see.
type Action string

// The actions of a plan, as terraform names them.
const (
	Create  Action = "+"
	Update  Action = "~"
	Delete  Action = "-"
	Replace Action = "-/+"
)

// Kind is the kind of object a change touches.
type Kind string

// Object kinds, in the order a plan lists them within a namespace.
const (
	KindNamespace Kind = "namespace"
	KindLink      Kind = "link"
	KindAddress   Kind = "address"
	KindRoute     Kind = "route"
	KindSysctl    Kind = "sysctl"
	KindNAT       Kind = "nat"
)

var kindOrder = map[Kind]int{KindNamespace: 0, KindLink: 1, KindImpair: 2, KindAddress: 3, KindRoute: 4, KindSysctl: 5, KindNAT: 6}

// Field is one attribute changed in place.
type Field struct {
	Name string `json:"name"`
	Old  string `json:"old"`
	New  string `json:"new"`
}

// Change is one step of a plan. Which of the object fields are set depends on
// Kind: Link/OldLink for links, Dev and Addr for addresses, Route/OldRoute for
// routes, Key/Value/OldValue for sysctls.
type Change struct {
	Action    Action  `json:"action"`
	Kind      Kind    `json:"kind"`
	Namespace string  `json:"namespace"`
	Name      string  `json:"name"`
	Fields    []Field `json:"fields,omitempty"`

	// Link, OldLink and PeerLink are read, never written: a create's Link
	// and PeerLink are the desired state's own links, not copies (a plan
	// of 100 000 new veths held 60 MB of copies), so changing them would
	// change what the lab wants. TestPropertyApplyLeavesTheDesiredStateAlone
	// holds to it.
	Link     *Link  `json:"link,omitempty"`      // wanted link (+, ~, -/+), or the one removed (-)
	OldLink  *Link  `json:"old_link,omitempty"`  // observed link (~, -/+)
	PeerLink *Link  `json:"peer_link,omitempty"` // veth create: the wanted other end
	Dev      string `json:"dev,omitempty"`       // address: its interface
	// Peak, on an address added to a link the lab owns, is that link with
	// every address it holds at once while the plan runs (adds come
	// before the deletes they replace): the kernel must have room for
	// their record in the link's alias (Kernel.Preflight checks).
	Peak     *Link    `json:"-"`
	Route    *Route   `json:"route,omitempty"`
	OldRoute *Route   `json:"old_route,omitempty"`
	NAT      *NATRule `json:"nat,omitempty"`
	Value    string   `json:"value,omitempty"`
	OldValue string   `json:"old_value,omitempty"`
	// Readd marks a route the kernel may drop by itself earlier in the same
	// apply (an address of its interface is removed, the interface goes
	// down): it is added, or replaced if it survived.
	Readd bool `json:"readd,omitempty"`
	// Displace marks a route added where one of its key through an
	// interface that goes in this plan may still be (the kernel removes
	// an interface of a deleted namespace later): it is added, or
	// replaces that one.
	Displace bool `json:"displace,omitempty"`
	// Implicit marks a change the kernel makes by itself as a consequence
	// of another (a veth end goes when the namespace of its peer is
	// deleted). It is shown, not sent; apply waits until it is seen.
	Implicit bool `json:"implicit,omitempty"`
	// AfterAdd marks an address delete that runs after the adds on the
	// same link (make before break: routes through the link stay).
	AfterAdd bool `json:"after_add,omitempty"`
	// OldName, on a link update, is the name the link had: it is renamed
	// in place (it keeps its ifindex and MAC).
	OldName string `json:"old_name,omitempty"`
	// Why, if set, says why the change is needed where that is not plain
	// from the file (a pin left by a killed run, ...). Shown in the plan.
	Why string `json:"why,omitempty"`
	// Restore, on a sysctl change, says it puts the value back that the
	// key had before the lab set it (the file no longer sets it): the
	// kernel forgets its record of it once written.
	Restore bool `json:"restore,omitempty"`
	// IPv6Off, on a namespace create, says IPv6 is turned off in it as it
	// is made (net.ipv6.conf.{all,default}.disable_ipv6=1), before any
	// interface exists: the file gives it no IPv6.
	IPv6Off bool `json:"ipv6_off,omitempty"`
}

// Describe is the one-line text of the change, without its action symbol.
func (c *Change) Describe() string {
	if c.Why != "" {
		return c.describe() + " (" + c.Why + ")"
	}
	return c.describe()
}

func (c *Change) describe() string {
	switch c.Kind {
	case KindNamespace:
		if c.Namespace == HostNS {
			return "namespace host (the --netns sandbox)"
		}
		if c.IPv6Off && c.Action != Delete {
			return "namespace " + c.Namespace + " (IPv6 off)"
		}
		return "namespace " + c.Namespace
	case KindLink:
		l := c.Link
		s := l.Kind + " " + l.Name
		switch {
		case l.Kind == KindVeth && l.Peer != nil:
			s += " <-> " + l.Peer.String()
		case l.Parent != nil:
			s += " parent " + l.Parent.String() + " mode " + l.Mode
		case l.VXLAN != nil:
			s += fmt.Sprintf(" vni %d", l.VXLAN.VNI)
			if x := l.VXLAN; c.Action != Delete && len(c.Fields) == 0 {
				for _, kv := range [][2]string{{"remote", x.Remote}, {"group", x.Group}, {"local", x.Local}, {"dev", x.Dev}} {
					if kv[1] != "" {
						s += " " + kv[0] + " " + kv[1]
					}
				}
				if x.Port != 4789 && x.Port != 0 {
					s += fmt.Sprintf(" port %d", x.Port)
				}
			}
		}
		if len(c.Fields) > 0 {
			var parts []string
			for _, f := range c.Fields {
				parts = append(parts, fmt.Sprintf("%s: %s -> %s", f.Name, f.Old, f.New))
			}
			s += " (" + strings.Join(parts, ", ") + ")"
		} else if c.Action != Delete {
			s += linkSummary(l)
		}
		if c.Implicit {
			s += " (goes with netns " + l.Peer.NS + ")"
		}
		if c.PeerLink != nil && c.Action != Delete {
			if ps := linkSummary(c.PeerLink); ps != "" {
				s += ", peer" + ps
			}
		}
		return s
	case KindAddress:
		return "address " + c.Name + " on " + c.Dev
	case KindRoute:
		r := c.Route
		s := "route " + r.String()
		if c.Readd {
			s += " (again: the kernel drops it when an address of " + c.Dev + " goes or it goes down)"
		}
		if len(c.Fields) > 0 {
			var parts []string
			for _, f := range c.Fields {
				parts = append(parts, fmt.Sprintf("%s: %s -> %s", f.Name, f.Old, f.New))
			}
			s = "route " + r.Dst + " (" + strings.Join(parts, ", ") + ")"
		}
		return s
	case KindNAT:
		return "nat " + c.Name
	case KindImpair:
		return c.describeImpair()
	case KindSysctl:
		if c.Action == Update {
			return fmt.Sprintf("sysctl %s: %q -> %q", c.Name, c.OldValue, c.Value)
		}
		return fmt.Sprintf("sysctl %s = %q", c.Name, c.Value)
	}
	return string(c.Kind) + " " + c.Name
}

func linkSummary(l *Link) string {
	var parts []string
	if l.Master != "" {
		parts = append(parts, "master "+l.Master)
	}
	if l.MTU != 0 {
		parts = append(parts, fmt.Sprintf("mtu %d", l.MTU))
	}
	if l.MAC != "" && !l.AutoMAC {
		parts = append(parts, "mac "+l.MAC)
	}
	if !l.Up {
		parts = append(parts, "down")
	}
	if l.STP != nil && *l.STP {
		parts = append(parts, "stp on")
	}
	if len(l.Addresses) > 0 {
		parts = append(parts, strings.Join(l.Addresses, " "))
	}
	if len(parts) == 0 {
		return ""
	}
	return " [" + strings.Join(parts, ", ") + "]"
}

// Plan is the ordered list of changes that takes observed to desired.
type Plan struct {
	Changes []*Change
	// Conflicts are reasons the plan cannot be applied: an object in the way
	// that the topology does not own, a missing parent interface.
	Conflicts []string
	// Warnings do not stop an apply.
	Warnings []string
	// Unsupported, set by a plan that was checked against the kernel,
	// says what the plan needs that this kernel lacks (naming the kernel
	// option): apply would refuse it, changing nothing.
	Unsupported string
	// Netns maps each namespace the plan or the file names (short name)
	// to its kernel name, as `ip netns` shows it (set by the lab).
	Netns map[string]string
	// Variables are the file's variables and the values they took (shown in
	// the plan's JSON).
	Variables map[string]string
	// NATOrder is, for each namespace whose NAT rules change, the wanted
	// rules' IDs in the file's order: where new rules go in the chains.
	NATOrder map[string][]string
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return len(p.Changes) == 0 }

// Counts returns how many objects the plan adds, changes and destroys. A
// replace counts as one add and one destroy.
func (p *Plan) Counts() (add, change, destroy int) {
	for _, c := range p.Changes {
		switch c.Action {
		case Create:
			add++
		case Update:
			change++
		case Delete:
			destroy++
		case Replace:
			add++
			destroy++
		}
	}
	return
}

// Summary is the closing line of a plan.
func (p *Plan) Summary() string {
	a, c, d := p.Counts()
	return fmt.Sprintf("Plan: %d to add, %d to change, %d to destroy.", a, c, d)
}

func (p *Plan) sort() {
	sort.SliceStable(p.Changes, func(i, j int) bool {
		a, b := p.Changes[i], p.Changes[j]
		if a.Namespace != b.Namespace {
			names := []string{a.Namespace, b.Namespace}
			SortNamespaces(names)
			return names[0] == a.Namespace
		}
		if kindOrder[a.Kind] != kindOrder[b.Kind] {
			return kindOrder[a.Kind] < kindOrder[b.Kind]
		}
		switch a.Kind {
		case KindAddress:
			// By interface, then in the order planned: the file's, which
			// is the order they are added in (the first is the primary).
			return a.Dev < b.Dev
		case KindNAT:
			return false // the file's order
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Dev < b.Dev
	})
}

// WriteText prints the plan the way `terraform plan` does: changes grouped
// by namespace, one line each, then the summary.
func (p *Plan) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, c := range p.Conflicts {
		fmt.Fprintf(&b, "conflict: %s\n", c)
	}
	for _, c := range p.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", c)
	}
	if p.Unsupported != "" {
		fmt.Fprintf(&b, "unsupported: %s\n", p.Unsupported)
	}
	if p.Empty() && len(p.Conflicts) > 0 {
		_, err := io.WriteString(w, b.String())
		return err
	}
	if p.Empty() {
		b.WriteString("No changes. The kernel matches the topology.\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	cur := ""
	for i, c := range p.Changes {
		if i == 0 || c.Namespace != cur {
			cur = c.Namespace
			fmt.Fprintf(&b, "namespace %s:\n", cur)
		}
		fmt.Fprintf(&b, "  %-3s %s\n", c.Action, c.Describe())
	}
	b.WriteString("\n" + p.Summary() + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// String returns the plan as text.
func (p *Plan) String() string {
	var b strings.Builder
	_ = p.WriteText(&b)
	return b.String()
}

// PlanSchemaVersion is the version of the JSON form of a plan.
const PlanSchemaVersion = 1

type jsonChange struct {
	Action      Action  `json:"action"`
	Kind        Kind    `json:"kind"`
	Namespace   string  `json:"namespace"`
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Fields      []Field `json:"fields,omitempty"`
	Before      any     `json:"before,omitempty"`
	After       any     `json:"after,omitempty"`
}

type jsonPlan struct {
	SchemaVersion int               `json:"schema_version"`
	Changes       []jsonChange      `json:"changes"`
	Conflicts     []string          `json:"conflicts"`
	Warnings      []string          `json:"warnings"`
	Unsupported   string            `json:"unsupported,omitempty"`
	Netns         map[string]string `json:"netns,omitempty"`
	Variables     map[string]string `json:"variables,omitempty"`
	Summary       struct {
		Add     int `json:"add"`
		Change  int `json:"change"`
		Destroy int `json:"destroy"`
	} `json:"summary"`
}

// MarshalJSON gives the plan's stable, versioned JSON form.
func (p *Plan) MarshalJSON() ([]byte, error) {
	jp := jsonPlan{SchemaVersion: PlanSchemaVersion, Changes: []jsonChange{},
		Conflicts: append([]string{}, p.Conflicts...), Warnings: append([]string{}, p.Warnings...), Variables: p.Variables, Unsupported: p.Unsupported, Netns: p.Netns}
	jp.Summary.Add, jp.Summary.Change, jp.Summary.Destroy = p.Counts()
	for _, c := range p.Changes {
		jc := jsonChange{Action: c.Action, Kind: c.Kind, Namespace: c.Namespace, Name: c.Name,
			Description: c.Describe(), Fields: c.Fields}
		before, after := c.objects()
		if before != nil {
			jc.Before = before
		}
		if after != nil {
			jc.After = after
		}
		jp.Changes = append(jp.Changes, jc)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // "veth eth0 <-> host:x", as the text says it
	if err := enc.Encode(jp); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

func (c *Change) objects() (before, after any) {
	switch c.Kind {
	case KindLink:
		switch c.Action {
		case Delete:
			return c.Link, nil
		case Create:
			return nil, c.Link
		default:
			return c.OldLink, c.Link
		}
	case KindRoute:
		switch c.Action {
		case Delete:
			return c.Route, nil
		case Create:
			return nil, c.Route
		default:
			return c.OldRoute, c.Route
		}
	case KindAddress:
		v := map[string]string{"address": c.Name, "dev": c.Dev}
		if c.Action == Delete {
			return v, nil
		}
		return nil, v
	case KindSysctl:
		if c.Action == Update {
			return c.OldValue, c.Value
		}
		return nil, c.Value
	case KindNAT:
		if c.Action == Delete {
			return c.NAT, nil
		}
		return nil, c.NAT
	case KindImpair:
		switch c.Action {
		case Delete:
			return c.Link.Impair, nil
		case Create:
			return nil, c.Link.Impair
		default:
			return c.OldLink.Impair, c.Link.Impair
		}
	}
	return nil, nil
}
