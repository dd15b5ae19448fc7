// Package labtest makes network labs test fixtures: Up applies a topology
// in a sandbox and prefix of the test's own (so tests can run in parallel,
// many copies of one file at once), and the test's cleanup destroys it,
// also after a failed or panicking test. A lab left by a test process
// that was killed is removed by the next Up on the machine.
//
// Variables come only from Vars, never from the environment: the same
// test builds the same lab on every machine.
//
// A test that panics ends the test binary (Go's testing does that) after
// its own cleanup, before other tests' cleanups run: their labs (and the
// processes in them) stay until the next Up on the machine or
// `netplan-lab destroy --stale` removes them. A panic in a goroutine the
// test started ends the binary at once, with no cleanup at all, its own
// lab included: Netns, Addr, Command, Exec, Do, Dial and Listen panic on
// a namespace the lab has not, so call them from the test's goroutine, or
// check names there first.
//
// It needs root (network namespaces); without it, Up skips the test.
package labtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/netplan-lab/netplan-lab/internal/linux"
	"github.com/netplan-lab/netplan-lab/lab"
	"github.com/netplan-lab/netplan-lab/topology"
)

// A test binary that imports labtest is also the helper Command starts
// in a lab's namespace: it does what `ip netns exec` does, then becomes
// the command, before any test (or TestMain) runs.
func init() {
	if len(os.Args) > 1 && os.Args[1] == lab.NSExecArg {
		os.Exit(lab.NSExec(os.Args[2:]))
	}
}

// Option changes how Up builds a lab.
type Option func(*lab.Options)

// Vars gives ${NAME} in the topology its value.
func Vars(v map[string]string) Option {
	return func(o *lab.Options) {
		if o.Vars == nil {
			o.Vars = map[string]string{}
		}
		for k, val := range v {
			o.Vars[k] = val
		}
	}
}

// Lab is a running lab of one test.
type Lab struct {
	t    testing.TB
	l    *lab.Lab
	mu   sync.Mutex
	cmds []*exec.Cmd // made by Command: stopped at cleanup even before they enter the lab
	// topo is the topology applied last (Netns and Addr read it from any
	// goroutine while Apply changes the lab's).
	topo *topology.Topology
	// had are the namespaces the lab has had (their identities): one an
	// Apply removed lives on while a process runs in it, and cleanup
	// stops those too.
	had map[[2]uint64]bool
}

// setTopology takes the topology applied last.
func (x *Lab) setTopology() {
	x.mu.Lock()
	x.topo = x.l.Topology
	x.mu.Unlock()
}

// remember adds the lab's namespaces as they are now to had, and returns
// a copy of had.
func (x *Lab) remember() map[[2]uint64]bool {
	ids := lab.NamespaceIDs(x.l.Netns("host"), x.l.Prefix())
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.had == nil {
		x.had = map[[2]uint64]bool{}
	}
	for id := range ids {
		x.had[id] = true
	}
	return maps.Clone(x.had)
}

// Up applies the topology file in a fresh sandbox and prefix of this test
// and destroys it when the test ends.
func Up(t testing.TB, file string, opts ...Option) *Lab {
	t.Helper()
	return up(t, func(o lab.Options) (*lab.Lab, error) { return lab.Load(file, o) }, opts)
}

// UpYAML is Up with the topology given as text.
func UpYAML(t testing.TB, yaml string, opts ...Option) *Lab {
	t.Helper()
	return up(t, func(o lab.Options) (*lab.Lab, error) { return lab.Parse(t.Name()+".yaml", []byte(yaml), o) }, opts)
}

func up(t testing.TB, load func(lab.Options) (*lab.Lab, error), opts []Option) *Lab {
	t.Helper()
	if err := linux.CheckPrivileges(); err != nil {
		t.Skipf("labtest: %v", err)
	}
	lab.RemoveStale()
	id := randomID()
	o := lab.Options{Netns: "npl-lt-" + id, Prefix: "lt" + id + "-", NoEnvironment: true}
	for _, opt := range opts {
		opt(&o)
	}
	if err := lab.Register(o.Netns, o.Prefix); err != nil {
		t.Fatalf("labtest: %v", err)
	}
	l, err := load(o)
	if err != nil {
		lab.Unregister(o.Netns, o.Prefix)
		t.Fatalf("labtest: %v", err)
	}
	x := &Lab{t: t, l: l}
	x.setTopology()
	t.Cleanup(x.cleanup)
	if _, err := l.Apply(context.Background()); err != nil {
		t.Fatalf("labtest: apply %s: %v", l.Topology.Name, err)
	}
	return x
}

func randomID() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// cleanup stops every process still running in the lab's namespaces (the
// commands of Command and whatever they started: SIGTERM, then SIGKILL
// after 2 s), then destroys the lab, then removes whatever a failure
// left. It never waits on a command (the test may be doing that); a
// command the test did not wait for stays a zombie until the test binary
// exits.
func (x *Lab) cleanup() {
	x.mu.Lock()
	var started []*os.Process
	for _, c := range x.cmds {
		if c.Process != nil {
			started = append(started, c.Process)
		}
	}
	x.mu.Unlock()
	lab.StopProcessesIn(x.remember(), 2*time.Second, started...)
	if _, _, err := x.l.Destroy(context.Background()); err != nil {
		x.t.Errorf("labtest: destroy: %v", err)
	}
	x.l.Close()
	lab.Unregister(x.l.Netns("host"), x.l.Prefix())
}

