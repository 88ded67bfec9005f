// Package verify checks the signed, sequenced batches agents send
// (DESIGN.md, "Agent batch envelope"): known and not revoked agent, valid
// signature with the agent's enrolled key, envelope entity equal to the
// agent's entity, supported schema version, sequence not replayed. It also
// detects gaps: a batch that starts above the stream's high-water mark + 1
// reveals records lost between agent and centre.
//
// Sequence state (per agent and stream: the highest sequence accepted) is
// kept in memory and advanced by Verify; Save writes the marks changed
// since the last Save to a SeqStore. The caller saves only after the
// outputs of the verified batches are durable and before committing its
// input, so that after a restart the loaded marks never claim data that was
// lost. Batches redelivered after a crash between Save and the input commit
// are recognised by their Kafka position (Position) and reported as
// Redelivered rather than as replays; this relies on an agent's batches
// staying in one partition (csirt.raw.v1 is keyed by agent id), so adding
// partitions to the topic during such a crash window can turn a
// redelivery into a reported replay.
//
// A stream with no saved mark (new agent, new stream) is accepted from
// whatever sequence number it starts at: no gap can be known before the
// first batch.
package verify

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/csirt-toscana/platform/internal/envelope"
)

// Reason says why a batch was rejected. The values are stable: they
// appear in dead-letter headers and findings.
type Reason string

// Rejection reasons.
const (
	ReasonMalformed          Reason = "malformed"           // the bytes are not an envelope
	ReasonUnsupportedVersion Reason = "unsupported-version" // wire format or schema major version unknown
	ReasonUnknownAgent       Reason = "unknown-agent"
	ReasonRevokedAgent       Reason = "revoked-agent"
	ReasonBadSignature       Reason = "bad-signature"   // wrong key, algorithm or key id, or tampered bytes
	ReasonEntityMismatch     Reason = "entity-mismatch" // envelope entity is not the agent's entity
	ReasonReplay             Reason = "replay"          // every sequence number is at or below the high-water mark
)

// Rejection is the error Verify returns for a batch that must not be
// accepted. The claimed fields come from the envelope and are not
// trustworthy unless Reason is ReasonEntityMismatch or ReasonReplay (the
// signature was valid then).
type Rejection struct {
	Reason Reason
	// AgentID, StreamID, FirstSeq, LastSeq as claimed by the envelope
	// (empty/zero when it could not be decoded).
	AgentID, StreamID string
	FirstSeq, LastSeq uint64
	ClaimedEntity     string
	// Agent is the enrolled agent when it was found (zero otherwise).
	Agent Agent
	Err   error
}

func (r *Rejection) Error() string {
	return fmt.Sprintf("batch rejected (%s): agent %q stream %q seq %d-%d: %v", r.Reason, r.AgentID, r.StreamID, r.FirstSeq, r.LastSeq, r.Err)
}

func (r *Rejection) Unwrap() error { return r.Err }

// Gap is a range of sequence numbers of one agent stream that never
// arrived: From to To, inclusive.
type Gap struct {
	Agent, Entity, Stream string
	From, To              uint64
}

// Position is where a batch was read from csirt.raw.v1.
type Position struct {
	Partition int
	Offset    int64
}

// Result describes an accepted batch.
type Result struct {
	Batch *envelope.Batch
	Agent Agent
	// Skip is the number of leading records already accepted from an
	// earlier batch (an overlapping, duplicate tail): the caller drops
	// Batch.Records[:Skip].
	Skip int
	// Gap is set when the batch starts above the high-water mark + 1.
	Gap *Gap
	// Redelivered: every record was accepted before from this same Kafka
	// position or an earlier one of the same partition (the input was
	// redelivered after a restart); the outputs exist, nothing is to be
	// done and it is not a replay.
	Redelivered bool
}

// Options configure a Verifier.
type Options struct {
	Agents KeyResolver // required
	Seqs   SeqStore    // default: NewMemorySeqs() (state lost on restart)
}

// Verifier checks batches. It is safe for concurrent use, but batches of
// one agent stream must be verified in order (as Kafka delivers them).
type Verifier struct {
	agents KeyResolver
	seqs   SeqStore

	mu    sync.Mutex
	state map[StreamKey]SeqState
	dirty map[StreamKey]bool
}

// New builds a Verifier.
func New(opts Options) (*Verifier, error) {
	if opts.Agents == nil {
		return nil, errors.New("verify: options: agents is required")
	}
	if opts.Seqs == nil {
		opts.Seqs = NewMemorySeqs()
	}
	return &Verifier{agents: opts.Agents, seqs: opts.Seqs, state: map[StreamKey]SeqState{}, dirty: map[StreamKey]bool{}}, nil
}

var errRevoked = errors.New("agent is revoked")

