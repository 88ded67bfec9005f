package incidents

import (
	"context"
	"fmt"
	"time"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/finding"
)

// Source is where findings come from; *bus.Consumer implements it. Commit
// marks the given messages and their predecessors in each partition done.
type Source interface {
	Fetch(ctx context.Context) (bus.Message, error)
	Commit(ctx context.Context, msgs ...bus.Message) error
}

// DeadLetters takes messages that are not findings; *bus.DLQ implements it.
type DeadLetters interface {
	Send(ctx context.Context, orig bus.Message, cause error) error
}

var (
	_ Source      = (*bus.Consumer)(nil)
	_ DeadLetters = (*bus.DLQ)(nil)
)

// RunOptions tune Run's batching.
type RunOptions struct {
	// MaxBatch is the most findings applied and committed together.
	// Default 256.
	MaxBatch int
	// Linger is how long Run waits for more findings after the first of a
	// batch. Default 200 ms.
	Linger time.Duration
	// DrainTimeout bounds the last batch after ctx is cancelled. Default 10 s.
	DrainTimeout time.Duration
}

// Run consumes findings until ctx is cancelled: it fetches a batch,
// applies it (Apply), and commits the batch's offsets only once every
// write is durable. A message that is not a finding goes to the DLQ (then
// it is committed with its batch). An infrastructure error stops Run
// without committing the batch, so that it is delivered again (a failed
// commit is logged and Run goes on: the batch is only redelivered). On
// cancellation the batch in hand is finished within DrainTimeout and Run
// returns nil.
func (s *Stage) Run(ctx context.Context, src Source, dlq DeadLetters, ro RunOptions) error {
	if ro.MaxBatch <= 0 {
		ro.MaxBatch = 256
	}
	if ro.Linger <= 0 {
		ro.Linger = 200 * time.Millisecond
	}
	if ro.DrainTimeout <= 0 {
		ro.DrainTimeout = 10 * time.Second
	}
	for {
		msg, err := src.Fetch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("incident stage: %w", err)
		}
		batch := []bus.Message{msg}
		lctx, cancel := context.WithTimeout(ctx, ro.Linger)
		for len(batch) < ro.MaxBatch {
			m, err := src.Fetch(lctx)
			if err != nil {
				break
			}
			batch = append(batch, m)
		}
		cancel()
		wctx := ctx
		if ctx.Err() != nil {
			var dcancel context.CancelFunc
			wctx, dcancel = context.WithTimeout(context.WithoutCancel(ctx), ro.DrainTimeout)
			defer dcancel()
		}
		if err := s.handle(wctx, src, dlq, batch); err != nil {
			if ctx.Err() != nil {
				// Stopped in the middle of the batch: nothing of it was
				// committed, and its writes are idempotent when it is
				// delivered again.
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

func (s *Stage) handle(ctx context.Context, src Source, dlq DeadLetters, batch []bus.Message) error {
	fs := make([]*finding.Finding, 0, len(batch))
	for _, m := range batch {
		f, err := finding.Decode(m.Value)
		if err != nil {
			if dlq == nil {
				return fmt.Errorf("incident stage: message %s/%d@%d is not a finding (%w) and there is no DLQ", m.Topic, m.Partition, m.Offset, err)
			}
			if derr := dlq.Send(ctx, m, fmt.Errorf("incident stage: %w", err)); derr != nil {
				return fmt.Errorf("incident stage: sending %s/%d@%d to the DLQ: %w", m.Topic, m.Partition, m.Offset, derr)
			}
			s.log.WithError(err).WithField("offset", m.Offset).Warn("message is not a finding: sent to the DLQ")
			continue
		}
		fs = append(fs, f)
	}
	if err := s.Apply(ctx, fs...); err != nil {
		return fmt.Errorf("incident stage: %w", err)
	}
	if err := src.Commit(ctx, batch...); err != nil {
		// The writes are durable and idempotent: a failed commit (a
		// rebalance moved the partition, the coordinator is changing)
		// only means the batch is delivered again, to whichever member
		// owns the partition. Keep going.
		s.log.WithError(err).WithField("messages", len(batch)).Warn("committing findings offsets failed; they will be redelivered and absorbed")
	}
	return nil
}
