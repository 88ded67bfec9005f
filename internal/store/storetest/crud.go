package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
)

func incident(title, status string) map[string]any {
	return map[string]any{
		"title":    title,
		"status":   status,
		"severity": "high",
		"created":  "2026-03-01T10:00:00Z",
	}
}

func testCRUD(t *testing.T, open Open) {
	s := newStore(t, open)
	ctx := testContext(t)
	tenant := uniq("ent")
	sc := store.TenantScope(tenant)
	id := uniq("inc")
	title := uniq("title")

	v1, err := s.Create(ctx, sc, store.Incidents, store.Doc{ID: id, Tenant: tenant, Source: src(t, incident(title, "new"))}, store.WriteOptions{Refresh: store.RefreshWait})
	noErr(t, "Create", err)
	if v1.IsZero() {
		t.Fatal("Create returned a zero version")
	}
	d, err := s.Get(ctx, sc, store.Incidents, id)
	noErr(t, "Get", err)
	if d.ID != id || d.Tenant != tenant || d.Version != v1 {
		t.Errorf("Get = id %q tenant %q version %+v, want %q %q %+v", d.ID, d.Tenant, d.Version, id, tenant, v1)
	}
	f := decode(t, d)
	if f["title"] != title || f["status"] != "new" || f[store.TenantField] != tenant {
		t.Errorf("Get source = %s", d.Source)
	}

	_, err = s.Create(ctx, sc, store.Incidents, store.Doc{ID: id, Tenant: tenant, Source: src(t, incident(title, "other"))}, store.WriteOptions{})
	wantErr(t, "second Create", err, store.ErrExists)

	v2, err := s.Update(ctx, sc, store.Incidents, store.Doc{ID: id, Tenant: tenant, Version: v1, Source: src(t, incident(title, "acknowledged"))}, store.WriteOptions{Refresh: store.RefreshWait})
	noErr(t, "Update", err)
	if v2 == v1 || v2.IsZero() {
		t.Errorf("Update returned version %+v after %+v", v2, v1)
	}
	d, err = s.Get(ctx, sc, store.Incidents, id)
	noErr(t, "Get after Update", err)
	if decode(t, d)["status"] != "acknowledged" || d.Version != v2 {
		t.Errorf("Get after Update = version %+v source %s", d.Version, d.Source)
	}

	_, err = s.Update(ctx, sc, store.Incidents, store.Doc{ID: id, Tenant: tenant, Version: v1, Source: src(t, incident(title, "stale"))}, store.WriteOptions{})
	wantErr(t, "Update from a stale version", err, store.ErrConflict)

	res, got := search(t, s, sc, store.Incidents, store.SearchRequest{Query: `title:"` + title + `"`})
	if res.Total != 1 || len(got) != 1 || got[0] != id || res.Docs[0].Version != v2 || res.Docs[0].Tenant != tenant {
		t.Errorf("Search by title = total %d docs %v", res.Total, res.Docs)
	}

	err = s.Delete(ctx, sc, store.Incidents, id, v1, store.WriteOptions{})
	wantErr(t, "Delete from a stale version", err, store.ErrConflict)
	if _, err := s.Get(ctx, sc, store.Incidents, id); err != nil {
		t.Errorf("Get after a refused Delete: %v", err)
	}
	noErr(t, "Delete", s.Delete(ctx, sc, store.Incidents, id, v2, store.WriteOptions{Refresh: store.RefreshWait}))
	_, err = s.Get(ctx, sc, store.Incidents, id)
	wantErr(t, "Get after Delete", err, store.ErrNotFound)
	wantErr(t, "Delete of an absent document", s.Delete(ctx, sc, store.Incidents, id, store.Version{}, store.WriteOptions{}), store.ErrNotFound)
	wantErr(t, "conditional Delete of an absent document", s.Delete(ctx, sc, store.Incidents, id, v2, store.WriteOptions{}), store.ErrNotFound)
	_, err = s.Update(ctx, sc, store.Incidents, store.Doc{ID: id, Tenant: tenant, Version: v2, Source: src(t, incident(title, "x"))}, store.WriteOptions{})
	wantErr(t, "Update of an absent document", err, store.ErrNotFound)
	refresh(t, s, store.Incidents)
	if res, _ := search(t, s, sc, store.Incidents, store.SearchRequest{Query: `title:"` + title + `"`}); res.Total != 0 {
		t.Errorf("Search after Delete: total %d", res.Total)
	}

	// Unconditional Delete, and re-creation of a deleted id: the old
	// version must not match the new document.
	v3, err := s.Create(ctx, sc, store.Incidents, store.Doc{ID: id, Tenant: tenant, Source: src(t, incident(title, "new"))}, store.WriteOptions{})
	noErr(t, "Create after Delete", err)
	_, err = s.Update(ctx, sc, store.Incidents, store.Doc{ID: id, Tenant: tenant, Version: v2, Source: src(t, incident(title, "x"))}, store.WriteOptions{})
	wantErr(t, "Update with the version of a deleted incarnation", err, store.ErrConflict)
	noErr(t, "unconditional Delete", s.Delete(ctx, sc, store.Incidents, id, store.Version{}, store.WriteOptions{}))
	_ = v3

	// Update is not available on the time series.
	for _, c := range []store.Collection{store.Events, store.Findings} {
		eid := uniq("ev")
		v := put(t, s, sc, c, store.Doc{ID: eid, Tenant: tenant, Source: src(t, map[string]any{"@timestamp": "2026-03-01T10:00:00Z"})})
		_, err = s.Update(ctx, sc, c, store.Doc{ID: eid, Tenant: tenant, Version: v, Source: src(t, map[string]any{"@timestamp": "2026-03-01T11:00:00Z"})}, store.WriteOptions{})
		wantErr(t, "Update on "+string(c), err, store.ErrInvalid)
	}
}

