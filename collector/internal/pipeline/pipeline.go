// Package pipeline is the collector's agent path: it consumes signed
// batches from csirt.raw.v1, verifies them (collector/internal/verify),
// parses every record into an ECS event (collector/internal/parse), and
// writes each event to csirt.events.v1 (key: entity id) and to the store's
// events collection (tenant: entity id).
//
// Reliability (DESIGN.md, "Reliability model"): events are produced
// synchronously (acks=all) and added to bulk writers; at a checkpoint,
// every FlushInterval (at most 1 s) or MaxPending messages, the writers
// are flushed (durable), then the sequence marks are saved, and only then
// are the Kafka offsets committed. A crash anywhere before the commit
// redelivers the messages; event ids are deterministic
// (envelope.Batch.EventID: agent, stream, sequence), so the store keeps one
// copy and consumers of csirt.events.v1 can drop duplicates by event.id.
//
// Rejected batches (verify.Rejection) go to the dead-letter topic with the
// reason and raise an integrity finding; a sequence gap raises a coverage
// finding (the batch itself is accepted). Both findings (internal/finding)
// have deterministic ids and are published to csirt.findings.v1 and the
// store's findings collection, both durable before the message's offset
// can be committed.
//
// Every event is passed through the Enricher (collector/internal/enrich)
// after parsing. Batches of stream "agent.heartbeat" are the agents'
// heartbeats: they become events of dataset agent.heartbeat without going
// through the parsers. Any accepted batch counts as the agent's activity
// (AgentActivity), written throttled to the agent's document by a
// goroutine beside the message path, for the silence detector. A record whose event cannot be encoded
// sends the whole message to the dead-letter topic while the events of its
// other records are still written; a parser panic sends the message to the
// dead-letter topic with none of its events. Either way processing goes
// on: a poison message never stalls its partition.
// Errors of the infrastructure (store, Kafka, agent lookup) stop Run
// without committing; the caller restarts it.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/collector/internal/enrich"
	"github.com/csirt-toscana/platform/collector/internal/parse"
	"github.com/csirt-toscana/platform/collector/internal/verify"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
)

// GroupID is the consumer group of the collector on csirt.raw.v1.
const GroupID = "csirt-collector"

// Source is where raw batches come from; *bus.Consumer implements it.
//
// Fetch blocks for the next message or until ctx is done (then it returns
// an error and no message is lost). Commit marks the given messages and
// their predecessors in each partition as done; it is called only after
// their outputs are durable.
type Source interface {
	Fetch(ctx context.Context) (bus.Message, error)
	Commit(ctx context.Context, msgs ...bus.Message) error
}

// DeadLetters takes messages that cannot be processed; *bus.DLQ
// implements it. Send returns after the dead letter is durable.
type DeadLetters interface {
	Send(ctx context.Context, orig bus.Message, cause error) error
}

var (
	_ Source      = (*bus.Consumer)(nil)
	_ DeadLetters = (*bus.DLQ)(nil)
)

// Options configure a Pipeline. Source, Sender, DLQ, Store and Verifier
// are required.
type Options struct {
	Source   Source
	Sender   bus.Sender // produces to EventsTopic
	DLQ      DeadLetters
	Store    store.Store
	Verifier *verify.Verifier
	// Parser parses records; default parse.New with Now.
	Parser *parse.Dispatcher
	// EventsTopic; default bus.TopicEvents.
	EventsTopic string
	// FindingsTopic; default bus.TopicFindings.
	FindingsTopic string
	// Enricher runs on every event after parsing; nil: none.
	Enricher enrich.Enricher
	// Activity records agents' activity and heartbeats; nil: not recorded.
	Activity *AgentActivity
	// FlushInterval is the longest time between fetching a message and
	// committing it. Default and maximum 1 s.
	FlushInterval time.Duration
	// MaxPending is the most messages between checkpoints. Default 256.
	MaxPending int
	// DrainTimeout bounds the final checkpoint when Run's context is
	// cancelled. Default 10 s.
	DrainTimeout time.Duration
	// Now gives event.ingested and finding times. Default time.Now.
	Now    func() time.Time
	Logger logrus.FieldLogger // default: discard
}

