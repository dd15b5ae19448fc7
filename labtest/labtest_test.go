package labtest_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netplan-lab/netplan-lab/lab"
	"github.com/netplan-lab/netplan-lab/labtest"
)

const pair = `name: pair
namespaces: {a: {}, b: {}}
links:
  - a: {namespace: a, name: eth0, addresses: [10.0.0.1/24]}
    b: {namespace: b, name: eth0, addresses: [10.0.0.2/24]}
`

// TestStaleChild is the test process that gets killed: it brings a lab up
// and waits (only when the parent asks for it).
func TestStaleChild(t *testing.T) {
	if os.Getenv("LABTEST_CHILD") != "1" {
		t.Skip("run by TestKilledTestLabIsRemoved")
	}
	l := labtest.UpYAML(t, pair)
	// A daemon in the lab, which outlives this process when it is killed.
	d := l.Command("a", "sleep", "3600")
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	// Once it is in the lab (nsenter takes a moment to get there).
	var pin, in syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+l.Netns("a"), &pin); err != nil {
		t.Fatal(err)
	}
	for syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", d.Process.Pid), &in) != nil || in.Ino != pin.Ino {
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Printf("UP %s %s %d\n", l.Netns("host"), l.Netns("a"), d.Process.Pid)
	time.Sleep(time.Minute)
}

// TestKilledTestLabIsRemoved: a test process killed with SIGKILL leaves
// its lab; the next lab.RemoveStale (which every labtest.Up calls, and
// netplan-lab destroy --stale) removes it.
func TestKilledTestLabIsRemoved(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	child := exec.Command(os.Args[0], "-test.run", "^TestStaleChild$", "-test.v")
	child.Env = append(os.Environ(), "LABTEST_CHILD=1")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var sandbox, ns string
	var daemon int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "UP" {
			sandbox, ns = f[1], f[2]
			daemon, _ = strconv.Atoi(f[3])
			break
		}
	}
	if sandbox == "" {
		child.Process.Kill()
		child.Wait()
		t.Fatal("the child test did not bring its lab up")
	}
	// Killed and not yet waited for: a zombie, which is no test running.
	child.Process.Kill()
	defer child.Wait()
	for deadline := time.Now().Add(10 * time.Second); state(child.Process.Pid) != "Z"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the killed child is in state %q", state(child.Process.Pid))
		}
	}
	for _, n := range []string{sandbox, ns} {
		if _, err := os.Stat(filepath.Join("/run/netns", n)); err != nil {
			t.Fatalf("the killed test's %s should still be there before the cleanup: %v", n, err)
		}
		if _, err := os.Stat(filepath.Join(lab.EtcNetns, n, "hosts")); err != nil {
			t.Fatalf("the killed test's hosts file of %s should still be there before the cleanup: %v", n, err)
		}
	}
	if s := state(daemon); s == "" || s == "Z" {
		t.Fatalf("the killed test's daemon %d should still run before the cleanup (state %q)", daemon, s)
	}
	removed := lab.RemoveStale()
	if !contains(removed, sandbox) {
		t.Fatalf("RemoveStale removed %v, not %s", removed, sandbox)
	}
	for _, n := range []string{sandbox, ns} {
		if _, err := os.Stat(filepath.Join("/run/netns", n)); err == nil {
			t.Fatalf("%s is still there", n)
		}
		if _, err := os.Stat(filepath.Join(lab.EtcNetns, n)); err == nil {
			t.Fatalf("%s's hosts file is still there", n)
		}
	}
	if s := state(daemon); s != "" && s != "Z" {
		t.Fatalf("the killed test's daemon %d still runs (state %q)", daemon, s)
	}
}

// state is a process's state letter from /proc/PID/stat ("" when there is
// no such process).
func state(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return f[0]
}

