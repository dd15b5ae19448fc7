package topology

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// decodeBoth decodes data whole and in chunks (of one item each, and of
// the default size) and reports how they differ, if they do, and whether
// the file could be cut at all.
func decodeBoth(t testing.TB, data []byte) (diff string, wasCut bool) {
	vars := VarsOnly(map[string]string{"X": "xval", "MTU": "1400"})
	run := func(target int, whole bool) string {
		saved, savedWhole := chunkTarget, decodeWhole
		chunkTarget, decodeWhole = target, whole
		defer func() { chunkTarget, decodeWhole = saved, savedWhole }()
		top, err := ParseWith("f.yaml", data, vars)
		b, jerr := json.Marshal(map[string]any{"top": top, "err": err})
		if jerr != nil {
			t.Fatal(jerr)
		}
		return string(b)
	}
	whole := run(chunkTarget, true)
	for _, target := range []int{1, 100, chunkTarget} {
		if got := run(target, false); got != whole {
			return fmt.Sprintf("chunks of %d bytes:\n got %s\nwant %s", target, got, whole), cut(data) != nil
		}
	}
	return "", cut(data) != nil
}

// corpus is the examples and test files, each also mutated at random:
// lines dropped, repeated, moved, re-indented, given other values.
func corpus(t testing.TB, mutations int) [][]byte {
	var files []string
	for _, glob := range []string{"testdata/*.yaml", "../examples/*.yaml", "../examples/fixture/*.yaml"} {
		f, _ := filepath.Glob(glob)
		files = append(files, f...)
	}
	var texts []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(b))
	}
	texts = append(texts, generated(40, 1))
	out := make([][]byte, 0, len(texts)+mutations)
	for _, s := range texts {
		out = append(out, []byte(s))
	}
	values := []string{`""`, "[]", "{}", "~", strings.Repeat("x", 20), "10.0.0.1/24", "default", "host", "n1",
		"1500", "-1", "true", `"a:b"`, "fd00::1/64", "eth0", "99999999999", "lo", `"${X}"`, "${MTU}", "- a", "[a,", "'q'"}
	r := rand.New(rand.NewSource(7))
	for k := 0; k < mutations; k++ {
		lines := strings.Split(texts[r.Intn(len(texts))], "\n")
		for m := 1 + r.Intn(3); m > 0 && len(lines) > 0; m-- {
			i := r.Intn(len(lines))
			l := lines[i]
			switch op := r.Float64(); {
			case op < 0.2:
				lines = append(lines[:i], lines[i+1:]...)
			case op < 0.4:
				lines = append(lines[:i+1], lines[i:]...)
			case op < 0.75 && strings.Contains(l, ":"):
				key, _, _ := strings.Cut(l, ":")
				lines[i] = key + ": " + values[r.Intn(len(values))]
			case op < 0.85:
				j := r.Intn(len(lines))
				lines = append(lines[:j+1], lines[j:]...)
				lines[j] = l
			default:
				lines[i] = strings.Repeat(" ", 1+r.Intn(2)) + l
			}
		}
		out = append(out, []byte(strings.Join(lines, "\n")))
	}
	return out
}

// generated is a lab of n namespaces, each with a veth to the host and,
// one in every, a route.
func generated(n, every int) string {
	var b strings.Builder
	b.WriteString("name: g\n# the namespaces\nnamespaces:\n")
	for i := 0; i < n; i++ {
		if i%every == 0 {
			fmt.Fprintf(&b, "  n%d:\n    routes:\n      - to: default\n        via: 10.%d.%d.1\n", i, i>>8, i&255)
		} else {
			fmt.Fprintf(&b, "  n%d: {}\n", i)
		}
	}
	b.WriteString("links:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - a: {namespace: n%d, name: eth0, addresses: [10.%d.%d.2/24]}\n    b: {namespace: host, name: v%d}\n", i, i>>8, i&255, i)
	}
	b.WriteString("bridges:\n- name: br0\n  mtu: ${MTU}\n  addresses: [\"10.255.0.1/16\"]\n")
	return b.String()
}

// TestChunkedMatchesWhole: decoding a file in chunks gives the values,
// errors, warnings and positions decoding it whole gives, for the
// examples, the test files and 1500 mutations of them; and most of them
// are cut (else the test would prove nothing).
func TestChunkedMatchesWhole(t *testing.T) {
	files := corpus(t, 1500)
	cutCount := 0
	for i, data := range files {
		diff, wasCut := decodeBoth(t, data)
		if diff != "" {
			t.Fatalf("file %d:\n%s\n%s", i, data, diff)
		}
		if wasCut {
			cutCount++
		}
	}
	if cutCount < len(files)/2 {
		t.Fatalf("only %d of %d files were cut: the chunked decoding is not what is tested", cutCount, len(files))
	}
	t.Logf("%d of %d files cut", cutCount, len(files))
}

