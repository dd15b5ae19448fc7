package linux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// SysctlRecordDir keeps, for each lab and namespace, what each sysctl the
// lab set was before it first set it: a key the file no longer sets goes
// back to it (reconcile: Namespace.SysctlsBefore, Change.Restore). One
// small JSON file per namespace that has such notes, under a directory per
// sandbox and lab. A note is of one namespace and, for an interface's
// key, of one interface: the file holds the namespace's inode ("@netns")
// and each such interface's ifindex ("@if:NAME"), and a note whose
// namespace or interface was made again since (by hand) is no note.
var SysctlRecordDir = "/run/netplan-lab/sysctls"

// ForgetSandboxRecords removes the records of every lab in sandbox: it
// is gone, and what was noted of its namespaces with it.
func ForgetSandboxRecords(sandbox string) {
	if sandbox != "" {
		os.RemoveAll(filepath.Join(SysctlRecordDir, sandbox))
	}
}

// recordDir is this lab's directory of records.
func (k *Kernel) recordDir() string {
	sandbox := k.opt.Netns
	if sandbox == "" {
		sandbox = "@machine"
	}
	return filepath.Join(SysctlRecordDir, sandbox, k.opt.Name+"."+k.opt.Prefix)
}

func (k *Kernel) recordFile(short string) string {
	return filepath.Join(k.recordDir(), short+".json")
}

// recorded lists the namespaces (short names) that have a record: one
// directory read for an observation, nothing more where there is none.
func (k *Kernel) recorded() map[string]bool {
	entries, err := os.ReadDir(k.recordDir())
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, e := range entries {
		if name := e.Name(); filepath.Ext(name) == ".json" {
			out[name[:len(name)-len(".json")]] = true
		}
	}
	return out
}

// readRecord is namespace short's record as kept, identities and all (nil
// if none, or unreadable: a record that cannot be read is one the plan
// does without).
func readRecordFile(path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	rec := map[string]string{}
	if json.Unmarshal(b, &rec) != nil {
		return nil
	}
	return rec
}

func (k *Kernel) readRecord(short string) map[string]string {
	rec := readRecordFile(k.recordFile(short))
	if id := rec["@netns"]; id != "" && id != k.nsIdentity(short) {
		return nil // of a namespace made again since: nothing of this one
	}
	return rec
}

// notesOfNow is the notes of record rec (namespace short's, as kept)
// that are of namespace ns as observed: without identities, and without
// those of an interface that is not the one they were taken of (gone, or
// made again since: its ifindex differs); a note of an interface renamed
// since (a run killed between renaming it and its notes) is under its
// name now.
func notesOfNow(rec map[string]string, ns *reconcile.Namespace) map[string]string {
	byIndex := map[string]string{}
	for name, l := range ns.Links {
		byIndex[strconv.Itoa(l.Ifindex)] = name
	}
	out := map[string]string{}
	for key, v := range rec {
		switch {
		case strings.HasPrefix(key, "@"):
		case !reconcile.InterfaceSysctl(key):
			out[key] = v
		default:
			ifname := topology.SysctlIfname(strings.Split(key, ".")[3])
			if now, ok := byIndex[rec["@if:"+ifname]]; ok {
				out[ifaceKey(key, now)] = v
			}
		}
	}
	return out
}

// ifaceKey is interface sysctl key for interface ifname instead.
func ifaceKey(key, ifname string) string {
	parts := strings.SplitN(key, ".", 5)
	parts[3] = topology.SysctlKeyName(ifname)
	return strings.Join(parts, ".")
}

