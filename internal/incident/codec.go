package incident

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
)

// wire is the store document. Its dotted names are the incidents fields
// of the store schema (created, updated, title, status, resolution,
// severity, assignee, tlp, pap, category, attack.technique,
// observables.value, hosts, campaign.id, findings.count, description);
// the other fields are stored, not searchable. Observables are two
// parallel lists, as in findings.
type wire struct {
	ID           string        `json:"id"`
	Kind         string        `json:"kind"`
	Organization *wireID       `json:"organization,omitempty"`
	Created      string        `json:"created"`
	Updated      string        `json:"updated,omitempty"`
	FirstSeen    string        `json:"first_seen,omitempty"`
	LastSeen     string        `json:"last_seen,omitempty"`
	Title        string        `json:"title"`
	Description  string        `json:"description,omitempty"`
	Status       string        `json:"status"`
	Resolution   string        `json:"resolution,omitempty"`
	Severity     string        `json:"severity"`
	RiskScore    int           `json:"risk_score"`
	Assignee     string        `json:"assignee,omitempty"`
	TLP          string        `json:"tlp"`
	PAP          string        `json:"pap"`
	Category     string        `json:"category,omitempty"`
	Attack       *wireAttack   `json:"attack,omitempty"`
	Observables  *wireObs      `json:"observables,omitempty"`
	Hosts        []string      `json:"hosts,omitempty"`
	Users        []string      `json:"users,omitempty"`
	Rule         *wireRule     `json:"rule,omitempty"`
	Group        *wireGroup    `json:"group,omitempty"`
	Campaign     *wireID       `json:"campaign,omitempty"`
	Findings     wireFindings  `json:"findings"`
	Timeline     []wireEntry   `json:"timeline,omitempty"`
	Comments     []wireComment `json:"comments,omitempty"`
	Tasks        []wireTask    `json:"tasks,omitempty"`
	NIS2         *wireNIS2     `json:"nis2,omitempty"`
	Members      []wireMember  `json:"members,omitempty"`
	Entities     []string      `json:"entities,omitempty"`
}

type wireID struct {
	ID string `json:"id"`
}

type wireAttack struct {
	Technique []string `json:"technique,omitempty"`
	Tactic    []string `json:"tactic,omitempty"`
}

type wireObs struct {
	Type  []string `json:"type"`
	Value []string `json:"value"`
}

type wireRule struct {
	Group string   `json:"group,omitempty"`
	IDs   []string `json:"ids,omitempty"`
}

type wireGroup struct {
	Key string `json:"key"`
}

type wireFindings struct {
	Count int      `json:"count"`
	IDs   []string `json:"ids,omitempty"`
}

type wireEntry struct {
	Time    string `json:"time"`
	Kind    string `json:"kind"`
	Actor   string `json:"actor,omitempty"`
	Message string `json:"message,omitempty"`
	Finding string `json:"finding,omitempty"`
}

type wireComment struct {
	Time   string `json:"time"`
	Author string `json:"author"`
	Text   string `json:"text"`
}

type wireTask struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	Done     bool   `json:"done"`
	Assignee string `json:"assignee,omitempty"`
	Created  string `json:"created,omitempty"`
	DoneAt   string `json:"done_at,omitempty"`
}

type wireNIS2 struct {
	AwareAt          string `json:"aware_at"`
	EarlyWarningDue  string `json:"early_warning_due"`
	NotificationDue  string `json:"notification_due"`
	FinalReportDue   string `json:"final_report_due"`
	EarlyWarningSent string `json:"early_warning_sent,omitempty"`
	NotificationSent string `json:"notification_sent,omitempty"`
	FinalReportSent  string `json:"final_report_sent,omitempty"`
}

type wireMember struct {
	Entity   string `json:"entity"`
	Incident string `json:"incident"`
	Joined   string `json:"joined,omitempty"`
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// parseTime reads an optional RFC 3339 time ("" is the zero time).
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %q is not an RFC 3339 time", field, s)
	}
	return t.UTC(), nil
}

