package topology

import (
	"bytes"
	"errors"
	"io"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// A big file is decoded a piece at a time. yaml.v3 builds a node of about
// 25 times the size of the text it holds; holding the whole file's tree
// at once was most of the memory of validating a 100 000-namespace lab.
// So the long top-level sections (namespaces, links, and the other lists)
// are cut, where the file is plain block YAML, into chunks of whole items,
// each decoded on its own, turned into the topology's values, and
// dropped. The rest of the file (the skeleton: the top-level keys, with
// the cut sections' lines left blank so that every line keeps its number)
// is decoded as before.
//
// Cutting is only done where it cannot change what the file means: no
// anchors, aliases, merge keys, tags, block scalars, directives or document markers,
// no tabs, no quoted string or flow collection that runs past an item's
// end, no duplicate top-level key, and every line of a section indented
// as its items are. Anything else, and any chunk yaml.v3 refuses, falls
// back to decoding the whole file at once (which also gives the error
// messages for YAML that does not parse). FuzzChunkedMatchesWhole holds
// the two ways to the same values, errors and positions.

// chunkTarget is about how many bytes of text a chunk holds; decodeWhole
// turns cutting off (tests compare the two).
var (
	chunkTarget = 64 << 10
	decodeWhole = false
)

// chunk is whole items of one section, as the file has them.
type chunk struct {
	text []byte // a slice of the file
	line int    // the file's line number of its first line
	base int    // the index of its first item in its list
}

// layout is the file cut for chunked decoding.
type layout struct {
	skeleton []byte
	bodies   map[string][]chunk
}

// sectionKinds are the top-level sections that may be cut, with the kind
// of block their value is.
var sectionKinds = map[string]yaml.Kind{
	"namespaces": yaml.MappingNode,
	"bridges":    yaml.SequenceNode,
	"links":      yaml.SequenceNode,
	"macvlans":   yaml.SequenceNode,
	"ipvlans":    yaml.SequenceNode,
	"vxlans":     yaml.SequenceNode,
	"nat":        yaml.SequenceNode,
	"checks":     yaml.SequenceNode,
}

// line is one line of the file, as the cutter sees it.
// (int32: a file is at most MaxFileSize; a line is 16 bytes, and a
// 100 000-namespace file has 300 000 of them.)
type line struct {
	start, end int32 // offsets of its text, without the newline
	indent     int32
	depth      int16 // open flow collections ([ and {) when it starts
	content    bool  // not blank and not only a comment
}

// lexLines splits data into lines, or reports that the file uses YAML
// the cutter does not follow.
func lexLines(data []byte) ([]line, bool) {
	if len(data) >= 1<<31 || !plainText(data) {
		return nil, false
	}
	lines := make([]line, 0, bytes.Count(data, []byte("\n"))+1)
	depth, expectValue := 0, true
	for start := 0; start < len(data); {
		end := bytes.IndexByte(data[start:], '\n')
		next := start + end + 1
		if end < 0 {
			end, next = len(data)-start, len(data)
		}
		end += start
		l := line{start: int32(start), end: int32(end), depth: int16(depth)}
		text := data[start:end]
		for int(l.indent) < len(text) && text[l.indent] == ' ' {
			l.indent++
		}
		if l.indent > 1000 || bytes.HasPrefix(text, []byte("---")) || bytes.HasPrefix(text, []byte("...")) {
			return nil, false
		}
		var ok, endValue bool
		if depth, l.content, endValue, ok = lexLine(text, int(l.indent), depth, expectValue); !ok {
			return nil, false
		}
		if l.content {
			expectValue = endValue
		}
		lines = append(lines, l)
		start = next
	}
	if depth != 0 {
		return nil, false
	}
	return lines, true
}

// lexLine follows one line from its first character after the
// indentation, in flow collections depth deep: the depth at its end,
// whether it has content (not only a comment), and !ok for what the
// cutter does not follow. A quote, [ or { opens something only where a
// value starts (after the indentation, "- ", ": ", or, in a flow
// collection, [, { and ,); anywhere else outside a flow collection it is
// a character of a plain scalar (don't, a[0], ${MTU}), as for yaml.v3.
// (The audit of the first version: a quote inside a plain scalar taken
// for the start of a quoted string hid a comment's # and a bracket, and
// the items were miscounted.)
//
// expectValue says whether the line before left a value to come (it ended
// with ":", "- ", or inside a flow collection): if not, a line starting
// with a quote, [ or { may be the rest of a plain scalar, and is not
// followed. endValue is the same for this line's end.
func lexLine(text []byte, from, depth int, expectValue bool) (newDepth int, content, endValue, ok bool) {
	atValue, items := true, 0
	if from < len(text) && bytes.IndexByte([]byte("\"'[{"), text[from]) >= 0 && !expectValue && depth == 0 {
		return 0, false, false, false
	}
	for i := from; i < len(text); i++ {
		c := text[i]
		if c == ' ' {
			continue
		}
		if c == '#' {
			if i == 0 || text[i-1] == ' ' {
				break // a comment, to the end of the line
			}
			if bytes.IndexByte([]byte("\"'[]{},"), text[i-1]) >= 0 {
				return 0, false, false, false // yaml.v3 takes it for a comment too
			}
		}
		content = true
		spaceAfter := i+1 == len(text) || text[i+1] == ' '
		switch c {
		case '"', '\'':
			if !atValue {
				if depth > 0 {
					return 0, false, false, false
				}
				continue // inside a plain scalar (don't): a character like any
			}
			j := i + 1
			for ; j < len(text); j++ {
				if c == '"' && text[j] == '\\' {
					j++
				} else if text[j] == c {
					if c == '\'' && j+1 < len(text) && text[j+1] == '\'' {
						j++ // '' is a quote inside single quotes
						continue
					}
					break
				}
			}
			if j >= len(text) {
				return 0, false, false, false // a quoted string that goes on to the next line
			}
			i, atValue = j, false
			if depth > 0 && j+1 < len(text) && text[j+1] == ':' {
				i, atValue = j+1, true // {"key":value}
			}
		case '[', '{':
			switch {
			case !atValue && depth == 0:
				continue // inside a plain scalar (${MTU}, a[0])
			case !atValue || depth >= 1000:
				return 0, false, false, false
			}
			depth++
		case ']', '}':
			if depth == 0 {
				atValue = false // inside a plain scalar
				continue
			}
			depth--
			atValue = false
		case ',':
			atValue = depth > 0
		case ':':
			atValue = spaceAfter || depth > 0 && i+1 < len(text) && bytes.IndexByte([]byte(",]}"), text[i+1]) >= 0
		case '-':
			if atValue && spaceAfter && depth == 0 {
				if items++; items > 1000 {
					return 0, false, false, false // nesting past yaml.v3's limit is its to refuse
				}
				continue
			}
			atValue = false
		case '&', '*', '!', '|', '>', '%', '@', '`', '?':
			return 0, false, false, false
		default:
			atValue = false
		}
	}
	return depth, content, atValue || depth > 0, true
}

// plainText: no byte order mark, tab, carriage return or other control
// character, valid UTF-8, and no line break but \n (yaml.v3 also breaks
// lines at U+0085, U+2028 and U+2029, which would shift line numbers)
// and nothing yaml.v3 refuses as unprintable: a file with any of these is
// decoded whole, and yaml.v3 reports what it makes of them.
func plainText(data []byte) bool {
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c < 0x80 {
			if c < 0x20 && c != '\n' || c == 0x7f {
				return false
			}
			continue
		}
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError || r < 0xa0 || r == 0x2028 || r == 0x2029 || r == 0xfeff ||
			0xd800 <= r && r < 0xe000 || r == 0xfffe || r == 0xffff {
			return false
		}
		i += size - 1
	}
	return true
}

