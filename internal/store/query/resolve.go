package query

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/csirt-toscana/platform/internal/event"
)

// maxExactInt is the largest integer a float64 holds exactly (2^53). Long
// values are carried in Term.Num, so larger ones are refused rather than
// silently rounded.
const maxExactInt = 1 << 53

// Resolve checks a parsed query against a schema and returns the typed,
// normalised tree: nested And/Or flattened, double negations removed, a
// range with two bounds turned into an And of two terms. An empty query
// gives *All. Errors are *ParseError.
func Resolve(syn *Syntax, s Schema) (Node, error) {
	if syn.root == nil {
		return &All{}, nil
	}
	r := &resolver{schema: s}
	n, err := r.expr(syn.root)
	if err != nil {
		return nil, err
	}
	return normalize(n), nil
}

type resolver struct {
	schema Schema
	terms  int
}

func (r *resolver) expr(x expr) (Node, error) {
	switch x := x.(type) {
	case *andExpr:
		nodes, err := r.exprs(x.xs)
		if err != nil {
			return nil, err
		}
		return &And{Nodes: nodes}, nil
	case *orExpr:
		nodes, err := r.exprs(x.xs)
		if err != nil {
			return nil, err
		}
		return &Or{Nodes: nodes}, nil
	case *notExpr:
		n, err := r.expr(x.x)
		if err != nil {
			return nil, err
		}
		return &Not{Node: n}, nil
	case *allExpr:
		return &All{}, nil
	case *termExpr:
		return r.term(x)
	}
	panic(fmt.Sprintf("query: unknown syntax node %T", x))
}

func (r *resolver) exprs(xs []expr) ([]Node, error) {
	out := make([]Node, 0, len(xs))
	for _, x := range xs {
		n, err := r.expr(x)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// newTerm counts the term against MaxTerms.
func (r *resolver) newTerm(pos int, def event.FieldDef, op Op) (*Term, error) {
	r.terms++
	if r.terms > MaxTerms {
		return nil, &ParseError{Pos: pos, Msg: fmt.Sprintf("query has more than %d terms", MaxTerms)}
	}
	return &Term{Field: def.Name, Type: def.Type, Array: def.Array, Op: op}, nil
}

func (r *resolver) term(t *termExpr) (Node, error) {
	if t.field == "" {
		return r.bare(t)
	}
	def, ok := r.schema.Field(t.field)
	if !ok {
		return nil, &ParseError{Pos: t.fieldPos, Msg: fmt.Sprintf("unknown field %q", t.field)}
	}
	def.Name = t.field
	switch t.kind {
	case kindExists:
		return r.newTerm(t.pos, def, OpExists)
	case kindCmp:
		if err := rangeable(def, t.fieldPos); err != nil {
			return nil, err
		}
		return r.bound(def, t.op, t.val)
	case kindRange:
		return r.rangeTerm(t, def)
	}
	return r.value(def, t.val)
}

// bare resolves a term without a field: an OR over the default fields.
func (r *resolver) bare(t *termExpr) (Node, error) {
	fields := r.schema.DefaultFields()
	if len(fields) == 0 {
		return nil, &ParseError{Pos: t.pos, Msg: "this collection has no default fields: name a field, as in field:value"}
	}
	if v := t.val; !v.quoted && !v.wild && looksLikeCIDR(v.text) {
		return nil, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("CIDR prefix %s needs an IP field, as in source.ip:%s", v.text, v.text)}
	}
	or := &Or{}
	for _, f := range fields {
		def, ok := r.schema.Field(f)
		if !ok {
			return nil, &ParseError{Pos: t.pos, Msg: fmt.Sprintf("default field %q is not in the schema", f)}
		}
		def.Name = f
		n, err := r.value(def, t.val)
		if err != nil {
			return nil, err
		}
		or.Nodes = append(or.Nodes, n)
	}
	return or, nil
}

func rangeable(def event.FieldDef, pos int) error {
	switch def.Type {
	case event.Long, event.Double, event.Date, event.IP:
		return nil
	}
	return &ParseError{Pos: pos, Msg: fmt.Sprintf("range on %s field %q: ranges work on numbers, dates and IP addresses", def.Type, def.Name)}
}

func (r *resolver) rangeTerm(t *termExpr, def event.FieldDef) (Node, error) {
	if err := rangeable(def, t.fieldPos); err != nil {
		return nil, err
	}
	if t.lo == nil && t.hi == nil {
		return r.newTerm(t.pos, def, OpExists)
	}
	and := &And{}
	if t.lo != nil {
		op := OpGt
		if t.loIncl {
			op = OpGte
		}
		n, err := r.bound(def, op, *t.lo)
		if err != nil {
			return nil, err
		}
		and.Nodes = append(and.Nodes, n)
	}
	if t.hi != nil {
		op := OpLt
		if t.hiIncl {
			op = OpLte
		}
		n, err := r.bound(def, op, *t.hi)
		if err != nil {
			return nil, err
		}
		and.Nodes = append(and.Nodes, n)
	}
	if len(and.Nodes) == 1 {
		return and.Nodes[0], nil
	}
	return and, nil
}

// bound resolves one side of a range (the field is known to be rangeable).
func (r *resolver) bound(def event.FieldDef, op Op, v value) (Node, error) {
	if v.wild {
		return nil, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("wildcards cannot be a range bound (field %q)", def.Name)}
	}
	t, err := r.newTerm(v.pos, def, op)
	if err != nil {
		return nil, err
	}
	switch def.Type {
	case event.Long:
		t.Num, err = parseLong(def, v)
	case event.Double:
		t.Num, err = parseDouble(def, v)
	case event.Date:
		t.Time, _, err = parseDate(def, v)
	case event.IP:
		if strings.Contains(v.text, "/") {
			return nil, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("a range bound on field %q must be an address, not a CIDR prefix %q", def.Name, v.text)}
		}
		t.Addr, err = parseAddr(def, v)
	}
	if err != nil {
		return nil, err
	}
	return t, nil
}