// TestBigFileIsCut: a generated lab is cut into many chunks, with every
// item once, in order.
func TestBigFileIsCut(t *testing.T) {
	data := []byte(generated(3000, 7))
	saved := chunkTarget
	chunkTarget = 4096
	defer func() { chunkTarget = saved }()
	l := cut(data)
	if l == nil {
		t.Fatal("a plain generated file was not cut")
	}
	for _, section := range []string{"namespaces", "links"} {
		if len(l.bodies[section]) < 3 {
			t.Fatalf("%s: %d chunks, want several", section, len(l.bodies[section]))
		}
	}
	links := l.bodies["links"]
	for i := 1; i < len(links); i++ {
		prev := links[i-1]
		if links[i].base <= prev.base || links[i].line <= prev.line {
			t.Fatalf("chunk %d starts at item %d line %d, after item %d line %d", i, links[i].base, links[i].line, prev.base, prev.line)
		}
	}
	top, err := ParseWith("g.yaml", data, VarsOnly(map[string]string{"MTU": "1400"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Namespaces) != 3000 || len(top.Links) != 3000 || top.Links[2999].A.Namespace != "n2999" || top.Links[2999].Path != "links[2999]" {
		t.Fatalf("decoded %d namespaces, %d links, last %+v", len(top.Namespaces), len(top.Links), top.Links[len(top.Links)-1])
	}
	if want := strings.Count(string(data[:strings.Index(string(data), "n2999: {}")]), "\n") + 1; int(top.Namespaces[2999].Pos.Line) != want {
		t.Fatalf("n2999 is at line %d, want %d", top.Namespaces[2999].Pos.Line, want)
	}
}

// TestNotCut: what the cutter does not follow is decoded whole.
func TestNotCut(t *testing.T) {
	for _, s := range []string{
		"name: a\nnamespaces:\n  n1: &x {}\n  n2: *x\n",
		"---\nname: a\n",
		"name: a\nchecks:\n  - name: c\n    run: |\n      echo hi\n",
		"name: a\nnamespaces:\n\tn1: {}\n",
		"name: a\nlinks:\n  - endpoints: [\"n1:a\",\n  - b\n",
		"name: a\nname: b\n",
		"name: a\nnamespaces:\n  n1: {}\n n2: {}\n",
		"name: a\nlinks:\n  - a: \"x\n    y\"\n",
	} {
		if cut([]byte(s)) != nil {
			t.Errorf("cut, but should be decoded whole:\n%s", s)
		}
		if diff, _ := decodeBoth(t, []byte(s)); diff != "" {
			t.Errorf("%s\n%s", s, diff)
		}
	}
}

// FuzzChunkedMatchesWhole: for any input, chunked and whole decoding
// agree.
func FuzzChunkedMatchesWhole(f *testing.F) {
	for _, data := range corpus(f, 50) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if diff, _ := decodeBoth(t, data); diff != "" {
			t.Fatalf("%q\n%s", data, diff)
		}
	})
}