func testPutIdempotent(t *testing.T, open Open) {
	s := newStore(t, open)
	ctx := testContext(t)
	tenant := uniq("ent")
	sc := store.TenantScope(tenant)
	id := uniq("inc")
	title := uniq("title")
	doc := store.Doc{ID: id, Tenant: tenant, Source: src(t, incident(title, "new"))}
	v1 := put(t, s, sc, store.Incidents, doc)
	v2 := put(t, s, sc, store.Incidents, doc)
	v3 := put(t, s, store.RegionalScope(), store.Incidents, doc)
	if v2 == v1 || v3 == v2 {
		t.Errorf("Put on incidents replaces and bumps the version: got %+v %+v %+v", v1, v2, v3)
	}
	refresh(t, s, store.Incidents)
	res, got := search(t, s, sc, store.Incidents, store.SearchRequest{Query: `title:"` + title + `"`})
	if res.Total != 1 || len(got) != 1 {
		t.Errorf("after three Puts of one id: total %d, ids %v", res.Total, got)
	}
	doc.Source = src(t, incident(title, "resolved"))
	v4 := put(t, s, sc, store.Incidents, doc)
	d, err := s.Get(ctx, sc, store.Incidents, id)
	noErr(t, "Get", err)
	if decode(t, d)["status"] != "resolved" || d.Version != v4 {
		t.Errorf("Put did not replace: version %+v (want %+v), source %s", d.Version, v4, d.Source)
	}
}