// topKey is the key of a top-level line "key:" or "key: value", and
// whether a value follows on the line.
func topKey(text []byte) (key string, inline, ok bool) {
	i := 0
	for i < len(text) && (text[i] == '_' || text[i] == '-' || 'a' <= text[i] && text[i] <= 'z' ||
		'A' <= text[i] && text[i] <= 'Z' || i > 0 && '0' <= text[i] && text[i] <= '9') {
		i++
	}
	if i == 0 || text[0] == '-' || i == len(text) || text[i] != ':' {
		return "", false, false
	}
	rest := text[i+1:]
	if len(rest) > 0 && rest[0] != ' ' {
		return "", false, false
	}
	rest = bytes.TrimLeft(rest, " ")
	return string(text[:i]), len(rest) > 0 && rest[0] != '#', true
}

// isItem: text (a line without its indentation) starts an item of a
// block list: "- ..." or a lone "-".
func isItem(text []byte) bool {
	return len(text) > 0 && text[0] == '-' && (len(text) == 1 || text[1] == ' ')
}

// isKeyLine: text starts an entry of a block mapping with a plain key.
func isKeyLine(text []byte) bool {
	if len(text) == 0 || bytes.IndexByte([]byte("-\"'[{:,#"), text[0]) >= 0 {
		return false
	}
	if c := bytes.Index(text, []byte(" #")); c >= 0 {
		text = text[:c] // a ": " in a comment makes no key
	}
	i := bytes.IndexByte(text, ':')
	return i > 0 && (i == len(text)-1 || text[i+1] == ' ')
}

