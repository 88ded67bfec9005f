package incidents

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/incident"
	"github.com/csirt-toscana/platform/internal/store"
)

var entities3 = []string{"comune-prato", "comune-pisa", "asl-toscana-centro"}

// campaignFindings: 203.0.113.7 brute-forces ssh on three entities within
// ten minutes, across a campaign-window boundary (11:55 to 12:04), with
// two correlation windows on each entity; 198.51.100.20 attacks only
// comune-prato.
func campaignFindings(t0 time.Time) []*finding.Finding {
	var fs []*finding.Finding
	for i, e := range entities3 {
		at := t0.Add(time.Duration(i) * 4 * time.Minute)
		fs = append(fs, bruteForce(e, "203.0.113.7", "srv-"+e, at), bruteForce(e, "203.0.113.7", "mail-"+e, at.Add(90*time.Second)))
	}
	fs = append(fs, bruteForce("comune-prato", "198.51.100.20", "srv-comune-prato", t0.Add(2*time.Minute)))
	return fs
}

// checkCampaign asserts the acceptance outcome and returns the campaign.
func checkCampaign(t *testing.T, st store.Store) *incident.Incident {
	t.Helper()
	all := incidentsOf(t, st, store.RegionalScope(), "")
	var camps, members []*incident.Incident
	var other *incident.Incident
	for _, in := range all {
		switch {
		case in.Kind == incident.KindCampaign:
			camps = append(camps, in)
		case in.GroupKey == "source.ip=203.0.113.7":
			members = append(members, in)
		case in.GroupKey == "source.ip=198.51.100.20":
			require.Nil(t, other, "two incidents for 198.51.100.20")
			other = in
		default:
			t.Fatalf("unexpected incident %+v", in)
		}
	}
	require.Len(t, camps, 1, "one regional campaign")
	require.Len(t, members, 3, "one incident per entity for 203.0.113.7")
	c := camps[0]
	require.Equal(t, store.RegionalTenant, c.Tenant())
	require.Equal(t, []string{"asl-toscana-centro", "comune-pisa", "comune-prato"}, c.Entities)
	require.Len(t, c.Members, 3)
	require.Equal(t, []finding.Observable{{Type: "ip", Value: "203.0.113.7"}}, c.Observables)
	require.Equal(t, finding.High, c.Severity)
	require.Equal(t, incident.CategoryBruteForce, c.Category)
	seen := map[string]bool{}
	for _, m := range members {
		require.Equal(t, c.ID, m.CampaignID, "incident %s of %s", m.ID, m.Entity)
		require.Equal(t, 2, m.FindingCount, "both correlation windows attached to %s", m.Entity)
		require.Len(t, m.FindingIDs, 2)
		require.Equal(t, finding.High, m.Severity)
		require.Equal(t, incident.StatusNew, m.Status)
		require.Equal(t, incident.CategoryBruteForce, m.Category)
		require.Equal(t, []string{"T1110.001"}, m.Techniques)
		require.Equal(t, []string{"srv-" + m.Entity, "mail-" + m.Entity}, m.Hosts)
		require.Contains(t, c.Members, incident.Member{Entity: m.Entity, Incident: m.ID, Joined: c.Members[indexOf(c.Members, m.ID)].Joined})
		seen[m.Entity] = true
		// created + 2 findings + campaign link
		kinds := map[string]int{}
		for _, e := range m.Timeline {
			kinds[e.Kind]++
		}
		require.Equal(t, map[string]int{incident.EntryCreated: 1, incident.EntryFinding: 2, incident.EntryCampaign: 1}, kinds)
	}
	require.Len(t, seen, 3)
	require.NotNil(t, other)
	require.Empty(t, other.CampaignID, "an address seen on one entity makes no campaign")
	require.Equal(t, "comune-prato", other.Entity)

	// The campaign id finds the campaign and its members.
	linked := incidentsOf(t, st, store.RegionalScope(), `campaign.id:"`+c.ID+`"`)
	require.Len(t, linked, 4)
	// Entity scope sees only its own incidents, never the campaign.
	own := incidentsOf(t, st, store.TenantScope("comune-pisa"), "")
	require.Len(t, own, 1)
	require.Equal(t, "comune-pisa", own[0].Entity)
	return c
}

