package intel

import (
	"fmt"
	"strings"
)

// A STIX 2.1 pattern (STIX 2.1 section 9) is reduced to the set of single
// observables any one of which satisfies it: comparisons of a supported
// object path with '=' (or IN, or ISSUBSET for addresses) joined by OR, in
// one or more observation expressions joined by OR. Anything else (AND,
// FOLLOWEDBY, NOT, qualifiers, other operators and paths) cannot be
// expressed as independent indicators: an OR keeps its expressible
// alternatives (dropping an alternative loses matches, it never adds
// false ones), a conjunction is dropped whole.

const (
	maxPatternLen   = 64 << 10
	maxPatternDepth = 64
)

type stixAtom struct {
	typ   Type
	value string
}

// patResult is what a (sub)pattern reduces to: the alternatives kept and
// the reasons for parts dropped.
type patResult struct {
	atoms   []stixAtom
	dropped []string
}

func unsupported(format string, args ...any) patResult {
	return patResult{dropped: []string{fmt.Sprintf(format, args...)}}
}

func (r patResult) or(o patResult) patResult {
	return patResult{atoms: append(r.atoms, o.atoms...), dropped: append(r.dropped, o.dropped...)}
}

// and drops both sides: a conjunction is not an indicator of one
// observable.
func (r patResult) and(o patResult, op string) patResult {
	d := append(r.dropped, o.dropped...)
	if len(r.atoms)+len(o.atoms) > 0 {
		d = append(d, op+" of comparisons cannot be matched one observable at a time")
	}
	return patResult{dropped: d}
}

type ptokKind int

const (
	tkEOF ptokKind = iota
	tkPunct
	tkString
	tkTyped // t'...', h'...', b'...'
	tkNumber
	tkWord // keywords and booleans
	tkPath
	tkOp
)

type ptok struct {
	kind ptokKind
	text string
	pos  int // byte offset, for errors
}

// PatternError is a syntax error in a STIX pattern.
type PatternError struct {
	Col int // 1-based
	Msg string
}

func (e *PatternError) Error() string { return fmt.Sprintf("pattern column %d: %s", e.Col, e.Msg) }

func lexPattern(s string) ([]ptok, error) {
	var toks []ptok
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '[' || c == ']' || c == '(' || c == ')' || c == ',':
			toks = append(toks, ptok{tkPunct, string(c), i})
			i++
		case c == '\'':
			str, n, err := lexQuoted(s, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, ptok{tkString, str, i})
			i = n
		case (c == 't' || c == 'h' || c == 'b') && i+1 < len(s) && s[i+1] == '\'':
			str, n, err := lexQuoted(s, i+1)
			if err != nil {
				return nil, err
			}
			toks = append(toks, ptok{tkTyped, string(c) + str, i})
			i = n
		case c == '=' || c == '!' || c == '<' || c == '>':
			op := string(c)
			if i+1 < len(s) && (s[i+1] == '=' || c == '<' && s[i+1] == '>') {
				op += string(s[i+1])
			}
			if op == "!" {
				return nil, &PatternError{i + 1, "'!' must be followed by '='"}
			}
			toks = append(toks, ptok{tkOp, op, i})
			i += len(op)
		case c >= '0' && c <= '9' || c == '-' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i + 1
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
				j++
			}
			toks = append(toks, ptok{tkNumber, s[i:j], i})
			i = j
		case isWordStart(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			if j < len(s) && s[j] == ':' {
				end, err := lexPath(s, j+1)
				if err != nil {
					return nil, err
				}
				toks = append(toks, ptok{tkPath, s[i:end], i})
				i = end
				continue
			}
			toks = append(toks, ptok{tkWord, s[i:j], i})
			i = j
		default:
			return nil, &PatternError{i + 1, fmt.Sprintf("unexpected character %q", c)}
		}
		if len(toks) > maxPatternLen/2 {
			return nil, &PatternError{i + 1, "too many tokens"}
		}
	}
	return append(toks, ptok{tkEOF, "", len(s)}), nil
}

