package elastic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/csirt-toscana/platform/internal/store"
)

// ErrClosed is returned by Add on a closed writer.
var ErrClosed = errors.New("elastic: bulk writer is closed")

// batch ("epoch") counts the items added between two Flush calls and
// collects their errors. A Flush seals the current batch and waits until
// every item of every sealed batch has had its callback.
type batch struct {
	mu      sync.Mutex
	pending int
	sealed  bool
	errs    []error
	done    chan struct{}
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

func (b *batch) finish(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.errs = append(b.errs, err)
	}
	b.pending--
	if b.sealed && b.pending == 0 {
		close(b.done)
	}
}

func (b *batch) seal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.sealed {
		b.sealed = true
		if b.pending == 0 {
			close(b.done)
		}
	}
}

func (b *batch) errors() []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]error(nil), b.errs...)
}

// bulkWriter is the store.BulkWriter over esutil.BulkIndexer.
type bulkWriter struct {
	s   *Store
	sc  store.Scope
	c   store.Collection
	sch store.Schema
	bi  esutil.BulkIndexer

	closeMu sync.RWMutex // held for reading by Add, for writing by Close
	closed  bool

	mu     sync.Mutex
	cur    *batch
	sealed []*batch
}

// Bulk returns a writer that batches Puts into one collection. On data
// streams it sends op_type create and counts a 409 (already there) as a
// success; on plain indices it sends index, or, in a tenant scope, create
// with a checked Put as the fallback when the id is taken, so that a tenant
// never overwrites another tenant's document.
func (s *Store) Bulk(sc store.Scope, c store.Collection, o store.BulkOptions) (store.BulkWriter, error) {
	sch, err := s.begin(sc, c)
	if err != nil {
		return nil, fmt.Errorf("elastic: starting bulk writer on %s: %w", c, err)
	}
	if o.FlushInterval <= 0 || o.FlushInterval > time.Second {
		o.FlushInterval = time.Second
	}
	if o.FlushBytes <= 0 {
		o.FlushBytes = 5 << 20
	}
	w := &bulkWriter{s: s, sc: sc, c: c, sch: sch, cur: newBatch()}
	// Creates into a data stream commute: several workers overlap requests
	// (4 measured best on a 2-core node: ~10k 1 KB events/s against 7k
	// with 2; 8 gives no more).
	// Writes to a plain index replace: one worker keeps the order of Add.
	workers := 1
	if sch.TimeSeries {
		workers = 4
	}
	w.bi, err = esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		Client:        s.es,
		NumWorkers:    workers,
		FlushBytes:    o.FlushBytes,
		FlushInterval: o.FlushInterval,
		OnError: func(_ context.Context, err error) {
			s.log.WithError(redact(err)).WithField("collection", string(c)).Warn("bulk request failed")
		},
	})
	if err != nil {
		return nil, fmt.Errorf("elastic: starting bulk writer on %s: %w", c, err)
	}
	return w, nil
}

func (w *bulkWriter) enter() *batch {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.cur
	b.mu.Lock()
	b.pending++
	b.mu.Unlock()
	return b
}

// Add queues a document.
func (w *bulkWriter) Add(ctx context.Context, d store.Doc) error {
	p, err := prepare(w.sc, w.sch, d)
	if err != nil {
		return fmt.Errorf("elastic: adding to bulk writer on %s: %w", w.c, err)
	}
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	item := esutil.BulkIndexerItem{DocumentID: d.ID, Body: bytes.NewReader(p.body)}
	fallback := false
	switch {
	case w.sch.TimeSeries:
		item.Index, item.Action = w.s.stream(w.c, p.dataset), "create"
	case w.sc.Regional():
		item.Index, item.Action = w.s.index(w.c), "index"
	default:
		item.Index, item.Action, fallback = w.s.index(w.c), "create", true
	}
	b := w.enter()
	id := d.ID
	item.OnSuccess = func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem) {
		b.finish(nil)
	}
	item.OnFailure = func(_ context.Context, _ esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
		switch {
		case err != nil:
			b.finish(fmt.Errorf("document %s: %w", id, redact(err)))
		case res.Status == http.StatusConflict && w.sch.TimeSeries:
			b.finish(nil) // already stored: a retried write
		case res.Status == http.StatusConflict && fallback:
			// Synchronously, in the worker: with one worker the writes to
			// a plain index keep the order of Add.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := w.s.put(ctx, w.sc, w.c, w.sch, id, p, store.WriteOptions{})
			if err != nil {
				err = fmt.Errorf("document %s: %w", id, err)
			}
			b.finish(err)
		default:
			e := &esError{Status: res.Status, Type: res.Error.Type, Reason: res.Error.Reason}
			if res.Error.Cause.Reason != "" {
				e.Reason += " (" + res.Error.Cause.Type + ": " + res.Error.Cause.Reason + ")"
			}
			b.finish(fmt.Errorf("document %s: %w", id, e))
		}
	}
	if err := w.bi.Add(ctx, item); err != nil {
		b.finish(nil) // never queued
		return fmt.Errorf("elastic: adding %s to bulk writer on %s: %w", id, w.c, err)
	}
	return nil
}

// Flush waits until every document added before the call has been written
// or has failed, and returns the failures.
func (w *bulkWriter) Flush(ctx context.Context) error {
	w.mu.Lock()
	cur := w.cur
	w.cur = newBatch()
	cur.seal()
	w.sealed = append(w.sealed, cur)
	wait := append([]*batch(nil), w.sealed...)
	w.mu.Unlock()

	// Send what is buffered now rather than at the next interval.
	w.closeMu.RLock()
	if !w.closed {
		if err := w.bi.Flush(ctx); err != nil && !errors.Is(err, esutil.ErrIndexerClosed) {
			w.closeMu.RUnlock()
			return fmt.Errorf("elastic: flushing bulk writer on %s: %w", w.c, err)
		}
	}
	w.closeMu.RUnlock()

	var errs []error
	for _, b := range wait {
		select {
		case <-b.done:
			errs = append(errs, b.errors()...)
		case <-ctx.Done():
			return fmt.Errorf("elastic: flushing bulk writer on %s: %w", w.c, ctx.Err())
		}
	}
	w.mu.Lock()
	keep := w.sealed[:0]
	for _, b := range w.sealed {
		select {
		case <-b.done:
			if !contains(wait, b) {
				keep = append(keep, b)
			}
		default:
			keep = append(keep, b)
		}
	}
	w.sealed = keep
	w.mu.Unlock()
	if len(errs) > 0 {
		return fmt.Errorf("elastic: bulk writing to %s: %w", w.c, errors.Join(errs...))
	}
	return nil
}

func contains(list []*batch, b *batch) bool {
	for _, x := range list {
		if x == b {
			return true
		}
	}
	return false
}

// Close flushes and stops the writer.
func (w *bulkWriter) Close(ctx context.Context) error {
	w.closeMu.Lock()
	if w.closed {
		w.closeMu.Unlock()
		return nil
	}
	w.closed = true
	w.closeMu.Unlock()
	ferr := w.flushClosed(ctx)
	cerr := w.bi.Close(ctx)
	if cerr != nil {
		cerr = fmt.Errorf("elastic: closing bulk writer on %s: %w", w.c, cerr)
	}
	return errors.Join(ferr, cerr)
}

// flushClosed is Flush after closed was set: the indexer is still running
// and drained by its own Flush.
func (w *bulkWriter) flushClosed(ctx context.Context) error {
	if err := w.bi.Flush(ctx); err != nil {
		return fmt.Errorf("elastic: flushing bulk writer on %s: %w", w.c, err)
	}
	return w.Flush(ctx)
}
