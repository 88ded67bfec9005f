package correlator

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/finding"
)

func decodeT(t *testing.T, b []byte) event.Event {
	t.Helper()
	ev, err := event.Decode(b)
	require.NoError(t, err)
	return ev
}

func program(t *testing.T, overrides string) *Program {
	t.Helper()
	ov, err := ParseOverrides([]byte(overrides))
	require.NoError(t, err)
	c, digest, err := LoadCollection(nil, false)
	require.NoError(t, err)
	p, err := BuildProgram(c, digest, ProgramOptions{Overrides: ov})
	require.NoError(t, err)
	return p
}

// feed runs n ssh failures of one entity and address through s.
func feed(t *testing.T, s *State, entity, ip string, from, n int, t0 time.Time) []*finding.Finding {
	var out []*finding.Finding
	for i := from; i < from+n; i++ {
		out = s.Process(decodeT(t, sshFailure(entity, ip, i, t0.Add(time.Duration(i)*time.Second))), t0, out)
	}
	return out
}

func rules(fs []*finding.Finding) map[string]int {
	m := map[string]int{}
	for _, f := range fs {
		m[f.RuleID]++
	}
	return m
}

func TestEntityLayers(t *testing.T) {
	p := program(t, `
entities:
  comune-strict:
    thresholds:
      ssh_bruteforce: {count: 3}
  comune-off:
    disabled: [ssh_bruteforce]
  comune-allow:
    allow:
      ssh_auth_failure: {source.ip: [192.0.2.50]}
`)
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s := NewState(p, nil)
	// Regional baseline: 6 failures; 5 do not fire.
	require.Zero(t, rules(feed(t, s, "comune-base", "192.0.2.1", 0, 5, t0))[bruteForceRule])
	require.Equal(t, 1, rules(feed(t, s, "comune-base", "192.0.2.1", 5, 1, t0))[bruteForceRule])
	// The strict entity fires at 3.
	require.Equal(t, 1, rules(feed(t, s, "comune-strict", "192.0.2.1", 0, 3, t0))[bruteForceRule])
	// Disabled for one entity.
	require.Zero(t, rules(feed(t, s, "comune-off", "192.0.2.1", 0, 10, t0))[bruteForceRule])
	// Allow-listed address of one entity: its failures do not even count.
	require.Zero(t, rules(feed(t, s, "comune-allow", "192.0.2.50", 0, 10, t0))[bruteForceRule])
	require.Equal(t, 1, rules(feed(t, s, "comune-allow", "192.0.2.51", 0, 6, t0))[bruteForceRule])
	// Windows never mix entities: 3 + 3 failures of one address on two
	// entities fire nothing.
	s2 := NewState(p, nil)
	require.Zero(t, rules(feed(t, s2, "comune-x", "192.0.2.9", 0, 3, t0))[bruteForceRule])
	require.Zero(t, rules(feed(t, s2, "comune-y", "192.0.2.9", 3, 3, t0))[bruteForceRule])
}

func TestSnapshotRestoreAndReload(t *testing.T) {
	p := program(t, "")
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s := NewState(p, nil)
	feed(t, s, "comune-a", "192.0.2.1", 0, 4, t0)
	snap, err := s.Snapshot()
	require.NoError(t, err)
	require.Contains(t, snap.Correlation, "comune-a")

	restored := NewState(p, nil)
	_, err = restored.Restore(snap)
	require.NoError(t, err)
	got := feed(t, restored, "comune-a", "192.0.2.1", 4, 2, t0)
	require.Equal(t, 1, rules(got)[bruteForceRule], "the restored window completes")

	// A reload that changes the threshold of another correlation keeps the
	// state of this one.
	s3 := NewState(p, nil)
	feed(t, s3, "comune-a", "192.0.2.1", 0, 4, t0)
	p2 := program(t, "regional:\n  thresholds:\n    ssh_slow_bruteforce: {count: 50}\n")
	dropped, err := s3.SetProgram(p2)
	require.NoError(t, err)
	require.NotEmpty(t, dropped, "the changed correlation's state is dropped")
	for _, d := range dropped {
		require.NotContains(t, d, bruteForceRule)
	}
	require.Equal(t, 1, rules(feed(t, s3, "comune-a", "192.0.2.1", 4, 2, t0))[bruteForceRule])
}

func TestSuppressions(t *testing.T) {
	p := program(t, "")
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	sup := NewSuppressions([]Suppression{
		{ID: "s1", Scope: ScopeEntity, Entity: "comune-a", RuleID: bruteForceRule, Match: map[string]string{"source.ip": "192.0.2.1"},
			Expires: t0.Add(time.Hour), Reason: "pentest", Author: "analyst1"},
		{ID: "s2", Scope: ScopeRegional, Match: map[string]string{"observable.ip": "198.51.100.*"}, Expires: t0.Add(-time.Hour),
			Reason: "expired", Author: "analyst1"},
	})
	s := NewState(p, nil)
	s.Suppressions = func() *Suppressions { return sup }
	require.Zero(t, rules(feed(t, s, "comune-a", "192.0.2.1", 0, 6, t0))[bruteForceRule])
	require.Equal(t, uint64(1), s.Suppressed)
	// Other entity, same address: not suppressed (entity scope).
	require.Equal(t, 1, rules(feed(t, s, "comune-b", "192.0.2.1", 0, 6, t0))[bruteForceRule])
	// Expired regional suppression does not apply.
	require.Equal(t, 1, rules(feed(t, s, "comune-a", "198.51.100.7", 0, 6, t0))[bruteForceRule])

	bad := Suppression{ID: "x", Scope: ScopeRegional, Reason: "r", Author: "a"}
	require.Error(t, bad.Validate(), "a suppression of everything is refused")
	d, err := sup.list[0].Doc()
	require.NoError(t, err)
	require.Equal(t, "comune-a", d.Tenant)
}

func TestParseOverridesErrors(t *testing.T) {
	for name, y := range map[string]string{
		"unknown key":   "regional:\n  disable: [x]\n",
		"bad timespan":  "regional:\n  thresholds:\n    r: {timespan: 5 minutes}\n",
		"empty":         "regional:\n  thresholds:\n    r: {}\n",
		"bad entity":    "entities:\n  _regional: {}\n",
		"bad heuristic": "heuristics:\n  port_scan: {min_portz: 3}\n",
		"negative":      "regional:\n  thresholds:\n    r: {count: -1}\n",
	} {
		_, err := ParseOverrides([]byte(y))
		require.Error(t, err, name)
	}
	o, err := ParseOverrides([]byte("heuristics:\n  port_scan: {min_ports: 40}\n"))
	require.NoError(t, err)
	require.InDelta(t, 40.0, o.Heuristics.PortScan.Regional.MinPorts, 0)
}