// TestCleanupStopsDaemonsAndTheirChildren: a daemon whose child holds its
// output pipe, and a process started in the lab by other means, are
// stopped at cleanup, and the test's own Wait returns (nothing waits on
// the pipe forever, and cleanup does not race the test for the Wait).
func TestCleanupStopsDaemonsAndTheirChildren(t *testing.T) {
	var d *exec.Cmd
	var grandchild, other int
	var out syncBuffer
	t.Run("lab", func(t *testing.T) {
		l := labtest.UpYAML(t, pair)
		// The shell starts a child that keeps stdout, prints its pid,
		// and ignores SIGTERM (so SIGKILL is needed).
		d = l.Command("a", "sh", "-c", `trap "" TERM; sleep 3600 & echo $!; wait`)
		d.Stdout = &out
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		o := exec.Command("nsenter", "--net=/run/netns/"+l.Netns("b"), "--", "sleep", "3600")
		if err := o.Start(); err != nil {
			t.Fatal(err)
		}
		other = o.Process.Pid
		go o.Wait()
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "\n"); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the daemon did not print its child's pid")
			}
		}
	})
	var err error
	if grandchild, err = strconv.Atoi(strings.TrimSpace(out.String())); err != nil {
		t.Fatalf("child pid %q: %v", out.String(), err)
	}
	waited := make(chan error, 1)
	go func() { waited <- d.Wait() }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon's Wait does not return after cleanup")
	}
	for _, pid := range []int{grandchild, other} {
		if s := state(pid); s != "" && s != "Z" {
			t.Fatalf("process %d still runs after cleanup (state %q)", pid, s)
		}
	}
}

// TestCleanupStopsJustStartedCommands: a command started as the test
// ends (nsenter may not have entered the lab yet) is stopped too, not left
// running in a namespace nobody can name any more.
func TestCleanupStopsJustStartedCommands(t *testing.T) {
	for i := 0; i < 5; i++ {
		var c *exec.Cmd
		t.Run("lab", func(t *testing.T) {
			l := labtest.UpYAML(t, pair)
			c = l.Command("a", "sleep", "3600")
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
		})
		if s := state(c.Process.Pid); s != "" && s != "Z" {
			t.Fatalf("run %d: the command started last still runs (state %q)", i, s)
		}
		c.Wait()
	}
}

// TestCleanupStopsForkingDaemon: a daemon that ignores SIGTERM and forks
// without end leaves nothing: SIGKILL goes again to what was forked since.
func TestCleanupStopsForkingDaemon(t *testing.T) {
	mark := fmt.Sprintf("%d.%d", 3000+os.Getpid()%1000, time.Now().UnixNano()%1000000)
	t.Run("lab", func(t *testing.T) {
		l := labtest.UpYAML(t, pair)
		c := l.Command("a", "sh", "-c", "trap '' TERM; while :; do sleep "+mark+" & done")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		go c.Wait()
		for deadline := time.Now().Add(10 * time.Second); countCmdline("sleep\x00"+mark) == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the daemon's children are not seen running in 10 s")
			}
		}
		time.Sleep(100 * time.Millisecond) // and forking on
	})
	if n := countCmdline("sleep\x00" + mark); n != 0 {
		t.Fatalf("%d of the daemon's children still run after cleanup", n)
	}
}

// countCmdline counts running processes whose command line is args
// (NUL-separated, given with \x00).
func countCmdline(args string) int {
	want := strings.ReplaceAll(args, "\\x00", "\x00") + "\x00"
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && string(b) == want {
			if s := state(atoi(e.Name())); s != "" && s != "Z" {
				n++
			}
		}
	}
	return n
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// TestExecWithBackgroundChild: Exec returns when its command exits, even
// when a child it left running still has the output.
func TestExecWithBackgroundChild(t *testing.T) {
	l := labtest.UpYAML(t, pair)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = l.Exec("a", "sh", "-c", "sleep 20 & echo started"); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Exec waits for the background child")
	}
	if err != nil || strings.TrimSpace(string(out)) != "started" {
		t.Fatalf("Exec: %v %q", err, out)
	}
}