// followRenames puts namespace short's notes of interfaces renamed since
// under their names now (by ifindex), and drops those of interfaces gone.
func (k *Kernel) followRenames(short string) error {
	rec := k.readRecord(short)
	var names []string
	for key := range rec {
		if name, ok := strings.CutPrefix(key, "@if:"); ok {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	h, err := k.handle(short)
	if err != nil {
		return nil // gone: its record goes with it
	}
	defer k.release(h)
	dumped, err := h.linkDump() // one dump, however many interfaces have notes
	if err != nil {
		return err
	}
	byIndex := map[int]string{}
	for _, d := range dumped {
		byIndex[d.link.Attrs().Index] = d.link.Attrs().Name
	}
	changed := false
	for _, name := range names {
		idx, _ := strconv.Atoi(rec["@if:"+name])
		now := byIndex[idx]
		if now == name {
			continue
		}
		for key, v := range rec {
			if reconcile.InterfaceSysctl(key) && topology.SysctlIfname(strings.Split(key, ".")[3]) == name {
				delete(rec, key)
				if now != "" {
					rec[ifaceKey(key, now)] = v
				}
			}
		}
		delete(rec, "@if:"+name)
		if now != "" {
			rec["@if:"+now] = strconv.Itoa(idx)
		}
		changed = true
	}
	if !changed {
		return nil
	}
	return k.writeRecord(short, rec)
}

// nsIdentity is namespace short's inode ("" for the machine's own, which
// is never made again).
func (k *Kernel) nsIdentity(short string) string {
	name := k.KernelName(short)
	if short == reconcile.HostNS && k.opt.Netns == "" {
		return ""
	}
	fi, err := os.Stat(netnsPath(name))
	if err != nil {
		return ""
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return strconv.FormatUint(st.Ino, 10)
	}
	return ""
}

// writeRecord replaces namespace short's record (removes it if it holds
// no note), whole or not at all.
func (k *Kernel) writeRecord(short string, rec map[string]string) error {
	path := k.recordFile(short)
	notes := 0
	for key := range rec {
		if !strings.HasPrefix(key, "@") {
			notes++
		}
	}
	if notes == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		// And the next record a killed run left unrenamed (an outside
		// audit found one after destroy, and the directories it held).
		os.Remove(path + ".tmp")
		k.removeRecordDirs()
		return nil
	}
	if err := os.MkdirAll(k.recordDir(), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// removeRecordDirs removes the lab's directory of records and its
// sandbox's, each if empty.
func (k *Kernel) removeRecordDirs() {
	os.Remove(k.recordDir())
	os.Remove(filepath.Dir(k.recordDir()))
}

// siblingsNoted is what the other labs of the sandbox noted of host's
// sysctls (a lab namespace is one lab's alone: nothing). Labs share the
// sandbox, and so its sysctls: the first to set a key noted its value
// before, and the last to let it go puts it back.
func (k *Kernel) siblingsNoted(short string) map[string]string {
	keys, _ := k.siblingsKeys(short)
	return keys
}

// siblingsKeys is siblingsNoted, and the interfaces' keys the other labs
// of the sandbox noted in host (they set them, or a key of theirs rewrote
// them), each with the ifindex of the interface it was noted of: both
// from one reading of their records.
func (k *Kernel) siblingsKeys(short string) (keys, ifaceKeys map[string]string) {
	keys, ifaceKeys = map[string]string{}, map[string]string{}
	for _, rec := range k.siblingRecords(short) {
		for key, v := range rec {
			switch {
			case strings.HasPrefix(key, "@"):
			case !reconcile.InterfaceSysctl(key):
				keys[key] = v
			default:
				if idx := rec["@if:"+topology.SysctlIfname(strings.Split(key, ".")[3])]; idx != "" {
					ifaceKeys[key] = idx
				}
			}
		}
	}
	return keys, ifaceKeys
}

// siblingRecords are the host records of the other labs of the sandbox
// (of the namespace as it is now).
func (k *Kernel) siblingRecords(short string) []map[string]string {
	if short != reconcile.HostNS {
		return nil
	}
	parent := filepath.Dir(k.recordDir())
	dirs, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	id := k.nsIdentity(short)
	var out []map[string]string
	for _, d := range dirs {
		if !d.IsDir() || d.Name() == filepath.Base(k.recordDir()) {
			continue
		}
		if rec := readRecordFile(filepath.Join(parent, d.Name(), reconcile.HostNS+".json")); rec["@netns"] == id {
			out = append(out, rec)
		}
	}
	return out
}

// note records, in namespace short, each key of now as what it was before
// the lab set it, unless noted already (the first is the one to go back
// to), or another lab of the sandbox noted it in host (then its value,
// from before either lab). An interface's key is noted with the
// interface's ifindex (ifindex gives it by name). It is written before
// the sysctls are: a run killed in between leaves notes of values the
// keys still have.
func (k *Kernel) note(short string, now map[string]string, ifindex func(string) int, by map[string]string) error {
	k.recMu.Lock()
	defer k.recMu.Unlock()
	rec := k.readRecord(short)
	if rec == nil {
		rec = map[string]string{}
	}
	if id := k.nsIdentity(short); id != "" {
		rec["@netns"] = id
	}
	siblings := k.siblingsNoted(short)
	// A key another write rewrites is noted only if the lab had not set
	// that other key before: once it had, the key's value now is the
	// lab's own doing (ip_forward 1 wrote every forwarding 1), and putting
	// the other key back restores it (an outside audit: ip_forward 1, then
	// 0, then dropped put the default's and an interface's forwarding
	// "back" to 1, so the sandbox routed with ip_forward 0).
	setBefore := map[string]bool{}
	for _, src := range by {
		_, setBefore[src] = rec[src]
	}
	changed := false
	for key, value := range now {
		if src := by[key]; src != "" && setBefore[src] {
			continue
		}
		ifid := ""
		if reconcile.InterfaceSysctl(key) {
			ifname := topology.SysctlIfname(strings.Split(key, ".")[3])
			idx := ifindex(ifname)
			if idx == 0 {
				continue
			}
			ifid = strconv.Itoa(idx)
			if rec["@if:"+ifname] != ifid {
				// Notes of another interface by that name: gone.
				for other := range rec {
					if reconcile.InterfaceSysctl(other) && topology.SysctlIfname(strings.Split(other, ".")[3]) == ifname {
						delete(rec, other)
					}
				}
				rec["@if:"+ifname] = ifid
				changed = true
			}
		}
		if _, ok := rec[key]; ok {
			continue
		}
		if v, ok := siblings[key]; ok {
			value = v
		} else if v, ok := siblings[reconcile.SysctlAlias[key]]; ok {
			value = v
		}
		rec[key], changed = value, true
		if src := by[key]; src != "" {
			rec["@by:"+key] = src // noted because src rewrites it
		}
	}
	if !changed {
		return nil
	}
	return k.writeRecord(short, rec)
}

// forgetBefore drops key from namespace short's record (it was put back).
func (k *Kernel) forgetBefore(short, key string) error {
	k.recMu.Lock()
	defer k.recMu.Unlock()
	rec := k.readRecord(short)
	if _, ok := rec[key]; !ok {
		return nil
	}
	delete(rec, key)
	return k.writeRecord(short, rec)
}

// dropRecord removes namespace short's record: the namespace is made
// anew, or removed.
func (k *Kernel) dropRecord(short string) {
	k.recMu.Lock()
	defer k.recMu.Unlock()
	_ = k.writeRecord(short, nil)
}

// renameNotes moves the notes of interface from's keys to to's: a link
// renamed in place keeps its ifindex, and its settings.
func (k *Kernel) renameNotes(short, from, to string) error {
	k.recMu.Lock()
	defer k.recMu.Unlock()
	rec := k.readRecord(short)
	changed := false
	// Notes under the new name are of an interface by that name that is
	// gone (no interface had the name, or the rename would have failed):
	// dropped, not taken for the renamed one's (the differential test:
	// a note of a deleted interface came back under the next one given
	// its name).
	for key := range rec {
		if key == "@if:"+to || reconcile.InterfaceSysctl(key) && topology.SysctlIfname(strings.Split(key, ".")[3]) == to {
			delete(rec, key)
			changed = true
		}
	}
	for key, v := range rec {
		if reconcile.InterfaceSysctl(key) && topology.SysctlIfname(strings.Split(key, ".")[3]) == from {
			delete(rec, key)
			rec[ifaceKey(key, to)] = v
			changed = true
		}
	}
	if id, ok := rec["@if:"+from]; ok {
		delete(rec, "@if:"+from)
		rec["@if:"+to] = id
		changed = true
	}
	if !changed {
		return nil
	}
	return k.writeRecord(short, rec)
}

// NoteBefore implements reconcile.SysctlRecords: before a plan runs, the
// value now of every key it sets (that is there yet), so that a key the
// kernel rewrites when another is written (ip_forward writes every
// forwarding) is noted as it was, not as the plan left it (an outside
// audit's find). A key of an interface the plan makes is noted as it is
// written.
func (k *Kernel) NoteBefore(ctx context.Context, p *reconcile.Plan) error {
	// The links p makes, noted before any exists: one that a kill
	// leaves unmarked is known for the lab's (making.go). Not in
	// Preflight: plan runs that too, and notes nothing.
	if err := k.noteMaking(p.Changes); err != nil {
		return fmt.Errorf("note the links the plan makes in the lab's records: %w", err)
	}
	keys := map[string][]string{}
	for _, c := range p.Changes {
		if c.Kind == reconcile.KindSysctl && !c.Restore && c.Action != reconcile.Delete {
			keys[c.Namespace] = append(keys[c.Namespace], c.Name)
		}
	}
	for short, ks := range keys {
		h, err := k.handle(short)
		if err != nil {
			continue // made by the plan: noted as written
		}
		// A key whose write rewrites others (ip_forward: the default's
		// and every interface's forwarding): those are noted too, as
		// they are before it (an outside audit: one the file set later
		// was noted at the value the lab's own write had left).
		by := map[string]string{}
		for _, key := range ks {
			if prefix, suffix, ok := reconcile.Rewrites(key); ok {
				for _, dir := range confDirs(h.fd, prefix) {
					if dir != "all" {
						other := prefix + topology.SysctlKeyName(dir) + suffix
						if other != key && by[other] == "" {
							by[other] = key
						}
					}
				}
			}
		}
		all := slices.Clone(ks)
		for other := range by {
			if !slices.Contains(all, other) {
				all = append(all, other)
			}
		}
		now, err := readSysctls(h.fd, all)
		if err == nil {
			err = k.note(short, now, func(ifname string) int { idx, _ := h.linkIndex(ifname); return idx }, by)
		}
		k.release(h)
		if err != nil {
			return k.opErr("note the values before setting", "sysctls", strings.Join(ks, ", "), short, err)
		}
	}
	return nil
}

// KeepRecords implements reconcile.SysctlRecords: after a run that left
// the kernel as desired, only the notes of keys desired sets stay; a key
// of host desired sets that another lab of the sandbox noted, this lab
// notes too (the other's value), so that whichever lets it go first
// leaves it to the other (an outside audit: a lab that found the value
// set already noted nothing, and the first lab put it back under it).
// The list of links the run set out to make goes too (making.go).
func (k *Kernel) KeepRecords(desired *reconcile.State) error {
	k.recMu.Lock()
	defer k.recMu.Unlock()
	if host := desired.NS(reconcile.HostNS); host != nil && len(host.Sysctls) > 0 {
		siblings := k.siblingsNoted(reconcile.HostNS)
		rec := k.readRecord(reconcile.HostNS)
		changed := false
		for key := range host.Sysctls {
			v, ok := siblings[key]
			if !ok {
				v, ok = siblings[reconcile.SysctlAlias[key]] // one kernel value
			}
			if ok {
				if _, noted := rec[key]; !noted {
					if rec == nil {
						rec = map[string]string{}
					}
					rec[key], changed = v, true
				}
			}
		}
		// And what another lab noted because a key this lab sets too
		// rewrote it (ip_forward: every interface's forwarding): whichever
		// lab lets go last puts it back (an outside audit: the first to go
		// dropped its note, and an interface's forwarding was lost).
		for _, sib := range k.siblingRecords(reconcile.HostNS) {
			for key, v := range sib {
				src := sib["@by:"+key]
				if strings.HasPrefix(key, "@") || src == "" {
					continue
				}
				if _, a := host.Sysctls[src]; !a {
					if _, b := host.Sysctls[reconcile.SysctlAlias[src]]; !b {
						continue
					}
				}
				if _, noted := rec[key]; noted {
					continue
				}
				if reconcile.InterfaceSysctl(key) {
					ifname := topology.SysctlIfname(strings.Split(key, ".")[3])
					idx := sib["@if:"+ifname]
					if idx == "" || rec["@if:"+ifname] != "" && rec["@if:"+ifname] != idx {
						continue // of another interface by that name
					}
					if rec == nil {
						rec = map[string]string{}
					}
					rec["@if:"+ifname] = idx
				}
				if rec == nil {
					rec = map[string]string{}
				}
				rec[key], rec["@by:"+key], changed = v, src, true
			}
		}
		if changed {
			if id := k.nsIdentity(reconcile.HostNS); id != "" {
				rec["@netns"] = id
			}
			if err := k.writeRecord(reconcile.HostNS, rec); err != nil {
				return err
			}
		}
	}
	for short := range k.recorded() {
		if err := k.followRenames(short); err != nil {
			return err
		}
		rec := readRecordFile(k.recordFile(short))
		stale := rec["@netns"] != "" && rec["@netns"] != k.nsIdentity(short)
		var want map[string]string
		if ns := desired.NS(short); ns != nil {
			want = ns.Sysctls
		}
		changed := stale
		wanted := func(key string) bool {
			if _, ok := want[key]; ok {
				return true
			}
			src := rec["@by:"+key] // noted because src rewrites it: kept while src is set
			_, a := want[src]
			_, b := want[reconcile.SysctlAlias[src]]
			return src != "" && (a || b)
		}
		for key := range rec {
			if !strings.HasPrefix(key, "@") && (stale || !wanted(key)) {
				delete(rec, key)
				delete(rec, "@by:"+key)
				changed = true
			}
		}
		if changed {
			if err := k.writeRecord(short, rec); err != nil {
				return err
			}
		}
	}
	// The run ended well (or was rolled back whole): every link it made
	// is marked, or gone.
	return k.doneMaking()
}

// recordBefore, before a sysctl change writes a key the file sets, notes
// what the key is now if nothing is noted for it yet (NoteBefore noted
// the keys that were there before the plan; this, those of interfaces
// the plan made).
func (k *Kernel) recordBefore(h *nsHandle, c *reconcile.Change) error {
	if c.Restore {
		return nil
	}
	if !reconcile.InterfaceSysctl(c.Name) {
		k.recMu.Lock()
		_, noted := k.readRecord(c.Namespace)[c.Name]
		k.recMu.Unlock()
		if noted {
			return nil
		}
	}
	now, err := readSysctls(h.fd, []string{c.Name})
	if err != nil || len(now) == 0 {
		return err // no such key (yet): nothing to go back to
	}
	return k.note(c.Namespace, now, func(ifname string) int { idx, _ := h.linkIndex(ifname); return idx }, nil)
}

// confDirs lists the directories under /proc/sys/PREFIX (net/ipv4/conf:
// all, default and one per interface) in namespace fd, for a key prefix
// like "net.ipv4.conf.".
func confDirs(fd netns.NsHandle, prefix string) []string {
	var out []string
	_ = InNetns(fd, func() error {
		entries, err := os.ReadDir("/proc/sys/" + strings.ReplaceAll(strings.TrimSuffix(prefix, "."), ".", "/"))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.IsDir() {
				out = append(out, e.Name())
			}
		}
		return nil
	})
	return out
}
