package topology

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadIdentity: the name and prefix of a file with problems elsewhere,
// and the errors where they cannot be read.
func TestLoadIdentity(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "t.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vars := VarsOnly(map[string]string{"P": "x-"})
	top, err := LoadIdentity(write("name: ${N:-lab1}\nprefix: ${P}\nbridges: [{name: br0, colour: red, mtu: \"${MTU}\"}]\n"), vars, true)
	if err != nil || top.Name != "lab1" || top.Prefix != "x-" || len(top.Namespaces)+len(top.Bridges) != 0 {
		t.Fatalf("got %+v, %v", top, err)
	}
	for body, want := range map[string]string{
		"name: ${N}\n":           "t.yaml:1:7: name: variable N is not set",
		"namespaces: {}\n":       "missing required key name",
		"name: Lab\n":            `name: "Lab" must match`,
		"name: l\nprefix: a/b\n": "prefix",
		"name: [l\n":             "invalid YAML",
		"- name: l\n":            "expected a mapping with a name",
	} {
		_, err := LoadIdentity(write(body), vars, true)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want %q, got %v", body, want, err)
		}
	}
	// A name and prefix from an alias or a merge (an outside audit: not
	// read, so destroy refused a file broken elsewhere).
	if top, err := LoadIdentity(write("x-id: &id {name: idlab1, prefix: p-}\n<<: *id\nbridges: [{colour: red}]\n"), vars, true); err != nil || top.Name != "idlab1" || top.Prefix != "p-" {
		t.Errorf("identity from a merge: %+v, %v", top, err)
	}
	if top, err := LoadIdentity(write("x-n: &n idlab2\nname: *n\nbridges: [{colour: red}]\n"), vars, true); err != nil || top.Name != "idlab2" {
		t.Errorf("name from an alias: %+v, %v", top, err)
	}
	// A prefix the caller gives itself: the file's is not read.
	if top, err := LoadIdentity(write("name: l\nprefix: ${Q}\nprefix: a/b\n"), vars, false); err != nil || top.Name != "l" || top.Prefix != "" {
		t.Errorf("without the prefix: %+v, %v", top, err)
	}
	// A big file cut in chunks: its sections are not decoded.
	var b strings.Builder
	b.WriteString("name: big\nnamespaces:\n")
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&b, "  n%d: {colour: red}\n", i)
	}
	if top, err := LoadIdentity(write(b.String()), vars, true); err != nil || top.Name != "big" || len(top.Namespaces) != 0 {
		t.Errorf("big file: %v", err)
	}
}

// TestBridgeTypoHint: a port's bridge that is not declared gets the
// nearest declared one as a hint, if it is near (a new user's audit).
func TestBridgeTypoHint(t *testing.T) {
	src := "name: t\nnamespaces:\n  c1: {}\nbridges:\n  - {name: hwchiu0}\nlinks:\n  - a: {namespace: c1, name: eth0}\n    b: {namespace: host, name: v0, bridge: BRIDGE}\n"
	for typo, hint := range map[string]string{"hwchiuO": " (did you mean hwchiu0?)", "lan": ""} {
		_, err := Parse("t.yaml", []byte(strings.Replace(src, "BRIDGE", typo, 1)))
		want := `bridge "` + typo + `" is not declared in namespace "host"` + hint
		if err == nil || !strings.Contains(err.Error(), want) || hint == "" && strings.Contains(err.Error(), "did you mean") {
			t.Errorf("%s: want %q, got %v", typo, want, err)
		}
	}
}

// TestOneTypoOneProblem: an address that is no address is the problem to
// report; a gateway then on no subnet, or nothing to check, follows from
// it and is not reported beside it (a new user's audit: four problems for
// one typo).
func TestOneTypoOneProblem(t *testing.T) {
	src := "name: casc\nnamespaces:\n  c1:\n    routes: [{to: default, via: 10.55.66.1}]\nlinks:\n  - a: {namespace: c1, name: eth0, addresses: [10.55.66.256/24]}\n    b: {namespace: host, name: v0, addresses: [10.55.66.1/24]}\nchecks:\n  - {from: host, to: c1}\n  - {from: host, to: \"c1:eth0\"}\n"
	_, err := Parse("t.yaml", []byte(src))
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 || !strings.Contains(list[0].Error(), `"10.55.66.256/24" is not an address in CIDR form`) {
		t.Fatalf("want the one problem, got %v", err)
	}
}
