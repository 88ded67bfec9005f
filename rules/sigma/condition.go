package sigma

import (
	"fmt"
	"path"
	"strings"
)

// Expr is a node of a parsed condition.
type Expr interface{ isExpr() }

// And is true when every operand is.
type And struct{ X []Expr }

// Or is true when any operand is.
type Or struct{ X []Expr }

// Not negates its operand.
type Not struct{ X Expr }

// Ref refers to a search identifier.
type Ref struct{ Name string }

func (And) isExpr() {}
func (Or) isExpr()  {}
func (Not) isExpr() {}
func (Ref) isExpr() {}

// ConditionError is a condition that does not parse; Offset is the byte
// offset in the condition text.
type ConditionError struct {
	Offset int
	Msg    string
}

func (e *ConditionError) Error() string {
	return fmt.Sprintf("condition at offset %d: %s", e.Offset, e.Msg)
}

type condToken struct {
	kind string // "id", "(", ")", "and", "or", "not", "of", "them", "1", "all", "|", "num"
	text string
	off  int
}

func lexCondition(s string) ([]condToken, error) {
	var toks []condToken
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '|':
			// A Sigma 1 aggregation follows; the parser reports it.
			toks = append(toks, condToken{kind: "|", text: "|", off: i})
			return toks, nil
		case c == '(' || c == ')':
			toks = append(toks, condToken{kind: string(c), text: string(c), off: i})
			i++
		case c == '_' || c == '*' || c == '-' || c == '.' || c == '?' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(s) {
				d := s[j]
				if d == '_' || d == '*' || d == '-' || d == '.' || d == '?' || d >= '0' && d <= '9' || d >= 'a' && d <= 'z' || d >= 'A' && d <= 'Z' {
					j++
					continue
				}
				break
			}
			w := s[i:j]
			kind := "id"
			switch strings.ToLower(w) {
			case "and", "or", "not", "of", "them", "all":
				kind = strings.ToLower(w)
			}
			toks = append(toks, condToken{kind: kind, text: w, off: i})
			i = j
		default:
			return nil, &ConditionError{Offset: i, Msg: fmt.Sprintf("unexpected character %q", c)}
		}
	}
	return toks, nil
}

type condParser struct {
	toks  []condToken
	i     int
	names []string // search identifiers in document order
	end   int
}

// ParseCondition parses a condition over the given search identifiers,
// expanding `1 of`/`all of` patterns and `them`.
func ParseCondition(s string, names []string) (Expr, error) {
	toks, err := lexCondition(s)
	if err != nil {
		return nil, err
	}
	p := &condParser{toks: toks, names: names, end: len(s)}
	if len(toks) == 0 {
		return nil, &ConditionError{Offset: 0, Msg: "empty condition"}
	}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		t := p.toks[p.i]
		if t.kind == "|" {
			return nil, &aggregationError{ConditionError{Offset: t.off, Msg: "aggregation expressions (`| count() ...`) are deprecated in Sigma 2; use a correlation rule"}}
		}
		return nil, &ConditionError{Offset: t.off, Msg: fmt.Sprintf("unexpected %q", t.text)}
	}
	return e, nil
}

// aggregationError is a Sigma 1 aggregation in a condition: well-formed but
// unsupported.
type aggregationError struct{ ConditionError }

func (p *condParser) peek() *condToken {
	if p.i < len(p.toks) {
		return &p.toks[p.i]
	}
	return nil
}

func (p *condParser) errHere(msg string) error {
	off := p.end
	if t := p.peek(); t != nil {
		off = t.off
	}
	return &ConditionError{Offset: off, Msg: msg}
}

func (p *condParser) or() (Expr, error) {
	x, err := p.and()
	if err != nil {
		return nil, err
	}
	xs := []Expr{x}
	for t := p.peek(); t != nil && t.kind == "or"; t = p.peek() {
		p.i++
		y, err := p.and()
		if err != nil {
			return nil, err
		}
		xs = append(xs, y)
	}
	if len(xs) == 1 {
		return x, nil
	}
	return Or{X: xs}, nil
}

func (p *condParser) and() (Expr, error) {
	x, err := p.not()
	if err != nil {
		return nil, err
	}
	xs := []Expr{x}
	for t := p.peek(); t != nil && t.kind == "and"; t = p.peek() {
		p.i++
		y, err := p.not()
		if err != nil {
			return nil, err
		}
		xs = append(xs, y)
	}
	if len(xs) == 1 {
		return x, nil
	}
	return And{X: xs}, nil
}

func (p *condParser) not() (Expr, error) {
	if t := p.peek(); t != nil && t.kind == "not" {
		p.i++
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return Not{X: x}, nil
	}
	return p.primary()
}

func (p *condParser) primary() (Expr, error) {
	t := p.peek()
	if t == nil {
		return nil, p.errHere("unexpected end of condition")
	}
	switch {
	case t.kind == "(":
		p.i++
		x, err := p.or()
		if err != nil {
			return nil, err
		}
		if c := p.peek(); c == nil || c.kind != ")" {
			return nil, p.errHere("missing )")
		}
		p.i++
		return x, nil
	case t.kind == "all" || t.kind == "id" && t.text == "1":
		// `1 of x` / `all of x`
		if p.i+1 >= len(p.toks) || p.toks[p.i+1].kind != "of" {
			if t.kind == "id" {
				return p.ref(t)
			}
			return nil, p.errHere("expected `of` after `all`")
		}
		all := t.kind == "all"
		p.i += 2
		target := p.peek()
		if target == nil || target.kind != "id" && target.kind != "them" {
			return nil, p.errHere("expected a search identifier pattern or `them` after `of`")
		}
		p.i++
		var names []string
		for _, n := range p.names {
			if target.kind == "them" {
				if !strings.HasPrefix(n, "_") {
					names = append(names, n)
				}
				continue
			}
			if ok, _ := path.Match(target.text, n); ok {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			return nil, &ConditionError{Offset: target.off, Msg: fmt.Sprintf("no search identifier matches %q", target.text)}
		}
		xs := make([]Expr, len(names))
		for i, n := range names {
			xs[i] = Ref{Name: n}
		}
		if len(xs) == 1 {
			return xs[0], nil
		}
		if all {
			return And{X: xs}, nil
		}
		return Or{X: xs}, nil
	case t.kind == "id":
		return p.ref(t)
	}
	return nil, p.errHere(fmt.Sprintf("unexpected %q", t.text))
}

func (p *condParser) ref(t *condToken) (Expr, error) {
	p.i++
	for _, n := range p.names {
		if n == t.text {
			return Ref{Name: n}, nil
		}
	}
	return nil, &ConditionError{Offset: t.off, Msg: fmt.Sprintf("unknown search identifier %q", t.text)}
}

// Refs returns the search identifiers an expression refers to.
func Refs(e Expr) []string {
	var out []string
	var walk func(Expr)
	walk = func(e Expr) {
		switch x := e.(type) {
		case And:
			for _, y := range x.X {
				walk(y)
			}
		case Or:
			for _, y := range x.X {
				walk(y)
			}
		case Not:
			walk(x.X)
		case Ref:
			out = append(out, x.Name)
		}
	}
	walk(e)
	return out
}
