package engine

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/rules/mapping"
	"github.com/csirt-toscana/platform/rules/sigma"
)

// openPrefixes are the dotted prefixes under which the schema allows names
// it does not list: ECS custom labels (labels.*, any keyword a pipeline
// adds) and the flattened RFC 5424 structured data the syslog parser writes
// (log.syslog.structured_data.<sd-id>.<param>). A field under one of them
// may be present on any dataset, so it is never a reason to skip a rule.
var openPrefixes = []string{"labels.", "log.syslog.structured_data."}

// inSchema reports whether an event of a closed dataset can carry field.
func inSchema(field string) bool {
	if _, ok := event.Lookup(field); ok {
		return true
	}
	for _, p := range openPrefixes {
		if strings.HasPrefix(field, p) && len(field) > len(p) {
			return true
		}
	}
	return false
}

// absentField is a field a rule (or a filter applied to it) names that the
// events of a closed dataset never carry.
type absentField struct {
	name   string // as written in the rule
	mapped string // after mapping
	filter string // id of the filter naming it; "" for the rule itself
	pos    sigma.Pos
}

func (a absentField) String() string {
	s := fmt.Sprintf("%q (mapped to %q", a.name, a.mapped)
	if a.filter != "" {
		s += ", in filter " + a.filter
	}
	return s + ")"
}

// absentFields lists, in document order and without repeats, the fields
// that detection d names (in the searches its condition uses) and that the
// schema does not define once mapped for t. filter is the id of the filter
// d belongs to, "" for a rule. Keywords (searches without a field) name no
// field.
func absentFields(m *mapping.Mapping, t *mapping.Target, d *sigma.Detection, filter string) []absentField {
	if d == nil {
		return nil
	}
	var out []absentField
	seen := map[string]bool{}
	check := func(name string, pos sigma.Pos) {
		if name == "" || seen[name] {
			return
		}
		seen[name] = true
		if mapped := m.Field(t, name); !inSchema(mapped) {
			out = append(out, absentField{name: name, mapped: mapped, filter: filter, pos: pos})
		}
	}
	used := map[string]bool{}
	usedSearches(d.Condition, used)
	for _, name := range searchOrder(d) {
		s := d.Searches[name]
		if s == nil || !used[name] {
			continue // a search the condition does not use is never tested
		}
		for _, alt := range s.Alts {
			for _, fm := range alt {
				check(fm.Field, fm.Pos)
				for i := range fm.Values {
					if v := &fm.Values[i]; v.Kind == sigma.KindFieldRef {
						check(v.Ref, v.Pos)
					}
				}
			}
		}
	}
	return out
}