// Verify decodes and checks one encoded batch read at pos (nil when it
// did not come from Kafka). It returns a *Rejection for a batch that must
// go to the dead-letter topic; any other error is a failure to check
// (agent lookup, state load) and the batch should be retried later. The
// records of the result alias data.
func (v *Verifier) Verify(ctx context.Context, data []byte, pos *Position) (Result, error) {
	var (
		ag        Agent
		found     bool
		lookupErr error
	)
	resolve := func(agentID, keyID string) (envelope.Verifier, error) {
		a, err := v.agents.Agent(ctx, agentID)
		if err != nil {
			if !errors.Is(err, ErrUnknownAgent) {
				lookupErr = err
			}
			return nil, err
		}
		ag, found = a, true
		switch {
		case a.Revoked:
			return nil, errRevoked
		case a.KeyID != "" && a.KeyID != keyID:
			return nil, fmt.Errorf("%w: key id %q is not the enrolled key %q", envelope.ErrBadSignature, keyID, a.KeyID)
		case a.Key == nil:
			return nil, fmt.Errorf("%w: agent %q has no key", envelope.ErrBadSignature, agentID)
		}
		return a.Key, nil
	}
	b, err := envelope.Open(data, resolve)
	if err != nil {
		if lookupErr != nil {
			return Result{}, fmt.Errorf("verifying batch: %w", lookupErr)
		}
		rej := &Rejection{Reason: classify(err), Err: err}
		if found {
			rej.Agent = ag
		}
		if claimed, derr := envelope.Decode(data); derr == nil {
			rej.fill(claimed)
		}
		return Result{}, rej
	}
	if b.EntityID != ag.EntityID {
		rej := &Rejection{Reason: ReasonEntityMismatch, Agent: ag,
			Err: fmt.Errorf("envelope says entity %q, agent is enrolled for %q", b.EntityID, ag.EntityID)}
		rej.fill(b)
		return Result{}, rej
	}
	return v.sequence(ctx, b, ag, pos)
}

func (r *Rejection) fill(b *envelope.Batch) {
	r.AgentID, r.StreamID, r.FirstSeq, r.LastSeq, r.ClaimedEntity = b.AgentID, b.StreamID, b.FirstSeq, b.LastSeq(), b.EntityID
}

func classify(err error) Reason {
	switch {
	case errors.Is(err, ErrUnknownAgent):
		return ReasonUnknownAgent
	case errors.Is(err, errRevoked):
		return ReasonRevokedAgent
	case errors.Is(err, envelope.ErrUnsupportedVersion):
		return ReasonUnsupportedVersion
	case errors.Is(err, envelope.ErrBadSignature):
		return ReasonBadSignature
	}
	return ReasonMalformed
}

// sequence applies the high-water mark of the batch's stream.
func (v *Verifier) sequence(ctx context.Context, b *envelope.Batch, ag Agent, pos *Position) (Result, error) {
	k := StreamKey{Agent: b.AgentID, Stream: b.StreamID}
	v.mu.Lock()
	defer v.mu.Unlock()
	st, known := v.state[k]
	if !known {
		loaded, ok, err := v.seqs.Load(ctx, k)
		if err != nil {
			return Result{}, fmt.Errorf("verifying batch: %w", err)
		}
		if ok {
			st, known = loaded, true
			v.state[k] = st
		}
	}
	res := Result{Batch: b, Agent: ag}
	first, last := b.FirstSeq, b.LastSeq()
	if known {
		switch {
		case last <= st.HighWater:
			if pos != nil && st.HasPosition && pos.Partition == st.Partition && pos.Offset <= st.Offset {
				res.Redelivered = true
				return res, nil
			}
			rej := &Rejection{Reason: ReasonReplay, Agent: ag,
				Err: fmt.Errorf("every sequence number is at or below the high-water mark %d", st.HighWater)}
			rej.fill(b)
			return Result{}, rej
		case first <= st.HighWater:
			res.Skip = int(st.HighWater - first + 1) //nolint:gosec // G115: below len(b.Records) since last > HighWater
		case first > st.HighWater+1:
			res.Gap = &Gap{Agent: b.AgentID, Entity: ag.EntityID, Stream: b.StreamID, From: st.HighWater + 1, To: first - 1}
		}
	}
	st = SeqState{Key: k, Entity: ag.EntityID, HighWater: last}
	if pos != nil {
		st.Partition, st.Offset, st.HasPosition = pos.Partition, pos.Offset, true
	}
	v.state[k] = st
	v.dirty[k] = true
	return res, nil
}

// HighWater returns the in-memory high-water mark of a stream (ok false
// when the stream was not seen since the Verifier was built).
func (v *Verifier) HighWater(k StreamKey) (uint64, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st, ok := v.state[k]
	return st.HighWater, ok
}

// Save writes the marks advanced since the last Save. Call it once the
// outputs of every batch verified so far are durable. On error the marks
// stay pending and a later Save retries them.
func (v *Verifier) Save(ctx context.Context) error {
	v.mu.Lock()
	states := make([]SeqState, 0, len(v.dirty))
	for k := range v.dirty {
		states = append(states, v.state[k])
	}
	v.mu.Unlock()
	if len(states) == 0 {
		return nil
	}
	if err := v.seqs.Save(ctx, states); err != nil {
		return fmt.Errorf("saving %d sequence marks: %w", len(states), err)
	}
	v.mu.Lock()
	for _, st := range states {
		if v.state[st.Key] == st {
			delete(v.dirty, st.Key)
		}
	}
	v.mu.Unlock()
	return nil
}
