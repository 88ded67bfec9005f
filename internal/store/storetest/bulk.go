package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
)

// bulkEvent is an event of about 1 KB, like the collector writes.
func bulkEvent(t testing.TB, tenant string, i int) map[string]any {
	ts := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	return map[string]any{
		"@timestamp": ts.Format(time.RFC3339Nano),
		"event": map[string]any{
			"id": fmt.Sprintf("evt-%d", i), "ingested": ts.Add(time.Second).Format(time.RFC3339Nano),
			"kind": "event", "category": []string{"authentication"}, "type": []string{"start"},
			"dataset": "sshd", "module": "system", "outcome": "failure", "provider": "sshd",
			"sequence": i,
			"original": fmt.Sprintf("Mar  1 00:00:%02d srv-%02d sshd[%d]: Failed password for invalid user admin%d from 203.0.113.%d port %d ssh2",
				i%60, i%50, 1000+i%30000, i%100, i%250, 30000+i%30000),
		},
		"agent":        map[string]any{"id": fmt.Sprintf("agent-%04d", i%300), "version": "1.0.0"},
		"host":         map[string]any{"name": fmt.Sprintf("srv-%02d", i%50), "hostname": fmt.Sprintf("srv-%02d.comune.example.it", i%50)},
		"source":       map[string]any{"ip": fmt.Sprintf("203.0.113.%d", i%250), "port": 30000 + i%30000},
		"destination":  map[string]any{"ip": "10.1.0.5", "port": 22},
		"user":         map[string]any{"name": fmt.Sprintf("admin%d", i%100)},
		"related":      map[string]any{"ip": []string{fmt.Sprintf("203.0.113.%d", i%250), "10.1.0.5"}, "user": []string{fmt.Sprintf("admin%d", i%100)}},
		"log":          map[string]any{"file": map[string]any{"path": "/var/log/auth.log"}, "offset": int64(i) * 131},
		"message":      fmt.Sprintf("Failed password for invalid user admin%d from 203.0.113.%d port %d ssh2", i%100, i%250, 30000+i%30000),
		"network":      map[string]any{"transport": "tcp", "protocol": "ssh", "direction": "inbound", "type": "ipv4"},
		"tags":         []string{"ssh", "bruteforce", "parsed"},
		"ecs":          map[string]any{"version": "8.11.0"},
		"organization": map[string]any{"id": tenant, "name": "Comune di Esempio"},
	}
}

