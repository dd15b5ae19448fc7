package linux

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"

	"github.com/netplan-lab/netplan-lab/reconcile"
)

// A link is made in its lab's link group (IFLA_GROUP, in the RTM_NEWLINK
// that makes it), and marked with the lab's alias right after: a run
// killed between the two leaves a link in the group with no alias. Such
// a link is the lab's, half-made, only if the lab noted before it made it
// that it was about to: anyone can put a link of their own in the group
// (`ip link set group N`), and apply and destroy deleted those, with the
// addresses on them (an outside audit). The note is a file in the lab's
// records (making), one "NAMESPACE/NAME" per line, written before a plan
// makes any link and removed once a run has ended well (every link it
// made is marked then, or gone).

// makingFile is the lab's list of links it set out to make.
func (k *Kernel) makingFile() string { return filepath.Join(k.recordDir(), "@making") }

// readMaking loads the list a run before this one left (none: nothing).
func (k *Kernel) readMaking() {
	set := map[string]bool{}
	if b, err := os.ReadFile(k.makingFile()); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if line := sc.Text(); line != "" {
				set[line] = true
			}
		}
	}
	k.makingMu.Lock()
	k.making = set
	k.makingMu.Unlock()
}

// isMaking reports whether the lab set out to make link name in
// namespace short.
func (k *Kernel) isMaking(short, name string) bool {
	k.makingMu.Lock()
	defer k.makingMu.Unlock()
	return k.making[short+"/"+name]
}

// noteMaking adds the links of changes the lab is about to make to the
// list (with their veth peers), in one write; nothing when all are in it.
func (k *Kernel) noteMaking(changes []*reconcile.Change) error {
	k.makingMu.Lock()
	defer k.makingMu.Unlock()
	if k.making == nil {
		k.making = map[string]bool{}
	}
	var add []string
	note := func(ns, name string) {
		if key := ns + "/" + name; !k.making[key] && !slices.Contains(add, key) {
			add = append(add, key)
		}
	}
	for _, c := range changes {
		if c.Kind != reconcile.KindLink || c.Action == reconcile.Delete || c.Link == nil {
			continue
		}
		note(c.Namespace, c.Name)
		if c.Link.Kind == reconcile.KindVeth && c.Link.Peer != nil {
			note(c.Link.Peer.NS, c.Link.Peer.Name)
		}
	}
	if len(add) == 0 {
		return nil
	}
	all := make([]string, 0, len(k.making)+len(add))
	for key := range k.making {
		all = append(all, key)
	}
	all = append(all, add...)
	slices.Sort(all)
	if err := os.MkdirAll(k.recordDir(), 0o755); err != nil {
		return err
	}
	path := k.makingFile()
	var b bytes.Buffer
	for _, key := range all {
		b.WriteString(key + "\n")
	}
	if err := os.WriteFile(path+".tmp", b.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return err
	}
	for _, key := range add {
		k.making[key] = true
	}
	return nil
}

// doneMaking removes the list: the run ended well, and every link it made
// is marked (or gone).
func (k *Kernel) doneMaking() error {
	k.makingMu.Lock()
	defer k.makingMu.Unlock()
	k.making = map[string]bool{}
	path := k.makingFile()
	os.Remove(path + ".tmp")
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	k.removeRecordDirs()
	return nil
}
