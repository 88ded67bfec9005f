// Package storetest is the conformance suite of store.Store: every backend
// runs it (internal/store/sqlite, internal/store/elastic), in the manner of
// testing/slogtest. It checks the contract in internal/store/store.go, the
// tenancy rules of DESIGN.md and the query language's semantics through the
// cases in querycases.go.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
)

// Open returns a new, empty store for one subtest. The suite closes it at
// the end of the subtest; open may register its own cleanup (deleting
// indices, files) with t.Cleanup, which runs after the suite's Close.
type Open func(t *testing.T) store.Store

// Run runs the whole suite. Each subtest opens its own store; documents
// and tenants are named uniquely per run as well, so a backend whose stores
// share a cluster still passes as long as open gives an empty store where
// the query cases need one (they are checked in regional scope).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("CreateGetUpdateDelete", func(t *testing.T) { testCRUD(t, open) })
	t.Run("PutIdempotent", func(t *testing.T) { testPutIdempotent(t, open) })
	t.Run("PutTimeSeriesNoop", func(t *testing.T) { testPutTimeSeries(t, open) })
	t.Run("TenantField", func(t *testing.T) { testTenantField(t, open) })
	t.Run("InvalidRequests", func(t *testing.T) { testInvalid(t, open) })
	t.Run("OptimisticConcurrency", func(t *testing.T) { testOCC(t, open) })
	t.Run("Unscoped", func(t *testing.T) { testUnscoped(t, open) })
	t.Run("TenantIsolation", func(t *testing.T) { testIsolation(t, open) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, open) })
	t.Run("Bulk", func(t *testing.T) { testBulk(t, open) })
	t.Run("BulkErrors", func(t *testing.T) { testBulkErrors(t, open) })
	t.Run("SearchTimeSortPage", func(t *testing.T) { testSearchTimeSortPage(t, open) })
	t.Run("QueryCases", func(t *testing.T) { testQueryCases(t, open) })
	t.Run("BadQueries", func(t *testing.T) { testBadQueries(t, open) })
	t.Run("Aggregations", func(t *testing.T) { testAggregations(t, open) })
	t.Run("Scan", func(t *testing.T) { testScan(t, open) })
}

// newStore opens a store and closes it when the subtest ends.
func newStore(t *testing.T, open Open) store.Store {
	t.Helper()
	s := open(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

var runCounter atomic.Int64

// uniq returns a name unique to this process run, usable as an id or a
// tenant: prefix-<time>-<counter>.
func uniq(prefix string) string {
	return fmt.Sprintf("%s-%x-%d", prefix, time.Now().UnixNano(), runCounter.Add(1))
}

func src(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding source: %v", err)
	}
	return b
}

// decode returns a document's source as a flat map of dotted names.
func decode(t *testing.T, d store.Doc) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(d.Source, &m); err != nil {
		t.Fatalf("document %s: source is not a JSON object: %v (%s)", d.ID, err, d.Source)
	}
	out := map[string]any{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if prefix != "" {
				k = prefix + "." + k
			}
			if o, ok := v.(map[string]any); ok {
				walk(k, o)
				continue
			}
			out[k] = v
		}
	}
	walk("", m)
	return out
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func put(t *testing.T, s store.Store, sc store.Scope, c store.Collection, d store.Doc) store.Version {
	t.Helper()
	v, err := s.Put(testContext(t), sc, c, d, store.WriteOptions{Refresh: store.RefreshWait})
	if err != nil {
		t.Fatalf("Put %s/%s: %v", c, d.ID, err)
	}
	if v.IsZero() {
		t.Fatalf("Put %s/%s returned a zero version", c, d.ID)
	}
	return v
}

func refresh(t *testing.T, s store.Store, c store.Collection) {
	t.Helper()
	if err := s.Refresh(testContext(t), c); err != nil {
		t.Fatalf("Refresh %s: %v", c, err)
	}
}

// search runs a search and returns the ids of the page.
func search(t *testing.T, s store.Store, sc store.Scope, c store.Collection, r store.SearchRequest) (store.SearchResult, []string) {
	t.Helper()
	res, err := s.Search(testContext(t), sc, c, r)
	if err != nil {
		t.Fatalf("Search %s %q in %v: %v", c, r.Query, sc, err)
	}
	return res, ids(res.Docs)
}

func ids(docs []store.Doc) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.ID
	}
	return out
}

func sorted(list []string) []string {
	out := slices.Clone(list)
	sort.Strings(out)
	return out
}

func sameSet(got, want []string) bool {
	return slices.Equal(sorted(got), sorted(want))
}

func fmtIDs(list []string) string { return "[" + strings.Join(list, " ") + "]" }