func testBulk(t *testing.T, open Open) {
	s := newStore(t, open)
	ctx := testContext(t)
	a, b := uniq("enta"), uniq("entb")
	const total, workers = 3000, 4
	prefix := uniq("bulk")
	docs := make([]store.Doc, total)
	for i := range docs {
		tenant := a
		if i%3 == 2 {
			tenant = b
		}
		docs[i] = store.Doc{ID: fmt.Sprintf("%s-%05d", prefix, i), Tenant: tenant, Source: src(t, bulkEvent(t, tenant, i))}
	}
	w, err := s.Bulk(store.RegionalScope(), store.Events, store.BulkOptions{})
	noErr(t, "Bulk", err)
	addAll := func(docs []store.Doc) {
		var wg sync.WaitGroup
		for k := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := k; i < len(docs); i += workers {
					if err := w.Add(ctx, docs[i]); err != nil {
						t.Errorf("Add %s: %v", docs[i].ID, err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	addAll(docs)
	noErr(t, "Flush", w.Flush(ctx))
	refresh(t, s, store.Events)
	counts := func(what string) {
		t.Helper()
		for sc, want := range map[store.Scope]int64{store.RegionalScope(): total, store.TenantScope(a): 2000, store.TenantScope(b): 1000} {
			res, _ := search(t, s, sc, store.Events, store.SearchRequest{Size: 1})
			if res.Total != want {
				t.Errorf("%s: %v sees %d events, want %d", what, sc, res.Total, want)
			}
		}
		ag, err := s.Aggregate(ctx, store.RegionalScope(), store.Events, store.AggRequest{Terms: &store.TermsAgg{Field: store.TenantField}})
		noErr(t, "Aggregate", err)
		if ag.Total != total || len(ag.Buckets) != 2 || ag.Buckets[0].Key != a || ag.Buckets[0].Count != 2000 || ag.Buckets[1].Count != 1000 {
			t.Errorf("%s: terms on %s: %+v", what, store.TenantField, ag)
		}
	}
	counts("after Flush")
	d, err := s.Get(ctx, store.TenantScope(b), store.Events, docs[2].ID)
	noErr(t, "Get of a bulk document", err)
	if f := decode(t, d); f["event.id"] != "evt-2" || f[store.TenantField] != b {
		t.Errorf("bulk document stored as %s", d.Source)
	}

	// Retried batches leave one document per id.
	addAll(docs[:500])
	noErr(t, "second Flush", w.Flush(ctx))
	refresh(t, s, store.Events)
	counts("after adding 500 again")

	// Without Flush, a document is written within the flush interval (1 s).
	late := store.Doc{ID: prefix + "-late", Tenant: a, Source: src(t, bulkEvent(t, a, 99999))}
	noErr(t, "Add", w.Add(ctx, late))
	deadline := time.Now().Add(5 * time.Second)
	for {
		refresh(t, s, store.Events)
		if _, err := s.Get(ctx, store.TenantScope(a), store.Events, late.ID); err == nil {
			break
		} else if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("a document added without Flush was not written within 5 s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	noErr(t, "Close", w.Close(ctx))
	if err := w.Add(ctx, docs[0]); err == nil {
		t.Error("Add after Close succeeded")
	}

	// A tenant-scoped writer; Close flushes.
	wb, err := s.Bulk(store.TenantScope(b), store.Events, store.BulkOptions{FlushInterval: 200 * time.Millisecond, FlushBytes: 64 << 10})
	noErr(t, "Bulk in tenant scope", err)
	for i := range 100 {
		noErr(t, "Add", wb.Add(ctx, store.Doc{ID: fmt.Sprintf("%s-b-%03d", prefix, i), Tenant: b, Source: src(t, bulkEvent(t, b, i))}))
	}
	noErr(t, "Close", wb.Close(ctx))
	refresh(t, s, store.Events)
	if res, _ := search(t, s, store.TenantScope(b), store.Events, store.SearchRequest{Size: 1}); res.Total != 1100 {
		t.Errorf("after a tenant writer's Close: %d events, want 1100", res.Total)
	}

	// Bulk into a collection that is not a time series replaces.
	wi, err := s.Bulk(store.TenantScope(a), store.Incidents, store.BulkOptions{})
	noErr(t, "Bulk incidents", err)
	id := uniq("inc")
	noErr(t, "Add", wi.Add(ctx, store.Doc{ID: id, Tenant: a, Source: src(t, incident("bulk", "new"))}))
	noErr(t, "Add", wi.Add(ctx, store.Doc{ID: id, Tenant: a, Source: src(t, incident("bulk", "closed"))}))
	noErr(t, "Close", wi.Close(ctx))
	d, err = s.Get(ctx, store.TenantScope(a), store.Incidents, id)
	noErr(t, "Get", err)
	if decode(t, d)["status"] != "closed" {
		t.Errorf("bulk Put on incidents did not replace: %s", d.Source)
	}
}

func testBulkErrors(t *testing.T, open Open) {
	s := newStore(t, open)
	ctx := testContext(t)
	a, b := uniq("enta"), uniq("entb")
	foreign := uniq("inc")
	put(t, s, store.TenantScope(b), store.Incidents, store.Doc{ID: foreign, Tenant: b, Source: src(t, incident("theirs", "new"))})

	w, err := s.Bulk(store.TenantScope(a), store.Incidents, store.BulkOptions{})
	noErr(t, "Bulk", err)
	wantErr(t, "Add with a bad id", w.Add(ctx, store.Doc{ID: "bad id", Tenant: a, Source: src(t, incident("x", "new"))}), store.ErrInvalid)
	wantErr(t, "Add with a bad source", w.Add(ctx, store.Doc{ID: uniq("inc"), Tenant: a, Source: []byte(`[]`)}), store.ErrInvalid)
	wantErr(t, "Add of another tenant", w.Add(ctx, store.Doc{ID: uniq("inc"), Tenant: b, Source: src(t, incident("x", "new"))}), store.ErrOutOfScope)

	good := []string{uniq("inc"), uniq("inc")}
	noErr(t, "Add", w.Add(ctx, store.Doc{ID: good[0], Tenant: a, Source: src(t, incident("ours", "new"))}))
	addErr := w.Add(ctx, store.Doc{ID: foreign, Tenant: a, Source: src(t, incident("ours", "new"))})
	noErr(t, "Add", w.Add(ctx, store.Doc{ID: good[1], Tenant: a, Source: src(t, incident("ours", "new"))}))
	flushErr := w.Flush(ctx)
	switch {
	case addErr != nil:
	case flushErr == nil:
		t.Errorf("a bulk Put over another tenant's id: neither Add nor Flush failed")
	case !strings.Contains(flushErr.Error(), foreign):
		t.Errorf("Flush error %q does not name the document %s", flushErr, foreign)
	}
	for _, id := range good {
		if strings.Contains(fmt.Sprint(flushErr), id) {
			t.Errorf("Flush error %q names the good document %s", flushErr, id)
		}
	}
	noErr(t, "next Flush", w.Flush(ctx)) // errors are reported once
	noErr(t, "Close", w.Close(ctx))
	for _, id := range good {
		if _, err := s.Get(ctx, store.TenantScope(a), store.Incidents, id); err != nil {
			t.Errorf("the good documents of a batch with a failure: Get %s: %v", id, err)
		}
	}
	d, err := s.Get(ctx, store.TenantScope(b), store.Incidents, foreign)
	noErr(t, "Get", err)
	if decode(t, d)["title"] != "theirs" {
		t.Errorf("a bulk write of tenant %s replaced tenant %s's document: %s", a, b, d.Source)
	}

	// Flush honours its context.
	w, err = s.Bulk(store.TenantScope(a), store.Incidents, store.BulkOptions{})
	noErr(t, "Bulk", err)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_ = w.Flush(cctx) // nothing buffered: may or may not report the cancellation
	noErr(t, "Close", w.Close(ctx))
}

// BenchBulk measures bulk indexing of 1 KB events through one writer fed by
// four goroutines, flushed at the end; it reports events/s.
func BenchBulk(b *testing.B, open func(b *testing.B) store.Store) {
	s := open(b)
	defer func() {
		if err := s.Close(); err != nil {
			b.Errorf("Close: %v", err)
		}
	}()
	ctx := context.Background()
	tenants := []string{"bench-a", "bench-b", "bench-c"}
	const pool = 4096
	srcs := make([][]byte, pool)
	size := 0
	for i := range srcs {
		srcs[i] = src(b, bulkEvent(b, tenants[i%len(tenants)], i))
		size += len(srcs[i])
	}
	b.SetBytes(int64(size / pool))
	w, err := s.Bulk(store.RegionalScope(), store.Events, store.BulkOptions{})
	if err != nil {
		b.Fatal(err)
	}
	prefix := uniq("bench")
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	const workers = 4
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; i < b.N; i += workers {
				d := store.Doc{ID: fmt.Sprintf("%s-%d", prefix, i), Tenant: tenants[i%pool%len(tenants)], Source: srcs[i%pool]}
				if err := w.Add(ctx, d); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(ctx); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}

// BenchSearch measures searches over 20,000 1 KB events of three tenants:
// each iteration runs a keyword, a text, a CIDR and a list query in a
// tenant scope and the same in regional scope (eight searches with totals,
// first page of 100).
func BenchSearch(b *testing.B, open func(b *testing.B) store.Store) {
	s := open(b)
	defer func() {
		if err := s.Close(); err != nil {
			b.Errorf("Close: %v", err)
		}
	}()
	ctx := context.Background()
	tenants := []string{"bench-a", "bench-b", "bench-c"}
	w, err := s.Bulk(store.RegionalScope(), store.Events, store.BulkOptions{})
	if err != nil {
		b.Fatal(err)
	}
	prefix := uniq("bench")
	for i := range 20000 {
		tenant := tenants[i%len(tenants)]
		if err := w.Add(ctx, store.Doc{ID: fmt.Sprintf("%s-%d", prefix, i), Tenant: tenant, Source: src(b, bulkEvent(b, tenant, i))}); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		b.Fatal(err)
	}
	if err := s.Refresh(ctx, store.Events); err != nil {
		b.Fatal(err)
	}
	queries := []string{`host.name:srv-07`, `message:admin42`, `source.ip:203.0.113.0/28`, `related.user:admin5 AND NOT user.name:root`}
	b.ResetTimer()
	for range b.N {
		for _, sc := range []store.Scope{store.TenantScope("bench-b"), store.RegionalScope()} {
			for _, q := range queries {
				res, err := s.Search(ctx, sc, store.Events, store.SearchRequest{Query: q})
				if err != nil || res.Total == 0 {
					b.Fatalf("Search %q: total %d, %v", q, res.Total, err)
				}
			}
		}
	}
}
