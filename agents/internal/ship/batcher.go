// Package ship is the agent's shipping loop (issue 4, DESIGN.md "Reliability
// model"):
//
//	source --Record--> Batcher --Reserve, Seal, spool.Append, source.Ack
//	spool --Next--> Shipper --Producer.Produce (acks=all)--> spool.Ack
//
// The Batcher groups records per stream into envelope batches, takes their
// sequence numbers from a seq.Store (persisted first), seals them with the
// agent's signer and appends them to the spool; only then does it
// acknowledge the records to their source, so the source's checkpoint
// moves only once the data is in the spool. The spool is the copy from
// then on, and it gives an entry up only when the Shipper has Kafka's
// acknowledgement, or when it is full or too old (drops counted in its
// Stats). With a spool that defers its fsyncs (group commit), a source
// implementing source.SpoolAcker is told the spool entry with its
// acknowledgement and orders its own checkpoint fsync after the spool's;
// any other source is acknowledged only after BatcherOptions.SyncSpool.
//
// The Shipper sends spooled batches to csirt.raw.v1 with the agent id as
// key and retries with capped exponential backoff and jitter. After a crash
// the batches sent but not yet acknowledged in the spool are sent again:
// the collector drops those duplicates by (agent, stream, sequence).
//
// Pipeline ties a source, a Batcher and a Shipper together and exposes the
// heartbeat counters (Stats). The heartbeat message itself (every 30 s) is
// not written yet.
package ship

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/agents/internal/seq"
	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/internal/envelope"
)

// Defaults of BatcherOptions.
const (
	DefaultMaxRecords = 500
	DefaultMaxBytes   = 256 << 10
	DefaultLinger     = 20 * time.Millisecond
)

// batchOverhead bounds the encoded size of a batch beyond its records:
// fixed header fields, five str8 ids and the signature with its length.
const batchOverhead = 4 + 1 + 1 + 5*(1+envelope.MaxIDLength) + 1 + 8 + 8 + 4 + 2 + envelope.MaxSignatureSize

// recordOverhead is the encoded size of a record beyond its data.
const recordOverhead = 8 + 1 + 1 + 4

// Sequencer hands out sequence numbers. Reserve must have made the
// reservation durable when it returns: the batcher appends the batch to
// the spool right after. *seq.Store implements it.
type Sequencer interface {
	Reserve(k seq.Key, n int) (first uint64, err error)
}

// Appender is where sealed batches go. Append returns an error or nil once
// the data is in the spool; on error the batcher retries the same bytes.
// Unless BatcherOptions.SyncSpool or AckSpooled is set, the data must be
// durable when Append returns. *spool.Spool implements it.
type Appender interface {
	Append(data []byte) error
}

// IDAppender is an Appender that also returns the spool entry id, for
// BatcherOptions.AckSpooled. *spool.Spool implements it.
type IDAppender interface {
	AppendID(data []byte) (uint64, error)
}

// BatcherOptions configure a Batcher. AgentID, EntityID, Signer, Sequencer,
// Spool and Ack are required.
type BatcherOptions struct {
	AgentID   string
	EntityID  string
	Signer    envelope.Signer
	Sequencer Sequencer
	Spool     Appender
	// Ack is told the cursors of records once their batch is in the
	// spool: the source's Ack. It receives, per cursor origin, the last
	// cursor of the batch.
	Ack func(cursors ...source.Cursor) error
	// SyncSpool, when set, makes the spool's appends durable; the batcher
	// calls it before Ack (the spool defers its fsyncs: group commit).
	SyncSpool func() error
	// AckSpooled, when set, replaces Ack (and SyncSpool): it is called
	// right after the append with the spool entry holding the batch
	// (source.SpoolAcker), durable or not. Spool must be an IDAppender.
	AckSpooled func(ref source.SpoolRef, cursors ...source.Cursor) error
	// SpoolRun is the spool's run (spool.Mark), for AckSpooled.
	SpoolRun string

	// MaxRecords flushes a stream's batch at this many records. Default
	// 500, at most envelope.MaxRecords.
	MaxRecords int
	// MaxBytes flushes a stream's batch before its encoding would exceed
	// this many bytes. Default 256 KiB; it must leave room for the largest
	// record (envelope.MaxRecordSize) within envelope.MaxBatchSize.
	MaxBytes int
	// Linger flushes a batch this long after its first record. Default
	// 20 ms: with the shipper's produce latency a line reaches Kafka well
	// within 100 ms when the link is up.
	Linger time.Duration
	// RetryBackoff is the first wait after a failed spool append (then
	// doubled, capped at MaxRetryBackoff). Defaults 100 ms and 5 s.
	RetryBackoff, MaxRetryBackoff time.Duration
	// ShutdownTimeout bounds the final flush when ctx ends (spool appends
	// still failing). Default 5 s.
	ShutdownTimeout time.Duration

	Now    func() time.Time   // default time.Now
	Logger logrus.FieldLogger // default: discard
}