// value resolves field:value and field:"value" by the field's type.
func (r *resolver) value(def event.FieldDef, v value) (Node, error) {
	if v.wild && def.Type != event.Keyword && def.Type != event.Text {
		hint := ""
		if def.Type == event.IP {
			hint = "; use a CIDR prefix such as 10.0.0.0/8"
		}
		return nil, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("wildcards work on keyword and text fields only; field %q has type %s%s", def.Name, def.Type, hint)}
	}
	if !v.quoted && !v.wild && def.Type != event.IP && looksLikeCIDR(v.text) {
		return nil, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("CIDR prefix %s on %s field %q: CIDR works on IP fields only (quote the value to search it as text)", v.text, def.Type, def.Name)}
	}
	switch def.Type {
	case event.Keyword:
		op := OpEq
		str := v.text
		switch {
		case v.quoted:
			op = OpPhrase
		case v.wild:
			op, str = OpWildcard, v.pattern
		}
		t, err := r.newTerm(v.pos, def, op)
		if err != nil {
			return nil, err
		}
		t.Str = str
		return t, nil

	case event.Text:
		if v.wild {
			if !singleWordPattern(v.pattern) {
				return nil, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("a wildcard on text field %q must be one word of letters and digits, not %q", def.Name, v.text)}
			}
			t, err := r.newTerm(v.pos, def, OpWildcard)
			if err != nil {
				return nil, err
			}
			t.Str = v.pattern
			return t, nil
		}
		toks := Tokenize(v.text)
		if len(toks) == 0 {
			return nil, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("%q has no letters or digits to search for in text field %q", v.text, def.Name)}
		}
		if len(toks) == 1 && !v.quoted {
			t, err := r.newTerm(v.pos, def, OpEq)
			if err != nil {
				return nil, err
			}
			t.Str = toks[0]
			return t, nil
		}
		t, err := r.newTerm(v.pos, def, OpPhrase)
		if err != nil {
			return nil, err
		}
		t.Str = v.text
		return t, nil

	case event.IP:
		if strings.Contains(v.text, "/") {
			pfx, err := parsePrefix(def, v)
			if err != nil {
				return nil, err
			}
			t, err := r.newTerm(v.pos, def, OpCIDR)
			if err != nil {
				return nil, err
			}
			t.Prefix = pfx
			return t, nil
		}
		a, err := parseAddr(def, v)
		if err != nil {
			return nil, err
		}
		t, err := r.newTerm(v.pos, def, OpEq)
		if err != nil {
			return nil, err
		}
		t.Addr = a
		return t, nil

	case event.Long, event.Double:
		var n float64
		var err error
		if def.Type == event.Long {
			n, err = parseLong(def, v)
		} else {
			n, err = parseDouble(def, v)
		}
		if err != nil {
			return nil, err
		}
		t, err := r.newTerm(v.pos, def, OpEq)
		if err != nil {
			return nil, err
		}
		t.Num = n
		return t, nil

	case event.Date:
		at, day, err := parseDate(def, v)
		if err != nil {
			return nil, err
		}
		if !day {
			t, err := r.newTerm(v.pos, def, OpEq)
			if err != nil {
				return nil, err
			}
			t.Time = at
			return t, nil
		}
		// A bare date is the whole UTC day: [day, day+24h).
		from, err := r.newTerm(v.pos, def, OpGte)
		if err != nil {
			return nil, err
		}
		to, err := r.newTerm(v.pos, def, OpLt)
		if err != nil {
			return nil, err
		}
		from.Time, to.Time = at, at.Add(24*time.Hour)
		return &And{Nodes: []Node{from, to}}, nil

	case event.Bool:
		var b bool
		switch {
		case strings.EqualFold(v.text, "true"):
			b = true
		case strings.EqualFold(v.text, "false"):
		default:
			return nil, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("field %q takes true or false, not %q", def.Name, v.text)}
		}
		t, err := r.newTerm(v.pos, def, OpEq)
		if err != nil {
			return nil, err
		}
		t.Bool = b
		return t, nil
	}
	return nil, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("field %q has type %q, which the query language cannot search", def.Name, def.Type)}
}

