// Package finding is the platform's finding: what a component concluded
// about events (a detection, a correlation, an intelligence match, a
// heuristic) or about the data path itself (an agent's integrity, missing
// coverage). It defines the Finding type, its deterministic id, its JSON
// codec (the value of csirt.findings.v1 and the source of the store's
// findings documents, one and the same document) and a Publisher that
// makes a finding durable in both places. The collector raises integrity
// and coverage findings with it; the correlator raises the others.
// docs/findings.md describes the model.
package finding

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
)

// Kind says what produced a finding.
type Kind string

// The kinds of finding.
const (
	KindDetection   Kind = "detection"   // one detection rule matched events
	KindCorrelation Kind = "correlation" // a correlation rule matched a sequence or count of events
	KindIntel       Kind = "intel"       // an event matched a threat-intelligence indicator
	KindHeuristic   Kind = "heuristic"   // a network or behaviour heuristic fired
	KindIntegrity   Kind = "integrity"   // an agent's data failed verification (signature, replay, ...)
	KindCoverage    Kind = "coverage"    // data is missing: sequence gap, silent agent or entity
)

// Kinds lists every kind.
var Kinds = []Kind{KindDetection, KindCorrelation, KindIntel, KindHeuristic, KindIntegrity, KindCoverage}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	for _, x := range Kinds {
		if k == x {
			return true
		}
	}
	return false
}

// Severity grades a finding.
type Severity string

// The severities, lowest first.
const (
	Informational Severity = "informational"
	Low           Severity = "low"
	Medium        Severity = "medium"
	High          Severity = "high"
	Critical      Severity = "critical"
)

// Severities lists every severity, lowest first.
var Severities = []Severity{Informational, Low, Medium, High, Critical}

// Rank is the severity's position in Severities (0 for informational),
// -1 for an unknown severity.
func (s Severity) Rank() int {
	for i, x := range Severities {
		if s == x {
			return i
		}
	}
	return -1
}

// Valid reports whether s is one of Severities.
func (s Severity) Valid() bool { return s.Rank() >= 0 }

// DefaultRisk is the risk score a finding of this severity gets when its
// producer sets none: the values Elastic detection rules use per severity
// (21, 47, 73, 99), with 5 for informational.
func (s Severity) DefaultRisk() int {
	switch s {
	case Low:
		return 21
	case Medium:
		return 47
	case High:
		return 73
	case Critical:
		return 99
	}
	return 5
}

// Observable is a value an analyst may pivot on or share (an address, a
// user, a host, a hash, a domain, an agent id). Type is free text in the
// spirit of MISP/TheHive data types: "ip", "domain", "hostname", "user",
// "hash", "url", "agent", ...
type Observable struct {
	Type  string
	Value string
}

// Limits of a finding, checked by Validate (and so by Decode).
const (
	MaxSize     = 1 << 20 // bytes of one encoded finding
	MaxEvidence = 4096    // bytes of the evidence excerpt
	MaxList     = 1000    // items of each list (event ids, observables, tags, ...)
)

// Finding is one finding. Entity is the tenant: store.RegionalTenant for
// findings that belong to the CSIRT rather than to one entity (for
// example a batch from an agent nobody enrolled).
type Finding struct {
	ID        string    // deterministic: NewID(rule id, key material...)
	Time      time.Time // when the finding was raised
	Kind      Kind
	RuleID    string
	RuleName  string
	RuleGroup string // grouping key for incidents ("agent-health", "brute-force", ...)
	Severity  Severity
	RiskScore int // 0 to 100; 0 means Severity.DefaultRisk() on encoding

	Entity   string // organization.id
	Host     string // host.name
	SourceIP string // source.ip
	User     string // user.name
	AgentID  string // agent.id: the agent the finding is about or came through

	Techniques  []string // ATT&CK technique ids (T1110, T1110.001)
	Observables []Observable
	EventIDs    []string // event.id of the events it references
	IncidentID  string   // set by the incident stage

	Message    string            // one or two sentences for analysts
	Evidence   string            // a short excerpt (a log line, a field list); at most MaxEvidence bytes
	Tags       []string          // "reason:replay", "attack.credential_access", ...
	References []string          // URLs: rule documentation, advisories
	Labels     map[string]string // kind-specific details (stream, gap range, silence period)
}

