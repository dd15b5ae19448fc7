package topology

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

var (
	nameRE   = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	sysctlRE = regexp.MustCompile(`^net\.[A-Za-z0-9_.\-/]+$`)
)

func sortStrings(s []string) { sort.Strings(s) }

// ValidIfName reports why name is not a valid Linux interface name, or "".
func ValidIfName(name string) string {
	switch {
	case name == "":
		return "interface name is empty"
	case len(name) > 15:
		return fmt.Sprintf("interface name %q is %d characters; the kernel allows at most 15", name, len(name))
	case name == "." || name == "..":
		return fmt.Sprintf("interface name %q is not allowed", name)
	case strings.ContainsAny(name, "/: \t\n"):
		return fmt.Sprintf("interface name %q contains '/', ':' or white space", name)
	}
	return ""
}

// validNSName reports why name cannot name a network namespace, or "".
func validNSName(name string) string {
	switch {
	case name == "":
		return "namespace name is empty"
	case name == "." || name == "..":
		return fmt.Sprintf("namespace name %q is not allowed", name)
	case strings.ContainsAny(name, "/ \t\n:"):
		return fmt.Sprintf("namespace name %q contains '/', ':' or white space", name)
	case len(name) > 200:
		return "namespace name is longer than 200 characters"
	}
	return ""
}

// Limits of a prefix and of a sandbox (--netns) name: a pinned namespace
// name must fit a file name, and the lab's mark an interface alias.
const (
	MaxPrefixLen = 48
	MaxNetnsLen  = 64
)

var partNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// CheckPartName checks a prefix or a sandbox name (what says which): it
// names files under /run/netns and is part of every ownership mark, so it
// holds only letters, digits, '_', '.' and '-', starts with a letter or
// digit, has no "..", and is at most max characters. "" is fine (none).
func CheckPartName(what, v string, max int) string {
	switch {
	case v == "":
		return ""
	case len(v) > max:
		return fmt.Sprintf("%s %q is longer than %d characters", what, v, max)
	case strings.Contains(v, ".."):
		return fmt.Sprintf("%s %q must not contain \"..\"", what, v)
	case !partNameRE.MatchString(v):
		return fmt.Sprintf("%s %q may hold only letters, digits, '_', '.' and '-', and must start with a letter or digit", what, v)
	}
	return ""
}

// ParseCIDR parses an interface address such as 10.0.0.2/24, keeping the host
// part (unlike a route destination).
func ParseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address in CIDR form (like 10.0.0.2/24 or fd00::2/64)", s)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
	}
	if p.Addr().Is4In6() {
		// The kernel would take it for IPv6; the plan showed "invalid
		// Prefix" and apply failed (an outside audit's find).
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 address: write the IPv4 address itself (like 10.0.0.2/24)", s)
	}
	return p, nil
}

type objKey struct{ ns, name string }

// claim is who holds an interface name: what kind of interface (a
// bridge, a link's end, ...), and which.
type claim struct {
	iface *Iface
	kind  claimKind
}

type claimKind uint8

const (
	kindBridge claimKind = iota
	kindLink
	kindMacvlan
	kindIpvlan
	kindVxlan
)

var claimKinds = [...]string{"bridge", "link", "macvlan", "ipvlan", "vxlan"}

func (k claimKind) String() string { return claimKinds[k] }

func (c claim) what() string {
	if c.kind == kindLink {
		return fmt.Sprintf("link %s:%s", c.iface.Namespace, c.iface.Name)
	}
	return c.kind.String() + " " + c.iface.Name
}

// claims is the file's interfaces with valid names, one per name in a
// namespace (the first the file declares), sorted by namespace and name
// and found by binary search. A map of them took 18 MB for a file of
// 100 000 namespaces; this takes 3.2 MB (docs/benchmarks.md, memory).
type claims []claim

func compareKey(c claim, k objKey) int {
	if n := strings.Compare(c.iface.Namespace, k.ns); n != 0 {
		return n
	}
	return strings.Compare(c.iface.Name, k.name)
}

// index returns the position of the claim on name in ns.
func (cs claims) index(ns, name string) (int, bool) {
	return slices.BinarySearchFunc(cs, objKey{ns, name}, compareKey)
}

// get returns the claim on name in ns.
func (cs claims) get(ns, name string) (claim, bool) {
	if i, ok := cs.index(ns, name); ok {
		return cs[i], true
	}
	return claim{}, false
}

// claimNames makes the claims of t's interfaces (bridges, links' ends,
// macvlans, ipvlans, vxlans: the order of Interfaces) and reports names
// that are not valid, lo, and names claimed twice in a namespace (each
// against the first claim).
func (d *decoder) claimNames(t *Topology) claims {
	var all []claim
	claimIf := func(i *Iface, kind claimKind) {
		if msg := ValidIfName(i.Name); msg != "" {
			if i.Name != "" || (i.Path != "" && d.present(join(i.Path, "name"))) {
				d.at(i.Pos, join(i.Path, "name"), "%s", msg)
			}
			return
		}
		if i.Name == "lo" {
			d.at(i.Pos, join(i.Path, "name"), "\"lo\" is the loopback interface every namespace already has")
			return
		}
		all = append(all, claim{i, kind})
	}
	for _, b := range t.Bridges {
		claimIf(&b.Iface, kindBridge)
	}
	for _, l := range t.Links {
		claimIf(&l.A, kindLink)
		claimIf(&l.B, kindLink)
	}
	for _, m := range t.Macvlans {
		claimIf(&m.Iface, kindMacvlan)
	}
	for _, m := range t.Ipvlans {
		claimIf(&m.Iface, kindIpvlan)
	}
	for _, v := range t.Vxlans {
		claimIf(&v.Iface, kindVxlan)
	}
	sorted := sortedFunc(all, func(a, b claim) int { return compareKey(a, objKey{b.iface.Namespace, b.iface.Name}) })
	all = nil
	out := sorted[:0]
	for _, c := range sorted {
		if n := len(out); n > 0 && compareKey(out[n-1], objKey{c.iface.Namespace, c.iface.Name}) == 0 {
			prev := out[n-1]
			d.at(c.iface.Pos, join(c.iface.Path, "name"), "interface %q in namespace %q is already claimed by %s at line %d",
				c.iface.Name, c.iface.Namespace, prev.what(), prev.iface.Pos.Line)
			continue
		}
		out = append(out, c)
	}
	clear(sorted[len(out):])
	return slices.Clip(out)
}

