package intake

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/collector/internal/verify"
	"github.com/csirt-toscana/platform/internal/enroll"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/policy"
	"github.com/csirt-toscana/platform/internal/store"
)

// This file holds what the intake and `csirt admin` read and write in the
// store: entities, enrolment tokens, agents and entity policies.

// Entity is a document of the entities collection (its tenant is itself).
type Entity struct {
	ID       string   `json:"-"`
	Name     string   `json:"name"`
	Kind     string   `json:"kind,omitempty"` // comune, provincia, asl, regione, unione
	Province string   `json:"province,omitempty"`
	NIS2     bool     `json:"nis2"`
	Networks []string `json:"networks,omitempty"`
	Created  string   `json:"created,omitempty"`
}

// EntityKinds are the accepted entity kinds.
var EntityKinds = []string{"comune", "provincia", "asl", "regione", "unione"}

var entityIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidEntityID checks an entity id: 1-63 of a-z 0-9 -, not starting with
// a dash (it is a tenant key, part of agent ids and of certificate names).
func ValidEntityID(id string) error {
	if !entityIDPattern.MatchString(id) {
		return fmt.Errorf("entity id %q must be 1-63 characters of a-z 0-9 and -, starting with a letter or digit (e.g. comune-prato)", id)
	}
	return nil
}

// AddEntity creates an entity; it refuses an id already taken.
func AddEntity(ctx context.Context, st store.Store, e Entity) error {
	if err := ValidEntityID(e.ID); err != nil {
		return err
	}
	if strings.TrimSpace(e.Name) == "" {
		return errors.New("an entity needs a name (--name \"Comune di ...\")")
	}
	if e.Kind != "" && !contains(EntityKinds, e.Kind) {
		return fmt.Errorf("entity kind %q is not one of %s", e.Kind, strings.Join(EntityKinds, ", "))
	}
	if e.Province != "" && !regexp.MustCompile(`^[A-Z]{2}$`).MatchString(e.Province) {
		return fmt.Errorf("province %q must be the two-letter code, e.g. FI", e.Province)
	}
	if e.Created == "" {
		e.Created = time.Now().UTC().Format(time.RFC3339)
	}
	src, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = st.Create(ctx, store.TenantScope(e.ID), store.Entities, store.Doc{ID: e.ID, Tenant: e.ID, Source: src}, store.WriteOptions{Refresh: store.RefreshWait})
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("entity %q already exists", e.ID)
	}
	return err
}

// GetEntity reads an entity; the error wraps store.ErrNotFound when absent.
func GetEntity(ctx context.Context, st store.Store, id string) (Entity, error) {
	if ValidEntityID(id) != nil {
		return Entity{}, fmt.Errorf("entity %q: %w", id, store.ErrNotFound)
	}
	d, err := st.Get(ctx, store.RegionalScope(), store.Entities, id)
	if err != nil {
		return Entity{}, fmt.Errorf("entity %q: %w", id, err)
	}
	var e Entity
	if err := json.Unmarshal(d.Source, &e); err != nil {
		return Entity{}, fmt.Errorf("entity %q: %w", id, err)
	}
	e.ID = d.ID
	return e, nil
}