// looksLikeCIDR reports whether s parses as an IP prefix.
func looksLikeCIDR(s string) bool {
	_, err := netip.ParsePrefix(s)
	return err == nil
}

// singleWordPattern reports whether a wildcard pattern can match a token:
// apart from unescaped * and ?, only letters and digits.
func singleWordPattern(pat string) bool {
	for i := 0; i < len(pat); {
		r, n := utf8.DecodeRuneInString(pat[i:])
		i += n
		switch {
		case r == '*' || r == '?':
		case r == '\\':
			return false // only * ? \ are escaped in patterns: none is a token rune
		case !isTokenRune(r):
			return false
		}
	}
	return true
}

func parseLong(def event.FieldDef, v value) (float64, error) {
	s := strings.TrimSpace(v.text)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("%q is too large for field %q: the limit is ±%d", v.text, def.Name, int64(maxExactInt))}
		}
		return 0, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("field %q takes whole numbers, not %q", def.Name, v.text)}
	}
	if n > maxExactInt || n < -maxExactInt {
		return 0, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("%q is too large for field %q: the limit is ±%d", v.text, def.Name, int64(maxExactInt))}
	}
	return float64(n), nil
}

func parseDouble(def event.FieldDef, v value) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v.text), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("field %q takes numbers, not %q", def.Name, v.text)}
	}
	return f, nil
}

// parseDate accepts RFC 3339 (fractional seconds optional) and a bare date
// 2006-01-02, which is that day's UTC midnight (day is then true).
func parseDate(def event.FieldDef, v value) (t time.Time, day bool, err error) {
	s := strings.TrimSpace(v.text)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), false, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UTC(), true, nil
	}
	return time.Time{}, false, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("field %q takes dates such as 2026-01-02 or 2026-01-02T15:04:05Z, not %q", def.Name, v.text)}
}

func parseAddr(def event.FieldDef, v value) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(v.text))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("field %q takes IP addresses or CIDR prefixes, not %q", def.Name, v.text)}
	}
	return a.Unmap(), nil
}

func parsePrefix(def event.FieldDef, v value) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(v.text))
	if err != nil {
		return netip.Prefix{}, &ParseError{Pos: v.pos, Msg: fmt.Sprintf("field %q takes IP addresses or CIDR prefixes, not %q", def.Name, v.text)}
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// normalize flattens nested And/Or, drops All inside And, turns an Or with
// an All into All, unwraps single-child And/Or and removes double negation.
func normalize(n Node) Node {
	switch n := n.(type) {
	case *And:
		var out []Node
		for _, c := range n.Nodes {
			switch c := normalize(c).(type) {
			case *And:
				out = append(out, c.Nodes...)
			case *All:
			default:
				out = append(out, c)
			}
		}
		switch len(out) {
		case 0:
			return &All{}
		case 1:
			return out[0]
		}
		return &And{Nodes: out}
	case *Or:
		var out []Node
		for _, c := range n.Nodes {
			switch c := normalize(c).(type) {
			case *Or:
				out = append(out, c.Nodes...)
			case *All:
				return &All{}
			default:
				out = append(out, c)
			}
		}
		if len(out) == 1 {
			return out[0]
		}
		return &Or{Nodes: out}
	case *Not:
		c := normalize(n.Node)
		if inner, ok := c.(*Not); ok {
			return inner.Node
		}
		return &Not{Node: c}
	}
	return n
}
