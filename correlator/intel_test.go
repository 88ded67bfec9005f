package correlator

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
	"github.com/csirt-toscana/platform/internal/testenv"
	"github.com/csirt-toscana/platform/rules/intel"
)

const mispEvent = "5a0a9aa9-23a4-4607-b6df-41a9950d210f"

func flowEvent(entity, id, dst string, at time.Time) []byte {
	ev := map[string]any{"@timestamp": at.UTC().Format(time.RFC3339Nano), "event.id": id,
		"event.ingested": at.UTC().Format(time.RFC3339Nano), "event.kind": "event", "event.category": []string{"network"},
		"event.type": []string{"connection"}, "event.dataset": "flow", "organization.id": entity,
		"agent.id": "agent-" + entity, "host.name": "srv-" + entity, "source.ip": "10.1.2.3", "source.port": 40000,
		"destination.ip": dst, "destination.port": 443, "network.transport": "tcp"}
	b, _ := json.Marshal(ev)
	return b
}

func intelFindings(t *testing.T, e *env) []*finding.Finding {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, e.st.Refresh(ctx, store.Findings))
	res, err := e.st.Search(ctx, store.RegionalScope(), store.Findings, store.SearchRequest{Query: "kind:intel", Size: 100})
	require.NoError(t, err)
	var out []*finding.Finding
	for _, d := range res.Docs {
		f, err := finding.Decode(d.Source)
		require.NoError(t, err)
		out = append(out, f)
	}
	return out
}

// A MISP feed read from a file gives a matcher; a flow to one of its
// addresses becomes a finding citing the MISP event; an indicator added
// later retro-hunts an event stored an hour earlier.
func TestIntelStreamAndRetroHunt(t *testing.T) {
	feed := filepath.Join(testenv.SharedData(t), "intel", "pymisp", mispEvent+".json")
	e := newEnv(t, bus.Options{}, nil, ".intel")
	ctx := context.Background()

	// An event stored an hour ago, before anything knows 192.0.2.66 is bad.
	old := time.Now().Add(-time.Hour)
	_, err := e.st.Put(ctx, store.RegionalScope(), store.Events, store.Doc{ID: "old-flow-1", Tenant: "comune-d",
		Source: flowEvent("comune-d", "old-flow-1", "192.0.2.66", old)}, store.WriteOptions{Refresh: store.RefreshWait})
	require.NoError(t, err)

	c := e.correlator(t, func(o *Options) {
		o.Feeds = []config.Feed{{Name: "circl-osint", Format: "misp", URL: feed, Interval: config.Duration(time.Hour), Confidence: 90}}
		o.RetroHunt = 7 * 24 * time.Hour
	})
	stop := run(t, c)
	defer stop()
	waitFor(t, "the MISP indicators", func() bool { m := c.Intel().Holder().Load(); return m != nil && m.Len() > 0 })

	e.produce(t, "comune-d", flowEvent("comune-d", "flow-bad-1", "98.126.156.210", time.Now()),
		flowEvent("comune-d", "flow-bad-2", "98.126.156.210", time.Now()), // same hour: one finding
		flowEvent("comune-d", "flow-ok", "192.0.2.1", time.Now()))
	waitFor(t, "the intel finding", func() bool { return len(intelFindings(t, e)) > 0 })
	waitFor(t, "3 offsets committed", func() bool { return e.committed(t) == 3 })
	fs := intelFindings(t, e)
	require.Len(t, fs, 1)
	f := fs[0]
	require.Equal(t, "comune-d", f.Entity)
	require.Equal(t, "98.126.156.210", f.Labels["indicator_value"])
	require.Equal(t, "destination.ip", f.Labels["match_field"])
	require.Contains(t, f.Labels["indicator_parent"], mispEvent)
	require.Contains(t, f.Message, "5a0a9aa9")
	require.Equal(t, []string{"flow-bad-1"}, f.EventIDs)

	// A new indicator arrives (a local list stored by another component).
	inds, _, err := intel.ParseCSV(strings.NewReader("192.0.2.66\n"), intel.Options{Source: "local-list"})
	require.NoError(t, err)
	require.NoError(t, c.Intel().StoreIndicators(ctx, inds))
	require.NoError(t, e.st.Refresh(ctx, store.Intel))
	waitFor(t, "the retro-hunt finding", func() bool { return len(intelFindings(t, e)) == 2 })
	var retro *finding.Finding
	for _, f := range intelFindings(t, e) {
		if f.Labels["retro_hunt"] == "true" {
			retro = f
		}
	}
	require.NotNil(t, retro, "a finding marked as retro-hunt")
	require.Equal(t, []string{"old-flow-1"}, retro.EventIDs)
	require.Equal(t, "192.0.2.66", retro.Labels["indicator_value"])
	require.WithinDuration(t, old, retro.Time, time.Second)
}

// More indicators of one type than the store's search window (10,000) are
// all loaded into the matcher: the first and the last stored both match,
// and expired ones are left out.
func TestIntelLoadsPastSearchWindow(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "store.db"), Logger: quiet()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const n, expired = store.MaxWindow + 500, 100
	inds := make([]intel.Indicator, 0, n)
	for i := range n {
		ind, err := intel.New(intel.IPv4, fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "bulk-feed")
		require.NoError(t, err)
		if i >= n-expired {
			ind.Expires = now.Add(-time.Hour)
		}
		inds = append(inds, ind)
	}
	m := NewIntel(IntelOptions{Store: st, Now: func() time.Time { return now }, Logger: quiet()})
	require.NoError(t, m.StoreIndicators(ctx, inds))
	res, err := st.Search(ctx, store.RegionalScope(), store.Intel, store.SearchRequest{Query: "type:ipv4", Size: 1})
	require.NoError(t, err)
	require.EqualValues(t, n, res.Total, "indicators stored")

	_, err = m.Refresh(ctx)
	require.NoError(t, err)
	mt := m.Holder().Load()
	require.Equal(t, n-expired, mt.Len(), "indicators in the matcher")
	match := func(ip string) int {
		ev, err := event.Decode(flowEvent("comune-a", "flow-"+ip, ip, now))
		require.NoError(t, err)
		return len(mt.MatchEvent(ev, now))
	}
	require.Equal(t, 1, match("10.0.0.0"), "the first indicator stored")
	require.Equal(t, 1, match(inds[n-expired-1].Value), "the last unexpired indicator stored")
	require.Equal(t, 0, match(inds[n-1].Value), "an expired indicator")
	require.Equal(t, 0, match("192.0.2.1"), "an address in no indicator")
}