// TestChunkedAuditCases: what an outside audit of the first version found
// decoding differently in chunks (or cut where it should not be), each
// now the same both ways.
func TestChunkedAuditCases(t *testing.T) {
	for name, s := range map[string]string{
		// A quote inside a plain scalar taken for a quoted string hid a
		// comment's # and a bracket: the items were miscounted.
		"quote hides a bracket":      "name: a\nlinks:\n  - x 'a #' [\n  - b\n  - y 'c #' ]\n  - d\n",
		"quote hides a comment":      "name: a\nlinks:\n  - x 'y: ' # \n  - b ' #' #" + strings.Repeat("p", 100) + "\n  - d\n",
		"quote hides a block scalar": "name: a\nlinks:\n  - x 'y: | #'\n      [\n  - b\n      ]\n  - d\n",
		"quote in a namespace value": "name: a\nnamespaces:\n  n1: x 'a #' [\n  n2: {}\n  n3: y 'c #' ]\n  n4: {}\n",
		// yaml.v3 breaks lines at U+2028, U+2029 and U+0085 too.
		"line separator":      "# \u2028\nname: a\nnamespaces:\n  n1:\n    bogus: 1\n",
		"next line":           "# \u0085\nname: a\nnamespaces:\n  n1:\n    bogus: 1\n",
		"paragraph separator": "name: a\nnamespaces:\n  n1: {} # \u2029\n  n2:\n    bogus: 1\n",
		// An indented first line ends the first document early.
		"indented first line":       " checks:\nchecks:\n-",
		"indented, then a section":  " name: a\n links:\nlinks:\n  - endpoints: [\"n1:e0\", \"n2:e0\"]\n",
		"indented, then bad UTF-8":  " a: 1\nname: x\nlinks:\n  - \xff\n",
		"indented, then a control":  " a: 1\nname: x\nnamespaces:\n  n1: \x7f\n",
		"fuzz: indented, then flow": " 000: 0000000\nA00000: 0000\nnamespaces:\n 0000000000000000000000000000000000000000000000000\x8c0000000000000{0000000000000000000000000000: \"\"}",
		"fuzz: indented, then nat":  " 0:\nnat:\n- #\x1e0",
		// yaml.v3's nesting limit counts the document's root.
		"nesting at the limit": "name: a\nlinks:\n  - " + strings.Repeat("- ", 9999) + "x\n  - q\n",
		// The second audit: text the cutter read otherwise than yaml.v3
		// (a continuation line starting with [, { or a quote; a # right
		// after a quote or a bracket; {"key":'value'}; a ": " in a
		// comment), and the chunk then decoded to fewer keys, silently.
		"continuation [":          "name: a\nnamespaces:\n  n1:\n    sysctls:\n      net.a: x\n        [\nprefix: p\nbridges:\n  - name: 'br0'#]\n",
		"continuation {":          "name: a\nnamespaces:\n  n1:\n    sysctls:\n      net.a: x\n        {\nprefix: p\nbridges:\n  - name: br0\n    mac: y }\n",
		"continuation quote":      "name: a\nnamespaces:\n  n1:\n    sysctls:\n      net.a: x\n        'y #' : [\nprefix: p\n  ]\n",
		"continuation in links":   "links:\n  - a\n    [\nname: b\n    ]\n",
		"# after a quote":         "name: a\nnamespaces:\n  n1:\n    sysctls:\n      net.a: 'x'#: [\nprefix: p\nbridges:\n  - name: 'br0'#]\n",
		"# after }":               "name: a\nnamespaces:\n  n1: {}#: [\nprefix: p\nbridges:\n  - name: br0 ]\n",
		"json-like single quotes": "name: a\nnamespaces:\n  n1:\n    sysctls: {\"net.a\":'1 #'}\nprefix: p\nbridges:\n  - name: br0\n    mac: x }\n",
		"json-like double quotes": "name: a\nnamespaces:\n  n1:\n    sysctls: {\"net.a\":\"1 #\"}\nprefix: p\nbridges:\n  - name: br0\n    mac: x }\n",
		"a key line's comment":    "name: a\nnamespaces:\n  n0: {}\n  n1 #: x\n  n2: {}\n",
		// Still cut, still the same.
		"plain scalars with quotes and brackets": "name: a\nlinks:\n  - a: {namespace: n1, name: don't}\n    b: {namespace: \"n2\", name: 'it''s'}\n  - mtu: ${MTU}\n",
	} {
		if diff, _ := decodeBoth(t, []byte(s)); diff != "" {
			t.Errorf("%s: %q\n%s", name, s, diff)
		}
	}
	if cut([]byte("name: a\nlinks:\n  - mtu: ${MTU}\n    a: {namespace: n1, name: 'x'}\n    b:\n      name: don't\n")) == nil {
		t.Error("plain scalars with ${...} and a quote inside are not cut")
	}
	// What follows an early end of the first document is an error, not
	// text to ignore.
	if _, err := ParseWith("f.yaml", []byte(" a: 1\nname: x\n"), nil); err == nil || !strings.Contains(err.Error(), "first document that ends before the file does") {
		t.Errorf("an indented first line: %v", err)
	}
}

// TestPositionUnderAVariableKey: a problem under a namespace whose name is
// a variable is placed at its value, as under a literal name.
func TestPositionUnderAVariableKey(t *testing.T) {
	vars := VarsOnly(map[string]string{"X": "xval"})
	_, withVar := ParseWith("f.yaml", []byte("name: a\nnamespaces:\n  ${X}:\n    routes:\n      - to: notanip\n"), vars)
	_, literal := ParseWith("f.yaml", []byte("name: a\nnamespaces:\n  xval:\n    routes:\n      - to: notanip\n"), vars)
	if withVar == nil || literal == nil {
		t.Fatal("both files have a bad route")
	}
	a, b := withVar.(ErrorList)[0], literal.(ErrorList)[0]
	if a.Pos != b.Pos || a.Path != b.Path {
		t.Fatalf("under ${X}: %v; under xval: %v", a, b)
	}
}
