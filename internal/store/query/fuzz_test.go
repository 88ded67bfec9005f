package query

import (
	"errors"
	"testing"

	"github.com/csirt-toscana/platform/internal/event"
)

// FuzzCompile checks that any input either compiles to a well-formed,
// normalised tree that fits the schema, or gives a *ParseError whose
// position lies inside the query. It never panics.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		``,
		`user.name:root`,
		`failed password`,
		`"failed password" AND source.ip:10.0.0.0/8`,
		`user.name:(root OR adm*) -tags:scanner`,
		`destination.port:[1024 TO *} AND @timestamp>=2026-01-01`,
		`@timestamp:{2026-01-01T00:00:00Z TO 2026-01-02T00:00:00.5+01:00]`,
		`source.ip:2001:db8::/32 OR related.ip:::1`,
		`NOT (a OR b) c`,
		`message:"say \"hi\"" file.path:C\:\\x\ y`,
		`http.response.status_code>=500 nis2:true score<0.5`,
		`((((a))))`,
		`a AND`,
		`user.name:[a TO b]`,
		`-`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		n, err := Compile(src, testEvents)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Compile(%q): error %T is not a *ParseError: %v", src, err, err)
			}
			if pe.Pos < 0 || pe.Pos > len(src) || pe.Msg == "" {
				t.Fatalf("Compile(%q): bad error %+v", src, pe)
			}
			return
		}
		if n == nil {
			t.Fatalf("Compile(%q): nil node and nil error", src)
		}
		terms := checkNode(t, src, n, nil)
		if terms > MaxTerms {
			t.Fatalf("Compile(%q): %d terms", src, terms)
		}
		n2, err := Compile(src, testEvents)
		if err != nil || Format(n2) != Format(n) {
			t.Fatalf("Compile(%q) is not deterministic", src)
		}
	})
}

// checkNode verifies the invariants of a resolved tree and counts its terms.
func checkNode(t *testing.T, src string, n, parent Node) int {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("Compile(%q) = %s: "+format, append([]any{src, Format(n)}, args...)...)
	}
	switch n := n.(type) {
	case *All:
		if _, ok := parent.(*And); ok {
			fail("All inside And")
		}
		if _, ok := parent.(*Or); ok {
			fail("All inside Or")
		}
		return 0
	case *And:
		if len(n.Nodes) < 2 {
			fail("And with %d children", len(n.Nodes))
		}
		if _, ok := parent.(*And); ok {
			fail("And inside And")
		}
		c := 0
		for _, x := range n.Nodes {
			c += checkNode(t, src, x, n)
		}
		return c
	case *Or:
		if len(n.Nodes) < 2 {
			fail("Or with %d children", len(n.Nodes))
		}
		if _, ok := parent.(*Or); ok {
			fail("Or inside Or")
		}
		c := 0
		for _, x := range n.Nodes {
			c += checkNode(t, src, x, n)
		}
		return c
	case *Not:
		if _, ok := parent.(*Not); ok {
			fail("double negation")
		}
		return checkNode(t, src, n.Node, n)
	case *Term:
		def, ok := testEvents.Field(n.Field)
		if !ok || def.Type != n.Type || def.Array != n.Array {
			fail("term %+v does not fit the schema", n)
		}
		switch n.Op {
		case OpEq, OpExists:
		case OpWildcard, OpPhrase:
			if n.Type != event.Keyword && n.Type != event.Text {
				fail("%s on %s", n.Op, n.Type)
			}
		case OpLt, OpLte, OpGt, OpGte:
			if n.Type != event.Long && n.Type != event.Double && n.Type != event.Date && n.Type != event.IP {
				fail("%s on %s", n.Op, n.Type)
			}
		case OpCIDR:
			if n.Type != event.IP || !n.Prefix.IsValid() || n.Prefix != n.Prefix.Masked() {
				fail("bad CIDR term %+v", n)
			}
		default:
			fail("unknown op %d", n.Op)
		}
		if n.Type == event.IP && n.Op != OpCIDR && n.Op != OpExists && !n.Addr.IsValid() {
			fail("IP term without an address")
		}
		if n.Type == event.Long && n.Num != float64(int64(n.Num)) {
			fail("long term with a fraction")
		}
		if n.Type == event.Text && n.Op == OpEq && len(Tokenize(n.Str)) != 1 {
			fail("text eq term %q is not one token", n.Str)
		}
		return 1
	}
	fail("unknown node %T", n)
	return 0
}

func BenchmarkCompile(b *testing.B) {
	q := `event.dataset:sshd AND "failed password" AND source.ip:(203.0.113.0/24 OR 2001:db8::/32) ` +
		`AND NOT user.name:(root OR adm*) AND @timestamp:[2026-01-01 TO 2026-01-08} AND destination.port>=22`
	b.SetBytes(int64(len(q)))
	for b.Loop() {
		if _, err := Compile(q, testEvents); err != nil {
			b.Fatal(err)
		}
	}
}
