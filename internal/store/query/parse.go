package query

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Syntax is a parsed query not yet checked against a schema. Parse gives
// it; Resolve turns it into the typed tree. It is immutable and may be
// resolved against several schemas.
type Syntax struct {
	src  string
	root expr // nil for the empty query
}

// String returns the query text that was parsed.
func (s *Syntax) String() string { return s.src }

// The untyped syntax tree.
type expr interface{ exprPos() int }

type andExpr struct {
	pos int
	xs  []expr
}

type orExpr struct {
	pos int
	xs  []expr
}

type notExpr struct {
	pos int
	x   expr
}

// allExpr is a bare *.
type allExpr struct{ pos int }

type termKind uint8

const (
	kindValue  termKind = iota // field:value, field:"phrase", bare value or phrase
	kindExists                 // field:*
	kindCmp                    // field>=value
	kindRange                  // field:[lo TO hi]
)

// termExpr is one leaf. field is "" for a bare term (default fields).
type termExpr struct {
	pos      int // start of the term
	field    string
	fieldPos int
	kind     termKind
	val      value // kindValue, kindCmp
	op       Op    // kindCmp
	lo, hi   *value
	loIncl   bool
	hiIncl   bool
}

// value is one word or quoted string as written.
type value struct {
	pos     int
	text    string // with escapes applied
	pattern string // MatchWildcard syntax; set when wild
	wild    bool   // has an unescaped * or ?
	quoted  bool
	star    bool // exactly one unescaped *
	escaped bool // some character was escaped
}

func (x *andExpr) exprPos() int  { return x.pos }
func (x *orExpr) exprPos() int   { return x.pos }
func (x *notExpr) exprPos() int  { return x.pos }
func (x *allExpr) exprPos() int  { return x.pos }
func (x *termExpr) exprPos() int { return x.pos }

