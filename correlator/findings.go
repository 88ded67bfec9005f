package correlator

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/rules/correlation"
	"github.com/csirt-toscana/platform/rules/engine"
	"github.com/csirt-toscana/platform/rules/heuristics"
	"github.com/csirt-toscana/platform/rules/intel"
)

// observableFields are the event fields copied into a finding's
// observables, with their observable type.
var observableFields = []struct{ field, typ string }{
	{"source.ip", "ip"}, {"destination.ip", "ip"}, {"user.name", "user"}, {"host.name", "hostname"},
	{"dns.question.name", "domain"}, {"tls.client.server_name", "domain"}, {"url.domain", "domain"},
	{"url.original", "url"}, {"file.hash.sha256", "hash"}, {"process.hash.sha256", "hash"},
}

// severityOf maps a Sigma level to a finding severity.
func severityOf(level string) finding.Severity {
	switch strings.ToLower(level) {
	case "critical":
		return finding.Critical
	case "high":
		return finding.High
	case "medium":
		return finding.Medium
	case "low":
		return finding.Low
	}
	return finding.Informational
}

// techniquesOf returns the ATT&CK technique ids of Sigma tags
// (attack.t1110.001 -> T1110.001).
func techniquesOf(tags []string) []string {
	var out []string
	for _, t := range tags {
		l := strings.ToLower(t)
		if !strings.HasPrefix(l, "attack.t") || len(l) < len("attack.t1000") {
			continue
		}
		id := strings.ToUpper(l[len("attack."):])
		if _, err := strconv.Atoi(id[1:5]); err != nil {
			continue
		}
		out = append(out, id)
	}
	return out
}

// groupOf is the incident rule group of a rule: its first ATT&CK tactic
// (attack.credential-access -> credential-access), else the fallback.
func groupOf(tags []string, fallback string) string {
	for _, t := range tags {
		l := strings.ToLower(t)
		if strings.HasPrefix(l, "attack.") && !strings.HasPrefix(l, "attack.t") && !strings.HasPrefix(l, "attack.g") && !strings.HasPrefix(l, "attack.s") {
			return strings.ReplaceAll(l[len("attack."):], "_", "-")
		}
	}
	return fallback
}

func observables(ev event.Event) []finding.Observable {
	var out []finding.Observable
	seen := map[string]bool{}
	for _, of := range observableFields {
		for _, v := range ev.Strings(of.field) {
			k := of.typ + "\x00" + v
			if v == "" || seen[k] {
				continue
			}
			seen[k] = true
			out = append(out, finding.Observable{Type: of.typ, Value: v})
		}
	}
	return out
}

// evidence is a short excerpt of an event: the raw line when kept, else a
// few identifying fields.
func evidence(ev event.Event) string {
	if s := ev.String("event.original"); s != "" {
		return finding.Truncate(s, 1024)
	}
	var parts []string
	for _, f := range []string{"event.dataset", "event.action", "source.ip", "source.port", "destination.ip", "destination.port",
		"network.transport", "dns.question.name", "tls.client.server_name", "url.original", "user.name", "event.outcome"} {
		if v := ev.String(f); v != "" {
			parts = append(parts, f+"="+v)
		}
	}
	return finding.Truncate(strings.Join(parts, " "), 1024)
}

func base(ev event.Event) finding.Finding {
	return finding.Finding{Entity: ev.Org(), Host: ev.String("host.name"), SourceIP: ev.String("source.ip"),
		User: ev.String("user.name"), AgentID: ev.String("agent.id")}
}

func eventTime(ev event.Event, fallback time.Time) time.Time {
	if t := ev.Time(); !t.IsZero() {
		return t.UTC()
	}
	return fallback.UTC()
}

// DetectionFinding maps one detection match to a finding: id from the rule
// and the event id.
func DetectionFinding(m engine.Match, now time.Time) *finding.Finding {
	ev := m.Event
	f := base(ev)
	f.ID = finding.NewID(m.RuleID, ev.ID())
	f.Time = eventTime(ev, now)
	f.Kind = finding.KindDetection
	f.RuleID, f.RuleName = m.RuleID, m.Title
	f.RuleGroup = groupOf(m.Tags, nonEmpty(m.Name, m.RuleID))
	f.Severity = severityOf(m.Level)
	f.Techniques = techniquesOf(m.Tags)
	f.Observables = observables(ev)
	if id := ev.ID(); id != "" {
		f.EventIDs = []string{id}
	}
	f.Message = fmt.Sprintf("%s on %s", nonEmpty(m.Title, m.RuleID), nonEmpty(f.Host, f.Entity))
	f.Evidence = evidence(ev)
	f.Tags = append([]string(nil), m.Tags...)
	if m.Rule != nil {
		f.References = append([]string(nil), m.Rule.References...)
	}
	return &f
}

