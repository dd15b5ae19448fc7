package linux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// NAT lives in one nftables table per namespace that the topology owns,
// family inet (IPv4 and IPv6), named for the lab (TableName), with three
// base chains and a chain "owner" whose one rule's comment is the lab's
// mark: a table with the lab's name without that marker is someone else's
// and a conflict. Each rule's comment (readable in `nft list ruleset`) is
// the owner's mark and the rule's ID, which is how a later run finds it.

const (
	chainPost  = reconcile.ChainPostrouting // masquerade, snat
	chainPre   = reconcile.ChainPrerouting  // port forwards from other hosts
	chainOut   = reconcile.ChainOutput      // port forwards from this namespace itself
	chainOwner = "owner"                    // no hook: holds the marker rule only
)

// TableName is the nftables table of a lab: netplan-lab-NAME, and
// .PREFIX after it when the lab has a prefix (two labs of one file under
// two prefixes share a sandbox without sharing a table).
func TableName(o Options) string {
	if o.Prefix == "" {
		return "netplan-lab-" + o.Name
	}
	return "netplan-lab-" + o.Name + "." + o.Prefix
}

// TableName is this lab's nftables table.
func (k *Kernel) TableName() string { return TableName(k.opt) }

func (k *Kernel) ownerComment() string { return k.mark + " owner" }

func natChains(t *nftables.Table) map[string]*nftables.Chain {
	accept := nftables.ChainPolicyAccept // said, so that a policy set by hand is put back
	return map[string]*nftables.Chain{
		chainPost: {Name: chainPost, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept},
		chainPre: {Name: chainPre, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept},
		chainOut: {Name: chainOut, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &accept},
	}
}

// asTheLabMakes says whether chain ch (in the lab's table) is one of the
// lab's as the lab makes it: its name, a nat chain on its hook, policy
// accept.
func asTheLabMakes(ch *nftables.Chain) bool {
	want := natChains(ch.Table)[ch.Name]
	return want != nil && ch.Type == want.Type && ch.Hooknum != nil && *ch.Hooknum == *want.Hooknum &&
		(ch.Policy == nil || *ch.Policy == nftables.ChainPolicyAccept)
}

// ifname is an interface name as nftables compares it: NUL-padded to 16.
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

func ipBytes(a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return b[:]
	}
	b := a.As16()
	return b[:]
}

// matchFamily: meta nfproto ipv4|ipv6
func matchFamily(v6 bool) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if v6 {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// matchSource: ip saddr PREFIX (ip6 saddr for IPv6)
func matchSource(p netip.Prefix) []expr.Any {
	off, size := uint32(12), uint32(4)
	if p.Addr().Is6() {
		off, size = 8, 16
	}
	mask := net.CIDRMask(p.Bits(), int(size)*8)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: mask, Xor: make([]byte, size)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ipBytes(p.Masked().Addr())},
	}
}

// matchIf: oifname "X" / oifname != "X" / iifname "X"
func matchIf(key expr.MetaKey, name string, not bool) []expr.Any {
	op := expr.CmpOpEq
	if not {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: ifname(name)},
	}
}

// compiledRule is one kernel rule of a NAT rule.
type compiledRule struct {
	chain string
	exprs []expr.Any
}