// cut makes the layout of data, or nil when the file is to be decoded
// whole.
func cut(data []byte) *layout {
	if decodeWhole || bytes.Contains(data, []byte("<<")) {
		// A merge key (<<:) is resolved on the whole tree: an outside
		// audit saw one without an anchor refused as an unknown key.
		return nil
	}
	lines, ok := lexLines(data)
	if !ok {
		return nil
	}
	l := &layout{bodies: map[string][]chunk{}}
	seen := map[string]bool{}
	var skel bytes.Buffer
	skel.Grow(len(lines))
	for i := 0; i < len(lines); {
		ln := lines[i]
		text := data[ln.start:ln.end]
		if ln.content && len(seen) == 0 && (ln.indent > 0 || ln.depth > 0) {
			// An indented first line: yaml.v3 ends the document where a
			// line at column 0 follows, which the cutter does not follow.
			return nil
		}
		if !ln.content || ln.indent > 0 || ln.depth > 0 {
			// Not a top-level key: a comment, or the rest of an inline
			// value (the skeleton's decoder judges it).
			skel.Write(text)
			skel.WriteByte('\n')
			i++
			continue
		}
		key, inline, ok := topKey(text)
		if !ok || seen[key] {
			return nil
		}
		seen[key] = true
		skel.Write(text)
		skel.WriteByte('\n')
		i++
		// The section's lines: up to the next top-level key.
		j := i
		for j < len(lines) && !(lines[j].content && lines[j].indent == 0 && lines[j].depth == 0 && !isItem(data[lines[j].start:lines[j].end])) {
			j++
		}
		kind, known := sectionKinds[key]
		var chunks []chunk
		if known && !inline {
			chunks, ok = cutBody(data, lines[i:j], kind, i+1)
			if !ok {
				return nil
			}
		}
		if len(chunks) == 0 {
			for _, b := range lines[i:j] {
				skel.Write(data[b.start:b.end])
				skel.WriteByte('\n')
			}
		} else {
			l.bodies[key] = chunks
			for range lines[i:j] {
				skel.WriteByte('\n')
			}
		}
		i = j
	}
	l.skeleton = skel.Bytes()
	return l
}

// cutBody cuts a section's lines into chunks of whole items: nil with ok
// when the lines are not a block of that kind (the skeleton keeps them,
// and its decoder reports what they are), !ok when they are one the
// cutter cannot follow.
func cutBody(data []byte, lines []line, kind yaml.Kind, lineNo int) ([]chunk, bool) {
	first := -1
	for k, ln := range lines {
		if ln.content {
			first = k
			break
		}
	}
	if first < 0 {
		return nil, true
	}
	indent := lines[first].indent
	if isItem(data[lines[first].start+indent:lines[first].end]) != (kind == yaml.SequenceNode) {
		return nil, true // not the kind of block this section is
	}
	var chunks []chunk
	cur := chunk{line: lineNo}
	curStart, items, curItems := lines[0].start, 0, 0
	for k, ln := range lines {
		if !ln.content || ln.depth > 0 || ln.indent > indent {
			continue
		}
		if ln.indent < indent {
			return nil, false
		}
		text := data[ln.start+ln.indent : ln.end]
		if kind == yaml.SequenceNode && !isItem(text) || kind == yaml.MappingNode && !isKeyLine(text) {
			return nil, false
		}
		if curItems > 0 && int(ln.start-curStart) >= chunkTarget {
			cur.text = data[curStart:ln.start]
			chunks = append(chunks, cur)
			cur = chunk{line: lineNo + k, base: items}
			curStart, curItems = ln.start, 0
		}
		items++
		curItems++
	}
	end := int(lines[len(lines)-1].end)
	if end < len(data) {
		end++ // its newline
	}
	cur.text = data[curStart:end]
	chunks = append(chunks, cur)
	return chunks, true
}

// errChunk stops a chunked decoding: a chunk did not parse on its own.
var errChunk = errors.New("chunk does not parse")

// decodeChunk parses c into its node, of the kind the section's value
// is, with the file's line numbers. Anything else stops the chunked
// decoding: a chunk that does not parse, that parses to something other
// than the section's list or mapping, or whose text yaml.v3 takes for
// more than one document (a line it reads at column 0: the first
// document ends there, silently). These checks, not the cutter's reading
// of the text, are what keep the chunked decoding the same as the whole:
// a second outside audit found text where the cutter's reading and
// yaml.v3's differ (a continuation line starting with [, a # right
// after a quote), and in each the chunk then failed one of them.
func decodeChunk(c chunk, kind yaml.Kind) *yaml.Node {
	var doc, extra yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(c.text))
	if err := dec.Decode(&doc); err != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != kind {
		panic(errChunk)
	}
	if err := dec.Decode(&extra); err != io.EOF {
		panic(errChunk)
	}
	n := doc.Content[0]
	shiftLines(n, c.line-1)
	return n
}

func shiftLines(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		shiftLines(c, by)
	}
}