// present reports whether the file has a value at path (even an empty one).
func (d *decoder) present(path string) bool {
	_, ok := d.pos[path]
	return ok
}

// at records an error at path: at the value found there if the file has
// one, else at p (the enclosing object, for a key that is missing).
func (d *decoder) at(p Pos, path, format string, args ...any) {
	if d.unsetPaths[path] {
		return // its variable is not set: that is the one error to report
	}
	e := &Error{File: d.file, Pos: p, Path: path, Msg: fmt.Sprintf(format, args...) + origin(d.fromPaths[path])}
	d.place(e)
	d.errs = append(d.errs, e)
}

// place puts e at the value the file has at its path: known now, or found
// by locate.
func (d *decoder) place(e *Error) {
	if vp, ok := d.pos[e.Path]; ok {
		e.Pos = vp
	} else if e.Path != "" {
		d.unresolved = append(d.unresolved, e)
	}
}

// warn records something that is valid but surely not meant.
func (d *decoder) warn(p Pos, path, format string, args ...any) {
	e := &Error{File: d.file, Pos: p, Path: path, Msg: fmt.Sprintf(format, args...)}
	d.place(e)
	d.warns = append(d.warns, e)
}

func (d *decoder) validate(t *Topology) {
	if d.present("name") && (!nameRE.MatchString(t.Name) || len(t.Name) > 16) {
		d.at(Pos{1, 1}, "name", "%q must match [a-z][a-z0-9-]* and be at most 16 characters", t.Name)
	}
	if msg := CheckPartName("prefix", t.Prefix, MaxPrefixLen); msg != "" {
		d.at(Pos{1, 1}, "prefix", "%s", msg)
	}
	ix := t.Index()
	// listed: a namespace under namespaces:, or host.
	listed := func(ns string) bool { return ns == Host || ix.Namespace(ns) != nil }
	for _, n := range t.Namespaces {
		if msg := validNSName(n.Name); msg != "" {
			d.at(n.Pos, n.Path, "%s", msg)
		}
		for _, sc := range n.Sysctls {
			iface, ok := strings.CutPrefix(sc.Key, "net.ipv6.conf.")
			if iface, ok = strings.CutSuffix(iface, ".disable_ipv6"); !ok || strings.Contains(iface, ".") {
				continue
			}
			iface = SysctlIfname(iface)
			if v, err := strconv.ParseInt(strings.TrimSpace(sc.Value), 0, 64); err != nil || v == 0 {
				continue // the kernel reads it as C does (0x1, 01) and takes any other number as off
			}
			switch {
			case (iface == "all" || iface == "default") && ix.UsesIPv6(n.Name):
				d.at(sc.Pos, sc.Path, "this turns IPv6 off, but the file gives namespace %q IPv6 addresses, routes or VXLAN endpoints", n.Name)
			case iface != "all" && iface != "default" && ix.IfaceUsesIPv6(n.Name, iface):
				d.at(sc.Pos, sc.Path, "this turns IPv6 off on %q, but the file gives it IPv6 addresses or routes, or a VXLAN over IPv6 on it, in namespace %q", iface, n.Name)
			}
		}
		if n.IPv6 != nil && n.Name == Host {
			d.at(n.Pos, join(n.Path, "ipv6"), "ipv6: is for the namespaces the lab makes; host's IPv6 is the machine's or the sandbox's")
		} else if n.IPv6 != nil && !*n.IPv6 && ix.UsesIPv6(n.Name) {
			d.at(n.Pos, join(n.Path, "ipv6"), "ipv6: false, but the file gives namespace %q IPv6 addresses, routes or VXLAN endpoints", n.Name)
		}
		for _, s := range n.Sysctls {
			if strings.ContainsAny(s.Value, "\n") {
				d.at(s.Pos, s.Path, "sysctl value must be on one line")
			}
			if !sysctlRE.MatchString(s.Key) || slices.ContainsFunc(strings.Split(s.Key, "."), func(p string) bool { return p == "" || p == "/" || p == "//" }) {
				d.at(s.Pos, s.Path, "%q is not a network sysctl: only per-namespace net.* keys are allowed", s.Key)
				continue
			}
			parts := strings.Split(s.Key, ".")
			perIface := len(parts) >= 5 && (parts[2] == "conf" || parts[2] == "neigh")
			if len(parts) >= 3 && len(parts) < 5 && (parts[2] == "conf" || parts[2] == "neigh") {
				which := "an interface, all or default"
				if parts[2] == "neigh" {
					which = "an interface or default" // neigh has no all
				}
				d.at(s.Pos, s.Path, "%q is a directory of sysctls, not one: net.%s.%s.IF.KEY names one (IF %s)", s.Key, parts[1], parts[2], which)
			} else if perIface && len(parts) > 5 {
				// net.FAMILY.conf.IF.KEY has five parts (no key under an
				// interface's directory has parts of its own): more is an
				// interface's name with dots, which a key writes as
				// slashes, as sysctl(8) does. In host too: the kernel has
				// no such key.
				ifname := SysctlIfname(strings.Join(parts[3:len(parts)-1], "."))
				d.at(s.Pos, s.Path, "%q has more parts than net.%s.%s.IF.KEY: an interface's dots are written as slashes in its keys, as sysctl(8) does (for interface %q: %s)",
					s.Key, parts[1], parts[2], ifname, strings.Join([]string{parts[0], parts[1], parts[2], SysctlKeyName(ifname), parts[len(parts)-1]}, "."))
			} else if perIface && n.Name != Host && parts[3] != "all" && parts[3] != "default" && parts[3] != "lo" && !ix.Declared(n.Name, SysctlIfname(parts[3])) {
				d.at(s.Pos, s.Path, "interface %q is not declared in namespace %q: this key would have nothing to set%s", SysctlIfname(parts[3]), n.Name, didYouMean(SysctlIfname(parts[3]), ifNames(ix, n.Name)))
			}
		}
	}
	nsRef := func(p Pos, path, ns string) bool {
		if !listed(ns) {
			d.at(p, path, "namespace %q is not listed under namespaces", ns)
			return false
		}
		return true
	}

	// Interface names: one owner per name per namespace.
	claims := d.claimNames(t)
	isBridge := map[objKey]bool{}
	for _, b := range t.Bridges {
		isBridge[objKey{b.Namespace, b.Name}] = true
	}

	// The interfaces a namespace at a time (ix.byNS), so that the
	// addresses seen are those of one namespace, not the whole file's.
	addrSeen := map[netip.Addr]Pos{}
	for n, i := range ix.byNS {
		if n > 0 && ix.byNS[n-1].Namespace != i.Namespace {
			if len(addrSeen) > 64 {
				addrSeen = map[netip.Addr]Pos{} // clear costs what the map grew to
			} else {
				clear(addrSeen)
			}
		}
		if i.Name == "" {
			continue // already reported
		}
		nsRef(i.Pos, join(i.Path, "namespace"), i.Namespace)
		if i.MTU != 0 && (i.MTU < 68 || i.MTU > 65535) {
			d.at(i.Pos, join(i.Path, "mtu"), "mtu %d is outside 68-65535", i.MTU)
		}
		if i.MAC != "" {
			hw, err := net.ParseMAC(i.MAC)
			switch {
			case err != nil || len(hw) != 6:
				d.at(i.Pos, join(i.Path, "mac"), "%q is not a MAC address like 02:00:00:00:00:01", i.MAC)
			case hw[0]&1 == 1:
				d.at(i.Pos, join(i.Path, "mac"), "%q is a multicast MAC address; an interface needs a unicast one", i.MAC)
			case bytes.Equal(hw, make([]byte, 6)):
				d.at(i.Pos, join(i.Path, "mac"), "%q is the all-zero MAC address, which the kernel refuses; a locally administered one looks like 02:00:00:00:00:01", i.MAC)
			}
		}
		for j, a := range i.Addresses {
			p := fmt.Sprintf("%s.addresses[%d]", i.Path, j)
			pfx, err := ParseCIDR(a)
			if err != nil {
				d.at(i.Pos, p, "%v", err)
				if d.badAddress == nil {
					d.badAddress = map[string]bool{}
				}
				d.badAddress[i.Namespace] = true
				continue
			}
			if pfx.Addr().Is6() && i.MTU != 0 && i.MTU < MinIPv6MTU {
				// The kernel refuses IPv6 on such a link: apply would never
				// get there (an outside audit's find).
				d.at(i.Pos, p, "%s is IPv6, but this interface's mtu %d is under IPv6's minimum of 1280", a, i.MTU)
				continue
			}
			key := pfx.Addr()
			if prev, ok := addrSeen[key]; ok {
				d.at(i.Pos, p, "address %s is already used in namespace %q (line %d)", pfx.Addr(), i.Namespace, prev.Line)
				continue
			}
			addrSeen[key] = i.Pos
		}
		if i.Bridge != "" {
			k := objKey{i.Namespace, i.Bridge}
			if !isBridge[k] {
				other := ""
				for _, b := range t.Bridges {
					if b.Name == i.Bridge {
						other = b.Namespace
					}
				}
				if other != "" {
					d.at(i.Pos, join(i.Path, "bridge"), "bridge %q is in namespace %q, but this port is in %q: a port must be in its bridge's namespace",
						i.Bridge, other, i.Namespace)
				} else {
					var names []string
					for _, b := range t.Bridges {
						if b.Namespace == i.Namespace {
							names = append(names, b.Name)
						}
					}
					d.at(i.Pos, join(i.Path, "bridge"), "bridge %q is not declared in namespace %q%s", i.Bridge, i.Namespace, didYouMean(i.Bridge, names))
				}
			}
		}
	}
	for _, l := range t.Links {
		if l.A.Namespace == l.B.Namespace && l.A.Name == l.B.Name && l.A.Name != "" {
			d.at(l.Pos, l.Path, "both ends of the link are %s:%s", l.A.Namespace, l.A.Name)
		}
		if l.MTU != 0 && (l.MTU < 68 || l.MTU > 65535) {
			d.at(l.Pos, join(l.Path, "mtu"), "mtu %d is outside 68-65535", l.MTU)
		}
		// An end without mtu: has the other end's (the lab makes and keeps
		// the pair so): under 1280, it can hold no IPv6 address.
		for _, e := range [][2]*Iface{{&l.A, &l.B}, {&l.B, &l.A}} {
			end, other := e[0], e[1]
			if end.MTU != 0 || other.MTU == 0 || other.MTU >= MinIPv6MTU {
				continue
			}
			for j, a := range end.Addresses {
				if pfx, err := ParseCIDR(a); err == nil && pfx.Addr().Is6() {
					d.at(end.Pos, fmt.Sprintf("%s.addresses[%d]", end.Path, j), "%s is IPv6, but without mtu: this end takes the other end's, %s:%s's mtu %d, under IPv6's minimum of 1280: give this end an mtu: of at least 1280 (a veth's ends may differ), or give it no IPv6",
						a, other.Namespace, other.Name, other.MTU)
				}
			}
		}
	}
	for _, b := range t.Bridges {
		if b.Bridge != "" {
			d.at(b.Pos, join(b.Path, "bridge"), "a bridge cannot be a port of another bridge here")
		}
	}

	// A veth end without mtu: has the other end's: a parent's MTU is that.
	peerMTU := map[*Iface]int{}
	for _, l := range t.Links {
		peerMTU[&l.A], peerMTU[&l.B] = l.B.MTU, l.A.MTU
	}
	// A VXLAN without mtu: has its dev's, less its headers (the dev's
	// own, or, for a veth end, the other end's).
	vxDev := map[*Iface]func() int{}
	for _, v := range t.Vxlans {
		if v.Dev == "" {
			continue
		}
		if c, ok := claims.get(v.Namespace, v.Dev); ok {
			dev, head := c.iface, VxlanHeadroom(v.Remote, v.Group, v.Local)
			vxDev[&v.Iface] = func() int {
				m := dev.MTU
				if m == 0 {
					m = peerMTU[dev]
				}
				if m == 0 {
					return 0
				}
				return m - head
			}
		}
	}
	mtuOf := func(i *Iface) int {
		if i.MTU != 0 {
			return i.MTU
		}
		if f := vxDev[i]; f != nil {
			return f()
		}
		return peerMTU[i]
	}
	// A bridge without mtu: follows its ports' smallest MTU: under 1280
	// the kernel takes its IPv6 away (plan refused it; validate did not
	// see it).
	lowPort := map[objKey]*Iface{} // bridge: its port of the smallest MTU
	for _, i := range t.Interfaces() {
		k := objKey{i.Namespace, i.Bridge}
		if low := lowPort[k]; i.Bridge != "" && mtuOf(i) != 0 && (low == nil || mtuOf(i) < mtuOf(low)) {
			lowPort[k] = i
		}
	}
	for _, b := range t.Bridges {
		low := lowPort[objKey{b.Namespace, b.Name}]
		if b.MTU != 0 || low == nil || mtuOf(low) >= MinIPv6MTU {
			continue
		}
		how := fmt.Sprintf("mtu %d", low.MTU)
		switch {
		case low.MTU == 0 && vxDev[low] != nil:
			how = fmt.Sprintf("mtu %d (without mtu: a VXLAN takes its dev's, less its headers)", mtuOf(low))
		case low.MTU == 0:
			how = fmt.Sprintf("mtu %d (without mtu: a veth end takes the other end's)", mtuOf(low))
		}
		for j, a := range b.Addresses {
			if pfx, err := ParseCIDR(a); err == nil && pfx.Addr().Is6() {
				d.at(b.Pos, fmt.Sprintf("%s.addresses[%d]", b.Path, j), "%s is IPv6, but without mtu: this bridge follows its ports' smallest MTU, port %s's %s, under IPv6's minimum of 1280: give the bridge an mtu: of at least 1280, or the port a larger one", a, low.Name, how)
			}
		}
	}
	parent := func(i *Iface, ns, name, kind string) {
		if ns == "" {
			return
		}
		if !nsRef(i.Pos, join(i.Path, "parent"), ns) {
			return
		}
		if msg := ValidIfName(name); msg != "" {
			d.at(i.Pos, join(i.Path, "parent"), "%s", msg)
			return
		}
		c, ok := claims.get(ns, name)
		if ok && (c.kind == kindMacvlan || c.kind == kindIpvlan) {
			// The kernel would make it a child of that one's own parent.
			d.at(i.Pos, join(i.Path, "parent"), "parent %s:%s is itself a %s: the kernel would attach this one to its parent instead; name that parent", ns, name, c.kind)
		}
		if ok && c.iface.Bridge != "" {
			// The bridge holds the port's receive hook, which a macvlan or
			// ipvlan needs (EBUSY, half-way through an apply: an outside
			// audit's find).
			d.at(i.Pos, join(i.Path, "parent"), "parent %s:%s is a port of bridge %s: the kernel takes no %s on a bridge port; make it on the bridge %s:%s instead", ns, name, c.iface.Bridge, kind, ns, c.iface.Bridge)
		}
		pm := 0
		if ok {
			pm = mtuOf(c.iface)
		}
		if ok && i.MTU != 0 && pm != 0 && i.MTU > pm {
			// The kernel refuses it (EINVAL): apply would fail.
			d.at(i.Pos, join(i.Path, "mtu"), "mtu %d is over its parent %s:%s's mtu %d: a macvlan's or ipvlan's may not pass its parent's", i.MTU, ns, name, pm)
		}
		if a := firstIPv6(i.Addresses); ok && a != "" && i.MTU == 0 && pm != 0 && pm < MinIPv6MTU {
			// Without mtu: it takes its parent's, and the kernel refuses
			// IPv6 under 1280 (an outside audit's find: apply failed).
			d.at(i.Pos, i.Path, "%s is IPv6, but without mtu: this takes its parent %s:%s's mtu %d, under IPv6's minimum of 1280", a, ns, name, pm)
		}
	}
	oneOf := func(i *Iface, key, val string, allowed ...string) {
		for _, a := range allowed {
			if val == a {
				return
			}
		}
		d.at(i.Pos, join(i.Path, key), "%q is not one of %s", val, strings.Join(allowed, ", "))
	}
	// The kernel brings up no second macvlan with a MAC already up on its
	// parent, nor one with its parent's own (EADDRINUSE at apply); a
	// passthru macvlan takes its parent's, and one that is down holds none.
	macs := map[objKey]*Iface{}
	children := map[objKey][]*Macvlan{} // by parent
	for _, m := range t.Macvlans {
		if m.ParentNS != "" {
			k := objKey{m.ParentNS, m.ParentName}
			children[k] = append(children[k], m)
		}
	}
	for _, m := range t.Macvlans {
		if m.Mode == "passthru" && m.ParentNS != "" {
			for _, o := range children[objKey{m.ParentNS, m.ParentName}] {
				if o != m {
					d.at(m.Pos, join(m.Path, "mode"), "a passthru macvlan takes its parent %s:%s whole, but macvlan %s:%s (line %d) is on it too: the kernel refuses it (EINVAL)", m.ParentNS, m.ParentName, o.Namespace, o.Name, o.Pos.Line)
					break
				}
			}
		}
	}
	for _, m := range t.Macvlans {
		parent(&m.Iface, m.ParentNS, m.ParentName, "macvlan")
		oneOf(&m.Iface, "mode", m.Mode, "private", "vepa", "bridge", "passthru")
		hw, err := net.ParseMAC(m.MAC)
		if err != nil || m.ParentNS == "" || m.Mode == "passthru" || !m.IsUp() {
			continue
		}
		if c, ok := claims.get(m.ParentNS, m.ParentName); ok && c.iface.MAC != "" {
			if phw, err := net.ParseMAC(c.iface.MAC); err == nil && phw.String() == hw.String() {
				d.at(m.Pos, join(m.Path, "mac"), "mac %s is its parent %s:%s's own: the kernel refuses to bring up a macvlan with its parent's MAC (but in passthru mode)", m.MAC, m.ParentNS, m.ParentName)
				continue
			}
		}
		k := objKey{m.ParentNS + ":" + m.ParentName, hw.String()}
		if first, ok := macs[k]; ok {
			d.at(m.Pos, join(m.Path, "mac"), "mac %s is also macvlan %s:%s's (line %d), on the same parent %s:%s: the kernel refuses to bring up a second macvlan with one MAC on a parent", m.MAC, first.Namespace, first.Name, first.Pos.Line, m.ParentNS, m.ParentName)
			continue
		}
		macs[k] = &m.Iface
	}
	for _, m := range t.Ipvlans {
		parent(&m.Iface, m.ParentNS, m.ParentName, "ipvlan")
		oneOf(&m.Iface, "mode", m.Mode, "l2", "l3", "l3s")
		oneOf(&m.Iface, "flag", m.Flag, "bridge", "private", "vepa")
	}
	// The kernel takes one VXLAN per VNI, port and address family in a
	// namespace (EEXIST for a second, whatever its dev or local address),
	// but for IPv6 link-local ones, which are told apart by their dev.
	type vniKey struct {
		ns        string
		vni, port int
		v6        bool
	}
	vnis := map[vniKey]*Vxlan{}
	for _, v := range t.Vxlans {
		if v.VNI < 1 || v.VNI > 1<<24-1 {
			d.at(v.Pos, join(v.Path, "vni"), "vni %d is outside 1-16777215", v.VNI)
		}
		v6, linkLocal := v.overIPv6()
		if c, ok := claims.get(v.Namespace, v.Dev); ok && v.Dev != "" && mtuOf(c.iface) != 0 {
			dm := mtuOf(c.iface) // a veth end without mtu: has the other end's
			head := VxlanHeadroom(v.Remote, v.Group, v.Local)
			if v.MTU != 0 && v.MTU > dm-head {
				d.at(v.Pos, join(v.Path, "mtu"), "mtu %d is over what dev %s's mtu %d leaves a VXLAN (%d, less %d for its headers)", v.MTU, v.Dev, dm, dm-head, head)
			}
			if a := firstIPv6(v.Addresses); v.MTU == 0 && a != "" && dm-head < MinIPv6MTU {
				d.at(v.Pos, v.Path, "%s is IPv6, but without mtu: this VXLAN takes %d from dev %s's mtu %d (less %d for its headers), under IPv6's minimum of 1280", a, dm-head, v.Dev, dm, head)
			}
		}
		if k := (vniKey{v.Namespace, v.VNI, v.Port, v6}); !linkLocal && v.Name != "" {
			if prev, ok := vnis[k]; ok {
				d.at(v.Pos, join(v.Path, "vni"), "vxlan %s at line %d has vni %d and port %d in namespace %q already, over the same IP version: the kernel takes one VXLAN per VNI, port and IP version in a namespace",
					prev.Name, prev.Pos.Line, v.VNI, v.Port, v.Namespace)
			} else {
				vnis[k] = v
			}
		}
		if v.Port < 1 || v.Port > 65535 {
			d.at(v.Pos, join(v.Path, "port"), "port %d is outside 1-65535", v.Port)
		}
		switch {
		case v.Remote != "" && v.Group != "":
			d.at(v.Pos, v.Path, "set remote or group, not both")
		case v.Group != "" && v.Dev == "":
			d.at(v.Pos, join(v.Path, "dev"), "a multicast group needs dev: the underlay interface")
		}
		for _, f := range []struct{ key, val string }{{"remote", v.Remote}, {"group", v.Group}, {"local", v.Local}} {
			if f.val == "" {
				continue
			}
			a, err := netip.ParseAddr(f.val)
			if err != nil {
				d.at(v.Pos, join(v.Path, f.key), "%q is not an IP address", f.val)
				continue
			}
			if f.key == "group" && !a.IsMulticast() {
				d.at(v.Pos, join(v.Path, f.key), "%s is not a multicast address", a)
			}
		}
		if v.Dev != "" {
			if msg := ValidIfName(v.Dev); msg != "" {
				d.at(v.Pos, join(v.Path, "dev"), "%s", msg)
			} else if _, ok := claims.get(v.Namespace, v.Dev); !ok && v.Namespace != Host {
				// In host it may be a NIC the file does not own; in a
				// namespace the lab makes, only what the file puts there is.
				d.at(v.Pos, join(v.Path, "dev"), "interface %q is not declared in namespace %q", v.Dev, v.Namespace)
			}
		}
	}

	declared := func(ns, name string) bool {
		_, ok := claims.index(ns, name)
		return ok || name == "lo"
	}
	reach := map[string][]netip.Prefix{} // by namespace
	for _, n := range t.Namespaces {
		seen := map[string]Pos{}
		var subnets []netip.Prefix
		on := map[string][]netip.Prefix{} // by interface
		connected := map[netip.Prefix]string{}
		own := map[netip.Addr]string{} // the namespace's addresses, by the interface holding each
		for _, i := range ix.In(n.Name) {
			for _, a := range i.Addresses {
				if p, err := ParseCIDR(a); err == nil {
					own[p.Addr().Unmap()] = i.Name
					subnets = append(subnets, p.Masked())
					on[i.Name] = append(on[i.Name], p.Masked())
					// The kernel makes a route to the subnet for an address
					// of an interface that is up, but none for an IPv4 /32
					// (an outside audit: both were refused).
					if _, ok := connected[p.Masked()]; !ok && i.IsUp() && !(p.Addr().Is4() && p.Bits() == 32) {
						connected[p.Masked()] = a + " of " + i.Name
					}
				}
			}
		}
		// A route with dev and no gateway makes what it covers reachable
		// on that interface, as a subnet does (an unnumbered or /32
		// point-to-point link: an outside audit saw a gateway reached so
		// refused).
		for _, r := range n.Routes {
			if r.Dev == "" || r.Via != "" {
				continue
			}
			if dst, err := RouteDst(r.To, ""); err == nil && dst.Bits() > 0 {
				subnets = append(subnets, dst)
				on[r.Dev] = append(on[r.Dev], dst)
			}
		}
		for _, r := range n.Routes {
			d.validateRoute(n, r, declared, seen, subnets)
			d.routeTheKernelRefuses(n, r, on, connected, own)
		}
		// What the namespace reaches: its subnets and its routes' (a
		// default route: all of its family), for port forwards.
		reach[n.Name] = slices.Clone(subnets)
		for _, r := range n.Routes {
			if dst, err := RouteDst(r.To, r.Via); err == nil {
				reach[n.Name] = append(reach[n.Name], dst)
			}
		}
	}
	if _, listed := reach[Host]; !listed { // host's interfaces, host not listed
		for _, i := range ix.In(Host) {
			for _, a := range i.Addresses {
				if p, err := ParseCIDR(a); err == nil {
					reach[Host] = append(reach[Host], p.Masked())
				}
			}
		}
	}
	d.sameL2Addresses(t, claims)
	d.shadowedNAT(t)
	for _, r := range t.NAT {
		d.validateNAT(r, nsRef, declared)
		d.forwardReaches(r, reach)
	}
	for _, c := range t.Checks {
		d.validateCheck(ix, c, listed, declared)
	}
}

