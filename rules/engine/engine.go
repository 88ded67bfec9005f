// Package engine compiles Sigma detection rules (rules/sigma) with a field
// and logsource mapping (rules/mapping) into an immutable Bundle, and
// evaluates events against it.
//
// Evaluation routes an event by its dataset to the rules whose logsource
// maps to it, then scans each indexed field's lower-cased value once with an
// Aho-Corasick automaton over the literals the rules need: a rule is
// evaluated only when one of the literals it cannot match without is
// present (or when it has no such literal, e.g. `not` conditions). Field
// values are converted and lower-cased once per event; evaluating a rule
// allocates nothing.
//
// A Bundle is safe for concurrent use; an Evaluator is not (one per
// goroutine).
package engine

import (
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/rules/sigma"
)

// Match is one rule matching one event.
type Match struct {
	RuleID string
	Name   string // the rule's `name`, referenced by correlation rules
	Title  string
	Level  string
	Tags   []string
	Rule   *sigma.Rule
	Event  event.Event
}