func testPutTimeSeries(t *testing.T, open Open) {
	s := newStore(t, open)
	ctx := testContext(t)
	tenant := uniq("ent")
	sc := store.TenantScope(tenant)
	for _, c := range []store.Collection{store.Events, store.Findings} {
		id := uniq("ts")
		first := map[string]any{"@timestamp": "2026-03-01T10:00:00Z", "message": "first write", "host": map[string]any{"name": "a"}}
		v1 := put(t, s, sc, c, store.Doc{ID: id, Tenant: tenant, Source: src(t, first)})
		second := map[string]any{"@timestamp": "2026-03-02T10:00:00Z", "message": "second write", "host": map[string]any{"name": "b"}}
		v2, err := s.Put(ctx, sc, c, store.Doc{ID: id, Tenant: tenant, Source: src(t, second)}, store.WriteOptions{Refresh: store.RefreshWait})
		noErr(t, "second Put on "+string(c), err)
		if v2 != v1 {
			t.Errorf("%s: second Put returned version %+v, want the stored %+v", c, v2, v1)
		}
		d, err := s.Get(ctx, sc, c, id)
		noErr(t, "Get", err)
		if f := decode(t, d); f["message"] != "first write" || f["host.name"] != "a" || d.Version != v1 {
			t.Errorf("%s: the second Put replaced the document: version %+v source %s", c, d.Version, d.Source)
		}
		refresh(t, s, c)
		if res, _ := search(t, s, sc, c, store.SearchRequest{}); res.Total != 1 {
			t.Errorf("%s: %d documents after two Puts of one id", c, res.Total)
		}
	}
}

func testTenantField(t *testing.T, open Open) {
	s := newStore(t, open)
	ctx := testContext(t)
	tenant, other := uniq("ent"), uniq("ent")
	sc := store.TenantScope(tenant)
	cases := []struct {
		name   string
		source map[string]any
		check  string // a field that must survive
	}{
		{"absent", map[string]any{"name": "Comune di Prato"}, "name"},
		{"nested", map[string]any{"name": "Comune di Prato", "organization": map[string]any{"id": tenant, "name": "Prato"}}, "organization.name"},
		{"dotted", map[string]any{"name": "Comune di Prato", "organization.id": tenant}, "name"},
		{"object without id", map[string]any{"name": "Comune di Prato", "organization": map[string]any{"name": "Prato"}}, "organization.name"},
	}
	for _, tc := range cases {
		id := uniq("contact")
		put(t, s, sc, store.Contacts, store.Doc{ID: id, Tenant: tenant, Source: src(t, tc.source)})
		d, err := s.Get(ctx, sc, store.Contacts, id)
		noErr(t, "Get "+tc.name, err)
		f := decode(t, d)
		if f[store.TenantField] != tenant || f[tc.check] == nil {
			t.Errorf("%s: stored source %s, want %s = %q and %s kept", tc.name, d.Source, store.TenantField, tenant, tc.check)
		}
	}
	refresh(t, s, store.Contacts)
	res, _ := search(t, s, sc, store.Contacts, store.SearchRequest{Query: store.TenantField + ":" + tenant})
	if res.Total != int64(len(cases)) {
		t.Errorf("search on %s: total %d, want %d", store.TenantField, res.Total, len(cases))
	}

	// A source naming another tenant is refused, in every scope.
	for _, sc := range []store.Scope{sc, store.RegionalScope()} {
		for _, body := range []map[string]any{
			{"name": "x", "organization": map[string]any{"id": other}},
			{"name": "x", "organization.id": other},
		} {
			id := uniq("contact")
			_, err := s.Put(ctx, sc, store.Contacts, store.Doc{ID: id, Tenant: tenant, Source: src(t, body)}, store.WriteOptions{})
			wantErr(t, fmt.Sprintf("Put in %v with %s of another tenant", sc, store.TenantField), err, store.ErrInvalid)
			_, err = s.Create(ctx, sc, store.Contacts, store.Doc{ID: id, Tenant: tenant, Source: src(t, body)}, store.WriteOptions{})
			wantErr(t, fmt.Sprintf("Create in %v with %s of another tenant", sc, store.TenantField), err, store.ErrInvalid)
			if _, err := s.Get(ctx, store.RegionalScope(), store.Contacts, id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a refused document was stored: %v", err)
			}
		}
	}
}

