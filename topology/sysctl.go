package topology

import "strings"

// An interface's name is a part of the keys of its sysctls
// (net.ipv4.conf.IF.forwarding), and may hold dots (br.0). As sysctl(8)
// does, a key writes those dots as slashes: net.ipv4.conf.br/0.forwarding
// is /proc/sys/net/ipv4/conf/br.0/forwarding.

// SysctlKeyName is how interface ifname is written in a sysctl key.
func SysctlKeyName(ifname string) string { return strings.ReplaceAll(ifname, ".", "/") }

// SysctlIfname is the interface a part of a sysctl key names.
func SysctlIfname(part string) string { return strings.ReplaceAll(part, "/", ".") }

// SysctlPath is key's path under /proc/sys: its dots are slashes there,
// and its slashes dots.
func SysctlPath(key string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, key)
}