// NewID is the deterministic id of a finding: a hash of the rule id and
// the key material that makes the finding unique (the positions, ranges,
// entities or events it is about). Raising the same finding again, from a
// retry, a redelivery, a restart or another instance, gives the same id,
// so the store keeps one document and consumers of csirt.findings.v1 can
// drop repeats. Key parts are length-prefixed: ("ab","c") and ("a","bc")
// differ.
func NewID(ruleID string, key ...string) string {
	parts := make([][]byte, 0, len(key)+1)
	parts = append(parts, []byte(ruleID))
	for _, k := range key {
		parts = append(parts, []byte(k))
	}
	return event.IDFromRaw(parts...)
}

// TimeKey formats a time for NewID key material (UTC, nanoseconds), so
// that the same instant always gives the same key.
func TimeKey(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// Tenant is the store tenant of the finding (Entity, or the regional
// tenant when Entity is empty).
func (f *Finding) Tenant() string {
	if f.Entity == "" {
		return store.RegionalTenant
	}
	return f.Entity
}

// Scope is the store scope to write the finding in.
func (f *Finding) Scope() store.Scope {
	if f.Tenant() == store.RegionalTenant {
		return store.RegionalScope()
	}
	return store.TenantScope(f.Tenant())
}

// Key is the Kafka key of the finding on csirt.findings.v1: its tenant.
func (f *Finding) Key() []byte { return []byte(f.Tenant()) }

// Risk is RiskScore, or the severity's default when it is 0.
func (f *Finding) Risk() int {
	if f.RiskScore > 0 {
		return f.RiskScore
	}
	return f.Severity.DefaultRisk()
}

// Validate checks what every finding must carry and the limits. The first
// problem is returned, naming the field.
func (f *Finding) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("finding %q: %s: %s", f.ID, field, fmt.Sprintf(format, args...))
	}
	if err := store.ValidID(f.ID); err != nil {
		return bad("finding.id", "%v", err)
	}
	if f.Time.IsZero() {
		return bad("@timestamp", "is missing")
	}
	if !f.Kind.Valid() {
		return bad("kind", "%q is not one of %v", f.Kind, Kinds)
	}
	if f.RuleID == "" {
		return bad("rule.id", "is missing")
	}
	if !f.Severity.Valid() {
		return bad("severity", "%q is not one of %v", f.Severity, Severities)
	}
	if f.RiskScore < 0 || f.RiskScore > 100 {
		return bad("risk_score", "%d is outside 0-100", f.RiskScore)
	}
	if f.Entity != "" {
		if err := store.ValidID(f.Entity); err != nil {
			return bad("organization.id", "%v", err)
		}
	}
	if f.SourceIP != "" {
		if _, err := netip.ParseAddr(f.SourceIP); err != nil {
			return bad("source.ip", "%q is not an IP address", f.SourceIP)
		}
	}
	if len(f.Evidence) > MaxEvidence {
		return bad("finding.evidence", "%d bytes, at most %d", len(f.Evidence), MaxEvidence)
	}
	for name, n := range map[string]int{"threat.technique.id": len(f.Techniques), "observables": len(f.Observables),
		"event.ids": len(f.EventIDs), "tags": len(f.Tags), "finding.references": len(f.References), "labels": len(f.Labels)} {
		if n > MaxList {
			return bad(name, "%d items, at most %d", n, MaxList)
		}
	}
	for _, o := range f.Observables {
		if o.Type == "" || o.Value == "" {
			return bad("observables", "an observable needs a type and a value (got %q=%q)", o.Type, o.Value)
		}
	}
	for k := range f.Labels {
		if k == "" || strings.ContainsAny(k, ". ") {
			return bad("labels", "key %q must be non-empty without dots or spaces", k)
		}
	}
	return nil
}

// Truncate shortens s to at most n bytes without splitting a UTF-8
// sequence, marking the cut with "…" (within the n bytes). Producers use
// it for Evidence.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	if cut < 0 {
		return ""
	}
	for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + mark
}
