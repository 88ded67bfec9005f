package finding

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
)

// wire is the JSON document: nested ECS-style objects whose dotted names
// are the store's findings fields (schema.go). Observables are two
// parallel lists (observables.type[i] goes with observables.value[i]) so
// that observables.value is a plain keyword list on both stores.
type wire struct {
	Timestamp    string            `json:"@timestamp"`
	Finding      wireFinding       `json:"finding"`
	Kind         string            `json:"kind"`
	Rule         wireRule          `json:"rule"`
	Severity     string            `json:"severity"`
	RiskScore    int               `json:"risk_score"`
	Organization *wireID           `json:"organization,omitempty"`
	Host         *wireName         `json:"host,omitempty"`
	Source       *wireIP           `json:"source,omitempty"`
	User         *wireName         `json:"user,omitempty"`
	Agent        *wireID           `json:"agent,omitempty"`
	Threat       *wireThreat       `json:"threat,omitempty"`
	Observables  *wireObs          `json:"observables,omitempty"`
	Event        *wireEvent        `json:"event,omitempty"`
	Incident     *wireID           `json:"incident,omitempty"`
	Message      string            `json:"message,omitempty"`
	Tags         []string          `json:"tags,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
}

type wireFinding struct {
	ID         string   `json:"id"`
	Evidence   string   `json:"evidence,omitempty"`
	References []string `json:"references,omitempty"`
}

type wireRule struct {
	ID    string `json:"id"`
	Name  string `json:"name,omitempty"`
	Group string `json:"group,omitempty"`
}

type wireID struct {
	ID string `json:"id"`
}

type wireName struct {
	Name string `json:"name"`
}

type wireIP struct {
	IP string `json:"ip"`
}

type wireThreat struct {
	Technique wireIDs `json:"technique"`
}

type wireIDs struct {
	ID []string `json:"id"`
}

type wireObs struct {
	Type  []string `json:"type"`
	Value []string `json:"value"`
}

type wireEvent struct {
	IDs []string `json:"ids"`
}

// Encode validates f and returns its JSON document: the value of its
// csirt.findings.v1 message and the source of its store document. A zero
// RiskScore is written as the severity's default. The output is
// deterministic (fixed key order, labels sorted by key).
func Encode(f *Finding) ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	w := wire{
		Timestamp: f.Time.UTC().Format(time.RFC3339Nano),
		Finding:   wireFinding{ID: f.ID, Evidence: f.Evidence, References: f.References},
		Kind:      string(f.Kind),
		Rule:      wireRule{ID: f.RuleID, Name: f.RuleName, Group: f.RuleGroup},
		Severity:  string(f.Severity),
		RiskScore: f.Risk(),
		Message:   f.Message,
		Tags:      f.Tags,
		Labels:    f.Labels,
	}
	w.Organization = &wireID{ID: f.Tenant()}
	if f.Host != "" {
		w.Host = &wireName{Name: f.Host}
	}
	if f.SourceIP != "" {
		w.Source = &wireIP{IP: f.SourceIP}
	}
	if f.User != "" {
		w.User = &wireName{Name: f.User}
	}
	if f.AgentID != "" {
		w.Agent = &wireID{ID: f.AgentID}
	}
	if len(f.Techniques) > 0 {
		w.Threat = &wireThreat{Technique: wireIDs{ID: f.Techniques}}
	}
	if len(f.Observables) > 0 {
		o := &wireObs{Type: make([]string, len(f.Observables)), Value: make([]string, len(f.Observables))}
		for i, ob := range f.Observables {
			o.Type[i], o.Value[i] = ob.Type, ob.Value
		}
		w.Observables = o
	}
	if len(f.EventIDs) > 0 {
		w.Event = &wireEvent{IDs: f.EventIDs}
	}
	if f.IncidentID != "" {
		w.Incident = &wireID{ID: f.IncidentID}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&w); err != nil {
		return nil, fmt.Errorf("encoding finding %q: %w", f.ID, err)
	}
	out := bytes.TrimRight(buf.Bytes(), "\n")
	if len(out) > MaxSize {
		return nil, fmt.Errorf("encoding finding %q: %d bytes, at most %d: shorten its message, evidence or lists", f.ID, len(out), MaxSize)
	}
	return out, nil
}

// Decode parses a finding document written by Encode (a csirt.findings.v1
// value or a store findings document) and validates it. Fields it does not
// know are ignored, so that producers may add fields; a known field of the
// wrong type, an unknown kind or severity, or a missing id, time or rule
// id is an error.
func Decode(data []byte) (*Finding, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("decoding finding: %d bytes, at most %d", len(data), MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var w wire
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("decoding finding: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decoding finding: trailing data after the JSON object")
	}
	t, err := time.Parse(time.RFC3339Nano, w.Timestamp)
	if err != nil {
		return nil, fmt.Errorf("decoding finding: @timestamp %q is not an RFC 3339 time", w.Timestamp)
	}
	f := &Finding{
		ID: w.Finding.ID, Time: t.UTC(), Kind: Kind(w.Kind), RuleID: w.Rule.ID, RuleName: w.Rule.Name,
		RuleGroup: w.Rule.Group, Severity: Severity(w.Severity), RiskScore: w.RiskScore,
		Message: w.Message, Evidence: w.Finding.Evidence, Tags: w.Tags, References: w.Finding.References,
	}
	if len(w.Labels) > 0 {
		f.Labels = w.Labels
	}
	if w.Organization != nil && w.Organization.ID != store.RegionalTenant {
		f.Entity = w.Organization.ID
	}
	if w.Host != nil {
		f.Host = w.Host.Name
	}
	if w.Source != nil {
		f.SourceIP = w.Source.IP
	}
	if w.User != nil {
		f.User = w.User.Name
	}
	if w.Agent != nil {
		f.AgentID = w.Agent.ID
	}
	if w.Threat != nil {
		f.Techniques = w.Threat.Technique.ID
	}
	if w.Observables != nil {
		if len(w.Observables.Type) != len(w.Observables.Value) {
			return nil, fmt.Errorf("decoding finding %q: observables: %d types for %d values", f.ID,
				len(w.Observables.Type), len(w.Observables.Value))
		}
		for i := range w.Observables.Value {
			f.Observables = append(f.Observables, Observable{Type: w.Observables.Type[i], Value: w.Observables.Value[i]})
		}
	}
	if w.Event != nil {
		f.EventIDs = w.Event.IDs
	}
	if w.Incident != nil {
		f.IncidentID = w.Incident.ID
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("decoding finding: %w", err)
	}
	return f, nil
}

// Doc is the finding as a document of the store's findings collection: id
// the finding id, tenant its entity (or the regional tenant), source its
// encoding.
func (f *Finding) Doc() (store.Doc, error) {
	src, err := Encode(f)
	if err != nil {
		return store.Doc{}, err
	}
	return store.Doc{ID: f.ID, Tenant: f.Tenant(), Source: src}, nil
}