// RouteDst normalises a route's `to` into a prefix; "default" becomes the
// default route of the family implied by via (IPv4 if nothing says otherwise).
func RouteDst(to, via string) (netip.Prefix, error) {
	if to == "default" {
		if a, err := netip.ParseAddr(via); err == nil && a.Is6() && !a.Is4In6() {
			return netip.MustParsePrefix("::/0"), nil
		}
		return netip.MustParsePrefix("0.0.0.0/0"), nil
	}
	p, err := netip.ParsePrefix(to)
	if err != nil {
		if a, err2 := netip.ParseAddr(to); err2 == nil {
			return netip.PrefixFrom(a, a.BitLen()), nil
		}
		return netip.Prefix{}, fmt.Errorf("%q is neither \"default\" nor a CIDR", to)
	}
	return p.Masked(), nil
}

func (d *decoder) validateRoute(n *Namespace, r *Route, declared func(ns, name string) bool, seen map[string]Pos, subnets []netip.Prefix) {
	if r.To == "" {
		if d.present(join(r.Path, "to")) {
			d.at(r.Pos, join(r.Path, "to"), "to is empty: use \"default\" or a CIDR")
		}
		return
	}
	dst, err := RouteDst(r.To, r.Via)
	if err != nil {
		d.at(r.Pos, join(r.Path, "to"), "%v", err)
		return
	}
	if r.Via == "" && r.Dev == "" {
		d.at(r.Pos, r.Path, "a route needs via (a gateway), dev (an interface) or both")
	}
	if p, err := netip.ParsePrefix(r.To); err == nil && p != p.Masked() {
		d.at(r.Pos, join(r.Path, "to"), "%s has host bits set: the network is %s (or, for one host, %s/%d)",
			r.To, p.Masked(), p.Addr(), p.Addr().BitLen())
	}
	if r.OnLink && r.Dev == "" {
		d.at(r.Pos, join(r.Path, "onlink"), "onlink needs dev: the interface the gateway is reached on")
	}
	if r.OnLink && r.Via == "" {
		// The kernel refuses it (invalid argument; an outside audit:
		// validate and plan passed it).
		d.at(r.Pos, join(r.Path, "onlink"), "onlink needs via: it says a gateway is on the wire of dev; a route without one is on that wire already")
	}
	if r.Via != "" {
		gw, err := netip.ParseAddr(r.Via)
		switch {
		case err != nil:
			d.at(r.Pos, join(r.Path, "via"), "%q is not an IP address", r.Via)
		case gw.Unmap().Is4() != dst.Addr().Is4():
			d.at(r.Pos, join(r.Path, "via"), "gateway %s and destination %s are of different address families", r.Via, r.To)
		case n.Name != Host && !r.OnLink && !(gw.IsLinkLocalUnicast() && r.Dev != "") && !onSubnet(gw.Unmap(), subnets) && !d.badAddress[n.Name]:
			// (With an address of the namespace that is no address, that
			// error is the one to fix: a new user's audit counted four
			// problems for one typo.)
			// The lab makes every interface of the namespace: a gateway
			// none of its subnets holds is one the kernel cannot reach.
			have := make([]string, 0, len(subnets))
			for _, p := range subnets {
				have = append(have, p.String())
			}
			d.at(r.Pos, join(r.Path, "via"), "gateway %s is on no subnet of namespace %q (it has %s): give an interface an address in its subnet, or say dev: and onlink: true",
				gw, n.Name, orNothing(strings.Join(have, ", ")))
		}
	}
	if r.Dev != "" {
		if msg := ValidIfName(r.Dev); msg != "" {
			d.at(r.Pos, join(r.Path, "dev"), "%s", msg)
		} else if n.Name != Host && !declared(n.Name, r.Dev) {
			d.at(r.Pos, join(r.Path, "dev"), "interface %q is not declared in namespace %q", r.Dev, n.Name)
		}
	}
	key := dst.String() + " metric " + strconv.Itoa(r.Metric)
	if prev, ok := seen[key]; ok {
		d.at(r.Pos, r.Path, "route to %s with metric %d is already declared at line %d", dst, r.Metric, prev.Line)
	}
	seen[key] = r.Pos
}