func (o BatcherOptions) withDefaults() (BatcherOptions, error) {
	if o.MaxRecords == 0 {
		o.MaxRecords = DefaultMaxRecords
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Linger == 0 {
		o.Linger = DefaultLinger
	}
	if o.RetryBackoff == 0 {
		o.RetryBackoff = 100 * time.Millisecond
	}
	if o.MaxRetryBackoff == 0 {
		o.MaxRetryBackoff = 5 * time.Second
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = discardLogger()
	}
	switch {
	case o.AgentID == "" || o.EntityID == "":
		return o, errors.New("batcher options: agent id and entity id are required")
	case o.Signer == nil || o.Sequencer == nil || o.Spool == nil || (o.Ack == nil && o.AckSpooled == nil):
		return o, errors.New("batcher options: signer, sequencer, spool and ack are required")
	case o.MaxRecords < 0 || o.MaxRecords > envelope.MaxRecords:
		return o, fmt.Errorf("batcher options: max_records %d not in 1..%d", o.MaxRecords, envelope.MaxRecords)
	case o.MaxBytes < 0 || o.MaxBytes+recordOverhead+envelope.MaxRecordSize > envelope.MaxBatchSize-batchOverhead:
		return o, fmt.Errorf("batcher options: max_bytes %d too large (a batch must stay below %d bytes)", o.MaxBytes, envelope.MaxBatchSize)
	case o.Linger < 0 || o.RetryBackoff < 0 || o.MaxRetryBackoff < o.RetryBackoff:
		return o, errors.New("batcher options: negative linger or retry backoff, or max below min")
	}
	if _, ok := o.Spool.(IDAppender); o.AckSpooled != nil && !ok {
		return o, errors.New("batcher options: ack_spooled needs a spool that returns entry ids")
	}
	return o, nil
}

// BatcherStats are the batcher's counters since it was built.
type BatcherStats struct {
	RecordsIn      uint64 // records received from the source (lines read)
	BatchesSpooled uint64 // batches appended to the spool
	RecordsSpooled uint64 // records in them
	AppendErrors   uint64 // failed spool appends (each retried)
	AckErrors      uint64 // failed source acknowledgements (the records stay in the spool; the source re-reads them after a restart)
}

// Batcher turns records into sealed, spooled batches. Build it with
// NewBatcher and call Run once.
type Batcher struct {
	opts    BatcherOptions
	log     logrus.FieldLogger
	pending map[string]*pendingBatch // by stream
	round   chan struct{}            // RoundDone signals, capacity 1

	recordsIn, batches, records, appendErrs, ackErrs atomic.Uint64
}

type pendingBatch struct {
	stream  string
	records []envelope.Record
	cursors []source.Cursor
	size    int // encoded size of the records
	due     time.Time
}

// NewBatcher checks the options and builds a Batcher.
func NewBatcher(opts BatcherOptions) (*Batcher, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Batcher{
		opts:    opts,
		log:     opts.Logger.WithField("component", "ship.batcher"),
		pending: map[string]*pendingBatch{},
		round:   make(chan struct{}, 1),
	}, nil
}

// RoundDone tells the batcher that its source finished a read round and
// has nothing more waiting (source.RoundNotifier): the records it sent so
// far are batched and spooled now rather than after Linger. Call it after
// sending the round's last record; it does not block.
func (b *Batcher) RoundDone() {
	select {
	case b.round <- struct{}{}:
	default: // one signal pending is enough
	}
}

// Stats returns the counters.
func (b *Batcher) Stats() BatcherStats {
	return BatcherStats{
		RecordsIn:      b.recordsIn.Load(),
		BatchesSpooled: b.batches.Load(),
		RecordsSpooled: b.records.Load(),
		AppendErrors:   b.appendErrs.Load(),
		AckErrors:      b.ackErrs.Load(),
	}
}

// Run batches the records from in until ctx ends or in is closed, then
// flushes what it holds (spool appends are local: the flush does not wait
// for Kafka; it gives up after ShutdownTimeout when appends keep failing)
// and returns nil. It returns an error when a batch cannot be
// sequenced or sealed (the records are then not acknowledged: the source
// re-reads them after a restart), or when ctx ends while a spool append is
// being retried. Run is called once.
func (b *Batcher) Run(ctx context.Context, in <-chan source.Record) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var armedAt time.Time // when the timer fires; zero when stopped
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.opts.ShutdownTimeout)
			defer cancel()
			return b.flushAll(fctx)
		case r, ok := <-in:
			if !ok {
				return b.flushAll(ctx)
			}
			if err := b.add(ctx, r); err != nil {
				return err
			}
		case <-b.round:
			// The round's records were sent before the signal: they are
			// in the channel's buffer (or already taken). Later records
			// are left for the next round.
			for n := len(in); n > 0; n-- {
				r, ok := <-in
				if !ok {
					return b.flushAll(ctx)
				}
				if err := b.add(ctx, r); err != nil {
					return err
				}
			}
			if err := b.flushAll(ctx); err != nil {
				return err
			}
		case <-timer.C:
			armedAt = time.Time{}
			if err := b.flushDue(ctx); err != nil {
				return err
			}
		}
		next, ok := b.nextDue()
		if len(in) > 0 || len(b.round) > 0 {
			// More is waiting: the timer is set only before the batcher
			// blocks. Setting it wakes the runtime's network poller (a
			// thread) when it is earlier than the poller's next timer,
			// and in a source's round the batch is flushed by RoundDone
			// before it would ever fire. A due batch is still flushed.
			if ok && !next.After(b.opts.Now()) {
				if err := b.flushDue(ctx); err != nil {
					return err
				}
			}
			continue
		}
		// The timer is moved only when the earliest due time changed, and
		// stopped when nothing is pending, so that it wakes the agent only
		// for a batch that is due.
		switch {
		case ok && !next.Equal(armedAt):
			timer.Stop()
			timer.Reset(max(0, next.Sub(b.opts.Now())))
			armedAt = next
		case !ok && !armedAt.IsZero():
			timer.Stop()
			armedAt = time.Time{}
		}
	}
}