// CompileNAT turns a NAT rule into nftables expressions; a port forward
// becomes two kernel rules (prerouting and output).
func CompileNAT(r *reconcile.NATRule) ([]compiledRule, error) {
	v6 := r.IPv6()
	family := uint32(unix.NFPROTO_IPV4)
	if v6 {
		family = unix.NFPROTO_IPV6
	}
	switch r.Kind {
	case reconcile.NATMasquerade, reconcile.NATSNAT:
		src, err := netip.ParsePrefix(r.Source)
		if err != nil {
			return nil, err
		}
		e := matchFamily(v6)
		e = append(e, matchSource(src)...)
		if r.Out != "" {
			e = append(e, matchIf(expr.MetaKeyOIFNAME, r.Out, false)...) // oifname "out"
		}
		if r.NotOut != "" {
			e = append(e, matchIf(expr.MetaKeyOIFNAME, r.NotOut, true)...) // oifname != "br0"
		}
		e = append(e, &expr.Counter{})
		if r.Kind == reconcile.NATMasquerade {
			e = append(e, &expr.Masq{}) // masquerade
		} else {
			to, err := netip.ParseAddr(r.To)
			if err != nil {
				return nil, err
			}
			// snat to ADDR
			e = append(e, &expr.Immediate{Register: 1, Data: ipBytes(to.Unmap())},
				// max = min, as the kernel reports it back
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: family, RegAddrMin: 1, RegAddrMax: 1})
		}
		return []compiledRule{{chainPost, e}}, nil
	case reconcile.NATPortForward:
		to, err := netip.ParseAddrPort(r.To)
		if err != nil {
			return nil, err
		}
		proto := byte(unix.IPPROTO_TCP)
		if r.Proto == "udp" {
			proto = unix.IPPROTO_UDP
		}
		build := func(in string) []expr.Any {
			e := matchFamily(v6)
			// meta l4proto tcp
			e = append(e, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}})
			if in != "" {
				e = append(e, matchIf(expr.MetaKeyIIFNAME, in, false)...) // iifname "in"
			}
			e = append(e,
				// fib daddr type local: only traffic to this namespace's own addresses
				&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
				// th dport PORT
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(r.Port))},
				&expr.Counter{},
				// dnat to ADDR:PORT
				&expr.Immediate{Register: 1, Data: ipBytes(to.Addr().Unmap())},
				&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(to.Port())},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: family, RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: 2, RegProtoMax: 2, Specified: true},
			)
			return e
		}
		return []compiledRule{{chainPre, build(r.In)}, {chainOut, build("")}}, nil
	}
	return nil, fmt.Errorf("unknown NAT rule kind %q", r.Kind)
}

func (h *nsHandle) nftConn() (*nftables.Conn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nft != nil {
		return h.nft, nil
	}
	c, err := newNFT(nftables.WithNetNSFd(int(h.fd)), nftables.AsLasting())
	if err != nil {
		return nil, err
	}
	h.nft = c
	return c, nil
}

// newNFT is nftables.New, but an error where the library panics: the
// netlink package under it (mdlayher/socket v0.5.0, withNetNS) drops the
// error of a socket that could not be made in another namespace (no more
// open files: EMFILE) and hands on a nil connection, which nftables.New
// then uses.
func newNFT(opts ...nftables.ConnOption) (c *nftables.Conn, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("could not open an nftables netlink socket (too many open files?): %v", r)
		}
	}()
	return nftables.New(opts...)
}

// noNFTables reports errors that mean "this kernel has no (working)
// nf_tables": no netfilter netlink at all, or nfnetlink without the
// nf_tables subsystem (EINVAL). Nothing of ours can be there then; a plan
// that wants NAT fails in Preflight with the kernel options it needs.
func noNFTables(err error) bool {
	return errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EINVAL)
}

type ownedRule struct {
	id     string
	chain  *nftables.Chain
	handle uint64
	exprs  []expr.Any
}

// natState is what a namespace holds of the lab's NAT.
type natState struct {
	table *nftables.Table // the lab's table, nil if there is none
	// foreign: a table with the lab's name exists without the lab's
	// marker and without any rule of the lab's.
	foreign bool
	// unmarked: the lab's table lost its marker (flushed by hand): the
	// next change puts it back.
	unmarked bool
	// repair says what of the lab's table was changed by hand (its
	// marker, a chain's policy), for the plan to put back; "" if nothing.
	repair      string
	rules       []ownedRule
	forwardDrop []string // foreign base chains that drop forwarded packets
	// forwardRules: foreign base chains of the forward hook that accept by
	// default but hold rules (one may drop).
	forwardRules []string
	// inputDrop and inputRules: the same of the input hook (packets to
	// the namespace's own addresses), for path.
	inputDrop, inputRules []string
	// strays: rules in the lab's chains that are not the lab's.
	strays []string
}