func testInvalid(t *testing.T, open Open) {
	s := newStore(t, open)
	ctx := testContext(t)
	tenant := uniq("ent")
	sc := store.TenantScope(tenant)
	bad := store.Collection("no_such_collection")
	doc := store.Doc{ID: uniq("x"), Tenant: tenant, Source: src(t, map[string]any{"a": 1})}
	_, err := s.Put(ctx, sc, bad, doc, store.WriteOptions{})
	wantErr(t, "Put to an unknown collection", err, store.ErrInvalid)
	_, err = s.Create(ctx, sc, bad, doc, store.WriteOptions{})
	wantErr(t, "Create in an unknown collection", err, store.ErrInvalid)
	_, err = s.Get(ctx, sc, bad, doc.ID)
	wantErr(t, "Get from an unknown collection", err, store.ErrInvalid)
	doc.Version = store.Version{Seq: 1, Term: 1}
	_, err = s.Update(ctx, sc, bad, doc, store.WriteOptions{})
	wantErr(t, "Update in an unknown collection", err, store.ErrInvalid)
	wantErr(t, "Delete from an unknown collection", s.Delete(ctx, sc, bad, doc.ID, store.Version{}, store.WriteOptions{}), store.ErrInvalid)
	_, err = s.Bulk(sc, bad, store.BulkOptions{})
	wantErr(t, "Bulk into an unknown collection", err, store.ErrInvalid)
	_, err = s.Search(ctx, sc, bad, store.SearchRequest{})
	wantErr(t, "Search of an unknown collection", err, store.ErrInvalid)
	_, err = s.Aggregate(ctx, sc, bad, store.AggRequest{Terms: &store.TermsAgg{Field: store.TenantField}})
	wantErr(t, "Aggregate of an unknown collection", err, store.ErrInvalid)
	wantErr(t, "Refresh of an unknown collection", s.Refresh(ctx, bad), store.ErrInvalid)

	for _, id := range []string{"", "a b", "a/b", "é", strings.Repeat("a", 257)} {
		d := store.Doc{ID: id, Tenant: tenant, Source: src(t, map[string]any{"name": "x"})}
		_, err := s.Put(ctx, sc, store.Contacts, d, store.WriteOptions{})
		wantErr(t, fmt.Sprintf("Put with id %q", id), err, store.ErrInvalid)
		_, err = s.Create(ctx, sc, store.Contacts, d, store.WriteOptions{})
		wantErr(t, fmt.Sprintf("Create with id %q", id), err, store.ErrInvalid)
		_, err = s.Get(ctx, sc, store.Contacts, id)
		wantErr(t, fmt.Sprintf("Get with id %q", id), err, store.ErrInvalid)
		wantErr(t, fmt.Sprintf("Delete with id %q", id), s.Delete(ctx, sc, store.Contacts, id, store.Version{}, store.WriteOptions{}), store.ErrInvalid)
	}
	put(t, s, sc, store.Contacts, store.Doc{ID: strings.Repeat("a", 256), Tenant: tenant, Source: src(t, map[string]any{"name": "x"})})
	put(t, s, sc, store.Contacts, store.Doc{ID: "A-z_0.9:x", Tenant: tenant, Source: src(t, map[string]any{"name": "x"})})

	for _, body := range []string{`[1]`, `"x"`, `not json`, ``, `null`, `{"a":1}{"b":2}`} {
		_, err := s.Put(ctx, sc, store.Contacts, store.Doc{ID: uniq("x"), Tenant: tenant, Source: []byte(body)}, store.WriteOptions{})
		wantErr(t, fmt.Sprintf("Put of source %q", body), err, store.ErrInvalid)
	}
	// A value that does not fit its field's type.
	for _, body := range []map[string]any{
		{"@timestamp": "2026-03-01T10:00:00Z", "source": map[string]any{"ip": "not-an-ip"}},
		{"@timestamp": "2026-03-01T10:00:00Z", "destination": map[string]any{"port": "twenty-two"}},
		{"@timestamp": "not a time"},
	} {
		_, err := s.Put(ctx, sc, store.Events, store.Doc{ID: uniq("x"), Tenant: tenant, Source: src(t, body)}, store.WriteOptions{})
		wantErr(t, fmt.Sprintf("Put of event %v", body), err, store.ErrInvalid)
	}

	for _, r := range []store.SearchRequest{
		{Size: store.MaxPage + 1},
		{Size: -1},
		{Offset: -1},
		{Offset: store.MaxWindow - 5, Size: 10},
		{Sort: []store.SortField{{Field: "no.such.field"}}},
	} {
		_, err := s.Search(ctx, sc, store.Events, r)
		wantErr(t, fmt.Sprintf("Search %+v", r), err, store.ErrInvalid)
	}
	for name, r := range map[string]store.AggRequest{
		"no aggregation":          {},
		"two aggregations":        {Terms: &store.TermsAgg{Field: "host.name"}, Histogram: &store.HistogramAgg{Field: "@timestamp", Interval: time.Hour}},
		"terms on unknown field":  {Terms: &store.TermsAgg{Field: "no.such.field"}},
		"terms on text field":     {Terms: &store.TermsAgg{Field: "message"}},
		"terms size too large":    {Terms: &store.TermsAgg{Field: "host.name", Size: 1001}},
		"histogram on keyword":    {Histogram: &store.HistogramAgg{Field: "host.name", Interval: time.Hour}},
		"histogram sub-second":    {Histogram: &store.HistogramAgg{Field: "@timestamp", Interval: 500 * time.Millisecond}},
		"histogram fractional s":  {Histogram: &store.HistogramAgg{Field: "@timestamp", Interval: 1500 * time.Millisecond}},
		"histogram unknown field": {Histogram: &store.HistogramAgg{Field: "nope", Interval: time.Hour}},
	} {
		_, err := s.Aggregate(ctx, sc, store.Events, r)
		wantErr(t, "Aggregate: "+name, err, store.ErrInvalid)
	}
}

