package loadgen

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
)

// ParseRate reads an event rate: "20000", "20000/s", "20k/s", "1.5k/s",
// "600/m". It must be positive and at most 10 million per second.
func ParseRate(s string) (float64, error) {
	in := strings.TrimSpace(strings.ToLower(s))
	per := 1.0
	if num, unit, ok := strings.Cut(in, "/"); ok {
		switch unit {
		case "s", "sec":
		case "m", "min":
			per = 60
		default:
			return 0, fmt.Errorf("rate %q: unit %q, want /s or /m (e.g. 20000/s)", s, unit)
		}
		in = num
	}
	mult := 1.0
	if n, ok := strings.CutSuffix(in, "k"); ok {
		in, mult = n, 1000
	}
	v, err := strconv.ParseFloat(in, 64)
	if err != nil || v != v {
		return 0, fmt.Errorf("rate %q is not a number of events per second (e.g. 20000/s or 20k/s)", s)
	}
	r := v * mult / per
	if r <= 0 || r > 1e7 {
		return 0, fmt.Errorf("rate %q: want more than 0 and at most 10M events/s", s)
	}
	return r, nil
}

// Options configure Run.
type Options struct {
	Generator *Generator // required
	Sender    bus.Sender // required
	Rate      float64    // events per second; required
	Duration  time.Duration
	// Raw sends signed agent batches to RawTopic instead of events to
	// EventsTopic; Store is then required to register the fake agents.
	Raw         bool
	Store       store.Store
	EventsTopic string // default bus.TopicEvents
	RawTopic    string // default bus.TopicRaw
	// Progress receives one line per second; nil: none.
	Progress io.Writer
	// Tick is how often due events are sent. Default 20 ms.
	Tick time.Duration
}

// Stats is the outcome of Run.
type Stats struct {
	Sent    int64 // events (or records) acknowledged
	Batches int64 // produce calls
	Errors  int64 // failed produce calls
	Elapsed time.Duration
}

// agentKey derives the fake agent's Ed25519 key from its id, so that a
// rerun signs with the key already registered.
func agentKey(agentID string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("csirt-loadgen-agent-key:" + agentID))
	return ed25519.NewKeyFromSeed(seed[:])
}

// RegisterAgents writes one fake agent per entity to the agents
// collection (the collector's verify.AgentDoc fields), so that the
// collector accepts --raw batches.
func RegisterAgents(ctx context.Context, st store.Store, g *Generator) error {
	for _, e := range g.Entities() {
		id := AgentID(e.ID)
		pub := agentKey(id).Public().(ed25519.PublicKey)
		src, err := json.Marshal(map[string]any{
			"agent.id": id, "organization.id": e.ID, "hostname": "loadgen", "status": "active", "kind": "agent",
			"key.algorithm": envelope.Ed25519.String(), "key.public": base64.StdEncoding.EncodeToString(pub),
			"enrolled": time.Now().UTC().Format(time.RFC3339Nano),
		})
		if err != nil {
			return err
		}
		if _, err := st.Put(ctx, store.TenantScope(e.ID), store.Agents, store.Doc{ID: id, Tenant: e.ID, Source: src}, store.WriteOptions{}); err != nil {
			return fmt.Errorf("registering fake agent %s: %w", id, err)
		}
	}
	return nil
}

