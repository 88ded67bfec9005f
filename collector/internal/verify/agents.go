package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/store"
)

// Errors a KeyResolver returns; Verifier turns them into rejections.
var (
	// ErrUnknownAgent: no enrolled agent has this id.
	ErrUnknownAgent = errors.New("verify: unknown agent")
)

// Agent is what the collector knows of an enrolled agent.
type Agent struct {
	ID       string
	EntityID string // the entity the agent was enrolled for: its tenant
	Hostname string // host.name of its events when a record names none; "" falls back to ID
	// Algorithm is the signature algorithm of Key.
	Algorithm envelope.Algorithm
	// KeyID, when not empty, must equal the key id of every batch.
	KeyID string
	// Key verifies the agent's batches.
	Key     envelope.Verifier
	Revoked bool
}

// KeyResolver finds enrolled agents.
//
// Agent returns the agent with this id, or an error wrapping
// ErrUnknownAgent when there is none. Any other error is a failure to look
// (store unreachable): the caller must not treat the batch as rejected. A
// revoked agent is returned with Revoked set. Implementations are safe for
// concurrent use.
type KeyResolver interface {
	Agent(ctx context.Context, agentID string) (Agent, error)
}

// AgentDoc is the document of an agent in the store's agents collection,
// under the agent id as document id and the entity id as tenant. The
// enrolment code writes it; the collector only reads it.
//
// PublicKey holds, for Ed25519, a PEM "PUBLIC KEY" block (PKIX) or the
// 32-byte raw key in standard base64; for ECDSA P-256 a PEM "PUBLIC KEY"
// block or base64 of the PKIX DER; for HMAC-SHA256 the base64 secret (the
// document is then secret and must be protected like one).
type AgentDoc struct {
	AgentID   string `json:"agent.id"`
	EntityID  string `json:"organization.id"`
	Hostname  string `json:"hostname,omitempty"`
	Status    string `json:"status,omitempty"` // "revoked" revokes too
	Revoked   bool   `json:"revoked,omitempty"`
	Algorithm string `json:"key.algorithm"` // envelope.Algorithm.String(): ed25519, ecdsa-p256-sha256, hmac-sha256
	KeyID     string `json:"key.id,omitempty"`
	PublicKey string `json:"key.public"`
}

// ParseAlgorithm is the inverse of envelope.Algorithm.String.
func ParseAlgorithm(s string) (envelope.Algorithm, error) {
	for _, a := range []envelope.Algorithm{envelope.Ed25519, envelope.ECDSAP256, envelope.HMACSHA256} {
		if a.String() == s {
			return a, nil
		}
	}
	return 0, fmt.Errorf("unknown signature algorithm %q", s)
}

// Agent converts the document, parsing its key.
func (d AgentDoc) Agent() (Agent, error) {
	alg, err := ParseAlgorithm(d.Algorithm)
	if err != nil {
		return Agent{}, fmt.Errorf("agent %q: %w", d.AgentID, err)
	}
	key, err := parseKey(alg, d.PublicKey)
	if err != nil {
		return Agent{}, fmt.Errorf("agent %q: key: %w", d.AgentID, err)
	}
	return Agent{
		ID: d.AgentID, EntityID: d.EntityID, Hostname: d.Hostname, Algorithm: alg, KeyID: d.KeyID,
		Key: key, Revoked: d.Revoked || strings.EqualFold(d.Status, "revoked"),
	}, nil
}

func parseKey(alg envelope.Algorithm, s string) (envelope.Verifier, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if blk, _ := pem.Decode([]byte(s)); blk != nil {
		der = blk.Bytes
	} else {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor base64: %w", err)
		}
		switch {
		case alg == envelope.HMACSHA256:
			return envelope.NewHMACKey("", b)
		case alg == envelope.Ed25519 && len(b) == ed25519.PublicKeySize:
			return envelope.NewEd25519Verifier(ed25519.PublicKey(b))
		}
		der = b
	}
	if alg == envelope.HMACSHA256 {
		return nil, errors.New("an HMAC key must be base64, not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("parsing PKIX public key: %w", err)
	}
	switch pub.(type) {
	case ed25519.PublicKey:
		if alg != envelope.Ed25519 {
			return nil, fmt.Errorf("key is Ed25519, algorithm says %s", alg)
		}
	case *ecdsa.PublicKey:
		if alg != envelope.ECDSAP256 {
			return nil, fmt.Errorf("key is ECDSA, algorithm says %s", alg)
		}
	}
	return envelope.NewVerifier(pub)
}

// StoreAgents resolves agents from the store's agents collection, read in
// the regional scope (the collector serves every entity). It reads the
// store on every call, so a revocation takes effect at the next batch.
type StoreAgents struct {
	Store store.Store
}

var _ KeyResolver = StoreAgents{}

// Agent reads and parses the agent's document. A document that does not
// parse is reported as an unknown agent (its batches cannot be verified).
func (a StoreAgents) Agent(ctx context.Context, agentID string) (Agent, error) {
	if store.ValidID(agentID) != nil {
		return Agent{}, fmt.Errorf("%w: %q is not a valid agent id", ErrUnknownAgent, agentID)
	}
	doc, err := a.Store.Get(ctx, store.RegionalScope(), store.Agents, agentID)
	if errors.Is(err, store.ErrNotFound) {
		return Agent{}, fmt.Errorf("%w: %q", ErrUnknownAgent, agentID)
	}
	if err != nil {
		return Agent{}, fmt.Errorf("reading agent %q: %w", agentID, err)
	}
	var d AgentDoc
	if err := json.Unmarshal(doc.Source, &d); err != nil {
		return Agent{}, fmt.Errorf("%w: agent %q: decoding document: %w", ErrUnknownAgent, agentID, err)
	}
	if d.AgentID == "" {
		d.AgentID = agentID
	}
	if d.EntityID == "" {
		d.EntityID = doc.Tenant
	}
	ag, err := d.Agent()
	if err != nil {
		return Agent{}, fmt.Errorf("%w: %w", ErrUnknownAgent, err)
	}
	return ag, nil
}

// PutAgent writes an agent document (enrolment code and tests).
func PutAgent(ctx context.Context, s store.Store, d AgentDoc) error {
	src, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encoding agent %q: %w", d.AgentID, err)
	}
	_, err = s.Put(ctx, store.TenantScope(d.EntityID), store.Agents,
		store.Doc{ID: d.AgentID, Tenant: d.EntityID, Source: src}, store.WriteOptions{})
	if err != nil {
		return fmt.Errorf("writing agent %q: %w", d.AgentID, err)
	}
	return nil
}

// MemoryAgents is an in-memory KeyResolver for tests and tools.
type MemoryAgents struct {
	mu     sync.RWMutex
	agents map[string]Agent
}

var _ KeyResolver = (*MemoryAgents)(nil)

// NewMemoryAgents returns a resolver holding agents.
func NewMemoryAgents(agents ...Agent) *MemoryAgents {
	m := &MemoryAgents{agents: make(map[string]Agent, len(agents))}
	for _, a := range agents {
		m.agents[a.ID] = a
	}
	return m
}

// Set adds or replaces an agent.
func (m *MemoryAgents) Set(a Agent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.agents[a.ID] = a
}

// Agent returns the agent or ErrUnknownAgent.
func (m *MemoryAgents) Agent(_ context.Context, agentID string) (Agent, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	a, ok := m.agents[agentID]
	if !ok {
		return Agent{}, fmt.Errorf("%w: %q", ErrUnknownAgent, agentID)
	}
	return a, nil
}