// routeTheKernelRefuses finds what validateRoute lets pass and the kernel
// refuses half-way through an apply (an outside audit: validate and plan
// said nothing, apply failed and rolled back): a gateway on another
// interface's subnet than dev's, a gateway that is its subnet's broadcast
// address, a route the kernel makes itself for an address (same
// destination and metric: "file exists").
func (d *decoder) routeTheKernelRefuses(n *Namespace, r *Route, on map[string][]netip.Prefix, connected map[netip.Prefix]string, own map[netip.Addr]string) {
	dst, err := RouteDst(r.To, r.Via)
	if err != nil {
		return
	}
	metric := r.Metric
	if metric == 0 && dst.Addr().Is6() {
		metric = 1024 // what the kernel gives an IPv6 route without one
	}
	kernels := 0 // the metric of the kernel's own route to an address's subnet
	if dst.Addr().Is6() {
		kernels = 256
	}
	if by, ok := connected[dst]; ok && metric == kernels {
		d.at(r.Pos, r.Path, "the kernel makes the route to %s with metric %d itself, for %s: leave this one out, or give it another metric", dst, metric, by)
		return
	}
	gw, err := netip.ParseAddr(r.Via)
	if err != nil {
		return
	}
	gw = gw.Unmap()
	if ifname, ok := own[gw]; ok {
		// An outside audit: validate and plan said nothing, apply failed
		// (invalid argument) and rolled back.
		d.at(r.Pos, join(r.Path, "via"), "gateway %s is an address of namespace %q itself (on %s): a gateway is a neighbour's address", gw, n.Name, ifname)
		return
	}
	for p := range connected { // the subnets of addresses: those have a broadcast address
		if gw.Is4() && p.Bits() <= 30 && p.Contains(gw) && gw == lastAddr(p) {
			d.at(r.Pos, join(r.Path, "via"), "gateway %s is the broadcast address of %s", gw, p)
			return
		}
	}
	if n.Name == Host || r.Dev == "" || r.OnLink || gw.IsLinkLocalUnicast() || !onSubnet(gw, on[r.Dev]) && !onSubnet(gw, flat(on)) {
		return // the other checks' (or, in host, interfaces the file does not make)
	}
	if !onSubnet(gw, on[r.Dev]) {
		have := make([]string, 0, len(on[r.Dev]))
		for _, p := range on[r.Dev] {
			have = append(have, p.String())
		}
		d.at(r.Pos, join(r.Path, "via"), "gateway %s is on no subnet of dev %s (it has %s): the kernel reaches a gateway through the dev named; name the interface on its subnet, or say onlink: true", gw, r.Dev, orNothing(strings.Join(have, ", ")))
	}
}

