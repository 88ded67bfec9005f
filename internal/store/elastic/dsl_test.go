package elastic

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/query"
)

func compact(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCompileQuery compares the query DSL of each kind of term with the
// expected JSON (keys sorted, as encoding/json writes maps).
func TestCompileQuery(t *testing.T) {
	sch, err := store.SchemaOf(store.Events)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ q, want string }{
		{``, `{"match_all":{}}`},
		{`user.name:Root`, `{"term":{"user.name":{"case_insensitive":true,"value":"Root"}}}`},
		{`user.name:"Root"`, `{"term":{"user.name":{"case_insensitive":true,"value":"Root"}}}`},
		{`user.name:adm?n*`, `{"wildcard":{"user.name":{"case_insensitive":true,"value":"adm?n*"}}}`},
		{`url.path:*\**`, `{"wildcard":{"url.path":{"case_insensitive":true,"value":"*\\**"}}}`},
		{`message:Password`, `{"term":{"store_tokens.message":{"value":"password"}}}`},
		{`message:"failed password"`, `{"match_phrase":{"store_tokens.message":{"analyzer":"whitespace","query":"failed password"}}}`},
		{`message:adm*`, `{"wildcard":{"store_tokens.message":{"case_insensitive":true,"value":"adm*"}}}`},
		{`destination.port:22`, `{"term":{"destination.port":{"value":22}}}`},
		{`destination.port:[22 TO 80}`, `{"bool":{"filter":[{"range":{"destination.port":{"gte":22}}},{"range":{"destination.port":{"lt":80}}}]}}`},
		{`network.bytes>4294967295`, `{"range":{"network.bytes":{"gt":4294967295}}}`},
		{`source.ip:10.0.0.0/8`, `{"term":{"source.ip":{"value":"10.0.0.0/8"}}}`},
		{`source.ip:2001:DB8::1`, `{"term":{"source.ip":{"value":"2001:db8::1"}}}`},
		{`@timestamp>2026-03-01T09:15:00.1Z`, `{"range":{"@timestamp":{"format":"strict_date_optional_time_nanos","gt":"2026-03-01T09:15:00.1Z","lte":"2262-04-11T23:47:16.854775807Z"}}}`},
		{`message:"Città, di-Firenze"`, `{"match_phrase":{"store_tokens.message":{"analyzer":"whitespace","query":"città di firenze"}}}`},
		{`user.name:*`, `{"exists":{"field":"user.name"}}`},
		{`NOT user.name:root`, `{"bool":{"must_not":[{"term":{"user.name":{"case_insensitive":true,"value":"root"}}}]}}`},
		{`user.name:a OR user.name:b`, `{"bool":{"minimum_should_match":1,"should":[{"term":{"user.name":{"case_insensitive":true,"value":"a"}}},{"term":{"user.name":{"case_insensitive":true,"value":"b"}}}]}}`},
	}
	for _, c := range cases {
		n, err := query.Compile(c.q, sch)
		if err != nil {
			t.Errorf("%q: %v", c.q, err)
			continue
		}
		got, err := CompileQuery(n)
		if err != nil {
			t.Errorf("%q: %v", c.q, err)
			continue
		}
		// Ranges may be written as one or two clauses by the resolver:
		// compare only where the shape is the resolver's to choose.
		if s := compact(t, got); s != c.want {
			t.Errorf("%q:\n got %s\nwant %s\n(tree %s)", c.q, s, c.want, query.Format(n))
		}
	}
}

