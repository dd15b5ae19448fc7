package reconcile

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/netplan-lab/netplan-lab/topology"
)

// KindImpair is the kind of a change to an interface's impairment: the
// root qdisc the lab puts on it (netem, or tbf for a rate alone).
const KindImpair Kind = "impair"

// Impair is what an interface's egress does to packets. Zero means "not
// set"; percentages are rounded to 1e-4 (netem keeps 32-bit fractions).
type Impair struct {
	Delay     uint32  `json:"delay_us,omitempty"`
	Jitter    uint32  `json:"jitter_us,omitempty"`
	Loss      float64 `json:"loss,omitempty"`
	Duplicate float64 `json:"duplicate,omitempty"`
	Reorder   float64 `json:"reorder,omitempty"`
	Corrupt   float64 `json:"corrupt,omitempty"`
	Rate      uint64  `json:"rate_bps,omitempty"` // bits per second, a multiple of 8
	Limit     uint32  `json:"limit,omitempty"`    // packets; 0 is the qdisc's default
	// Short, in an observed state, says the qdisc's bucket holds no full
	// frame of the interface's MTU now (made for a smaller one): what it
	// holds. It is made again.
	Short string `json:"short,omitempty"`
}

// Qdisc names the qdisc that makes the impairment: netem for anything but
// a rate alone, which tbf does (it is in kernels without netem).
func (im *Impair) Qdisc() string {
	if im.Delay != 0 || im.Jitter != 0 || im.Loss != 0 || im.Duplicate != 0 || im.Reorder != 0 || im.Corrupt != 0 {
		return "netem"
	}
	return "tbf"
}

// NetemDefaultLimit is the queue length netem has when none is given.
const NetemDefaultLimit = 1000

// ImpairFromTopology converts the file's values.
func ImpairFromTopology(t *topology.Impair) *Impair {
	if t == nil {
		return nil
	}
	return &Impair{Delay: t.Delay, Jitter: t.Jitter, Loss: RoundPercent(t.Loss), Duplicate: RoundPercent(t.Duplicate),
		Reorder: RoundPercent(t.Reorder), Corrupt: RoundPercent(t.Corrupt), Rate: t.Rate / 8 * 8, Limit: uint32(t.Limit)}
}

// RoundPercent rounds a percentage to the precision plans compare at.
func RoundPercent(p float64) float64 { return math.Round(p*1e4) / 1e4 }

// Clone returns a copy of im.
func (im *Impair) Clone() *Impair {
	if im == nil {
		return nil
	}
	c := *im
	return &c
}

type impairKey struct {
	name  string
	value func(im *Impair) string
}

var impairKeys = []impairKey{
	{"delay", func(im *Impair) string { return FormatTime(im.Delay) }},
	{"jitter", func(im *Impair) string { return FormatTime(im.Jitter) }},
	{"loss", func(im *Impair) string { return formatPercent(im.Loss) }},
	{"duplicate", func(im *Impair) string { return formatPercent(im.Duplicate) }},
	{"reorder", func(im *Impair) string { return formatPercent(im.Reorder) }},
	{"corrupt", func(im *Impair) string { return formatPercent(im.Corrupt) }},
	{"rate", func(im *Impair) string { return FormatRate(im.Rate) }},
	{"limit", func(im *Impair) string {
		if im.Limit == 0 {
			return ""
		}
		return strconv.Itoa(int(im.Limit))
	}},
}

// String lists the set values in tc's words: "delay 50ms loss 1% rate 10mbit".
func (im *Impair) String() string {
	if im == nil {
		return "(none)"
	}
	var parts []string
	for _, k := range impairKeys {
		if v := k.value(im); v != "" {
			parts = append(parts, k.name+" "+v)
		}
	}
	return strings.Join(parts, " ")
}

