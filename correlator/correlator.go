// Package correlator is the correlator role: it consumes csirt.events.v1 in
// a consumer group, runs every event through the detection (Sigma rules and
// correlations, threat-intelligence indicators, network heuristics) with
// per-partition state that is snapshotted with the offset it covers, and
// makes the findings durable in the store and on csirt.findings.v1 before
// committing offsets. docs/correlator.md describes the design.
package correlator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/config"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
)

// DefaultGroup is the correlator's consumer group.
const DefaultGroup = "csirt-correlator"

// SnapshotKind is the rules_state "kind" of partition snapshots.
const SnapshotKind = "correlation-snapshot"

// Options configure a Correlator.
type Options struct {
	Bus   bus.Options
	Store store.Store
	// Group, Topic, FindingsTopic and DLQTopic default to DefaultGroup,
	// bus.TopicEvents, bus.TopicFindings and bus.TopicDLQ (tests use their
	// own).
	Group, Topic, FindingsTopic, DLQTopic string
	// StartOffset applies to partitions the group never committed.
	StartOffset bus.StartOffset

	RulesDirs        []string
	OverridesFile    string
	ReloadInterval   time.Duration // default 1 min
	SnapshotInterval time.Duration // default 10 s
	Feeds            []config.Feed
	RetroHunt        time.Duration
	// IntelInterval is how often the intel collection is checked for
	// changes (and feeds for being due). Default 30 s.
	IntelInterval time.Duration

	// FlushInterval bounds how long a finding waits before it is written.
	// Default 200 ms.
	FlushInterval time.Duration
	// SessionTimeout of the consumer; default the bus default.
	SessionTimeout time.Duration
	BatchTimeout   time.Duration
	Compression    bus.Compression

	Now        func() time.Time
	Logger     logrus.FieldLogger
	Registerer prometheus.Registerer
}

// Correlator is the running role.
type Correlator struct {
	o       Options
	log     logrus.FieldLogger
	prog    atomic.Pointer[Program]
	supp    atomic.Pointer[Suppressions]
	intel   *Intel
	m       *metrics
	prod    *bus.Producer
	parts   map[int]*partition
	pending []pendingFinding
	// inflight is the batch a background flush is writing (nil when none);
	// flushed receives its result. Only the Run goroutine touches them.
	inflight []pendingFinding
	flushed  chan error
	// lastSave is how long the last checkpoint's partition save took.
	lastSave time.Duration
	// crashOnCancel makes Run return on cancellation without saving or
	// committing anything, as a killed process would (tests).
	crashOnCancel bool
	// onStored, when set, is told of every batch of stream findings once
	// stored (load runs measure the detection delay with it).
	onStored func(fs []*finding.Finding, at time.Time)
	// replayed counts findings the replay guard kept from being emitted
	// again.
	replayed atomic.Int64
}

type pendingFinding struct {
	f     *finding.Finding
	guard bool // raised while replaying offsets an earlier instance may have processed
}

// partition is the state of one assigned partition.
type partition struct {
	id    int
	state *State
	next  int64 // offset of the next message expected
	// skipBelow: messages below it are already in the restored state.
	skipBelow int64
	// guardEnd: findings of messages below it are checked against the
	// store before they are emitted (an earlier owner may have emitted
	// them after its last snapshot).
	guardEnd  int64
	saved     int64 // offset covered by the last saved snapshot
	committed int64
	dirty     bool
	savedAt   time.Time     // when its state was last saved (or assigned)
	version   store.Version // of the snapshot document, for fencing
}