func (b *Batcher) add(ctx context.Context, r source.Record) error {
	b.recordsIn.Add(1)
	// Checked before numbers are reserved for it: a batch that cannot be
	// sealed would leave a gap.
	if r.Stream == "" || len(r.Stream) > envelope.MaxIDLength || !utf8.ValidString(r.Stream) {
		return fmt.Errorf("record from %q: invalid stream id %q (1 to %d bytes of UTF-8)", r.Origin, r.Stream, envelope.MaxIDLength)
	}
	if len(r.Data) > envelope.MaxRecordSize {
		// Sources cap lines below this; cut rather than lose the batch.
		r.Data = r.Data[:envelope.MaxRecordSize]
		r.Flags |= envelope.FlagTruncated
	}
	if r.Time.IsZero() {
		r.Time = b.opts.Now()
	}
	p := b.pending[r.Stream]
	size := recordOverhead + len(r.Data)
	if p != nil && p.size+size > b.opts.MaxBytes {
		if err := b.flush(ctx, p); err != nil {
			return err
		}
		p = nil
	}
	if p == nil {
		p = &pendingBatch{stream: r.Stream, due: b.opts.Now().Add(b.opts.Linger)}
		b.pending[r.Stream] = p
	}
	p.records = append(p.records, envelope.Record{Time: r.Time, Kind: r.Kind, Flags: r.Flags, Data: r.Data})
	p.cursors = append(p.cursors, r.Cursor)
	p.size += size
	if len(p.records) >= b.opts.MaxRecords || p.size >= b.opts.MaxBytes {
		return b.flush(ctx, p)
	}
	return nil
}

