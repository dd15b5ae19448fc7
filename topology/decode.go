package topology

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads, decodes and validates the topology file at path, with
// variables from the environment.
func Load(path string) (*Topology, error) {
	return LoadWith(path, EnvVars)
}

// Option changes how a file is read.
type Option func(*decoder)

// PrefixGiven is the Option for a lab whose prefix is given elsewhere
// (--prefix, lab.Options.Prefix): the file's prefix: is not read at all
// (a variable in it needs no value; an outside audit saw plan refuse a
// file for one).
func PrefixGiven(d *decoder) { d.prefixGiven = true }

// LoadWith is Load with variables looked up in vars.
func LoadWith(path string, vars Vars, opts ...Option) (*Topology, error) {
	data, err := ReadFile(path, MaxFileSize)
	if err != nil {
		return nil, err
	}
	// The file's bytes are not kept while the topology is validated (11
	// MB of a 100 000-namespace file's peak): a file with problems whose
	// positions the first pass did not record is read again, and used if
	// it is still the same (else those problems keep their object's
	// position).
	size, sum := len(data), crc32.ChecksumIEEE(data)
	again := func() []byte {
		b, err := ReadFile(path, MaxFileSize)
		if err != nil || len(b) != size || crc32.ChecksumIEEE(b) != sum {
			return nil
		}
		return b
	}
	return parse(path, data, again, vars, opts)
}

// Parse decodes and validates a topology, with variables from the
// environment. The error, if any, is an ErrorList holding every problem
// found, each with file, line, column and YAML path; the topology is then
// only its warnings and the names of its variables.
func Parse(file string, data []byte) (*Topology, error) {
	return ParseWith(file, data, EnvVars)
}

// ParseWith is Parse with variables looked up in vars.
func ParseWith(file string, data []byte, vars Vars, opts ...Option) (*Topology, error) {
	return parse(file, data, func() []byte { return data }, vars, opts)
}

// parse decodes data and validates the topology; again gives the file's
// bytes a second time (nil if it cannot), for locate.
func parse(file string, data []byte, again func() []byte, vars Vars, opts []Option) (*Topology, error) {
	d := &decoder{file: file, pos: map[string]Pos{}, vars: vars}
	for _, o := range opts {
		o(d)
	}
	t := d.document(data)
	if t != nil {
		d.validate(t)
	}
	if len(d.errs) > 0 {
		t = nil // not returned: its memory is free for locate's second decoding
	}
	d.locate(again)
	d.warns.sort()
	if len(d.errs) > 0 {
		d.errs.sort()
		// Only the warnings, beside the errors: validate reports both (an
		// outside audit: the warnings were lost at the first error).
		return &Topology{File: file, Warnings: d.warns, Named: d.named}, d.errs
	}
	t.Warnings = d.warns
	return t, nil
}

type decoder struct {
	file string
	// prefixGiven: the lab's prefix is given elsewhere (PrefixGiven).
	prefixGiven bool
	errs        ErrorList
	warns       ErrorList
	// pos holds where each value was found, by YAML path, so that checks
	// made after decoding can point at the exact value.
	pos  map[string]Pos
	vars Vars
	// unset holds scalars with a variable that is not set, and their paths.
	unset      map[*yaml.Node]bool
	unsetPaths map[string]bool
	// from holds the text, variables and all, of scalars a variable
	// changed, by node and by path: an error in such a value says where
	// the value came from.
	from      map[*yaml.Node]string
	fromPaths map[string]string
	// want, in the second pass that finds positions (see locate), holds
	// the paths whose positions are needed; the first pass records only
	// the top-level keys and the strings that came out empty (present
	// needs those), not one entry per value of a big file.
	want map[string]bool
	// unresolved holds the problems found at a path whose position the
	// first pass did not record: locate sets them once validation is done.
	unresolved []*Error
	// named holds the name of every variable the file writes.
	named map[string]bool
	// badAddress holds the namespaces with an address that is no address:
	// problems that follow from it (a gateway on no subnet, nothing to
	// check) are not reported beside it.
	badAddress map[string]bool
}

// record notes where the value at path p is (parent is the path of the
// mapping or list that holds it).
func (d *decoder) record(parent, p string, n *yaml.Node) {
	if d.want != nil {
		if d.want[p] {
			d.pos[p] = pos(n)
		}
		return
	}
	if parent == "" {
		d.pos[p] = pos(n)
	}
}

// origin is " (from TEXT)" for a value a variable gave, else "".
func origin(text string) string {
	if text == "" {
		return ""
	}
	return " (the value of " + text + ")"
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	if d.unset[n] {
		return // its variable is not set: that is the one error to report
	}
	e := &Error{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...) + origin(d.from[n])}
	if n != nil {
		e.Pos = pos(n)
	} else {
		e.Line, e.Col = 1, 1
	}
	d.errs = append(d.errs, e)
}

