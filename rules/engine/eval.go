package engine

import (
	"strconv"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/rules/sigma"
)

// tri is a three-valued truth: a test on an absent field is unknown when
// Options.MissingFieldsUnknown is set (SQL NULL semantics), false otherwise.
type tri uint8

const (
	tFalse tri = iota
	tTrue
	tUnknown
)

func triOf(b bool) tri {
	if b {
		return tTrue
	}
	return tFalse
}

type node interface {
	eval(c *Evaluator) tri
}

type andNode struct{ x []node }
type orNode struct{ x []node }
type notNode struct{ x node }

// fieldNode is one FieldMatch; field -1 is a keyword search over every value.
type fieldNode struct {
	field    int
	vals     []valueMatcher
	all      bool
	neq      bool
	presence bool // a single null or exists value
}

func (n *andNode) eval(c *Evaluator) tri {
	r := tTrue
	for _, x := range n.x {
		switch x.eval(c) {
		case tFalse:
			return tFalse
		case tUnknown:
			r = tUnknown
		}
	}
	return r
}

func (n *orNode) eval(c *Evaluator) tri {
	r := tFalse
	for _, x := range n.x {
		switch x.eval(c) {
		case tTrue:
			return tTrue
		case tUnknown:
			r = tUnknown
		}
	}
	return r
}

func (n *notNode) eval(c *Evaluator) tri {
	switch n.x.eval(c) {
	case tTrue:
		return tFalse
	case tFalse:
		return tTrue
	}
	return tUnknown
}

func (n *fieldNode) eval(c *Evaluator) tri {
	var sl *slot
	if n.field < 0 {
		sl = c.keywords()
	} else {
		sl = c.get(n.field)
	}
	if n.presence {
		v := &n.vals[0]
		if v.kind == sigma.KindNull {
			return triOf(!sl.present)
		}
		return triOf(sl.present == v.exists)
	}
	if !sl.present && n.field >= 0 && c.b.unknown {
		return tUnknown
	}
	if n.all && !n.neq {
		for i := range n.vals {
			if !c.valueMatches(&n.vals[i], sl) {
				return tFalse
			}
		}
		return tTrue
	}
	any := false
	for i := range n.vals {
		if c.valueMatches(&n.vals[i], sl) {
			any = true
			break
		}
	}
	return triOf(any != n.neq)
}

func (c *Evaluator) valueMatches(v *valueMatcher, sl *slot) bool {
	if !sl.present {
		return false
	}
	if v.kind == sigma.KindFieldRef {
		other := c.get(v.ref)
		if !other.present {
			return false
		}
		a, b := sl.lower, other.lower
		if v.cased {
			a, b = sl.vals, other.vals
		}
		for _, x := range a {
			for _, y := range b {
				if x == y {
					return true
				}
			}
		}
		return false
	}
	for i := range sl.vals {
		if v.matchElem(sl.vals[i], sl.lower[i], sl.raw) {
			return true
		}
	}
	return false
}

// slot caches one field of the current event: its values as strings and
// lower-cased, computed at most once per event.
type slot struct {
	gen     uint32
	present bool
	raw     any
	vals    []string
	lower   []string
}

// Evaluator evaluates events against a bundle. It reuses its buffers from
// event to event and is not safe for concurrent use.
type Evaluator struct {
	b     *Bundle
	ev    event.Event
	gen   uint32
	slots []slot
	kw    slot
	stamp map[*route][]uint32
	hits  []int32

	// Stats, cumulative.
	Events     uint64
	Evaluated  uint64 // rule evaluations after the prefilter
	Matched    uint64
	Suppressed uint64
}

// NewEvaluator returns an evaluator for the bundle.
func (b *Bundle) NewEvaluator() *Evaluator {
	e := &Evaluator{b: b, slots: make([]slot, len(b.fields)), stamp: map[*route][]uint32{}}
	for _, r := range b.routes {
		e.stamp[r] = make([]uint32, len(r.entries))
	}
	if b.all != nil {
		e.stamp[b.all] = make([]uint32, len(b.all.entries))
	}
	return e
}

// Bundle returns the bundle the evaluator evaluates.
func (e *Evaluator) Bundle() *Bundle { return e.b }