func (b *Batcher) nextDue() (time.Time, bool) {
	var next time.Time
	for _, p := range b.pending {
		if next.IsZero() || p.due.Before(next) {
			next = p.due
		}
	}
	return next, !next.IsZero()
}

func (b *Batcher) flushDue(ctx context.Context) error {
	now := b.opts.Now()
	for _, p := range b.pending {
		if !p.due.After(now) {
			if err := b.flush(ctx, p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *Batcher) flushAll(ctx context.Context) error {
	for _, p := range b.pending {
		if err := b.flush(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// flush sequences, seals and spools p, then acknowledges its records.
func (b *Batcher) flush(ctx context.Context, p *pendingBatch) error {
	delete(b.pending, p.stream)
	first, err := b.opts.Sequencer.Reserve(seq.Key{Agent: b.opts.AgentID, Stream: p.stream}, len(p.records))
	if err != nil {
		return fmt.Errorf("sequencing a batch of stream %q: %w", p.stream, err)
	}
	batch := &envelope.Batch{
		AgentID:  b.opts.AgentID,
		EntityID: b.opts.EntityID,
		StreamID: p.stream,
		FirstSeq: first,
		Created:  b.opts.Now(),
		Records:  p.records,
	}
	data, err := envelope.Seal(batch, b.opts.Signer)
	if err != nil {
		return fmt.Errorf("sealing batch %s/%d of %d records: %w", p.stream, first, len(p.records), err)
	}
	wait := b.opts.RetryBackoff
	var id uint64
	for {
		var err error
		if ia, ok := b.opts.Spool.(IDAppender); ok && b.opts.AckSpooled != nil {
			id, err = ia.AppendID(data)
		} else {
			err = b.opts.Spool.Append(data)
		}
		if err == nil {
			break
		}
		b.appendErrs.Add(1)
		b.log.WithError(err).WithFields(logrus.Fields{"stream": p.stream, "first_seq": first, "retry_in": wait}).Error("cannot append a batch to the spool")
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("appending batch %s/%d to the spool: %w", p.stream, first, err)
		}
		wait = min(2*wait, b.opts.MaxRetryBackoff)
	}
	b.batches.Add(1)
	b.records.Add(uint64(len(p.records)))
	if err := b.ack(id, lastPerOrigin(p.cursors)); err != nil {
		// The batch is safe in the spool; the source only keeps an older
		// checkpoint and re-reads after a restart (duplicates, no loss).
		b.ackErrs.Add(1)
		b.log.WithError(err).WithField("stream", p.stream).Warn("cannot acknowledge spooled records to their source")
	}
	return nil
}

// ack acknowledges the cursors of a batch appended as spool entry id.
func (b *Batcher) ack(id uint64, cursors []source.Cursor) error {
	if b.opts.AckSpooled != nil {
		return b.opts.AckSpooled(source.SpoolRef{Run: b.opts.SpoolRun, ID: id}, cursors...)
	}
	if b.opts.SyncSpool != nil {
		// Not acknowledged unless durable: after a restart the source
		// reads the lines again (duplicates, no loss).
		if err := b.opts.SyncSpool(); err != nil {
			return fmt.Errorf("making the spool durable before the checkpoint: %w", err)
		}
	}
	return b.opts.Ack(cursors...)
}

// lastPerOrigin keeps the last cursor of each origin, in order of first
// appearance: acknowledging a cursor covers the earlier ones of its origin.
func lastPerOrigin(cs []source.Cursor) []source.Cursor {
	idx := map[uint64]int{}
	out := make([]source.Cursor, 0, 1)
	for _, c := range cs {
		if i, ok := idx[c.Origin]; ok {
			out[i] = c
			continue
		}
		idx[c.Origin] = len(out)
		out = append(out, c)
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func discardLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}
