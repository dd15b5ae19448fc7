package capture

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Filter says whether a packet is kept.
type Filter func(p *Packet) bool

// FilterWords is the language ParseFilter knows, for its error messages.
const FilterWords = "arp, ip, ip6, icmp, icmp6, tcp, udp, port N, host ADDR, joined with and, or, not"

// ParseFilter reads a small subset of tcpdump's filter language:
// primitives arp, ip, ip6, icmp, icmp6, tcp, udp, "port N", "host ADDR";
// "not" before a primitive; "and" binds tighter than "or". An empty
// expression keeps everything.
func ParseFilter(expr string) (Filter, error) {
	words := strings.Fields(expr)
	if len(words) == 0 {
		return func(*Packet) bool { return true }, nil
	}
	var alts [][]Filter // or of ands
	cur := []Filter{}
	expectTerm := true
	for i := 0; i < len(words); i++ {
		w := strings.ToLower(words[i])
		if !expectTerm {
			switch w {
			case "and", "&&":
				expectTerm = true
				continue
			case "or", "||":
				alts = append(alts, cur)
				cur = []Filter{}
				expectTerm = true
				continue
			}
			// tcpdump reads "tcp port 80" as "tcp and port 80"; this
			// filter wants the and written.
			fix := strings.Join(append(append(append([]string{}, words[:i]...), "and"), words[i:]...), " ")
			return nil, fmt.Errorf("filter %q: expected and/or before %q (this filter wants them written: %q)", expr, words[i], fix)
		}
		neg := false
		for w == "not" || w == "!" {
			neg = !neg
			i++
			if i >= len(words) {
				return nil, fmt.Errorf("filter %q: not at the end", expr)
			}
			w = strings.ToLower(words[i])
		}
		var f Filter
		switch w {
		case "arp":
			f = func(p *Packet) bool { return p.EtherType == 0x0806 }
		case "ip":
			f = func(p *Packet) bool { return p.EtherType == 0x0800 }
		case "ip6":
			f = func(p *Packet) bool { return p.EtherType == 0x86dd }
		case "icmp":
			f = func(p *Packet) bool { return p.IP && p.Proto == protoICMP }
		case "icmp6":
			f = func(p *Packet) bool { return p.IP && p.Proto == protoICMPv6 }
		case "tcp":
			f = func(p *Packet) bool { return p.IP && p.Proto == protoTCP }
		case "udp":
			f = func(p *Packet) bool { return p.IP && p.Proto == protoUDP }
		case "port", "host":
			if i+1 >= len(words) {
				return nil, fmt.Errorf("filter %q: %s needs a value", expr, w)
			}
			i++
			v := words[i]
			if w == "port" {
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 || n > 65535 {
					return nil, fmt.Errorf("filter %q: %q is not a port", expr, v)
				}
				port := uint16(n)
				f = func(p *Packet) bool {
					return (p.Proto == protoTCP || p.Proto == protoUDP) && (p.SrcPort == port || p.DstPort == port)
				}
			} else {
				a, err := netip.ParseAddr(v)
				if err != nil {
					return nil, fmt.Errorf("filter %q: %q is not an address", expr, v)
				}
				a = a.Unmap()
				f = func(p *Packet) bool {
					if p.ARP != nil {
						return p.ARP.SenderIP == a || p.ARP.TargetIP == a
					}
					return p.IP && (p.IPSrc == a || p.IPDst == a)
				}
			}
		default:
			return nil, fmt.Errorf("filter %q: unknown word %q (this filter knows %s)", expr, words[i], FilterWords)
		}
		if neg {
			inner := f
			f = func(p *Packet) bool { return !inner(p) }
		}
		cur = append(cur, f)
		expectTerm = false
	}
	if expectTerm {
		return nil, fmt.Errorf("filter %q: ends with and/or", expr)
	}
	alts = append(alts, cur)
	return func(p *Packet) bool {
		for _, and := range alts {
			ok := true
			for _, f := range and {
				if !f(p) {
					ok = false
					break
				}
			}
			if ok {
				return true
			}
		}
		return false
	}, nil
}
