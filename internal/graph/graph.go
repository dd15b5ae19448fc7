// Package graph draws a topology: namespaces as boxes holding their
// interfaces and addresses, and the wires between them (veth pairs, bridge
// ports, macvlan/ipvlan parents, VXLAN tunnels), with NAT marked at its
// namespace. It writes Graphviz dot, Mermaid, or SVG laid out by itself
// (no graphviz binary needed).
package graph

import (
	"fmt"
	"sort"
	"strings"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// Iface is one interface in a namespace box.
type Iface struct {
	ID    string // "ns:name"
	Name  string
	Kind  string // bridge, veth, macvlan, ipvlan, vxlan, external
	Addrs []string
	Note  string // "vni 4097", "mode bridge", "impair rate 8mbit"
}

// Box is one namespace.
type Box struct {
	Name   string
	Ifaces []*Iface
	NAT    []string
}

// Edge joins two interfaces.
type Edge struct {
	A, B  string
	Kind  string // veth, port, parent, vxlan
	Label string
}

// Model is a topology as boxes and edges.
type Model struct {
	Name  string
	Boxes []*Box
	Edges []Edge
}

// Build makes the model of t: namespaces in file order (host first when
// it holds anything).
func Build(t *topology.Topology) *Model {
	m := &Model{Name: t.Name}
	boxes := map[string]*Box{}
	box := func(ns string) *Box {
		if b := boxes[ns]; b != nil {
			return b
		}
		b := &Box{Name: ns}
		boxes[ns] = b
		return b
	}
	order := []string{topology.Host}
	for _, n := range t.Namespaces {
		if n.Name != topology.Host {
			order = append(order, n.Name)
		}
	}
	ifaces := map[string]*Iface{}
	add := func(i *topology.Iface, kind, note string) {
		id := i.Namespace + ":" + i.Name
		f := &Iface{ID: id, Name: i.Name, Kind: kind, Addrs: i.Addresses, Note: note}
		if i.Impair != nil {
			f.Note = strings.TrimSpace(f.Note + " impair " + reconcile.ImpairFromTopology(i.Impair).String())
		}
		ifaces[id] = f
		b := box(i.Namespace)
		b.Ifaces = append(b.Ifaces, f)
	}
	for _, b := range t.Bridges {
		add(&b.Iface, "bridge", "")
	}
	for _, l := range t.Links {
		add(&l.A, "veth", "")
		add(&l.B, "veth", "")
		m.Edges = append(m.Edges, Edge{A: l.A.Namespace + ":" + l.A.Name, B: l.B.Namespace + ":" + l.B.Name, Kind: "veth"})
	}
	external := func(ns, name string) string {
		id := ns + ":" + name
		if ifaces[id] == nil {
			f := &Iface{ID: id, Name: name, Kind: "external", Note: "not the lab's"}
			ifaces[id] = f
			box(ns).Ifaces = append(box(ns).Ifaces, f)
		}
		return id
	}
	for _, c := range t.Macvlans {
		add(&c.Iface, "macvlan", "mode "+c.Mode)
		m.Edges = append(m.Edges, Edge{A: c.Namespace + ":" + c.Name, B: external(c.ParentNS, c.ParentName), Kind: "parent", Label: "macvlan"})
	}
	for _, c := range t.Ipvlans {
		add(&c.Iface, "ipvlan", "mode "+c.Mode)
		m.Edges = append(m.Edges, Edge{A: c.Namespace + ":" + c.Name, B: external(c.ParentNS, c.ParentName), Kind: "parent", Label: "ipvlan"})
	}
	byVNI := map[int][]string{}
	for _, v := range t.Vxlans {
		add(&v.Iface, "vxlan", fmt.Sprintf("vni %d", v.VNI))
		byVNI[v.VNI] = append(byVNI[v.VNI], v.Namespace+":"+v.Name)
		if v.Dev != "" {
			m.Edges = append(m.Edges, Edge{A: v.Namespace + ":" + v.Name, B: external(v.Namespace, v.Dev), Kind: "parent", Label: "underlay"})
		}
	}
	vnis := make([]int, 0, len(byVNI))
	for vni := range byVNI {
		vnis = append(vnis, vni)
	}
	sort.Ints(vnis)
	for _, vni := range vnis {
		ids := byVNI[vni]
		for i := 1; i < len(ids); i++ {
			m.Edges = append(m.Edges, Edge{A: ids[0], B: ids[i], Kind: "vxlan", Label: fmt.Sprintf("vni %d", vni)})
		}
	}
	for _, i := range t.Interfaces() {
		if i.Bridge != "" {
			m.Edges = append(m.Edges, Edge{A: i.Namespace + ":" + i.Name, B: i.Namespace + ":" + i.Bridge, Kind: "port"})
		}
	}
	for _, n := range t.NAT {
		b := box(n.Namespace)
		switch {
		case n.Masquerade != nil:
			b.NAT = append(b.NAT, "masquerade "+orAll(n.Masquerade.Source)+outText(n.Masquerade.Out, n.Masquerade.NotOut))
		case n.SNAT != nil:
			b.NAT = append(b.NAT, "snat "+orAll(n.SNAT.Source)+" to "+n.SNAT.To+outText(n.SNAT.Out, n.SNAT.NotOut))
		case n.PortForward != nil:
			f := n.PortForward
			s := fmt.Sprintf("%s %d -> %s", f.Proto, f.Port, f.To)
			if f.In != "" {
				s += " in " + f.In
			}
			b.NAT = append(b.NAT, s)
		}
	}
	for _, ns := range order {
		if b := boxes[ns]; b != nil {
			m.Boxes = append(m.Boxes, b)
		} else if ns != topology.Host {
			m.Boxes = append(m.Boxes, box(ns))
		}
	}
	return m
}

func orAll(s string) string {
	if s == "" {
		return "all"
	}
	return s
}

func outText(out, notOut string) string {
	switch {
	case out != "":
		return " out " + out
	case notOut != "":
		return " not out " + notOut
	}
	return ""
}

func (f *Iface) lines() []string {
	head := f.Name
	if f.Kind != "veth" {
		head += " (" + f.Kind + ")"
	}
	out := []string{head}
	out = append(out, f.Addrs...)
	if f.Note != "" {
		out = append(out, f.Note)
	}
	return out
}

// Dot writes the model as a Graphviz graph.
func (m *Model) Dot() string {
	var b strings.Builder
	fmt.Fprintf(&b, "graph %s {\n", dotID(m.Name))
	b.WriteString("  rankdir=LR;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n")
	for i, box := range m.Boxes {
		fmt.Fprintf(&b, "  subgraph cluster_%d {\n    label=%s;\n", i, dotID(boxLabel(box)))
		if len(box.Ifaces) == 0 {
			fmt.Fprintf(&b, "    %s [label=%s, shape=plaintext];\n", dotID(box.Name+":"), dotID("(only lo)"))
		}
		for _, f := range box.Ifaces {
			shape := ""
			if f.Kind == "bridge" {
				shape = ", shape=box3d"
			} else if f.Kind == "external" {
				shape = ", style=dashed"
			}
			fmt.Fprintf(&b, "    %s [label=%s%s];\n", dotID(f.ID), dotID(strings.Join(f.lines(), "\n")), shape)
		}
		b.WriteString("  }\n")
	}
	for _, e := range m.Edges {
		attrs := []string{}
		switch e.Kind {
		case "parent":
			attrs = append(attrs, "style=dashed")
		case "vxlan":
			attrs = append(attrs, "style=dotted", "penwidth=2")
		case "port":
			attrs = append(attrs, "color=gray40")
		}
		if e.Label != "" {
			attrs = append(attrs, "label="+dotID(e.Label))
		}
		a := ""
		if len(attrs) > 0 {
			a = " [" + strings.Join(attrs, ", ") + "]"
		}
		fmt.Fprintf(&b, "  %s -- %s%s;\n", dotID(e.A), dotID(e.B), a)
	}
	b.WriteString("}\n")
	return b.String()
}

func boxLabel(b *Box) string {
	s := "netns " + b.Name
	for _, n := range b.NAT {
		s += "\nNAT: " + n
	}
	return s
}

func dotID(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// Mermaid writes the model as a Mermaid flowchart.
func (m *Model) Mermaid() string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	for i, box := range m.Boxes {
		fmt.Fprintf(&b, "  subgraph ns%d[%s]\n", i, mmText(boxLabel(box)))
		if len(box.Ifaces) == 0 {
			fmt.Fprintf(&b, "    %s[%s]\n", mmID(box.Name+":"), mmText("(only lo)"))
		}
		for _, f := range box.Ifaces {
			open, close := "[", "]"
			if f.Kind == "bridge" {
				open, close = "[[", "]]"
			}
			fmt.Fprintf(&b, "    %s%s%s%s\n", mmID(f.ID), open, mmText(strings.Join(f.lines(), "\n")), close)
		}
		b.WriteString("  end\n")
	}
	for _, e := range m.Edges {
		link := "---"
		switch e.Kind {
		case "parent":
			link = "-.-"
		case "vxlan":
			link = "==="
		}
		if e.Label != "" {
			fmt.Fprintf(&b, "  %s %s|%s| %s\n", mmID(e.A), link, mmText(e.Label), mmID(e.B))
		} else {
			fmt.Fprintf(&b, "  %s %s %s\n", mmID(e.A), link, mmID(e.B))
		}
	}
	return b.String()
}

func mmID(s string) string {
	var b strings.Builder
	b.WriteString("n_")
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, "_%x_", r)
		}
	}
	return b.String()
}

func mmText(s string) string {
	s = strings.NewReplacer(`"`, "#quot;", "\n", "<br/>").Replace(s)
	return `"` + s + `"`
}