func (o *Options) fill() error {
	switch {
	case o.Source == nil:
		return errors.New("pipeline options: source is required")
	case o.Sender == nil:
		return errors.New("pipeline options: sender is required")
	case o.DLQ == nil:
		return errors.New("pipeline options: dlq is required")
	case o.Store == nil:
		return errors.New("pipeline options: store is required")
	case o.Verifier == nil:
		return errors.New("pipeline options: verifier is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Parser == nil {
		o.Parser = parse.New(parse.Options{Now: o.Now})
	}
	if o.EventsTopic == "" {
		o.EventsTopic = bus.TopicEvents
	}
	if o.FindingsTopic == "" {
		o.FindingsTopic = bus.TopicFindings
	}
	if o.FlushInterval <= 0 || o.FlushInterval > time.Second {
		o.FlushInterval = time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 256
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		o.Logger = l
	}
	return nil
}

// Stats count what a Pipeline did since it was built.
type Stats struct {
	Batches     int64 // accepted batches
	Records     int64 // records of accepted batches, duplicates excluded
	Events      int64 // events written
	Rejected    int64 // batches sent to the dead-letter topic as rejected
	Poison      int64 // messages dead-lettered for an encoding error or a parser panic
	Gaps        int64 // coverage findings raised
	Redelivered int64 // batches skipped as already processed
	Duplicates  int64 // records dropped as an already accepted tail
	Findings    int64 // findings published
	Heartbeats  int64 // heartbeat records accepted
	// EnrichErrors counts events the Enricher could not fully enrich
	// (they were kept as they were).
	EnrichErrors int64
}

// Pipeline runs the agent path. It is not safe for concurrent use: one
// goroutine calls Run; Stats may be read after Run returned.
type Pipeline struct {
	o       Options
	log     logrus.FieldLogger
	writers map[string]store.BulkWriter // by entity
	pending []bus.Message
	since   time.Time // when the oldest pending message was fetched
	stats   Stats
	// parse is parseBatch with the options' dispatcher (replaced by tests).
	parse    func(res verify.Result, ingested time.Time) ([]encoded, error)
	findings *finding.Publisher
	// lastEnrichLog rate-limits the enrichment warnings.
	lastEnrichLog time.Time
}

// New builds a Pipeline.
func New(opts Options) (*Pipeline, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	p := &Pipeline{o: opts, log: opts.Logger.WithField("component", "collector.pipeline"),
		writers: map[string]store.BulkWriter{}}
	p.findings = &finding.Publisher{Sender: opts.Sender, Store: opts.Store, Topic: opts.FindingsTopic}
	p.parse = func(res verify.Result, ingested time.Time) ([]encoded, error) {
		return parseBatch(opts.Parser, p.enrich, res, ingested)
	}
	return p, nil
}

// Stats returns the counters.
func (p *Pipeline) Stats() Stats { return p.stats }

// Run processes messages until ctx is cancelled or an infrastructure error
// occurs. On cancellation it drains: the messages already handled are
// flushed and committed (within DrainTimeout) and Run returns nil. On any
// other error it returns without committing what is pending. Run closes
// the store writers it opened before returning; the caller closes the
// Source.
func (p *Pipeline) Run(ctx context.Context) (err error) {
	defer func() {
		if cerr := p.closeWriters(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if p.o.Activity != nil {
		actx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); p.activityLoop(actx) }()
		defer func() { stop(); <-done }()
	}
	for {
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if len(p.pending) > 0 {
			fctx, cancel = context.WithDeadline(ctx, p.since.Add(p.o.FlushInterval))
		}
		msg, ferr := p.o.Source.Fetch(fctx)
		timedOut := fctx.Err() != nil && ctx.Err() == nil
		cancel()
		switch {
		case ctx.Err() != nil:
			return p.drain(ctx)
		case ferr != nil && timedOut:
			if err := p.checkpoint(ctx); err != nil {
				if ctx.Err() != nil {
					return p.drain(ctx)
				}
				return err
			}
			continue
		case ferr != nil:
			return fmt.Errorf("collector pipeline: %w", ferr)
		}
		if len(p.pending) == 0 {
			p.since = time.Now()
		}
		if err := p.handleOne(ctx, msg); err != nil {
			return fmt.Errorf("collector pipeline: message %s/%d@%d: %w", msg.Topic, msg.Partition, msg.Offset, err)
		}
		p.pending = append(p.pending, msg)
		if len(p.pending) >= p.o.MaxPending || time.Since(p.since) >= p.o.FlushInterval {
			if err := p.checkpoint(ctx); err != nil {
				if ctx.Err() != nil {
					return p.drain(ctx)
				}
				return err
			}
		}
	}
}

// drain finishes on cancellation: what was handled is made durable and
// committed within DrainTimeout, also when the cancellation interrupted a
// checkpoint (its writes are idempotent and the store writers keep what
// they had not sent).
func (p *Pipeline) drain(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.o.DrainTimeout)
	defer cancel()
	err := p.checkpoint(dctx)
	p.flushActivity(dctx, true)
	return err
}

