package silence

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

type sender struct {
	mu   sync.Mutex
	msgs []bus.Message
}

func (s *sender) Produce(_ context.Context, msgs ...bus.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, msgs...)
	return nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func putAgent(t *testing.T, st store.Store, id, entity string, fields map[string]any) {
	t.Helper()
	fields["agent.id"] = id
	src, err := json.Marshal(fields)
	require.NoError(t, err)
	_, err = st.Put(context.Background(), store.TenantScope(entity), store.Agents, store.Doc{ID: id, Tenant: entity, Source: src}, store.WriteOptions{})
	require.NoError(t, err)
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func setup(t *testing.T) (store.Store, *sender, *clock) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "s.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st, &sender{}, &clock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
}

func detector(t *testing.T, st store.Store, snd *sender, c *clock, instance string) *Detector {
	t.Helper()
	d, err := New(Options{Store: st, Publisher: &finding.Publisher{Sender: snd, Store: st}, Now: c.now, Instance: instance})
	require.NoError(t, err)
	return d
}

func rules(fs []*finding.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.RuleID+" "+strings.TrimPrefix(f.Labels["subject"], ""))
	}
	sort.Strings(out)
	return out
}

func TestSilence(t *testing.T) {
	st, snd, c := setup(t)
	now := c.t
	putAgent(t, st, "a1", "comune-a", map[string]any{"kind": "agent", "hostname": "srv1", "last_seen": ts(now.Add(-20 * time.Minute))})
	putAgent(t, st, "a2", "comune-a", map[string]any{"last_seen": ts(now.Add(-time.Minute))})
	putAgent(t, st, "a3", "comune-b", map[string]any{"last_seen": ts(now.Add(-5 * time.Minute)), "policy": map[string]any{"silence_after": "2m"}})
	putAgent(t, st, "d1", "comune-c", map[string]any{"kind": "device", "last_seen": ts(now.Add(-7 * time.Hour))})
	putAgent(t, st, "a4", "comune-a", map[string]any{"status": "revoked", "last_seen": ts(now.Add(-48 * time.Hour))})
	putAgent(t, st, "a5", "comune-d", map[string]any{"enrolled": ts(now.Add(-time.Hour))})

	d := detector(t, st, snd, c, "one")
	rep, err := d.Check(context.Background())
	require.NoError(t, err)
	require.Equal(t, 4, rep.Agents, "a1, a2, a3, a5 (not the device, not the revoked agent)")
	require.Equal(t, []string{
		"csirt.agent.silence agent:a1", "csirt.agent.silence agent:a3", "csirt.agent.silence agent:a5",
		"csirt.entity.silence entity:comune-c",
	}, rules(rep.Raised))
	for _, f := range rep.Raised {
		require.Equal(t, finding.KindCoverage, f.Kind)
		if f.AgentID == "a1" {
			require.Equal(t, "comune-a", f.Entity)
			require.Equal(t, "srv1", f.Host)
			require.Contains(t, f.Message, `Agent "a1" (host "srv1") has sent nothing since 2026-11-22T11:40:00Z: silent 20m0s so far, its policy allows 10m0s`)
			require.Equal(t, finding.NewID(RuleAgentSilence, "a1", ts(now.Add(-20*time.Minute))), f.ID)
		}
		if f.AgentID == "a3" {
			require.Equal(t, "2m0s", f.Labels["silence_after"], "the agent's policy applies")
		}
	}
	require.Len(t, snd.msgs, 4, "published to the findings topic")
	require.NoError(t, st.Refresh(context.Background(), store.Findings))
	res, err := st.Search(context.Background(), store.RegionalScope(), store.Findings, store.SearchRequest{Query: "kind:coverage"})
	require.NoError(t, err)
	require.Equal(t, int64(4), res.Total)

	// The next check raises nothing new.
	c.t = c.t.Add(time.Minute)
	rep, err = d.Check(context.Background())
	require.NoError(t, err)
	require.Empty(t, rep.Raised)

	// a1 speaks again: its silence ends, naming the period.
	putAgent(t, st, "a1", "comune-a", map[string]any{"kind": "agent", "hostname": "srv1", "last_seen": ts(c.t)})
	rep, err = d.Check(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{"csirt.agent.silence.resumed agent:a1"}, rules(rep.Raised))
	require.Equal(t, finding.Informational, rep.Raised[0].Severity)
	require.Contains(t, rep.Raised[0].Message, "silent from 2026-11-22T11:40:00Z to 2026-11-22T12:01:00Z (21m0s)")

	// A restarted detector (another instance, same store) knows what is
	// still open: it raises nothing again, and notes a3's return.
	d2 := detector(t, st, snd, c, "two")
	require.NoError(t, st.Refresh(context.Background(), store.Findings))
	rep, err = d2.Check(context.Background())
	require.NoError(t, err)
	require.Empty(t, rules(rep.Raised))
	putAgent(t, st, "a3", "comune-b", map[string]any{"last_seen": ts(c.t), "policy": map[string]any{"silence_after": "2m"}})
	rep, err = d2.Check(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{"csirt.agent.silence.resumed agent:a3"}, rules(rep.Raised))

	// A duplicate from a third, stateless instance changes nothing in the store.
	d3 := detector(t, st, snd, c, "three")
	d3.loaded = true // as if nothing were known
	rep, err = d3.Check(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{"csirt.agent.silence agent:a5", "csirt.entity.silence entity:comune-c"}, rules(rep.Raised))
	require.NoError(t, st.Refresh(context.Background(), store.Findings))
	res, err = st.Search(context.Background(), store.RegionalScope(), store.Findings, store.SearchRequest{})
	require.NoError(t, err)
	require.Equal(t, int64(6), res.Total, "4 silences and 2 resumptions, each once")
}

