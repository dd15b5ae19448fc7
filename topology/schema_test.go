package topology_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/netplan-lab/netplan-lab/topology"
)

// The JSON Schema (schema/topology.schema.json) is the machine-readable
// form of the contract: it must accept what the decoder accepts and reject
// the structural mistakes the decoder rejects.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("../schema/topology.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("topology.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("topology.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func asJSON(t *testing.T, src []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestSchemaAgreesWithDecoder(t *testing.T) {
	s := compileSchema(t)
	files, _ := filepath.Glob("../examples/*.yaml")
	files = append(files, "testdata/valid.yaml")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := topology.Parse(f, src); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := s.Validate(asJSON(t, src)); err != nil {
			t.Errorf("%s is valid but the schema rejects it: %v", f, err)
		}
	}
	for name, src := range map[string]string{
		"unknown top key":          "name: a\ncolour: red\n",
		"missing name":             "prefix: x\n",
		"unknown iface key":        "name: a\nbridges: [{name: b, speed: 10}]\n",
		"mtu not a number":         "name: a\nbridges: [{name: b, mtu: big}]\n",
		"ifname too long":          "name: a\nbridges: [{name: abcdefghijklmnop}]\n",
		"bad ipvlan mode":          "name: a\nipvlans: [{name: i, parent: eth0, mode: l4}]\n",
		"nat with two kinds":       "name: a\nnat: [{masquerade: {source: 10.0.0.0/8}, snat: {source: 10.0.0.0/8, to: 1.2.3.4}}]\n",
		"route without via or dev": "name: a\nnamespaces: {c: {routes: [{to: default}]}}\n",
		"bad name":                 "name: Bad\n",
	} {
		if _, err := topology.Parse("t.yaml", []byte(src)); err == nil {
			t.Fatalf("%s: the decoder accepts it", name)
		}
		if err := s.Validate(asJSON(t, []byte(src))); err == nil {
			t.Errorf("%s: the decoder rejects it but the schema accepts it", name)
		}
	}
}

// TestSchemaTakesVariables: a file with variables in typed values (an
// integer, a boolean) is valid for the schema as written, and for the
// decoder once the variables are given.
func TestSchemaTakesVariables(t *testing.T) {
	s := compileSchema(t)
	src := []byte("name: vars\nbridges: [{name: br0, mtu: \"${MTU:-${MTU0:-1400}}\", stp: \"${STP}\", addresses: [\"${NET}.1/24\"]}]\n")
	if err := s.Validate(asJSON(t, src)); err != nil {
		t.Fatalf("the schema rejects variables: %v", err)
	}
	top, err := topology.ParseWith("v.yaml", src, topology.VarsFrom(map[string]string{"STP": "true", "NET": "10.7.0"}))
	if err != nil {
		t.Fatal(err)
	}
	if b := top.Bridges[0]; b.MTU != 1400 || b.STP == nil || !*b.STP || b.Addresses[0] != "10.7.0.1/24" {
		t.Fatalf("decoded %+v", b)
	}
	if err := s.Validate(asJSON(t, []byte("name: vars\nbridges: [{name: br0, mtu: \"$MTU\"}]\n"))); err == nil {
		t.Fatal("the schema takes a string that is no variable for an integer")
	}
}

// Variables in strings the schema checks by pattern or list (a name, a
// MAC, a mode) are valid as written; the decoder checks the value.
func TestSchemaTakesVariablesInPatterns(t *testing.T) {
	s := compileSchema(t)
	src := []byte("name: lab-${N}\nmacvlans: [{name: \"${IF}\", parent: eth0, mode: \"${MODE:-bridge}\", mac: \"${MAC}\"}]\n")
	if err := s.Validate(asJSON(t, src)); err != nil {
		t.Fatalf("the schema rejects variables in checked strings: %v", err)
	}
	if err := s.Validate(asJSON(t, []byte("name: lab-$N\n"))); err == nil {
		t.Fatal("the schema takes a name that is no variable and breaks the pattern")
	}
}
