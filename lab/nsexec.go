package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NSExecArg is the first argument of a helper process that runs a
// command the way `ip netns exec` does: netplan-lab's exec and shell, and
// labtest's Command, start their own program again with it. A program
// that uses it calls NSExec first thing in main (or in an init) when
// os.Args[1] is NSExecArg.
const NSExecArg = "__netplan-lab-nsexec"

// NSExecArgs are the arguments (after the program's path) of a helper
// that enters the namespace kname by its pin under /run/netns itself and
// then runs argv there, as `ip netns exec` does.
func NSExecArgs(kname string, argv ...string) []string {
	return append([]string{NSExecArg, kname, "--enter", "--"}, argv...)
}

// NSExec is the helper (args are those after NSExecArg: NETNS [--enter]
// -- CMD [ARGS...]). Without --enter it is already in the network
// namespace NETNS (its parent entered it and exec'd it there); with it,
// it enters the namespace by its pin first. Then, in a mount namespace of
// its own, it mounts what `ip netns exec` mounts (the files of
// /etc/netns/NETNS, the lab's hosts file among them, over those of /etc;
// /sys for the namespace) and becomes CMD. It returns only on failure,
// with an exit status (127: no such command).
func NSExec(args []string) int {
	enter := len(args) > 1 && args[1] == "--enter"
	if enter {
		args = append(args[:1:1], args[2:]...)
	}
	if len(args) < 3 || args[1] != "--" {
		fmt.Fprintln(os.Stderr, "error: "+NSExecArg+" NETNS [--enter] -- CMD [ARGS...]")
		return 2
	}
	kname, argv := args[0], args[2:]
	// All of it on this thread, which then becomes the command: a mount
	// namespace of its own, mounts no one else sees (as ip netns exec).
	runtime.LockOSThread()
	if enter {
		h, err := netns.GetFromPath(filepath.Join("/run/netns", kname))
		if err != nil {
			fmt.Fprintf(os.Stderr, "error: netns %s: %v\n", kname, err)
			return 1
		}
		if err := netns.Set(h); err != nil {
			fmt.Fprintf(os.Stderr, "error: enter netns %s: %v\n", kname, err)
			return 1
		}
		h.Close()
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		fmt.Fprintf(os.Stderr, "error: a mount namespace for the command: %v\n", err)
		return 1
	}
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		fmt.Fprintf(os.Stderr, "error: make / a slave mount: %v\n", err)
		return 1
	}
	dir := filepath.Join(EtcNetns, kname)
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			src, dst := filepath.Join(dir, e.Name()), filepath.Join("/etc", e.Name())
			if _, err := os.Stat(dst); err != nil {
				continue // as ip netns exec: only over what exists
			}
			if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
				fmt.Fprintf(os.Stderr, "error: bind %s over %s: %v\n", src, dst, err)
				return 1
			}
		}
	}
	// /sys as the namespace sees it (its own interfaces under
	// /sys/class/net).
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err == nil {
		if err := unix.Mount(kname, "/sys", "sysfs", 0, ""); err != nil {
			fmt.Fprintf(os.Stderr, "error: mount /sys for netns %s: %v\n", kname, err)
			return 1
		}
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 127
	}
	err = syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "error: exec %s: %v\n", path, err)
	return 126
}