// CorrelationFinding maps a correlation alert to a finding: id from the
// correlation and the alert id (rule, key, window).
func CorrelationFinding(a *correlation.Alert, entity string, now time.Time) *finding.Finding {
	r := a.Rule
	var f finding.Finding
	if a.Trigger != nil {
		f = base(a.Trigger)
	}
	if f.Entity == "" {
		f.Entity = entity
	}
	ruleID := nonEmpty(r.ID, r.Ref())
	f.ID = finding.NewID(ruleID, a.ID)
	f.Time = a.End.UTC()
	if f.Time.IsZero() {
		f.Time = now.UTC()
	}
	f.Kind = finding.KindCorrelation
	f.RuleID, f.RuleName = ruleID, nonEmpty(r.Title, r.Name)
	f.RuleGroup = groupOf(r.Tags, nonEmpty(r.Name, ruleID))
	f.Severity = severityOf(r.Level)
	f.Techniques = techniquesOf(r.Tags)
	f.Labels = map[string]string{"correlation_type": string(r.Type), "window_start": a.Start.UTC().Format(time.RFC3339Nano),
		"window_end": a.End.UTC().Format(time.RFC3339Nano), "count": strconv.Itoa(a.Count)}
	var group []string
	for i, g := range r.GroupBy {
		if i >= len(a.GroupBy) {
			break
		}
		group = append(group, g+"="+a.GroupBy[i])
		f.Labels["group_"+labelKey(g)] = a.GroupBy[i]
		switch g {
		case "source.ip", "SourceIp", "src_ip":
			f.SourceIP = a.GroupBy[i]
			f.Observables = append(f.Observables, finding.Observable{Type: "ip", Value: a.GroupBy[i]})
		case "user.name", "User", "TargetUserName":
			f.User = a.GroupBy[i]
			f.Observables = append(f.Observables, finding.Observable{Type: "user", Value: a.GroupBy[i]})
		case "host.name", "Computer":
			f.Host = a.GroupBy[i]
			f.Observables = append(f.Observables, finding.Observable{Type: "hostname", Value: a.GroupBy[i]})
		}
	}
	if len(f.Observables) == 0 && a.Trigger != nil {
		f.Observables = observables(a.Trigger)
	}
	f.EventIDs = append([]string(nil), a.EventIDs...)
	f.Message = fmt.Sprintf("%s: %d events between %s and %s (%s)", nonEmpty(r.Title, ruleID), a.Count,
		a.Start.UTC().Format(time.RFC3339), a.End.UTC().Format(time.RFC3339), strings.Join(group, ", "))
	if a.Trigger != nil {
		f.Evidence = evidence(a.Trigger)
	}
	f.Tags = append([]string(nil), r.Tags...)
	f.References = append([]string(nil), r.References...)
	return &f
}

// IntelRulePrefix prefixes the rule id of intelligence findings
// ("intel.<source>").
const IntelRulePrefix = "intel."

