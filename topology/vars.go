package topology

import (
	"fmt"
	"os"
	"regexp"

	"strings"

	"gopkg.in/yaml.v3"
)

// Variables: ${NAME} or ${NAME:-default} in any scalar of the file, taken
// from the values given (the CLI's --var NAME=VALUE), then the
// environment, then the default (also when the variable is set but
// empty); an undefined variable is an error at its position. $${ is a
// literal ${. Keys are substituted as well as values.

// Vars looks a variable up; ok is false when it is not set.
type Vars func(name string) (value string, ok bool)

// EnvVars looks variables up in the environment.
func EnvVars(name string) (string, bool) { return os.LookupEnv(name) }

// VarsFrom looks in given first, then in the environment.
func VarsFrom(given map[string]string) Vars {
	return func(name string) (string, bool) {
		if v, ok := given[name]; ok {
			return v, true
		}
		return os.LookupEnv(name)
	}
}

// VarsOnly looks in given and nowhere else.
func VarsOnly(given map[string]string) Vars {
	return func(name string) (string, bool) {
		v, ok := given[name]
		return v, ok
	}
}

var varNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// closed reports whether every ${ of s (not a literal $${) has its }.
func closed(s string) bool {
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			i += 2
		case strings.HasPrefix(s[i:], "${"):
			end := closing(s, i+2)
			if end < 0 || !closed(s[i+2:end]) {
				return false
			}
			i = end
		}
	}
	return true
}

// closing is the index of the } that closes a ${ whose text starts at j,
// counting the ${ inside it (a default's variables) and the $${ (a
// literal ${...} in a default: ${A:-$${D}} defaults to ${D}, an outside
// audit's case); -1 if there is none.
func closing(s string, j int) int {
	depth := 1
	for k := j; k < len(s); k++ {
		switch {
		case strings.HasPrefix(s[k:], "$${"):
			depth++
			k += 2
		case strings.HasPrefix(s[k:], "${"):
			depth++
			k++
		case s[k] == '}':
			if depth--; depth == 0 {
				return k
			}
		}
	}
	return -1
}

// expand substitutes the variables of s (closed), a default's own
// variables only when the default is taken; problems holds every
// variable without a value, and substituted whether s had any variable.
func expand(s string, vars Vars, used map[string]string) (out string, problems []string, substituted bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 2
		case strings.HasPrefix(s[i:], "${"):
			end := closing(s, i+2)
			m, expr := s[i:end+1], s[i+2:end]
			i = end
			substituted = true
			name, def, hasDef := strings.Cut(expr, ":-")
			if !varNameRE.MatchString(name) {
				problems = append(problems, fmt.Sprintf("%q is not a variable name (letters, digits and _, not starting with a digit)", name))
				b.WriteString(m)
				continue
			}
			// As in the shell, ${NAME:-default} takes the default when
			// NAME is set but empty too.
			if v, ok := vars(name); ok && !(hasDef && v == "") {
				used[name] = v
				b.WriteString(v)
				continue
			}
			if hasDef {
				v, more, _ := expand(def, vars, used)
				problems = append(problems, more...)
				if _, named := used[name]; !named || len(more) == 0 {
					used[name] = v
				}
				b.WriteString(v)
				continue
			}
			used[name] = "" // named: a --var of it is not unused
			problems = append(problems, fmt.Sprintf("variable %s is not set: give it a value (--var %s=VALUE or the environment on the command line; Vars in Go) or a default, ${%s:-VALUE}", name, name, name))
			b.WriteString(m)
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), problems, substituted
}

// IsVarName: letters, digits and _, not starting with a digit.
func IsVarName(s string) bool { return varNameRE.MatchString(s) }

// substitute replaces the variables of every scalar under n, recording
// the values used in t.Vars and reporting undefined ones where they are.
func (d *decoder) substitute(n *yaml.Node, path string, vars Vars, used map[string]string) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.SequenceNode {
				p = fmt.Sprintf("%s[%d]", path, i)
			}
			d.substitute(c, p, vars, used)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			d.substituteScalar(n.Content[i], path, vars, used, true) // a key: a namespace's name, a sysctl
			d.substitute(n.Content[i+1], join(path, n.Content[i].Value), vars, used)
		}
	case yaml.ScalarNode:
		d.substituteScalar(n, path, vars, used, false)
	}
}

func (d *decoder) substituteScalar(n *yaml.Node, path string, vars Vars, used map[string]string, isKey bool) {
	if n.Kind != yaml.ScalarNode || !strings.Contains(n.Value, "${") {
		return
	}
	if !closed(n.Value) {
		d.errorf(n, path, "%q: ${ without its closing } (a variable is ${NAME}; a literal ${ is written $${)", n.Value)
		d.markUnset(n, path, n.Value, isKey)
		return
	}
	text := n.Value
	for i := 0; i < len(text); i++ {
		switch {
		case strings.HasPrefix(text[i:], "$${"):
			i += 2
		case strings.HasPrefix(text[i:], "${"):
			j := i + 2
			for j < len(text) && (text[j] == '_' || text[j] >= 'a' && text[j] <= 'z' || text[j] >= 'A' && text[j] <= 'Z' || text[j] >= '0' && text[j] <= '9') {
				j++
			}
			if name := text[i+2 : j]; IsVarName(name) {
				if d.named == nil {
					d.named = map[string]bool{}
				}
				d.named[name] = true
			}
			i = j - 1
		}
	}
	out, problems, substituted := expand(n.Value, vars, used)
	for _, p := range problems {
		d.errorf(n, path, "%s", p)
	}
	n.Value = out
	if len(problems) > 0 {
		d.markUnset(n, path, out, isKey)
		return
	}
	if !substituted {
		return
	}
	if d.from == nil {
		d.from, d.fromPaths = map[*yaml.Node]string{}, map[string]string{}
	}
	d.from[n] = text
	if isKey {
		d.fromPaths[join(path, out)] = text
	} else {
		d.fromPaths[path] = text
	}
	// Read again for what it now holds: mtu: "${MTU}" is an integer once
	// MTU is 1400 (in flow style, {mtu: ${MTU}} is not YAML: the braces
	// need the quotes). A variable never makes a null: name: "${X}" with
	// X empty is the empty string, not a missing key.
	quoted := n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0
	n.Style = 0
	n.Tag = ""
	n.Tag = n.ShortTag()
	if n.Tag == "!!null" {
		n.Tag = "!!str"
		if quoted || n.Value == "" {
			n.Style = yaml.DoubleQuotedStyle
		}
	}
}

// markUnset: the value at n has a variable without a value; that error is
// the one to report about it (for a key, about the path it names).
func (d *decoder) markUnset(n *yaml.Node, path, value string, isKey bool) {
	if d.unset == nil {
		d.unset, d.unsetPaths = map[*yaml.Node]bool{}, map[string]bool{}
	}
	d.unset[n] = true
	if isKey {
		d.unsetPaths[join(path, value)] = true
	} else {
		d.unsetPaths[path] = true
	}
}
