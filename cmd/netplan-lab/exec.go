package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netns"
	"golang.org/x/term"

	netplanlab "github.com/netplan-lab/netplan-lab/lab"
	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

func newExecCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "exec FILE NS -- CMD [ARGS...]",
		Short: "Run a command in a namespace of the lab (by its name in the file)",
		Long: `Run CMD inside the lab namespace NS (its short name in the file; host is
the --netns sandbox, or this machine's namespace without --netns). stdin,
stdout, stderr and the exit status pass through. As with ip netns exec,
CMD gets a private mount namespace in which /etc/hosts is the lab's (every
namespace's name stands for its first address, NS-IF for an interface's)
and /sys shows the namespace's interfaces.`,
		Example: `  netplan-lab --netns lab exec examples/bridge.yaml c1 -- ping -c1 c2
  netplan-lab --netns lab exec examples/bridge.yaml c1 -- ip route`,
		Args: cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 2 {
				return &codeError{exitError, errors.New("usage: exec FILE NS -- CMD [ARGS...] (the command goes after --)")}
			}
			return g.execIn(cmd, args[0], args[1], args[2:], nil)
		},
	}
	// A flag of the command's own before -- (exec FILE c1 ip -br addr)
	// is taken for exec's: say where it goes (an outside audit).
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (the command and its flags go after --: exec FILE NS -- CMD [ARGS...])", err)
	})
	return cmd
}

// notInFile says that namespace ns is not one of file's, and which are.
func notInFile(ns, file string, t *topology.Topology) error {
	names := []string{reconcile.HostNS}
	for _, n := range t.Namespaces {
		if n.Name != reconcile.HostNS {
			names = append(names, n.Name)
		}
	}
	list := strings.Join(names, ", ")
	if len(names) > 12 {
		list = strings.Join(names[:12], ", ") + fmt.Sprintf(", ... (%d in all)", len(names))
	}
	return fmt.Errorf("namespace %q is not in %s; its namespaces: %s", ns, file, list)
}

func newShellCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "shell FILE NS",
		Short: "An interactive shell in a namespace of the lab",
		Long: `An interactive shell ($SHELL, else /bin/sh) inside the lab namespace NS,
as exec runs commands, with a prompt that names the lab and the namespace.
Commands on stdin work too: echo 'ping -c1 c2' | netplan-lab shell FILE c1.`,
		Example: `  netplan-lab --netns lab shell examples/bridge.yaml c1`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			sh := os.Getenv("SHELL")
			if sh == "" {
				sh = "/bin/sh"
			}
			argv := []string{sh}
			tty := term.IsTerminal(int(os.Stdin.Fd()))
			if filepath.Base(sh) == "bash" && tty {
				argv = append(argv, "--norc", "-i") // so the prompt is ours
			} else if tty {
				argv = append(argv, "-i")
			}
			return g.execIn(cmd, args[0], args[1], argv, func(lab, ns string) []string {
				if filepath.Base(sh) == "bash" {
					return []string{fmt.Sprintf("PS1=[%s:%s] \\w \\$ ", lab, ns)}
				}
				return []string{fmt.Sprintf("PS1=[%s:%s] # ", lab, ns)} // sh expands no \\w
			})
		},
	}
}

// execIn runs argv in namespace ns of the lab of file, passing the exit
// status through.
func (g *globals) execIn(cmd *cobra.Command, file, ns string, argv []string, extraEnv func(lab, ns string) []string) error {
	l, err := g.load(cmd.Context(), file)
	if err != nil {
		return err
	}
	if ns != reconcile.HostNS && l.topo.Namespace(ns) == nil {
		l.kernel.Close()
		return &codeError{exitError, notInFile(ns, file, l.topo)}
	}
	fd, err := l.kernel.OpenLabNetns(ns)
	if err != nil {
		l.kernel.Close()
		return err
	}
	kname := l.kernel.KernelName(ns)
	env := append(os.Environ(), "NETPLAN_LAB="+l.topo.Name, "NETPLAN_LAB_NS="+ns, "NETPLAN_LAB_NETNS="+kname)
	if extraEnv != nil {
		env = append(env, extraEnv(l.topo.Name, ns)...)
	}
	l.kernel.Close()
	// This process becomes the command (through the helper, which sets up
	// the mounts): signals, the terminal and the exit status are the
	// command's own, with no process in between.
	if ns == reconcile.HostNS && g.netns == "" {
		fd.Close()
		path, err := exec.LookPath(argv[0])
		if err != nil {
			return &codeError{127, err}
		}
		return fmt.Errorf("exec %s: %w", path, syscall.Exec(path, argv, env))
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// The thread that enters the namespace is the one that execs: it is
	// never unlocked, and the new program keeps its namespace.
	runtime.LockOSThread()
	if err := netns.Set(fd); err != nil {
		return fmt.Errorf("enter netns %s: %w", kname, err)
	}
	fd.Close()
	err = syscall.Exec(self, append([]string{self, netplanlab.NSExecArg, kname, "--"}, argv...), env)
	return fmt.Errorf("start %s in netns %s: %w", argv[0], kname, err)
}