func indexOf(ms []incident.Member, id string) int {
	for i, m := range ms {
		if m.Incident == id {
			return i
		}
	}
	return -1
}

func TestRegionalCampaign(t *testing.T) {
	st := sqliteStore(t)
	ctx := context.Background()
	addEntity(t, st, "comune-prato", true)
	addEntity(t, st, "comune-pisa", false)
	t0 := time.Date(2026, 11, 20, 11, 55, 0, 0, time.UTC)
	now := func() time.Time { return t0.Add(20 * time.Minute) }
	s := newStage(t, st, now)
	fs := campaignFindings(t0)
	// One finding at a time, in arrival order, as separate batches.
	for _, f := range fs {
		require.NoError(t, s.Apply(ctx, f))
	}
	c := checkCampaign(t, st)
	require.Equal(t, "camp-", c.ID[:5])
	st1 := s.Stats()
	require.Equal(t, int64(4), st1.Created)
	require.Equal(t, int64(3), st1.Attached)
	require.Equal(t, int64(1), st1.Campaigns)

	// NIS2 timers only for the entity in scope.
	for _, in := range incidentsOf(t, st, store.RegionalScope(), "") {
		switch in.Entity {
		case "comune-prato":
			require.NotNil(t, in.NIS2)
			require.Equal(t, now().Add(24*time.Hour), in.NIS2.EarlyWarningDue)
			require.Equal(t, now().Add(72*time.Hour), in.NIS2.NotificationDue)
			require.Equal(t, now().Add(72*time.Hour).AddDate(0, 1, 0), in.NIS2.FinalReportDue)
		default:
			require.Nil(t, in.NIS2, "%s %s", in.Entity, in.ID)
		}
	}
}

func TestRegionalCampaignOneBatch(t *testing.T) {
	st := sqliteStore(t)
	t0 := time.Date(2026, 11, 20, 11, 55, 0, 0, time.UTC)
	s := newStage(t, st, func() time.Time { return t0.Add(time.Hour) })
	require.NoError(t, s.Apply(context.Background(), campaignFindings(t0)...))
	checkCampaign(t, st)
}

func TestRedeliveryCreatesNothing(t *testing.T) {
	st := sqliteStore(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 20, 11, 55, 0, 0, time.UTC)
	now := t0.Add(time.Hour)
	s := newStage(t, st, func() time.Time { return now })
	fs := campaignFindings(t0)
	require.NoError(t, s.Apply(ctx, fs...))
	before := snapshot(t, st)

	// The same findings again: from the same instance, and from a fresh
	// instance (a restart: no caches), in another order, later.
	now = t0.Add(2 * time.Hour)
	require.NoError(t, s.Apply(ctx, fs...))
	s2 := newStage(t, st, func() time.Time { return now })
	rev := append([]*finding.Finding(nil), fs...)
	sort.Slice(rev, func(i, j int) bool { return rev[i].ID > rev[j].ID })
	for _, f := range rev {
		require.NoError(t, s2.Apply(ctx, f))
	}
	require.Equal(t, before, snapshot(t, st), "redelivery changed the incidents")
	require.Equal(t, int64(0), s2.Stats().Created)
	require.Equal(t, int64(0), s2.Stats().Attached)
	require.Equal(t, int64(len(fs)), s2.Stats().Duplicates)
	checkCampaign(t, st)
}

// snapshot is every incident document's source by id.
func snapshot(t *testing.T, st store.Store) map[string]string {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, st.Refresh(ctx, store.Incidents))
	res, err := st.Search(ctx, store.RegionalScope(), store.Incidents, store.SearchRequest{Size: 1000})
	require.NoError(t, err)
	out := map[string]string{}
	for _, d := range res.Docs {
		out[d.ID] = string(d.Source)
	}
	return out
}