// checkpoint makes everything handled durable, then commits it.
func (p *Pipeline) checkpoint(ctx context.Context) error {
	if len(p.pending) == 0 {
		return nil
	}
	var errs []error
	for entity, w := range p.writers {
		if err := w.Flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flushing events of entity %s: %w", entity, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("collector pipeline: %w", err)
	}
	if err := p.o.Verifier.Save(ctx); err != nil {
		return fmt.Errorf("collector pipeline: %w", err)
	}
	if err := p.o.Source.Commit(ctx, p.pending...); err != nil {
		return fmt.Errorf("collector pipeline: %w", err)
	}
	p.pending = p.pending[:0]
	return nil
}

// flushActivity writes the agents' activity that is due (all of it when
// force is set). It is best effort: a failure is logged and retried later.
func (p *Pipeline) flushActivity(ctx context.Context, force bool) {
	if p.o.Activity == nil {
		return
	}
	if err := p.o.Activity.Flush(ctx, p.o.Now(), force); err != nil {
		p.log.WithError(err).Warn("recording agents' activity failed; retrying later")
	}
}

// activityLoop writes due activity every quarter of the throttle interval,
// beside the message path (whose checkpoints stay free of agent writes),
// so that a stored last_seen is never much older than the throttle.
func (p *Pipeline) activityLoop(ctx context.Context) {
	every := p.o.Activity.interval() / 4
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.flushActivity(ctx, false)
		}
	}
}

func (p *Pipeline) closeWriters(ctx context.Context) error {
	var errs []error
	for entity, w := range p.writers {
		if err := w.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("closing event writer of entity %s: %w", entity, err))
		}
		delete(p.writers, entity)
	}
	return errors.Join(errs...)
}

// handleOne handles a fetched message to the end even when ctx is
// cancelled meanwhile (within DrainTimeout more): a shutdown then drains
// it with the others instead of failing half-way through its outputs.
func (p *Pipeline) handleOne(ctx context.Context, msg bus.Message) error {
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(p.o.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			hcancel()
		case <-hctx.Done():
		}
	})
	defer stop()
	return p.handle(hctx, msg)
}

