package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
)

func testUnscoped(t *testing.T, open Open) {
	s := newStore(t, open)
	ctx := testContext(t)
	tenant := uniq("ent")
	var zero store.Scope
	for _, c := range []store.Collection{store.Incidents, store.Events} {
		id := uniq("doc")
		body := map[string]any{"@timestamp": "2026-03-01T10:00:00Z", "created": "2026-03-01T10:00:00Z", "title": "x", "message": "x"}
		v := put(t, s, store.RegionalScope(), c, store.Doc{ID: id, Tenant: tenant, Source: src(t, body)})
		refresh(t, s, c)
		d := store.Doc{ID: id, Tenant: tenant, Source: src(t, body)}

		_, err := s.Put(ctx, zero, c, store.Doc{ID: uniq("doc"), Tenant: tenant, Source: src(t, body)}, store.WriteOptions{})
		wantErr(t, "Put unscoped", err, store.ErrUnscoped)
		_, err = s.Create(ctx, zero, c, store.Doc{ID: uniq("doc"), Tenant: tenant, Source: src(t, body)}, store.WriteOptions{})
		wantErr(t, "Create unscoped", err, store.ErrUnscoped)
		got, err := s.Get(ctx, zero, c, id)
		wantErr(t, "Get unscoped", err, store.ErrUnscoped)
		if got.Source != nil {
			t.Errorf("Get unscoped returned a document: %s", got.Source)
		}
		d.Version = v
		_, err = s.Update(ctx, zero, c, d, store.WriteOptions{})
		wantErr(t, "Update unscoped", err, store.ErrUnscoped)
		wantErr(t, "Delete unscoped", s.Delete(ctx, zero, c, id, store.Version{}, store.WriteOptions{}), store.ErrUnscoped)
		wantErr(t, "conditional Delete unscoped", s.Delete(ctx, zero, c, id, v, store.WriteOptions{}), store.ErrUnscoped)
		w, err := s.Bulk(zero, c, store.BulkOptions{})
		wantErr(t, "Bulk unscoped", err, store.ErrUnscoped)
		if w != nil {
			t.Errorf("Bulk unscoped returned a writer")
			_ = w.Close(ctx)
		}
		res, err := s.Search(ctx, zero, c, store.SearchRequest{})
		wantErr(t, "Search unscoped", err, store.ErrUnscoped)
		if len(res.Docs) != 0 || res.Total != 0 {
			t.Errorf("Search unscoped returned %d documents", res.Total)
		}
		ag, err := s.Aggregate(ctx, zero, c, store.AggRequest{Terms: &store.TermsAgg{Field: store.TenantField}})
		wantErr(t, "Aggregate unscoped", err, store.ErrUnscoped)
		if ag.Total != 0 || len(ag.Buckets) != 0 {
			t.Errorf("Aggregate unscoped returned %+v", ag)
		}
		// Nothing changed.
		got, err = s.Get(ctx, store.RegionalScope(), c, id)
		noErr(t, "Get regional", err)
		if got.Version != v {
			t.Errorf("%s: an unscoped call changed the document: version %+v, want %+v", c, got.Version, v)
		}
	}
}