// Encode validates the incident and returns its JSON document.
func Encode(in *Incident) ([]byte, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	w := wire{
		ID: in.ID, Kind: string(in.Kind), Organization: &wireID{ID: in.Tenant()},
		Created: ts(in.Created), Updated: ts(in.Updated), FirstSeen: ts(in.FirstSeen), LastSeen: ts(in.LastSeen),
		Title: in.Title, Description: in.Description, Status: string(in.Status), Resolution: string(in.Resolution),
		Severity: string(in.Severity), RiskScore: in.RiskScore, Assignee: in.Assignee, TLP: string(in.TLP),
		PAP: string(in.PAP), Category: string(in.Category), Hosts: in.Hosts, Users: in.Users,
		Findings: wireFindings{Count: in.FindingCount, IDs: in.FindingIDs}, Entities: in.Entities,
	}
	if len(in.Techniques)+len(in.Tactics) > 0 {
		w.Attack = &wireAttack{Technique: in.Techniques, Tactic: in.Tactics}
	}
	if len(in.Observables) > 0 {
		o := &wireObs{Type: make([]string, len(in.Observables)), Value: make([]string, len(in.Observables))}
		for i, ob := range in.Observables {
			o.Type[i], o.Value[i] = ob.Type, ob.Value
		}
		w.Observables = o
	}
	if in.RuleGroup != "" || len(in.Rules) > 0 {
		w.Rule = &wireRule{Group: in.RuleGroup, IDs: in.Rules}
	}
	if in.GroupKey != "" {
		w.Group = &wireGroup{Key: in.GroupKey}
	}
	if in.CampaignID != "" {
		w.Campaign = &wireID{ID: in.CampaignID}
	}
	for _, e := range in.Timeline {
		w.Timeline = append(w.Timeline, wireEntry{Time: ts(e.Time), Kind: e.Kind, Actor: e.Actor, Message: e.Message, Finding: e.Finding})
	}
	for _, c := range in.Comments {
		w.Comments = append(w.Comments, wireComment{Time: ts(c.Time), Author: c.Author, Text: c.Text})
	}
	for _, t := range in.Tasks {
		w.Tasks = append(w.Tasks, wireTask{ID: t.ID, Title: t.Title, Done: t.Done, Assignee: t.Assignee, Created: ts(t.Created), DoneAt: ts(t.DoneAt)})
	}
	if n := in.NIS2; n != nil {
		w.NIS2 = &wireNIS2{AwareAt: ts(n.AwareAt), EarlyWarningDue: ts(n.EarlyWarningDue), NotificationDue: ts(n.NotificationDue),
			FinalReportDue: ts(n.FinalReportDue), EarlyWarningSent: ts(n.EarlyWarningSent),
			NotificationSent: ts(n.NotificationSent), FinalReportSent: ts(n.FinalReportSent)}
	}
	for _, m := range in.Members {
		w.Members = append(w.Members, wireMember{Entity: m.Entity, Incident: m.Incident, Joined: ts(m.Joined)})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&w); err != nil {
		return nil, fmt.Errorf("encoding incident %q: %w", in.ID, err)
	}
	out := bytes.TrimRight(buf.Bytes(), "\n")
	if len(out) > MaxSize {
		return nil, fmt.Errorf("encoding incident %q: %d bytes, at most %d", in.ID, len(out), MaxSize)
	}
	return out, nil
}

// Doc is the incident as a document of the store's incidents collection,
// with its Version (for Update).
func (in *Incident) Doc() (store.Doc, error) {
	src, err := Encode(in)
	if err != nil {
		return store.Doc{}, err
	}
	return store.Doc{ID: in.ID, Tenant: in.Tenant(), Version: in.Version, Source: src}, nil
}

// FromDoc reads an incidents document (written by Doc) and validates it.
// The document's id, tenant and version win over the source's copies.
func FromDoc(d store.Doc) (*Incident, error) {
	in, err := Decode(d.Source)
	if err != nil {
		return nil, fmt.Errorf("incident document %q: %w", d.ID, err)
	}
	if d.ID != "" {
		in.ID = d.ID
	}
	if d.Tenant != "" {
		in.Entity = d.Tenant
	}
	in.Version = d.Version
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return in, nil
}

