package query

import (
	"github.com/csirt-toscana/platform/internal/event"
)

// testSchema mirrors store.Schema for the events collection (the query
// package cannot import the store): every event field plus the tenant
// field, and a few fields of other types for coverage.
type testSchema struct {
	fields   map[string]event.FieldDef
	defaults []string
}

func (s testSchema) Field(name string) (event.FieldDef, bool) {
	f, ok := s.fields[name]
	return f, ok
}

func (s testSchema) DefaultFields() []string { return s.defaults }

func eventsSchema() testSchema {
	s := testSchema{fields: map[string]event.FieldDef{}}
	for _, f := range event.Fields() {
		s.fields[f.Name] = f
	}
	s.fields["organization.id"] = event.FieldDef{Name: "organization.id", Type: event.Keyword}
	// Not in the events registry: other types the language supports.
	s.fields["nis2"] = event.FieldDef{Name: "nis2", Type: event.Bool}
	s.fields["score"] = event.FieldDef{Name: "score", Type: event.Double}
	// Fixed, so that fields added to the registry later do not change what
	// these tests expect of bare terms.
	s.defaults = []string{"event.original", "message"}
	return s
}

var testEvents = eventsSchema()
