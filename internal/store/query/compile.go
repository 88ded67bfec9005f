package query

import (
	"fmt"

	"github.com/csirt-toscana/platform/internal/event"
)

// Schema is what the resolver needs to know about a collection: the type of
// each searchable field and the text fields that a term without a field
// searches. store.Schema satisfies it.
type Schema interface {
	// Field returns the definition of a field, false if the collection has
	// no such searchable field.
	Field(name string) (event.FieldDef, bool)
	// DefaultFields lists the fields searched by a bare term or phrase
	// (one OR over all of them). It may be empty: bare terms are then
	// refused.
	DefaultFields() []string
}

// Limits on a query. Queries beyond them are refused with a ParseError.
const (
	MaxQueryBytes = 4096 // length of the query text
	MaxDepth      = 32   // nesting of parentheses, field groups and negations
	MaxTerms      = 256  // resolved terms, after bare terms are expanded over the default fields
)

// ParseError is the error of a query that cannot be parsed or does not fit
// the schema. Pos is the byte offset in the query of the offending part
// (for resolution errors: the field name for an unknown field, otherwise
// the value).
type ParseError struct {
	Pos int
	Msg string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("query: position %d: %s", e.Pos, e.Msg)
}

// Compile parses src and resolves it against s: the one call a store
// backend makes before translating the tree. An empty (or blank) query gives
// *All. Every error is a *ParseError.
func Compile(src string, s Schema) (Node, error) {
	syn, err := Parse(src)
	if err != nil {
		return nil, err
	}
	return Resolve(syn, s)
}
