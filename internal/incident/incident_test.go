package incident

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
)

func sample(at time.Time) *finding.Finding {
	return &finding.Finding{ID: finding.NewID("r1", "k"), Time: at, Kind: finding.KindCorrelation, RuleID: "r1",
		RuleName: "SSH brute force from one address", RuleGroup: "ssh brute force", Severity: finding.Medium,
		Entity: "comune-prato", Host: "srv1", SourceIP: "203.0.113.7", User: "root", Techniques: []string{"T1110.001"},
		Observables: []finding.Observable{{Type: "ip", Value: "203.0.113.7"}},
		Tags:        []string{"attack.credential_access"}, Message: "6 failures"}
}

func TestNewAttachAndRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 20, 10, 0, 0, 123, time.UTC)
	f := sample(at)
	k := KeyOf(f)
	require.Equal(t, Key{Entity: "comune-prato", RuleGroup: "ssh brute force", Entities: "source.ip=203.0.113.7"}, k)
	in := New(ID(k, WindowStart(at, time.Hour), 0), k, f, true, "test", at)
	require.Equal(t, "SSH brute force from one address: 203.0.113.7 on srv1", in.Title)
	require.Equal(t, 1, in.FindingCount)
	require.False(t, in.Attach(f, "test", at), "the same finding twice")
	g := sample(at.Add(-time.Minute))
	g.ID, g.Severity, g.Host = finding.NewID("r1", "k2"), finding.Critical, "srv2"
	require.True(t, in.Attach(g, "test", at))
	require.Equal(t, 2, in.FindingCount)
	require.Equal(t, finding.Critical, in.Severity)
	require.Equal(t, 99, in.RiskScore)
	require.Equal(t, at.Add(-time.Minute), in.FirstSeen)
	require.Equal(t, at, in.LastSeen)
	require.Equal(t, []string{"srv1", "srv2"}, in.Hosts)
	require.Equal(t, []string{"credential-access"}, in.Tactics)
	require.Equal(t, CategoryBruteForce, in.Category)
	require.Equal(t, []finding.Observable{{Type: "ip", Value: "203.0.113.7"}, {Type: "hostname", Value: "srv1"}, {Type: "user", Value: "root"}, {Type: "hostname", Value: "srv2"}}, in.Observables)
	in.Comments = []Comment{{Time: at, Author: "anna", Text: "blocked at the firewall"}}
	in.Tasks = []Task{{ID: "t1", Title: "block 203.0.113.7", Created: at}}
	in.Version = store.Version{Seq: 7}

	d, err := in.Doc()
	require.NoError(t, err)
	require.Equal(t, "comune-prato", d.Tenant)
	back, err := FromDoc(d)
	require.NoError(t, err)
	require.Equal(t, in, back)
	// The schema's searchable names are where the store looks for them.
	require.Contains(t, string(d.Source), `"findings":{"count":2`)
	require.Contains(t, string(d.Source), `"attack":{"technique":["T1110.001"]`)
	require.Contains(t, string(d.Source), `"observables":{"type":["ip","hostname","user","hostname"],"value":["203.0.113.7","srv1","root","srv2"]}`)
}

func TestIDsAreDeterministic(t *testing.T) {
	at := time.Date(2026, 11, 20, 10, 17, 0, 0, time.UTC)
	k := KeyOf(sample(at))
	require.Equal(t, ID(k, WindowStart(at, time.Hour), 0), ID(k, WindowStart(at.Add(30*time.Minute), time.Hour), 0))
	require.NotEqual(t, ID(k, WindowStart(at, time.Hour), 0), ID(k, WindowStart(at, time.Hour), 1))
	k2 := k
	k2.Entity = "comune-pisa"
	require.NotEqual(t, ID(k, at, 0), ID(k2, at, 0))
	require.NoError(t, store.ValidID(ID(k, at, 0)))
	o := finding.Observable{Type: "ip", Value: "203.0.113.7"}
	require.Equal(t, CampaignID(o, WindowStart(at, time.Hour)), CampaignID(o, WindowStart(at.Add(40*time.Minute), time.Hour)))
	require.NotEqual(t, CampaignID(o, at), CampaignID(finding.Observable{Type: "ip", Value: "203.0.113.8"}, at))
}