// locate finds the positions of the problems found at paths the first
// pass did not record, by decoding the file again and recording just
// those. Only a file with problems pays for it.
func (d *decoder) locate(again func() []byte) {
	if len(d.unresolved) == 0 {
		return
	}
	data := again()
	if data == nil {
		d.unresolved = nil
		return
	}
	// With the variables: a key that is one names the path.
	second := &decoder{file: d.file, pos: map[string]Pos{}, want: map[string]bool{}, vars: d.vars, prefixGiven: d.prefixGiven}
	for _, e := range d.unresolved {
		second.want[e.Path] = true
	}
	second.document(data)
	for _, e := range d.unresolved {
		if p, ok := second.pos[e.Path]; ok {
			e.Pos = p
		}
	}
	d.unresolved = nil
}

func pos(n *yaml.Node) Pos { return Pos{Line: int32(n.Line), Col: int32(n.Column)} }

// document decodes the file: in chunks where it can be cut (chunk.go),
// else whole.
func (d *decoder) document(data []byte) *Topology {
	if l := cut(data); l != nil {
		if t, ok := d.chunked(l); ok {
			return t
		}
		// A chunk did not parse alone: start again with the whole file,
		// which also says what is wrong with it.
		d.errs, d.warns, d.pos = nil, nil, map[string]Pos{}
		d.unset, d.unsetPaths, d.from, d.fromPaths = nil, nil, nil, nil
	}
	return d.root(data, nil)
}

func (d *decoder) chunked(l *layout) (t *Topology, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if r != errChunk {
				panic(r)
			}
			t, ok = nil, false
		}
	}()
	return d.root(l.skeleton, l), true
}

// invalidYAML reports what yaml.v3 could not parse, at the line it names.
func (d *decoder) invalidYAML(err error, data []byte) {
	line, col := 1, 1
	// yaml.v3 reports "yaml: line N: message": N counts from 1 for the
	// scanner's errors, from 0 for the parser's (it does not add 1 to
	// the line of what it was parsing: an outside audit saw the line
	// before the problem).
	n, msg := yamlMessage(err)
	if n > 0 {
		line = n
		if parserProblem(msg) {
			line++
		}
	} else {
		// yaml.v3 names no line for an alias of an anchor it has not
		// seen: the alias is found in the text.
		if a, ok := strings.CutPrefix(msg, "unknown anchor '"); ok {
			if a, ok = strings.CutSuffix(a, "' referenced"); ok {
				line, col = aliasAt(data, a)
			}
		}
	}
	if msg == "EOF" {
		msg = "empty file: a topology needs at least a name"
	} else if col == 1 {
		line, col = problemAt(data, line, msg)
		msg += syntaxHint(data, line, msg)
	}
	d.errs = append(d.errs, &Error{File: d.file, Pos: Pos{int32(line), int32(col)}, Msg: "invalid YAML: " + msg})
}

// refineMax is the largest file whose syntax errors problemAt looks for
// (each look parses up to the whole file again; ~20 looks).
const refineMax = 2 << 20

