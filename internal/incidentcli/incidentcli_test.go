package incidentcli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/correlator/incidents"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

func bruteForce(entity, src string, at time.Time) *finding.Finding {
	return &finding.Finding{ID: finding.NewID("bf", entity, src, finding.TimeKey(at)), Time: at, Kind: finding.KindCorrelation,
		RuleID: "bf", RuleName: "SSH brute force", RuleGroup: "ssh brute force", Severity: finding.High, Entity: entity,
		Host: "srv", SourceIP: src, Observables: []finding.Observable{{Type: "ip", Value: src}}, Message: "6 failures from " + src}
}

// populate writes, in a SQLite store under dataDir, the findings and the
// incidents the stage makes of them: 203.0.113.7 on three entities (a
// campaign), 198.51.100.1 on one.
func populate(t *testing.T, dataDir string, t0 time.Time) {
	t.Helper()
	ctx := context.Background()
	l := logrus.New()
	l.SetOutput(io.Discard)
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(dataDir, "store.db"), Logger: l})
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()
	s, err := incidents.New(incidents.Options{Store: st, Now: func() time.Time { return t0 }})
	require.NoError(t, err)
	var fs []*finding.Finding
	for i, e := range []string{"comune-a", "comune-b", "comune-c"} {
		fs = append(fs, bruteForce(e, "203.0.113.7", t0.Add(time.Duration(i)*time.Minute)))
	}
	fs = append(fs, bruteForce("comune-a", "198.51.100.1", t0), bruteForce("comune-a", "198.51.100.1", t0.Add(time.Minute)))
	for _, f := range fs {
		d, err := f.Doc()
		require.NoError(t, err)
		_, err = st.Put(ctx, f.Scope(), store.Findings, d, store.WriteOptions{})
		require.NoError(t, err)
	}
	require.NoError(t, s.Apply(ctx, fs...))
}

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestListAndShow(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	populate(t, dir, t0)

	out, errs, code := run(t, "list", "--data-dir", dir, "--format", "json")
	require.Equal(t, 0, code, errs)
	var list struct {
		Total     int64 `json:"total"`
		Incidents []struct {
			ID       string               `json:"id"`
			Kind     string               `json:"kind"`
			Org      struct{ ID string }  `json:"organization"`
			Findings struct{ Count int }  `json:"findings"`
			Campaign *struct{ ID string } `json:"campaign"`
		} `json:"incidents"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Equal(t, int64(5), list.Total, "4 entity incidents and 1 campaign")
	var campID, otherID string
	for _, in := range list.Incidents {
		if in.Kind == "campaign" {
			campID = in.ID
		}
		if in.Org.ID == "comune-a" && in.Campaign == nil {
			otherID = in.ID
			require.Equal(t, 2, in.Findings.Count)
		}
	}
	require.NotEmpty(t, campID)
	require.NotEmpty(t, otherID)

	// Entity scope: only that entity's incidents, never the campaign.
	out, errs, code = run(t, "list", "--data-dir", dir, "--entity", "comune-b")
	require.Equal(t, 0, code, errs)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	require.Contains(t, lines[0], "SEVERITY")
	require.Contains(t, lines[1], "comune-b")
	require.Contains(t, lines[1], campID)

	out, _, code = run(t, "list", "--data-dir", dir, "--kind", "campaign", "--status", "open", "--since", "7d")
	require.Equal(t, 0, code)
	require.Contains(t, out, campID)
	require.Contains(t, out, "3 entities")
	out, _, _ = run(t, "list", "--data-dir", dir, "--status", "closed")
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 1, "no closed incident: header only")
	out, _, _ = run(t, "list", "--data-dir", dir, "--since", "1m")
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 1, "created an hour ago: nothing in the last minute")

	out, errs, code = run(t, "show", otherID, "--data-dir", dir, "--format", "json")
	require.Equal(t, 0, code, errs)
	var sh struct {
		Incident struct{ ID string }
		Findings []struct {
			Finding struct{ ID string }
		}
		Campaign json.RawMessage
	}
	require.NoError(t, json.Unmarshal([]byte(out), &sh))
	require.Equal(t, otherID, sh.Incident.ID)
	require.Len(t, sh.Findings, 2)
	require.Equal(t, finding.NewID("bf", "comune-a", "198.51.100.1", finding.TimeKey(t0.Add(time.Minute))), sh.Findings[0].Finding.ID, "newest first")
	require.Empty(t, sh.Campaign)

	out, errs, code = run(t, "show", "--data-dir", dir, campID)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "Member incidents:")
	for _, e := range []string{"comune-a", "comune-b", "comune-c"} {
		require.Contains(t, out, e)
	}
	require.Contains(t, out, "Timeline:")

	// A member shows its campaign in regional scope.
	out, _, code = run(t, "list", "--data-dir", dir, "--entity", "comune-c", "--format", "json")
	require.Equal(t, 0, code)
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	out, errs, code = run(t, "show", list.Incidents[0].ID, "--data-dir", dir)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "Campaign entities:  comune-a, comune-b, comune-c")

	// Tenancy: another entity cannot read it.
	_, errs, code = run(t, "show", list.Incidents[0].ID, "--data-dir", dir, "--entity", "comune-a")
	require.Equal(t, 1, code)
	require.Contains(t, errs, "no incident")
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"list", "--status", "opened"},
		{"list", "--since", "yesterday"},
		{"list", "--since", "-1d"},
		{"list", "--format", "xml"},
		{"list", "--entity", "_regional"},
		{"list", "--kind", "alert"},
		{"list", "extra"},
		{"show"},
		{"show", "bad id"},
		{"frob"},
	} {
		_, errs, code := run(t, args...)
		require.Equal(t, 2, code, "%v: %s", args, errs)
		require.NotEmpty(t, errs, "%v", args)
	}
}