// ListEntities returns every entity, sorted by id.
func ListEntities(ctx context.Context, st store.Store) ([]Entity, error) {
	// The entities collection also holds entities' assets (kind "asset",
	// collector/internal/enrich).
	var out []Entity
	err := st.Scan(ctx, store.RegionalScope(), store.Entities, store.ScanRequest{Query: `NOT kind:"asset"`}, func(d store.Doc) error {
		if ValidEntityID(d.ID) != nil {
			return nil //nolint:nilerr // not an entity document (the collection also holds others): skipped
		}
		var e Entity
		if err := json.Unmarshal(d.Source, &e); err != nil {
			return fmt.Errorf("entity %q: %w", d.ID, err)
		}
		e.ID = d.ID
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// TokenKind is the rules_state kind of enrolment tokens.
const TokenKind = "enrol-token" //nolint:gosec // G101: a document kind, not a credential

func tokenDocID(id string) string { return TokenKind + ":" + id }

// TokenRecord is an enrolment token as stored: only the hash of its secret.
type TokenRecord struct {
	Kind       string    `json:"kind"`
	ID         string    `json:"token.id"`
	Entity     string    `json:"entity.id"`
	SecretHash string    `json:"secret_sha256"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	Expires    time.Time `json:"expires"`
	MaxUses    int       `json:"uses.max"`
	Uses       int       `json:"uses.count"`
	Revoked    bool      `json:"revoked,omitempty"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
}

// State is a person-readable summary: active, expired, used up, revoked.
func (t TokenRecord) State(now time.Time) string {
	switch {
	case t.Revoked:
		return "revoked"
	case t.Uses >= t.MaxUses:
		return "used up"
	case !now.Before(t.Expires):
		return "expired"
	}
	return "active"
}

// TokenSpec asks for a new token.
type TokenSpec struct {
	Entity string
	TTL    time.Duration
	Uses   int
}

// CreateToken makes a token for an existing entity, stores the hash of its
// secret and returns the token string (shown once) and its record.
func CreateToken(ctx context.Context, st store.Store, caPEM []byte, spec TokenSpec) (string, TokenRecord, error) {
	if _, err := GetEntity(ctx, st, spec.Entity); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", TokenRecord{}, fmt.Errorf("entity %q is unknown: add it first with `csirt admin entity add %s --name ...`", spec.Entity, spec.Entity)
		}
		return "", TokenRecord{}, err
	}
	if spec.TTL <= 0 || spec.TTL > 365*24*time.Hour {
		return "", TokenRecord{}, fmt.Errorf("token lifetime %s must be between 1s and 365 days", spec.TTL)
	}
	if spec.Uses < 1 || spec.Uses > 100000 {
		return "", TokenRecord{}, fmt.Errorf("uses %d must be between 1 and 100000", spec.Uses)
	}
	pin, err := caPin(caPEM)
	if err != nil {
		return "", TokenRecord{}, err
	}
	tok, err := enroll.NewToken(pin)
	if err != nil {
		return "", TokenRecord{}, err
	}
	now := time.Now().UTC()
	rec := TokenRecord{Kind: TokenKind, ID: tok.ID, Entity: spec.Entity, SecretHash: tok.SecretHash(),
		Created: now, Updated: now, Expires: now.Add(spec.TTL), MaxUses: spec.Uses}
	src, err := json.Marshal(rec)
	if err != nil {
		return "", TokenRecord{}, err
	}
	if _, err := st.Create(ctx, store.RegionalScope(), store.RulesState, store.Doc{ID: tokenDocID(tok.ID), Tenant: store.RegionalTenant, Source: src}, store.WriteOptions{Refresh: store.RefreshWait}); err != nil {
		return "", TokenRecord{}, fmt.Errorf("storing the token: %w", err)
	}
	return tok.String(), rec, nil
}

func caPin(caPEM []byte) ([32]byte, error) {
	blk, _ := pem.Decode(caPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return [32]byte{}, errors.New("the CA bundle holds no PEM certificate")
	}
	if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
		return [32]byte{}, fmt.Errorf("the CA certificate: %w", err)
	}
	return pinBytes(blk.Bytes), nil
}

