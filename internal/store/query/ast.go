// Package query is the analysts' search language: a documented subset in the
// spirit of KQL/Lucene (field:value, wildcards, quoted phrases, ranges,
// AND/OR/NOT, parentheses, CIDR on IP fields). Parse turns text into a
// syntax tree; Resolve checks it against a collection's schema and gives the
// typed tree that each store backend compiles (SQL for SQLite, query DSL for
// Elasticsearch). The language and its exact semantics are documented in
// docs/query.md; the store conformance suite proves both backends agree.
package query

import (
	"net/netip"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// Node is a node of a resolved (typed) query tree: *And, *Or, *Not, *Term
// or *All. Compilers switch on the concrete type.
type Node interface{ isNode() }

// All matches every document (the empty query).
type All struct{}

// And matches when every child matches.
type And struct{ Nodes []Node }

// Or matches when at least one child matches.
type Or struct{ Nodes []Node }

// Not matches when its child does not. A document missing the field of a
// negated term matches the negation (NOT user.name:root matches documents
// without user.name), as in Elasticsearch's must_not.
type Not struct{ Node Node }

// Op is what a Term tests. The semantics, for every backend:
//   - OpEq on Keyword: the whole value equals Str, ignoring case.
//   - OpEq on Text: the field contains the token Str (see Tokenize).
//   - OpEq on Long/Double: numeric equality with Num.
//   - OpEq on IP: address equality with Addr.
//   - OpEq on Date: equality with Time.
//   - OpEq on Bool: equality with Bool.
//   - OpWildcard on Keyword: the whole value matches the pattern Str
//     (star: any run of characters; question mark: exactly one), ignoring case.
//   - OpWildcard on Text: some token matches the pattern.
//   - OpPhrase on Text: the tokens of Str occur consecutively in the field.
//   - OpPhrase on Keyword: as OpEq (no wildcards inside quotes).
//   - OpLt/OpLte/OpGt/OpGte on Long, Double (Num), Date (Time), IP (Addr);
//     IP order is that of 16-byte IPv6 addresses, IPv4 a.b.c.d taken as
//     ::ffff:a.b.c.d (as Elasticsearch does).
//   - OpCIDR on IP: the address is inside Prefix.
//   - OpExists: the field is present and not null (an empty list is absent).
//
// On list fields a term matches when any element does.
type Op int8

const (
	OpEq Op = iota
	OpWildcard
	OpPhrase
	OpLt
	OpLte
	OpGt
	OpGte
	OpCIDR
	OpExists
)

// Term is one resolved comparison on one field. Only the value member that
// fits Type and Op is set.
type Term struct {
	Field  string // dotted schema field name
	Type   event.Type
	Array  bool // the field is a list
	Op     Op
	Str    string       // Keyword/Text value, wildcard pattern or phrase, as typed
	Num    float64      // Long and Double values (Long values are integral)
	Time   time.Time    // Date values, UTC
	Addr   netip.Addr   // IP values
	Prefix netip.Prefix // OpCIDR, masked
	Bool   bool         // Bool values
}

func (*All) isNode()  {}
func (*And) isNode()  {}
func (*Or) isNode()   {}
func (*Not) isNode()  {}
func (*Term) isNode() {}