// problemAt is where in data the YAML syntax error msg is: yaml.v3 names
// the line where the collection it was parsing starts, which may be far
// above the mistake (a key indented one space less, lines below; an
// outside audit). The first line at or after from whose end the text up
// to it fails with the same message holds it (a binary search: the text
// up to a line before the mistake parses, or fails otherwise), at its
// first character, or at a tab in its indentation. A message not seen
// again keeps from, column 1.
func problemAt(data []byte, from int, msg string) (line, col int) {
	line, col = from, 1
	if len(data) > refineMax || from < 1 {
		return
	}
	// A flow collection left open: yaml.v3 names the line where it opens,
	// which is where the mistake is; the text up to a later line fails
	// the same way (an outside audit: a '[' at the end of a line was put
	// at the next line with text, below blank ones).
	flow := strings.Contains(msg, "',' or ']'") || strings.Contains(msg, "',' or '}'")
	ends := []int{} // ends[i]: the offset just past line i+1
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	if strings.Contains(msg, "unexpected end of stream") {
		// A quoted string not closed runs to the end of the file (yaml.v3
		// names the line after it): the first line with an odd count of
		// double quotes opens it.
		start := 0
		for i, end := range ends {
			text := data[start:end]
			if n := bytes.Count(text, []byte{'"'}) - bytes.Count(text, []byte{'\\', '"'}); n%2 == 1 {
				return i + 1, bytes.IndexByte(text, '"') + 1
			}
			start = end
		}
	}
	if from > len(ends) {
		return len(ends), 1
	}
	same := func(n int) bool {
		var node yaml.Node
		err := yaml.Unmarshal(data[:ends[n-1]], &node)
		if err == nil {
			return false
		}
		_, m := yamlMessage(err)
		return m == msg
	}
	lo, hi := from, len(ends)
	if flow {
		hi = lo
	} else if !same(hi) {
		return
	}
	for lo < hi {
		if mid := (lo + hi) / 2; same(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	start := 0
	if lo > 1 {
		start = ends[lo-2]
	}
	text := data[start:ends[lo-1]]
	if strings.Contains(msg, "cannot start any token") {
		// The scanner's: a character no token starts with ('@' and '`'
		// are reserved), or a tab where indentation is.
		if i := bytes.IndexAny(text, "@`\t"); i >= 0 {
			return lo, i + 1
		}
	}
	col = 1
	for i, b := range text {
		if b == '\t' {
			return lo, i + 1
		}
		if b != ' ' {
			if b != '\n' && b != '\r' {
				col = i + 1
			}
			break
		}
	}
	return lo, col
}

// yamlMessage splits yaml.v3's "yaml: line N: message" (line 0 if it
// names none).
func yamlMessage(err error) (line int, msg string) {
	msg = strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				return n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return 0, msg
}

// syntaxHint says what to do about the usual causes of a syntax error
// msg at line of data: a tab in the indentation, a variable unquoted in
// a flow collection.
func syntaxHint(data []byte, line int, msg string) string {
	text := lineOf(data, line)
	switch {
	case strings.Contains(msg, "cannot start any token") && strings.Contains(text, "\t"):
		return " (a tab: YAML indents with spaces)"
	case strings.Contains(msg, "',' or '}'") || strings.Contains(msg, "',' or ']'"):
		if strings.Contains(text, "${") {
			return ` (in a flow collection, {...} or [...], a value with a variable needs quotes: "${NAME}")`
		}
		return " (a flow collection, {...} or [...], not closed on this line, or a value in it with ':', '{' or '[' that needs quotes)"
	}
	return ""
}

// lineOf is line n of data (from 1), without its line break.
func lineOf(data []byte, n int) string {
	for i := 1; i < n; i++ {
		j := bytes.IndexByte(data, '\n')
		if j < 0 {
			return ""
		}
		data = data[j+1:]
	}
	if j := bytes.IndexByte(data, '\n'); j >= 0 {
		data = data[:j]
	}
	return string(data)
}

// aliasAt is the line and column of the first alias *name in data (1, 1
// if there is none to be seen: it is in a quoted string, say).
func aliasAt(data []byte, name string) (line, col int) {
	word := "*" + name
	for i := 0; i < len(data); {
		j := bytes.Index(data[i:], []byte(word))
		if j < 0 {
			break
		}
		at, end := i+j, i+j+len(word)
		before := at == 0 || strings.IndexByte(" \t\n[{,:-", data[at-1]) >= 0
		after := end == len(data) || strings.IndexByte(" \t\r\n,]}", data[end]) >= 0
		start := bytes.LastIndexByte(data[:at], '\n') + 1
		if hash := bytes.IndexByte(data[start:at], '#'); hash >= 0 && (hash == 0 || data[start+hash-1] == ' ' || data[start+hash-1] == '\t') {
			before = false // in a comment (an outside audit: the error went there)
		}
		if before && after {
			line = 1 + bytes.Count(data[:at], []byte("\n"))
			return line, at - (bytes.LastIndexByte(data[:at], '\n') + 1) + 1
		}
		i = at + 1
	}
	return 1, 1
}

// parserProblem says whether yaml.v3's message is one of its parser's (a
// structure that does not close), not its scanner's (a character).
func parserProblem(msg string) bool {
	for _, p := range []string{
		"did not find expected <document start>", "did not find expected node content",
		"did not find expected key", "did not find expected '-' indicator",
		"did not find expected ',' or ']'", "did not find expected ',' or '}'",
		"found duplicate %YAML directive", "found incompatible YAML document",
		"found duplicate %TAG directive", "found undefined tag handle",
	} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// root decodes the document in data; with l, data is its skeleton and the
// sections l cut are decoded a chunk at a time.
func (d *decoder) root(data []byte, l *layout) *Topology {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if l != nil {
			panic(errChunk)
		}
		d.invalidYAML(err, data)
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		d.errorf(&extra, "", "only one YAML document is allowed")
	case err != io.EOF:
		// What follows the first document does not parse (a file whose
		// first line is indented ends its first document at the first
		// line that is not): that is an error too, not text to ignore.
		if l != nil {
			panic(errChunk)
		}
		d.invalidYAML(fmt.Errorf("%w, after a first document that ends before the file does (is the first line indented more than the next?)", err), data)
	}
	n := &root
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	t := &Topology{File: d.file}
	used := map[string]string{}
	d.resolveAliases(n, nil)
	if n.Kind == yaml.MappingNode {
		// Top-level keys x-...: the file's own (anchors of values it uses
		// elsewhere), as in a compose file; not read.
		// And prefix:, when the prefix is given elsewhere (--prefix): not
		// read at all, so its variables need no values.
		kept := n.Content[:0:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if !strings.HasPrefix(key, "x-") && !(d.prefixGiven && key == "prefix") {
				kept = append(kept, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = kept
	}
	if d.vars != nil {
		d.substitute(n, "", d.vars, used)
	}
	// A top-level list: its items, chunk by chunk where the file was cut.
	list := func(item func(n *yaml.Node, p string)) func(k, v *yaml.Node, p string) {
		return func(k, v *yaml.Node, p string) {
			d.body(l, v, p, used, func(n *yaml.Node, base int) {
				d.seqFrom(n, p, base, func(i int, n *yaml.Node, p string) { item(n, p) })
			})
		}
	}
	d.mapping(n, "", map[string]func(k, v *yaml.Node, p string){
		"name":   func(k, v *yaml.Node, p string) { t.Name = d.str(v, p) },
		"prefix": func(k, v *yaml.Node, p string) { t.Prefix = d.str(v, p) },
		"namespaces": func(k, v *yaml.Node, p string) {
			seen := map[string]int{}
			d.body(l, v, p, used, func(n *yaml.Node, _ int) { t.Namespaces = d.namespaces(n, p, seen, t.Namespaces) })
		},
		"bridges":  list(func(n *yaml.Node, p string) { t.Bridges = append(t.Bridges, d.bridge(n, p)) }),
		"links":    list(func(n *yaml.Node, p string) { t.Links = append(t.Links, d.link(n, p)) }),
		"macvlans": list(func(n *yaml.Node, p string) { t.Macvlans = append(t.Macvlans, d.macvlan(n, p)) }),
		"ipvlans":  list(func(n *yaml.Node, p string) { t.Ipvlans = append(t.Ipvlans, d.ipvlan(n, p)) }),
		"vxlans":   list(func(n *yaml.Node, p string) { t.Vxlans = append(t.Vxlans, d.vxlan(n, p)) }),
		"nat":      list(func(n *yaml.Node, p string) { t.NAT = append(t.NAT, d.nat(n, p)) }),
		"checks":   list(func(n *yaml.Node, p string) { t.Checks = append(t.Checks, d.check(n, p)) }),
	}, []string{"name"})
	if len(used) > 0 {
		t.Vars = used
	}
	t.Named = d.named
	return t
}

// body hands each the value of the top-level key path: v itself, or, for
// a section l cut, each chunk's node with the index of its first item.
func (d *decoder) body(l *layout, v *yaml.Node, path string, used map[string]string, each func(n *yaml.Node, base int)) {
	var chunks []chunk
	if l != nil {
		chunks = l.bodies[path]
	}
	if len(chunks) == 0 {
		each(v, 0)
		return
	}
	for i, c := range chunks {
		n := decodeChunk(c, sectionKinds[path])
		if d.vars != nil {
			if n.Kind == yaml.SequenceNode {
				for j, item := range n.Content {
					d.substitute(item, fmt.Sprintf("%s[%d]", path, c.base+j), d.vars, used)
				}
			} else {
				d.substitute(n, path, d.vars, used)
			}
		}
		if i == 0 {
			d.record("", path, n) // where the section's value starts
		}
		each(n, c.base)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// mapping walks a YAML mapping, calling the handler of each known key and
// reporting unknown, duplicate and missing required keys.
func (d *decoder) mapping(n *yaml.Node, path string, keys map[string]func(k, v *yaml.Node, p string), required []string) {
	d.mappingOf(n, path, func(key string) func(k, v *yaml.Node, p string) { return keys[key] },
		func() []string { return slices.Collect(maps.Keys(keys)) }, required)
}

// mappingOf is mapping with the handler of each key from lookup (nil for
// a key not allowed) and the allowed keys, for messages, from names.
func (d *decoder) mappingOf(n *yaml.Node, path string, lookup func(key string) func(k, v *yaml.Node, p string), names func() []string, required []string) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		n = &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, found %s", kindName(n))
		return
	}
	if !d.plainTag(n, path) {
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		if seen[k.Value] {
			d.errorf(k, p, "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		h := lookup(k.Value)
		if h == nil {
			if path == "" {
				d.errorf(k, p, "unknown key %q (allowed: %s; a top-level key that starts with x- is the file's own, not read)", k.Value, allowed(names()))
			} else {
				d.errorf(k, p, "unknown key %q (allowed: %s)", k.Value, allowed(names()))
			}
			continue
		}
		d.record(path, p, v)
		h(k, v, p)
	}
	for _, r := range required {
		if !seen[r] {
			d.errorf(n, path, "missing required key %q", r)
		}
	}
}

// resolveAliases puts in place of each alias (*name) the node its anchor
// (&name) marks, and merges the mappings of a `<<` key into the mapping
// that holds it (keys of its own win, then the first merged), as YAML's
// merge key does: a value is written once and used where the file says.
// An alias of a node that holds it is an error (it would never end).
// Messages about an aliased value are at its anchor.
func (d *decoder) resolveAliases(n *yaml.Node, holders []*yaml.Node) {
	holders = append(holders, n)
	for i, c := range n.Content {
		if c.Kind != yaml.AliasNode {
			d.resolveAliases(c, holders)
			continue
		}
		if slices.Contains(holders, c.Alias) {
			d.errs = append(d.errs, &Error{File: d.file, Pos: pos(c), Msg: fmt.Sprintf("alias *%s is of a value that holds it: it would never end", c.Value)})
			n.Content[i] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: c.Line, Column: c.Column}
			continue
		}
		// A copy for each use: variables are put in place in the nodes,
		// and a `$${` in one use is not to be read again by the next (an
		// outside audit).
		n.Content[i] = copyNode(c.Alias)
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	own := map[string]bool{}
	merges := 0
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Value == "<<" && k.Tag == "!!merge" {
			merges++
			if merges == 2 {
				d.errs = append(d.errs, &Error{File: d.file, Pos: pos(k), Msg: `duplicate key "<<": merge a list of mappings, <<: [*a, *b]`})
			}
		} else {
			own[k.Value] = true
		}
	}
	if merges == 0 {
		return
	}
	var out []*yaml.Node
	var merged []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !(k.Value == "<<" && k.Tag == "!!merge") {
			out = append(out, k, v)
			continue
		}
		from := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			from = v.Content
		}
		for _, m := range from {
			if m.Kind != yaml.MappingNode {
				d.errs = append(d.errs, &Error{File: d.file, Pos: pos(k), Msg: "<< merges mappings (or a list of them), not " + kindName(m)})
				continue
			}
			merged = append(merged, m)
		}
	}
	for _, m := range merged {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if k := m.Content[i]; !own[k.Value] {
				own[k.Value] = true
				out = append(out, k, m.Content[i+1])
			}
		}
	}
	n.Content = out
}

// copyNode is a deep copy of n (its aliases were resolved already).
func copyNode(n *yaml.Node) *yaml.Node {
	c := *n
	if len(n.Content) > 0 {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, x := range n.Content {
			c.Content[i] = copyNode(x)
		}
	}
	return &c
}

// plainTag reports whether a mapping or list has no tag but its own
// (`!!map`, `!!seq`); one tagged otherwise (`a: !!int {}`, a mistake of
// the file, which a YAML decoder into types refuses) is an error.
func (d *decoder) plainTag(n *yaml.Node, path string) bool {
	want := "!!map"
	if n.Kind == yaml.SequenceNode {
		want = "!!seq"
	}
	if n.Tag == "" || n.Tag == want {
		return true
	}
	d.errorf(n, path, "%s tagged %s (a %s's tag is %s, or none)", kindName(n), n.Tag, strings.TrimPrefix(kindName(n), "a "), want)
	return false
}

func allowed(names []string) string {
	sortStrings(names)
	return strings.Join(names, ", ")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.Tag == "!!null" {
		return "nothing"
	}
	return fmt.Sprintf("%q", n.Value)
}

func (d *decoder) seq(n *yaml.Node, path string, each func(i int, n *yaml.Node, p string)) {
	d.seqFrom(n, path, 0, each)
}

// seqFrom is seq for a list whose first item is item base of the file's.
func (d *decoder) seqFrom(n *yaml.Node, path string, base int, each func(i int, n *yaml.Node, p string)) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "expected a list, found %s", kindName(n))
		return
	}
	if !d.plainTag(n, path) {
		return
	}
	for i, c := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, base+i)
		d.record(path, p, c)
		each(base+i, c, p)
	}
}

