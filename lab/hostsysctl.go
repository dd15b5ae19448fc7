package lab

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/reconcile"
)

// HostSysctlDir keeps, for a lab applied without a sandbox, the values
// the machine's own sysctls had before the lab set them: destroy puts
// them back.
var HostSysctlDir = "/run/netplan-lab/host-sysctls"

func (l *Lab) hostSysctlFile() string {
	name := l.Topology.Name
	if l.opt.Prefix != "" {
		name += "." + l.opt.Prefix
	}
	return filepath.Join(HostSysctlDir, name+".json")
}

// RecordHostSysctls is what Apply does first without a sandbox: note the
// machine's sysctls that want will set (a watch applies through the
// kernel directly, and calls it before each apply).
func (l *Lab) RecordHostSysctls(want *reconcile.State) error { return l.recordHostSysctls(want) }

// recordHostSysctls notes the values the machine's sysctls have now, for
// the keys the lab sets in host and that are not noted yet (the first
// value is the one to go back to).
func (l *Lab) recordHostSysctls(want *reconcile.State) error {
	if l.opt.Netns != "" {
		return nil // a sandbox goes away whole
	}
	host := want.NS(reconcile.HostNS)
	if host == nil || len(host.Sysctls) == 0 {
		return nil
	}
	saved := map[string]string{}
	path := l.hostSysctlFile()
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &saved)
	}
	var keys []string
	for k := range host.Sysctls {
		if _, ok := saved[k]; !ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	now, err := linux.ReadOwnSysctls(keys)
	if err != nil {
		return err
	}
	for k, v := range now {
		saved[k] = v
	}
	if err := os.MkdirAll(HostSysctlDir, 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(saved, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// restoreHostSysctls puts back what recordHostSysctls noted, and forgets it.
func (l *Lab) restoreHostSysctls() error {
	if l.opt.Netns != "" {
		return nil
	}
	path := l.hostSysctlFile()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	saved := map[string]string{}
	if err := json.Unmarshal(b, &saved); err != nil {
		return err
	}
	for k, v := range saved {
		if err := linux.WriteOwnSysctl(k, v); err != nil {
			return err
		}
	}
	return os.Remove(path)
}