func TestGrace(t *testing.T) {
	st, snd, c := setup(t)
	putAgent(t, st, "a1", "comune-a", map[string]any{"last_seen": ts(c.t.Add(-time.Hour))})
	d := detector(t, st, snd, c, "one")
	d.started = c.t
	rep, err := d.Check(context.Background())
	require.NoError(t, err)
	require.Empty(t, rep.Raised, "a collector that just started does not judge")
	c.t = c.t.Add(11 * time.Minute)
	rep, err = d.Check(context.Background())
	require.NoError(t, err)
	require.Len(t, rep.Raised, 1)
}

func TestLease(t *testing.T) {
	st, snd, c := setup(t)
	d1 := detector(t, st, snd, c, "one")
	d2 := detector(t, st, snd, c, "two")
	ctx := context.Background()
	held, err := d1.lease(ctx)
	require.NoError(t, err)
	require.True(t, held)
	held, err = d2.lease(ctx)
	require.NoError(t, err)
	require.False(t, held, "another instance holds it")
	held, err = d1.lease(ctx)
	require.NoError(t, err)
	require.True(t, held, "the holder renews")
	c.t = c.t.Add(4 * time.Minute) // past 3 checks
	held, err = d2.lease(ctx)
	require.NoError(t, err)
	require.True(t, held, "an expired lease is taken over")
	held, err = d1.lease(ctx)
	require.NoError(t, err)
	require.False(t, held)
}

// Every agent is checked, however many: more than a search page of them
// (store.MaxPage), the silent one written last.
func TestMoreAgentsThanOnePage(t *testing.T) {
	st, snd, c := setup(t)
	ctx := context.Background()
	const n = store.MaxPage + 500
	w, err := st.Bulk(store.RegionalScope(), store.Agents, store.BulkOptions{})
	require.NoError(t, err)
	for i := range n {
		seen := c.t.Add(-time.Minute)
		if i == n-1 {
			seen = c.t.Add(-time.Hour)
		}
		src, err := json.Marshal(map[string]any{"agent.id": fmt.Sprintf("a%05d", i), "kind": "agent", "last_seen": ts(seen)})
		require.NoError(t, err)
		require.NoError(t, w.Add(ctx, store.Doc{ID: fmt.Sprintf("a%05d", i), Tenant: fmt.Sprintf("comune-%d", i%10), Source: src}))
	}
	require.NoError(t, w.Close(ctx))
	rep, err := detector(t, st, snd, c, "one").Check(ctx)
	require.NoError(t, err)
	require.Equal(t, n, rep.Agents)
	require.Equal(t, 10, rep.Entities)
	require.Equal(t, []string{fmt.Sprintf("csirt.agent.silence agent:a%05d", n-1)}, rules(rep.Raised))
}
