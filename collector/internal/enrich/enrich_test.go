package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

// counting wraps a store and counts reads; fail makes them fail.
type counting struct {
	store.Store
	reads atomic.Int64
	fail  atomic.Bool
}

var errDown = errors.New("store down")

func (c *counting) Get(ctx context.Context, s store.Scope, col store.Collection, id string) (store.Doc, error) {
	c.reads.Add(1)
	if c.fail.Load() {
		return store.Doc{}, errDown
	}
	return c.Store.Get(ctx, s, col, id)
}

func (c *counting) Search(ctx context.Context, s store.Scope, col store.Collection, r store.SearchRequest) (store.SearchResult, error) {
	c.reads.Add(1)
	if c.fail.Load() {
		return store.SearchResult{}, errDown
	}
	return c.Store.Search(ctx, s, col, r)
}

func setup(t testing.TB) (*counting, *time.Time) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "s.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	src, _ := json.Marshal(map[string]any{"name": "Comune di Vinci", "kind": "comune", "nis2": true, "province": "FI"})
	_, err = st.Put(ctx, store.TenantScope("comune-vinci"), store.Entities, store.Doc{ID: "comune-vinci", Tenant: "comune-vinci", Source: src}, store.WriteOptions{})
	require.NoError(t, err)
	require.NoError(t, PutAsset(ctx, st, "comune-vinci", AssetDoc{Name: "srv-web01", Aliases: []string{"web01", "SRV-WEB01.comune.vinci.fi.it"},
		Criticality: "high", Owner: "Ufficio CED"}))
	require.NoError(t, PutAsset(ctx, st, "comune-b", AssetDoc{Name: "web01", Criticality: "low"}))
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	return &counting{Store: st}, &now
}

func TestChain(t *testing.T) {
	st, now := setup(t)
	dir := &Directory{Store: st, TTL: time.Minute, Now: func() time.Time { return *now }}
	chain := Default(dir)
	ctx := context.Background()

	ev := event.Event{"organization.id": "comune-vinci", "host.name": "srv-web01.comune.vinci.fi.it"}
	require.NoError(t, chain.Enrich(ctx, ev))
	require.Equal(t, event.Event{
		"organization.id": "comune-vinci", "organization.name": "Comune di Vinci",
		"labels.entity_kind": "comune", "labels.entity_nis2": "true",
		"host.name": "srv-web01", "labels.host_alias": "srv-web01.comune.vinci.fi.it",
		"labels.asset_criticality": "high", "labels.asset_owner": "Ufficio CED",
	}, ev)

	ev = event.Event{"organization.id": "comune-vinci", "host.name": "srv-web01"}
	require.NoError(t, chain.Enrich(ctx, ev))
	require.Equal(t, "srv-web01", ev["host.name"])
	require.NotContains(t, ev, FieldHostAlias, "the canonical name is no alias")

	// Aliases are per tenant: comune-b's web01 is its own asset, and an
	// entity without a document gets no entity fields.
	ev = event.Event{"organization.id": "comune-b", "host.name": "web01"}
	require.NoError(t, chain.Enrich(ctx, ev))
	require.Equal(t, event.Event{"organization.id": "comune-b", "host.name": "web01", "labels.asset_criticality": "low"}, ev)

	ev = event.Event{"organization.id": "comune-vinci", "host.name": "unknown-host"}
	require.NoError(t, chain.Enrich(ctx, ev))
	require.NotContains(t, ev, FieldAssetCriticality)

	// Two entities, two refreshes of two reads each, whatever the number of events.
	require.Equal(t, int64(4), st.reads.Load())
	for range 1000 {
		require.NoError(t, chain.Enrich(ctx, event.Event{"organization.id": "comune-vinci", "host.name": "web01"}))
	}
	require.Equal(t, int64(4), st.reads.Load(), "no store read per event")

	// After the TTL an entity is read again; a failing store keeps the
	// stale data and says so, then waits RetryAfter before trying again.
	*now = now.Add(2 * time.Minute)
	st.fail.Store(true)
	ev = event.Event{"organization.id": "comune-vinci", "host.name": "web01"}
	require.ErrorIs(t, chain.Enrich(ctx, ev), errDown)
	require.Equal(t, "srv-web01", ev["host.name"], "stale data still applies")
	require.Equal(t, "Comune di Vinci", ev["organization.name"])
	reads := st.reads.Load()
	require.NoError(t, chain.Enrich(ctx, event.Event{"organization.id": "comune-vinci", "host.name": "web01"}))
	require.Equal(t, reads, st.reads.Load(), "no retry before RetryAfter")

	dir.Invalidate("")
	st.fail.Store(false)
	require.NoError(t, chain.Enrich(ctx, event.Event{"organization.id": "comune-vinci"}))
}

func TestFuncAndChainErrors(t *testing.T) {
	var calls int
	c := Chain{
		Func(func(context.Context, event.Event) error { calls++; return errors.New("first") }),
		Func(func(_ context.Context, ev event.Event) error { calls++; ev["x"] = "y"; return nil }),
	}
	ev := event.Event{}
	require.ErrorContains(t, c.Enrich(context.Background(), ev), "first")
	require.Equal(t, 2, calls, "a failing step does not stop the chain")
	require.Equal(t, "y", ev["x"])
}

// BenchmarkChain is the enrichment cost per event with warm caches.
func BenchmarkChain(b *testing.B) {
	st, _ := setup(b)
	chain := Default(&Directory{Store: st})
	ctx := context.Background()
	ev := event.Event{"organization.id": "comune-vinci", "host.name": "web01"}
	for b.Loop() {
		ev["host.name"] = "web01"
		if err := chain.Enrich(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}
