package storetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/csirt-toscana/platform/internal/store"
)

// testConcurrent mixes single writes, updates, bulk writes and searches
// from several goroutines: every call must succeed (no lock or busy
// errors surface to callers) and every write must be there at the end.
func testConcurrent(t *testing.T, open Open) {
	s := newStore(t, open)
	ctx := testContext(t)
	tenant := uniq("ent")
	sc := store.TenantScope(tenant)
	prefix := uniq("conc")
	const writers, perWriter, bulkDocs = 4, 40, 400
	var wg sync.WaitGroup
	errc := make(chan error, 1000)
	for k := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				id := fmt.Sprintf("%s-inc-%d-%d", prefix, k, i)
				v, err := s.Put(ctx, sc, store.Incidents, store.Doc{ID: id, Tenant: tenant, Source: src(t, incident("concurrent", "new"))}, store.WriteOptions{})
				if err != nil {
					errc <- fmt.Errorf("put %s: %w", id, err)
					return
				}
				if _, err := s.Update(ctx, sc, store.Incidents, store.Doc{ID: id, Tenant: tenant, Version: v, Source: src(t, incident("concurrent", "closed"))}, store.WriteOptions{}); err != nil {
					errc <- fmt.Errorf("update %s: %w", id, err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		w, err := s.Bulk(sc, store.Events, store.BulkOptions{})
		if err != nil {
			errc <- err
			return
		}
		for i := range bulkDocs {
			if err := w.Add(ctx, store.Doc{ID: fmt.Sprintf("%s-ev-%d", prefix, i), Tenant: tenant, Source: src(t, bulkEvent(t, tenant, i))}); err != nil {
				errc <- err
				return
			}
			if i%100 == 99 {
				if err := w.Flush(ctx); err != nil {
					errc <- fmt.Errorf("flush: %w", err)
				}
			}
		}
		if err := w.Close(ctx); err != nil {
			errc <- fmt.Errorf("close: %w", err)
		}
	}()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if _, err := s.Search(ctx, sc, store.Events, store.SearchRequest{Query: "user.name:admin1*"}); err != nil {
					errc <- fmt.Errorf("search: %w", err)
					return
				}
				if _, err := s.Aggregate(ctx, sc, store.Incidents, store.AggRequest{Terms: &store.TermsAgg{Field: "status"}}); err != nil {
					errc <- fmt.Errorf("aggregate: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	refresh(t, s, store.Incidents)
	refresh(t, s, store.Events)
	ag, err := s.Aggregate(ctx, sc, store.Incidents, store.AggRequest{Terms: &store.TermsAgg{Field: "status"}})
	noErr(t, "Aggregate", err)
	if ag.Total != writers*perWriter || len(ag.Buckets) != 1 || ag.Buckets[0].Key != "closed" {
		t.Errorf("incidents after concurrent writes: %+v, want %d closed", ag, writers*perWriter)
	}
	if res, _ := search(t, s, sc, store.Events, store.SearchRequest{Size: 1}); res.Total != bulkDocs {
		t.Errorf("events after a concurrent bulk: %d, want %d", res.Total, bulkDocs)
	}
}