func isWordStart(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }
func isWordByte(c byte) bool  { return isWordStart(c) || c >= '0' && c <= '9' || c == '-' }

// lexQuoted reads a '...' literal starting at s[i] (\' and \\ escapes).
func lexQuoted(s string, i int) (string, int, error) {
	var b strings.Builder
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if j+1 >= len(s) {
				return "", 0, &PatternError{j + 1, "backslash at the end of the pattern"}
			}
			j++
			b.WriteByte(s[j])
		case '\'':
			return b.String(), j + 1, nil
		default:
			b.WriteByte(s[j])
		}
	}
	return "", 0, &PatternError{i + 1, "string is not closed"}
}

// lexPath reads an object path's property part: names, '.', quoted keys
// and list indexes ([0], [*]).
func lexPath(s string, i int) (int, error) {
	start := i
	for i < len(s) {
		c := s[i]
		switch {
		case isWordByte(c) || c == '.':
			i++
		case c == '\'':
			_, n, err := lexQuoted(s, i)
			if err != nil {
				return 0, err
			}
			i = n
		case c == '[' && i > start:
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return 0, &PatternError{i + 1, "list index is not closed"}
			}
			i += end + 1
		default:
			if i == start {
				return 0, &PatternError{i + 1, "object path has no property"}
			}
			return i, nil
		}
	}
	if i == start {
		return 0, &PatternError{i + 1, "object path has no property"}
	}
	return i, nil
}

type patParser struct {
	toks  []ptok
	pos   int
	depth int
}

// parsePattern reduces a STIX pattern to its single-observable
// alternatives.
func parsePattern(s string) (patResult, error) {
	if len(s) > maxPatternLen {
		return patResult{}, &PatternError{1, fmt.Sprintf("pattern longer than %d bytes", maxPatternLen)}
	}
	toks, err := lexPattern(s)
	if err != nil {
		return patResult{}, err
	}
	p := &patParser{toks: toks}
	r, err := p.obsOr()
	if err != nil {
		return patResult{}, err
	}
	if t := p.peek(); t.kind != tkEOF {
		return patResult{}, p.errAt(t, "unexpected %q after the pattern", t.text)
	}
	return r, nil
}

func (p *patParser) peek() ptok { return p.toks[p.pos] }
func (p *patParser) next() ptok {
	t := p.toks[p.pos]
	if t.kind != tkEOF {
		p.pos++
	}
	return t
}

func (p *patParser) errAt(t ptok, format string, args ...any) error {
	return &PatternError{t.pos + 1, fmt.Sprintf(format, args...)}
}

func (p *patParser) isWord(w string) bool {
	t := p.peek()
	return t.kind == tkWord && t.text == w
}

func (p *patParser) expect(punct string) error {
	t := p.next()
	if t.kind != tkPunct || t.text != punct {
		if t.kind == tkEOF {
			return p.errAt(t, "missing %q at the end of the pattern", punct)
		}
		return p.errAt(t, "want %q, got %q", punct, t.text)
	}
	return nil
}

func (p *patParser) enter(t ptok) error {
	p.depth++
	if p.depth > maxPatternDepth {
		return p.errAt(t, "nested deeper than %d levels", maxPatternDepth)
	}
	return nil
}

func (p *patParser) obsOr() (patResult, error) {
	l, err := p.obsAnd()
	if err != nil {
		return l, err
	}
	for p.isWord("OR") {
		p.next()
		r, err := p.obsAnd()
		if err != nil {
			return r, err
		}
		l = l.or(r)
	}
	return l, nil
}

func (p *patParser) obsAnd() (patResult, error) {
	l, err := p.obsSeq()
	if err != nil {
		return l, err
	}
	for p.isWord("AND") {
		p.next()
		r, err := p.obsSeq()
		if err != nil {
			return r, err
		}
		l = l.and(r, "AND")
	}
	return l, nil
}