// natState reads the lab's NAT rules in a namespace and the foreign base
// chains that drop forwarded packets.
func (k *Kernel) natState(c *nftables.Conn) (st natState, err error) {
	chains, err := c.ListChains()
	if err != nil {
		if noNFTables(err) {
			return st, nil
		}
		return st, fmt.Errorf("list nftables chains: %w", err)
	}
	name := k.TableName()
	var mine []*nftables.Chain
	var owner *nftables.Chain
	for _, ch := range chains {
		if ch.Table.Name == name && ch.Table.Family == nftables.TableFamilyINet {
			st.table = ch.Table
			if ch.Name == chainOwner {
				owner = ch
			} else {
				mine = append(mine, ch)
			}
			continue
		}
		if ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward && *ch.Hooknum != *nftables.ChainHookInput {
			continue
		}
		drops, rules := &st.forwardDrop, &st.forwardRules
		if *ch.Hooknum == *nftables.ChainHookInput {
			if f := ch.Table.Family; f != nftables.TableFamilyINet && f != nftables.TableFamilyIPv4 && f != nftables.TableFamilyIPv6 {
				continue // the same number is arp's output hook
			}
			drops, rules = &st.inputDrop, &st.inputRules
		}
		desc := fmt.Sprintf("chain %s in table %s %s", ch.Name, familyName(ch.Table.Family), ch.Table.Name)
		rs, rerr := c.GetRules(ch.Table, ch)
		switch {
		case ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop:
			if rerr == nil && len(rs) == 0 {
				desc += reconcile.ForwardDropNoRules // it drops everything
			}
			*drops = append(*drops, desc)
		case rerr != nil || len(rs) > 0:
			*rules = append(*rules, desc)
		}
	}
	for _, l := range [][]string{st.forwardDrop, st.forwardRules, st.inputDrop, st.inputRules} {
		sort.Strings(l)
	}
	if st.table == nil {
		return st, nil
	}
	marked := false
	if owner != nil {
		rs, err := c.GetRules(owner.Table, owner)
		if err != nil {
			return st, fmt.Errorf("list rules of chain %s: %w", owner.Name, err)
		}
		for _, r := range rs {
			if comment, _ := userdata.GetString(r.UserData, userdata.TypeComment); comment == k.ownerComment() {
				marked = true
			}
		}
	}
	for _, ch := range mine {
		rs, err := c.GetRules(ch.Table, ch)
		if err != nil {
			return st, fmt.Errorf("list rules of chain %s: %w", ch.Name, err)
		}
		for _, r := range rs {
			comment, ok := userdata.GetString(r.UserData, userdata.TypeComment)
			if !ok || !strings.HasPrefix(comment, k.mark+" ") {
				st.strays = append(st.strays, fmt.Sprintf("chain %s, handle %d", ch.Name, r.Handle))
				continue
			}
			st.rules = append(st.rules, ownedRule{id: strings.TrimPrefix(comment, k.mark+" "), chain: ch, handle: r.Handle, exprs: r.Exprs})
		}
	}
	// The table has the lab's name (its name and prefix); it is the lab's
	// if it has the lab's marker, or rules with the lab's mark, or only the
	// lab's chains, empty: the marker flushed by hand (nft flush
	// table/chain) must not lock the lab out of its own table (an outside
	// audit). One holding only others' rules, or a chain the lab never
	// makes, is not.
	onlyLabChains := true
	for _, ch := range mine {
		switch {
		case ch.Name != chainPre && ch.Name != chainOut && ch.Name != chainPost:
			onlyLabChains = false // a chain the lab never makes
			st.strays = append(st.strays, fmt.Sprintf("chain %s, which the lab does not make", ch.Name))
		case !asTheLabMakes(ch):
			onlyLabChains = false // another type or hook, or a policy of drop
			st.repair = fmt.Sprintf("its chain %s is not as the lab makes it (a nat chain, policy accept)", ch.Name)
		}
	}
	if owner == nil || !marked {
		if st.repair == "" {
			st.repair = "its owner marker is gone (deleted or flushed by hand)"
		}
	}
	if sets, err := c.GetSets(st.table); err == nil {
		for _, set := range sets {
			st.strays = append(st.strays, fmt.Sprintf("set %s, which the lab does not make", set.Name))
		}
	}
	switch {
	case marked:
	case len(st.rules) > 0 || len(st.strays) == 0 && onlyLabChains:
		// Rules of the lab's; or the lab's chains, all empty (flushed).
		st.unmarked = true
	default:
		st.foreign, st.rules, st.strays, st.repair = true, nil, nil, ""
	}
	return st, nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprintf("family-%d", f)
}

