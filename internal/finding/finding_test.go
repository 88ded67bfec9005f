package finding

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

func sample() *Finding {
	return &Finding{
		ID: NewID("sigma.ssh-brute", "comune-a", "203.0.113.7", "2026-11-22T10:00:00Z"), Time: time.Date(2026, 11, 22, 10, 0, 0, 123, time.UTC),
		Kind: KindCorrelation, RuleID: "sigma.ssh-brute", RuleName: "SSH brute force", RuleGroup: "brute-force",
		Severity: High, Entity: "comune-a", Host: "srv-web01", SourceIP: "203.0.113.7", User: "admin", AgentID: "agent-1",
		Techniques:  []string{"T1110", "T1110.001"},
		Observables: []Observable{{Type: "ip", Value: "203.0.113.7"}, {Type: "user", Value: "admin"}},
		EventIDs:    []string{"e1", "e2"}, Message: "20 failed logins <then> one success & more",
		Evidence: "Failed password for admin from 203.0.113.7", Tags: []string{"attack.credential_access"},
		References: []string{"https://attack.mitre.org/techniques/T1110/"}, Labels: map[string]string{"window": "5m"},
	}
}

func TestRoundTrip(t *testing.T) {
	f := sample()
	data, err := Encode(f)
	require.NoError(t, err)
	got, err := Decode(data)
	require.NoError(t, err)
	want := *f
	want.RiskScore = High.DefaultRisk()
	require.Equal(t, &want, got)

	again, err := Encode(got)
	require.NoError(t, err)
	require.Equal(t, string(data), string(again), "encoding is deterministic")
	require.Contains(t, string(data), `"message":"20 failed logins <then> one success & more"`, "no HTML escaping")

	// The dotted names of the store schema are where the encoding puts them.
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	for _, field := range []string{"@timestamp", "finding.id", "rule.id", "rule.name", "rule.group", "severity", "risk_score",
		"host.name", "source.ip", "user.name", "threat.technique.id", "event.ids", "message", "tags", "observables.value", "kind",
		"organization.id"} {
		var cur any = m
		for _, seg := range strings.Split(field, ".") {
			if field == "@timestamp" {
				cur = m[field]
				break
			}
			obj, ok := cur.(map[string]any)
			require.True(t, ok, "%s: %s is not under an object", field, seg)
			cur = obj[seg]
		}
		require.NotNil(t, cur, "field %s is missing in %s", field, data)
	}
}

func TestRegionalTenant(t *testing.T) {
	f := sample()
	f.Entity = ""
	require.Equal(t, store.RegionalTenant, f.Tenant())
	require.True(t, f.Scope().Regional())
	d, err := f.Doc()
	require.NoError(t, err)
	require.Equal(t, store.RegionalTenant, d.Tenant)
	got, err := Decode(d.Source)
	require.NoError(t, err)
	require.Empty(t, got.Entity)
	require.Equal(t, []byte(store.RegionalTenant), got.Key())
}

func TestNewID(t *testing.T) {
	require.Equal(t, NewID("r", "a", "b"), NewID("r", "a", "b"))
	require.NotEqual(t, NewID("r", "ab", "c"), NewID("r", "a", "bc"))
	require.NotEqual(t, NewID("r1", "a"), NewID("r2", "a"))
	require.NoError(t, store.ValidID(NewID("r")))
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))
	require.Equal(t, TimeKey(ts), TimeKey(ts.UTC()))
}