func (p *patParser) obsSeq() (patResult, error) {
	l, err := p.obsUnit()
	if err != nil {
		return l, err
	}
	for p.isWord("FOLLOWEDBY") {
		p.next()
		r, err := p.obsUnit()
		if err != nil {
			return r, err
		}
		l = l.and(r, "FOLLOWEDBY")
	}
	return l, nil
}

func (p *patParser) obsUnit() (patResult, error) {
	t := p.next()
	if err := p.enter(t); err != nil {
		return patResult{}, err
	}
	defer func() { p.depth-- }()
	var res patResult
	var err error
	switch {
	case t.kind == tkPunct && t.text == "[":
		if res, err = p.cmpOr(); err != nil {
			return res, err
		}
		if err := p.expect("]"); err != nil {
			return res, err
		}
	case t.kind == tkPunct && t.text == "(":
		if res, err = p.obsOr(); err != nil {
			return res, err
		}
		if err := p.expect(")"); err != nil {
			return res, err
		}
	case t.kind == tkEOF:
		return res, p.errAt(t, "pattern ends where an observation expression ('[') should start")
	default:
		return res, p.errAt(t, "want '[' or '(', got %q", t.text)
	}
	for {
		q := p.peek()
		if q.kind != tkWord {
			return res, nil
		}
		switch q.text {
		case "WITHIN":
			p.next()
			if n := p.next(); n.kind != tkNumber {
				return res, p.errAt(n, "WITHIN needs a number of seconds")
			}
			if s := p.next(); s.kind != tkWord || s.text != "SECONDS" {
				return res, p.errAt(s, "WITHIN n needs SECONDS")
			}
		case "REPEATS":
			p.next()
			if n := p.next(); n.kind != tkNumber {
				return res, p.errAt(n, "REPEATS needs a number")
			}
			if s := p.next(); s.kind != tkWord || s.text != "TIMES" {
				return res, p.errAt(s, "REPEATS n needs TIMES")
			}
		case "START":
			p.next()
			if a := p.next(); a.kind != tkTyped || a.text[0] != 't' {
				return res, p.errAt(a, "START needs a timestamp t'...'")
			}
			if s := p.next(); s.kind != tkWord || s.text != "STOP" {
				return res, p.errAt(s, "START t'...' needs STOP t'...'")
			}
			if b := p.next(); b.kind != tkTyped || b.text[0] != 't' {
				return res, p.errAt(b, "STOP needs a timestamp t'...'")
			}
		default:
			return res, nil
		}
		if len(res.atoms) > 0 {
			res = patResult{dropped: append(res.dropped, "the "+q.text+" qualifier cannot be matched one observable at a time")}
		}
	}
}

func (p *patParser) cmpOr() (patResult, error) {
	l, err := p.cmpAnd()
	if err != nil {
		return l, err
	}
	for p.isWord("OR") {
		p.next()
		r, err := p.cmpAnd()
		if err != nil {
			return r, err
		}
		l = l.or(r)
	}
	return l, nil
}

func (p *patParser) cmpAnd() (patResult, error) {
	l, err := p.cmpUnit()
	if err != nil {
		return l, err
	}
	for p.isWord("AND") {
		p.next()
		r, err := p.cmpUnit()
		if err != nil {
			return r, err
		}
		l = l.and(r, "AND")
	}
	return l, nil
}