func (d *decoder) str(n *yaml.Node, path string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.errorf(n, path, "expected a string, found %s", kindName(n))
		d.emptyString(path, n)
		return ""
	}
	if n.Value == "" {
		d.emptyString(path, n)
	}
	return n.Value
}

// emptyString records where a string that came out empty is: present
// asks whether the file has such a key at all.
func (d *decoder) emptyString(path string, n *yaml.Node) {
	if d.want == nil {
		d.pos[path] = pos(n)
	}
}

func (d *decoder) integer(n *yaml.Node, path string) int {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		d.errorf(n, path, "expected an integer, found %s", kindName(n))
		return 0
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if err != nil || v < 0 || v > 1<<32-1 {
		d.errorf(n, path, "integer %s out of range", n.Value)
		return 0
	}
	return int(v)
}

func (d *decoder) boolean(n *yaml.Node, path string) *bool {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		d.errorf(n, path, "expected true or false, found %s", kindName(n))
		return nil
	}
	v := n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
	return &v
}

func (d *decoder) strList(n *yaml.Node, path string) []string {
	var out []string
	d.seq(n, path, func(i int, c *yaml.Node, p string) { out = append(out, d.str(c, p)) })
	if out == nil {
		out = []string{}
	}
	return out
}

// namespaces appends to out the namespaces of the mapping n (all of
// them, or one chunk's; seen holds the names of those before).
func (d *decoder) namespaces(n *yaml.Node, path string, seen map[string]int, out []*Namespace) []*Namespace {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return out
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping of namespace names, found %s", kindName(n))
		return out
	}
	if !d.plainTag(n, path) {
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		if line := seen[k.Value]; line != 0 {
			d.errorf(k, p, "duplicate namespace %q (first at line %d)", k.Value, line)
			continue
		}
		seen[k.Value] = k.Line
		// The name is the end of the path, not a string of its own: one
		// allocation fewer for each namespace of a big file.
		ns := &Namespace{Name: p[len(p)-len(k.Value):], Pos: pos(k), Path: p}
		d.mapping(v, p, map[string]func(k, v *yaml.Node, p string){
			"sysctls": func(k, v *yaml.Node, p string) { ns.Sysctls = d.sysctls(v, p) },
			"routes": func(k, v *yaml.Node, p string) {
				d.seq(v, p, func(i int, n *yaml.Node, p string) { ns.Routes = append(ns.Routes, d.route(n, p)) })
			},
			"ipv6": func(k, v *yaml.Node, p string) { ns.IPv6 = d.boolean(v, p) },
		}, nil)
		out = append(out, ns)
	}
	return out
}

