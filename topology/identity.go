package topology

import (
	"bytes"

	"gopkg.in/yaml.v3"
)

// LoadIdentity reads only what names a lab in the kernel, the file's name
// and, unless withPrefix is false (the caller gives its own), its prefix,
// their variables from vars, from a file that may have problems anywhere
// else: destroy needs nothing more, since the lab's objects carry its
// mark. It fails where the YAML cannot be read, or the name or prefix is
// missing, given twice, invalid or has a variable that is not set. Where
// the file can be cut (chunk.go), only its top-level lines are decoded.
func LoadIdentity(path string, vars Vars, withPrefix bool) (*Topology, error) {
	data, err := ReadFile(path, MaxFileSize)
	if err != nil {
		return nil, err
	}
	d := &decoder{file: path, pos: map[string]Pos{}, vars: vars}
	if l := cut(data); l != nil {
		data = l.skeleton
	}
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&root); err != nil {
		d.invalidYAML(err, data)
		return nil, d.errs
	}
	n := &root
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	// Aliases and merges first (name: *n, <<: *id); what is wrong with
	// them elsewhere in the file is not this reading's business.
	errs := d.errs
	d.resolveAliases(n, nil)
	d.errs = errs
	t := &Topology{File: path}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "", "expected a mapping with a name, found %s", kindName(n))
		return nil, d.errs
	}
	found := false
	used := map[string]string{}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value != "name" && (k.Value != "prefix" || !withPrefix) {
			continue
		}
		if seen[k.Value] {
			// Which one is meant cannot be told: not a lab to destroy.
			d.errorf(k, k.Value, "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		d.record("", k.Value, k)
		d.substitute(v, k.Value, vars, used)
		if k.Value == "name" {
			found = true
			t.Name = d.str(v, "name")
		} else {
			t.Prefix = d.str(v, "prefix")
		}
	}
	if !found {
		d.errorf(n, "", "missing required key name")
	}
	if len(d.errs) == 0 {
		if !nameRE.MatchString(t.Name) || len(t.Name) > 16 {
			d.at(Pos{1, 1}, "name", "%q must match [a-z][a-z0-9-]* and be at most 16 characters", t.Name)
		}
		if msg := CheckPartName("prefix", t.Prefix, MaxPrefixLen); msg != "" {
			d.at(Pos{1, 1}, "prefix", "%s", msg)
		}
	}
	if len(d.errs) > 0 {
		d.errs.sort()
		return nil, d.errs
	}
	if len(used) > 0 {
		t.Vars = used
	}
	return t, nil
}