// syncBuffer is a strings.Builder for a command's output read while the
// command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestVarsNotFromEnvironment: a lab's variables come from labtest.Vars
// only.
func TestVarsNotFromEnvironment(t *testing.T) {
	t.Setenv("LABTEST_NET", "10.66.0")
	yaml := "name: v\nnamespaces: {a: {}}\nlinks:\n  - a: {namespace: a, name: eth0, addresses: [\"${LABTEST_NET:-10.77.0}.1/24\"]}\n    b: {namespace: host, name: v-a}\n"
	l := labtest.UpYAML(t, yaml)
	if got := l.Addr("a", "eth0").String(); got != "10.77.0.1/24" {
		t.Fatalf("the environment gave the variable: %s", got)
	}
	l2 := labtest.UpYAML(t, yaml, labtest.Vars(map[string]string{"LABTEST_NET": "10.88.0"}))
	if got := l2.Addr("a", "eth0").String(); got != "10.88.0.1/24" {
		t.Fatalf("Vars did not give the variable: %s", got)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestUpAndExec: a lab up in a test, a command in it, Netns and Addr.
func TestUpAndExec(t *testing.T) {
	l := labtest.UpYAML(t, pair)
	if got := l.Addr("b", "eth0").String(); got != "10.0.0.2/24" {
		t.Fatalf("Addr = %s", got)
	}
	out, err := l.Exec("a", "cat", "/proc/net/dev")
	if err != nil || !strings.Contains(string(out), "eth0") {
		t.Fatalf("exec in a: %v\n%s", err, out)
	}
}

// TestExecHasTheLabsNames: a command of Exec (and Command) resolves the
// lab's names as under netplan-lab exec (it ran without the lab's hosts
// file: "b" was unknown), and sees its namespace's interfaces in /sys.
func TestExecHasTheLabsNames(t *testing.T) {
	l := labtest.UpYAML(t, pair)
	out, err := l.Exec("a", "getent", "hosts", "b", "a-eth0")
	if err != nil {
		t.Fatalf("getent hosts b a-eth0 in a: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "10.0.0.2") || !strings.Contains(string(out), "10.0.0.1") {
		t.Fatalf("the lab's names in a:\n%s", out)
	}
	out, err = l.Exec("b", "ls", "/sys/class/net")
	if err != nil || strings.Fields(string(out))[0] != "eth0" {
		t.Fatalf("/sys/class/net in b: %v %q", err, out)
	}
	// A command given an environment without PATH is found all the same.
	c := l.Command("a", "getent", "hosts", "b")
	c.Env = []string{"LANG=C"}
	if out, err := c.CombinedOutput(); err != nil || !strings.Contains(string(out), "10.0.0.2") {
		t.Fatalf("a command without PATH in its environment: %v %q", err, out)
	}
	if out, err := l.Exec("a", "no-such-command-here"); err == nil {
		t.Fatalf("a command that is not there ran: %q", out)
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 127 {
		t.Fatalf("a command that is not there: %v %q, want exit status 127", err, out)
	}
}

// TestUnknownNamespacePanics: a namespace the topology does not have is a
// mistake of the test, said at once (Netns returned a name for it, and
// Exec failed later with nsenter's message).
func TestUnknownNamespacePanics(t *testing.T) {
	l := labtest.UpYAML(t, pair)
	for _, call := range []func(){
		func() { l.Netns("c") },
		func() { l.Command("c", "true") },
		func() { _ = l.Do("c", func() error { return nil }) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), `no namespace "c"`) {
					t.Errorf("recovered %v, want a panic that names the namespace", r)
				}
			}()
			call()
		}()
	}
	if got := l.Netns("host"); !strings.HasPrefix(got, "npl-lt-") {
		t.Errorf("Netns(host) = %q", got)
	}
}

// TestDoEndsChild fails (t.Fatal) or panics inside Do, as
// TestFatalAndPanicInsideDo asks.
func TestDoEndsChild(t *testing.T) {
	how := os.Getenv("LABTEST_DO")
	if how == "" {
		t.Skip("run by TestFatalAndPanicInsideDo")
	}
	l := labtest.UpYAML(t, pair)
	fmt.Printf("UP %s %s\n", l.Netns("host"), l.Netns("a"))
	l.Do("a", func() error {
		if how == "panic" {
			panic("a panic inside Do")
		}
		t.Fatal("a t.Fatal inside Do")
		return nil
	})
	t.Error("Do returned")
}

// TestFatalAndPanicInsideDo: a t.Fatal inside Do ends the test at once
// (it hung until the timeout), and a panic there fails it (it killed the
// binary first); either way the lab is torn down (an outside audit: it
// was left).
func TestFatalAndPanicInsideDo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, how := range []string{"fatal", "panic"} {
		t.Run(how, func(t *testing.T) {
			child := exec.Command(os.Args[0], "-test.run", "^TestDoEndsChild$", "-test.v", "-test.timeout", "60s")
			child.Env = append(os.Environ(), "LABTEST_DO="+how)
			start := time.Now()
			out, err := child.CombinedOutput()
			if err == nil || time.Since(start) > 30*time.Second || strings.Contains(string(out), "test timed out") || !strings.Contains(string(out), "inside Do") {
				t.Fatalf("the child: %v after %v\n%s", err, time.Since(start), out)
			}
			var names []string
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Fields(line); len(f) == 3 && f[0] == "UP" {
					names = f[1:]
				}
			}
			if names == nil {
				t.Fatalf("the child did not bring its lab up:\n%s", out)
			}
			for _, n := range names {
				if _, err := os.Stat(filepath.Join("/run/netns", n)); err == nil {
					lab.RemoveStale()
					t.Fatalf("%s is still there after the child's %s inside Do:\n%s", n, how, out)
				}
			}
		})
	}
}