// observeNAT fills ns.NAT, ns.NATChains and ns.ForwardDrop. A rule is
// known by its comment, and checked by its content: the kernel's rules
// with that comment must be, chain by chain, what the comment's rule
// compiles to. Where they are not (edited by hand, a half deleted), the
// rule carries a Drift and is replaced.
func (k *Kernel) observeNAT(h *nsHandle, ns *reconcile.Namespace) error {
	c, err := h.nftConn()
	if err != nil {
		return err
	}
	st, err := k.natState(c)
	if err != nil {
		return err
	}
	ns.ForwardDrop = st.forwardDrop
	ns.ForwardRules = st.forwardRules
	ns.InputDrop = st.inputDrop
	ns.InputRules = st.inputRules
	for _, s := range st.strays {
		ns.NATStrays = append(ns.NATStrays, fmt.Sprintf("table inet %s, %s", k.TableName(), s))
	}
	ns.NATRepair = st.repair
	if st.foreign {
		ns.NATTableForeign = fmt.Sprintf("table inet %s exists and is not this lab's (neither its owner chain nor any rule in it has the lab's mark)", k.TableName())
	}
	byID := map[string][]ownedRule{}
	var ids []string
	for _, r := range st.rules {
		if byID[r.id] == nil {
			ids = append(ids, r.id)
		}
		byID[r.id] = append(byID[r.id], r)
	}
	for _, id := range ids {
		nr, err := reconcile.ParseNATID(id)
		if err != nil {
			continue // a comment with our mark we cannot read: leave it
		}
		nr.Owned = true
		nr.Drift = natDrift(nr, byID[id])
		ns.NAT[nr.ID()] = nr
	}
	for _, r := range st.rules {
		if ns.NATChains == nil {
			ns.NATChains = map[string][]string{}
		}
		ch := r.chain.Name
		if l := ns.NATChains[ch]; len(l) == 0 || l[len(l)-1] != r.id {
			ns.NATChains[ch] = append(ns.NATChains[ch], r.id)
		}
	}
	return nil
}

// natDrift compares the kernel's rules of one id with what the id
// compiles to; "" when they match.
func natDrift(r *reconcile.NATRule, have []ownedRule) string {
	want, err := CompileNAT(r)
	if err != nil {
		return err.Error()
	}
	byChain := map[string][]ownedRule{}
	for _, h := range have {
		byChain[h.chain.Name] = append(byChain[h.chain.Name], h)
	}
	for _, w := range want {
		got := byChain[w.chain]
		switch {
		case len(got) == 0:
			return fmt.Sprintf("its rule in chain %s is missing", w.chain)
		case len(got) > 1:
			return fmt.Sprintf("chain %s holds %d rules with its comment", w.chain, len(got))
		case !sameExprs(w.exprs, got[0].exprs):
			return fmt.Sprintf("its rule in chain %s was changed by hand", w.chain)
		}
		delete(byChain, w.chain)
	}
	for ch := range byChain {
		return fmt.Sprintf("chain %s holds a rule with its comment", ch)
	}
	return ""
}