func TestValidate(t *testing.T) {
	cases := map[string]func(f *Finding){
		"finding.id":        func(f *Finding) { f.ID = "" },
		"@timestamp":        func(f *Finding) { f.Time = time.Time{} },
		"kind":              func(f *Finding) { f.Kind = "alert" },
		"rule.id":           func(f *Finding) { f.RuleID = "" },
		"severity":          func(f *Finding) { f.Severity = "urgent" },
		"risk_score":        func(f *Finding) { f.RiskScore = 101 },
		"source.ip":         func(f *Finding) { f.SourceIP = "not-an-ip" },
		"organization.id":   func(f *Finding) { f.Entity = "comune a" },
		"finding.evidence":  func(f *Finding) { f.Evidence = strings.Repeat("x", MaxEvidence+1) },
		"observables":       func(f *Finding) { f.Observables = []Observable{{Type: "ip"}} },
		"labels":            func(f *Finding) { f.Labels = map[string]string{"a.b": "x"} },
		"event.ids (count)": func(f *Finding) { f.EventIDs = make([]string, MaxList+1) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			f := sample()
			mutate(f)
			_, err := Encode(f)
			require.Error(t, err)
			field, _, _ := strings.Cut(name, " ")
			require.Contains(t, err.Error(), field)
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := Encode(sample())
	require.NoError(t, err)
	for name, doc := range map[string]string{
		"not json":        `{"finding":`,
		"trailing":        string(good) + ` {}`,
		"bad time":        strings.Replace(string(good), `"2026-11-22T10:00:00.000000123Z"`, `"yesterday"`, 1),
		"wrong type":      strings.Replace(string(good), `"risk_score":73`, `"risk_score":"high"`, 1),
		"observables len": strings.Replace(string(good), `"value":["203.0.113.7","admin"]`, `"value":["203.0.113.7"]`, 1),
		"unknown kind":    strings.Replace(string(good), `"kind":"correlation"`, `"kind":"whatever"`, 1),
		"too big":         `{"message":"` + strings.Repeat("a", MaxSize) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			require.NotEqual(t, string(good), doc)
			_, err := Decode([]byte(doc))
			require.Error(t, err)
		})
	}
	// Unknown fields are ignored (producers may add fields).
	more := strings.Replace(string(good), `"kind":`, `"future":{"x":1},"kind":`, 1)
	f, err := Decode([]byte(more))
	require.NoError(t, err)
	require.Equal(t, "sigma.ssh-brute", f.RuleID)
}

func TestTruncate(t *testing.T) {
	require.Equal(t, "abc", Truncate("abc", 3))
	s := Truncate(strings.Repeat("è", 10), 9)
	require.LessOrEqual(t, len(s), 9)
	require.True(t, strings.HasSuffix(s, "…"))
	require.True(t, strings.HasPrefix(s, "èè"))
	require.Empty(t, Truncate("abcdef", 2))
}

type memSender struct {
	mu   sync.Mutex
	msgs []bus.Message
	err  error
}

func (m *memSender) Produce(_ context.Context, msgs ...bus.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	m.msgs = append(m.msgs, msgs...)
	return nil
}

func TestPublisher(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "s.db")})
	require.NoError(t, err)
	defer func() { _ = st.Close() }()
	snd := &memSender{}
	p := &Publisher{Sender: snd, Store: st}
	a := sample()
	b := sample()
	b.ID, b.Entity, b.Observables = NewID("x", "regional"), "", nil
	require.NoError(t, p.Publish(ctx, a, b))
	require.NoError(t, p.Publish(ctx, a), "publishing again is harmless")

	require.Len(t, snd.msgs, 3)
	require.Equal(t, bus.TopicFindings, snd.msgs[0].Topic)
	require.Equal(t, "comune-a", string(snd.msgs[0].Key))
	require.Equal(t, store.RegionalTenant, string(snd.msgs[1].Key))
	got, err := Decode(snd.msgs[0].Value)
	require.NoError(t, err)
	require.Equal(t, a.ID, got.ID)

	require.NoError(t, st.Refresh(ctx, store.Findings))
	res, err := st.Search(ctx, store.RegionalScope(), store.Findings, store.SearchRequest{Query: "observables.value:admin"})
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Total, "one document per id, observables searchable")
	res, err = st.Search(ctx, store.TenantScope("comune-a"), store.Findings, store.SearchRequest{Query: "threat.technique.id:T1110.001 AND kind:correlation"})
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Total)
	stored, err := Decode(res.Docs[0].Source)
	require.NoError(t, err)
	require.Equal(t, a.Observables, stored.Observables)

	// A failing producer stops before the store write.
	snd.err = errors.New("broker down")
	c := sample()
	c.ID = NewID("other")
	require.ErrorContains(t, p.Publish(ctx, c), "broker down")
	_, err = st.Get(ctx, store.RegionalScope(), store.Findings, c.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}
