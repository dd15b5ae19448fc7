package topology

import (
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
	top, err := LoadIdentity(write("name: ${N:-lab1}\nprefix: ${P}\nbridges: [{name: br0, colour: red, mtu: \"${MTU}\"}]\n"), vars)
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
		_, err := LoadIdentity(write(body), vars)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want %q, got %v", body, want, err)
		}
	}
}
