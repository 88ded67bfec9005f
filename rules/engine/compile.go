package engine

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/csirt-toscana/platform/rules/mapping"
	"github.com/csirt-toscana/platform/rules/sigma"
)

// Options tune compilation.
type Options struct {
	// Mapping maps logsources and fields; nil means mapping.Default().
	Mapping *mapping.Mapping
	// Strict makes an unsupported rule a compile error instead of a
	// skipped rule.
	Strict bool
	// MissingFieldsUnknown gives a test on an absent field the value
	// "unknown" (SQL NULL, three-valued logic) instead of false, so that
	// `not filter` does not hold when the filter's field is absent. This is
	// the semantics of SQL-based engines (zircolite) and go-sigma-rule-engine;
	// the default (false) is that of Elasticsearch and Splunk, where a
	// missing field never stops a detection.
	MissingFieldsUnknown bool
	// NoPrefilter evaluates every routed rule for every event (for tests
	// that check the literal prefilter never changes a result).
	NoPrefilter bool
}

// Skipped is a rule that is not evaluated, and why.
type Skipped struct {
	Rule   *sigma.Rule
	Reason string
}

// CompileError names the rule that failed to compile and where.
type CompileError struct {
	File   string
	Line   int
	Col    int
	RuleID string
	Msg    string
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("%s:%d:%d: rule %s: %s", e.File, e.Line, e.Col, e.RuleID, e.Msg)
}

// Bundle is a compiled, immutable set of rules.
type Bundle struct {
	mapping *mapping.Mapping
	fields  []string
	fieldIx map[string]int
	rules   []*sigma.Rule
	routes  map[string]*route // by event.dataset
	all     *route            // passthrough mapping: every event
	skipped []Skipped
	notes   []ClosedNote // rules naming fields a closed dataset never carries
	filters []*sigma.Filter
	unknown bool
}

// Rules returns the rules the bundle evaluates.
func (b *Bundle) Rules() []*sigma.Rule { return b.rules }

// Skipped returns the rules that are not evaluated, with the reason.
func (b *Bundle) Skipped() []Skipped { return b.skipped }

// ClosedNotes returns, per rule and closed dataset (mapping.Target.Closed),
// the rules that name a field the dataset never carries: whether the rule
// is evaluated there anyway (on its other tests) or not, and why. A rule
// evaluated on none of its datasets is also in Skipped.
func (b *Bundle) ClosedNotes() []ClosedNote { return b.notes }

// Filters returns the meta-filters applied as suppressions.
func (b *Bundle) Filters() []*sigma.Filter { return b.filters }