func (d *decoder) sysctls(n *yaml.Node, path string) []*Sysctl {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping of sysctl names to values, found %s", kindName(n))
		return nil
	}
	if !d.plainTag(n, path) {
		return nil
	}
	var out []*Sysctl
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		if seen[k.Value] {
			d.errorf(k, p, "duplicate sysctl %q", k.Value)
			continue
		}
		seen[k.Value] = true
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			d.errorf(v, p, "expected a scalar value, found %s", kindName(v))
			continue
		}
		out = append(out, &Sysctl{Key: k.Value, Value: v.Value, Pos: pos(k), Path: p})
	}
	return out
}

func (d *decoder) route(n *yaml.Node, path string) *Route {
	r := &Route{Pos: pos(n), Path: path}
	d.mapping(n, path, map[string]func(k, v *yaml.Node, p string){
		"to":     func(k, v *yaml.Node, p string) { r.To = d.str(v, p) },
		"via":    func(k, v *yaml.Node, p string) { r.Via = d.str(v, p) },
		"dev":    func(k, v *yaml.Node, p string) { r.Dev = d.str(v, p) },
		"metric": func(k, v *yaml.Node, p string) { r.Metric = d.integer(v, p) },
		"onlink": func(k, v *yaml.Node, p string) {
			if b := d.boolean(v, p); b != nil {
				r.OnLink = *b
			}
		},
	}, []string{"to"})
	return r
}