// searchOrder is the detection's search names in document order, then any
// search Order does not list (detections built in code).
func searchOrder(d *sigma.Detection) []string {
	out := append([]string(nil), d.Order...)
	listed := make(map[string]bool, len(out))
	for _, n := range out {
		listed[n] = true
	}
	var rest []string
	for n := range d.Searches {
		if !listed[n] {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// usedSearches adds the names of the searches the condition refers to.
func usedSearches(e sigma.Expr, used map[string]bool) {
	switch x := e.(type) {
	case sigma.And:
		for _, y := range x.X {
			usedSearches(y, used)
		}
	case sigma.Or:
		for _, y := range x.X {
			usedSearches(y, used)
		}
	case sigma.Not:
		usedSearches(x.X, used)
	case sigma.Ref:
		used[x.Name] = true
	}
}

// ClosedNote says that a rule names fields a closed dataset never carries
// (mapping.Target.Closed), and what the engine does about it. On such a
// dataset a test on one of those fields is unknown, never true nor false,
// as with Options.MissingFieldsUnknown: a rule that can still be true
// through its other tests is evaluated on them (Evaluated); one that cannot
// (the field is required, or sits under `not`, or in a filter that could
// then never be false) is not evaluated on that dataset.
type ClosedNote struct {
	Rule      *sigma.Rule
	Dataset   string
	Evaluated bool
	Reason    string
	fields    []absentField
}

// closedCheck decides whether the entry e, compiled from rule r and the
// filters fs for the closed target t, can still match. It returns nil when
// the rule names no field outside the schema.
func closedCheck(m *mapping.Mapping, t *mapping.Target, r *sigma.Rule, fs []*sigma.Filter, e *entry) (*ClosedNote, bool) {
	fields := absentFields(m, t, r.Detection, "")
	ok := true
	if len(fields) > 0 {
		ok, _ = outcomes(e.expr)
	}
	for i, f := range fs {
		ff := absentFields(m, t, f.Detection, f.ID)
		if len(ff) == 0 {
			continue
		}
		fields = append(fields, ff...)
		if w, isW := e.suppress[i].(*unknownIsTrue); isW {
			if _, canFalse := outcomes(w.x); !canFalse {
				ok = false // the filter would suppress every event
			}
		}
	}
	if len(fields) == 0 {
		return nil, true
	}
	return &ClosedNote{Rule: r, Dataset: t.Dataset, Evaluated: ok, Reason: absentReason(t.Dataset, fields, ok), fields: fields}, ok
}

// absentReason says, for an analyst, why a rule is not evaluated on a
// closed dataset, or how it is.
func absentReason(dataset string, fields []absentField, evaluated bool) string {
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = f.String()
	}
	var s string
	if len(fields) == 1 {
		s = fmt.Sprintf("field %s is not produced by dataset %s: the rule could never test it", parts[0], dataset)
	} else {
		s = fmt.Sprintf("fields %s are not produced by dataset %s: the rule could never test them", strings.Join(parts, ", "), dataset)
	}
	if evaluated {
		s += "; it is evaluated on its other tests only"
	}
	return s
}

// testable reports whether a field match names only fields the closed
// target's events can carry.
func (c *compiler) testable(fm *sigma.FieldMatch) bool {
	if fm.Field != "" && !inSchema(c.b.mapping.Field(c.t, fm.Field)) {
		return false
	}
	for i := range fm.Values {
		if v := &fm.Values[i]; v.Kind == sigma.KindFieldRef && !inSchema(c.b.mapping.Field(c.t, v.Ref)) {
			return false
		}
	}
	return true
}

// constNode is a test whose result is known when compiling: a test on a
// field a closed dataset never carries is tUnknown.
type constNode struct{ v tri }

func (n *constNode) eval(*Evaluator) tri { return n.v }

// unknownIsTrue wraps a filter compiled with unknown tests: the rule is
// `rule and not filter`, which is not true when the filter is unknown, so
// the filter suppresses unless it is false.
type unknownIsTrue struct{ x node }

func (n *unknownIsTrue) eval(c *Evaluator) tri {
	if n.x.eval(c) == tFalse {
		return tFalse
	}
	return tTrue
}

// hasConst reports whether a compiled expression contains a constant test.
func hasConst(n node) bool {
	switch x := n.(type) {
	case *constNode:
		return true
	case *andNode:
		return slices.ContainsFunc(x.x, hasConst)
	case *orNode:
		return slices.ContainsFunc(x.x, hasConst)
	case *notNode:
		return hasConst(x.x)
	case *unknownIsTrue:
		return hasConst(x.x)
	}
	return false
}

// outcomes says whether a compiled expression can be true and whether it
// can be false, taking every field test as free to be either and constant
// tests as their value. It ignores that two tests may be related (the same
// search used twice), so it may say "can" where the expression cannot; it
// never says "cannot" where it can.
func outcomes(n node) (canTrue, canFalse bool) {
	switch x := n.(type) {
	case *constNode:
		return x.v == tTrue, x.v == tFalse
	case *andNode:
		canTrue = true
		for _, y := range x.x {
			t, f := outcomes(y)
			canTrue = canTrue && t
			canFalse = canFalse || f
		}
		return canTrue, canFalse
	case *orNode:
		canFalse = true
		for _, y := range x.x {
			t, f := outcomes(y)
			canTrue = canTrue || t
			canFalse = canFalse && f
		}
		return canTrue, canFalse
	case *notNode:
		t, f := outcomes(x.x)
		return f, t
	case *unknownIsTrue:
		_, f := outcomes(x.x)
		return true, f
	}
	return true, true
}