// Decode parses an incident document. Unknown fields are ignored; a known
// field of the wrong type, an invalid status, severity, marking, time or
// category, or mismatched observables lists is an error.
func Decode(data []byte) (*Incident, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("decoding incident: %d bytes, at most %d", len(data), MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var w wire
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("decoding incident: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decoding incident: trailing data after the JSON object")
	}
	in := &Incident{
		ID: w.ID, Kind: Kind(w.Kind), Title: w.Title, Description: w.Description, Status: Status(w.Status),
		Resolution: Resolution(w.Resolution), Severity: finding.Severity(w.Severity), RiskScore: w.RiskScore,
		Assignee: w.Assignee, TLP: TLP(w.TLP), PAP: PAP(w.PAP), Category: Category(w.Category),
		Hosts: w.Hosts, Users: w.Users, FindingCount: w.Findings.Count, FindingIDs: w.Findings.IDs, Entities: w.Entities,
	}
	if w.Organization != nil {
		in.Entity = w.Organization.ID
	}
	var errs []error
	tm := func(field, s string) time.Time {
		t, err := parseTime(field, s)
		if err != nil {
			errs = append(errs, err)
		}
		return t
	}
	in.Created = tm("created", w.Created)
	in.Updated = tm("updated", w.Updated)
	in.FirstSeen = tm("first_seen", w.FirstSeen)
	in.LastSeen = tm("last_seen", w.LastSeen)
	if w.Attack != nil {
		in.Techniques, in.Tactics = w.Attack.Technique, w.Attack.Tactic
	}
	if w.Observables != nil {
		if len(w.Observables.Type) != len(w.Observables.Value) {
			return nil, fmt.Errorf("decoding incident %q: observables: %d types for %d values", in.ID,
				len(w.Observables.Type), len(w.Observables.Value))
		}
		for i := range w.Observables.Value {
			in.Observables = append(in.Observables, finding.Observable{Type: w.Observables.Type[i], Value: w.Observables.Value[i]})
		}
	}
	if w.Rule != nil {
		in.RuleGroup, in.Rules = w.Rule.Group, w.Rule.IDs
	}
	if w.Group != nil {
		in.GroupKey = w.Group.Key
	}
	if w.Campaign != nil {
		in.CampaignID = w.Campaign.ID
	}
	for _, e := range w.Timeline {
		in.Timeline = append(in.Timeline, Entry{Time: tm("timeline.time", e.Time), Kind: e.Kind, Actor: e.Actor, Message: e.Message, Finding: e.Finding})
	}
	for _, c := range w.Comments {
		in.Comments = append(in.Comments, Comment{Time: tm("comments.time", c.Time), Author: c.Author, Text: c.Text})
	}
	for _, t := range w.Tasks {
		in.Tasks = append(in.Tasks, Task{ID: t.ID, Title: t.Title, Done: t.Done, Assignee: t.Assignee,
			Created: tm("tasks.created", t.Created), DoneAt: tm("tasks.done_at", t.DoneAt)})
	}
	if n := w.NIS2; n != nil {
		in.NIS2 = &NIS2{AwareAt: tm("nis2.aware_at", n.AwareAt), EarlyWarningDue: tm("nis2.early_warning_due", n.EarlyWarningDue),
			NotificationDue: tm("nis2.notification_due", n.NotificationDue), FinalReportDue: tm("nis2.final_report_due", n.FinalReportDue),
			EarlyWarningSent: tm("nis2.early_warning_sent", n.EarlyWarningSent), NotificationSent: tm("nis2.notification_sent", n.NotificationSent),
			FinalReportSent: tm("nis2.final_report_sent", n.FinalReportSent)}
	}
	for _, m := range w.Members {
		in.Members = append(in.Members, Member{Entity: m.Entity, Incident: m.Incident, Joined: tm("members.joined", m.Joined)})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("decoding incident %q: %w", in.ID, err)
	}
	if err := in.Validate(); err != nil {
		return nil, fmt.Errorf("decoding incident: %w", err)
	}
	return in, nil
}