// IntelFinding maps an indicator match to a finding. The id is the
// indicator, the entity, the host and the hour of the event: repeated
// contacts with one bad address within an hour give one finding.
func IntelFinding(ev event.Event, m intel.Match, now time.Time) *finding.Finding {
	ind := m.Indicator
	f := base(ev)
	t := eventTime(ev, now)
	f.ID = finding.NewID(IntelRulePrefix+ind.Source, ind.ID(), f.Entity, f.Host, finding.TimeKey(t.Truncate(time.Hour)))
	f.Time = t
	f.Kind = finding.KindIntel
	f.RuleID = IntelRulePrefix + ind.Source
	f.RuleName = "Threat intelligence: " + ind.Source
	f.RuleGroup = "threat-intel"
	switch {
	case ind.Confidence >= 80:
		f.Severity = finding.High
	case ind.Confidence >= 40:
		f.Severity = finding.Medium
	default:
		f.Severity = finding.Low
	}
	f.Observables = append(observables(ev), finding.Observable{Type: observableType(ind.Type), Value: ind.Value})
	if id := ev.ID(); id != "" {
		f.EventIDs = []string{id}
	}
	var refs []string
	for _, r := range ind.Refs {
		refs = append(refs, r.String())
		if r.Link != "" {
			f.References = append(f.References, r.Link)
		}
	}
	f.Message = fmt.Sprintf("%s %s=%s matches a %s indicator of %s", nonEmpty(f.Host, f.Entity), m.Field, m.Value, ind.Type, ind.Source)
	if len(refs) > 0 {
		f.Message += " (" + strings.Join(refs, "; ") + ")"
	}
	f.Message = finding.Truncate(f.Message, 2048)
	f.Evidence = evidence(ev)
	f.Labels = map[string]string{"indicator_id": ind.ID(), "indicator_type": string(ind.Type), "indicator_value": ind.Value,
		"indicator_source": ind.Source, "indicator_confidence": strconv.Itoa(ind.Confidence), "match_field": m.Field}
	if ind.TLP != "" {
		f.Labels["indicator_tlp"] = string(ind.TLP)
	}
	if len(ind.Refs) > 0 {
		f.Labels["indicator_ref"] = ind.Refs[0].String()
		if ind.Refs[0].Parent != "" {
			f.Labels["indicator_parent"] = ind.Refs[0].Parent
		}
	}
	for _, tg := range ind.Tags {
		f.Tags = append(f.Tags, "intel:"+tg)
	}
	if len(f.Tags) > finding.MaxList {
		f.Tags = f.Tags[:finding.MaxList]
	}
	return &f
}

func observableType(t intel.Type) string {
	switch t {
	case intel.IPv4, intel.IPv6, intel.CIDR:
		return "ip"
	case intel.MD5, intel.SHA1, intel.SHA256:
		return "hash"
	}
	return string(t)
}

// heuristicTactic gives the ATT&CK tactic and technique of each detector.
var heuristicTactic = map[string][2]string{
	heuristics.PortScanID:  {"discovery", "T1046"},
	heuristics.BeaconingID: {"command-and-control", "T1071"},
	heuristics.DNSTunnelID: {"command-and-control", "T1071.004"},
	heuristics.VolumeID:    {"exfiltration", "T1048"},
}

// HeuristicFinding maps a heuristic alert to a finding.
func HeuristicFinding(a *heuristics.Alert, now time.Time) *finding.Finding {
	ruleID := "heuristics." + a.Detector
	f := finding.Finding{ID: finding.NewID(ruleID, a.ID), Time: a.WindowEnd.UTC(), Kind: finding.KindHeuristic,
		RuleID: ruleID, RuleName: a.Name, Severity: severityOf(a.Severity), Entity: a.Entity, Host: a.Host, SourceIP: a.SourceIP,
		EventIDs: append([]string(nil), a.EventIDs...), Message: a.Message}
	if f.Time.IsZero() {
		f.Time = now.UTC()
	}
	tt := heuristicTactic[a.Detector]
	f.RuleGroup = nonEmpty(tt[0], a.Detector)
	if tt[1] != "" {
		f.Techniques = []string{tt[1]}
		f.Tags = []string{"attack." + tt[0], "attack." + strings.ToLower(tt[1])}
	}
	for _, o := range a.Observables {
		f.Observables = append(f.Observables, finding.Observable{Type: o.Type, Value: o.Value})
	}
	keys := make([]string, 0, len(a.Metrics))
	for k := range a.Metrics {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	f.Labels = map[string]string{"window_start": a.WindowStart.UTC().Format(time.RFC3339Nano), "window_end": a.WindowEnd.UTC().Format(time.RFC3339Nano), "key": a.Key}
	var ev []string
	for _, k := range keys {
		v := strconv.FormatFloat(a.Metrics[k], 'g', 6, 64)
		f.Labels["metric_"+labelKey(k)] = v
		ev = append(ev, k+"="+v)
	}
	f.Evidence = finding.Truncate(a.Key+" "+strings.Join(ev, " "), 1024)
	return &f
}

func nonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// labelKey makes a field name usable as a finding label key (no dots or
// spaces).
func labelKey(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '.' || r == ' ' || r == '\t' {
			return '_'
		}
		return r
	}, s)
}