// ListTokens returns the enrolment tokens, newest first; with entity not
// empty only that entity's.
func ListTokens(ctx context.Context, st store.Store, entity string) ([]TokenRecord, error) {
	var out []TokenRecord
	err := st.Scan(ctx, store.RegionalScope(), store.RulesState, store.ScanRequest{Query: `kind:"` + TokenKind + `"`}, func(d store.Doc) error {
		var t TokenRecord
		if err := json.Unmarshal(d.Source, &t); err != nil {
			return fmt.Errorf("token %q: %w", d.ID, err)
		}
		if entity == "" || t.Entity == entity {
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// RevokeToken marks a token revoked; further enrolments with it are refused.
func RevokeToken(ctx context.Context, st store.Store, id string) (TokenRecord, error) {
	return updateToken(ctx, st, id, func(t *TokenRecord) error {
		if t.Revoked {
			return fmt.Errorf("token %s is already revoked", id)
		}
		t.Revoked, t.RevokedAt = true, time.Now().UTC()
		return nil
	})
}

// updateToken applies f to the token under optimistic concurrency,
// retrying on conflicts.
func updateToken(ctx context.Context, st store.Store, id string, f func(*TokenRecord) error) (TokenRecord, error) {
	if !enroll.ValidTokenID(id) {
		return TokenRecord{}, fmt.Errorf("%q is not a token id (10 characters of a-z 2-7, the second part of the token; see `csirt admin token list`)", id)
	}
	for {
		d, err := st.Get(ctx, store.RegionalScope(), store.RulesState, tokenDocID(id))
		if errors.Is(err, store.ErrNotFound) {
			return TokenRecord{}, fmt.Errorf("%w: no token with id %s", enroll.ErrTokenUnknown, id)
		}
		if err != nil {
			return TokenRecord{}, err
		}
		var t TokenRecord
		if err := json.Unmarshal(d.Source, &t); err != nil {
			return TokenRecord{}, fmt.Errorf("token %s: %w", id, err)
		}
		if err := f(&t); err != nil {
			return t, err
		}
		t.Updated = time.Now().UTC()
		src, err := json.Marshal(t)
		if err != nil {
			return TokenRecord{}, err
		}
		d.Source = src
		_, err = st.Update(ctx, store.RegionalScope(), store.RulesState, d, store.WriteOptions{})
		if errors.Is(err, store.ErrConflict) {
			if ctx.Err() != nil {
				return TokenRecord{}, ctx.Err()
			}
			continue
		}
		if err != nil {
			return TokenRecord{}, err
		}
		return t, nil
	}
}

// refusal is a client error with its code and a message for the
// technician; it never holds secrets.
type refusal struct {
	status int
	code   string
	msg    string
}

func (r *refusal) Error() string { return r.msg }

// useToken checks a presented token and counts one use. The use is
// counted under optimistic concurrency, so concurrent enrolments never
// exceed the token's uses.
// entityOK is called before the use is counted; its error is returned.
func useToken(ctx context.Context, st store.Store, tok enroll.Token, now time.Time, entityOK func(entity string) error) (TokenRecord, error) {
	unknown := &refusal{403, enroll.CodeTokenUnknown, "this enrolment token is not known to the centre: check that it was copied whole, or ask the CSIRT for a new one"}
	rec, err := updateToken(ctx, st, tok.ID, func(t *TokenRecord) error {
		if !tok.SecretMatches(t.SecretHash) {
			return unknown
		}
		switch {
		case t.Revoked:
			return &refusal{403, enroll.CodeTokenRevoked, fmt.Sprintf("this enrolment token (id %s) was revoked on %s: ask the CSIRT for a new one", t.ID, t.RevokedAt.Format(time.RFC3339))}
		case !now.Before(t.Expires):
			return &refusal{403, enroll.CodeTokenExpired, fmt.Sprintf("this enrolment token (id %s) expired on %s: ask the CSIRT for a new one", t.ID, t.Expires.Format(time.RFC3339))}
		case t.Uses >= t.MaxUses:
			return &refusal{403, enroll.CodeTokenUsedUp, fmt.Sprintf("this enrolment token (id %s) has been used up (%d of %d uses): ask the CSIRT for a new one", t.ID, t.Uses, t.MaxUses)}
		}
		if err := entityOK(t.Entity); err != nil {
			return err
		}
		t.Uses++
		return nil
	})
	if errors.Is(err, enroll.ErrTokenUnknown) {
		return TokenRecord{}, unknown
	}
	return rec, err
}

// AgentRecord is the document of an enrolled agent in the agents
// collection: the collector's verify.AgentDoc plus enrolment facts.
type AgentRecord struct {
	verify.AgentDoc
	Kind         string    `json:"kind"` // "agent"
	Enrolled     time.Time `json:"enrolled"`
	LastSeen     time.Time `json:"last_seen,omitzero"`
	Address      string    `json:"address,omitempty"`
	Version      string    `json:"version,omitempty"`
	OS           string    `json:"os,omitempty"`
	CertSerial   string    `json:"cert.serial,omitempty"`
	CertNotAfter time.Time `json:"cert.not_after,omitzero"`
	TokenID      string    `json:"enrol.token_id,omitempty"`
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
}

// IsRevoked reports whether the agent was revoked.
func (a AgentRecord) IsRevoked() bool {
	return a.Revoked || strings.EqualFold(a.Status, "revoked")
}

// GetAgent reads an agent document with its version.
func GetAgent(ctx context.Context, st store.Store, id string) (AgentRecord, store.Doc, error) {
	if err := store.ValidID(id); err != nil {
		return AgentRecord{}, store.Doc{}, fmt.Errorf("agent %q: %w", id, store.ErrNotFound)
	}
	d, err := st.Get(ctx, store.RegionalScope(), store.Agents, id)
	if err != nil {
		return AgentRecord{}, store.Doc{}, fmt.Errorf("agent %q: %w", id, err)
	}
	var a AgentRecord
	if err := json.Unmarshal(d.Source, &a); err != nil {
		return AgentRecord{}, store.Doc{}, fmt.Errorf("agent %q: %w", id, err)
	}
	if a.AgentID == "" {
		a.AgentID = d.ID
	}
	if a.EntityID == "" {
		a.EntityID = d.Tenant
	}
	return a, d, nil
}

// ListAgents returns the enrolled agents (kind "agent"), by entity then
// id; with entity not empty only that entity's.
func ListAgents(ctx context.Context, st store.Store, entity string) ([]AgentRecord, error) {
	scope := store.RegionalScope()
	if entity != "" {
		scope = store.TenantScope(entity)
	}
	var out []AgentRecord
	err := st.Scan(ctx, scope, store.Agents, store.ScanRequest{Query: "kind:agent"}, func(d store.Doc) error {
		var a AgentRecord
		if err := json.Unmarshal(d.Source, &a); err != nil {
			return fmt.Errorf("agent %q: %w", d.ID, err)
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].EntityID != out[j].EntityID {
			return out[i].EntityID < out[j].EntityID
		}
		return out[i].AgentID < out[j].AgentID
	})
	return out, nil
}

// RevokeAgent marks an agent revoked: the collector rejects its batches
// and the intake refuses it from the next request on.
func RevokeAgent(ctx context.Context, st store.Store, id string) (AgentRecord, error) {
	var out AgentRecord
	err := updateAgent(ctx, st, id, func(a AgentRecord) (map[string]any, error) {
		if a.IsRevoked() {
			return nil, fmt.Errorf("agent %q is already revoked", id)
		}
		now := time.Now().UTC()
		a.Revoked, a.Status, a.RevokedAt = true, "revoked", now
		out = a
		return map[string]any{"revoked": true, "status": "revoked", "revoked_at": now}, nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return AgentRecord{}, fmt.Errorf("no agent %q (see `csirt admin agent list`)", id)
	}
	return out, err
}

// updateAgent sets the fields f returns on an agent's document under
// optimistic concurrency, keeping every other field (the collector adds
// its own, such as the last heartbeat).
func updateAgent(ctx context.Context, st store.Store, id string, f func(AgentRecord) (map[string]any, error)) error {
	for attempt := 0; ; attempt++ {
		a, d, err := GetAgent(ctx, st, id)
		if err != nil {
			return err
		}
		set, err := f(a)
		if err != nil {
			return err
		}
		dec := json.NewDecoder(bytes.NewReader(d.Source))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil || m == nil {
			return fmt.Errorf("agent %q: its document is not a JSON object", id)
		}
		for k, v := range set {
			m[k] = v
		}
		if d.Source, err = json.Marshal(m); err != nil {
			return err
		}
		_, err = st.Update(ctx, store.TenantScope(d.Tenant), store.Agents, d, store.WriteOptions{Refresh: store.RefreshWait})
		if !errors.Is(err, store.ErrConflict) || attempt >= 20 || ctx.Err() != nil {
			return err
		}
	}
}

// Policy documents: one per entity, in rules_state under the entity's
// tenant.
const policyKind = "agent-policy"

func policyDocID(entity string) string { return policyKind + ":" + entity }

type policyRecord struct {
	Kind    string        `json:"kind"`
	Updated time.Time     `json:"updated"`
	Policy  policy.Policy `json:"policy"`
}

// SetPolicy stores an entity's agent policy (normalised and validated).
func SetPolicy(ctx context.Context, st store.Store, entity string, p policy.Policy) (policy.Policy, error) {
	if _, err := GetEntity(ctx, st, entity); err != nil {
		return policy.Policy{}, err
	}
	p.Normalize()
	if err := p.Validate(); err != nil {
		return policy.Policy{}, fmt.Errorf("invalid policy: %w", err)
	}
	src, err := json.Marshal(policyRecord{Kind: policyKind, Updated: time.Now().UTC(), Policy: p})
	if err != nil {
		return policy.Policy{}, err
	}
	_, err = st.Put(ctx, store.TenantScope(entity), store.RulesState, store.Doc{ID: policyDocID(entity), Tenant: entity, Source: src}, store.WriteOptions{})
	return p, err
}

// EntityPolicy returns the entity's policy, or policy.Default() when none
// was set.
func EntityPolicy(ctx context.Context, st store.Store, entity string) (policy.Policy, error) {
	d, err := st.Get(ctx, store.TenantScope(entity), store.RulesState, policyDocID(entity))
	if errors.Is(err, store.ErrNotFound) {
		return policy.Default(), nil
	}
	if err != nil {
		return policy.Policy{}, err
	}
	var r policyRecord
	if err := json.Unmarshal(d.Source, &r); err != nil {
		return policy.Policy{}, fmt.Errorf("policy of %q: %w", entity, err)
	}
	r.Policy.Normalize()
	return r.Policy, nil
}

// ecdsaAlgorithm is the AgentDoc algorithm of enrolled agents.
var ecdsaAlgorithm = envelope.ECDSAP256.String()

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