// Datasets returns the datasets some rule applies to.
func (b *Bundle) Datasets() []string {
	out := make([]string, 0, len(b.routes))
	for d := range b.routes {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

type route struct {
	entries  []entry
	always   []int32 // entries without a usable literal
	scanners []scanner
	kw       *kwScanner
}

type entry struct {
	rule     int32
	match    Match // template: the event is filled in
	expr     node
	suppress []node
}

// scanner indexes one field: the literals of the route's rules.
type scanner struct {
	field   int
	ac      *acMachine
	entries [][]int32 // per literal: the entries it triggers
}

type kwScanner struct {
	ac      *acMachine
	entries [][]int32
}

// lit is a prefilter literal: a lower-cased string that must occur in the
// lower-cased value of field (-1: any value, for keywords).
type lit struct {
	field int
	s     string
}

// Compile builds a bundle from a collection. Unsupported rules and filters
// are skipped and listed in Skipped (an error when opts.Strict). Files that
// did not parse make Compile fail with the first *sigma.ParseError.
func Compile(c *sigma.Collection, opts Options) (*Bundle, error) {
	if len(c.Errors) > 0 {
		return nil, fmt.Errorf("compiling rules: %w", errors.Join(c.Errors...))
	}
	return CompileRules(c.Rules, c.Filters, opts)
}

// CompileRules builds a bundle from rules and filters.
func CompileRules(rules []*sigma.Rule, filters []*sigma.Filter, opts Options) (*Bundle, error) {
	m := opts.Mapping
	if m == nil {
		m = mapping.Default()
	}
	b := &Bundle{mapping: m, fieldIx: map[string]int{}, routes: map[string]*route{}, unknown: opts.MissingFieldsUnknown}
	type pending struct {
		lits [][]lit // per entry; nil: always evaluate
	}
	pend := map[*route]*pending{}
	addEntry := func(ds string, e entry, lits []lit) {
		var r *route
		if ds == "" {
			if b.all == nil {
				b.all = &route{}
			}
			r = b.all
		} else {
			r = b.routes[ds]
			if r == nil {
				r = &route{}
				b.routes[ds] = r
			}
		}
		p := pend[r]
		if p == nil {
			p = &pending{}
			pend[r] = p
		}
		r.entries = append(r.entries, e)
		p.lits = append(p.lits, lits)
	}
	for _, f := range filters {
		if !f.Supported() {
			b.skipped = append(b.skipped, Skipped{Reason: fmt.Sprintf("filter %s (%s): %s", f.ID, f.File, f.Unsupported[0])})
			if opts.Strict {
				return nil, &CompileError{File: f.File, Line: f.Unsupported[0].Pos.Line, Col: f.Unsupported[0].Pos.Col, RuleID: f.ID, Msg: f.Unsupported[0].Reason}
			}
			continue
		}
		b.filters = append(b.filters, f)
	}
	for _, r := range rules {
		if !r.Supported() {
			u := r.Unsupported[0]
			if opts.Strict {
				return nil, &CompileError{File: r.File, Line: u.Pos.Line, Col: u.Pos.Col, RuleID: r.Ref(), Msg: u.Reason}
			}
			b.skipped = append(b.skipped, Skipped{Rule: r, Reason: u.String()})
			continue
		}
		var targets []mapping.Target
		if m.Passthrough {
			targets = []mapping.Target{{}}
		} else {
			targets = m.Targets(r.LogSource)
			if len(targets) == 0 {
				b.skipped = append(b.skipped, Skipped{Rule: r, Reason: fmt.Sprintf("logsource %s is not mapped to any dataset by mapping %q", lsString(r.LogSource), m.Name)})
				continue
			}
		}
		var applied []*sigma.Filter
		for _, f := range b.filters {
			if filterApplies(f, r) {
				applied = append(applied, f)
			}
		}
		tmpl := Match{RuleID: r.ID, Name: r.Name, Title: r.Title, Level: r.Level, Tags: r.Tags, Rule: r}
		type compiled struct {
			ds   string
			e    entry
			lits []lit
		}
		var kept []compiled
		var reasons []string
		var firstAbsent *absentField
		for ti := range targets {
			t := &targets[ti]
			c := &compiler{b: b, t: t, closed: !m.Passthrough && t.Closed}
			expr, err := c.detection(r.Detection)
			if err != nil {
				return nil, &CompileError{File: r.File, Line: r.Detection.Pos.Line, Col: r.Detection.Pos.Col, RuleID: r.Ref(), Msg: err.Error()}
			}
			e := entry{match: tmpl, expr: expr}
			for _, f := range applied {
				fx, err := c.detection(f.Detection)
				if err != nil {
					return nil, &CompileError{File: f.File, Line: f.Detection.Pos.Line, Col: f.Detection.Pos.Col, RuleID: f.ID, Msg: err.Error()}
				}
				if c.closed && hasConst(fx) {
					// `rule and not filter` with the filter unknown is
					// unknown: no match. Suppress unless the filter is false.
					fx = &unknownIsTrue{x: fx}
				}
				e.suppress = append(e.suppress, fx)
			}
			if c.closed {
				note, ok := closedCheck(m, t, r, applied, &e)
				if note != nil {
					b.notes = append(b.notes, *note)
				}
				if !ok {
					reasons = append(reasons, note.Reason)
					if firstAbsent == nil {
						firstAbsent = &note.fields[0]
					}
					continue
				}
			}
			if len(t.Conditions) > 0 {
				keys := make([]string, 0, len(t.Conditions))
				for k := range t.Conditions {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				and := &andNode{}
				for _, k := range keys {
					and.x = append(and.x, &fieldNode{field: b.intern(k), vals: []valueMatcher{{kind: sigma.KindString, strs: []strMatcher{newStrMatcher(sigma.Pattern{{Kind: sigma.TokLit, Lit: t.Conditions[k]}}, false)}}}})
				}
				and.x = append(and.x, e.expr)
				e.expr = and
			}
			kept = append(kept, compiled{ds: t.Dataset, e: e, lits: requirement(e.expr)})
		}
		if len(kept) == 0 {
			reason := strings.Join(reasons, "; ")
			if opts.Strict {
				return nil, &CompileError{File: r.File, Line: firstAbsent.pos.Line, Col: firstAbsent.pos.Col, RuleID: r.Ref(), Msg: reason}
			}
			b.skipped = append(b.skipped, Skipped{Rule: r, Reason: reason})
			continue
		}
		idx := int32(len(b.rules))
		b.rules = append(b.rules, r)
		for _, k := range kept {
			k.e.rule = idx
			addEntry(k.ds, k.e, k.lits)
		}
	}
	for r, p := range pend {
		if opts.NoPrefilter {
			clear(p.lits)
		}
		buildIndex(r, p.lits)
	}
	return b, nil
}

func lsString(ls sigma.LogSource) string {
	var parts []string
	for _, kv := range [][2]string{{"product", ls.Product}, {"category", ls.Category}, {"service", ls.Service}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	if len(parts) == 0 {
		return "(empty)"
	}
	return strings.Join(parts, ",")
}

func filterApplies(f *sigma.Filter, r *sigma.Rule) bool {
	for _, ref := range f.Rules {
		if ref != "" && (ref == r.ID || ref == r.Name) {
			return true
		}
	}
	return false
}

func (b *Bundle) intern(field string) int {
	if i, ok := b.fieldIx[field]; ok {
		return i
	}
	i := len(b.fields)
	b.fields = append(b.fields, field)
	b.fieldIx[field] = i
	return i
}

type compiler struct {
	b *Bundle
	t *mapping.Target
	// closed: the target's dataset carries only schema fields; a test on
	// any other field compiles to the constant unknown.
	closed bool
}

func (c *compiler) detection(d *sigma.Detection) (node, error) {
	searches := map[string]node{}
	for name, s := range d.Searches {
		n, err := c.search(s)
		if err != nil {
			return nil, fmt.Errorf("search %q: %w", name, err)
		}
		searches[name] = n
	}
	return c.expr(d.Condition, searches)
}

// exprs compiles the operands of an and/or.
func (c *compiler) exprs(es []sigma.Expr, s map[string]node) ([]node, error) {
	out := make([]node, 0, len(es))
	for _, e := range es {
		n, err := c.expr(e, s)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func (c *compiler) expr(e sigma.Expr, s map[string]node) (node, error) {
	switch x := e.(type) {
	case sigma.And:
		xs, err := c.exprs(x.X, s)
		if err != nil {
			return nil, err
		}
		return &andNode{x: xs}, nil
	case sigma.Or:
		xs, err := c.exprs(x.X, s)
		if err != nil {
			return nil, err
		}
		return &orNode{x: xs}, nil
	case sigma.Not:
		cn, err := c.expr(x.X, s)
		if err != nil {
			return nil, err
		}
		return &notNode{x: cn}, nil
	case sigma.Ref:
		n, ok := s[x.Name]
		if !ok {
			return nil, fmt.Errorf("unknown search %q", x.Name)
		}
		return n, nil
	case nil:
		return nil, fmt.Errorf("no condition")
	}
	return nil, fmt.Errorf("unexpected condition node %T", e)
}

func (c *compiler) search(s *sigma.Search) (node, error) {
	or := &orNode{}
	for _, alt := range s.Alts {
		and := &andNode{}
		for _, fm := range alt {
			n, err := c.fieldMatch(fm)
			if err != nil {
				return nil, err
			}
			and.x = append(and.x, n)
		}
		if len(and.x) == 1 {
			or.x = append(or.x, and.x[0])
		} else {
			or.x = append(or.x, and)
		}
	}
	if len(or.x) == 1 {
		return or.x[0], nil
	}
	return or, nil
}

func (c *compiler) fieldMatch(fm *sigma.FieldMatch) (node, error) {
	keyword := fm.Field == ""
	if c.closed && !c.testable(fm) {
		return &constNode{v: tUnknown}, nil
	}
	n := &fieldNode{field: -1, all: fm.All, neq: fm.Neq}
	if !keyword {
		n.field = c.b.intern(c.b.mapping.Field(c.t, fm.Field))
	}
	for _, v := range fm.Values {
		vm := valueMatcher{kind: v.Kind, cased: v.Cased, re: v.Regex, prefix: v.Prefix, op: v.Op, num: v.Num, exists: v.Exists, timePart: v.TimePart}
		switch v.Kind {
		case sigma.KindString:
			for _, p := range v.Alts {
				if keyword && len(fm.Modifiers) == 0 {
					p = withStars(p)
				}
				vm.strs = append(vm.strs, newStrMatcher(p, v.Cased))
			}
		case sigma.KindFieldRef:
			vm.ref = c.b.intern(c.b.mapping.Field(c.t, v.Ref))
		case sigma.KindNull, sigma.KindExists:
			if keyword {
				return nil, fmt.Errorf("keywords cannot be null or use exists")
			}
			n.presence = true
		}
		n.vals = append(n.vals, vm)
	}
	if n.presence && len(n.vals) != 1 {
		return nil, fmt.Errorf("field %s: null and exists take a single value", fm.Field)
	}
	return n, nil
}

// withStars makes a keyword a substring search.
func withStars(p sigma.Pattern) sigma.Pattern {
	out := make(sigma.Pattern, 0, len(p)+2)
	if len(p) == 0 || p[0].Kind != sigma.TokStar {
		out = append(out, sigma.Token{Kind: sigma.TokStar})
	}
	out = append(out, p...)
	if len(out) == 0 || out[len(out)-1].Kind != sigma.TokStar {
		out = append(out, sigma.Token{Kind: sigma.TokStar})
	}
	return out
}

// requirement returns literals of which at least one occurs in every event
// the node matches, or nil when there is no such set.
func requirement(n node) []lit {
	switch x := n.(type) {
	case *andNode:
		var best []lit
		for _, y := range x.x {
			if r := requirement(y); r != nil && better(r, best) {
				best = r
			}
		}
		return best
	case *orNode:
		var out []lit
		for _, y := range x.x {
			if canTrue, _ := outcomes(y); !canTrue {
				continue // never makes the OR true: requires nothing
			}
			r := requirement(y)
			if r == nil {
				return nil
			}
			out = append(out, r...)
		}
		return out
	case *fieldNode:
		if x.neq || x.presence {
			return nil
		}
		var out []lit
		var best []lit
		for i := range x.vals {
			r := valueLits(x.field, &x.vals[i])
			if x.all {
				if r != nil && better(r, best) {
					best = r
				}
				continue
			}
			if r == nil {
				return nil
			}
			out = append(out, r...)
		}
		if x.all {
			return best
		}
		return out
	}
	return nil
}

func valueLits(field int, v *valueMatcher) []lit {
	switch v.kind {
	case sigma.KindString:
		var out []lit
		for _, m := range v.strs {
			s := ""
			if m.kind == mGlob {
				for _, t := range m.toks {
					if t.Kind == sigma.TokLit && len(t.Lit) > len(s) {
						s = t.Lit
					}
				}
			} else {
				s = m.lit
			}
			s = strings.ToLower(s)
			if s == "" {
				return nil
			}
			out = append(out, lit{field: field, s: s})
		}
		return out
	case sigma.KindRegex:
		if s := sigma.RegexLiteral(v.re); s != "" {
			return []lit{{field: field, s: s}}
		}
	}
	return nil
}

// better prefers the literal set whose shortest literal is longest, then
// the smaller set.
func better(a, b []lit) bool {
	if b == nil {
		return true
	}
	ma, mb := minLen(a), minLen(b)
	if ma != mb {
		return ma > mb
	}
	return len(a) < len(b)
}

func minLen(ls []lit) int {
	m := 1 << 30
	for _, l := range ls {
		if len(l.s) < m {
			m = len(l.s)
		}
	}
	return m
}

func buildIndex(r *route, lits [][]lit) {
	type acc struct {
		ids     map[string]int32
		pats    []string
		entries [][]int32
	}
	byField := map[int]*acc{}
	var order []int
	for ei, ls := range lits {
		if ls == nil {
			r.always = append(r.always, int32(ei))
			continue
		}
		for _, l := range ls {
			a := byField[l.field]
			if a == nil {
				a = &acc{ids: map[string]int32{}}
				byField[l.field] = a
				order = append(order, l.field)
			}
			id, ok := a.ids[l.s]
			if !ok {
				id = int32(len(a.pats))
				a.ids[l.s] = id
				a.pats = append(a.pats, l.s)
				a.entries = append(a.entries, nil)
			}
			es := a.entries[id]
			if len(es) == 0 || es[len(es)-1] != int32(ei) {
				a.entries[id] = append(es, int32(ei))
			}
		}
	}
	sort.Ints(order)
	for _, f := range order {
		a := byField[f]
		if f == -1 {
			r.kw = &kwScanner{ac: buildAC(a.pats), entries: a.entries}
			continue
		}
		r.scanners = append(r.scanners, scanner{field: f, ac: buildAC(a.pats), entries: a.entries})
	}
}