// impairFields lists what differs between the observed impairment h and
// the wanted w, as plan fields.
func impairFields(w, h *Impair) []Field {
	var out []Field
	wn, hn := w.Clone(), h.Clone()
	// netem has a default queue of 1000 packets: saying so changes nothing.
	for _, im := range []*Impair{wn, hn} {
		if im.Qdisc() == "netem" && im.Limit == NetemDefaultLimit {
			im.Limit = 0
		}
	}
	for _, k := range impairKeys {
		a, b := k.value(hn), k.value(wn)
		if a != b {
			out = append(out, Field{k.name, orNone(a), orNone(b)})
		}
	}
	if len(out) == 0 && wn.Qdisc() != hn.Qdisc() {
		out = append(out, Field{"qdisc", hn.Qdisc(), wn.Qdisc()})
	}
	if hn.Short != "" {
		// Its limit was read for the old frames: the bucket says why.
		out = slices.DeleteFunc(out, func(f Field) bool { return f.Name == "limit" })
		out = append(out, Field{"bucket", hn.Short, "a full frame"})
	}
	return out
}

// FormatTime writes microseconds as tc does: 50ms, 1.5ms, 200us, 2s.
func FormatTime(us uint32) string {
	switch {
	case us == 0:
		return ""
	case us%1_000_000 == 0:
		return fmt.Sprintf("%ds", us/1_000_000)
	case us >= 1000:
		return strconv.FormatFloat(float64(us)/1000, 'f', -1, 64) + "ms"
	}
	return fmt.Sprintf("%dus", us)
}

// FormatRate writes bits per second as tc does: 10mbit, 512kbit, 1gbit.
func FormatRate(bits uint64) string {
	switch {
	case bits == 0:
		return ""
	case bits%1_000_000_000 == 0:
		return fmt.Sprintf("%dgbit", bits/1_000_000_000)
	case bits%1_000_000 == 0:
		return fmt.Sprintf("%dmbit", bits/1_000_000)
	case bits%1000 == 0:
		return fmt.Sprintf("%dkbit", bits/1000)
	}
	return fmt.Sprintf("%dbit", bits)
}

func formatPercent(p float64) string {
	if p == 0 {
		return ""
	}
	return strconv.FormatFloat(p, 'f', -1, 64) + "%"
}

// impairs plans the impairments of the links of namespace name: created
// with a link that is made or re-made, changed in place (the qdisc is
// changed, the interface kept), removed when the file drops them.
func (d *differ) impairs(name string) {
	w := d.want.Namespaces[name]
	for _, ln := range sortedKeys(w.Links) {
		wl := w.Links[ln]
		ref := Ref{name, ln}
		if !wl.Owned {
			continue
		}
		hl := d.haveLink(ref)
		fresh := d.fresh[ref] || hl == nil || d.gone[ref]
		if !fresh && !hl.Owned {
			continue // a conflict of its own
		}
		var have *Impair
		if !fresh {
			have = hl.Impair
			if wl.Impair != nil && hl.QdiscForeign != "" {
				d.conflict(KindImpair, name, ln, "interface %q in namespace %q has a root qdisc that netplan-lab did not make (%s): remove it, or remove impair: from the file",
					ln, name, hl.QdiscForeign)
				continue
			}
		}
		c := &Change{Kind: KindImpair, Namespace: name, Name: ln, Dev: ln, Link: wl.Clone()}
		switch {
		case wl.Impair != nil && have == nil:
			c.Action = Create
		case wl.Impair == nil && have != nil:
			c.Action, c.Link = Delete, hl.Clone()
		case wl.Impair != nil:
			c.Fields = impairFields(wl.Impair, have)
			if m := d.mtuAfter(ref, 0); len(c.Fields) == 0 && wl.Impair.Qdisc() == "tbf" && m.ok && m.mtu != hl.MTU {
				// Its bucket and queue are sized for a frame of the MTU.
				c.Fields = []Field{{"mtu", strconv.Itoa(hl.MTU), strconv.Itoa(m.mtu)}}
				c.Why = "again: the interface's MTU changes, and the rate's bucket is sized to hold a frame"
			}
			if len(c.Fields) == 0 {
				continue
			}
			c.Action, c.OldLink = Update, hl.Clone()
		default:
			continue
		}
		d.add(c)
	}
}

func (c *Change) describeImpair() string {
	s := "impair on " + c.Name
	switch {
	case len(c.Fields) > 0:
		var parts []string
		for _, f := range c.Fields {
			parts = append(parts, fmt.Sprintf("%s: %s -> %s", f.Name, f.Old, f.New))
		}
		return s + " (" + strings.Join(parts, ", ") + ")"
	case c.Link != nil && c.Link.Impair != nil:
		return s + ": " + c.Link.Impair.String()
	}
	return s
}