// lastAddr is the last address of p (IPv4: its broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func flat(m map[string][]netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, v := range m {
		out = append(out, v...)
	}
	return out
}

func (d *decoder) validateNAT(r *NAT, nsRef func(Pos, string, string) bool, declared func(ns, name string) bool) {
	nsRef(r.Pos, join(r.Path, "namespace"), r.Namespace)
	cidr := func(path, s string) {
		if s == "" {
			if d.present(path) {
				d.at(r.Pos, path, "empty: a CIDR is needed")
			}
			return
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			d.at(r.Pos, path, "%q is not a CIDR", s)
			return
		}
		if p != p.Masked() {
			// It was taken as the network silently (a route's to: with
			// host bits is an error; files that rely on this stay valid).
			d.warn(r.Pos, path, "%s has host bits set: taken as the network %s (for one host, write %s/%d)", s, p.Masked(), p.Addr(), p.Addr().BitLen())
		}
	}
	ifname := func(path, s string) {
		if s == "" {
			return
		}
		if msg := ValidIfName(s); msg != "" {
			d.at(r.Pos, path, "%s", msg)
		}
	}
	switch {
	case r.Masquerade != nil:
		p := join(r.Path, "masquerade")
		cidr(join(p, "source"), r.Masquerade.Source)
		ifname(join(p, "out"), r.Masquerade.Out)
		ifname(join(p, "not_out"), r.Masquerade.NotOut)
		if r.Masquerade.Out != "" && r.Masquerade.NotOut != "" {
			d.at(r.Pos, p, "set out or not_out, not both")
		}
	case r.SNAT != nil:
		p := join(r.Path, "snat")
		cidr(join(p, "source"), r.SNAT.Source)
		if r.SNAT.To != "" {
			to, err := netip.ParseAddr(r.SNAT.To)
			if err != nil {
				d.at(r.Pos, join(p, "to"), "%q is not an IP address", r.SNAT.To)
			} else if src, err := netip.ParsePrefix(r.SNAT.Source); err == nil && src.Addr().Is4() != to.Unmap().Is4() {
				// The kernel's rule would match one family and rewrite to
				// the other (an outside audit: nft could not even print it).
				d.at(r.Pos, join(p, "to"), "%s is %s, but source %s is %s: a rule translates within one family", r.SNAT.To, familyName(to.Unmap()), r.SNAT.Source, familyName(src.Addr()))
			}
		}
		ifname(join(p, "out"), r.SNAT.Out)
		ifname(join(p, "not_out"), r.SNAT.NotOut)
		if r.SNAT.Out != "" && r.SNAT.NotOut != "" {
			d.at(r.Pos, p, "set out or not_out, not both")
		}
	case r.PortForward != nil:
		p := join(r.Path, "port_forward")
		f := r.PortForward
		if f.Proto != "" && f.Proto != "tcp" && f.Proto != "udp" {
			d.at(r.Pos, join(p, "proto"), "%q is not one of tcp, udp", f.Proto)
		}
		if f.Port < 1 || f.Port > 65535 {
			d.at(r.Pos, join(p, "port"), "port %d is outside 1-65535", f.Port)
		}
		if f.To != "" {
			if ap, err := netip.ParseAddrPort(f.To); err != nil || ap.Port() == 0 {
				d.at(r.Pos, join(p, "to"), "%q is not ip:port (like 10.55.66.2:80 or [fd00::2]:80)", f.To)
			}
		}
		ifname(join(p, "in"), f.In)
	}
}

