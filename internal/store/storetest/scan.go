package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
)

// scanIntel is an intel document of the scan tests: i picks its type, its
// last_seen (50 documents share each minute, so pages end inside runs of
// equal times) and whether it has a last_seen at all (not every 97th).
func scanIntel(source string, i int) map[string]any {
	types := []string{"ipv4", "domain", "url"}
	typ := types[i%len(types)]
	d := map[string]any{"type": typ, "source": source, "confidence": i % 100}
	switch typ {
	case "ipv4":
		d["value"] = fmt.Sprintf("198.51.%d.%d", i/250%250, i%250)
		d["ip"] = d["value"]
	case "domain":
		d["value"] = fmt.Sprintf("host-%d.example.net", i)
	default:
		d["value"] = fmt.Sprintf("http://host-%d.example.net/x", i)
	}
	if i%97 != 0 {
		d["last_seen"] = scanBase.Add(time.Duration(i/50) * time.Minute).Format(time.RFC3339Nano)
	}
	return d
}

var scanBase = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)

// scanned runs a scan and returns how many times each id was passed; it
// fails the test on an error and checks every document's tenant, version
// and source.
func scanned(t *testing.T, s store.Store, sc store.Scope, c store.Collection, r store.ScanRequest) map[string]int {
	t.Helper()
	got := map[string]int{}
	err := s.Scan(testContext(t), sc, c, r, func(d store.Doc) error {
		got[d.ID]++
		if !sc.Allows(d.Tenant) || d.Tenant == "" {
			return fmt.Errorf("document %s of tenant %q in scope %v", d.ID, d.Tenant, sc)
		}
		if d.Version.IsZero() || len(d.Source) == 0 {
			return fmt.Errorf("document %s: version %+v, source %q", d.ID, d.Version, d.Source)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Scan %s %q in %v: %v", c, r.Query, sc, err)
	}
	return got
}

// exactlyOnce checks that got holds each wanted id once and nothing else
// (ids outside mine are other runs' documents and are only checked for
// duplicates).
func exactlyOnce(t *testing.T, what string, got map[string]int, want map[string]bool, mine func(id string) bool) {
	t.Helper()
	var missing, dup, extra []string
	for id, n := range got {
		switch {
		case n > 1:
			dup = append(dup, id)
		case !want[id] && (mine == nil || mine(id)):
			extra = append(extra, id)
		}
	}
	for id := range want {
		if got[id] == 0 {
			missing = append(missing, id)
		}
	}
	if len(missing)+len(dup)+len(extra) > 0 {
		t.Errorf("%s: %d wanted, %d passed; %d missing (e.g. %v), %d passed more than once (e.g. %v), %d not wanted (e.g. %v)",
			what, len(want), len(got), len(missing), first(missing), len(dup), first(dup), len(extra), first(extra))
	}
}

func first(l []string) []string {
	slices.Sort(l)
	return l[:min(len(l), 3)]
}

// testScan writes more documents than the search window in one bulk and
// reads them back with Scan in several scopes, queries, time ranges and
// page sizes; then it scans a time-series collection (on Elasticsearch a
// data stream, where intel is a plain index). One store serves both parts:
// opening one is the slow part of a subtest on Elasticsearch.
func testScan(t *testing.T, open Open) {
	s := newStore(t, open)
	scanPastWindow(t, s)
	scanTimeSeries(t, s)
}

func scanPastWindow(t *testing.T, s store.Store) {
	ctx := testContext(t)
	a, b := uniq("enta"), uniq("entb")
	source := uniq("scan")
	const total = 12345 // more than store.MaxWindow in regional scope and in tenant a's
	tenantOf := func(i int) string {
		if i%8 == 7 {
			return b
		}
		return a
	}
	idOf := func(i int) string { return fmt.Sprintf("%s-%05d", source, i) }
	w, err := s.Bulk(store.RegionalScope(), store.Intel, store.BulkOptions{})
	noErr(t, "Bulk", err)
	for i := range total {
		if err := w.Add(ctx, store.Doc{ID: idOf(i), Tenant: tenantOf(i), Source: src(t, scanIntel(source, i))}); err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	noErr(t, "Close", w.Close(ctx))
	refresh(t, s, store.Intel)

	want := func(keep func(i int) bool) map[string]bool {
		out := map[string]bool{}
		for i := range total {
			if keep(i) {
				out[idOf(i)] = true
			}
		}
		return out
	}
	mine := func(id string) bool { return len(id) > len(source) && id[:len(source)] == source }
	all := func(int) bool { return true }
	inA := func(i int) bool { return tenantOf(i) == a }
	inB := func(i int) bool { return tenantOf(i) == b }
	// last_seen in [from, to): minutes 40 to 180, documents 2000 to 8999.
	from, to := scanBase.Add(40*time.Minute), scanBase.Add(180*time.Minute)
	inRange := func(i int) bool { return i%97 != 0 && i >= 2000 && i < 9000 }
	q := `source:"` + source + `"`

	for _, tc := range []struct {
		name string
		sc   store.Scope
		r    store.ScanRequest
		keep func(i int) bool
	}{
		{"regional, query", store.RegionalScope(), store.ScanRequest{Query: q}, all},
		{"regional, every document, pages of MaxPage", store.RegionalScope(), store.ScanRequest{PageSize: store.MaxPage}, all},
		{"tenant a", store.TenantScope(a), store.ScanRequest{}, inA},
		{"tenant b, pages of 100", store.TenantScope(b), store.ScanRequest{PageSize: 100}, inB},
		{"tenant a, query", store.TenantScope(a), store.ScanRequest{Query: q + " AND type:domain"}, func(i int) bool { return inA(i) && i%3 == 1 }},
		{"regional, query on a number", store.RegionalScope(), store.ScanRequest{Query: q + " AND confidence >= 90 AND NOT type:url"},
			func(i int) bool { return i%100 >= 90 && i%3 != 2 }},
		{"regional, time range", store.RegionalScope(), store.ScanRequest{Query: q, From: from, To: to}, inRange},
		{"tenant a, time range, pages of 333", store.TenantScope(a), store.ScanRequest{From: from, To: to, PageSize: 333},
			func(i int) bool { return inA(i) && inRange(i) }},
		{"tenant b, documents without last_seen", store.TenantScope(b), store.ScanRequest{Query: "NOT last_seen:[* TO *]"},
			func(i int) bool { return inB(i) && i%97 == 0 }},
		{"nothing matches", store.TenantScope(uniq("nobody")), store.ScanRequest{}, func(int) bool { return false }},
	} {
		got := scanned(t, s, tc.sc, store.Intel, tc.r)
		wanted := want(tc.keep)
		if tc.sc.Regional() {
			exactlyOnce(t, tc.name, got, wanted, mine)
		} else {
			exactlyOnce(t, tc.name, got, wanted, nil)
		}
		// On the small sets, Search finds the same documents (checked on
		// a few only: a search of thousands is slow under the race detector).
		if len(wanted) <= 2000 {
			res, ids := search(t, s, tc.sc, store.Intel, store.SearchRequest{Query: tc.r.Query, From: tc.r.From, To: tc.r.To, Size: 2001})
			if res.Total > 2000 || !sameSet(ids, slices.Collect(maps.Keys(got))) {
				t.Errorf("%s: Search finds %d documents, Scan %d", tc.name, res.Total, len(got))
			}
		}
	}

	// The callback's error stops the scan and is returned as it is.
	stop := errors.New("enough")
	calls := 0
	err = s.Scan(ctx, store.TenantScope(a), store.Intel, store.ScanRequest{PageSize: 1000}, func(store.Doc) error {
		calls++
		if calls == 1500 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 1500 {
		t.Errorf("a callback error at document 1500: Scan returned %v after %d calls", err, calls)
	}

	// A cancelled context ends the scan at the next page.
	cctx, cancel := context.WithCancel(ctx)
	calls = 0
	err = s.Scan(cctx, store.RegionalScope(), store.Intel, store.ScanRequest{Query: q, PageSize: 500}, func(store.Doc) error {
		calls++
		if calls == 10 {
			cancel()
		}
		return nil
	})
	cancel()
	if !errors.Is(err, context.Canceled) || calls < 10 || calls > 500 {
		t.Errorf("a context cancelled during the first page: Scan returned %v after %d calls", err, calls)
	}

	// Bad requests fail before any call.
	never := func(d store.Doc) error { return fmt.Errorf("called with %s", d.ID) }
	for _, tc := range []struct {
		name string
		sc   store.Scope
		c    store.Collection
		r    store.ScanRequest
		fn   func(store.Doc) error
		want error
	}{
		{"no scope", store.Scope{}, store.Intel, store.ScanRequest{}, never, store.ErrUnscoped},
		{"unknown collection", store.RegionalScope(), "no_such_collection", store.ScanRequest{}, never, store.ErrInvalid},
		{"bad query", store.RegionalScope(), store.Intel, store.ScanRequest{Query: "type:(ipv4"}, never, store.ErrInvalid},
		{"unknown field", store.RegionalScope(), store.Intel, store.ScanRequest{Query: "no_such_field:x"}, never, store.ErrInvalid},
		{"negative page", store.RegionalScope(), store.Intel, store.ScanRequest{PageSize: -1}, never, store.ErrInvalid},
		{"page over MaxPage", store.RegionalScope(), store.Intel, store.ScanRequest{PageSize: store.MaxPage + 1}, never, store.ErrInvalid},
		{"time range without a time field", store.RegionalScope(), store.Contacts, store.ScanRequest{From: from}, never, store.ErrInvalid},
		{"no callback", store.RegionalScope(), store.Intel, store.ScanRequest{}, nil, store.ErrInvalid},
	} {
		wantErr(t, "Scan with "+tc.name, s.Scan(ctx, tc.sc, tc.c, tc.r, tc.fn), tc.want)
	}
}

// scanTimeSeries scans a time-series collection in small pages, with
// tenants and a time range.
func scanTimeSeries(t *testing.T, s store.Store) {
	ctx := testContext(t)
	a, b := uniq("enta"), uniq("entb")
	prefix := uniq("scanev")
	const total = 300
	w, err := s.Bulk(store.RegionalScope(), store.Events, store.BulkOptions{})
	noErr(t, "Bulk", err)
	wantA, wantB, wantRange := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i := range total {
		tenant, set := a, wantA
		if i%3 == 0 {
			tenant, set = b, wantB
		}
		id := fmt.Sprintf("%s-%03d", prefix, i)
		set[id] = true
		// bulkEvent's @timestamp is i seconds after 2026-03-01.
		if tenant == a && i >= 100 && i < 200 {
			wantRange[id] = true
		}
		noErr(t, "Add", w.Add(ctx, store.Doc{ID: id, Tenant: tenant, Source: src(t, bulkEvent(t, tenant, i))}))
	}
	noErr(t, "Close", w.Close(ctx))
	refresh(t, s, store.Events)
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	exactlyOnce(t, "events of tenant a, pages of 7", scanned(t, s, store.TenantScope(a), store.Events, store.ScanRequest{PageSize: 7}), wantA, nil)
	exactlyOnce(t, "events of tenant b, one page", scanned(t, s, store.TenantScope(b), store.Events, store.ScanRequest{}), wantB, nil)
	exactlyOnce(t, "events of tenant a in a time range, pages of 10",
		scanned(t, s, store.TenantScope(a), store.Events, store.ScanRequest{From: day.Add(100 * time.Second), To: day.Add(200 * time.Second), PageSize: 10}), wantRange, nil)
	both := maps.Clone(wantA)
	maps.Copy(both, wantB)
	exactlyOnce(t, "events of both tenants by query, pages of 50",
		scanned(t, s, store.RegionalScope(), store.Events, store.ScanRequest{Query: "organization.id:" + a + " OR organization.id:" + b, PageSize: 50}), both, nil)
}

// BenchScan measures a Scan of n intel documents of one tenant in regional
// scope, in sub-benchmarks by page size (the default and MaxPage); it
// reports documents/s and pages per scan. Writing the documents is not
// timed.
func BenchScan(b *testing.B, open func(b *testing.B) store.Store, n int) {
	s := open(b)
	defer func() {
		if err := s.Close(); err != nil {
			b.Errorf("Close: %v", err)
		}
	}()
	ctx := context.Background()
	source := uniq("benchscan")
	w, err := s.Bulk(store.RegionalScope(), store.Intel, store.BulkOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if err := w.Add(ctx, store.Doc{ID: fmt.Sprintf("%s-%d", source, i), Tenant: store.RegionalTenant, Source: src(b, scanIntel(source, i))}); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		b.Fatal(err)
	}
	if err := s.Refresh(ctx, store.Intel); err != nil {
		b.Fatal(err)
	}
	for _, page := range []int{store.DefaultScanPage, store.MaxPage} {
		b.Run(fmt.Sprintf("page=%d", page), func(b *testing.B) {
			var docs int64
			start := time.Now()
			for b.Loop() {
				seen := 0
				err := s.Scan(ctx, store.RegionalScope(), store.Intel, store.ScanRequest{Query: `source:"` + source + `"`, PageSize: page},
					func(store.Doc) error {
						seen++
						return nil
					})
				if err != nil || seen != n {
					b.Fatalf("Scan: %d of %d documents, %v", seen, n, err)
				}
				docs += int64(seen)
			}
			b.ReportMetric(float64(docs)/time.Since(start).Seconds(), "docs/s")
			b.ReportMetric(float64(n/page+1), "pages/scan")
		})
	}
}
