package storetest

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
)

func testSearchTimeSortPage(t *testing.T, open Open) {
	s := newStore(t, open)
	tenant := uniq("ent")
	sc := store.TenantScope(tenant)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	prefix := uniq("ev")
	const n = 40
	type ev struct {
		id   string
		i    int
		port int // 0: missing
		host string
	}
	var all []ev
	for i := range n {
		e := ev{id: fmt.Sprintf("%s-%02d", prefix, (i*7)%n), i: i, host: fmt.Sprintf("h-%d", i%3)}
		body := map[string]any{
			"@timestamp": base.Add(time.Duration(i) * time.Minute).Format(time.RFC3339Nano),
			"host":       map[string]any{"name": e.host},
			"message":    fmt.Sprintf("event number %d", i),
		}
		if i%7 != 0 {
			e.port = 1000 + i%5
			body["destination"] = map[string]any{"port": e.port}
		}
		all = append(all, e)
		put(t, s, sc, store.Events, store.Doc{ID: e.id, Tenant: tenant, Source: src(t, body)})
	}
	refresh(t, s, store.Events)
	byTime := func(from, to int) []string { // ids of events from..to-1 in time order
		var out []string
		for _, e := range all[from:to] {
			out = append(out, e.id)
		}
		return out
	}
	reversed := func(l []string) []string { l = slices.Clone(l); slices.Reverse(l); return l }

	for _, tc := range []struct {
		name     string
		from, to time.Time
		want     []string
	}{
		{"closed range", base.Add(10 * time.Minute), base.Add(20 * time.Minute), byTime(10, 20)},
		{"from only", base.Add(35 * time.Minute), time.Time{}, byTime(35, 40)},
		{"to only", time.Time{}, base.Add(3 * time.Minute), byTime(0, 3)},
		{"to is exclusive to the millisecond", time.Time{}, base.Add(3*time.Minute + time.Millisecond), byTime(0, 4)},
		{"from is inclusive", base.Add(39 * time.Minute), base.Add(time.Hour), byTime(39, 40)},
		{"empty", base.Add(time.Hour), base.Add(2 * time.Hour), nil},
		{"other timezone", base.Add(10 * time.Minute).In(time.FixedZone("CET", 3600)), base.Add(12 * time.Minute).In(time.FixedZone("X", -7200)), byTime(10, 12)},
	} {
		res, got := search(t, s, sc, store.Events, store.SearchRequest{From: tc.from, To: tc.to, Sort: []store.SortField{{Field: "@timestamp"}}})
		if !slices.Equal(got, tc.want) || res.Total != int64(len(tc.want)) {
			t.Errorf("time range %s: total %d ids %v, want %v", tc.name, res.Total, got, tc.want)
		}
	}
	// The range combines with a query.
	res, got := search(t, s, sc, store.Events, store.SearchRequest{Query: "host.name:h-0", From: base, To: base.Add(10 * time.Minute), Sort: []store.SortField{{Field: "@timestamp", Desc: true}}})
	if want := []string{all[9].id, all[6].id, all[3].id, all[0].id}; !slices.Equal(got, want) || res.Total != 4 {
		t.Errorf("query with a time range: %v, want %v", got, want)
	}

	// Sorts. Ties are broken by id ascending; documents without the field
	// come last in both directions.
	portOrder := func(desc bool) []string {
		l := slices.Clone(all)
		sort.SliceStable(l, func(i, j int) bool {
			a, b := l[i], l[j]
			if (a.port == 0) != (b.port == 0) {
				return b.port == 0
			}
			if a.port != b.port {
				if desc {
					return a.port > b.port
				}
				return a.port < b.port
			}
			return a.id < b.id
		})
		var out []string
		for _, e := range l {
			out = append(out, e.id)
		}
		return out
	}
	hostOrder := func() []string {
		l := slices.Clone(all)
		sort.SliceStable(l, func(i, j int) bool {
			if l[i].host != l[j].host {
				return l[i].host > l[j].host
			}
			return l[i].i < l[j].i
		})
		var out []string
		for _, e := range l {
			out = append(out, e.id)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		sort []store.SortField
		want []string
	}{
		{"time ascending", []store.SortField{{Field: "@timestamp"}}, byTime(0, n)},
		{"time descending", []store.SortField{{Field: "@timestamp", Desc: true}}, reversed(byTime(0, n))},
		{"long ascending, missing last", []store.SortField{{Field: "destination.port"}}, portOrder(false)},
		{"long descending, missing last", []store.SortField{{Field: "destination.port", Desc: true}}, portOrder(true)},
		{"keyword then time", []store.SortField{{Field: "host.name", Desc: true}, {Field: "@timestamp"}}, hostOrder()},
	} {
		res, got := search(t, s, sc, store.Events, store.SearchRequest{Sort: tc.sort})
		if !slices.Equal(got, tc.want) || res.Total != n {
			t.Errorf("sort %s:\n got %v\nwant %v", tc.name, got, tc.want)
		}
		// Paging through the same sort gives the same sequence.
		var paged []string
		for off := 0; off < n+7; off += 7 {
			res, page := search(t, s, sc, store.Events, store.SearchRequest{Sort: tc.sort, Offset: off, Size: 7})
			if res.Total != n {
				t.Errorf("sort %s page at %d: total %d, want %d", tc.name, off, res.Total, n)
			}
			paged = append(paged, page...)
		}
		if !slices.Equal(paged, tc.want) {
			t.Errorf("sort %s, pages of 7:\n got %v\nwant %v", tc.name, paged, tc.want)
		}
	}
	res, got = search(t, s, sc, store.Events, store.SearchRequest{Size: 5, Sort: []store.SortField{{Field: "@timestamp"}}})
	if res.Total != n || !slices.Equal(got, byTime(0, 5)) {
		t.Errorf("Size 5: total %d ids %v", res.Total, got)
	}
	res, got = search(t, s, sc, store.Events, store.SearchRequest{Offset: 100, Size: 5})
	if res.Total != n || len(got) != 0 {
		t.Errorf("page beyond the end: total %d ids %v", res.Total, got)
	}
	res, got = search(t, s, sc, store.Events, store.SearchRequest{})
	if res.Total != n || len(got) != n {
		t.Errorf("default page: total %d, %d ids", res.Total, len(got))
	}
	for _, d := range res.Docs {
		if d.Tenant != tenant || d.Version.IsZero() || len(d.Source) == 0 {
			t.Errorf("search hit %s: tenant %q version %+v source %s", d.ID, d.Tenant, d.Version, d.Source)
		}
	}
	// More than the default page.
	for i := range 120 {
		put(t, s, sc, store.Events, store.Doc{ID: fmt.Sprintf("%s-more-%03d", prefix, i), Tenant: tenant,
			Source: src(t, map[string]any{"@timestamp": base.Add(-time.Duration(i+1) * time.Second).Format(time.RFC3339Nano)})})
	}
	refresh(t, s, store.Events)
	res, got = search(t, s, sc, store.Events, store.SearchRequest{})
	if res.Total != n+120 || len(got) != store.DefaultPage {
		t.Errorf("default page size: total %d, %d ids, want %d and %d", res.Total, len(got), n+120, store.DefaultPage)
	}
	res, got = search(t, s, sc, store.Events, store.SearchRequest{Size: store.MaxPage})
	if res.Total != n+120 || len(got) != n+120 {
		t.Errorf("Size MaxPage: total %d, %d ids", res.Total, len(got))
	}
}