func TestConcurrentInstances(t *testing.T) {
	st := sqliteStore(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	now := func() time.Time { return t0.Add(time.Hour) }
	const n = 40
	var fs []*finding.Finding
	for i := 0; i < n; i++ {
		fs = append(fs, bruteForce("comune-prato", "203.0.113.9", fmt.Sprintf("srv-%02d", i%5), t0.Add(time.Duration(i)*time.Minute)))
	}
	// Two instances get overlapping halves (a rebalance hands a partition
	// tail to both) and apply them one by one at the same time.
	a, b := newStage(t, st, now), newStage(t, st, now)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, part := range [][]*finding.Finding{fs[:28], fs[12:]} {
		s := []*Stage{a, b}[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, f := range part {
				if err := s.Apply(ctx, f); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got := incidentsOf(t, st, store.TenantScope("comune-prato"), "")
	require.Len(t, got, 1, "both instances must meet on one incident")
	in := got[0]
	require.Equal(t, n, in.FindingCount)
	require.Len(t, in.FindingIDs, n)
	ids := map[string]bool{}
	for _, id := range in.FindingIDs {
		ids[id] = true
	}
	require.Len(t, ids, n, "a finding attached twice")
	require.Len(t, in.Hosts, 5)
	sa, sb := a.Stats(), b.Stats()
	require.Equal(t, int64(1), sa.Created+sb.Created)
	require.Equal(t, int64(n-1), sa.Attached+sb.Attached)
	require.Equal(t, int64(16), sa.Duplicates+sb.Duplicates, "the 16 findings both got")
	t.Logf("OCC conflicts retried: %d", sa.Conflicts+sb.Conflicts)
}

func TestWindowAndClosedIncidents(t *testing.T) {
	st := sqliteStore(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	s := newStage(t, st, func() time.Time { return t0.Add(time.Minute) })

	// A long attack: one finding every 20 h for 5 days stays one
	// incident (each within the 24 h window of the previous one), also
	// for a restarted instance without caches.
	for i := 0; i < 6; i++ {
		if i == 3 {
			s = newStage(t, st, func() time.Time { return t0 })
		}
		require.NoError(t, s.Apply(ctx, bruteForce("comune-pisa", "203.0.113.50", "srv", t0.Add(time.Duration(i)*20*time.Hour))))
	}
	got := incidentsOf(t, st, store.TenantScope("comune-pisa"), "")
	require.Len(t, got, 1)
	require.Equal(t, 6, got[0].FindingCount)

	// 3 days of silence: a new incident.
	later := t0.Add(100*time.Hour + 72*time.Hour)
	require.NoError(t, s.Apply(ctx, bruteForce("comune-pisa", "203.0.113.50", "srv", later)))
	got = incidentsOf(t, st, store.TenantScope("comune-pisa"), "")
	require.Len(t, got, 2)

	// Closing it: the next finding in the same window opens another
	// incident (a new generation of the same window's id).
	var open *incident.Incident
	for _, in := range got {
		if in.FindingCount == 1 {
			open = in
		}
	}
	require.NotNil(t, open)
	require.NoError(t, open.SetStatus(incident.StatusClosed, incident.ResolutionTruePositive, "analyst", later))
	d, err := open.Doc()
	require.NoError(t, err)
	_, err = st.Update(ctx, store.TenantScope("comune-pisa"), store.Incidents, d, store.WriteOptions{})
	require.NoError(t, err)
	require.NoError(t, s.Apply(ctx, bruteForce("comune-pisa", "203.0.113.50", "srv", later.Add(time.Minute))))
	got = incidentsOf(t, st, store.TenantScope("comune-pisa"), "")
	require.Len(t, got, 3)
	ids := map[string]bool{}
	for _, in := range got {
		ids[in.ID] = true
	}
	k := incident.KeyOf(bruteForce("comune-pisa", "203.0.113.50", "srv", later))
	require.True(t, ids[incident.ID(k, incident.WindowStart(later, 24*time.Hour), 1)], "generation 1 of the window: %v", ids)
}

func TestGroupingKeys(t *testing.T) {
	st := sqliteStore(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	s := newStage(t, st, func() time.Time { return t0 })
	sudo := func(user, host string, at time.Time, sev finding.Severity) *finding.Finding {
		return &finding.Finding{ID: finding.NewID("sudo", user, host, finding.TimeKey(at)), Time: at, Kind: finding.KindDetection,
			RuleID: "sudo-root", RuleName: "Sudo to root by a service account", RuleGroup: "privilege-escalation", Severity: sev,
			Entity: "comune-prato", Host: host, User: user, Tags: []string{"attack.privilege-escalation"}}
	}
	require.NoError(t, s.Apply(ctx,
		// informational alone opens nothing
		sudo("www-data", "web1", t0, finding.Informational),
		sudo("www-data", "web1", t0.Add(time.Minute), finding.Medium),
		sudo("www-data", "web1", t0.Add(2*time.Minute), finding.Critical),
		// informational attaches to the open incident
		sudo("www-data", "web1", t0.Add(3*time.Minute), finding.Informational),
		// another user on the same host: another incident
		sudo("backup", "web1", t0.Add(time.Minute), finding.Low),
		// another rule group about the same source: another incident
		bruteForce("comune-prato", "203.0.113.7", "web1", t0),
	))
	got := incidentsOf(t, st, store.TenantScope("comune-prato"), "")
	require.Len(t, got, 3)
	byKey := map[string]*incident.Incident{}
	for _, in := range got {
		byKey[in.GroupKey] = in
	}
	www := byKey["host.name=web1 user.name=www-data"]
	require.NotNil(t, www)
	require.Equal(t, 3, www.FindingCount)
	require.Equal(t, finding.Critical, www.Severity, "severity is the highest of the findings")
	require.Equal(t, incident.CategoryPrivileged, www.Category)
	require.Equal(t, []string{"privilege-escalation"}, www.Tactics)
	require.Equal(t, int64(1), s.Stats().Ignored)
	require.NotNil(t, byKey["host.name=web1 user.name=backup"])
	require.NotNil(t, byKey["source.ip=203.0.113.7"])
	// Searchable fields of the schema work.
	require.Len(t, incidentsOf(t, st, store.RegionalScope(), `severity:critical AND category:"intrusions.privileged-account-compromise"`), 1)
	require.Len(t, incidentsOf(t, st, store.RegionalScope(), `hosts:web1 AND observables.value:"203.0.113.7"`), 1)
	require.Len(t, incidentsOf(t, st, store.RegionalScope(), `findings.count >= 3`), 1)
}

func TestCampaignObservables(t *testing.T) {
	f := bruteForce("comune-prato", "10.1.2.3", "srv", time.Now())
	require.Empty(t, CampaignObservables(f), "a private source address ties no entities")
	f.Observables = []finding.Observable{{Type: "ip", Value: "100.64.1.1"}, {Type: "domain", Value: "Evil.Example"},
		{Type: "hostname", Value: "srv"}, {Type: "user", Value: "root"}, {Type: "ip", Value: "8.8.8.8"}}
	require.Equal(t, []finding.Observable{{Type: "domain", Value: "evil.example"}, {Type: "ip", Value: "8.8.8.8"}}, CampaignObservables(f))
	f.Kind = finding.KindCoverage
	require.Empty(t, CampaignObservables(f))
	g := bruteForce("", "203.0.113.1", "srv", time.Now())
	require.Empty(t, CampaignObservables(g), "regional findings belong to no entity")
}

// TestCampaignAcrossWindowsAnyOrder: every arrival order of the three
// entities' findings (which straddle a campaign-window boundary) gives one
// campaign with all three.
func TestCampaignAcrossWindowsAnyOrder(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 11, 55, 0, 0, time.UTC)
	fs := campaignFindings(t0)
	byEntity := map[string][]*finding.Finding{}
	for _, f := range fs {
		byEntity[f.Entity] = append(byEntity[f.Entity], f)
	}
	orders := [][]string{
		{"comune-prato", "comune-pisa", "asl-toscana-centro"},
		{"asl-toscana-centro", "comune-pisa", "comune-prato"},
		{"comune-pisa", "asl-toscana-centro", "comune-prato"},
		{"asl-toscana-centro", "comune-prato", "comune-pisa"},
	}
	for _, order := range orders {
		st := sqliteStore(t)
		s := newStage(t, st, func() time.Time { return t0.Add(time.Hour) })
		for _, e := range order {
			require.NoError(t, s.Apply(context.Background(), byEntity[e]...), "%v", order)
		}
		checkCampaign(t, st)
	}
}