// testIsolation checks that a tenant scope never returns or modifies
// another tenant's documents, through every method.
func testIsolation(t *testing.T, open Open) {
	s := newStore(t, open)
	ctx := testContext(t)
	a, b := uniq("enta"), uniq("entb")
	sa := store.TenantScope(a)
	reg := store.RegionalScope()
	type stored struct {
		id string
		v  store.Version
	}
	docs := map[store.Collection]map[string]stored{}
	for _, c := range []store.Collection{store.Incidents, store.Events} {
		docs[c] = map[string]stored{}
		for _, tenant := range []string{a, b} {
			id := uniq("doc")
			body := map[string]any{
				"@timestamp": "2026-03-01T10:00:00Z", "created": "2026-03-01T10:00:00Z",
				"title": "shared-title", "status": "new", "host": map[string]any{"name": "srv-01"}, "message": "shared words",
			}
			docs[c][tenant] = stored{id, put(t, s, store.TenantScope(tenant), c, store.Doc{ID: id, Tenant: tenant, Source: src(t, body)})}
		}
		refresh(t, s, c)
	}
	unchanged := func(what string, c store.Collection) {
		t.Helper()
		for tenant, st := range docs[c] {
			d, err := s.Get(ctx, reg, c, st.id)
			if err != nil || d.Version != st.v || d.Tenant != tenant {
				t.Errorf("%s: %s/%s of tenant %s: err %v, version %+v tenant %q; want version %+v", what, c, st.id, tenant, err, d.Version, d.Tenant, st.v)
			}
		}
	}
	crossWrite := func(what string, err error, allowed ...error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", what)
			return
		}
		for _, e := range allowed {
			if errors.Is(err, e) {
				return
			}
		}
		t.Errorf("%s: error %v, want one of %v", what, err, allowed)
	}

	for _, c := range []store.Collection{store.Incidents, store.Events} {
		own, foreign := docs[c][a], docs[c][b]

		// Reads.
		if _, err := s.Get(ctx, sa, c, own.id); err != nil {
			t.Errorf("%s: Get own document: %v", c, err)
		}
		_, err := s.Get(ctx, sa, c, foreign.id)
		wantErr(t, string(c)+": Get another tenant's document", err, store.ErrNotFound)
		field := `host.name:srv-01`
		if c == store.Incidents {
			field = `status:new`
		}
		for q, want := range map[string][]string{
			``:                          {own.id},
			`*`:                         {own.id},
			store.TenantField + `:` + b: nil,
			store.TenantField + `:*`:    {own.id},
			store.TenantField + `:` + b + ` OR ` + field: {own.id},
			`NOT ` + store.TenantField + `:` + a:         nil,
			field:                                        {own.id},
			`NOT ` + field:                               nil,
		} {
			res, got := search(t, s, sa, c, store.SearchRequest{Query: q, From: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
			if !sameSet(got, want) || res.Total != int64(len(want)) {
				t.Errorf("%s: Search %q in tenant scope: total %d ids %v, want %v", c, q, res.Total, got, want)
			}
			for _, d := range res.Docs {
				if d.Tenant != a {
					t.Errorf("%s: Search %q returned a document of tenant %q", c, q, d.Tenant)
				}
			}
		}
		res, got := search(t, s, reg, c, store.SearchRequest{})
		if !sameSet(got, []string{own.id, foreign.id}) || res.Total != 2 {
			t.Errorf("%s: regional Search: %v", c, got)
		}
		for q, wantTotal := range map[string]int64{``: 1, store.TenantField + `:` + b: 0} {
			ag, err := s.Aggregate(ctx, sa, c, store.AggRequest{Query: q, Terms: &store.TermsAgg{Field: store.TenantField}})
			noErr(t, "Aggregate terms", err)
			if ag.Total != wantTotal || (wantTotal == 1 && (len(ag.Buckets) != 1 || ag.Buckets[0].Key != a || ag.Buckets[0].Count != 1)) || (wantTotal == 0 && len(ag.Buckets) != 0) {
				t.Errorf("%s: Aggregate terms %q in tenant scope: %+v", c, q, ag)
			}
		}
		if c == store.Events {
			ag, err := s.Aggregate(ctx, sa, c, store.AggRequest{Terms: &store.TermsAgg{Field: "host.name"}})
			noErr(t, "Aggregate terms host.name", err)
			if ag.Total != 1 || len(ag.Buckets) != 1 || ag.Buckets[0].Count != 1 {
				t.Errorf("%s: Aggregate terms host.name in tenant scope: %+v", c, ag)
			}
		}
		tf := "created"
		if c == store.Events {
			tf = "@timestamp"
		}
		ag, err := s.Aggregate(ctx, sa, c, store.AggRequest{Histogram: &store.HistogramAgg{Field: tf, Interval: time.Hour}})
		noErr(t, "Aggregate histogram", err)
		if ag.Total != 1 || len(ag.Buckets) != 1 || ag.Buckets[0].Count != 1 {
			t.Errorf("%s: Aggregate histogram in tenant scope: %+v", c, ag)
		}

		// Writes naming the other tenant.
		body := src(t, map[string]any{"@timestamp": "2026-03-02T10:00:00Z", "created": "2026-03-02T10:00:00Z", "title": "hijack", "message": "hijack"})
		_, err = s.Put(ctx, sa, c, store.Doc{ID: uniq("doc"), Tenant: b, Source: body}, store.WriteOptions{})
		wantErr(t, string(c)+": Put of a document of another tenant", err, store.ErrOutOfScope)
		_, err = s.Create(ctx, sa, c, store.Doc{ID: uniq("doc"), Tenant: b, Source: body}, store.WriteOptions{})
		wantErr(t, string(c)+": Create of a document of another tenant", err, store.ErrOutOfScope)
		_, err = s.Put(ctx, sa, c, store.Doc{ID: foreign.id, Tenant: b, Source: body}, store.WriteOptions{})
		wantErr(t, string(c)+": Put over another tenant's document naming its tenant", err, store.ErrOutOfScope)

		// Writes to the other tenant's id, claiming the own tenant.
		_, err = s.Put(ctx, sa, c, store.Doc{ID: foreign.id, Tenant: a, Source: body}, store.WriteOptions{})
		if c != store.Events { // on a time series a no-op is also acceptable: it modifies nothing
			crossWrite(string(c)+": Put over another tenant's id", err, store.ErrOutOfScope, store.ErrExists, store.ErrConflict)
		}
		_, err = s.Create(ctx, sa, c, store.Doc{ID: foreign.id, Tenant: a, Source: body}, store.WriteOptions{})
		crossWrite(string(c)+": Create on another tenant's id", err, store.ErrExists, store.ErrOutOfScope)
		if c != store.Events {
			_, err = s.Update(ctx, sa, c, store.Doc{ID: foreign.id, Tenant: a, Version: foreign.v, Source: body}, store.WriteOptions{})
			crossWrite(string(c)+": Update of another tenant's document", err, store.ErrNotFound, store.ErrOutOfScope)
			_, err = s.Update(ctx, sa, c, store.Doc{ID: foreign.id, Tenant: b, Version: foreign.v, Source: body}, store.WriteOptions{})
			crossWrite(string(c)+": Update of another tenant's document naming it", err, store.ErrOutOfScope, store.ErrNotFound)
			_, err = s.Update(ctx, sa, c, store.Doc{ID: own.id, Tenant: b, Version: own.v, Source: body}, store.WriteOptions{})
			wantErr(t, string(c)+": Update moving a document to another tenant", err, store.ErrOutOfScope)
		}
		crossWrite(string(c)+": Delete of another tenant's document",
			s.Delete(ctx, sa, c, foreign.id, store.Version{}, store.WriteOptions{}), store.ErrNotFound, store.ErrOutOfScope)
		crossWrite(string(c)+": conditional Delete of another tenant's document",
			s.Delete(ctx, sa, c, foreign.id, foreign.v, store.WriteOptions{}), store.ErrNotFound, store.ErrOutOfScope)

		// Bulk.
		w, err := s.Bulk(sa, c, store.BulkOptions{FlushInterval: 100 * time.Millisecond})
		noErr(t, "Bulk", err)
		wantErr(t, string(c)+": bulk Add of a document of another tenant",
			w.Add(ctx, store.Doc{ID: uniq("doc"), Tenant: b, Source: body}), store.ErrOutOfScope)
		addErr := w.Add(ctx, store.Doc{ID: foreign.id, Tenant: a, Source: body})
		flushErr := w.Flush(ctx)
		if c != store.Events && addErr == nil && flushErr == nil {
			t.Errorf("%s: bulk Put over another tenant's id: neither Add nor Flush failed", c)
		}
		if err := w.Close(ctx); err != nil {
			t.Errorf("%s: closing the bulk writer: %v", c, err)
		}
		refresh(t, s, c)
		unchanged("after cross-tenant writes", c)
		hijack := `title:hijack`
		if c == store.Events {
			hijack = `message:hijack`
		}
		if res, _ := search(t, s, reg, c, store.SearchRequest{Query: hijack}); res.Total != 0 {
			t.Errorf("%s: a cross-tenant write stored %d documents", c, res.Total)
		}
		if res, got := search(t, s, store.TenantScope(b), c, store.SearchRequest{}); res.Total != 1 || got[0] != foreign.id {
			t.Errorf("%s: tenant %s now sees %v", c, b, got)
		}
	}
}
