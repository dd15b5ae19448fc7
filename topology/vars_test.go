package topology_test

import (
	"strings"
	"testing"

	"github.com/netplan-lab/netplan-lab/topology"
)

func parseVars(t *testing.T, src string, vars map[string]string) (*topology.Topology, error) {
	t.Helper()
	return topology.ParseWith("v.yaml", []byte(src), topology.VarsOnly(vars))
}

// Keys are substituted: a namespace's name, a sysctl.
func TestVariablesInKeys(t *testing.T) {
	top, err := parseVars(t, "name: k\nnamespaces:\n  ${NS}:\n    sysctls:\n      net.ipv4.${KEY}: \"1\"\n", map[string]string{"NS": "c1", "KEY": "ip_forward"})
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Namespaces) != 1 || top.Namespaces[0].Name != "c1" {
		t.Fatalf("namespace key not substituted: %+v", top.Namespaces)
	}
	if s := top.Namespaces[0].Sysctls; len(s) != 1 || s[0].Key != "net.ipv4.ip_forward" || s[0].Value != "1" {
		t.Fatalf("sysctl key not substituted: %+v", s[0])
	}
}

// A variable never makes a null: an empty value is the empty string.
func TestVariableEmptyIsNotNull(t *testing.T) {
	for _, v := range []string{"", "null", "~"} {
		top, err := parseVars(t, "name: e\nnamespaces:\n  c1: {sysctls: {net.ipv4.ip_forward: \"${V}\"}}\n", map[string]string{"V": v})
		if err != nil {
			t.Fatalf("V=%q: %v", v, err)
		}
		if s := top.Namespaces[0].Sysctls; len(s) != 1 || s[0].Value != v {
			t.Fatalf("V=%q became %+v", v, s)
		}
	}
}

// ${X:-d}: the default also when X is set but empty (as in the shell).
func TestVariableDefaultWhenEmpty(t *testing.T) {
	top, err := parseVars(t, "name: ${N:-dflt}\n", map[string]string{"N": ""})
	if err != nil || top.Name != "dflt" {
		t.Fatalf("%v %+v", err, top)
	}
	top, err = parseVars(t, "name: ${N:-dflt}\n", map[string]string{"N": "given"})
	if err != nil || top.Name != "given" {
		t.Fatalf("%v %+v", err, top)
	}
}

func TestVariableUnterminated(t *testing.T) {
	_, err := parseVars(t, "name: lab-${N\n", map[string]string{"N": "x"})
	if err == nil || !strings.Contains(err.Error(), "v.yaml:1:7: name: ") || !strings.Contains(err.Error(), "${ without its closing }") {
		t.Fatalf("unterminated ${: %v", err)
	}
	// $${ stays a literal, unterminated or not.
	if _, err := parseVars(t, "name: a\nnamespaces: {c1: {sysctls: {net.x: \"$${N\"}}}\n", nil); err != nil {
		t.Fatalf("literal $${: %v", err)
	}
}

// Variables come only from what is given with VarsOnly (labtest's
// choice), never from the environment.
func TestVarsOnlyIgnoresEnvironment(t *testing.T) {
	t.Setenv("NPL_TEST_VAR", "fromenv")
	if _, err := parseVars(t, "name: ${NPL_TEST_VAR}\n", nil); err == nil {
		t.Fatal("VarsOnly read the environment")
	}
}

// An error in a value a variable gave says which text it came from.
func TestVariableErrorNamesItsSource(t *testing.T) {
	_, err := parseVars(t, "name: a\nbridges: [{name: br0, mtu: \"${MTU}\", addresses: [\"${NET}.1/24\"]}]\n", map[string]string{"MTU": "big", "NET": "10.0.300"})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"bridges[0].mtu: expected an integer", "(the value of ${MTU})", "(the value of ${NET}.1/24)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q not in:\n%v", want, err)
		}
	}
}

// Every variable of a value that has none is reported (in a default too,
// when it is taken); an unset variable in a key is the one error about
// that key.
func TestVariableProblemsAllReported(t *testing.T) {
	src := "name: \"${A}${B}${1B}\"\nnamespaces:\n  b:\n    sysctls: {\"net.ipv4.${K}\": 1}\nlinks:\n  - a: {namespace: b, name: \"${IF:-${DEF}}\"}\n    b: {namespace: host, name: v-b}\n"
	_, err := parseVars(t, src, map[string]string{})
	list, ok := err.(topology.ErrorList)
	if !ok {
		t.Fatalf("%v", err)
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Error())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{"variable A is not set", "variable B is not set", `"1B" is not a variable name`, "variable K is not set", "variable DEF is not set"} {
		if !strings.Contains(all, want) {
			t.Errorf("%q missing", want)
		}
	}
	if len(list) != 5 {
		t.Errorf("want 5 problems, got:\n%s", all)
	}
}

// A default may hold variables of its own (${A:-${B}}), read only when it
// is taken, and literals ($${).
func TestNestedDefaults(t *testing.T) {
	for _, c := range []struct {
		text string
		vars map[string]string
		want string
	}{
		{"${A:-${B}}", map[string]string{"A": "a1", "B": "b1"}, "a1"},
		{"${A:-${B}}", map[string]string{"B": "b1"}, "b1"},
		{"${A:-${B}}", map[string]string{"A": "", "B": "b1"}, "b1"},
		{"${A:-${B:-c1}}-x", nil, "c1-x"},
		{"${A:-${B:-${C:-d1}}}", map[string]string{"C": "c1"}, "c1"},
		{"${A:-$${B}}", nil, "${B}"},
		// A literal ${...} in a default is one piece (an outside audit:
		// "e1}" and "x${Fy}").
		{"${A:-$${B}}", map[string]string{"A": "e1"}, "e1"},
		{"${E:-x$${F}y}", map[string]string{"E": "v0"}, "v0"},
		{"${E:-x$${F}y}", nil, "x${F}y"},
		{"$${X}-${A:-a}", nil, "${X}-a"},
		{"${A:-x${B}y}z", map[string]string{"B": "1"}, "x1yz"},
		{"${A:-}v", nil, "v"},
	} {
		top, err := parseVars(t, "name: n\nnamespaces:\n  c1: {sysctls: {net.ipv4.ip_forward: \""+c.text+"\"}}\n", c.vars)
		if err != nil {
			t.Errorf("%s %v: %v", c.text, c.vars, err)
			continue
		}
		if got := top.Namespaces[0].Sysctls[0].Value; got != c.want {
			t.Errorf("%s %v: got %q, want %q", c.text, c.vars, got, c.want)
		}
	}
	// The default's variable is reported, not the one that has a default.
	_, err := parseVars(t, "name: \"${A:-${B}}\"\n", nil)
	if err == nil || !strings.Contains(err.Error(), "variable B is not set") || strings.Contains(err.Error(), "variable A is not set") {
		t.Fatalf("got %v", err)
	}
	for _, text := range []string{"${A:-${B}", "${A:-${B", "${A:-x"} {
		_, err := parseVars(t, "name: \""+text+"\"\n", nil)
		if err == nil || !strings.Contains(err.Error(), "without its closing }") {
			t.Errorf("%s: got %v", text, err)
		}
	}
}
