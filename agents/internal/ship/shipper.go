package ship

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/agents/internal/seq"
	"github.com/csirt-toscana/platform/agents/internal/spool"
	"github.com/csirt-toscana/platform/internal/bus"
)

// Queue is the spool as the shipper uses it. *spool.Spool implements it:
// Next returns entries in order (ctx's error when ctx ends, also when ctx
// is already done and no entry is waiting), Ack(id) releases every entry up
// to id, Rewind makes Next start again at the oldest unacknowledged entry.
type Queue interface {
	Next(ctx context.Context) (spool.Entry, error)
	Ack(id uint64) error
	Rewind()
	Stats() spool.Stats
}

// Producer sends messages and returns nil only once every one of them was
// acknowledged by the brokers (acks=all). On error some may have been
// written. The agent's kafkaout.Producer implements it (one attempt per
// call), and so does *bus.Producer: give the bus.Producer a small
// MaxAttempts (1 to 3) so that the shipper's backoff, not kafka-go's,
// paces the retries while Kafka is down.
type Producer interface {
	Produce(ctx context.Context, msgs ...bus.Message) error
}

// ShipperOptions configure a Shipper. Queue, Producer and AgentID are
// required.
type ShipperOptions struct {
	Queue    Queue
	Producer Producer
	// AgentID is the Kafka key of every message (DESIGN.md, topics).
	AgentID string
	// Topic defaults to bus.TopicRaw.
	Topic string
	// MaxInFlight is the most spooled batches sent in one Produce call.
	// Default 8.
	MaxInFlight int
	// MinBackoff and MaxBackoff bound the wait after a failed send: it
	// doubles from MinBackoff up to MaxBackoff, and a random half of it is
	// jitter. Defaults 100 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// Rand returns a uniform float64 in [0, 1) for the jitter. Default
	// math/rand/v2.Float64.
	Rand func() float64

	Now    func() time.Time   // default time.Now
	Logger logrus.FieldLogger // default: discard
}

