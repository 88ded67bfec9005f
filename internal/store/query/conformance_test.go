package query_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/query"
	"github.com/csirt-toscana/platform/internal/store/storetest"
)

var _ query.Schema = store.Schema{}

// TestQueryCases evaluates the conformance cases of storetest with a small
// in-memory reference evaluator of the semantics in ast.go: a third,
// independent check of the hand-written expectations that both store
// backends are held to.
func TestQueryCases(t *testing.T) {
	schema, err := store.SchemaOf(store.Events)
	if err != nil {
		t.Fatal(err)
	}
	docs := storetest.QueryDataset()
	if len(storetest.QueryCases) < 45 {
		t.Errorf("only %d query cases", len(storetest.QueryCases))
	}
	seen := map[string]bool{}
	for _, c := range storetest.QueryCases {
		if seen[c.Name] {
			t.Errorf("duplicate case name %q", c.Name)
		}
		seen[c.Name] = true
		n, err := query.Compile(c.Query, schema)
		if err != nil {
			t.Errorf("%s: Compile(%q): %v", c.Name, c.Query, err)
			continue
		}
		var got []string
		for _, d := range docs {
			if eval(t, n, flatten(d)) {
				got = append(got, d.ID)
			}
		}
		want := slices.Clone(c.Want)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: %s\n  tree %s\n  got  %v\n  want %v", c.Name, c.Query, query.Format(n), got, want)
		}
	}
	for _, c := range storetest.BadQueryCases {
		_, err := query.Compile(c.Query, schema)
		if err == nil || !strings.Contains(err.Error(), c.WantErr) {
			t.Errorf("%s: Compile(%q) = %v, want an error containing %q", c.Name, c.Query, err, c.WantErr)
		}
	}
}

// flatten maps each dotted field to its non-null values.
func flatten(d storetest.QueryDoc) map[string][]any {
	out := map[string][]any{store.TenantField: {d.Tenant}}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case nil:
		case map[string]any:
			for k, x := range v {
				walk(prefix+k+".", x)
			}
		case []any:
			for _, x := range v {
				walk(prefix, x)
			}
		default:
			f := strings.TrimSuffix(prefix, ".")
			out[f] = append(out[f], v)
		}
	}
	walk("", d.Source)
	return out
}

func eval(t *testing.T, n query.Node, doc map[string][]any) bool {
	switch n := n.(type) {
	case *query.All:
		return true
	case *query.And:
		for _, c := range n.Nodes {
			if !eval(t, c, doc) {
				return false
			}
		}
		return true
	case *query.Or:
		for _, c := range n.Nodes {
			if eval(t, c, doc) {
				return true
			}
		}
		return false
	case *query.Not:
		return !eval(t, n.Node, doc)
	case *query.Term:
		for _, v := range doc[n.Field] {
			if n.Op == query.OpExists || match(t, n, v) {
				return true
			}
		}
		return false
	}
	t.Fatalf("unknown node %T", n)
	return false
}

func match(t *testing.T, n *query.Term, v any) bool {
	switch n.Type {
	case event.Keyword:
		s := fmt.Sprint(v)
		if n.Op == query.OpWildcard {
			return query.MatchWildcard(n.Str, s)
		}
		return strings.EqualFold(s, n.Str)
	case event.Text:
		toks := query.Tokenize(fmt.Sprint(v))
		switch n.Op {
		case query.OpEq:
			return slices.Contains(toks, n.Str)
		case query.OpWildcard:
			return slices.ContainsFunc(toks, func(tok string) bool { return query.MatchWildcard(n.Str, tok) })
		case query.OpPhrase:
			p := query.Tokenize(n.Str)
			for i := 0; i+len(p) <= len(toks); i++ {
				if slices.Equal(toks[i:i+len(p)], p) {
					return true
				}
			}
			return false
		}
	case event.Long, event.Double:
		var x float64
		switch v := v.(type) {
		case int:
			x = float64(v)
		case int64:
			x = float64(v)
		case float64:
			x = v
		default:
			t.Fatalf("%s: number field holds %T", n.Field, v)
		}
		return cmp(n.Op, compare(x, n.Num))
	case event.Date:
		at, err := time.Parse(time.RFC3339Nano, v.(string))
		if err != nil {
			t.Fatal(err)
		}
		return cmp(n.Op, at.Compare(n.Time))
	case event.IP:
		a := netip.MustParseAddr(v.(string)).Unmap()
		if n.Op == query.OpCIDR {
			return n.Prefix.Contains(a)
		}
		// Order as Elasticsearch does: IPv4 as ::ffff:a.b.c.d.
		x, y := a.As16(), n.Addr.As16()
		return cmp(n.Op, bytes.Compare(x[:], y[:]))
	}
	t.Fatalf("unsupported term %s", query.Format(n))
	return false
}

func compare(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmp(op query.Op, c int) bool {
	switch op {
	case query.OpEq:
		return c == 0
	case query.OpLt:
		return c < 0
	case query.OpLte:
		return c <= 0
	case query.OpGt:
		return c > 0
	case query.OpGte:
		return c >= 0
	}
	panic("bad op " + op.String())
}