// handle processes one message; an error is an infrastructure failure.
func (p *Pipeline) handle(ctx context.Context, msg bus.Message) error {
	res, err := p.o.Verifier.Verify(ctx, msg.Value, &verify.Position{Partition: msg.Partition, Offset: msg.Offset})
	var rej *verify.Rejection
	switch {
	case errors.As(err, &rej):
		return p.reject(ctx, msg, rej)
	case err != nil:
		return err
	case res.Redelivered:
		p.stats.Redelivered++
		return nil
	}
	if res.Gap != nil {
		if err := p.publish(ctx, coverageFinding(res.Gap, res.Agent, p.o.Now())); err != nil {
			return err
		}
		p.stats.Gaps++
	}
	return p.accept(ctx, msg, res)
}

func (p *Pipeline) reject(ctx context.Context, msg bus.Message, rej *verify.Rejection) error {
	if err := p.o.DLQ.Send(ctx, msg, rej); err != nil {
		return err
	}
	p.stats.Rejected++
	p.log.WithFields(logrus.Fields{"reason": rej.Reason, "agent": rej.AgentID, "partition": msg.Partition, "offset": msg.Offset}).
		Warn("agent batch rejected")
	return p.publish(ctx, integrityFinding(msg, rej, p.o.Now()))
}

// publish makes a finding durable on csirt.findings.v1 and in the store.
func (p *Pipeline) publish(ctx context.Context, f *finding.Finding) error {
	if err := p.findings.Publish(ctx, f); err != nil {
		return err
	}
	p.stats.Findings++
	return nil
}

// enrich runs the Enricher on one event; a failure is counted and logged
// (at most once a minute) and the event is kept.
func (p *Pipeline) enrich(ev event.Event) {
	if p.o.Enricher == nil {
		return
	}
	if err := p.o.Enricher.Enrich(context.Background(), ev); err != nil {
		p.stats.EnrichErrors++
		if now := time.Now(); now.Sub(p.lastEnrichLog) >= time.Minute {
			p.lastEnrichLog = now
			p.log.WithError(err).Warn("enrichment failed; events are kept without the missing context")
		}
	}
}

// accept parses, produces and archives the batch's new records.
func (p *Pipeline) accept(ctx context.Context, msg bus.Message, res verify.Result) error {
	evs, poison := p.events(res)
	b := res.Batch
	out := make([]bus.Message, 0, len(evs))
	schema := []bus.Header{{Key: bus.HeaderSchema, Value: []byte(event.SchemaVersion)}}
	for _, e := range evs {
		out = append(out, bus.Message{Topic: p.o.EventsTopic, Key: []byte(b.EntityID), Value: e.json, Headers: schema})
	}
	if len(out) > 0 {
		if err := p.o.Sender.Produce(ctx, out...); err != nil {
			return fmt.Errorf("producing %d events: %w", len(out), err)
		}
		w, err := p.writer(b.EntityID)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if err := w.Add(ctx, store.Doc{ID: e.id, Tenant: b.EntityID, Source: e.json}); err != nil {
				return fmt.Errorf("archiving event %s: %w", e.id, err)
			}
		}
	}
	p.stats.Batches++
	p.stats.Records += int64(len(b.Records) - res.Skip)
	p.stats.Duplicates += int64(res.Skip)
	p.stats.Events += int64(len(evs))
	if b.StreamID == HeartbeatStream {
		p.stats.Heartbeats += int64(len(b.Records) - res.Skip)
	}
	if p.o.Activity != nil {
		var hb map[string]any
		if b.StreamID == HeartbeatStream && len(b.Records) > res.Skip {
			hb = decodeHeartbeat(b.Records[len(b.Records)-1].Data)
		}
		p.o.Activity.Seen(b.AgentID, b.EntityID, p.o.Now(), hb)
	}
	if poison != nil {
		if err := p.o.DLQ.Send(ctx, msg, poison); err != nil {
			return err
		}
		p.stats.Poison++
	}
	return nil
}

