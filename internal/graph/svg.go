package graph

import (
	"encoding/xml"
	"fmt"
	"sort"
	"strings"
)

// SVG layout: namespaces in columns by their distance (in wires) from the
// first one, each a box with a header (its name, its NAT) and one row per
// interface; wires run between the rows' sides as curves.
const (
	boxW     = 250
	colGap   = 110
	rowGap   = 8
	boxGap   = 30
	lineH    = 14
	headPad  = 8
	margin   = 20
	charW    = 6.6
	fontSize = 11
)

type rect struct{ x, y, w, h float64 }

// SVG writes the model as a standalone SVG image.
func (m *Model) SVG() string {
	boxOf := map[string]int{}
	for i, b := range m.Boxes {
		for _, f := range b.Ifaces {
			boxOf[f.ID] = i
		}
	}
	// Columns: breadth-first over the namespaces the wires join.
	adj := make([][]int, len(m.Boxes))
	for _, e := range m.Edges {
		a, b := boxOf[e.A], boxOf[e.B]
		if a != b {
			adj[a] = append(adj[a], b)
			adj[b] = append(adj[b], a)
		}
	}
	col := make([]int, len(m.Boxes))
	for i := range col {
		col[i] = -1
	}
	// Each connected group starts from its most connected namespace (the
	// one holding the bridge or the router), so it sits in the middle of
	// its neighbours rather than at one end.
	next := 0
	for {
		start, best := -1, -1
		for i := range m.Boxes {
			if col[i] < 0 && len(adj[i]) > best {
				start, best = i, len(adj[i])
			}
		}
		if start < 0 {
			break
		}
		col[start] = next
		queue := []int{start}
		for len(queue) > 0 {
			c := queue[0]
			queue = queue[1:]
			for _, n := range adj[c] {
				if col[n] < 0 {
					col[n] = col[c] + 1
					queue = append(queue, n)
				}
			}
		}
		for _, c := range col {
			next = max(next, c+1)
		}
	}
	// Within a column, boxes in the order of their neighbours in the
	// column before (fewer crossing wires).
	order := make([]int, len(m.Boxes))
	for i := range order {
		order[i] = i
	}
	pos := make([]float64, len(m.Boxes))
	for i := range pos {
		pos[i] = float64(i)
	}
	for c := 1; c < next; c++ {
		for i := range m.Boxes {
			if col[i] != c {
				continue
			}
			sum, n := 0.0, 0
			for _, nb := range adj[i] {
				if col[nb] == c-1 {
					sum += pos[nb]
					n++
				}
			}
			if n > 0 {
				pos[i] = sum/float64(n) + float64(i)/1e6
			}
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return pos[order[a]] < pos[order[b]] })
	// Box sizes and places.
	width := float64(boxW)
	for _, b := range m.Boxes {
		for _, l := range append(strings.Split(boxLabel(b), "\n"), ifaceLines(b)...) {
			width = max(width, float64(len(l))*charW+40)
		}
	}
	boxes := make([]rect, len(m.Boxes))
	rows := map[string]rect{}
	colY := map[int]float64{}
	height, maxCol := 0.0, 0
	for _, i := range order {
		b := m.Boxes[i]
		head := strings.Split(boxLabel(b), "\n")
		x := margin + float64(col[i])*(width+colGap)
		y := colY[col[i]] + margin
		h := float64(len(head))*lineH + 2*headPad
		for _, f := range b.Ifaces {
			rh := float64(len(f.lines()))*lineH + 8
			rows[f.ID] = rect{x + 10, y + h, width - 20, rh}
			h += rh + rowGap
		}
		if len(b.Ifaces) == 0 {
			h += lineH + rowGap
		}
		h += rowGap
		boxes[i] = rect{x, y, width, h}
		colY[col[i]] = y + h + boxGap - margin
		height = max(height, y+h+margin)
		maxCol = max(maxCol, col[i])
	}
	totalW := margin*2 + float64(maxCol+1)*width + float64(maxCol)*colGap
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="monospace" font-size="%d">`+"\n",
		totalW, height, totalW, height, fontSize)
	fmt.Fprintf(&s, "<title>%s</title>\n", esc("netplan-lab: "+m.Name))
	s.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	for i, b := range m.Boxes {
		r := boxes[i]
		fmt.Fprintf(&s, `<g class="netns"><rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="8" fill="#f4f6fb" stroke="#4a5a7a" stroke-width="1.5"/>`+"\n", r.x, r.y, r.w, r.h)
		for j, l := range strings.Split(boxLabel(b), "\n") {
			weight, color := "bold", "#1d2740"
			if j > 0 {
				weight, color = "normal", "#a33"
			}
			fmt.Fprintf(&s, `<text x="%.1f" y="%.1f" font-weight="%s" fill="%s">%s</text>`+"\n", r.x+10, r.y+headPad+float64(j+1)*lineH-3, weight, color, esc(l))
		}
		if len(b.Ifaces) == 0 {
			fmt.Fprintf(&s, `<text x="%.1f" y="%.1f" fill="#777">(only lo)</text>`+"\n", r.x+10, r.y+r.h-rowGap-4)
		}
		for _, f := range b.Ifaces {
			rr := rows[f.ID]
			fill, dash := "#ffffff", ""
			switch f.Kind {
			case "bridge":
				fill = "#e3f0e3"
			case "vxlan":
				fill = "#e6ecfa"
			case "macvlan", "ipvlan":
				fill = "#fbf3e0"
			case "external":
				fill, dash = "#f0f0f0", ` stroke-dasharray="4 3"`
			}
			fmt.Fprintf(&s, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="4" fill="%s" stroke="#667"%s/>`+"\n", rr.x, rr.y, rr.w, rr.h, fill, dash)
			for j, l := range f.lines() {
				fmt.Fprintf(&s, `<text x="%.1f" y="%.1f">%s</text>`+"\n", rr.x+8, rr.y+float64(j+1)*lineH, esc(l))
			}
		}
		s.WriteString("</g>\n")
	}
	for _, e := range m.Edges {
		a, b := rows[e.A], rows[e.B]
		ca, cb := col[boxOf[e.A]], col[boxOf[e.B]]
		var x1, x2, c1, c2 float64
		y1, y2 := a.y+a.h/2, b.y+b.h/2
		switch {
		case ca < cb:
			x1, x2 = a.x+a.w, b.x
			c1, c2 = x1+colGap/2, x2-colGap/2
		case ca > cb:
			x1, x2 = a.x, b.x+b.w
			c1, c2 = x1-colGap/2, x2+colGap/2
		default: // same column: out and back on the right
			x1, x2 = a.x+a.w, b.x+b.w
			bulge := 40 + absf(y2-y1)/6
			c1, c2 = x1+bulge, x2+bulge
		}
		stroke, extra, sw := "#222", "", "1.6"
		switch e.Kind {
		case "port":
			stroke = "#6a8f6a"
		case "parent":
			stroke, extra = "#b07a1a", ` stroke-dasharray="6 4"`
		case "vxlan":
			stroke, extra, sw = "#3057c0", ` stroke-dasharray="2 4"`, "3"
		}
		fmt.Fprintf(&s, `<path d="M %.1f %.1f C %.1f %.1f, %.1f %.1f, %.1f %.1f" fill="none" stroke="%s" stroke-width="%s"%s/>`+"\n",
			x1, y1, c1, y1, c2, y2, x2, y2, stroke, sw, extra)
		if e.Label != "" {
			fmt.Fprintf(&s, `<text x="%.1f" y="%.1f" fill="%s" text-anchor="middle">%s</text>`+"\n", (c1+c2)/2, (y1+y2)/2-4, stroke, esc(e.Label))
		}
	}
	s.WriteString("</svg>\n")
	return s.String()
}

func ifaceLines(b *Box) []string {
	var out []string
	for _, f := range b.Ifaces {
		out = append(out, f.lines()...)
	}
	return out
}

func absf(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
