package pipeline

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/collector/internal/verify"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

func TestHeartbeatEvent(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	ev := heartbeatEvent([]byte(`{"version":"1.2.3","hostname":"srv-1","lines_read":10,"spool_bytes":1.5,"sources":["auth","web"],
		"policy":{"revision":"abc"},"a.b":1,"deep":{"x":{"y":{"z":{"w":1}}}},"mixed":[1,{"o":2}],"n":null}`), at)
	require.Equal(t, HeartbeatStream, ev.Dataset())
	require.Equal(t, "1.2.3", ev["agent.version"])
	require.Equal(t, "srv-1", ev["host.hostname"])
	require.Equal(t, int64(10), ev["csirt.heartbeat.lines_read"])
	require.InDelta(t, 1.5, ev["csirt.heartbeat.spool_bytes"], 0)
	require.Equal(t, []string{"auth", "web"}, ev["csirt.heartbeat.sources"])
	require.Equal(t, "abc", ev["csirt.heartbeat.policy.revision"], "unknown structures are kept")
	require.Equal(t, int64(1), ev["csirt.heartbeat.a_b"])
	require.Equal(t, `{"w":1}`, ev["csirt.heartbeat.deep.x.y.z"])
	require.Equal(t, `[1,{"o":2}]`, ev["csirt.heartbeat.mixed"])
	require.NotContains(t, ev, "csirt.heartbeat.n")
	ev["event.id"], ev["event.ingested"], ev["organization.id"], ev["agent.id"], ev["host.name"] = "x", at, "e", "a", "h"
	require.NoError(t, ev.Validate())
	_, err := ev.MarshalJSON()
	require.NoError(t, err)

	agentForm := heartbeatEvent([]byte(`{"agent_version":"0.9.1","counters":{"lines_read":7},"sources":[{"source":"auth","state":"ok"}]}`), at)
	require.Equal(t, "0.9.1", agentForm["agent.version"])
	require.Equal(t, int64(7), agentForm["csirt.heartbeat.counters.lines_read"])
	require.Equal(t, `[{"source":"auth","state":"ok"}]`, agentForm["csirt.heartbeat.sources"])

	bad := heartbeatEvent([]byte("not json"), at)
	require.Equal(t, []string{"heartbeat_unparsed"}, bad["tags"])
	require.Equal(t, "not json", bad["event.original"])
}

// FuzzHeartbeat: any heartbeat record gives an event that validates and
// encodes once the pipeline's fields are stamped.
func FuzzHeartbeat(f *testing.F) {
	f.Add([]byte(`{"version":"1","lines_read":5,"sources":["a"]}`))
	f.Add([]byte(`{"a":{"b":[1,2,{"c":3}]},"a_b":true}`))
	f.Add([]byte(`{"x.y":1,"x":{"y":2}}`))
	f.Add([]byte("\xff\xfe"))
	at := time.Unix(1763805600, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		ev := heartbeatEvent(data, at)
		ev["event.id"], ev["event.ingested"], ev["organization.id"], ev["agent.id"], ev["host.name"] = "x", at, "e", "a", "h"
		if err := ev.Validate(); err != nil {
			t.Fatalf("invalid event: %v", err)
		}
		js, err := ev.MarshalJSON()
		if err != nil {
			t.Fatalf("event does not encode: %v", err)
		}
		if _, err := event.Decode(js); err != nil {
			t.Fatalf("event does not decode: %v\n%s", err, js)
		}
	})
}

func TestParseBatchHeartbeatAndEnrich(t *testing.T) {
	a := &simAgent{id: "a", entity: "e", signer: newTestSigner(t), next: map[string]uint64{}}
	b, err := envelope.Decode(a.batch(t, HeartbeatStream, 1, 2, nil))
	require.NoError(t, err)
	b.Records[0].Data = []byte(`{"lines_read":3}`)
	enriched := 0
	evs, err := parseBatch(newParser(), func(ev event.Event) { enriched++; ev["organization.name"] = "E" },
		verify.Result{Batch: b, Agent: verify.Agent{ID: "a", EntityID: "e", Hostname: "h"}}, time.Unix(1700000000, 0))
	require.NoError(t, err)
	require.Len(t, evs, 2)
	require.Equal(t, 2, enriched)
	ev, err := event.Decode(evs[0].json)
	require.NoError(t, err)
	require.Equal(t, HeartbeatStream, ev.Dataset())
	require.Equal(t, int64(3), ev["csirt.heartbeat.lines_read"])
	require.Equal(t, "E", ev["organization.name"])
	require.Equal(t, "h", ev["host.name"])
	require.Equal(t, b.EventID(0), ev.ID())
}

