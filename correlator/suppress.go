package correlator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
)

// Suppression scopes.
const (
	ScopeEntity   = "entity"
	ScopeRegional = "regional"
)

// SuppressionKind is the rules_state "kind" of suppression documents.
const SuppressionKind = "suppression"

// Suppression silences findings that analysts judged noise. It is stored
// in the rules_state collection (kind "suppression") in the tenant of its
// entity, or in the regional tenant for regional ones, and applied by the
// correlator before a finding is emitted.
type Suppression struct {
	ID     string `json:"id"`
	Scope  string `json:"scope"`            // "entity" or "regional"
	Entity string `json:"entity,omitempty"` // the entity of an entity-scoped suppression
	// RuleID limits the suppression to one rule ("" = any rule).
	RuleID string `json:"rule.id,omitempty"`
	// Match: every field must hold its value in the finding. Fields are
	// "source.ip", "host.name", "user.name", "agent.id", "rule.group",
	// "kind" or "observable.<type>" (any observable of that type);
	// values compare case-insensitively, a trailing '*' matches a prefix.
	Match   map[string]string `json:"match"`
	Expires time.Time         `json:"expires"` // zero: never (discouraged)
	Reason  string            `json:"reason"`
	Author  string            `json:"author"`
	Created time.Time         `json:"created"`
}

// Validate checks a suppression.
func (s *Suppression) Validate() error {
	switch s.Scope {
	case ScopeEntity:
		if s.Entity == "" {
			return errors.New("suppression: an entity-scoped suppression needs an entity")
		}
	case ScopeRegional:
	default:
		return fmt.Errorf("suppression: scope %q is not entity or regional", s.Scope)
	}
	if s.RuleID == "" && len(s.Match) == 0 {
		return errors.New("suppression: set rule.id or match (a suppression of everything is refused)")
	}
	if s.Reason == "" || s.Author == "" {
		return errors.New("suppression: reason and author are required")
	}
	if s.ID == "" {
		return errors.New("suppression: id is required")
	}
	return store.ValidID(s.ID)
}

// Doc returns the suppression as a rules_state document.
func (s *Suppression) Doc() (store.Doc, error) {
	if err := s.Validate(); err != nil {
		return store.Doc{}, err
	}
	tenant := store.RegionalTenant
	if s.Scope == ScopeEntity {
		tenant = s.Entity
	}
	src := map[string]any{"kind": SuppressionKind, "suppression": s, "updated": s.Created.UTC().Format(time.RFC3339Nano)}
	if !s.Expires.IsZero() {
		src["expires"] = s.Expires.UTC().Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(src)
	if err != nil {
		return store.Doc{}, err
	}
	return store.Doc{ID: "suppression." + s.ID, Tenant: tenant, Source: b}, nil
}

// Matches reports whether the suppression applies to f at now.
func (s *Suppression) Matches(f *finding.Finding, now time.Time) bool {
	if !s.Expires.IsZero() && !now.Before(s.Expires) {
		return false
	}
	if s.Scope == ScopeEntity && s.Entity != f.Entity {
		return false
	}
	if s.RuleID != "" && s.RuleID != f.RuleID {
		return false
	}
	for k, want := range s.Match {
		if !fieldMatches(f, k, want) {
			return false
		}
	}
	return true
}

func fieldMatches(f *finding.Finding, field, want string) bool {
	eq := func(v string) bool {
		if p, ok := strings.CutSuffix(want, "*"); ok {
			return strings.HasPrefix(strings.ToLower(v), strings.ToLower(p))
		}
		return strings.EqualFold(v, want)
	}
	switch field {
	case "source.ip":
		return eq(f.SourceIP)
	case "host.name":
		return eq(f.Host)
	case "user.name":
		return eq(f.User)
	case "agent.id":
		return eq(f.AgentID)
	case "rule.group":
		return eq(f.RuleGroup)
	case "kind":
		return eq(string(f.Kind))
	}
	if typ, ok := strings.CutPrefix(field, "observable."); ok {
		for _, o := range f.Observables {
			if o.Type == typ && eq(o.Value) {
				return true
			}
		}
	}
	return false
}

// Suppressions is an immutable set of suppressions.
type Suppressions struct {
	list []Suppression
}

// NewSuppressions returns a set of the valid suppressions of list.
func NewSuppressions(list []Suppression) *Suppressions {
	return &Suppressions{list: append([]Suppression(nil), list...)}
}

// Len is the number of suppressions.
func (ss *Suppressions) Len() int {
	if ss == nil {
		return 0
	}
	return len(ss.list)
}

// Match returns the first suppression that applies to f, or nil.
func (ss *Suppressions) Match(f *finding.Finding, now time.Time) *Suppression {
	if ss == nil {
		return nil
	}
	for i := range ss.list {
		if ss.list[i].Matches(f, now) {
			return &ss.list[i]
		}
	}
	return nil
}

// LoadSuppressions reads every unexpired suppression from the store (a
// store scan: any number of them).
func LoadSuppressions(ctx context.Context, st store.Store, now time.Time) (*Suppressions, error) {
	var list []Suppression
	err := st.Scan(ctx, store.RegionalScope(), store.RulesState, store.ScanRequest{Query: "kind:" + SuppressionKind}, func(d store.Doc) error {
		if s, ok := storedSuppression(d, now); ok {
			list = append(list, s)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading suppressions: %w", err)
	}
	return NewSuppressions(list), nil
}

// storedSuppression returns the suppression of a rules_state document if
// it is readable, valid and unexpired at now, and, for an entity
// suppression, stored in that entity's tenant (the document's tenant binds
// it).
func storedSuppression(d store.Doc, now time.Time) (Suppression, bool) {
	var doc struct {
		Suppression Suppression `json:"suppression"`
	}
	if json.Unmarshal(d.Source, &doc) != nil {
		return Suppression{}, false
	}
	s := doc.Suppression
	if s.Validate() != nil || (!s.Expires.IsZero() && !now.Before(s.Expires)) {
		return Suppression{}, false
	}
	if s.Scope == ScopeEntity && d.Tenant != s.Entity {
		return Suppression{}, false
	}
	return s, true
}
