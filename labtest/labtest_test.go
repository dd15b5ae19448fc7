package labtest_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	fmt.Printf("UP %s %s\n", l.Netns("host"), l.Netns("a"))
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
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "UP" {
			sandbox, ns = f[1], f[2]
			break
		}
	}
	if sandbox == "" {
		child.Process.Kill()
		child.Wait()
		t.Fatal("the child test did not bring its lab up")
	}
	child.Process.Kill()
	child.Wait()
	for _, n := range []string{sandbox, ns} {
		if _, err := os.Stat(filepath.Join("/run/netns", n)); err != nil {
			t.Fatalf("the killed test's %s should still be there before the cleanup: %v", n, err)
		}
	}
	removed := lab.RemoveStale()
	if !contains(removed, sandbox) {
		t.Fatalf("RemoveStale removed %v, not %s", removed, sandbox)
	}
	for _, n := range []string{sandbox, ns} {
		if _, err := os.Stat(filepath.Join("/run/netns", n)); err == nil {
			t.Fatalf("%s is still there", n)
		}
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