// New loads the rules and overrides (failing on errors an operator must
// fix) and returns a correlator ready to Run.
func New(o Options) (*Correlator, error) {
	if o.Store == nil {
		return nil, errors.New("correlator: a store is required")
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.Topic == "" {
		o.Topic = bus.TopicEvents
	}
	if o.FindingsTopic == "" {
		o.FindingsTopic = bus.TopicFindings
	}
	if o.ReloadInterval <= 0 {
		o.ReloadInterval = time.Minute
	}
	if o.SnapshotInterval <= 0 {
		o.SnapshotInterval = 10 * time.Second
	}
	if o.IntelInterval <= 0 {
		o.IntelInterval = 30 * time.Second
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 200 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = logrus.New()
	}
	c := &Correlator{o: o, log: o.Logger.WithField("component", "correlator"), parts: map[int]*partition{}}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	c.m = m
	p, err := LoadProgram(o.RulesDirs, o.OverridesFile)
	if err != nil {
		return nil, fmt.Errorf("correlator: %w", err)
	}
	for _, e := range p.Set.Errors {
		c.log.WithError(e).Warn("rule file skipped")
	}
	c.prog.Store(p)
	c.supp.Store(NewSuppressions(nil))
	c.intel = NewIntel(IntelOptions{Store: o.Store, Feeds: o.Feeds, RetroHunt: o.RetroHunt, Now: o.Now, Logger: o.Logger,
		Publish: c.publishNow})
	c.log.WithFields(logrus.Fields(p.Summary())).Info("correlator rules loaded")
	return c, nil
}

// Intel returns the intelligence manager (tests, console).
func (c *Correlator) Intel() *Intel { return c.intel }

// Program returns the current program.
func (c *Correlator) Program() *Program { return c.prog.Load() }

// Reload re-reads the rules and overrides; the new program is used from the
// next event of each partition, keeping the correlation state of unchanged
// rules. A program that does not compile leaves the current one in place.
func (c *Correlator) Reload() (bool, error) {
	p, err := LoadProgram(c.o.RulesDirs, c.o.OverridesFile)
	if err != nil {
		return false, fmt.Errorf("reloading rules (keeping the previous set): %w", err)
	}
	if cur := c.prog.Load(); cur != nil && cur.Digest == p.Digest {
		return false, nil
	}
	c.prog.Store(p)
	c.log.WithFields(logrus.Fields(p.Summary())).Info("correlator rules reloaded")
	return true, nil
}

// ReloadSuppressions reads the analysts' suppressions from the store.
func (c *Correlator) ReloadSuppressions(ctx context.Context) error {
	s, err := LoadSuppressions(ctx, c.o.Store, c.o.Now())
	if err != nil {
		return err
	}
	c.supp.Store(s)
	return nil
}

func (c *Correlator) suppressions() *Suppressions { return c.supp.Load() }

// fetched is a message read by the fetch goroutine, decoded there: event
// decoding is a third of the work per event and runs beside the handling
// of the previous events instead of before it.
type fetched struct {
	m      bus.Message
	err    error
	ev     event.Event
	decErr error
}

// Run consumes until ctx is cancelled, then saves every partition's state,
// commits and leaves the group.
func (c *Correlator) Run(ctx context.Context) error {
	prod, err := bus.NewProducer(bus.ProducerOptions{Options: c.o.Bus, BatchTimeout: c.o.BatchTimeout, Compression: c.o.Compression,
		Logger: c.o.Logger, Registerer: nil})
	if err != nil {
		return fmt.Errorf("correlator: %w", err)
	}
	c.prod = prod
	defer func() { _ = prod.Close() }()
	// Whatever way Run ends, a background flush ends first (it uses the
	// producer); its findings are written or left to the replay.
	defer func() { _ = c.waitFlush() }()
	dlq, err := bus.NewDLQ(bus.DLQOptions{Sender: prod, Topic: c.o.DLQTopic, Logger: c.o.Logger})
	if err != nil {
		return fmt.Errorf("correlator: %w", err)
	}
	cons, err := bus.NewConsumer(bus.ConsumerOptions{Options: c.o.Bus, GroupID: c.o.Group, Topics: []string{c.o.Topic},
		StartOffset: c.o.StartOffset, SessionTimeout: c.o.SessionTimeout, Logger: c.o.Logger})
	if err != nil {
		return fmt.Errorf("correlator: %w", err)
	}
	if err := c.ReloadSuppressions(ctx); err != nil {
		c.log.WithError(err).Warn("loading suppressions failed; retrying at the next reload")
	}

	bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBg()
	intelDone := make(chan struct{})
	go func() { defer close(intelDone); _ = c.intel.Run(bg, c.o.IntelInterval) }()
	defer func() { stopBg(); <-intelDone }()
	go c.reloadLoop(bg)

	msgs := make(chan fetched, 256)
	fctx, stopFetch := context.WithCancel(ctx)
	fetchDone := make(chan struct{})
	go func() {
		defer close(fetchDone)
		for {
			m, err := cons.Fetch(fctx)
			f := fetched{m: m, err: err}
			if err == nil {
				f.ev, f.decErr = decodeEvent(m.Value)
			}
			select {
			case msgs <- f:
			case <-fctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() { stopFetch(); _ = cons.Close(); <-fetchDone }()

	flush := time.NewTicker(c.o.FlushInterval)
	defer flush.Stop()
	snap := time.NewTicker(c.snapshotTick())
	defer snap.Stop()
	c.log.WithFields(logrus.Fields{"group": c.o.Group, "topic": c.o.Topic}).Info("correlator consuming")
	var out []*finding.Finding
	// final saves the state and commits on shutdown, also when the
	// shutdown interrupted a flush or a checkpoint (pending findings are
	// kept until written; snapshot and finding writes are idempotent).
	final := func() error {
		if c.crashOnCancel {
			return nil
		}
		_ = c.waitFlush() // a failed batch is back in pending: the checkpoint writes it
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := c.checkpoint(sctx, cons, true)
		cancel()
		if err != nil {
			return fmt.Errorf("correlator: final checkpoint: %w", err)
		}
		c.log.Info("correlator stopped: state saved and offsets committed")
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return final()
		case f := <-msgs:
			if f.err != nil {
				if ctx.Err() != nil {
					continue
				}
				return fmt.Errorf("correlator: %w", f.err)
			}
			out, err = c.handle(ctx, dlq, f, out[:0])
			if err != nil {
				if ctx.Err() != nil {
					// The message may be half handled: save nothing of it.
					// The next run replays from the last snapshot.
					c.log.WithError(err).Info("correlator stopped in the middle of a message; it is read again from the last snapshot")
					return nil
				}
				return err
			}
			if len(c.pending) >= 5000 {
				// Back-pressure: wait for the batch in flight, then start
				// this one.
				if err := c.waitFlush(); err != nil {
					if ctx.Err() != nil {
						return final()
					}
					return err
				}
				c.startFlush(ctx)
			}
		case <-flush.C:
			if c.inflight == nil {
				c.startFlush(ctx)
			}
		case err := <-c.flushed:
			if err := c.flushResult(err); err != nil {
				if ctx.Err() != nil {
					return final()
				}
				return err
			}
		case <-snap.C:
			if err := c.checkpoint(ctx, cons, false); err != nil {
				if ctx.Err() != nil {
					return final()
				}
				return err
			}
			snap.Reset(c.snapshotTick())
		}
	}
}

func (c *Correlator) reloadLoop(ctx context.Context) {
	t := time.NewTicker(c.o.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := c.Reload(); err != nil {
			c.log.WithError(err).Error("rule reload failed")
		}
		if err := c.ReloadSuppressions(ctx); err != nil && ctx.Err() == nil {
			c.log.WithError(err).Warn("loading suppressions failed")
		}
	}
}

// handle processes one message: partition bookkeeping, decode (poison
// messages to the DLQ), detection.
func (c *Correlator) handle(ctx context.Context, dlq *bus.DLQ, f fetched, out []*finding.Finding) ([]*finding.Finding, error) {
	m := f.m
	p := c.parts[m.Partition]
	if p == nil || m.Offset != p.next {
		var err error
		if p, err = c.assign(ctx, m.Partition, m.Offset, p); err != nil {
			return out, err
		}
	}
	p.next = m.Offset + 1
	if m.Offset < p.skipBelow {
		c.m.skipped.Inc()
		return out, nil
	}
	ev, err := f.ev, f.decErr
	if err != nil {
		c.m.poison.Inc()
		p.dirty = true
		if err := dlq.Send(ctx, m, fmt.Errorf("correlator: undecodable event: %w", err)); err != nil {
			return out, fmt.Errorf("correlator: sending a poison message to the DLQ: %w", err)
		}
		return out, nil
	}
	if prog := c.prog.Load(); prog != p.state.Program() {
		dropped, err := p.state.SetProgram(prog)
		if err != nil {
			c.log.WithError(err).WithField("partition", p.id).Error("switching to the reloaded rules failed; keeping the previous ones for this partition")
		} else if len(dropped) > 0 {
			c.log.WithFields(logrus.Fields{"partition": p.id, "dropped": dropped}).Info("correlation state of changed rules dropped")
		}
	}
	c.m.events.Inc()
	p.dirty = true
	out = p.state.Process(ev, c.o.Now(), out)
	for _, f := range out {
		c.pending = append(c.pending, pendingFinding{f: f, guard: m.Offset < p.guardEnd})
	}
	return out, nil
}

// snapshotDoc is the rules_state document of a partition's state.
type snapshotDoc struct {
	Kind      string    `json:"kind"`
	Partition string    `json:"partition"`
	Group     string    `json:"group"`
	Offset    int64     `json:"offset"` // the next offset: every earlier message is in the state
	Updated   time.Time `json:"updated"`
	// Encoding and Blob carry the state since SnapshotEncoding.
	Encoding string `json:"state_encoding,omitempty"`
	Blob     []byte `json:"state_blob,omitempty"`
	// Legacy is the state as a JSON object (the first format; read only).
	Legacy *legacySnapshot `json:"state,omitempty"`
	// State is the state read from either (parseSnapshotDoc).
	State *Snapshot `json:"-"`
}

// legacySnapshot is the state in the first format: each entity's
// correlation snapshot in a JSON string.
type legacySnapshot struct {
	Correlation map[string]string `json:"correlation,omitempty"`
	Heuristics  json.RawMessage   `json:"heuristics,omitempty"`
	Digest      string            `json:"digest,omitempty"`
}

func (c *Correlator) snapshotID(part int) string {
	return "correlation." + c.o.Group + "." + c.o.Topic + "." + strconv.Itoa(part)
}

// assign (re)initialises a partition on its first message or on a
// discontinuity (the partition was away and came back, or was handed to us
// by a rebalance): the saved snapshot is restored when it is ahead of what
// this instance holds, messages it covers are skipped, and findings up to
// the current end of the partition are checked against the store.
func (c *Correlator) assign(ctx context.Context, part int, offset int64, cur *partition) (*partition, error) {
	prog := c.prog.Load()
	doc, version, err := c.loadSnapshot(ctx, part)
	if err != nil {
		return nil, err
	}
	p := cur
	if p == nil || (doc != nil && doc.Offset > p.next) || (cur != nil && offset > cur.next && (doc == nil || doc.Offset < offset)) {
		p = &partition{id: part, state: NewState(prog, c.intel.Holder())}
		p.state.Suppressions = c.suppressions
		p.state.errLog = func(err error) { c.log.WithError(err).Error("correlation engine") }
		if doc != nil && doc.State != nil {
			dropped, err := p.state.Restore(doc.State)
			if err != nil {
				c.log.WithError(err).WithField("partition", part).Error("restoring the partition snapshot failed; starting with empty state")
				p.state = NewState(prog, c.intel.Holder())
				p.state.Suppressions = c.suppressions
			} else {
				p.skipBelow, p.saved = doc.Offset, doc.Offset
				if len(dropped) > 0 {
					c.log.WithFields(logrus.Fields{"partition": part, "dropped": dropped}).Info("snapshot state of changed rules dropped")
				}
			}
		}
	} else if cur != nil && offset < cur.next {
		// Redelivery to this instance: what it holds covers up to next.
		p.skipBelow = cur.next
	}
	p.version = version
	p.committed = offset
	if p.savedAt.IsZero() {
		p.savedAt = c.o.Now()
	}
	if p.skipBelow > offset {
		c.m.restored.Inc()
	} else if doc != nil && doc.Offset < offset {
		c.log.WithFields(logrus.Fields{"partition": part, "snapshot": doc.Offset, "offset": offset}).Warn("the committed offset is past the saved state: windows of the gap are lost")
	}
	ends, err := bus.EndOffsets(ctx, c.o.Bus, c.o.Topic)
	if err != nil {
		c.log.WithError(err).Warn("reading end offsets for the replay guard failed; findings of replayed messages are emitted again (same ids)")
	} else {
		p.guardEnd = ends[part]
	}
	c.parts[part] = p
	c.log.WithFields(logrus.Fields{"partition": part, "offset": offset, "skip_below": p.skipBelow, "guard_end": p.guardEnd}).Info("partition assigned")
	return p, nil
}

func (c *Correlator) loadSnapshot(ctx context.Context, part int) (*snapshotDoc, store.Version, error) {
	d, err := c.o.Store.Get(ctx, store.RegionalScope(), store.RulesState, c.snapshotID(part))
	if errors.Is(err, store.ErrNotFound) {
		return nil, store.Version{}, nil
	}
	if err != nil {
		return nil, store.Version{}, fmt.Errorf("correlator: reading the snapshot of partition %d: %w", part, err)
	}
	doc, err := parseSnapshotDoc(d.Source)
	if err != nil {
		c.log.WithError(err).WithField("partition", part).Error("unreadable partition snapshot; starting with empty state")
		return nil, d.Version, nil
	}
	return doc, d.Version, nil
}

// parseSnapshotDoc reads a stored partition snapshot in either format.
func parseSnapshotDoc(src []byte) (*snapshotDoc, error) {
	var doc snapshotDoc
	if err := json.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("reading the snapshot document: %w", err)
	}
	switch doc.Encoding {
	case "":
		if l := doc.Legacy; l != nil {
			doc.State = &Snapshot{Correlation: make(map[string][]byte, len(l.Correlation)), Heuristics: l.Heuristics, Digest: l.Digest}
			for ent, data := range l.Correlation {
				doc.State.Correlation[ent] = []byte(data)
			}
			doc.Legacy = nil
		}
	case SnapshotEncoding:
		st, err := decodeSnapshot(doc.Blob)
		if err != nil {
			return nil, err
		}
		doc.State, doc.Blob = st, nil
	default:
		return nil, fmt.Errorf("snapshot state encoding %q is unknown (written by a newer version?)", doc.Encoding)
	}
	return &doc, nil
}

// startFlush hands the pending findings to a background flush, so that
// event handling goes on while they are written (a flush waits on Kafka and
// the store for tens of milliseconds, several times a second). At most one
// runs; the checkpoint waits for it before saving state and committing.
func (c *Correlator) startFlush(ctx context.Context) {
	if c.inflight != nil || len(c.pending) == 0 {
		return
	}
	if c.flushed == nil {
		c.flushed = make(chan error, 1)
	}
	batch := c.pending
	c.inflight, c.pending = batch, nil
	go func() { c.flushed <- c.write(ctx, batch) }()
}

// flushResult ends the background flush: on error its findings go back in
// front of the pending ones (they are written again, with the same ids).
func (c *Correlator) flushResult(err error) error {
	if err != nil {
		c.pending = append(c.inflight, c.pending...)
	}
	c.inflight = nil
	return err
}

// waitFlush waits for the background flush, if one runs.
func (c *Correlator) waitFlush() error {
	if c.inflight == nil {
		return nil
	}
	return c.flushResult(<-c.flushed)
}

// flush makes the pending findings durable now: after the background flush,
// if any (the checkpoint needs every finding of the saved state written).
func (c *Correlator) flush(ctx context.Context) error {
	if err := c.waitFlush(); err != nil {
		return err
	}
	if len(c.pending) == 0 {
		return nil
	}
	if err := c.write(ctx, c.pending); err != nil {
		return err
	}
	c.pending = c.pending[:0]
	return nil
}

// write makes findings durable: first on the findings topic, then in the
// store (a crash in between is caught by the replay guard, which looks in
// the store).
func (c *Correlator) write(ctx context.Context, pending []pendingFinding) error {
	fs := make([]*finding.Finding, 0, len(pending))
	for _, pf := range pending {
		if pf.guard {
			_, err := c.o.Store.Get(ctx, pf.f.Scope(), store.Findings, pf.f.ID)
			if err == nil {
				c.m.guarded.Inc()
				c.replayed.Add(1)
				continue
			}
			if !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("correlator: checking finding %s: %w", pf.f.ID, err)
			}
		}
		fs = append(fs, pf.f)
	}
	return c.publish(ctx, fs)
}

// publish produces then bulk-stores findings.
func (c *Correlator) publish(ctx context.Context, fs []*finding.Finding) error {
	if len(fs) == 0 {
		return nil
	}
	msgs := make([]bus.Message, 0, len(fs))
	docs := make([]store.Doc, 0, len(fs))
	for _, f := range fs {
		d, err := f.Doc()
		if err != nil {
			c.log.WithError(err).WithField("rule", f.RuleID).Error("dropping an invalid finding")
			continue
		}
		docs = append(docs, d)
		msgs = append(msgs, bus.Message{Topic: c.o.FindingsTopic, Key: f.Key(), Value: d.Source})
	}
	if err := c.prod.Produce(ctx, msgs...); err != nil {
		return fmt.Errorf("correlator: producing %d findings: %w", len(msgs), err)
	}
	bw, err := c.o.Store.Bulk(store.RegionalScope(), store.Findings, store.BulkOptions{})
	if err != nil {
		return fmt.Errorf("correlator: storing findings: %w", err)
	}
	for _, d := range docs {
		if err := bw.Add(ctx, d); err != nil {
			_ = bw.Close(ctx)
			return fmt.Errorf("correlator: storing finding %s: %w", d.ID, err)
		}
	}
	if err := bw.Close(ctx); err != nil {
		return fmt.Errorf("correlator: storing findings: %w", err)
	}
	c.m.findings.Add(float64(len(docs)))
	now := c.o.Now()
	for _, f := range fs {
		c.m.delay.Observe(now.Sub(f.Time).Seconds())
	}
	if c.onStored != nil {
		c.onStored(fs, now)
	}
	return nil
}

// publishNow is publish for the retro-hunt (another goroutine: it uses its
// own store writer and the shared, concurrency-safe producer).
func (c *Correlator) publishNow(ctx context.Context, fs []*finding.Finding) error {
	if c.prod == nil {
		return errors.New("correlator: not running")
	}
	return c.publish(ctx, fs)
}

// snapshotTick is the checkpoint period: each checkpoint saves one
// partition (the one saved longest ago), so every partition is saved about
// once per SnapshotInterval and event handling pauses for one partition's
// serialisation at a time instead of all of them at once.
func (c *Correlator) snapshotTick() time.Duration {
	n := len(c.parts)
	if n < 1 {
		n = 1
	}
	d := c.o.SnapshotInterval / time.Duration(n)
	if min := c.o.SnapshotInterval / 16; d < min {
		d = min
	}
	// A large state takes long to save: save less often, so that saving
	// takes at most about a tenth of the time (more events are replayed
	// after a crash instead).
	if slow := 9 * c.lastSave; d < slow {
		d = slow
	}
	return d
}

// checkpoint flushes findings, closes idle windows, saves the state of the
// partition that changed and was saved longest ago (every changed one when
// all is true) with the offset it covers, and commits that offset: the
// committed offset never passes the saved state, so a restart or a moved
// partition resumes exactly where the state ends.
func (c *Correlator) checkpoint(ctx context.Context, cons *bus.Consumer, all bool) error {
	now := c.o.Now()
	var out []*finding.Finding
	for _, p := range c.parts {
		n := len(out)
		out = p.state.Expire(now, out)
		if len(out) > n {
			p.dirty = true
		}
	}
	for _, f := range out {
		c.pending = append(c.pending, pendingFinding{f: f})
	}
	if err := c.flush(ctx); err != nil {
		return err
	}
	oldest := -1
	if !all {
		for id, p := range c.parts {
			if p.dirty && (oldest < 0 || p.savedAt.Before(c.parts[oldest].savedAt)) {
				oldest = id
			}
		}
	}
	var commits []bus.Message
	t0 := time.Now()
	saved := 0
	defer func() {
		if saved == 1 && !all {
			c.lastSave = time.Since(t0)
		}
	}()
	for id, p := range c.parts {
		if p.dirty && (all || id == oldest) {
			saved++
			lost, err := c.saveSnapshot(ctx, p)
			if err != nil {
				return err
			}
			if lost {
				delete(c.parts, id)
				continue
			}
			p.dirty = false
		}
		// Everything below the saved offset is in the saved state and its
		// findings are durable: that is what may be committed.
		target := p.saved
		if target > p.committed {
			commits = append(commits, bus.Message{Topic: c.o.Topic, Partition: id, Offset: target - 1})
		}
	}
	if len(commits) > 0 {
		if err := cons.Commit(ctx, commits...); err != nil {
			return fmt.Errorf("correlator: %w", err)
		}
		for _, m := range commits {
			c.parts[m.Partition].committed = m.Offset + 1
		}
	}
	c.m.partitions.Set(float64(len(c.parts)))
	return nil
}

// saveSnapshot writes a partition's state with optimistic concurrency: when
// the stored snapshot is ahead of ours another instance owns the partition
// now, and lost is true.
func (c *Correlator) saveSnapshot(ctx context.Context, p *partition) (lost bool, err error) {
	st, err := p.state.Snapshot()
	if err != nil {
		return false, fmt.Errorf("correlator: partition %d: %w", p.id, err)
	}
	blob, err := encodeSnapshot(st)
	if err != nil {
		return false, fmt.Errorf("correlator: partition %d: %w", p.id, err)
	}
	doc := snapshotDoc{Kind: SnapshotKind, Partition: c.o.Topic + "/" + strconv.Itoa(p.id), Group: c.o.Group, Offset: p.next,
		Updated: c.o.Now().UTC(), Encoding: SnapshotEncoding, Blob: blob}
	src, err := json.Marshal(doc)
	if err != nil {
		return false, fmt.Errorf("correlator: encoding the snapshot of partition %d: %w", p.id, err)
	}
	d := store.Doc{ID: c.snapshotID(p.id), Tenant: store.RegionalTenant, Source: src, Version: p.version}
	for attempt := 0; attempt < 3; attempt++ {
		var v store.Version
		if d.Version.IsZero() {
			v, err = c.o.Store.Create(ctx, store.RegionalScope(), store.RulesState, d, store.WriteOptions{})
		} else {
			v, err = c.o.Store.Update(ctx, store.RegionalScope(), store.RulesState, d, store.WriteOptions{})
		}
		if err == nil {
			p.version, p.saved, p.savedAt = v, p.next, c.o.Now()
			c.m.snapshots.Inc()
			c.m.snapshotBytes.Set(float64(len(src)))
			return false, nil
		}
		if !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrExists) && !errors.Is(err, store.ErrNotFound) {
			return false, fmt.Errorf("correlator: saving the snapshot of partition %d: %w", p.id, err)
		}
		// Someone else wrote: fence on the offset.
		other, ver, err := c.loadSnapshot(ctx, p.id)
		if err != nil {
			return false, err
		}
		if other != nil && other.Offset > p.next {
			c.log.WithFields(logrus.Fields{"partition": p.id, "ours": p.next, "theirs": other.Offset}).Info("partition moved to another instance; dropping its state here")
			return true, nil
		}
		d.Version = ver
	}
	return false, fmt.Errorf("correlator: saving the snapshot of partition %d: repeated version conflicts", p.id)
}

// decodeEvent decodes an event value.
func decodeEvent(b []byte) (event.Event, error) { return event.Decode(b) }
