package topology_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/netplan-lab/netplan-lab/reconcile"
	"github.com/netplan-lab/netplan-lab/topology"
)

// FuzzParse feeds arbitrary bytes to the decoder and validator. It must
// never panic; an invalid file must give positioned errors; a valid one
// must turn into a desired state. The seed corpus (testdata and examples)
// runs with every `go test`.
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"testdata/*.yaml", "../examples/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("name: a\nlinks: [{endpoints: [\"a:b\"]}]\n"))
	f.Add([]byte("name: a\nnamespaces: {c: {routes: [{to: default, via: \"::1\"}]}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		top, err := topology.Parse("fuzz.yaml", data)
		if err != nil {
			var list topology.ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %v", err)
			}
			for _, e := range list {
				if e.Line < 1 || e.Col < 1 || e.Msg == "" {
					t.Fatalf("error without position or message: %#v", e)
				}
			}
			return
		}
		if top.Name == "" {
			t.Fatal("a valid topology has a name")
		}
		want, err := reconcile.Desired(top)
		if err != nil {
			t.Fatalf("valid topology, but no desired state: %v", err)
		}
		// Planning a valid topology from nothing never fails to plan: it
		// creates every namespace and the host has no conflicts.
		p := reconcile.Diff(want, reconcile.Nothing())
		if len(top.Namespaces) > 0 && p.Empty() {
			for _, n := range top.Namespaces {
				if n.Name != topology.Host {
					t.Fatalf("no plan for a topology with namespace %q", n.Name)
				}
			}
		}
	})
}