// ifaceKeys are the keys every interface accepts.
var ifaceKeys = []string{"name", "namespace", "addresses", "mtu", "mac", "up"}

// ifaceKey is the handler of key, one of ifaceKeys, for i; nil for
// another. (One map of closures for each interface was 77 MB of garbage
// for a 100 000-namespace file.)
func (d *decoder) ifaceKey(i *Iface, key string) func(k, v *yaml.Node, p string) {
	switch key {
	case "name":
		return func(k, v *yaml.Node, p string) { i.Name = d.str(v, p) }
	case "namespace":
		return func(k, v *yaml.Node, p string) { i.Namespace = d.str(v, p) }
	case "addresses":
		return func(k, v *yaml.Node, p string) { i.Addresses = d.strList(v, p) }
	case "mtu":
		return func(k, v *yaml.Node, p string) { i.MTU = d.integer(v, p) }
	case "mac":
		return func(k, v *yaml.Node, p string) { i.MAC = d.str(v, p) }
	case "up":
		return func(k, v *yaml.Node, p string) { i.Up = d.boolean(v, p) }
	}
	return nil
}

func (d *decoder) iface(n *yaml.Node, path string, extra map[string]func(k, v *yaml.Node, p string), i *Iface, required ...string) {
	i.Pos, i.Path = pos(n), path
	d.mappingOf(n, path, func(key string) func(k, v *yaml.Node, p string) {
		if h := extra[key]; h != nil {
			return h
		}
		return d.ifaceKey(i, key)
	}, func() []string { return append(slices.Collect(maps.Keys(extra)), ifaceKeys...) }, append([]string{"name"}, required...))
	if i.Namespace == "" {
		i.Namespace = Host
	}
}

