package storetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/query"
)

// loadQueryDataset stores QueryDataset in events and returns the ids of
// each tenant's documents.
func loadQueryDataset(t *testing.T, s store.Store) map[string]map[string]bool {
	t.Helper()
	ctx := testContext(t)
	byTenant := map[string]map[string]bool{}
	w, err := s.Bulk(store.RegionalScope(), store.Events, store.BulkOptions{})
	noErr(t, "Bulk", err)
	for _, d := range QueryDataset() {
		noErr(t, "Add "+d.ID, w.Add(ctx, store.Doc{ID: d.ID, Tenant: d.Tenant, Source: src(t, d.Source)}))
		if byTenant[d.Tenant] == nil {
			byTenant[d.Tenant] = map[string]bool{}
		}
		byTenant[d.Tenant][d.ID] = true
	}
	noErr(t, "Close", w.Close(ctx))
	refresh(t, s, store.Events)
	return byTenant
}

func testQueryCases(t *testing.T, open Open) {
	s := newStore(t, open)
	ctx := testContext(t)
	byTenant := loadQueryDataset(t, s)
	for _, tc := range QueryCases {
		res, err := s.Search(ctx, store.RegionalScope(), store.Events, store.SearchRequest{Query: tc.Query, Size: store.MaxPage})
		if err != nil {
			t.Errorf("case %q: query %s: %v", tc.Name, tc.Query, err)
			continue
		}
		got := ids(res.Docs)
		if !sameSet(got, tc.Want) || res.Total != int64(len(tc.Want)) {
			t.Errorf("case %q: query %s\n  got  %s (total %d)\n  want %s", tc.Name, tc.Query, fmtIDs(sorted(got)), res.Total, fmtIDs(sorted(tc.Want)))
			continue
		}
		// The same query in a tenant scope returns that tenant's part.
		for tenant, own := range byTenant {
			var want []string
			for _, id := range tc.Want {
				if own[id] {
					want = append(want, id)
				}
			}
			_, got := search(t, s, store.TenantScope(tenant), store.Events, store.SearchRequest{Query: tc.Query, Size: store.MaxPage})
			if !sameSet(got, want) {
				t.Errorf("case %q in scope of %s: query %s\n  got  %s\n  want %s", tc.Name, tenant, tc.Query, fmtIDs(sorted(got)), fmtIDs(sorted(want)))
			}
		}
		// Aggregations filter exactly like searches.
		ag, err := s.Aggregate(ctx, store.RegionalScope(), store.Events, store.AggRequest{Query: tc.Query, Terms: &store.TermsAgg{Field: store.TenantField}})
		if err != nil {
			t.Errorf("case %q: Aggregate %s: %v", tc.Name, tc.Query, err)
			continue
		}
		var sum int64
		for _, b := range ag.Buckets {
			sum += b.Count
		}
		if ag.Total != int64(len(tc.Want)) || sum != ag.Total {
			t.Errorf("case %q: Aggregate %s: total %d, buckets %+v; want %d documents", tc.Name, tc.Query, ag.Total, ag.Buckets, len(tc.Want))
		}
	}
}

func testBadQueries(t *testing.T, open Open) {
	s := newStore(t, open)
	ctx := testContext(t)
	check := func(what string, tc BadQueryCase, err error) {
		t.Helper()
		var pe *query.ParseError
		switch {
		case err == nil:
			t.Errorf("case %q: %s %s: no error, want one containing %q", tc.Name, what, tc.Query, tc.WantErr)
		case !errors.Is(err, store.ErrInvalid):
			t.Errorf("case %q: %s %s: error %v does not wrap store.ErrInvalid", tc.Name, what, tc.Query, err)
		case !errors.As(err, &pe):
			t.Errorf("case %q: %s %s: error %v does not wrap a *query.ParseError", tc.Name, what, tc.Query, err)
		case !strings.Contains(err.Error(), tc.WantErr):
			t.Errorf("case %q: %s %s: error %q, want it to contain %q", tc.Name, what, tc.Query, err, tc.WantErr)
		}
	}
	for _, sc := range []store.Scope{store.RegionalScope(), store.TenantScope("t1")} {
		for _, tc := range BadQueryCases {
			_, err := s.Search(ctx, sc, store.Events, store.SearchRequest{Query: tc.Query})
			check("Search", tc, err)
			_, err = s.Aggregate(ctx, sc, store.Events, store.AggRequest{Query: tc.Query, Histogram: &store.HistogramAgg{Field: "@timestamp", Interval: time.Hour}})
			check("Aggregate", tc, err)
		}
	}
}