func testOCC(t *testing.T, open Open) {
	s := newStore(t, open)
	ctx := testContext(t)
	tenant := uniq("ent")
	sc := store.TenantScope(tenant)
	id := uniq("inc")
	v0, err := s.Create(ctx, sc, store.Incidents, store.Doc{ID: id, Tenant: tenant, Source: src(t, incident("occ", "new"))}, store.WriteOptions{})
	noErr(t, "Create", err)

	// Two updates from the same version, one after the other.
	v1, err := s.Update(ctx, sc, store.Incidents, store.Doc{ID: id, Tenant: tenant, Version: v0, Source: src(t, incident("occ", "acknowledged"))}, store.WriteOptions{})
	noErr(t, "first Update", err)
	_, err = s.Update(ctx, sc, store.Incidents, store.Doc{ID: id, Tenant: tenant, Version: v0, Source: src(t, incident("occ", "closed"))}, store.WriteOptions{})
	wantErr(t, "second Update from the same version", err, store.ErrConflict)

	// Many concurrent updates from the same version: exactly one wins.
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	vers := make([]store.Version, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := incident("occ", "investigating")
			body["assignee"] = fmt.Sprintf("analyst-%d", i)
			vers[i], errs[i] = s.Update(ctx, sc, store.Incidents, store.Doc{ID: id, Tenant: tenant, Version: v1, Source: src(t, body)}, store.WriteOptions{})
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("updates %d and %d from the same version both succeeded", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("update %d: %v, want ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no concurrent update succeeded")
	}
	d, err := s.Get(ctx, sc, store.Incidents, id)
	noErr(t, "Get", err)
	if f := decode(t, d); f["assignee"] != fmt.Sprintf("analyst-%d", winner) || d.Version != vers[winner] {
		t.Errorf("stored %s version %+v, want the winner's (analyst-%d, %+v)", d.Source, d.Version, winner, vers[winner])
	}
}
