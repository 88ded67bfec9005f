package syslogin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/elastic"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// TestRegistryElasticsearch runs the device registry (add, lookup,
// last_seen, remove) on the real Elasticsearch, the cluster-mode store.
func TestRegistryElasticsearch(t *testing.T) {
	url := testenv.Elasticsearch(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	zero := 0
	st, err := elastic.Open(ctx, elastic.Options{Addresses: []string{url}, IndexPrefix: "test-syslogin-" + hex.EncodeToString(rnd[:]),
		Replicas: &zero, RefreshInterval: 100 * time.Millisecond, Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := st.Drop(ctx); err != nil {
			t.Errorf("dropping test indices: %v", err)
		}
		_ = st.Close()
	})
	addEntity(t, st, "comune-pisa")
	addDevice(t, st, "fw-pisa", "comune-pisa", "fw1.pisa", "10.30.0.0/16")
	addDevice(t, st, "nas-pisa", "comune-pisa", "", "10.30.4.4")

	seen := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	r := NewRegistry(st, RegistryOptions{Now: func() time.Time { return seen }})
	require.NoError(t, r.Load(ctx))
	d, ok := r.Lookup(ctx, netip.MustParseAddr("10.30.4.4"))
	require.True(t, ok)
	require.Equal(t, "nas-pisa", d.Name)
	d, ok = r.Lookup(ctx, netip.MustParseAddr("10.30.4.5"))
	require.True(t, ok)
	require.Equal(t, "fw-pisa", d.Name)

	r.Seen("fw-pisa", seen)
	r.flushSeen(ctx, true)
	require.NoError(t, st.Refresh(ctx, store.Agents))
	list, err := ListDevices(ctx, st, "comune-pisa")
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "fw-pisa", list[0].Name)
	require.Equal(t, StatusActive, list[0].Status)
	require.True(t, seen.Equal(list[0].LastSeen), "last_seen %v", list[0].LastSeen)
	require.Equal(t, StatusRegistered, list[1].Status)
	require.True(t, list[1].LastSeen.IsZero())

	_, err = RemoveDevice(ctx, st, "fw-pisa")
	require.NoError(t, err)
	r.Seen("fw-pisa", seen.Add(time.Minute)) // a removed device stays removed
	r.flushSeen(ctx, true)
	require.NoError(t, st.Refresh(ctx, store.Agents))
	list, err = ListDevices(ctx, st, "")
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "nas-pisa", list[0].Name)
}
