package topology

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Impair is an `impair:` block: what a link does to the packets leaving an
// interface (its egress), in the units tc uses. Zero means "not set".
type Impair struct {
	Delay     uint32  // microseconds
	Jitter    uint32  // microseconds
	Loss      float64 // percent
	Duplicate float64 // percent
	Reorder   float64 // percent
	Corrupt   float64 // percent
	Rate      uint64  // bits per second
	Limit     int     // packets
	Pos       Pos
	Path      string
	// NetemPos and NetemPath are the place of its first key that needs
	// netem (for the message of a kernel without it).
	NetemPos  Pos
	NetemPath string
}

// MaxDelay is the longest delay or jitter netem can hold (its 32-bit
// field counts 64 ns ticks): one minute, well inside it.
const MaxDelay = 60_000_000 // microseconds

func (d *decoder) impair(n *yaml.Node, path string) *Impair {
	im := &Impair{Pos: pos(n), Path: path}
	pct := func(dst *float64) func(k, v *yaml.Node, p string) {
		return func(k, v *yaml.Node, p string) { *dst = d.percent(v, p) }
	}
	dur := func(dst *uint32) func(k, v *yaml.Node, p string) {
		return func(k, v *yaml.Node, p string) { *dst = d.duration(v, p) }
	}
	var seen []string
	keys := map[string]func(k, v *yaml.Node, p string){
		"delay":     dur(&im.Delay),
		"jitter":    dur(&im.Jitter),
		"loss":      pct(&im.Loss),
		"duplicate": pct(&im.Duplicate),
		"reorder":   pct(&im.Reorder),
		"corrupt":   pct(&im.Corrupt),
		"rate":      func(k, v *yaml.Node, p string) { im.Rate = d.rate(v, p) },
		"limit": func(k, v *yaml.Node, p string) {
			im.Limit = d.integer(v, p)
			if im.Limit == 0 && v.Tag == "!!int" {
				d.errorf(v, p, "limit is a number of packets, at least 1")
			}
		},
	}
	for k, h := range keys {
		keys[k] = func(kn, v *yaml.Node, p string) {
			seen = append(seen, kn.Value)
			if kn.Value != "rate" && kn.Value != "limit" && im.NetemPath == "" {
				im.NetemPos, im.NetemPath = pos(v), p
			}
			h(kn, v, p)
		}
	}
	d.mapping(n, path, keys, nil)
	if len(seen) == 0 && n.Kind == yaml.MappingNode {
		d.errorf(n, path, "impair needs at least one of delay, jitter, loss, duplicate, reorder, corrupt, rate")
	}
	if im.Jitter != 0 && im.Delay == 0 {
		d.errorf(n, join(path, "jitter"), "jitter varies the delay: it needs delay")
	}
	if im.Reorder != 0 && im.Delay == 0 {
		d.errorf(n, join(path, "reorder"), "reorder sends some packets at once and delays the rest: it needs delay")
	}
	if im.Limit != 0 && im.Rate == 0 && !im.Netem() {
		d.errorf(n, join(path, "limit"), "limit is the queue length of a delay or a rate: it needs one of them")
	}
	return im
}

// Netem reports whether the impairment needs netem (anything but a rate).
func (im *Impair) Netem() bool {
	return im.Delay != 0 || im.Jitter != 0 || im.Loss != 0 || im.Duplicate != 0 || im.Reorder != 0 || im.Corrupt != 0
}

// duration reads a time the way tc writes one: 50ms, 1.5ms, 200us, 1s.
func (d *decoder) duration(n *yaml.Node, path string) uint32 {
	s := d.str(n, path)
	if s == "" {
		return 0
	}
	us, err := ParseTCTime(s)
	if err != nil {
		d.errorf(n, path, "%v", err)
		return 0
	}
	return us
}

// ParseTCTime parses a tc time (50ms, 1.5ms, 200us, 1s) to microseconds.
func ParseTCTime(s string) (uint32, error) {
	num, unit := splitUnit(s)
	mult, ok := map[string]float64{"s": 1e6, "sec": 1e6, "secs": 1e6, "ms": 1e3, "msec": 1e3, "msecs": 1e3,
		"us": 1, "usec": 1, "usecs": 1}[unit]
	v, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || num == "" || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%q is not a time like 50ms, 1.5ms, 200us or 1s", s)
	}
	us := math.Round(v * mult)
	if us > MaxDelay {
		return 0, fmt.Errorf("%s is longer than netem's limit here (60s)", s)
	}
	if v > 0 && us < 1 {
		return 0, fmt.Errorf("%s is shorter than 1us, the smallest step", s)
	}
	return uint32(us), nil
}

// percent reads a probability the way tc writes one: 1%, 0.5%.
func (d *decoder) percent(n *yaml.Node, path string) float64 {
	s := d.str(n, path)
	if s == "" {
		return 0
	}
	v, err := ParsePercent(s)
	if err != nil {
		d.errorf(n, path, "%v", err)
	}
	return v
}

// ParsePercent parses "1%" or "0.5%" to a percentage (0-100).
func ParsePercent(s string) (float64, error) {
	num, ok := strings.CutSuffix(strings.TrimSpace(s), "%")
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if !ok || err != nil || math.IsNaN(v) {
		return 0, fmt.Errorf("%q is not a percentage like 1%% or 0.5%%", s)
	}
	if v < 0 || v > 100 {
		return 0, fmt.Errorf("%s is outside 0%%-100%%", s)
	}
	return v, nil
}

// rate reads a bandwidth the way tc writes one: 10mbit, 512kbit, 1gbit,
// 100kbps (bytes per second, as tc means it).
func (d *decoder) rate(n *yaml.Node, path string) uint64 {
	s := d.str(n, path)
	if s == "" {
		return 0
	}
	v, err := ParseTCRate(s)
	if err != nil {
		d.errorf(n, path, "%v", err)
	}
	return v
}

// ParseTCRate parses a tc rate to bits per second. As in tc, "bit" units
// are bits and "bps" units are bytes per second; k/m/g/t are powers of
// 1000 and ki/mi/gi/ti powers of 1024.
func ParseTCRate(s string) (uint64, error) {
	num, unit := splitUnit(s)
	unit = strings.ToLower(unit)
	v, err := strconv.ParseFloat(num, 64)
	bad := fmt.Errorf("%q is not a rate like 10mbit, 512kbit or 1gbit", s)
	if err != nil || num == "" || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, bad
	}
	bytes := false
	switch {
	case strings.HasSuffix(unit, "bit"):
		unit = strings.TrimSuffix(unit, "bit")
	case strings.HasSuffix(unit, "bps"):
		unit, bytes = strings.TrimSuffix(unit, "bps"), true
	default:
		return 0, bad
	}
	mult, ok := map[string]float64{"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12,
		"ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40}[unit]
	if !ok {
		return 0, bad
	}
	bits := v * mult
	if bytes {
		bits *= 8
	}
	bits = math.Round(bits)
	switch {
	case bits < 8:
		return 0, fmt.Errorf("%s is below 8bit, one byte per second", s)
	case bits > 8e12:
		return 0, fmt.Errorf("%s is above 8tbit", s)
	}
	return uint64(bits), nil
}

func splitUnit(s string) (num, unit string) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}
