package linux

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// SysctlRecordDir keeps, for each lab and namespace, what each sysctl the
// lab set was before it first set it: a key the file no longer sets goes
// back to it (reconcile: Namespace.SysctlsBefore, Change.Restore). One
// small JSON file per namespace that has such keys, under a directory per
// sandbox and lab; a namespace made or removed takes its file with it.
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

// readRecord is namespace short's record (nil if none, or unreadable:
// a record that cannot be read is one the plan does without).
func (k *Kernel) readRecord(short string) map[string]string {
	b, err := os.ReadFile(k.recordFile(short))
	if err != nil {
		return nil
	}
	rec := map[string]string{}
	if json.Unmarshal(b, &rec) != nil {
		return nil
	}
	return rec
}

// writeRecord replaces namespace short's record (removes it if empty),
// whole or not at all.
func (k *Kernel) writeRecord(short string, rec map[string]string) error {
	path := k.recordFile(short)
	if len(rec) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		os.Remove(k.recordDir())               // if empty
		os.Remove(filepath.Dir(k.recordDir())) // if empty
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

// noteBefore records value as what key was in namespace short before the
// lab set it, unless a value is recorded already (the first is the one
// to go back to), or another lab of the sandbox noted the key in host:
// then its value, the one from before either lab set it. It is written
// before the sysctl is: a run killed in between leaves a record of the
// value the key still has.
func (k *Kernel) noteBefore(short, key, value string) error {
	k.recMu.Lock()
	defer k.recMu.Unlock()
	rec := k.readRecord(short)
	if _, ok := rec[key]; ok {
		return nil
	}
	if rec == nil {
		rec = map[string]string{}
	}
	if v, ok := k.siblingsNoted(short)[key]; ok {
		value = v
	}
	rec[key] = value
	return k.writeRecord(short, rec)
}

// siblingsNoted is what the other labs of the sandbox noted of host's
// sysctls (a lab namespace is one lab's alone: nothing). Labs share the
// sandbox, and so its sysctls: the first to set a key noted its value
// before, and the last to let it go puts it back.
func (k *Kernel) siblingsNoted(short string) map[string]string {
	if short != reconcile.HostNS {
		return nil
	}
	dirs, err := os.ReadDir(filepath.Dir(k.recordDir()))
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, d := range dirs {
		if !d.IsDir() || d.Name() == filepath.Base(k.recordDir()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(filepath.Dir(k.recordDir()), d.Name(), reconcile.HostNS+".json"))
		if err != nil {
			continue
		}
		rec := map[string]string{}
		if json.Unmarshal(b, &rec) == nil {
			for key, v := range rec {
				out[key] = v
			}
		}
	}
	return out
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

// KeepRecords implements reconcile.SysctlRecords: after a run that left
// the kernel as desired, only the notes of keys desired sets stay.
func (k *Kernel) KeepRecords(desired *reconcile.State) error {
	k.recMu.Lock()
	defer k.recMu.Unlock()
	for short := range k.recorded() {
		rec := k.readRecord(short)
		var want map[string]string
		if ns := desired.NS(short); ns != nil {
			want = ns.Sysctls
		}
		changed := false
		for key := range rec {
			if _, ok := want[key]; !ok {
				delete(rec, key)
				changed = true
			}
		}
		if changed || len(rec) == 0 {
			if err := k.writeRecord(short, rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// recordBefore, before a sysctl change writes a key the file sets, notes
// what the key is now if nothing is noted for it yet.
func (k *Kernel) recordBefore(h *nsHandle, c *reconcile.Change) error {
	if c.Restore {
		return nil
	}
	k.recMu.Lock()
	_, noted := k.readRecord(c.Namespace)[c.Name]
	k.recMu.Unlock()
	if noted {
		return nil
	}
	now, err := readSysctls(h.fd, []string{c.Name})
	if err != nil {
		return err
	}
	v, ok := now[c.Name]
	if !ok {
		return nil // no such key (yet): nothing to go back to
	}
	return k.noteBefore(c.Namespace, c.Name, v)
}
