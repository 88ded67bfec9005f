package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
)

// StreamKey names one sequence: sequence numbers are per agent and stream.
type StreamKey struct {
	Agent  string
	Stream string
}

// SeqState is the sequence high-water mark of one agent stream: the
// highest sequence number accepted, and where (Kafka partition and
// offset of csirt.raw.v1) the batch that reached it was read.
type SeqState struct {
	Key       StreamKey
	Entity    string // the agent's entity: the tenant of the stored state
	HighWater uint64
	// Partition and Offset of the last accepted batch; HasPosition is
	// false when the batch came from elsewhere (HTTPS intake, tests).
	Partition   int
	Offset      int64
	HasPosition bool
}

// SeqStore keeps high-water marks across restarts.
//
// Load returns the state of a stream, ok false when none was saved. Save
// writes states durably (it returns after they would survive a crash);
// the caller saves only after the outputs of the batches that advanced
// them are durable, so that a crash never leaves a mark above data that
// was lost. Implementations are safe for concurrent use.
type SeqStore interface {
	Load(ctx context.Context, k StreamKey) (st SeqState, ok bool, err error)
	Save(ctx context.Context, states []SeqState) error
}

// SeqRuleID marks sequence-state documents in the rules_state collection.
const SeqRuleID = "csirt.collector.sequence"

// StoreSeqs keeps high-water marks in the store's rules_state collection:
// one document per agent stream, id "collector.seq." followed by a hash of
// agent id and stream id (stream ids are paths, not valid document ids),
// tenant the agent's entity, rule.id SeqRuleID. The collection was chosen
// over agents so that agent listings hold only agents; it is the place for
// processing state that must survive a restart.
type StoreSeqs struct {
	Store store.Store
	Now   func() time.Time // the documents' "updated" time; default time.Now
}

var _ SeqStore = StoreSeqs{}

type seqDoc struct {
	Updated     string `json:"updated"`
	RuleID      string `json:"rule.id"`
	Partition   string `json:"partition"` // the agent id: rules_state's partition key
	Org         string `json:"organization.id"`
	Agent       string `json:"agent.id"`
	Stream      string `json:"stream"`
	HighWater   uint64 `json:"high_water"`
	KPartition  int    `json:"kafka.partition"`
	KOffset     int64  `json:"kafka.offset"`
	HasPosition bool   `json:"kafka.known"`
}

// SeqDocID is the document id of a stream's state.
func SeqDocID(k StreamKey) string {
	h := sha256.New()
	h.Write([]byte(k.Agent))
	h.Write([]byte{0})
	h.Write([]byte(k.Stream))
	return "collector.seq." + hex.EncodeToString(h.Sum(nil)[:20])
}

// Load reads the state document in the regional scope.
func (s StoreSeqs) Load(ctx context.Context, k StreamKey) (SeqState, bool, error) {
	doc, err := s.Store.Get(ctx, store.RegionalScope(), store.RulesState, SeqDocID(k))
	if errors.Is(err, store.ErrNotFound) {
		return SeqState{}, false, nil
	}
	if err != nil {
		return SeqState{}, false, fmt.Errorf("loading sequence state of agent %q stream %q: %w", k.Agent, k.Stream, err)
	}
	var d seqDoc
	if err := json.Unmarshal(doc.Source, &d); err != nil {
		return SeqState{}, false, fmt.Errorf("decoding sequence state of agent %q stream %q: %w", k.Agent, k.Stream, err)
	}
	if d.Agent != k.Agent || d.Stream != k.Stream {
		return SeqState{}, false, fmt.Errorf("sequence state %s belongs to agent %q stream %q", doc.ID, d.Agent, d.Stream)
	}
	return SeqState{Key: k, Entity: doc.Tenant, HighWater: d.HighWater, Partition: d.KPartition,
		Offset: d.KOffset, HasPosition: d.HasPosition}, true, nil
}

// Save puts one document per state.
func (s StoreSeqs) Save(ctx context.Context, states []SeqState) error {
	clock := s.Now
	if clock == nil {
		clock = time.Now
	}
	now := clock().UTC().Format(time.RFC3339Nano)
	for _, st := range states {
		src, err := json.Marshal(seqDoc{Updated: now, RuleID: SeqRuleID, Partition: st.Key.Agent, Org: st.Entity,
			Agent: st.Key.Agent, Stream: st.Key.Stream, HighWater: st.HighWater,
			KPartition: st.Partition, KOffset: st.Offset, HasPosition: st.HasPosition})
		if err != nil {
			return fmt.Errorf("encoding sequence state of agent %q: %w", st.Key.Agent, err)
		}
		_, err = s.Store.Put(ctx, store.TenantScope(st.Entity), store.RulesState,
			store.Doc{ID: SeqDocID(st.Key), Tenant: st.Entity, Source: src}, store.WriteOptions{})
		if err != nil {
			return fmt.Errorf("saving sequence state of agent %q stream %q: %w", st.Key.Agent, st.Key.Stream, err)
		}
	}
	return nil
}

// MemorySeqs is an in-memory SeqStore (tests; nothing survives the process).
type MemorySeqs struct {
	mu sync.Mutex
	m  map[StreamKey]SeqState
}

var _ SeqStore = (*MemorySeqs)(nil)

// NewMemorySeqs returns an empty MemorySeqs.
func NewMemorySeqs() *MemorySeqs { return &MemorySeqs{m: map[StreamKey]SeqState{}} }

// Load returns the saved state.
func (m *MemorySeqs) Load(_ context.Context, k StreamKey) (SeqState, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.m[k]
	return st, ok, nil
}

// Save records the states.
func (m *MemorySeqs) Save(_ context.Context, states []SeqState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range states {
		m.m[st.Key] = st
	}
	return nil
}
