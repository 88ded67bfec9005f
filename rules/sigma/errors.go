package sigma

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// Pos is a position in a rule file (1-based line and column; 0 when unknown).
type Pos struct {
	Line, Col int
}

func posOf(n *yaml.Node) Pos {
	if n == nil {
		return Pos{}
	}
	return Pos{Line: n.Line, Col: n.Column}
}

// ParseError is a rule that cannot be read: invalid YAML, a missing or
// malformed mandatory element, a condition that does not parse.
type ParseError struct {
	File string
	Line int
	Col  int
	Msg  string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Unsupported is a feature of a well-formed rule that this engine does not
// evaluate (for example a placeholder without values or a regular
// expression outside RE2). A rule with an Unsupported entry is never
// evaluated; it is reported, not silently ignored.
type Unsupported struct {
	Pos    Pos
	Reason string
}

func (u Unsupported) String() string {
	return fmt.Sprintf("%d:%d: %s", u.Pos.Line, u.Pos.Col, u.Reason)
}

func errAt(file string, n *yaml.Node, format string, args ...any) *ParseError {
	p := posOf(n)
	return &ParseError{File: file, Line: p.Line, Col: p.Col, Msg: fmt.Sprintf(format, args...)}
}