// Netns is the kernel's name of a namespace of the lab ("host": the
// sandbox). A name the topology does not have panics (failing the test,
// when called from its goroutine: see the package's doc), as it does in
// Addr, Command, Exec, Do, Dial and Listen: a typo is not a namespace that
// is not there yet.
func (x *Lab) Netns(ns string) string {
	x.mu.Lock()
	known := ns == "host" || x.topo.Namespace(ns) != nil
	x.mu.Unlock()
	if !known {
		panic(fmt.Sprintf("labtest: the lab has no namespace %q", ns))
	}
	return x.l.Netns(ns)
}

// Addr is the first address of interface ifname in namespace ns, as the
// file last applied gives it. It panics when there is none (or no such
// namespace), as Netns does.
func (x *Lab) Addr(ns, ifname string) netip.Prefix {
	x.Netns(ns) // a namespace the lab has not: said as such
	x.mu.Lock()
	t := x.topo
	x.mu.Unlock()
	for _, i := range t.Interfaces() {
		if i.Namespace == ns && i.Name == ifname && len(i.Addresses) > 0 {
			p, err := netip.ParsePrefix(i.Addresses[0])
			if err != nil {
				panic(fmt.Sprintf("labtest: %s:%s: %v", ns, ifname, err))
			}
			return p
		}
	}
	panic(fmt.Sprintf("labtest: %s:%s has no address in the topology", ns, ifname))
}

// Apply reconciles the running lab to a new topology (same name, sandbox
// and prefix): cut a link, move a host, change an address. A namespace
// the new topology has not goes from the lab; processes still running in
// it are left running (without its name, in a namespace of their own)
// and are stopped at cleanup with the lab's others.
func (x *Lab) Apply(yaml string) error {
	x.remember()
	_, err := x.l.Update(context.Background(), x.t.Name()+".yaml", []byte(yaml))
	if err == nil {
		x.setTopology()
	}
	return err
}

// Command is a command that runs in namespace ns when started (a daemon,
// the program under test); at cleanup it is stopped with everything still
// running in the lab, and with what it started, in the lab or not (a
// child in a network namespace of its own), while it runs: a child left
// behind by a command that has exited, outside the lab, is not found. It runs as under `netplan-lab exec`
// (and `ip netns exec`): the lab's hosts file is its /etc/hosts, so the
// names of the lab's namespaces (and NS-IF for an interface) resolve, and
// /sys shows the namespace's interfaces. The test binary starts itself
// again for that (this package's init does the rest).
func (x *Lab) Command(ns, name string, args ...string) *exec.Cmd {
	kname := x.Netns(ns)
	// Found with the test's PATH, as nsenter did: the command's own
	// environment (c.Env) may have none (an outside audit: a daemon given
	// a clean environment was "not found").
	if !strings.Contains(name, "/") {
		if p, err := exec.LookPath(name); err == nil {
			name = p
		}
	}
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	c := exec.Command(self, lab.NSExecArgs(kname, append([]string{name}, args...)...)...)
	x.mu.Lock()
	x.cmds = append(x.cmds, c)
	x.mu.Unlock()
	return c
}

// Exec runs a command in namespace ns and returns its combined output. A
// child it leaves running in the background does not hold Exec up for
// more than a second after the command exits (its later output is lost).
func (x *Lab) Exec(ns, name string, args ...string) ([]byte, error) {
	c := x.Command(ns, name, args...)
	c.WaitDelay = time.Second
	out, err := c.CombinedOutput()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil // it exited well; a child of its still has the output
	}
	return out, err
}

// Do runs fn on a locked OS thread inside namespace ns; the thread goes
// back to where it was after (or is thrown away if it cannot). fn runs
// on a goroutine of its own, but ends as if it ran on the caller's: its
// panic panics the caller, and a t.Fatal (t.FailNow, t.Skip) in it ends
// the test as in the test's own goroutine; the lab is torn down either
// way.
func (x *Lab) Do(ns string, fn func() error) error {
	target, err := netns.GetFromPath(filepath.Join("/run/netns", x.Netns(ns)))
	if err != nil {
		return fmt.Errorf("labtest: netns %s: %w", ns, err)
	}
	defer target.Close()
	return linux.InNetns(target, fn)
}

// Dial connects from namespace ns; the connection works from any
// goroutine. Give it an address, not a host name: a name would be looked
// up with this machine's /etc/hosts and DNS settings, which know nothing
// of the lab.
func (x *Lab) Dial(ns, network, address string) (net.Conn, error) {
	return in(x, ns, func() (net.Conn, error) { return net.DialTimeout(network, address, 10*time.Second) })
}

// Listen listens in namespace ns.
func (x *Lab) Listen(ns, network, address string) (net.Listener, error) {
	return in(x, ns, func() (net.Listener, error) { return net.Listen(network, address) })
}

// ListenPacket listens for packets in namespace ns.
func (x *Lab) ListenPacket(ns, network, address string) (net.PacketConn, error) {
	return in(x, ns, func() (net.PacketConn, error) { return net.ListenPacket(network, address) })
}

// in makes a socket inside namespace ns (it stays there whatever thread
// uses it later).
func in[T any](x *Lab, ns string, open func() (T, error)) (T, error) {
	var v T
	err := x.Do(ns, func() (err error) {
		v, err = open()
		return err
	})
	return v, err
}
