package live

import "syscall"

// nonRoot runs a command as uid with no capabilities.
func nonRoot(uid uint32) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
}