func TestEsWildcard(t *testing.T) {
	for in, want := range map[string]string{
		`a*b?c`:   `a*b?c`,
		`a\*b`:    `a\*b`,
		`a\\`:     `a\\`,
		`a\`:      `a\\`,
		`\a\?`:    `a\?`,
		`città*`:  `città*`,
		`x\\*`:    `x\\*`,
		`\\\*\?*`: `\\\*\?*`,
	} {
		if got := esWildcard(in); got != want {
			t.Errorf("esWildcard(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDateRangeOutsideNanos(t *testing.T) {
	old := time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := compact(t, dateRange("f", "gte", old)); got != `{"exists":{"field":"f"}}` {
		t.Errorf("gte 1960: %s", got)
	}
	if got := compact(t, dateRange("f", "lt", old)); got != `{"match_none":{}}` {
		t.Errorf("lt 1960: %s", got)
	}
	far := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := compact(t, dateRange("f", "lte", far)); got != `{"exists":{"field":"f"}}` {
		t.Errorf("lte 2300: %s", got)
	}
}

func TestSearchBody(t *testing.T) {
	sch, _ := store.SchemaOf(store.Events)
	from := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	body, err := searchBody(store.TenantScope("t1"), sch, store.SearchRequest{
		Query: "user.name:root", From: from, Size: 5, Offset: 10,
		Sort: []store.SortField{{Field: "destination.port"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"from":10,"query":{"bool":{"filter":[` +
		`{"term":{"organization.id":{"value":"t1"}}},` +
		`{"range":{"@timestamp":{"format":"strict_date_optional_time_nanos","gte":"2026-03-01T00:00:00Z","lte":"2262-04-11T23:47:16.854775807Z"}}},` +
		`{"term":{"user.name":{"case_insensitive":true,"value":"root"}}}]}},` +
		`"seq_no_primary_term":true,"size":5,` +
		`"sort":[{"destination.port":{"missing":"_last","order":"asc"}},{"store_doc_id":{"order":"asc"}}],` +
		`"track_total_hits":true}`
	if got := compact(t, body); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for _, r := range []store.SearchRequest{
		{Size: -1}, {Size: store.MaxPage + 1}, {Offset: store.MaxWindow}, {Sort: []store.SortField{{Field: "message"}}},
		{Sort: []store.SortField{{Field: "nope"}}}, {Query: "nope:1"},
	} {
		if _, err := searchBody(store.RegionalScope(), sch, r); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", r, err)
		}
	}
	ent, _ := store.SchemaOf(store.Entities)
	if _, err := searchBody(store.RegionalScope(), ent, store.SearchRequest{From: from}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("time range on a collection without time: got %v", err)
	}
}

func TestAggBody(t *testing.T) {
	sch, _ := store.SchemaOf(store.Events)
	body, _, err := aggBody(store.RegionalScope(), sch, store.AggRequest{Histogram: &store.HistogramAgg{Field: "@timestamp", Interval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"aggs":{"a":{"date_histogram":{"field":"@timestamp","fixed_interval":"3600s","min_doc_count":1,"offset":"+0s","time_zone":"UTC"}}},"query":{"match_all":{}},"size":0,"track_total_hits":true}`
	if got := compact(t, body); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for _, r := range []store.AggRequest{
		{},
		{Terms: &store.TermsAgg{Field: "message"}},
		{Terms: &store.TermsAgg{Field: "user.name", Size: 1001}},
		{Histogram: &store.HistogramAgg{Field: "@timestamp", Interval: 1500 * time.Millisecond}},
		{Histogram: &store.HistogramAgg{Field: "user.name", Interval: time.Hour}},
	} {
		if _, _, err := aggBody(store.RegionalScope(), sch, r); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", r, err)
		}
	}
}

func TestTermKey(t *testing.T) {
	s := func(v string) *string { return &v }
	for _, c := range []struct {
		typ, key string
		as       *string
		want     string
	}{
		{"keyword", "Root", nil, "Root"},
		{"long", "4500000000", nil, "4500000000"},
		{"double", "2.5", nil, "2.5"},
		{"double", "2.0", nil, "2"},
		{"boolean", "1", s("true"), "true"},
		{"boolean", "0", nil, "false"},
		{"ip", "10.0.0.1", s("10.0.0.1"), "10.0.0.1"},
	} {
		if got := termKey(typeOf(c.typ), c.key, c.as); got != c.want {
			t.Errorf("%s %s: got %q, want %q", c.typ, c.key, got, c.want)
		}
	}
}
