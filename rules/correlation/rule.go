package correlation

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Type is a correlation type of the specification.
type Type string

// The correlation types of Sigma specification 2.1.0.
const (
	EventCount      Type = "event_count"
	ValueCount      Type = "value_count"
	Temporal        Type = "temporal"
	TemporalOrdered Type = "temporal_ordered"
	ValueSum        Type = "value_sum"
	ValueAvg        Type = "value_avg"
	ValuePercentile Type = "value_percentile"
)

// Types lists every supported type, in the order of the specification.
var Types = []Type{EventCount, ValueCount, Temporal, TemporalOrdered, ValueSum, ValueAvg, ValuePercentile}

func (t Type) valid() bool {
	for _, k := range Types {
		if t == k {
			return true
		}
	}
	return false
}

// needsField reports whether the type aggregates a field named in the
// condition (condition.field).
func (t Type) needsField() bool {
	switch t {
	case ValueCount, ValueSum, ValueAvg, ValuePercentile:
		return true
	}
	return false
}

// temporal reports whether the type is temporal or temporal_ordered.
func (t Type) temporal() bool { return t == Temporal || t == TemporalOrdered }

// Pos is a position in a YAML source (1-based; 0 when unknown).
type Pos struct {
	Line, Col int
}

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

// Op is a comparison operator of a correlation condition.
type Op string

// Condition operators.
const (
	GT  Op = "gt"
	GTE Op = "gte"
	LT  Op = "lt"
	LTE Op = "lte"
	EQ  Op = "eq"
	NEQ Op = "neq"
)

// Comparison is one criterion of a condition: the aggregate <Op> Value.
type Comparison struct {
	Op    Op
	Value float64
	Pos   Pos
}

// Holds reports whether v satisfies the comparison.
func (c Comparison) Holds(v float64) bool {
	switch c.Op {
	case GT:
		return v > c.Value
	case GTE:
		return v >= c.Value
	case LT:
		return v < c.Value
	case LTE:
		return v <= c.Value
	case EQ:
		return v == c.Value
	case NEQ:
		return v != c.Value
	}
	return false
}

// Condition is the correlation condition: every comparison must hold
// (criteria are linked by AND, which expresses ranges such as gt 100, lte
// 200). Field names the aggregated field(s) for value_count, value_sum,
// value_avg and value_percentile; several fields for value_count count
// distinct tuples.
type Condition struct {
	Field       []string
	Comparisons []Comparison
	Pos         Pos
}

// Holds reports whether v satisfies every comparison. An empty condition
// never holds.
func (c Condition) Holds(v float64) bool {
	if len(c.Comparisons) == 0 {
		return false
	}
	for _, cmp := range c.Comparisons {
		if !cmp.Holds(v) {
			return false
		}
	}
	return true
}

// Monotone reports whether the condition only has lower bounds (gt, gte):
// once a growing aggregate satisfies it, more events cannot undo that, so
// the engine can fire as soon as it holds instead of waiting for the window
// to close.
func (c Condition) Monotone() bool {
	for _, cmp := range c.Comparisons {
		if cmp.Op != GT && cmp.Op != GTE {
			return false
		}
	}
	return true
}

// Threshold is the smallest integer count that satisfies a monotone
// condition (gt 9 and gte 10 both give 10); 0 when there is no lower bound.
func (c Condition) Threshold() int {
	th := 0.0
	for _, cmp := range c.Comparisons {
		var v float64
		switch cmp.Op {
		case GT:
			v = math.Floor(cmp.Value) + 1
		case GTE:
			v = math.Ceil(cmp.Value)
		default:
			continue
		}
		th = math.Max(th, v)
	}
	return int(th)
}

func (c Condition) String() string {
	parts := make([]string, 0, len(c.Comparisons)+1)
	if len(c.Field) > 0 {
		parts = append(parts, "field "+strings.Join(c.Field, ","))
	}
	for _, cmp := range c.Comparisons {
		parts = append(parts, string(cmp.Op)+" "+strconv.FormatFloat(cmp.Value, 'f', -1, 64))
	}
	return strings.Join(parts, " and ")
}

// Rule is one parsed Sigma correlation rule.
type Rule struct {
	File string // where it was read from, for messages
	Pos  Pos    // position of the document

	// Metadata (only the outermost correlation of a chain should carry it).
	ID, Name, Title  string
	Description      string
	Status, Author   string
	Date, Modified   string
	Level, Taxonomy  string
	References, Tags []string
	Fields           []string
	Falsepositives   []string

	Type Type
	// Rules are the referenced Sigma rules or correlations, by id or name,
	// as written; RulesPos holds the position of each.
	Rules    []string
	RulesPos []Pos
	// GroupBy are field names or alias names (see Aliases).
	GroupBy  []string
	Timespan time.Duration
	// Condition: for temporal types it counts the distinct referenced rules
	// (temporal) or the length of the ordered prefix (temporal_ordered);
	// when absent, every referenced rule is required.
	Condition Condition
	// Aliases maps an alias name (usable in GroupBy) to, per referenced rule
	// (id or name), the field holding the value in that rule's events.
	Aliases map[string]map[string]string
	// Generate: when true, the referenced rules also produce their own
	// findings; when false (the default) only the correlation does.
	Generate bool

	TypePos, TimespanPos, GroupByPos, AliasesPos Pos
}

// Ref is how the engine and its messages name the rule: its id, else its
// name, else its title, else its position.
func (r *Rule) Ref() string {
	switch {
	case r.ID != "":
		return r.ID
	case r.Name != "":
		return r.Name
	case r.Title != "":
		return r.Title
	}
	return fmt.Sprintf("%s:%d", r.File, r.Pos.Line)
}

// ParseError is a problem in a correlation document, with its position.
type ParseError struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *ParseError) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg)
	case e.File != "":
		return e.File + ": " + e.Msg
	}
	return e.Msg
}