func (p *patParser) cmpUnit() (patResult, error) {
	t := p.next()
	if err := p.enter(t); err != nil {
		return patResult{}, err
	}
	defer func() { p.depth-- }()
	switch {
	case t.kind == tkPunct && t.text == "(":
		r, err := p.cmpOr()
		if err != nil {
			return r, err
		}
		return r, p.expect(")")
	case t.kind == tkWord && t.text == "EXISTS":
		path := p.next()
		if path.kind != tkPath {
			return patResult{}, p.errAt(path, "EXISTS needs an object path")
		}
		return unsupported("EXISTS %s is not an observable value", path.text), nil
	case t.kind != tkPath:
		if t.kind == tkEOF {
			return patResult{}, p.errAt(t, "pattern ends where a comparison should start")
		}
		return patResult{}, p.errAt(t, "want an object path such as ipv4-addr:value, got %q", t.text)
	}
	negated := false
	if p.isWord("NOT") {
		p.next()
		negated = true
	}
	opTok := p.next()
	op := opTok.text
	switch {
	case opTok.kind == tkOp:
	case opTok.kind == tkWord && (op == "LIKE" || op == "MATCHES" || op == "ISSUBSET" || op == "ISSUPERSET" || op == "IN"):
	default:
		return patResult{}, p.errAt(opTok, "want a comparison operator after %s, got %q", t.text, op)
	}
	var values []ptok
	if op == "IN" {
		if err := p.expect("("); err != nil {
			return patResult{}, err
		}
		for {
			v := p.next()
			if !isConstant(v) {
				return patResult{}, p.errAt(v, "want a constant in the IN list, got %q", v.text)
			}
			values = append(values, v)
			if n := p.next(); n.kind == tkPunct && n.text == ")" {
				break
			} else if n.kind != tkPunct || n.text != "," {
				return patResult{}, p.errAt(n, "want ',' or ')' in the IN list, got %q", n.text)
			}
		}
	} else {
		v := p.next()
		if !isConstant(v) {
			return patResult{}, p.errAt(v, "want a constant after %s, got %q", op, v.text)
		}
		values = []ptok{v}
	}
	if negated {
		return unsupported("NOT %s on %s cannot be an indicator", op, t.text), nil
	}
	return comparison(t.text, op, values), nil
}

func isConstant(t ptok) bool {
	return t.kind == tkString || t.kind == tkTyped || t.kind == tkNumber ||
		t.kind == tkWord && (t.text == "true" || t.text == "false")
}

// stixPaths maps the supported object paths to indicator types.
var stixPaths = map[string]Type{
	"ipv4-addr:value":                typeIP,
	"ipv6-addr:value":                typeIP,
	"network-traffic:dst_ref.value":  typeIP,
	"network-traffic:src_ref.value":  typeIP,
	"domain-name:value":              Domain,
	"url:value":                      URL,
	"email-addr:value":               Email,
	"email-message:from_ref.value":   Email,
	"email-message:sender_ref.value": Email,
}

// stixPathType returns the indicator type of an object path ("" when
// unsupported). File hashes accept the spellings seen in the wild:
// hashes.'SHA-256', hashes.SHA256, hashes.'sha-256'.
func stixPathType(path string) Type {
	obj, prop, _ := strings.Cut(path, ":")
	obj = strings.ToLower(obj)
	if obj == "file" || obj == "artifact" {
		if k, ok := strings.CutPrefix(prop, "hashes."); ok {
			k = strings.ToUpper(strings.NewReplacer("'", "", "-", "", "_", "").Replace(k))
			switch k {
			case "MD5":
				return MD5
			case "SHA1":
				return SHA1
			case "SHA256":
				return SHA256
			}
		}
		return ""
	}
	return stixPaths[obj+":"+prop]
}

func comparison(path, op string, values []ptok) patResult {
	typ := stixPathType(path)
	if typ == "" {
		return unsupported("object path %s is not an observable the matcher uses", path)
	}
	switch {
	case op == "=" || op == "IN":
	case op == "ISSUBSET" && typ == typeIP:
	default:
		return unsupported("operator %s on %s cannot be an indicator", op, path)
	}
	var r patResult
	for _, v := range values {
		if v.kind != tkString {
			r.dropped = append(r.dropped, fmt.Sprintf("%s compared with a non-string constant", path))
			continue
		}
		r.atoms = append(r.atoms, stixAtom{typ, v.text})
	}
	return r
}
