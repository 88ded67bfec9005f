package loadgen

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

func TestStreamIsDeterministicValidAndMixed(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	a, err := New(50, 7)
	require.NoError(t, err)
	b, err := New(50, 7)
	require.NoError(t, err)
	c, err := New(50, 8)
	require.NoError(t, err)
	datasets := map[string]int{}
	perEntity := map[string]int{}
	bruteSrc := map[string]map[string]bool{} // source.ip of ssh failures with bad users -> entities
	tunnels, differ := 0, 0
	const n = 15000
	for i := 0; i < n; i++ {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		ra, rb, rc := a.Next(at), b.Next(at), c.Next(at)
		ja, err := ra.Event.MarshalJSON()
		require.NoError(t, err)
		jb, _ := rb.Event.MarshalJSON()
		jc, _ := rc.Event.MarshalJSON()
		require.Equal(t, string(ja), string(jb), "same seed, same stream")
		require.Equal(t, ra.Raw, rb.Raw)
		if string(ja) != string(jc) {
			differ++
		}
		require.NoError(t, ra.Event.Validate(), "%s", ja)
		back, err := event.Decode(ja)
		require.NoError(t, err)
		require.Equal(t, ra.Event.ID(), back.ID())
		ds := ra.Event.Dataset()
		datasets[ds]++
		perEntity[ra.Entity]++
		if ds == "sshd" && ra.Event.String("event.outcome") == "failure" {
			src := ra.Event.String("source.ip")
			if bruteSrc[src] == nil {
				bruteSrc[src] = map[string]bool{}
			}
			bruteSrc[src][ra.Entity] = true
		}
		if ds == "dns" && strings.HasSuffix(ra.Event.String("dns.question.name"), ".exfil-cdn.net") {
			tunnels++
		}
		if !ra.Summary {
			require.Equal(t, string(ra.Raw), ra.Event.String("event.original"))
		} else {
			var m map[string]any
			require.NoError(t, json.Unmarshal(ra.Raw, &m))
		}
	}
	require.Greater(t, differ, n/2, "another seed gives another stream")
	for _, ds := range []string{"sshd", "sudo", "nginx.access", "iptables", "flow", "dns"} {
		require.Greater(t, datasets[ds], n/50, "dataset %s: %v", ds, datasets)
	}
	ents := a.Entities()
	require.Greater(t, perEntity[ents[0].ID], 5*perEntity[ents[len(ents)-1].ID], "Zipf-like sizes: %v", perEntity)
	require.Greater(t, tunnels, 0, "some tunnelling-like DNS names")
	shared := 0
	for _, es := range bruteSrc {
		if len(es) >= 2 {
			shared++
		}
	}
	require.Greater(t, shared, 0, "some attacker addresses hit several entities")
	_, err = New(0, 1)
	require.Error(t, err)
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"20000": 20000, "20000/s": 20000, "20k/s": 20000, "1.5k": 1500, "600/m": 10, " 5/sec ": 5} {
		got, err := ParseRate(in)
		require.NoError(t, err, in)
		require.InDelta(t, want, got, 1e-9, in)
	}
	for _, in := range []string{"", "0", "-5/s", "fast", "10/h", "1e9", "NaN", "k/s", "20kk"} {
		_, err := ParseRate(in)
		require.Error(t, err, in)
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"20000/s", "20k/s", "1.5k", "600/m", "", "/", "k", "1e7/s", "NaN/s", "Inf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err == nil && (r <= 0 || r > 1e7 || r != r) {
			t.Fatalf("ParseRate(%q) = %v accepted out of range", s, r)
		}
	})
}

type memSender struct {
	mu   sync.Mutex
	msgs []bus.Message
}

func (m *memSender) Produce(_ context.Context, msgs ...bus.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, msgs...)
	return nil
}

func TestRunEventsAndRawBatches(t *testing.T) {
	ctx := context.Background()
	g, err := New(5, 3)
	require.NoError(t, err)
	var progress strings.Builder
	snd := &memSender{}
	st, err := Run(ctx, Options{Generator: g, Sender: snd, Rate: 5000, Duration: 1200 * time.Millisecond, Progress: &progress})
	require.NoError(t, err)
	require.Positive(t, st.Sent)
	require.Equal(t, int(st.Sent), len(snd.msgs))
	for _, m := range snd.msgs {
		require.Equal(t, bus.TopicEvents, m.Topic)
		ev, err := event.Decode(m.Value)
		require.NoError(t, err)
		require.Equal(t, string(m.Key), ev.Org())
	}
	require.Contains(t, progress.String(), "loadgen progress: sent=")
	require.Contains(t, progress.String(), "loadgen done: sent=")

	// --raw: signed batches that verify with the keys registered in the store.
	l := logrus.New()
	l.SetOutput(io.Discard)
	db, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "s.db"), Logger: l})
	require.NoError(t, err)
	defer func() { _ = db.Close() }()
	raw := &memSender{}
	g2, _ := New(5, 3)
	st, err = Run(ctx, Options{Generator: g2, Sender: raw, Rate: 3000, Duration: 300 * time.Millisecond, Raw: true, Store: db})
	require.NoError(t, err)
	require.Positive(t, st.Sent)
	resolve := func(agentID, _ string) (envelope.Verifier, error) {
		d, err := db.Get(ctx, store.RegionalScope(), store.Agents, agentID)
		if err != nil {
			return nil, err
		}
		var doc struct {
			Key string `json:"key.public"`
			Org string `json:"organization.id"`
		}
		if err := json.Unmarshal(d.Source, &doc); err != nil {
			return nil, err
		}
		pub, err := base64.StdEncoding.DecodeString(doc.Key)
		if err != nil {
			return nil, err
		}
		return envelope.NewEd25519Verifier(ed25519.PublicKey(pub))
	}
	records := 0
	last := map[string]uint64{}
	for _, m := range raw.msgs {
		require.Equal(t, bus.TopicRaw, m.Topic)
		b, err := envelope.Open(m.Value, resolve)
		require.NoError(t, err)
		require.Equal(t, string(m.Key), b.AgentID)
		require.Equal(t, AgentID(b.EntityID), b.AgentID)
		k := b.AgentID + "|" + b.StreamID
		require.Greater(t, b.FirstSeq, last[k], "sequence numbers grow per agent and stream")
		last[k] = b.LastSeq()
		records += len(b.Records)
	}
	require.Equal(t, int(st.Sent), records)
}
