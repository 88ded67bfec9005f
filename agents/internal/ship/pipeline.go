package ship

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/csirt-toscana/platform/agents/internal/source"
)

// PipelineOptions configure a Pipeline.
type PipelineOptions struct {
	// Sources each get their own Batcher (their records are acknowledged
	// to them). Required.
	Sources []source.Source
	// Batcher is the template of every source's batcher; its Ack is set
	// to the source's Ack.
	Batcher BatcherOptions
	// Shipper configures the single shipper. Its Queue is also read for
	// the spool counters of Stats.
	Shipper ShipperOptions
	// Buffer is the capacity of each source's record channel. Default 1024.
	Buffer int
}

// Pipeline runs sources, their batchers and one shipper, and sums their
// counters for the agent's heartbeat.
type Pipeline struct {
	sources  []source.Source
	batchers []*Batcher
	shipper  *Shipper
	queue    Queue
	buffer   int
}

// Counters are the heartbeat counters (issue 4). The heartbeat message
// that carries them every 30 s is not written yet.
type Counters struct {
	LinesRead      uint64 // records received from the sources
	LinesSpooled   uint64 // records appended to the spool in a batch
	LinesShipped   uint64 // records Kafka acknowledged
	BatchesSpooled uint64
	BatchesShipped uint64
	// DroppedBatches and DroppedBytes are spool entries given up unsent
	// (spool full or too old, or corrupt on disk). The spool does not
	// decode entries, so the lines in them are not counted.
	DroppedBatches uint64
	DroppedBytes   uint64
	// Errors are failed spool appends, source acknowledgements and
	// Kafka sends (each retried), and undecodable spool entries.
	Errors     uint64
	Retries    uint64    // Kafka sends that were retries
	SpoolDepth int64     // batches waiting in the spool
	SpoolBytes int64     // their bytes on disk
	LastShip   time.Time // last Kafka acknowledgement; zero if none
}

// NewPipeline builds the batchers and the shipper.
func NewPipeline(opts PipelineOptions) (*Pipeline, error) {
	if len(opts.Sources) == 0 {
		return nil, errors.New("pipeline: no source")
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 1024
	}
	p := &Pipeline{sources: opts.Sources, queue: opts.Shipper.Queue, buffer: opts.Buffer}
	for i, src := range opts.Sources {
		bo := opts.Batcher
		bo.Ack = src.Ack
		b, err := NewBatcher(bo)
		if err != nil {
			return nil, fmt.Errorf("pipeline: source %d: %w", i, err)
		}
		if rn, ok := src.(source.RoundNotifier); ok {
			rn.NotifyRounds(b.RoundDone)
		}
		p.batchers = append(p.batchers, b)
	}
	s, err := NewShipper(opts.Shipper)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	p.shipper = s
	return p, nil
}

// Run runs everything until ctx ends or one part fails (which stops the
// others). When ctx ends the sources stop, the batchers spool the batches
// they were filling, and the shipper leaves what Kafka has not acknowledged in the
// spool. It returns the first error.
func (p *Pipeline) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for i, src := range p.sources {
		ch := make(chan source.Record, p.buffer)
		b := p.batchers[i]
		g.Go(func() error {
			if err := src.Run(gctx, ch); err != nil {
				return fmt.Errorf("source %d: %w", i, err)
			}
			return nil
		})
		// When ctx ends the batcher spools what it holds; records still in
		// the channel were not acknowledged, so the source reads them
		// again after a restart.
		g.Go(func() error {
			if err := b.Run(gctx, ch); err != nil {
				return fmt.Errorf("batcher %d: %w", i, err)
			}
			return nil
		})
	}
	g.Go(func() error { return p.shipper.Run(gctx) })
	return g.Wait()
}

// Stats sums the counters of every part.
func (p *Pipeline) Stats() Counters {
	var c Counters
	for _, b := range p.batchers {
		s := b.Stats()
		c.LinesRead += s.RecordsIn
		c.LinesSpooled += s.RecordsSpooled
		c.BatchesSpooled += s.BatchesSpooled
		c.Errors += s.AppendErrors + s.AckErrors
	}
	s := p.shipper.Stats()
	c.LinesShipped = s.RecordsShipped
	c.BatchesShipped = s.BatchesShipped
	c.Errors += s.ProduceFailures + s.DecodeErrors
	c.Retries = s.Retries
	c.LastShip = s.LastShipped
	q := p.queue.Stats()
	c.DroppedBatches = q.DroppedEntries
	c.DroppedBytes = q.DroppedBytes
	c.SpoolDepth = q.Entries
	c.SpoolBytes = q.Bytes
	return c
}
