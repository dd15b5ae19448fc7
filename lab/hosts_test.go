package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseHostsRoundTrip(t *testing.T) {
	in := []hostsSection{
		{mark: "netplan-lab:a", body: "10.0.0.1\tn1\n10.0.0.2\tn2\n"},
		{mark: "netplan-lab:b", body: ""},
		{mark: "netplan-lab:c", body: "10.1.0.1\tx\n"},
	}
	got, ok := parseHosts(formatHosts(in))
	if !ok || !reflect.DeepEqual(got, in) {
		t.Fatalf("parseHosts(formatHosts(x)) = %q, %v; want %q", got, ok, in)
	}
	if _, ok := parseHosts([]byte("127.0.0.1 localhost\n")); ok {
		t.Fatal("a hosts file without netplan-lab's header was taken as ours")
	}
}

func TestParseHostsUnterminated(t *testing.T) {
	text := hostsHeader + hostsPreamble +
		"# BEGIN m1\n1.1.1.1\ta\n" + // no END: the next BEGIN ends it
		"# BEGIN m2\n2.2.2.2\tb\n# END m2\n" +
		"# END stray\n" + // an END with no open section is ignored
		"# BEGIN m3\n3.3.3.3\tc" // no END and no final newline
	got, ok := parseHosts([]byte(text))
	want := []hostsSection{{"m1", "1.1.1.1\ta\n"}, {"m2", "2.2.2.2\tb\n"}, {"m3", "3.3.3.3\tc"}}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestHostsKeepsLinesAddedByHand: lines someone added to a shared hosts
// file outside every lab's section stay when a lab writes its section
// again and when the last lab's section goes (an outside audit: the
// file, and the line, went with the last lab).
func TestHostsKeepsLinesAddedByHand(t *testing.T) {
	text := hostsHeader + hostsPreamble + "# BEGIN m1\n1.1.1.1\ta\n# END m1\n" + "192.0.2.9\tmine\n"
	got, ok := parseHosts([]byte(text))
	want := []hostsSection{{"", "192.0.2.9\tmine\n"}, {"m1", "1.1.1.1\ta\n"}}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	again, _ := parseHosts(formatHosts(got))
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("written again: %q, want %q", again, want)
	}
	above := "10.1.1.1\thandtop\n" + text
	if got, ok := parseHosts([]byte(above)); !ok || !reflect.DeepEqual(got, []hostsSection{{"", "10.1.1.1\thandtop\n192.0.2.9\tmine\n"}, {"m1", "1.1.1.1\ta\n"}}) {
		t.Fatalf("a line above the header: %q, %v", got, ok)
	}
	if out := string(formatHosts(got[:1])); !strings.Contains(out, "192.0.2.9\tmine\n") || strings.Count(out, "\tlocalhost") != 2 {
		t.Fatalf("the last lab gone:\n%s", out)
	}
}

// A big lab's hosts file is parsed once per namespace on every apply:
// parsing must be linear in its size (it was quadratic).
func BenchmarkParseHosts2000Lines(b *testing.B) {
	var body strings.Builder
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&body, "10.0.%d.%d\tn%d-eth0\n", i>>8, i&255, i)
	}
	text := formatHosts([]hostsSection{{"netplan-lab:bench", body.String()}})
	b.SetBytes(int64(len(text)))
	for i := 0; i < b.N; i++ {
		if s, ok := parseHosts(text); !ok || len(s) != 1 {
			b.Fatal("not parsed")
		}
	}
}

// TestEtcNetnsRemovedOnlyIfMade: the hosts directory /etc/netns goes when
// the last lab leaves it empty only if netplan-lab made it (its mark, an
// extended attribute on the directory); one that was there before stays
// (an outside audit: destroy removed an empty /etc/netns the user had
// made; then records kept beside it went wrong when the directory was
// removed by hand, made again on the same inode number, or a run was
// killed half-way).
func TestEtcNetnsRemovedOnlyIfMade(t *testing.T) {
	old := EtcNetns
	defer func() { EtcNetns = old }()
	root := t.TempDir()
	EtcNetns = filepath.Join(root, "netns")
	if err := unix.Setxattr(root, madeXattr, []byte("x"), 0); errors.Is(err, unix.ENOTSUP) {
		t.Skip("the temporary directory's filesystem keeps no user extended attributes")
	}

	// A killed run's temporary directory goes at the next making.
	stale := filepath.Join(root, ".netns.netplan-lab-tmp.999999999")
	if err := os.Mkdir(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	// Made by netplan-lab: it goes once empty.
	sub := filepath.Join(EtcNetns, sharedRoot, "x")
	if err := mkdirReadable(sub); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a killed run's temporary directory stays (%v)", err)
	}
	if fi, err := os.Stat(EtcNetns); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("%s: %v, %v", EtcNetns, fi, err)
	}
	removeEtcNetnsIfMade() // not empty yet
	if _, err := os.Stat(EtcNetns); err != nil {
		t.Fatalf("removed while not empty: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(EtcNetns, sharedRoot)); err != nil {
		t.Fatal(err)
	}
	removeEtcNetnsIfMade()
	if _, err := os.Stat(EtcNetns); !os.IsNotExist(err) {
		t.Errorf("%s, made by netplan-lab and empty, is still there (%v)", EtcNetns, err)
	}

	// Made by someone else: it stays, empty or not.
	if err := os.Mkdir(EtcNetns, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mkdirReadable(sub); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(EtcNetns, sharedRoot)); err != nil {
		t.Fatal(err)
	}
	removeEtcNetnsIfMade()
	if _, err := os.Stat(EtcNetns); err != nil {
		t.Errorf("%s, made by someone else, was removed: %v", EtcNetns, err)
	}
	if left, _ := filepath.Glob(filepath.Join(root, ".netns.netplan-lab-tmp.*")); len(left) > 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}