func (p *Pipeline) writer(entity string) (store.BulkWriter, error) {
	if w, ok := p.writers[entity]; ok {
		return w, nil
	}
	w, err := p.o.Store.Bulk(store.TenantScope(entity), store.Events, store.BulkOptions{FlushInterval: p.o.FlushInterval})
	if err != nil {
		return nil, fmt.Errorf("opening event writer of entity %s: %w", entity, err)
	}
	p.writers[entity] = w
	return w, nil
}

type encoded struct {
	id   string
	json []byte
}

// events turns the batch's new records into encoded events. poison is
// non-nil when some record could not give an event (it names them).
func (p *Pipeline) events(res verify.Result) (out []encoded, poison error) {
	b := res.Batch
	defer func() {
		if r := recover(); r != nil {
			out, poison = nil, fmt.Errorf("parser panic in batch of agent %q stream %q seq %d: %v", b.AgentID, b.StreamID, b.FirstSeq, r)
		}
	}()
	return p.parse(res, p.o.Now().UTC())
}

// parseBatch parses the records of an accepted batch (skipping res.Skip
// leading ones) and stamps the fields the pipeline owns: event.id,
// event.ingested, organization.id, agent.id and, when the record names no
// host, host.name (the agent's hostname, else its id); then enr, when not
// nil, enriches it. The stream id is the parser's source hint; records of
// HeartbeatStream become heartbeat events without a parser. Events of auditd records are joined within the
// batch only. Summary records (envelope.KindSummary) go through the
// dispatcher's Summary: the agent's JSON event is kept and stamped.
//
// event.id is the record's envelope EventID; when one record completes
// more than one event (auditd groups flushed at the end of the batch) the
// further events get an id derived from it and their rank, so ids stay
// deterministic across redeliveries. poison lists events that could not be
// encoded (they are left out).
func parseBatch(d *parse.Dispatcher, enr func(event.Event), res verify.Result, ingested time.Time) ([]encoded, error) {
	b := res.Batch
	host := res.Agent.Hostname
	if host == "" {
		host = b.AgentID
	}
	st := d.NewStream("")
	out := make([]encoded, 0, len(b.Records)-res.Skip)
	var bad []error
	emit := func(i int, evs []event.Event, rank int) int {
		for _, ev := range evs {
			id := b.EventID(i)
			if rank > 0 {
				id = event.IDFromRaw([]byte(id), []byte(fmt.Sprint(rank)))
			}
			rank++
			ev["event.id"] = id
			ev["event.ingested"] = ingested
			ev["organization.id"] = b.EntityID
			ev["agent.id"] = b.AgentID
			if ev.String("host.name") == "" {
				ev["host.name"] = host
			}
			if enr != nil {
				enr(ev)
			}
			js, err := ev.MarshalJSON()
			if err != nil {
				bad = append(bad, fmt.Errorf("record seq %d: encoding event: %w", b.Seq(i), err))
				continue
			}
			out = append(out, encoded{id: id, json: js})
		}
		return rank
	}
	last, lastRank := -1, 0
	heartbeat := b.StreamID == HeartbeatStream
	for i := res.Skip; i < len(b.Records); i++ {
		r := &b.Records[i]
		if heartbeat {
			last, lastRank = i, emit(i, []event.Event{heartbeatEvent(r.Data, r.Time)}, 0)
			continue
		}
		if r.Kind == envelope.KindSummary {
			last, lastRank = i, emit(i, []event.Event{d.Summary(parse.Record{Raw: r.Data, Source: b.StreamID, Time: r.Time, Host: res.Agent.Hostname})}, 0)
			continue
		}
		evs, _ := st.Add(parse.Record{Raw: r.Data, Source: b.StreamID, Time: r.Time, Host: res.Agent.Hostname})
		last, lastRank = i, emit(i, evs, 0)
	}
	if last >= 0 {
		emit(last, st.Flush(), lastRank)
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("%d of the batch's events could not be encoded: %w", len(bad), errors.Join(bad...))
	}
	return out, nil
}