func (e *Evaluator) get(i int) *slot {
	s := &e.slots[i]
	if s.gen == e.gen {
		return s
	}
	s.gen = e.gen
	v, ok := e.ev[e.b.fields[i]]
	fill(s, v, ok)
	return s
}

func fill(s *slot, v any, ok bool) {
	s.raw = v
	s.vals = s.vals[:0]
	s.lower = s.lower[:0]
	s.present = ok && v != nil
	if !s.present {
		return
	}
	switch x := v.(type) {
	case string:
		s.vals = append(s.vals, x)
	case []string:
		s.vals = append(s.vals, x...)
	case int64:
		s.vals = append(s.vals, strconv.FormatInt(x, 10))
	case float64:
		s.vals = append(s.vals, strconv.FormatFloat(x, 'f', -1, 64))
	case bool:
		s.vals = append(s.vals, strconv.FormatBool(x))
	case time.Time:
		s.vals = append(s.vals, x.UTC().Format(time.RFC3339Nano))
	case []any:
		for _, y := range x {
			if y != nil {
				s.vals = append(s.vals, event.Event{"": y}.String(""))
			}
		}
	default:
		s.vals = append(s.vals, event.Event{"": v}.String(""))
	}
	if len(s.vals) == 0 {
		s.present = false
		return
	}
	for _, x := range s.vals {
		s.lower = append(s.lower, strings.ToLower(x))
	}
}

// keywords returns every value of the event, for full-text keywords.
func (e *Evaluator) keywords() *slot {
	s := &e.kw
	if s.gen == e.gen {
		return s
	}
	s.gen = e.gen
	s.vals, s.lower, s.raw = s.vals[:0], s.lower[:0], nil
	var tmp slot
	for _, v := range e.ev {
		fill(&tmp, v, true)
		s.vals = append(s.vals, tmp.vals...)
		s.lower = append(s.lower, tmp.lower...)
	}
	s.present = len(s.vals) > 0
	return s
}

// Eval appends to dst the matches of ev and returns it. The event is
// routed by event.dataset (every event when the mapping is "none").
func (e *Evaluator) Eval(ev event.Event, dst []Match) []Match {
	e.gen++
	if e.gen == 0 { // wrapped: invalidate every stamp
		for i := range e.slots {
			e.slots[i].gen = 0
		}
		e.kw.gen = 0
		for _, st := range e.stamp {
			clear(st)
		}
		e.gen = 1
	}
	e.ev = ev
	e.Events++
	if e.b.all != nil {
		dst = e.evalRoute(e.b.all, dst)
	}
	if len(e.b.routes) > 0 {
		if ds, ok := ev["event.dataset"].(string); ok {
			if r := e.b.routes[ds]; r != nil {
				dst = e.evalRoute(r, dst)
			}
		}
	}
	e.ev = nil
	return dst
}

func (e *Evaluator) evalRoute(r *route, dst []Match) []Match {
	stamp := e.stamp[r]
	gen := e.gen
	for i := range r.scanners {
		sc := &r.scanners[i]
		sl := e.get(sc.field)
		for _, v := range sl.lower {
			e.hits = sc.ac.scan(v, e.hits[:0])
			for _, id := range e.hits {
				for _, ei := range sc.entries[id] {
					stamp[ei] = gen
				}
			}
		}
	}
	if r.kw != nil {
		sl := e.keywords()
		for _, v := range sl.lower {
			e.hits = r.kw.ac.scan(v, e.hits[:0])
			for _, id := range e.hits {
				for _, ei := range r.kw.entries[id] {
					stamp[ei] = gen
				}
			}
		}
	}
	for _, ei := range r.always {
		stamp[ei] = gen
	}
	for ei := range r.entries {
		if stamp[ei] != gen {
			continue
		}
		en := &r.entries[ei]
		e.Evaluated++
		if en.expr.eval(e) != tTrue {
			continue
		}
		suppressed := false
		for _, s := range en.suppress {
			if s.eval(e) == tTrue {
				suppressed = true
				break
			}
		}
		if suppressed {
			e.Suppressed++
			continue
		}
		e.Matched++
		m := en.match
		m.Event = e.ev
		dst = append(dst, m)
	}
	return dst
}