// sameExprs compares expressions by their netlink encoding, counters'
// values left out.
func sameExprs(a, b []expr.Any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if _, ok := a[i].(*expr.Counter); ok {
			if _, ok := b[i].(*expr.Counter); ok {
				continue
			}
			return false
		}
		x, err1 := expr.Marshal(byte(nftables.TableFamilyINet), a[i])
		y, err2 := expr.Marshal(byte(nftables.TableFamilyINet), b[i])
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
			return false
		}
	}
	return true
}

// ApplyNAT implements reconcile.Kernel: every NAT change of a namespace in
// one nftables batch, which the kernel applies whole or not at all. Rules
// that do not change are not touched, so they keep their handles and
// counters; a new rule goes, in each of its chains, right after the
// nearest rule that comes before it in order (or first). The table goes
// when its last rule does.
func (k *Kernel) ApplyNAT(ctx context.Context, short string, changes []*reconcile.Change, order []string) error {
	kname := k.KernelName(short)
	h, err := k.handle(short)
	if err != nil {
		return fmt.Errorf("nat in netns %q: %w", kname, err)
	}
	defer k.release(h)
	// A connection of its own: a batch must not mix with reads.
	c, err := newNFT(nftables.WithNetNSFd(int(h.fd)))
	if err != nil {
		return fmt.Errorf("nat in netns %q: %w", kname, err)
	}
	st, err := k.natState(c)
	if err != nil {
		return fmt.Errorf("nat in netns %q: %w", kname, err)
	}
	if st.foreign {
		return fmt.Errorf("nat in netns %q: table inet %s exists and is not this lab's; nothing was changed", kname, k.TableName())
	}
	table, current := st.table, st.rules
	remaining := map[string]bool{}
	for _, r := range current {
		remaining[r.id] = true
	}
	deleted, created := map[string]bool{}, map[string]*reconcile.NATRule{}
	for _, ch := range changes {
		switch ch.Action {
		case reconcile.Delete:
			delete(remaining, ch.Name)
			deleted[ch.Name] = true
		case reconcile.Create, reconcile.Replace:
			remaining[ch.Name] = true
			deleted[ch.Name] = ch.Action == reconcile.Replace
			created[ch.Name] = ch.NAT
		default:
			return fmt.Errorf("nat rule %q in netns %q: cannot %s", ch.Name, kname, ch.Action)
		}
	}
	// Flag an owned namespace that will hold NAT before the batch, and
	// unflag it after the batch that empties it, so a kill in between never
	// hides a table of ours from observation.
	flag := func(on bool) error {
		if short == reconcile.HostNS {
			return nil // the host's NAT is always read
		}
		mark := k.mark
		if on {
			mark += "|nat=1"
		}
		if err := k.markNamespace(h, mark); err != nil {
			return fmt.Errorf("flag nat in netns %q: %w", kname, err)
		}
		return nil
	}
	if len(remaining) == 0 {
		if table != nil {
			c.DelTable(table)
		}
	} else {
		if err := flag(true); err != nil {
			return err
		}
		tmpl := &nftables.Table{Name: k.TableName(), Family: nftables.TableFamilyINet}
		var t *nftables.Table
		if table == nil {
			// A new table, with its owner marker in the same batch; it
			// fails whole if a table of that name appeared meanwhile.
			t = c.CreateTable(tmpl)
			owner := c.AddChain(&nftables.Chain{Name: chainOwner, Table: t})
			c.AddRule(&nftables.Rule{Table: t, Chain: owner,
				UserData: userdata.AppendString(nil, userdata.TypeComment, k.ownerComment())})
		} else {
			t = c.AddTable(tmpl)
			if st.unmarked {
				// Its marker was flushed by hand: back.
				owner := c.AddChain(&nftables.Chain{Name: chainOwner, Table: t})
				c.AddRule(&nftables.Rule{Table: t, Chain: owner,
					UserData: userdata.AppendString(nil, userdata.TypeComment, k.ownerComment())})
			}
		}
		chains := natChains(t)
		for _, name := range []string{chainPre, chainOut, chainPost} {
			c.AddChain(chains[name])
		}
		for _, r := range current {
			if deleted[r.id] {
				if err := c.DelRule(&nftables.Rule{Table: t, Chain: r.chain, Handle: r.handle}); err != nil {
					return fmt.Errorf("delete nat rule %q in netns %q: %w", r.id, kname, err)
				}
			}
		}
		if err := k.placeNAT(c, t, chains, current, deleted, created, order); err != nil {
			return fmt.Errorf("nat in netns %q: %w", kname, err)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("apply %d nat changes in netns %q (nothing of them was applied): %w", len(changes), kname, err)
	}
	if len(remaining) == 0 {
		return flag(false)
	}
	return nil
}

// placeNAT queues the new rules, chain by chain, at their place in order:
// a run of new rules after a kept rule is added after it (in reverse, each
// right after the anchor), a run at the start is inserted at the chain's
// head (in reverse too).
func (k *Kernel) placeNAT(c *nftables.Conn, t *nftables.Table, chains map[string]*nftables.Chain,
	current []ownedRule, deleted map[string]bool, created map[string]*reconcile.NATRule, order []string) error {
	for id := range created {
		if !contains(order, id) {
			order = append(order, id) // not given an order: last
		}
	}
	compiled := map[string]map[string][]expr.Any{}
	for id, r := range created {
		rules, err := CompileNAT(r)
		if err != nil {
			return fmt.Errorf("nat rule %q: %w", id, err)
		}
		compiled[id] = map[string][]expr.Any{}
		for _, cr := range rules {
			compiled[id][cr.chain] = cr.exprs
		}
	}
	handle := map[string]uint64{} // chain/id -> handle of a kept rule
	for _, r := range current {
		if !deleted[r.id] {
			handle[r.chain.Name+"/"+r.id] = r.handle
		}
	}
	for _, chain := range reconcile.NATChainOrder {
		var anchor uint64
		var run []string
		flush := func() {
			for i := len(run) - 1; i >= 0; i-- {
				rule := &nftables.Rule{Table: t, Chain: chains[chain], Exprs: compiled[run[i]][chain],
					UserData: userdata.AppendString(nil, userdata.TypeComment, k.mark+" "+run[i])}
				if anchor == 0 {
					c.InsertRule(rule) // at the head of the chain
				} else {
					rule.Position = anchor
					c.AddRule(rule) // right after the anchor
				}
			}
			run = nil
		}
		for _, id := range order {
			if compiled[id] != nil {
				if _, ok := compiled[id][chain]; ok {
					run = append(run, id)
				}
				continue
			}
			if h, ok := handle[chain+"/"+id]; ok {
				flush()
				anchor = h
			}
		}
		flush()
	}
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// probeNAT checks, in a throwaway namespace, that the kernel can do what
// the NAT rules need: an inet nat table, masquerade, snat and dnat with fib.
func probeNAT() error {
	var fd netns.NsHandle
	if err := inNetnsNew(func(f netns.NsHandle) { fd = f }); err != nil {
		return fmt.Errorf("probe namespace: %w", err)
	}
	defer fd.Close()
	c, err := newNFT(nftables.WithNetNSFd(int(fd)))
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Name: "probe", Family: nftables.TableFamilyINet})
	chains := natChains(t)
	for _, name := range []string{chainPre, chainOut, chainPost} {
		c.AddChain(chains[name])
	}
	for _, r := range []*reconcile.NATRule{
		{Kind: reconcile.NATMasquerade, Source: "10.0.0.0/8", NotOut: "x"},
		{Kind: reconcile.NATSNAT, Source: "10.0.0.0/8", To: "192.0.2.1"},
		{Kind: reconcile.NATPortForward, Proto: "tcp", Port: 1, To: "10.0.0.1:1"},
	} {
		compiled, err := CompileNAT(r)
		if err != nil {
			return err
		}
		for _, cr := range compiled {
			c.AddRule(&nftables.Rule{Table: t, Chain: chains[cr.chain], Exprs: cr.exprs})
		}
	}
	return c.Flush()
}
