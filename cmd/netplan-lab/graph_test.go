package main

import (
	"encoding/xml"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/awalterschulze/gographviz"
)

// TestGraphFormats draws every example in the three formats: the dot
// parses (with a parser of its own, not ours), the SVG is well-formed XML
// with a box per namespace, the Mermaid has a subgraph per namespace.
func TestGraphFormats(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			code, dot, errOut := runCLI("graph", "-f", "dot", f)
			if code != 0 {
				t.Fatalf("graph -f dot: %d %s", code, errOut)
			}
			ast, err := gographviz.ParseString(dot)
			if err != nil {
				t.Fatalf("dot does not parse: %v\n%s", err, dot)
			}
			g := gographviz.NewGraph()
			if err := gographviz.Analyse(ast, g); err != nil {
				t.Fatalf("dot: %v", err)
			}
			if len(g.Nodes.Nodes) == 0 {
				t.Fatalf("no nodes in\n%s", dot)
			}
			code, svg, errOut := runCLI("graph", "-f", "svg", f)
			if code != 0 {
				t.Fatalf("graph -f svg: %d %s", code, errOut)
			}
			dec := xml.NewDecoder(strings.NewReader(svg))
			boxes := 0
			for {
				tok, err := dec.Token()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("svg is not well-formed: %v", err)
				}
				if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "g" {
					boxes++
				}
			}
			code, mm, errOut := runCLI("graph", "-f", "mermaid", f)
			if code != 0 || !strings.HasPrefix(mm, "flowchart LR\n") {
				t.Fatalf("graph -f mermaid: %d %s\n%s", code, errOut, mm)
			}
			if subs := strings.Count(mm, "  subgraph "); subs != boxes || boxes == 0 {
				t.Fatalf("%d namespace boxes in the svg, %d subgraphs in mermaid", boxes, subs)
			}
		})
	}
	if code, _, errOut := runCLI("graph", "-f", "png", files[0]); code != 1 || !strings.Contains(errOut, "-f must be dot, mermaid or svg") {
		t.Fatalf("-f png: %d %s", code, errOut)
	}
}