func (o ShipperOptions) withDefaults() (ShipperOptions, error) {
	if o.Topic == "" {
		o.Topic = bus.TopicRaw
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 8
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Rand == nil {
		o.Rand = rand.Float64 //nolint:gosec // G404: jitter, not a secret
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = discardLogger()
	}
	switch {
	case o.Queue == nil || o.Producer == nil || o.AgentID == "":
		return o, errors.New("shipper options: queue, producer and agent id are required")
	case o.MaxInFlight < 0:
		return o, fmt.Errorf("shipper options: max_in_flight %d is negative", o.MaxInFlight)
	case o.MinBackoff < 0 || o.MaxBackoff < o.MinBackoff:
		return o, fmt.Errorf("shipper options: backoff %s..%s is not a range", o.MinBackoff, o.MaxBackoff)
	}
	return o, nil
}

// ShipperStats are the shipper's counters since it was built.
type ShipperStats struct {
	BatchesShipped  uint64    // batches Kafka acknowledged (and the spool released)
	RecordsShipped  uint64    // records in them
	ProduceFailures uint64    // Produce calls that failed (each retried)
	Retries         uint64    // Produce calls that were retries
	DecodeErrors    uint64    // spooled entries that do not decode as an envelope (shipped anyway; the collector rejects them)
	LastShipped     time.Time // when Kafka last acknowledged a batch; zero if never
}

// Shipper sends spooled batches to Kafka. Build it with NewShipper and call
// Run once.
type Shipper struct {
	opts ShipperOptions
	log  logrus.FieldLogger

	batches, records, failures, retries, decodeErrs atomic.Uint64
	lastShipped                                     atomic.Int64 // ns since the epoch
}

// NewShipper checks the options and builds a Shipper.
func NewShipper(opts ShipperOptions) (*Shipper, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Shipper{opts: opts, log: opts.Logger.WithField("component", "ship.shipper")}, nil
}

// Stats returns the counters.
func (s *Shipper) Stats() ShipperStats {
	st := ShipperStats{
		BatchesShipped:  s.batches.Load(),
		RecordsShipped:  s.records.Load(),
		ProduceFailures: s.failures.Load(),
		Retries:         s.retries.Load(),
		DecodeErrors:    s.decodeErrs.Load(),
	}
	if ns := s.lastShipped.Load(); ns != 0 {
		st.LastShipped = time.Unix(0, ns)
	}
	return st
}

var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// Run sends spooled batches, oldest first, up to MaxInFlight per Produce
// call, and acknowledges them in the spool once Kafka acknowledged them. A
// failed send is retried, with backoff, until it succeeds or ctx ends. It
// starts with Rewind, so entries a previous shipper took but did not
// acknowledge are sent again. Run returns nil when ctx ends or the spool
// is closed (unacknowledged batches stay in the spool and are sent by the
// next Run), and an error when the spool fails.
func (s *Shipper) Run(ctx context.Context) error {
	s.opts.Queue.Rewind()
	group := make([]spool.Entry, 0, s.opts.MaxInFlight)
	msgs := make([]bus.Message, 0, s.opts.MaxInFlight)
	key := []byte(s.opts.AgentID)
	for {
		e, err := s.opts.Queue.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, spool.ErrClosed) {
				return nil //nolint:nilerr // shutting down: what is left stays in the spool
			}
			return fmt.Errorf("reading the spool: %w", err)
		}
		group = append(group[:0], e)
		for len(group) < s.opts.MaxInFlight {
			e, err := s.opts.Queue.Next(doneCtx)
			if err != nil {
				break // none waiting, or an error the next blocking Next reports
			}
			group = append(group, e)
		}
		msgs = msgs[:0]
		records := 0
		for _, e := range group {
			msgs = append(msgs, bus.Message{Topic: s.opts.Topic, Key: key, Value: e.Data})
			records += s.count(e)
		}
		if err := s.send(ctx, msgs); err != nil {
			return nil //nolint:nilerr // ctx ended: the batches stay in the spool for the next Run
		}
		if err := s.opts.Queue.Ack(group[len(group)-1].ID); err != nil {
			if errors.Is(err, spool.ErrClosed) {
				return nil
			}
			return fmt.Errorf("acknowledging spool entry %d: %w", group[len(group)-1].ID, err)
		}
		s.batches.Add(uint64(len(group)))
		s.records.Add(uint64(records))
		s.lastShipped.Store(s.opts.Now().UnixNano())
	}
}

// count returns the number of records of a spooled batch. Only the
// envelope header is read (decoding every record of every batch cost more
// than the rest of the send path); the collector checks the rest.
func (s *Shipper) count(e spool.Entry) int {
	_, _, n, err := seq.RangeOf(e.Data)
	if err != nil {
		s.decodeErrs.Add(1)
		s.log.WithError(err).WithField("spool_id", e.ID).Error("spooled entry is not a valid envelope; sending it anyway")
		return 0
	}
	return int(n)
}

// send produces msgs until Kafka acknowledges them; it returns an error
// only when ctx ends.
func (s *Shipper) send(ctx context.Context, msgs []bus.Message) error {
	wait := s.opts.MinBackoff
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.retries.Add(1)
		}
		err := s.opts.Producer.Produce(ctx, msgs...)
		if err == nil {
			if attempt > 0 {
				s.log.WithField("attempts", attempt+1).Info("Kafka reachable again: spooled batches are being shipped")
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.failures.Add(1)
		// Equal jitter: half the wait is fixed, half random, so that agents
		// that lost the same broker do not come back in step.
		d := wait/2 + time.Duration(s.opts.Rand()*float64(wait-wait/2))
		s.log.WithError(err).WithFields(logrus.Fields{"batches": len(msgs), "attempt": attempt + 1, "retry_in": d}).Warn("cannot ship batches to Kafka; they stay in the spool")
		if err := sleep(ctx, d); err != nil {
			return err
		}
		wait = min(2*wait, s.opts.MaxBackoff)
	}
}
