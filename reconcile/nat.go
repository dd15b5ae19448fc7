package reconcile

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// NAT rule kinds.
const (
	NATMasquerade  = "masquerade"
	NATSNAT        = "snat"
	NATPortForward = "port_forward"
)

// NATRule is one NAT rule of a namespace. Its ID is made from its content,
// so a rule that stays the same keeps its ID (and its kernel handle and
// counters) whatever else changes; editing a rule replaces it.
type NATRule struct {
	Kind   string `json:"kind"`
	Source string `json:"source,omitempty"` // masquerade, snat: canonical CIDR
	Out    string `json:"out,omitempty"`
	NotOut string `json:"not_out,omitempty"`
	To     string `json:"to,omitempty"` // snat: address; port_forward: ip:port
	Proto  string `json:"proto,omitempty"`
	Port   int    `json:"port,omitempty"`
	In     string `json:"in,omitempty"`
	Owned  bool   `json:"owned"`
	// Drift, in an observed state, says how the kernel's rules with this
	// rule's comment differ from what the comment says (edited by hand, a
	// half missing): such a rule is replaced.
	Drift string `json:"drift,omitempty"`
}

// The base chains of a lab's NAT table.
const (
	ChainPrerouting  = "prerouting"  // port forwards from other hosts
	ChainOutput      = "output"      // port forwards from the namespace itself
	ChainPostrouting = "postrouting" // masquerade, snat
)

// NATChainOrder lists the chains in the order the kernel sees them.
var NATChainOrder = []string{ChainPrerouting, ChainOutput, ChainPostrouting}

// Chains lists the chains that hold a kernel rule of r: a port forward is
// two rules.
func (r *NATRule) Chains() []string {
	if r.Kind == NATPortForward {
		return []string{ChainPrerouting, ChainOutput}
	}
	return []string{ChainPostrouting}
}

// ID is the rule's identity and its text in plans and in the kernel's rule
// comment, e.g. "masquerade 192.168.88.0/24 !br0".
func (r *NATRule) ID() string {
	var b strings.Builder
	b.WriteString(r.Kind)
	switch r.Kind {
	case NATMasquerade, NATSNAT:
		b.WriteString(" " + r.Source)
		if r.Kind == NATSNAT {
			b.WriteString(" to " + r.To)
		}
		if r.Out != "" {
			b.WriteString(" out " + r.Out)
		}
		if r.NotOut != "" {
			b.WriteString(" !" + r.NotOut)
		}
	case NATPortForward:
		fmt.Fprintf(&b, " %s %d to %s", r.Proto, r.Port, r.To)
		if r.In != "" {
			b.WriteString(" in " + r.In)
		}
	}
	return b.String()
}

// IPv6 reports whether the rule is about IPv6 addresses.
func (r *NATRule) IPv6() bool {
	switch r.Kind {
	case NATPortForward:
		ap, err := netip.ParseAddrPort(r.To)
		return err == nil && ap.Addr().Is6() && !ap.Addr().Is4In6()
	default:
		p, err := netip.ParsePrefix(r.Source)
		return err == nil && p.Addr().Is6() && !p.Addr().Is4In6()
	}
}

// ParseNATID turns an ID back into a rule; it is how an observed rule's
// comment is read.
func ParseNATID(id string) (*NATRule, error) {
	f := strings.Fields(id)
	bad := fmt.Errorf("not a netplan-lab NAT rule id: %q", id)
	if len(f) < 2 {
		return nil, bad
	}
	r := &NATRule{Kind: f[0]}
	rest := f[1:]
	switch r.Kind {
	case NATMasquerade, NATSNAT:
		r.Source, rest = rest[0], rest[1:]
		if r.Kind == NATSNAT {
			if len(rest) < 2 || rest[0] != "to" {
				return nil, bad
			}
			r.To, rest = rest[1], rest[2:]
		}
	case NATPortForward:
		if len(rest) < 4 || rest[2] != "to" {
			return nil, bad
		}
		port, err := strconv.Atoi(rest[1])
		if err != nil {
			return nil, bad
		}
		r.Proto, r.Port, r.To, rest = rest[0], port, rest[3], rest[4:]
	default:
		return nil, bad
	}
	for len(rest) > 0 {
		switch {
		case rest[0] == "out" && len(rest) > 1:
			r.Out, rest = rest[1], rest[2:]
		case rest[0] == "in" && len(rest) > 1:
			r.In, rest = rest[1], rest[2:]
		case strings.HasPrefix(rest[0], "!"):
			r.NotOut, rest = rest[0][1:], rest[1:]
		default:
			return nil, bad
		}
	}
	if r.ID() != id {
		return nil, bad
	}
	return r, nil
}
