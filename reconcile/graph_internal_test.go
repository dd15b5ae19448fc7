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
	layerOf := layerOfChanges(t, p)
	if layerOf[string(KindLink)+" mv0"] <= layerOf[string(KindLink)+" br0"] {
		t.Fatalf("mv0's MTU in layer %d, br0's in %d: the child must come after its parent", layerOf[string(KindLink)+" mv0"], layerOf[string(KindLink)+" br0"])
	}
}

// TestMacvlanGoesBeforeItsNamespace: a namespace that goes takes its
// macvlan on a parent outside it with an explicit delete, before the
// namespace's: a namespace someone holds open would keep the macvlan on
// its parent, and the lab making it again would be refused its MAC.
func TestMacvlanGoesBeforeItsNamespace(t *testing.T) {
	have := NewState()
	host := NewNamespace(HostNS, false)
	host.Links["br0"] = &Link{Name: "br0", Kind: KindBridge, Owned: true, Up: true}
	have.Namespaces[HostNS] = host
	m1 := NewNamespace("m1", true)
	m1.Links["mv0"] = &Link{Name: "mv0", Kind: KindMacvlan, Owned: true, Up: true, Parent: &Ref{NS: HostNS, Name: "br0"}, Mode: "bridge"}
	m1.Links["mv1"] = &Link{Name: "mv1", Kind: KindMacvlan, Owned: true, Up: true, Parent: &Ref{NS: "m1", Name: "mv0"}, Mode: "bridge"}
	have.Namespaces["m1"] = m1
	want := NewState()
	wh := NewNamespace(HostNS, false)
	wh.Links["br0"] = &Link{Name: "br0", Kind: KindBridge, Owned: true, Up: true}
	want.Namespaces[HostNS] = wh
	p := Diff(want, have)
	var del *Change
	for _, c := range p.Changes {
		if c.Kind == KindLink && c.Name == "mv1" {
			t.Fatalf("mv1's parent is in the namespace that goes: nothing to plan for it, got %s", c.Describe())
		}
		if c.Kind == KindLink && c.Name == "mv0" {
			del = c
		}
	}
	if del == nil || del.Action != Delete || del.Implicit {
		t.Fatalf("no explicit delete of mv0 in the plan:\n%v", p)
	}
	layerOf := layerOfChanges(t, p)
	if layerOf[string(KindLink)+" mv0"] >= layerOf[string(KindNamespace)+" m1"] {
		t.Fatalf("mv0 deleted in layer %d, namespace m1 in %d: the macvlan must go first", layerOf[string(KindLink)+" mv0"], layerOf[string(KindNamespace)+" m1"])
	}
}

// layerOfChanges is the layer each change of p runs in, by "KIND NAME".
func layerOfChanges(t *testing.T, p *Plan) map[string]int {
	t.Helper()
	ls, err := layers(steps(p))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for i, l := range ls {
		for _, s := range l {
			for _, c := range s.changes {
				out[string(c.Kind)+" "+c.Name] = i
			}
		}
	}
	return out
}