// Parse checks the syntax of a query. Errors are *ParseError.
func Parse(src string) (*Syntax, error) {
	if len(src) > MaxQueryBytes {
		return nil, &ParseError{Pos: MaxQueryBytes, Msg: fmt.Sprintf("query is longer than %d bytes", MaxQueryBytes)}
	}
	if !utf8.ValidString(src) {
		i := 0
		for i < len(src) {
			r, n := utf8.DecodeRuneInString(src[i:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			i += n
		}
		return nil, &ParseError{Pos: i, Msg: "query is not valid UTF-8"}
	}
	p := &parser{src: src}
	p.skipSpace()
	if p.eof() {
		return &Syntax{src: src}, nil
	}
	root, err := p.parseOr("", 0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if !p.eof() { // parseOr stops only at the end or at a ')'
		return nil, p.errf(p.pos, "unexpected %q: no \"(\" to close", ")")
	}
	return &Syntax{src: src, root: root}, nil
}

type parser struct {
	src   string
	pos   int
	depth int
}

func (p *parser) errf(pos int, format string, args ...any) *ParseError {
	return &ParseError{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) eof() bool { return p.pos >= len(p.src) }

func (p *parser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.src[p.pos]
}

func (p *parser) skipSpace() {
	for !p.eof() {
		r, n := utf8.DecodeRuneInString(p.src[p.pos:])
		if !unicode.IsSpace(r) {
			return
		}
		p.pos += n
	}
}

// spaceAt reports whether a space starts at byte i.
func (p *parser) spaceAt(i int) bool {
	if i >= len(p.src) {
		return false
	}
	r, _ := utf8.DecodeRuneInString(p.src[i:])
	return unicode.IsSpace(r)
}

// atKeyword reports whether the upper-case keyword kw starts at the current
// position as a word of its own.
func (p *parser) atKeyword(kw string) bool {
	if !strings.HasPrefix(p.src[p.pos:], kw) {
		return false
	}
	end := p.pos + len(kw)
	if end == len(p.src) || p.spaceAt(end) {
		return true
	}
	switch p.src[end] {
	case '(', ')', '"':
		return true
	}
	return false
}

func (p *parser) atOperator() bool { return p.atKeyword("AND") || p.atKeyword("OR") }

func (p *parser) enter(pos int) error {
	p.depth++
	if p.depth > MaxDepth {
		return p.errf(pos, "query is nested more than %d levels deep", MaxDepth)
	}
	return nil
}

// describe names what is at pos for an error message.
func (p *parser) describe(pos int) string {
	if pos >= len(p.src) {
		return "the end of the query"
	}
	r, _ := utf8.DecodeRuneInString(p.src[pos:])
	return fmt.Sprintf("%q", r)
}

// parseOr: and { OR and }. group is the field of an enclosing field group.
func (p *parser) parseOr(group string, groupPos int) (expr, error) {
	start := p.pos
	x, err := p.parseAnd(group, groupPos)
	if err != nil {
		return nil, err
	}
	xs := []expr{x}
	for {
		p.skipSpace()
		if !p.atKeyword("OR") {
			break
		}
		opPos := p.pos
		p.pos += len("OR")
		p.skipSpace()
		if p.eof() || p.peek() == ')' || p.atOperator() {
			return nil, p.errf(opPos, "OR needs a term on both sides")
		}
		y, err := p.parseAnd(group, groupPos)
		if err != nil {
			return nil, err
		}
		xs = append(xs, y)
	}
	if len(xs) == 1 {
		return x, nil
	}
	return &orExpr{pos: start, xs: xs}, nil
}

// parseAnd: not { [AND] not }.
func (p *parser) parseAnd(group string, groupPos int) (expr, error) {
	start := p.pos
	p.skipSpace()
	if p.atOperator() {
		kw := "AND"
		if p.atKeyword("OR") {
			kw = "OR"
		}
		return nil, p.errf(p.pos, "%s needs a term on both sides", kw)
	}
	x, err := p.parseNot(group, groupPos)
	if err != nil {
		return nil, err
	}
	xs := []expr{x}
	for {
		p.skipSpace()
		if p.eof() || p.peek() == ')' || p.atKeyword("OR") {
			break
		}
		if p.atKeyword("AND") {
			opPos := p.pos
			p.pos += len("AND")
			p.skipSpace()
			if p.eof() || p.peek() == ')' || p.atOperator() {
				return nil, p.errf(opPos, "AND needs a term on both sides")
			}
		}
		y, err := p.parseNot(group, groupPos)
		if err != nil {
			return nil, err
		}
		xs = append(xs, y)
	}
	if len(xs) == 1 {
		return x, nil
	}
	return &andExpr{pos: start, xs: xs}, nil
}

// parseNot: (NOT | -) not | primary.
func (p *parser) parseNot(group string, groupPos int) (expr, error) {
	p.skipSpace()
	start := p.pos
	var skip int
	switch {
	case p.atKeyword("NOT"):
		skip = len("NOT")
	case p.peek() == '-' && p.pos+1 < len(p.src) && !p.spaceAt(p.pos+1) && p.src[p.pos+1] != ')':
		skip = 1
	default:
		return p.parsePrimary(group, groupPos)
	}
	if err := p.enter(start); err != nil {
		return nil, err
	}
	p.pos += skip
	p.skipSpace()
	if p.eof() || p.peek() == ')' || p.atOperator() {
		return nil, p.errf(start, "NOT needs a term after it")
	}
	x, err := p.parseNot(group, groupPos)
	if err != nil {
		return nil, err
	}
	p.depth--
	return &notExpr{pos: start, x: x}, nil
}

// parseParen parses "(" or ")" after the opening parenthesis at p.pos.
func (p *parser) parseParen(group string, groupPos int) (expr, error) {
	open := p.pos
	if err := p.enter(open); err != nil {
		return nil, err
	}
	p.pos++
	p.skipSpace()
	if p.peek() == ')' {
		return nil, p.errf(open, "empty parentheses")
	}
	if p.eof() {
		return nil, p.errf(open, "%q is never closed", "(")
	}
	x, err := p.parseOr(group, groupPos)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.peek() != ')' {
		return nil, p.errf(open, "%q is never closed", "(")
	}
	p.pos++
	p.depth--
	return x, nil
}

func (p *parser) parsePrimary(group string, groupPos int) (expr, error) {
	p.skipSpace()
	start := p.pos
	if p.eof() {
		return nil, p.errf(start, "expected a term at the end of the query")
	}
	switch c := p.peek(); c {
	case '(':
		return p.parseParen(group, groupPos)
	case ')':
		return nil, p.errf(start, "unexpected %q: no \"(\" to close", ")")
	case '"':
		v, err := p.scanQuoted()
		if err != nil {
			return nil, err
		}
		return &termExpr{pos: start, field: group, fieldPos: groupPos, kind: kindValue, val: v}, nil
	case '[', '{':
		if group == "" {
			return nil, p.errf(start, "a range needs a field, as in field:[1 TO 10]")
		}
		return p.parseRange(start, group, groupPos)
	}
	if group != "" {
		// Inside field:( ... ) every word is a value of that field.
		v, err := p.scanWord(modeValue)
		if err != nil {
			return nil, err
		}
		if v.text == "" && !v.escaped {
			return nil, p.errf(start, "unexpected %s", p.describe(start))
		}
		if v.star {
			return &termExpr{pos: start, field: group, fieldPos: groupPos, kind: kindExists}, nil
		}
		return &termExpr{pos: start, field: group, fieldPos: groupPos, kind: kindValue, val: v}, nil
	}
	w, err := p.scanWord(modeTerm)
	if err != nil {
		return nil, err
	}
	// Spaces may stand between a field name and its operator: "port >= 80".
	end := p.pos
	p.skipSpace()
	if c := p.peek(); !w.quoted && c != ':' && c != '<' && c != '>' {
		p.pos = end
	}
	switch c := p.peek(); c {
	case ':', '<', '>':
		if w.text == "" && !w.escaped {
			return nil, p.errf(start, "unexpected %s: a field name must come first", p.describe(start))
		}
		if w.escaped || w.wild || w.quoted {
			return nil, p.errf(start, "invalid field name %q", p.src[start:end])
		}
		if c == ':' {
			p.pos++
			return p.parseFieldValue(start, w.text)
		}
		return p.parseCmp(start, w.text)
	}
	if w.text == "" && !w.escaped {
		return nil, p.errf(start, "unexpected %s", p.describe(start))
	}
	if w.star {
		return &allExpr{pos: start}, nil
	}
	return &termExpr{pos: start, kind: kindValue, val: w}, nil
}

// parseFieldValue parses what follows "field:".
func (p *parser) parseFieldValue(start int, field string) (expr, error) {
	p.skipSpace()
	vpos := p.pos
	if p.eof() || p.peek() == ')' || p.atKeyword("AND") || p.atKeyword("OR") || p.atKeyword("NOT") {
		return nil, p.errf(vpos, "expected a value after %q", field+":")
	}
	switch p.peek() {
	case '(':
		return p.parseParen(field, start)
	case '[', '{':
		return p.parseRange(start, field, start)
	case '"':
		v, err := p.scanQuoted()
		if err != nil {
			return nil, err
		}
		return &termExpr{pos: start, field: field, fieldPos: start, kind: kindValue, val: v}, nil
	}
	v, err := p.scanWord(modeValue)
	if err != nil {
		return nil, err
	}
	if v.text == "" && !v.escaped {
		return nil, p.errf(vpos, "expected a value after %q", field+":")
	}
	if v.star {
		return &termExpr{pos: start, field: field, fieldPos: start, kind: kindExists}, nil
	}
	return &termExpr{pos: start, field: field, fieldPos: start, kind: kindValue, val: v}, nil
}

// parseCmp parses field<v, field<=v, field>v, field>=v from the operator on.
func (p *parser) parseCmp(start int, field string) (expr, error) {
	var op Op
	switch {
	case strings.HasPrefix(p.src[p.pos:], ">="):
		op = OpGte
	case strings.HasPrefix(p.src[p.pos:], "<="):
		op = OpLte
	case p.peek() == '>':
		op = OpGt
	default:
		op = OpLt
	}
	opPos := p.pos
	if op == OpGte || op == OpLte {
		p.pos += 2
	} else {
		p.pos++
	}
	p.skipSpace()
	vpos := p.pos
	if p.eof() || p.peek() == '(' || p.peek() == ')' || p.atOperator() || p.atKeyword("NOT") {
		return nil, p.errf(vpos, "expected a value after %q", p.src[start:opPos]+opString(op))
	}
	var v value
	var err error
	if p.peek() == '"' {
		v, err = p.scanQuoted()
	} else {
		v, err = p.scanWord(modeValue)
	}
	if err != nil {
		return nil, err
	}
	if v.text == "" && !v.escaped && !v.quoted {
		return nil, p.errf(vpos, "expected a value after %q", p.src[start:opPos]+opString(op))
	}
	return &termExpr{pos: start, field: field, fieldPos: start, kind: kindCmp, op: op, val: v}, nil
}

func opString(op Op) string {
	switch op {
	case OpLt:
		return "<"
	case OpLte:
		return "<="
	case OpGt:
		return ">"
	}
	return ">="
}

// parseRange parses [lo TO hi], {lo TO hi} and the mixed forms; a * bound is
// open.
func (p *parser) parseRange(start int, field string, fieldPos int) (expr, error) {
	open := p.pos
	t := &termExpr{pos: start, field: field, fieldPos: fieldPos, kind: kindRange, loIncl: p.peek() == '['}
	p.pos++
	lo, err := p.scanBound(open)
	if err != nil {
		return nil, err
	}
	if !p.spaceAt(p.pos) {
		return nil, p.errf(p.pos, "expected \" TO \" in the range")
	}
	p.skipSpace()
	if !strings.HasPrefix(p.src[p.pos:], "TO") || (p.pos+2 < len(p.src) && !p.spaceAt(p.pos+2)) {
		return nil, p.errf(p.pos, "expected \" TO \" in the range")
	}
	p.pos += 2
	hi, err := p.scanBound(open)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	switch p.peek() {
	case ']':
		t.hiIncl = true
	case '}':
	default:
		if p.eof() {
			return nil, p.errf(open, "range is never closed with \"]\" or \"}\"")
		}
		return nil, p.errf(p.pos, "expected \"]\" or \"}\" to close the range, found %s", p.describe(p.pos))
	}
	p.pos++
	if !lo.star {
		t.lo = &lo
	}
	if !hi.star {
		t.hi = &hi
	}
	return t, nil
}

func (p *parser) scanBound(open int) (value, error) {
	p.skipSpace()
	if p.eof() {
		return value{}, p.errf(open, "range is never closed with \"]\" or \"}\"")
	}
	if p.peek() == '"' {
		return p.scanQuoted()
	}
	pos := p.pos
	v, err := p.scanWord(modeBound)
	if err != nil {
		return value{}, err
	}
	if v.text == "" && !v.escaped {
		return value{}, p.errf(pos, "expected a range bound, found %s", p.describe(pos))
	}
	if v.text == "TO" && !v.escaped {
		return value{}, p.errf(pos, "a range bound is missing: use * for an open bound, as in [* TO 10]")
	}
	return v, nil
}

// scanQuoted reads a quoted string; \" and \\ are escapes, any other
// backslash is kept as written.
func (p *parser) scanQuoted() (value, error) {
	open := p.pos
	p.pos++
	var b strings.Builder
	for {
		if p.eof() {
			return value{}, p.errf(open, "quoted string is never closed")
		}
		c := p.src[p.pos]
		switch {
		case c == '"':
			p.pos++
			return value{pos: open, text: b.String(), quoted: true}, nil
		case c == '\\' && p.pos+1 < len(p.src) && (p.src[p.pos+1] == '"' || p.src[p.pos+1] == '\\'):
			b.WriteByte(p.src[p.pos+1])
			p.pos += 2
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
}

type scanMode uint8

const (
	modeTerm  scanMode = iota // a field name or a bare word: stops at : < >
	modeValue                 // the value after field: (may hold : for IPv6 and times)
	modeBound                 // a range bound: stops at ] and }
)

// scanWord reads an unquoted word. A backslash makes the next character
// part of the word (and never a wildcard).
func (p *parser) scanWord(mode scanMode) (value, error) {
	v := value{pos: p.pos}
	var text, pat strings.Builder
	stars, others := 0, 0
	for !p.eof() {
		r, n := utf8.DecodeRuneInString(p.src[p.pos:])
		if r == '\\' {
			if p.pos+n >= len(p.src) {
				return value{}, p.errf(p.pos, "\\ at the end of the query escapes nothing")
			}
			e, m := utf8.DecodeRuneInString(p.src[p.pos+n:])
			p.pos += n + m
			v.escaped = true
			others++
			text.WriteRune(e)
			if e == '*' || e == '?' || e == '\\' {
				pat.WriteByte('\\')
			}
			pat.WriteRune(e)
			continue
		}
		if unicode.IsSpace(r) || r == '(' || r == ')' || r == '"' {
			break
		}
		if mode == modeTerm && (r == ':' || r == '<' || r == '>') {
			break
		}
		if mode == modeBound && (r == ']' || r == '}') {
			break
		}
		p.pos += n
		text.WriteRune(r)
		pat.WriteRune(r)
		switch r {
		case '*':
			stars++
			v.wild = true
		case '?':
			others++
			v.wild = true
		default:
			others++
		}
	}
	v.text = text.String()
	if v.wild {
		v.pattern = pat.String()
	}
	v.star = stars == 1 && others == 0
	return v, nil
}