func TestStatusTransitions(t *testing.T) {
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	f := sample(at)
	in := New("inc-1", KeyOf(f), f, false, "stage", at)
	require.ErrorIs(t, in.SetStatus(StatusResolved, "", "anna", at), ErrResolution)
	require.ErrorIs(t, in.SetStatus("bogus", "", "anna", at), ErrTransition)
	require.NoError(t, in.SetStatus(StatusInvestigating, "", "anna", at))
	require.ErrorIs(t, in.SetStatus(StatusAcknowledged, "", "anna", at), ErrTransition, "no way back to acknowledged")
	require.NoError(t, in.SetStatus(StatusContained, "", "anna", at))
	require.NoError(t, in.SetStatus(StatusResolved, ResolutionTruePositive, "anna", at))
	require.False(t, in.Status.Open())
	require.NoError(t, in.SetStatus(StatusClosed, "", "anna", at), "closing keeps the resolution")
	require.Equal(t, ResolutionTruePositive, in.Resolution)
	require.NoError(t, in.SetStatus(StatusInvestigating, "", "anna", at), "reopen")
	require.Empty(t, in.Resolution)
	require.ErrorIs(t, in.SetStatus(StatusClosed, "maybe", "anna", at), ErrResolution)
	var statusEntries int
	for _, e := range in.Timeline {
		if e.Kind == EntryStatus {
			statusEntries++
		}
	}
	require.Equal(t, 5, statusEntries)
	for _, from := range Statuses {
		for _, to := range Statuses {
			if from == to {
				continue
			}
			x := &Incident{ID: "inc-x", Kind: KindIncident, Created: at, Status: from, Resolution: ResolutionBenign, Severity: finding.Low, TLP: TLPAmber, PAP: PAPAmber}
			if !from.Open() && to.Open() {
				x.Resolution = ResolutionBenign
			}
			err := x.SetStatus(to, ResolutionBenign, "a", at)
			require.Equal(t, CanMove(from, to), err == nil, "%s -> %s: %v", from, to, err)
			if err == nil {
				require.NoError(t, x.Validate())
			} else {
				require.True(t, errors.Is(err, ErrTransition))
			}
		}
	}
}

func TestCategorize(t *testing.T) {
	base := func() *finding.Finding {
		return &finding.Finding{ID: "f", Time: time.Now(), Kind: finding.KindDetection, RuleID: "r", Severity: finding.Low}
	}
	cases := []struct {
		name string
		mod  func(*finding.Finding)
		want Category
	}{
		{"enisa tag, old name", func(f *finding.Finding) { f.Tags = []string{"csirt.enisa.information-gathering.scanning"} }, CategoryScanner},
		{"enisa tag, current name", func(f *finding.Finding) { f.Tags = []string{"csirt.enisa.fraud.phishing"} }, Category("fraud.phishing")},
		{"enisa tag wins over technique", func(f *finding.Finding) {
			f.Tags = []string{"csirt.enisa.malicious-code.ransomware"}
			f.Techniques = []string{"T1110"}
		}, CategoryInfected},
		{"bad enisa tag falls through", func(f *finding.Finding) { f.Tags = []string{"csirt.enisa.nonsense"}; f.Techniques = []string{"T1190"} }, CategoryExploit},
		{"technique", func(f *finding.Finding) { f.Techniques = []string{"t1496"} }, CategoryResourceMisuse},
		{"technique tag", func(f *finding.Finding) { f.Tags = []string{"attack.t1048.003"} }, CategoryDataLeak},
		{"integrity", func(f *finding.Finding) { f.Kind = finding.KindIntegrity; f.RuleGroup = "agent-health" }, CategoryModification},
		{"coverage", func(f *finding.Finding) { f.Kind = finding.KindCoverage; f.RuleGroup = "agent-health" }, CategoryOutage},
		{"group", func(f *finding.Finding) { f.RuleGroup = "port_scan" }, CategoryScanner},
		{"group beacon", func(f *finding.Finding) { f.RuleGroup = "beaconing" }, CategoryInfected},
		{"tactic", func(f *finding.Finding) { f.Tags = []string{"attack.command_and_control"} }, CategoryInfected},
		{"intel", func(f *finding.Finding) { f.Kind = finding.KindIntel }, CategoryIDSAlert},
		{"nothing", func(*finding.Finding) {}, CategoryUndetermined},
	}
	for _, c := range cases {
		f := base()
		c.mod(f)
		got := Categorize(f)
		require.Equal(t, c.want, got, c.name)
		require.True(t, got.Valid(), "%s: %q not in the taxonomy", c.name, got)
	}
	for alias, c := range aliases {
		require.True(t, c.Valid(), "alias %s -> %s", alias, c)
	}
	for _, c := range techniqueCategories {
		require.True(t, c.Valid(), "%s", c)
	}
	for _, c := range tacticCategories {
		require.True(t, c.Valid(), "%s", c)
	}
	for _, gc := range groupCategories {
		require.True(t, gc.cat.Valid(), "%s", gc.cat)
	}
}