// TestApplyThatDropsANamespaceLeavesNoProcess: processes running in a
// namespace an Apply removes (a Command's shell and its child, a child
// Exec left in the background) are stopped at cleanup: they live on in
// the namespace without its name, where a search by the lab's names no
// longer finds them (an outside audit: they ran for ever, and one holding
// go test's output made it fail).
func TestApplyThatDropsANamespaceLeavesNoProcess(t *testing.T) {
	mark := fmt.Sprintf("%d.%d", 4000+os.Getpid()%1000, time.Now().UnixNano()%1000000)
	t.Run("lab", func(t *testing.T) {
		l := labtest.UpYAML(t, pair)
		c := l.Command("b", "sh", "-c", "sleep "+mark+" & wait")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		go c.Wait()
		if _, err := l.Exec("b", "sh", "-c", "sleep "+mark+"1 >/dev/null 2>&1 &"); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); countCmdline("sleep\x00"+mark) == 0 || countCmdline("sleep\x00"+mark+"1") == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the processes in b are not seen running")
			}
		}
		if err := l.Apply("name: pair\nnamespaces: {a: {}}\n"); err != nil {
			t.Fatal(err)
		}
		if countCmdline("sleep\x00"+mark) == 0 {
			t.Fatal("the Apply stopped b's processes: they are the test's until cleanup")
		}
	})
	if n, m := countCmdline("sleep\x00"+mark), countCmdline("sleep\x00"+mark+"1"); n+m != 0 {
		t.Fatalf("%d processes of the dropped namespace still run after cleanup", n+m)
	}
}

// TestAddrWhileApplying: Addr from another goroutine while Apply changes
// the topology (-race: it read the lab's topology as Apply replaced it).
func TestAddrWhileApplying(t *testing.T) {
	l := labtest.UpYAML(t, pair)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
				if a := l.Addr("a", "eth0").String(); a != "10.0.0.1/24" && a != "10.0.0.11/24" {
					t.Errorf("Addr: %s", a)
					return
				}
			}
		}
	}()
	for _, a := range []string{"10.0.0.11/24", "10.0.0.1/24", "10.0.0.11/24"} {
		if err := l.Apply(strings.Replace(pair, "10.0.0.1/24", a, 1)); err != nil {
			t.Fatal(err)
		}
	}
	close(quit)
	<-done
	if a := l.Addr("a", "eth0").String(); a != "10.0.0.11/24" {
		t.Fatalf("Addr after the last Apply: %s", a)
	}
}

// TestCleanupStopsChildOutsideTheLab: a command's child that moved to a
// network namespace of its own (unshare -n) is in none of the lab's, and
// ran on after cleanup (an outside audit); it is stopped as the
// command's descendant, even ignoring SIGTERM after its parent went.
func TestCleanupStopsChildOutsideTheLab(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare(1) here")
	}
	var out syncBuffer
	var c *exec.Cmd
	t.Run("lab", func(t *testing.T) {
		l := labtest.UpYAML(t, pair)
		c = l.Command("a", "sh", "-c", `unshare -n sh -c 'trap "" TERM; echo $$; exec sleep 3600' & wait`)
		c.Stdout = &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "\n"); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the child did not print its pid")
			}
		}
	})
	child, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("child pid %q: %v", out.String(), err)
	}
	go c.Wait()
	if s := state(child); s != "" && s != "Z" {
		syscall.Kill(child, syscall.SIGKILL)
		t.Fatalf("the command's child in a namespace of its own still runs after cleanup (state %q)", s)
	}
	// Such a child that forks on once its command is gone, ignoring
	// SIGTERM: what it forks is stopped too (an outside audit: seven of
	// them ran on).
	mark := fmt.Sprintf("%d.%d", 3000+os.Getpid()%1000, time.Now().UnixNano()%1000000+1)
	t.Run("lab", func(t *testing.T) {
		l := labtest.UpYAML(t, pair)
		c := l.Command("a", "sh", "-c", `unshare -n sh -c 'trap "" TERM; while :; do sleep `+mark+` & sleep 0.05; done' & sleep 3600`)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		go c.Wait()
		for deadline := time.Now().Add(10 * time.Second); countCmdline("sleep\x00"+mark) == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the child's children are not seen running in 10 s")
			}
		}
	})
	time.Sleep(200 * time.Millisecond) // what was just forked has its name
	if n := countCmdline("sleep\x00" + mark); n != 0 {
		t.Fatalf("%d processes forked outside the lab by a command's child still run after cleanup", n)
	}
}