func (d *decoder) bridgeKey(i *Iface) func(k, v *yaml.Node, p string) {
	return func(k, v *yaml.Node, p string) { i.Bridge = d.str(v, p) }
}

func (d *decoder) bridge(n *yaml.Node, path string) *Bridge {
	b := &Bridge{}
	d.iface(n, path, map[string]func(k, v *yaml.Node, p string){
		"stp": func(k, v *yaml.Node, p string) { b.STP = d.boolean(v, p) },
	}, &b.Iface)
	return b
}

func (d *decoder) link(n *yaml.Node, path string) *Link {
	l := &Link{Pos: pos(n), Path: path}
	var endpoints *yaml.Node
	var endpointsPath string
	var haveA, haveB bool
	end := func(e *Iface) func(k, v *yaml.Node, p string) {
		return func(k, v *yaml.Node, p string) {
			d.iface(v, p, map[string]func(k, v *yaml.Node, p string){"bridge": d.bridgeKey(e), "impair": d.impairKey(e)}, e)
		}
	}
	d.mapping(n, path, map[string]func(k, v *yaml.Node, p string){
		"endpoints": func(k, v *yaml.Node, p string) { endpoints, endpointsPath = v, p },
		"a":         func(k, v *yaml.Node, p string) { haveA = true; end(&l.A)(k, v, p) },
		"b":         func(k, v *yaml.Node, p string) { haveB = true; end(&l.B)(k, v, p) },
		"mtu":       func(k, v *yaml.Node, p string) { l.MTU = d.integer(v, p) },
		"impair":    func(k, v *yaml.Node, p string) { l.Impair = d.impair(v, p) },
	}, nil)
	switch {
	case endpoints != nil && (haveA || haveB):
		d.errorf(n, path, "use either endpoints or a/b, not both")
	case endpoints != nil:
		if endpoints.Kind == yaml.SequenceNode && !d.plainTag(endpoints, endpointsPath) {
			break
		}
		if endpoints.Kind != yaml.SequenceNode || len(endpoints.Content) != 2 {
			d.errorf(endpoints, endpointsPath, "endpoints needs exactly two \"namespace:ifname\" entries")
			break
		}
		for i, e := range []*Iface{&l.A, &l.B} {
			c := endpoints.Content[i]
			p := fmt.Sprintf("%s[%d]", endpointsPath, i)
			s := d.str(c, p)
			ns, name, ok := strings.Cut(s, ":")
			if !ok || ns == "" || name == "" {
				if s != "" {
					d.errorf(c, p, "%q is not of the form \"namespace:ifname\"", s)
				}
				continue
			}
			*e = Iface{Name: name, Namespace: ns, Pos: pos(c), Path: p}
		}
	case haveA != haveB:
		d.errorf(n, path, "a link needs both ends: a and b")
	case !haveA:
		d.errorf(n, path, "a link needs endpoints, or a and b")
	}
	for _, e := range []*Iface{&l.A, &l.B} {
		// The ends take the link's mtu:, unless it is out of range:
		// that is the link's problem, reported once, at its mtu: (an
		// outside audit saw it three times, two at ends without one).
		if e.MTU == 0 && l.MTU >= 68 && l.MTU <= 65535 {
			e.MTU = l.MTU
		}
		if e.Impair == nil {
			e.Impair = l.Impair
		}
	}
	// The link's path is the start of its a end's ("links[7]" of
	// "links[7].a"): one string fewer for each link of a big file.
	if strings.HasPrefix(l.A.Path, path) {
		l.Path = l.A.Path[:len(path)]
	}
	return l
}

func (d *decoder) impairKey(i *Iface) func(k, v *yaml.Node, p string) {
	return func(k, v *yaml.Node, p string) { i.Impair = d.impair(v, p) }
}

func (d *decoder) parentKey(parent *string) func(k, v *yaml.Node, p string) {
	return func(k, v *yaml.Node, p string) { *parent = d.str(v, p) }
}

func (d *decoder) splitParent(n *yaml.Node, path, parent string) (ns, name string) {
	if parent == "" {
		return "", ""
	}
	ns, name, ok := strings.Cut(parent, ":")
	if !ok {
		// A bare interface name means the host namespace.
		return Host, parent
	}
	if ns == "" || name == "" {
		d.errorf(n, join(path, "parent"), "%q is not of the form \"namespace:ifname\"", parent)
	}
	return ns, name
}

