package reconcile

import "testing"

// TestChildMTUAfterItsParent: a macvlan's MTU change runs after its
// parent's, in a later layer (raised together, the child first would be
// refused: its MTU may not pass its parent's).
func TestChildMTUAfterItsParent(t *testing.T) {
	br := &Link{Name: "br0", Kind: KindBridge, Owned: true, Up: true, MTU: 1500}
	mv := &Link{Name: "mv0", Kind: KindMacvlan, Owned: true, Up: true, MTU: 1500, Parent: &Ref{NS: HostNS, Name: "br0"}, Mode: "bridge"}
	p := &Plan{Changes: []*Change{
		// The child first in plan order, as the plan's sorting may put it.
		{Action: Update, Kind: KindLink, Namespace: "m1", Name: "mv0", Link: mv, Fields: []Field{{Name: "mtu", Old: "1400", New: "1500"}}},
		{Action: Update, Kind: KindLink, Namespace: HostNS, Name: "br0", Link: br, Fields: []Field{{Name: "mtu", Old: "1400", New: "1500"}}},
	}}
	ls, err := layers(steps(p))
	if err != nil {
		t.Fatal(err)
	}
	layerOf := map[string]int{}
	for i, l := range ls {
		for _, s := range l {
			for _, c := range s.changes {
				layerOf[c.Name] = i
			}
		}
	}
	if layerOf["mv0"] <= layerOf["br0"] {
		t.Fatalf("mv0's MTU in layer %d, br0's in %d: the child must come after its parent", layerOf["mv0"], layerOf["br0"])
	}
}