func testAggregations(t *testing.T, open Open) {
	s := newStore(t, open)
	ctx := testContext(t)
	loadQueryDataset(t, s)
	day := func(d int) time.Time { return time.Date(2026, 3, d, 0, 0, 0, 0, time.UTC) }
	at := func(d, h int) time.Time { return time.Date(2026, 3, d, h, 0, 0, 0, time.UTC) }
	type bucket struct {
		key   string
		count int64
	}
	type tbucket struct {
		t     time.Time
		count int64
	}
	for _, tc := range []struct {
		name  string
		scope store.Scope
		req   store.AggRequest
		total int64
		want  []bucket
	}{
		{"keyword, top 5", store.RegionalScope(), store.AggRequest{Terms: &store.TermsAgg{Field: "event.dataset", Size: 5}}, 30,
			[]bucket{{"sshd", 8}, {"nginx.access", 7}, {"flow", 5}, {"app", 1}, {"app.unparsed", 1}}},
		{"keyword, default size 10", store.RegionalScope(), store.AggRequest{Terms: &store.TermsAgg{Field: "event.dataset"}}, 30,
			[]bucket{{"sshd", 8}, {"nginx.access", 7}, {"flow", 5}, {"app", 1}, {"app.unparsed", 1}, {"cisco.asa", 1}, {"dns", 1}, {"fortigate", 1}, {"heartbeat", 1}, {"sudo", 1}}},
		{"list, ties by key", store.RegionalScope(), store.AggRequest{Terms: &store.TermsAgg{Field: "tags", Size: 20}}, 30,
			[]bucket{{"ssh", 4}, {"web", 4}, {"scanner", 3}, {"bruteforce", 2}, {"firewall", 2}, {"ioc", 2}, {"tor-exit", 2}, {"dns", 1}, {"exfil", 1}, {"ipv6", 1}}},
		{"long with a query", store.RegionalScope(), store.AggRequest{Query: "event.dataset:sshd", Terms: &store.TermsAgg{Field: "destination.port"}}, 8,
			[]bucket{{"22", 6}, {"2222", 1}}},
		{"ip keys canonical, v4 before v6", store.RegionalScope(), store.AggRequest{Query: "source.ip:203.0.113.0/24 OR source.ip:2001:db8::/32", Terms: &store.TermsAgg{Field: "source.ip"}}, 8,
			[]bucket{{"203.0.113.7", 2}, {"203.0.113.8", 1}, {"203.0.113.99", 1}, {"203.0.113.250", 1}, {"2001:db8:1::10", 1}, {"2001:db8:85a3::1", 1}, {"2001:db8:85a3::8a2e:370:7334", 1}}},
		{"tenants", store.RegionalScope(), store.AggRequest{Terms: &store.TermsAgg{Field: store.TenantField}}, 30,
			[]bucket{{"t1", 15}, {"t2", 15}}},
		{"tenants in a tenant scope", store.TenantScope("t1"), store.AggRequest{Terms: &store.TermsAgg{Field: store.TenantField}}, 15,
			[]bucket{{"t1", 15}}},
		{"time range", store.RegionalScope(), store.AggRequest{From: day(2), To: day(3), Terms: &store.TermsAgg{Field: "event.outcome"}}, 5,
			[]bucket{{"failure", 4}, {"success", 1}}},
		{"no match", store.RegionalScope(), store.AggRequest{Query: "user.name:nobody", Terms: &store.TermsAgg{Field: "event.dataset"}}, 0, nil},
	} {
		ag, err := s.Aggregate(ctx, tc.scope, store.Events, tc.req)
		if err != nil {
			t.Errorf("terms %s: %v", tc.name, err)
			continue
		}
		var got []bucket
		for _, b := range ag.Buckets {
			got = append(got, bucket{b.Key, b.Count})
		}
		if ag.Total != tc.total || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("terms %s: total %d buckets %v\n  want total %d buckets %v", tc.name, ag.Total, got, tc.total, tc.want)
		}
	}
	for _, tc := range []struct {
		name     string
		scope    store.Scope
		q        string
		from, to time.Time
		interval time.Duration
		total    int64
		want     []tbucket
	}{
		{"daily", store.RegionalScope(), "", time.Time{}, time.Time{}, 24 * time.Hour, 30,
			[]tbucket{{day(1), 4}, {day(2), 5}, {day(3), 5}, {day(4), 3}, {day(5), 5}, {day(6), 5}, {day(7), 3}}},
		{"daily in a tenant scope", store.TenantScope("t2"), "", time.Time{}, time.Time{}, 24 * time.Hour, 15,
			[]tbucket{{day(2), 5}, {day(3), 2}, {day(4), 1}, {day(5), 2}, {day(6), 3}, {day(7), 2}}},
		{"weekly buckets aligned to the epoch (a Thursday)", store.RegionalScope(), "", time.Time{}, time.Time{}, 7 * 24 * time.Hour, 30,
			[]tbucket{{time.Date(2026, 2, 26, 0, 0, 0, 0, time.UTC), 17}, {day(5), 13}}},
		{"empty buckets left out", store.RegionalScope(), "", day(3), day(4), 6 * time.Hour, 5,
			[]tbucket{{at(3, 0), 4}, {at(3, 18), 1}}},
		{"hourly with a query and a range", store.RegionalScope(), "event.dataset:nginx.access OR event.dataset:sshd", at(2, 10), at(2, 12), time.Hour, 4,
			[]tbucket{{at(2, 10), 1}, {at(2, 11), 3}}},
		{"seconds", store.RegionalScope(), "event.dataset:nginx.access", at(2, 11), at(2, 12), 1 * time.Second, 3,
			[]tbucket{{at(2, 11), 1}, {at(2, 11).Add(time.Second), 1}, {at(2, 11).Add(5 * time.Minute), 1}}},
	} {
		ag, err := s.Aggregate(ctx, tc.scope, store.Events, store.AggRequest{Query: tc.q, From: tc.from, To: tc.to,
			Histogram: &store.HistogramAgg{Field: "@timestamp", Interval: tc.interval}})
		if err != nil {
			t.Errorf("histogram %s: %v", tc.name, err)
			continue
		}
		var got []tbucket
		for _, b := range ag.Buckets {
			got = append(got, tbucket{b.Time, b.Count})
			if b.Time.Location() != time.UTC {
				t.Errorf("histogram %s: bucket time %v is not in UTC", tc.name, b.Time)
			}
		}
		if ag.Total != tc.total || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("histogram %s: total %d buckets %v\n  want total %d buckets %v", tc.name, ag.Total, got, tc.total, tc.want)
		}
	}

	// Booleans: keys true/false; NOT matches documents without the field.
	tenant := uniq("ent")
	sc := store.TenantScope(tenant)
	for id, v := range map[string]any{"e1": true, "e2": true, "e3": false, "e4": nil} {
		body := map[string]any{"name": "Comune " + id, "kind": "municipality"}
		if v != nil {
			body["nis2"] = v
		}
		put(t, s, sc, store.Entities, store.Doc{ID: tenant + "-" + id, Tenant: tenant, Source: src(t, body)})
	}
	refresh(t, s, store.Entities)
	ag, err := s.Aggregate(ctx, sc, store.Entities, store.AggRequest{Terms: &store.TermsAgg{Field: "nis2"}})
	noErr(t, "Aggregate nis2", err)
	if got := fmt.Sprint(ag.Buckets); ag.Total != 4 || len(ag.Buckets) != 2 || ag.Buckets[0].Key != "true" || ag.Buckets[0].Count != 2 || ag.Buckets[1].Key != "false" || ag.Buckets[1].Count != 1 {
		t.Errorf("terms on a boolean: total %d buckets %s, want 4 and [true 2, false 1]", ag.Total, got)
	}
	for q, want := range map[string][]string{
		"nis2:true":         {tenant + "-e1", tenant + "-e2"},
		"nis2:false":        {tenant + "-e3"},
		"NOT nis2:true":     {tenant + "-e3", tenant + "-e4"},
		"NOT nis2:*":        {tenant + "-e4"},
		"kind:MUNICIPALITY": {tenant + "-e1", tenant + "-e2", tenant + "-e3", tenant + "-e4"},
	} {
		if _, got := search(t, s, sc, store.Entities, store.SearchRequest{Query: q}); !sameSet(got, want) {
			t.Errorf("entities %q: got %v, want %v", q, got, want)
		}
	}
}
