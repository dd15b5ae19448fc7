package topology

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a topology file, with the place it was found.
type Error struct {
	File string `json:"file"`
	Pos
	Path string `json:"path"`
	Msg  string `json:"message"`
}

func (e *Error) Error() string {
	path := e.Path
	if path == "" {
		path = "(document)"
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", e.File, e.Line, e.Col, path, e.Msg)
}

// ErrorList is every problem found in one file, sorted by position.
type ErrorList []*Error

func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

func (l ErrorList) sort() {
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].Line != l[j].Line {
			return l[i].Line < l[j].Line
		}
		if l[i].Col != l[j].Col {
			return l[i].Col < l[j].Col
		}
		return l[i].Msg < l[j].Msg
	})
}