// forwardReaches warns of a port forward to an address its namespace
// has no interface on the subnet of and no route to: the connections it
// forwards go nowhere (a new user's audit: no word of it). In host, the
// machine's (or sandbox's) own interfaces may reach it: the warning says
// so.
func (d *decoder) forwardReaches(r *NAT, reach map[string][]netip.Prefix) {
	if r.PortForward == nil {
		return
	}
	ap, err := netip.ParseAddrPort(r.PortForward.To)
	if err != nil {
		return // validateNAT's
	}
	to := ap.Addr().Unmap()
	if onSubnet(to, reach[r.Namespace]) {
		return
	}
	unless := ""
	if r.Namespace == Host {
		unless = ", unless an interface of the machine's (or the sandbox's) that the file does not make does"
	}
	d.warn(r.Pos, join(join(r.Path, "port_forward"), "to"), "%s: no interface of namespace %q is on its subnet and no route there reaches it%s: the connections forwarded to it go nowhere", to, r.Namespace, unless)
}

func familyName(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func onSubnet(a netip.Addr, subnets []netip.Prefix) bool {
	for _, p := range subnets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func orNothing(s string) string {
	if s == "" {
		return "no address"
	}
	return s
}

// sameL2Addresses: one address on two interfaces of one L2 segment (a
// veth pair, a bridge and its ports, a macvlan or ipvlan and its parent's
// wire, VXLANs of one VNI) is an error: both answer ARP for it.
//
// Segments are found by union-find over numbers, not names: an interface
// is the position of its claim in claims, and a name the file references
// but does not declare (a NIC of the host, a bridge that is not there)
// gets a number after them. The addresses are then sorted by segment and
// compared with their neighbours. (Maps keyed by names took 30 MB for a
// file of 100 000 namespaces.)
func (d *decoder) sameL2Addresses(t *Topology, claims claims) {
	others := map[objKey]int32{}
	node := func(ns, name string) int32 {
		if i, ok := claims.index(ns, name); ok {
			return int32(i)
		}
		k := objKey{ns, name}
		n, ok := others[k]
		if !ok {
			n = int32(len(claims) + len(others))
			others[k] = n
		}
		return n
	}
	var parent []int32
	find := func(n int32) int32 {
		if int(n) >= len(parent) {
			return n
		}
		root := n
		for parent[root] != root {
			root = parent[root]
		}
		for parent[n] != root { // path compression
			parent[n], n = root, parent[n]
		}
		return root
	}
	union := func(a, b int32) {
		for int(max(a, b)) >= len(parent) {
			parent = append(parent, int32(len(parent)))
		}
		if ra, rb := find(a), find(b); ra != rb {
			parent[ra] = rb
		}
	}
	parent = make([]int32, len(claims))
	for i := range parent {
		parent[i] = int32(i)
	}
	for _, i := range t.Interfaces() {
		if i.Bridge != "" {
			union(node(i.Namespace, i.Name), node(i.Namespace, i.Bridge))
		}
	}
	for _, l := range t.Links {
		union(node(l.A.Namespace, l.A.Name), node(l.B.Namespace, l.B.Name))
	}
	for _, m := range t.Macvlans {
		union(node(m.Namespace, m.Name), node(m.ParentNS, m.ParentName))
	}
	for _, m := range t.Ipvlans {
		union(node(m.Namespace, m.Name), node(m.ParentNS, m.ParentName))
	}
	vni := map[int]int32{}
	for _, v := range t.Vxlans {
		k := node(v.Namespace, v.Name)
		if prev, ok := vni[v.VNI]; ok {
			union(k, prev)
		}
		vni[v.VNI] = k
	}
	// Every address not link-local, with its segment, in file order.
	type held struct {
		segment int32
		j       int32 // its index in i.Addresses
		i       *Iface
		addr    netip.Addr
	}
	var all []held
	for _, i := range t.Interfaces() {
		for j, a := range i.Addresses {
			p, err := ParseCIDR(a)
			if err != nil || p.Addr().IsLinkLocalUnicast() {
				continue
			}
			all = append(all, held{find(node(i.Namespace, i.Name)), int32(j), i, p.Addr()})
		}
	}
	sameSlot := func(a, b held) int {
		if a.segment != b.segment {
			return int(a.segment - b.segment)
		}
		return a.addr.Compare(b.addr)
	}
	all = sortedFunc(all, sameSlot)
	// In each run of one address on one segment, in file order: one in
	// another namespace than the holder is the error; one in the holder's
	// namespace (a duplicate the namespace check reports) holds it next.
	var prev held
	for n, h := range all {
		if n == 0 || sameSlot(prev, h) != 0 {
			prev = h
			continue
		}
		if prev.i.Namespace != h.i.Namespace {
			d.at(h.i.Pos, fmt.Sprintf("%s.addresses[%d]", h.i.Path, h.j), "address %s is also on %s:%s (line %d), on the same L2 segment: both would answer ARP or neighbour discovery for it",
				h.addr, prev.i.Namespace, prev.i.Name, prev.i.Pos.Line)
			continue
		}
		prev = h
	}
}

// shadowedNAT warns about a NAT rule that an earlier one of the same
// namespace always matches first (first match wins), so it never applies.
func (d *decoder) shadowedNAT(t *Topology) {
	type post struct {
		src         netip.Prefix
		out, notOut string
		r           *NAT
	}
	posts := map[string][]post{}
	type fwd struct {
		proto, in string
		port      int
		r         *NAT
	}
	fwds := map[string][]fwd{}
	for _, r := range t.NAT {
		var src, out, notOut string
		switch {
		case r.Masquerade != nil:
			src, out, notOut = r.Masquerade.Source, r.Masquerade.Out, r.Masquerade.NotOut
		case r.SNAT != nil:
			src, out, notOut = r.SNAT.Source, r.SNAT.Out, r.SNAT.NotOut
		case r.PortForward != nil:
			f := fwd{r.PortForward.Proto, r.PortForward.In, r.PortForward.Port, r}
			for _, e := range fwds[r.Namespace] {
				if e.proto == f.proto && e.port == f.port && (e.in == "" || e.in == f.in) {
					d.warn(r.Pos, r.Path, "this port_forward never applies: the one at line %d matches its packets first", e.r.Pos.Line)
					break
				}
			}
			fwds[r.Namespace] = append(fwds[r.Namespace], f)
			continue
		default:
			continue
		}
		p, err := netip.ParsePrefix(src)
		if src == "" {
			p, err = netip.MustParsePrefix("0.0.0.0/0"), nil
		}
		if err != nil {
			continue
		}
		cur := post{p.Masked(), out, notOut, r}
		for _, e := range posts[r.Namespace] {
			covers := e.src.Bits() <= cur.src.Bits() && e.src.Contains(cur.src.Addr()) && e.src.Addr().Is4() == cur.src.Addr().Is4()
			iface := (e.out == "" && e.notOut == "") || (e.out != "" && e.out == cur.out) ||
				(e.notOut != "" && (e.notOut == cur.notOut || (cur.out != "" && cur.out != e.notOut)))
			if covers && iface {
				d.warn(r.Pos, r.Path, "this rule never applies: the %s at line %d matches its packets first (first match wins)", kindOf(e.r), e.r.Pos.Line)
				break
			}
		}
		posts[r.Namespace] = append(posts[r.Namespace], cur)
	}
}

func kindOf(r *NAT) string {
	switch {
	case r.Masquerade != nil:
		return "masquerade"
	case r.SNAT != nil:
		return "snat"
	}
	return "port_forward"
}

// firstIPv6 is the first IPv6 address of addrs, or "".
func firstIPv6(addrs []string) string {
	for _, a := range addrs {
		if p, err := ParseCIDR(a); err == nil && p.Addr().Is6() {
			return a
		}
	}
	return ""
}

// ifNames are the names of namespace ns's interfaces in the file.
func ifNames(ix *Index, ns string) []string {
	var out []string
	for _, i := range ix.In(ns) {
		out = append(out, i.Name)
	}
	return out
}

// didYouMean is " (did you mean NAME?)" for the one of names closest to
// s, if it is close (a typo: at most two edits, less than half of s), or
// "" (a new user's audit: a bridge typo got no hint).
func didYouMean(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := EditDistance(s, n); d < bestD && d*2 < len(s) {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// EditDistance is the Levenshtein distance between a and b (for
// did-you-mean hints).
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