func TestAgentActivity(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "s.db")})
	require.NoError(t, err)
	defer func() { _ = st.Close() }()
	put := func(id string, extra map[string]any) {
		d := map[string]any{"agent.id": id, "organization.id": "e", "key.algorithm": "ed25519", "key.public": "AAAA", "enrolled": "2026-11-01T00:00:00Z"}
		for k, v := range extra {
			d[k] = v
		}
		src, _ := json.Marshal(d)
		_, err := st.Put(ctx, store.TenantScope("e"), store.Agents, store.Doc{ID: id, Tenant: "e", Source: src}, store.WriteOptions{})
		require.NoError(t, err)
	}
	put("a1", nil)
	put("a2", map[string]any{"status": "revoked"})
	get := func(id string) map[string]any {
		d, err := st.Get(ctx, store.RegionalScope(), store.Agents, id)
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(d.Source, &m))
		return m
	}
	act := &AgentActivity{Store: st, Interval: time.Minute}
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	act.Seen("a1", "e", t0, map[string]any{"version": "1.0", "hostname": "srv-1", "lines_read": 5})
	act.Seen("a2", "e", t0, nil)
	act.Seen("ghost", "e", t0, nil) // no document: skipped
	require.NoError(t, act.Flush(ctx, t0, false))
	m := get("a1")
	require.Equal(t, "2026-11-22T10:00:00Z", m["last_seen"])
	require.Equal(t, "active", m["status"])
	require.Equal(t, "1.0", m["version"])
	require.Equal(t, "srv-1", m["hostname"])
	require.Equal(t, "AAAA", m["key.public"], "the enrolment fields are kept")
	require.InDelta(t, 5, m["heartbeat"].(map[string]any)["lines_read"], 0)
	require.Equal(t, "revoked", get("a2")["status"], "activity never un-revokes")
	require.NotEmpty(t, get("a2")["last_seen"])

	// Throttled: a newer activity within the interval waits.
	act.Seen("a1", "e", t0.Add(10*time.Second), nil)
	require.NoError(t, act.Flush(ctx, t0.Add(10*time.Second), false))
	require.Equal(t, "2026-11-22T10:00:00Z", get("a1")["last_seen"])
	require.NoError(t, act.Flush(ctx, t0.Add(61*time.Second), false))
	require.Equal(t, "2026-11-22T10:00:10Z", get("a1")["last_seen"])
	// Forced (drain): written at once; last_seen never goes back.
	act.Seen("a1", "e", t0.Add(70*time.Second), nil)
	require.NoError(t, act.Flush(ctx, t0.Add(70*time.Second), true))
	require.Equal(t, "2026-11-22T10:01:10Z", get("a1")["last_seen"])
	put("a1", map[string]any{"last_seen": "2026-11-22T11:00:00Z"})
	act.Seen("a1", "e", t0.Add(80*time.Second), nil)
	require.NoError(t, act.Flush(ctx, t0.Add(3*time.Minute), false))
	require.Equal(t, "2026-11-22T11:00:00Z", get("a1")["last_seen"])
}

// A packet summary record (envelope.KindSummary) becomes the agent's event,
// stamped with the collector's fields and the batch's entity, never the
// entity the summary might claim.
func TestParseBatchSummary(t *testing.T) {
	a := &simAgent{id: "a", entity: "e", signer: newTestSigner(t), next: map[string]uint64{}}
	b, err := envelope.Decode(a.batch(t, "capture", 1, 1, nil))
	require.NoError(t, err)
	b.Records[0].Kind = envelope.KindSummary
	b.Records[0].Data = []byte(`{"@timestamp":"2013-03-07T21:42:06.869344Z","organization":{"id":"someone-else"},` +
		`"event":{"dataset":"dns","kind":"event"},"dns":{"question":{"name":"example.org","type":"A"}},"source":{"ip":"10.0.0.1"}}`)
	evs, err := parseBatch(newParser(), nil, verify.Result{Batch: b, Agent: verify.Agent{ID: "a", EntityID: "e", Hostname: "h"}}, time.Unix(1700000000, 0))
	require.NoError(t, err)
	require.Len(t, evs, 1)
	ev, err := event.Decode(evs[0].json)
	require.NoError(t, err)
	require.Equal(t, "dns", ev.Dataset())
	require.Equal(t, "example.org", ev["dns.question.name"])
	require.Equal(t, "e", ev["organization.id"])
	require.Equal(t, "a", ev["agent.id"])
	require.Equal(t, b.EventID(0), ev.ID())
	require.NoError(t, ev.Validate())
}