func TestNIS2(t *testing.T) {
	aware := time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC)
	n := NewNIS2(aware)
	require.Equal(t, aware.Add(24*time.Hour), n.EarlyWarningDue)
	require.Equal(t, aware.Add(72*time.Hour), n.NotificationDue)
	require.Equal(t, time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC), n.FinalReportDue, "one calendar month after 2 Feb (AddDate normalises)")
	p := n.Pending(aware.Add(30 * time.Hour))
	require.Len(t, p, 3)
	require.True(t, p[0].Overdue)
	require.False(t, p[1].Overdue)
	n.MarkSent(ReportEarlyWarning, aware.Add(20*time.Hour))
	n.MarkSent(ReportNotification, aware.Add(50*time.Hour))
	require.Equal(t, aware.Add(50*time.Hour).AddDate(0, 1, 0), n.FinalReportDue, "final report counts from the notification sent")
	p = n.Pending(aware.Add(60 * time.Hour))
	require.Equal(t, []Deadline{{Report: ReportFinal, Due: n.FinalReportDue}}, p)
}

func TestCampaignMembers(t *testing.T) {
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	o := finding.Observable{Type: "ip", Value: "203.0.113.7"}
	c := NewCampaign(CampaignID(o, at), o, "ssh brute force", at)
	for i, e := range []string{"comune-b", "comune-a", "comune-b"} {
		f := sample(at)
		f.Entity = e
		f.ID = finding.NewID("r", e, string(rune('a'+i)))
		m := New(ID(KeyOf(f), at, i), KeyOf(f), f, false, "s", at)
		require.True(t, c.AddMember(m, at, at))
		require.False(t, c.AddMember(m, at, at))
	}
	require.Equal(t, []string{"comune-a", "comune-b"}, c.Entities)
	require.Len(t, c.Members, 3)
	require.Equal(t, "Regional campaign: ssh brute force from 203.0.113.7 on 2 entities", c.Title)
	d, err := c.Doc()
	require.NoError(t, err)
	require.Equal(t, store.RegionalTenant, d.Tenant)
	back, err := FromDoc(d)
	require.NoError(t, err)
	require.Equal(t, c, back)
}

func TestDecodeRejects(t *testing.T) {
	good := `{"id":"inc-1","kind":"incident","created":"2026-11-20T10:00:00Z","title":"t","status":"new","severity":"low","risk_score":21,"tlp":"amber","pap":"amber","findings":{"count":1}}`
	_, err := Decode([]byte(good))
	require.NoError(t, err)
	for name, doc := range map[string]string{
		"bad status":     `{"id":"inc-1","kind":"incident","created":"2026-11-20T10:00:00Z","status":"open","severity":"low","tlp":"amber","pap":"amber","findings":{"count":1}}`,
		"closed w/o res": `{"id":"inc-1","kind":"incident","created":"2026-11-20T10:00:00Z","status":"closed","severity":"low","tlp":"amber","pap":"amber","findings":{"count":1}}`,
		"bad tlp":        `{"id":"inc-1","kind":"incident","created":"2026-11-20T10:00:00Z","status":"new","severity":"low","tlp":"white","pap":"amber","findings":{"count":1}}`,
		"bad time":       `{"id":"inc-1","kind":"incident","created":"yesterday","status":"new","severity":"low","tlp":"amber","pap":"amber","findings":{"count":1}}`,
		"bad category":   `{"id":"inc-1","kind":"incident","created":"2026-11-20T10:00:00Z","status":"new","severity":"low","tlp":"amber","pap":"amber","category":"x.y","findings":{"count":1}}`,
		"obs mismatch":   `{"id":"inc-1","kind":"incident","created":"2026-11-20T10:00:00Z","status":"new","severity":"low","tlp":"amber","pap":"amber","observables":{"type":["ip"],"value":[]},"findings":{"count":1}}`,
		"trailing":       good + `{}`,
		"wrong type":     `{"id":"inc-1","kind":"incident","created":"2026-11-20T10:00:00Z","status":"new","severity":"low","tlp":"amber","pap":"amber","findings":{"count":"1"}}`,
	} {
		_, err := Decode([]byte(doc))
		require.Error(t, err, name)
	}
}

func TestTitle(t *testing.T) {
	for _, c := range []struct {
		f    finding.Finding
		want string
	}{
		{finding.Finding{RuleName: "SSH brute force from one address", SourceIP: "203.0.113.7", Host: "srv1"}, "SSH brute force from one address: 203.0.113.7 on srv1"},
		{finding.Finding{RuleName: "Port scan", SourceIP: "198.51.100.4"}, "Port scan from 198.51.100.4"},
		{finding.Finding{RuleName: "Port scan", SourceIP: "198.51.100.4", Host: "fw"}, "Port scan from 198.51.100.4 on fw"},
		{finding.Finding{RuleID: "r-1", Host: "fw"}, "r-1 on fw"},
		{finding.Finding{RuleName: "Webshell"}, "Webshell"},
	} {
		require.Equal(t, c.want, title(&c.f))
	}
}