func (d *decoder) macvlan(n *yaml.Node, path string) *Macvlan {
	m := &Macvlan{}
	d.iface(n, path, map[string]func(k, v *yaml.Node, p string){
		"parent": d.parentKey(&m.Parent),
		"mode":   func(k, v *yaml.Node, p string) { m.Mode = d.str(v, p) },
		"impair": d.impairKey(&m.Iface),
	}, &m.Iface, "parent")
	m.ParentNS, m.ParentName = d.splitParent(n, path, m.Parent)
	if m.Mode == "" {
		m.Mode = "bridge"
	}
	return m
}

func (d *decoder) ipvlan(n *yaml.Node, path string) *Ipvlan {
	m := &Ipvlan{}
	d.iface(n, path, map[string]func(k, v *yaml.Node, p string){
		"parent": d.parentKey(&m.Parent),
		"mode":   func(k, v *yaml.Node, p string) { m.Mode = d.str(v, p) },
		"flag":   func(k, v *yaml.Node, p string) { m.Flag = d.str(v, p) },
		"impair": d.impairKey(&m.Iface),
	}, &m.Iface, "parent")
	m.ParentNS, m.ParentName = d.splitParent(n, path, m.Parent)
	if m.Mode == "" {
		m.Mode = "l2"
	}
	if m.Flag == "" {
		m.Flag = "bridge"
	}
	return m
}

func (d *decoder) vxlan(n *yaml.Node, path string) *Vxlan {
	v := &Vxlan{}
	d.iface(n, path, map[string]func(k, val *yaml.Node, p string){
		"vni":    func(k, val *yaml.Node, p string) { v.VNI = d.integer(val, p) },
		"remote": func(k, val *yaml.Node, p string) { v.Remote = d.str(val, p) },
		"group":  func(k, val *yaml.Node, p string) { v.Group = d.str(val, p) },
		"local":  func(k, val *yaml.Node, p string) { v.Local = d.str(val, p) },
		"dev":    func(k, val *yaml.Node, p string) { v.Dev = d.str(val, p) },
		"port":   func(k, val *yaml.Node, p string) { v.Port = d.integer(val, p) },
		"bridge": d.bridgeKey(&v.Iface),
		"impair": d.impairKey(&v.Iface),
	}, &v.Iface, "vni")
	if v.Port == 0 {
		v.Port = 4789
	}
	return v
}

func (d *decoder) nat(n *yaml.Node, path string) *NAT {
	r := &NAT{Pos: pos(n), Path: path}
	d.mapping(n, path, map[string]func(k, v *yaml.Node, p string){
		"namespace": func(k, v *yaml.Node, p string) { r.Namespace = d.str(v, p) },
		"masquerade": func(k, v *yaml.Node, p string) {
			m := &Masquerade{}
			r.Masquerade = m
			d.mapping(v, p, map[string]func(k, v *yaml.Node, p string){
				"source":  func(k, v *yaml.Node, p string) { m.Source = d.str(v, p) },
				"out":     func(k, v *yaml.Node, p string) { m.Out = d.str(v, p) },
				"not_out": func(k, v *yaml.Node, p string) { m.NotOut = d.str(v, p) },
			}, []string{"source"})
		},
		"snat": func(k, v *yaml.Node, p string) {
			s := &SNAT{}
			r.SNAT = s
			d.mapping(v, p, map[string]func(k, v *yaml.Node, p string){
				"source":  func(k, v *yaml.Node, p string) { s.Source = d.str(v, p) },
				"to":      func(k, v *yaml.Node, p string) { s.To = d.str(v, p) },
				"out":     func(k, v *yaml.Node, p string) { s.Out = d.str(v, p) },
				"not_out": func(k, v *yaml.Node, p string) { s.NotOut = d.str(v, p) },
			}, []string{"source", "to"})
		},
		"port_forward": func(k, v *yaml.Node, p string) {
			f := &PortForward{}
			r.PortForward = f
			d.mapping(v, p, map[string]func(k, v *yaml.Node, p string){
				"proto": func(k, v *yaml.Node, p string) { f.Proto = d.str(v, p) },
				"port":  func(k, v *yaml.Node, p string) { f.Port = d.integer(v, p) },
				"to":    func(k, v *yaml.Node, p string) { f.To = d.str(v, p) },
				"in":    func(k, v *yaml.Node, p string) { f.In = d.str(v, p) },
			}, []string{"proto", "port", "to"})
		},
	}, nil)
	if r.Namespace == "" {
		r.Namespace = Host
	}
	kinds := 0
	for _, set := range []bool{r.Masquerade != nil, r.SNAT != nil, r.PortForward != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		d.errorf(n, path, "a nat entry needs exactly one of masquerade, snat, port_forward")
	}
	return r
}
