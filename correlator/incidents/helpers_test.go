package incidents

import (
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/incident"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

const bruteForceRule = "a8e1ca73-16d2-4dd4-9a0c-602eb0497580"

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func sqliteStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "store.db"), Logger: quiet(), Synchronous: "NORMAL"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// bruteForce is an ssh brute-force correlation finding as the correlator
// emits it: one per correlation window, source.ip and an ip observable.
func bruteForce(entity, src, host string, at time.Time) *finding.Finding {
	return &finding.Finding{
		ID:   finding.NewID(bruteForceRule, entity, src, finding.TimeKey(at)),
		Time: at, Kind: finding.KindCorrelation, RuleID: bruteForceRule, RuleName: "SSH brute force from one address",
		RuleGroup: "ssh brute force", Severity: finding.High, Entity: entity, Host: host, SourceIP: src,
		Techniques:  []string{"T1110.001"},
		Observables: []finding.Observable{{Type: "ip", Value: src}},
		Tags:        []string{"attack.credential-access", "attack.t1110.001", "csirt.enisa.intrusion-attempts.login-attempts"},
		Message:     "6 failed SSH logins from " + src + " within 1 minute on " + host,
	}
}

func newStage(t *testing.T, st store.Store, now func() time.Time) *Stage {
	t.Helper()
	s, err := New(Options{Store: st, Window: 24 * time.Hour, CampaignWindow: time.Hour, Now: now, Logger: quiet()})
	require.NoError(t, err)
	return s
}

// incidentsOf lists the incidents of a tenant (or every tenant with
// store.RegionalTenant and regional=true), decoded.
func incidentsOf(t *testing.T, st store.Store, sc store.Scope, query string) []*incident.Incident {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, st.Refresh(ctx, store.Incidents))
	res, err := st.Search(ctx, sc, store.Incidents, store.SearchRequest{Query: query, Size: 1000})
	require.NoError(t, err)
	out := make([]*incident.Incident, 0, len(res.Docs))
	for _, d := range res.Docs {
		in, err := incident.FromDoc(d)
		require.NoError(t, err, "%s", d.Source)
		out = append(out, in)
	}
	return out
}

func addEntity(t *testing.T, st store.Store, id string, nis2 bool) {
	t.Helper()
	src, err := json.Marshal(map[string]any{"name": "Comune " + id, "kind": "comune", "nis2": nis2})
	require.NoError(t, err)
	_, err = st.Put(context.Background(), store.TenantScope(id), store.Entities, store.Doc{ID: id, Tenant: id, Source: src}, store.WriteOptions{})
	require.NoError(t, err)
}
