package sigma

import (
	"net/netip"
	"regexp"

	"gopkg.in/yaml.v3"
)

// Rule is one Sigma detection rule.
type Rule struct {
	File string // where it was read from, for messages
	Pos  Pos    // position of the document

	ID             string
	Name           string // the `name` attribute, referenced by correlation rules
	Title          string
	Status         string
	Description    string
	Author         string
	Date           string
	Modified       string
	Level          string
	Tags           []string
	References     []string
	FalsePositives []string
	Fields         []string
	LogSource      LogSource
	Detection      *Detection

	// Unsupported lists the features of the rule this engine cannot
	// evaluate. A rule with any is reported and never evaluated.
	Unsupported []Unsupported

	// Node is the YAML document the rule was read from (after the
	// collection actions were applied).
	Node *yaml.Node
}

// Supported reports whether the rule can be evaluated.
func (r *Rule) Supported() bool { return len(r.Unsupported) == 0 }

// Ref returns the best human reference to the rule: its id, else its name,
// else its title.
func (r *Rule) Ref() string {
	switch {
	case r.ID != "":
		return r.ID
	case r.Name != "":
		return r.Name
	}
	return r.Title
}

// LogSource is the rule's logsource section.
type LogSource struct {
	Product    string
	Category   string
	Service    string
	Definition string
}

// Detection is a rule's detection section: its named searches and the
// condition that combines them. `1 of x*` and `all of them` are expanded at
// parse time, so the condition only refers to searches by name.
type Detection struct {
	Searches  map[string]*Search
	Order     []string // search names in document order
	Condition Expr     // a list of conditions is joined with OR
	Text      []string // the condition(s) as written
	Pos       Pos      // position of the condition
}

// Search is a search identifier: an OR of alternatives, each an AND of
// field matches. A map gives one alternative; a list of maps one
// alternative per map; a list of plain values (keywords) one alternative
// with one keyword FieldMatch.
type Search struct {
	Name string
	Pos  Pos
	Alts [][]*FieldMatch
}

// FieldMatch is one `Field|mod|mod: values` item. Field is "" for keywords
// (full-text search over every value of the event).
type FieldMatch struct {
	Field     string
	Modifiers []string
	Values    []Value
	All       bool // values joined with AND (the `all` modifier)
	Neq       bool // the match is negated (the `neq` modifier)
	Pos       Pos
}

// ValueKind says how a Value is compared with a field.
type ValueKind uint8

const (
	// KindString matches a Sigma string pattern (wildcards, escapes).
	KindString ValueKind = iota
	// KindRegex matches a regular expression (the `re` modifier).
	KindRegex
	// KindCIDR matches an IP address inside a network (`cidr`).
	KindCIDR
	// KindCompare compares numbers (`gt`, `gte`, `lt`, `lte`).
	KindCompare
	// KindNull matches an absent or null field (`Field: null`).
	KindNull
	// KindExists tests the presence of a field (`exists`).
	KindExists
	// KindFieldRef compares with another field of the event (`fieldref`).
	KindFieldRef
	// KindTimePart compares a part of a date field (`minute`, `hour`, ...).
	KindTimePart
)

// CompareOp is the operator of a KindCompare value.
type CompareOp uint8

// Compare operators.
const (
	OpGT CompareOp = iota
	OpGTE
	OpLT
	OpLTE
)

// Value is one value of a FieldMatch, with the modifiers applied.
type Value struct {
	Kind ValueKind
	Pos  Pos
	Raw  string // the value as written

	// KindString: the value matches if any alternative matches (encoding
	// modifiers such as base64offset give several).
	Alts  []Pattern
	Cased bool

	Regex *regexp.Regexp // KindRegex (flags folded into the expression)

	Prefix netip.Prefix // KindCIDR

	Op  CompareOp // KindCompare
	Num float64   // KindCompare, KindTimePart

	Exists bool // KindExists

	Ref string // KindFieldRef: the other field

	TimePart string // KindTimePart: minute, hour, day, week, month, year
}

// TokenKind is the kind of a pattern token.
type TokenKind uint8

// Pattern token kinds.
const (
	TokLit  TokenKind = iota // literal text
	TokStar                  // `*`: any run of characters
	TokOne                   // `?`: exactly one character
	TokDash                  // one of - / – — ― (the windash modifier)
)

// Token is one element of a Pattern.
type Token struct {
	Kind TokenKind
	Lit  string
}

// Pattern is a parsed Sigma string value.
type Pattern []Token

// Filter is a Sigma meta-filter: a detection added as `and not filter` to
// the rules it names. The engine uses filters as suppressions.
type Filter struct {
	File        string
	Pos         Pos
	ID          string
	Title       string
	Description string
	Rules       []string // ids or names of the rules it applies to
	LogSource   LogSource
	Detection   *Detection
	Unsupported []Unsupported
	Node        *yaml.Node
}

// Supported reports whether the filter can be evaluated.
func (f *Filter) Supported() bool { return len(f.Unsupported) == 0 }

// RawDocument is a YAML document kept for another parser (correlation
// rules), with where it came from.
type RawDocument struct {
	File string
	Pos  Pos
	Node *yaml.Node // the document's top-level mapping
}
