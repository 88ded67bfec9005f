package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/csirt-toscana/platform/internal/store"
)

// Bulk returns a writer that batches Puts into one collection, one
// transaction per batch.
func (s *Store) Bulk(sc store.Scope, c store.Collection, o store.BulkOptions) (store.BulkWriter, error) {
	schema, err := s.begin(sc, c)
	if err != nil {
		return nil, err
	}
	if o.FlushInterval <= 0 || o.FlushInterval > time.Second {
		o.FlushInterval = time.Second
	}
	if o.FlushBytes <= 0 {
		o.FlushBytes = 5 << 20
	}
	w := &bulkWriter{
		s: s, scope: sc, c: c, schema: schema, opts: o,
		sem:   make(chan struct{}, 1),
		kick:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		space: make(chan struct{}),
	}
	w.wg.Add(1)
	go w.loop()
	return w, nil
}

// bulkWriter buffers rows and writes them in batches from a background
// goroutine (every FlushInterval, or sooner when FlushBytes are buffered)
// and on Flush. Batches are written one at a time, in the order they were
// taken from the buffer, so once Flush has written what it took, every
// earlier row is committed too.
type bulkWriter struct {
	s      *Store
	scope  store.Scope
	c      store.Collection
	schema store.Schema
	opts   store.BulkOptions

	sem  chan struct{} // held while a batch is taken and written
	kick chan struct{} // asks the loop for an early flush
	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	mu      sync.Mutex
	buf     []*row
	bytes   int
	errs    []error       // failures of written rows not yet reported by Flush
	dropped int           // failures beyond maxErrors, only counted
	space   chan struct{} // closed (and replaced) whenever the buffer is emptied
	closed  bool
}

// maxBuffered bounds the memory of a writer whose batches fall behind: Add
// waits while this many FlushBytes are buffered.
const maxBuffered = 4

// maxErrors bounds the failures a writer keeps between two Flush calls.
const maxErrors = 1000

func (w *bulkWriter) Add(ctx context.Context, d store.Doc) error {
	r, err := prepare(w.scope, w.schema, d)
	if err != nil {
		return err
	}
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return errors.New("sqlite: bulk writer is closed")
		}
		if w.bytes < maxBuffered*w.opts.FlushBytes {
			break
		}
		space := w.space
		w.mu.Unlock()
		w.signal()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.buf = append(w.buf, r)
	w.bytes += r.size()
	full := w.bytes >= w.opts.FlushBytes
	w.mu.Unlock()
	if full {
		w.signal()
	}
	return nil
}

func (w *bulkWriter) signal() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *bulkWriter) loop() {
	defer w.wg.Done()
	t := time.NewTicker(w.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		case <-w.kick:
		}
		if err := w.writeBuffered(context.Background()); err != nil {
			w.s.log.WithError(err).WithField("collection", w.c).Warn("sqlite: bulk write failed")
		}
	}
}

// writeBuffered takes everything buffered and writes it. Failures are kept
// for Flush; the returned error only says that the wait was cancelled.
func (w *bulkWriter) writeBuffered(ctx context.Context) error {
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-w.sem }()
	w.mu.Lock()
	batch := w.buf
	w.buf, w.bytes = nil, 0
	close(w.space)
	w.space = make(chan struct{})
	w.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	// A batch once started is finished whatever happens to ctx: its rows
	// are no longer in the buffer.
	if errs := w.write(context.WithoutCancel(ctx), batch); len(errs) > 0 {
		w.mu.Lock()
		for _, err := range errs {
			if len(w.errs) < maxErrors {
				w.errs = append(w.errs, err)
			} else {
				w.dropped++
			}
		}
		w.mu.Unlock()
	}
	return nil
}

// write stores one batch in one transaction and returns the per-row errors.
func (w *bulkWriter) write(ctx context.Context, batch []*row) []error {
	fail := func(err error) []error {
		errs := make([]error, len(batch))
		for i, r := range batch {
			errs[i] = fmt.Errorf("sqlite: bulk put %s/%s: %w", w.c, r.id, err)
		}
		return errs
	}
	tx, err := w.s.w.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	defer func() { _ = tx.Rollback() }()
	x := &stmtCache{tx: tx, stmts: map[string]*sql.Stmt{}}
	defer x.close()
	var errs []error
	for _, r := range batch {
		if _, err := w.s.put(ctx, x, w.scope, w.c, w.schema, r); err != nil {
			if !errors.Is(err, store.ErrOutOfScope) {
				return fail(err) // the transaction is unusable
			}
			errs = append(errs, fmt.Errorf("sqlite: bulk put %s/%s: %w", w.c, r.id, err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	return errs
}

// Flush writes everything added before the call and reports the failures
// of rows written since the last Flush.
func (w *bulkWriter) Flush(ctx context.Context) error {
	if err := w.writeBuffered(ctx); err != nil {
		return fmt.Errorf("sqlite: bulk flush %s: %w", w.c, err)
	}
	w.mu.Lock()
	errs, dropped := w.errs, w.dropped
	w.errs, w.dropped = nil, 0
	w.mu.Unlock()
	if dropped > 0 {
		errs = append(errs, fmt.Errorf("sqlite: bulk put %s: %d more documents failed", w.c, dropped))
	}
	return errors.Join(errs...)
}

// Close flushes and stops the writer.
func (w *bulkWriter) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.done)
	w.wg.Wait()
	return w.Flush(ctx)
}

// stmtCache runs the statements of one bulk transaction, each prepared
// once per transaction rather than once per document.
type stmtCache struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

func (c *stmtCache) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := c.stmts[query]; ok {
		return st, nil
	}
	st, err := c.tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.stmts[query] = st
	return st, nil
}

func (c *stmtCache) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// QueryRowContext falls back to the transaction when preparing fails, so
// that the error reaches the caller through Row.Scan.
func (c *stmtCache) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return c.tx.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (c *stmtCache) close() {
	for _, st := range c.stmts {
		_ = st.Close()
	}
}
