package sqlite

import (
	"database/sql/driver"
	"strings"
	"unicode"
	"unicode/utf8"

	msqlite "modernc.org/sqlite"

	"github.com/csirt-toscana/platform/internal/store/query"
)

// SQL functions registered on the store's private driver. They carry the
// query language's exact semantics (internal/store/query) into SQLite, so
// that a query means the same here as on Elasticsearch:
//
//	csirt_ieq(value, s)          keyword equality ignoring case (rune by rune, unicode.ToLower)
//	csirt_wild(pattern, value)   query.MatchWildcard on a whole keyword value
//	csirt_tokwild(pattern, toks) some token of a text field matches the pattern
//
// Every function returns 0 for a NULL or non-text argument, never NULL, so
// that NOT over a missing field stays two-valued.
func registerFuncs(d *msqlite.Driver) error {
	funcs := []struct {
		name string
		fn   func(a, b string) bool
	}{
		{"csirt_ieq", equalLower},
		{"csirt_wild", query.MatchWildcard},
		{"csirt_tokwild", matchTokenWildcard},
	}
	for _, f := range funcs {
		fn := f.fn
		err := d.RegisterDeterministicScalarFunction(f.name, 2, func(_ *msqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			a, ok1 := textArg(args[0])
			b, ok2 := textArg(args[1])
			if !ok1 || !ok2 {
				return int64(0), nil
			}
			if fn(a, b) {
				return int64(1), nil
			}
			return int64(0), nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func textArg(v driver.Value) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	}
	return "", false
}

// equalLower reports whether a and b are equal rune by rune after
// unicode.ToLower: the case rule of query.MatchWildcard.
func equalLower(a, b string) bool {
	if a == b {
		return true
	}
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb && unicode.ToLower(ra) != unicode.ToLower(rb) {
			return false
		}
		// Invalid bytes decode as RuneError with width 1: compare them bytewise.
		if ra == utf8.RuneError && (na == 1 || nb == 1) && a[:na] != b[:nb] {
			return false
		}
		a, b = a[na:], b[nb:]
	}
	return a == "" && b == ""
}

// matchTokenWildcard reports whether some token of toks (the stored form of
// a text field: tokens separated by single spaces) matches pattern.
func matchTokenWildcard(pattern, toks string) bool {
	for _, t := range strings.Fields(toks) {
		if query.MatchWildcard(pattern, t) {
			return true
		}
	}
	return false
}