// Run sends the stream at the rate for the duration (until ctx is done
// when Duration is 0) and prints progress each second.
func Run(ctx context.Context, o Options) (Stats, error) {
	if o.Generator == nil || o.Sender == nil || o.Rate <= 0 {
		return Stats{}, errors.New("loadgen: generator, sender and a positive rate are required")
	}
	if o.Raw && o.Store == nil {
		return Stats{}, errors.New("loadgen: --raw needs the store to register its fake agents")
	}
	if o.EventsTopic == "" {
		o.EventsTopic = bus.TopicEvents
	}
	if o.RawTopic == "" {
		o.RawTopic = bus.TopicRaw
	}
	if o.Tick <= 0 {
		o.Tick = 20 * time.Millisecond
	}
	if o.Raw {
		if err := RegisterAgents(ctx, o.Store, o.Generator); err != nil {
			return Stats{}, err
		}
	}
	// Sequence numbers continue across runs: they start at the clock in
	// microseconds (the collector rejects replays of lower numbers).
	seqs := map[string]uint64{}
	seqBase := uint64(time.Now().UnixMicro())
	var st Stats
	start := time.Now()
	tick := time.NewTicker(o.Tick)
	defer tick.Stop()
	lastReport, lastSent := start, int64(0)
	var due float64
	for {
		select {
		case <-ctx.Done():
			st.Elapsed = time.Since(start)
			return st, nil
		case now := <-tick.C:
			if o.Duration > 0 && now.Sub(start) >= o.Duration {
				st.Elapsed = time.Since(start)
				report(o.Progress, st, now.Sub(lastReport), st.Sent-lastSent, true)
				return st, nil
			}
			due = o.Rate*now.Sub(start).Seconds() - float64(st.Sent)
			n := int(due)
			if n > 0 {
				if n > 50000 {
					n = 50000 // catch up in steps when the brokers fall behind
				}
				msgs, err := build(o, n, now, seqs, seqBase)
				if err == nil {
					err = o.Sender.Produce(ctx, msgs...)
				}
				st.Batches++
				if err != nil {
					if ctx.Err() != nil {
						st.Elapsed = time.Since(start)
						return st, nil
					}
					// Not counted as sent: the next ticks send again (at
					// most 50000 at a time), the generator moves on.
					st.Errors++
				} else {
					st.Sent += int64(n)
				}
			}
			if now.Sub(lastReport) >= time.Second {
				report(o.Progress, st, now.Sub(lastReport), st.Sent-lastSent, false)
				lastReport, lastSent = now, st.Sent
			}
		}
	}
}

func report(w io.Writer, st Stats, d time.Duration, sent int64, final bool) {
	if w == nil {
		return
	}
	rate := 0.0
	if d > 0 {
		rate = float64(sent) / d.Seconds()
	}
	what := "progress"
	if final {
		what = "done"
	}
	fmt.Fprintf(w, "loadgen %s: sent=%d rate=%.0f/s errors=%d\n", what, st.Sent, rate, st.Errors)
}

// build makes n messages: events, or one signed batch per agent stream.
func build(o Options, n int, now time.Time, seqs map[string]uint64, seqBase uint64) ([]bus.Message, error) {
	g := o.Generator
	schema := []bus.Header{{Key: bus.HeaderSchema, Value: []byte(event.SchemaVersion)}}
	if !o.Raw {
		msgs := make([]bus.Message, 0, n)
		for i := 0; i < n; i++ {
			r := g.Next(now)
			v, err := r.Event.MarshalJSON()
			if err != nil {
				return nil, fmt.Errorf("encoding generated event: %w", err)
			}
			msgs = append(msgs, bus.Message{Topic: o.EventsTopic, Key: []byte(r.Entity), Value: v, Headers: schema})
		}
		return msgs, nil
	}
	type sk struct{ agent, stream string }
	batches := map[sk]*envelope.Batch{}
	var order []sk
	for i := 0; i < n; i++ {
		r := g.Next(now)
		k := sk{r.AgentID, r.Stream}
		b, ok := batches[k]
		if !ok {
			id := r.AgentID + "|" + r.Stream
			if seqs[id] == 0 {
				seqs[id] = seqBase
			}
			b = &envelope.Batch{AgentID: r.AgentID, EntityID: r.Entity, StreamID: r.Stream, FirstSeq: seqs[id], Created: now.UTC()}
			batches[k] = b
			order = append(order, k)
		}
		kind := envelope.KindRawLine
		if r.Summary {
			kind = envelope.KindSummary
		}
		b.Records = append(b.Records, envelope.Record{Time: now.UTC(), Kind: kind, Data: r.Raw})
		seqs[r.AgentID+"|"+r.Stream]++
	}
	msgs := make([]bus.Message, 0, len(order))
	for _, k := range order {
		b := batches[k]
		signer, err := envelope.NewEd25519Signer(keyID(k.agent), agentKey(k.agent))
		if err != nil {
			return nil, err
		}
		if err := envelope.Sign(b, signer); err != nil {
			return nil, fmt.Errorf("signing batch of %s: %w", k.agent, err)
		}
		v, err := envelope.Encode(b)
		if err != nil {
			return nil, fmt.Errorf("encoding batch of %s: %w", k.agent, err)
		}
		msgs = append(msgs, bus.Message{Topic: o.RawTopic, Key: []byte(k.agent), Value: v})
	}
	return msgs, nil
}

func keyID(agent string) string {
	pub := agentKey(agent).Public().(ed25519.PublicKey)
	var b [8]byte
	copy(b[:], pub)
	return "loadgen-" + strconv.FormatUint(binary.BigEndian.Uint64(b[:]), 16)
}
