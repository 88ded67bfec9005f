// Package eventsink writes normalised events where the collector's outputs
// go: one Kafka message per event on csirt.events.v1 (key: the entity), then
// the store's events collection under that entity's tenant. Publish returns
// once both are durable. The syslog intake publishes through it.
package eventsink

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
)

// Sink publishes events. It is safe for concurrent use.
type Sink struct {
	prod    *bus.Producer
	topic   string
	st      store.Store
	mu      sync.Mutex
	writers map[string]store.BulkWriter
}

// New returns a sink writing to topic ("" = bus.TopicEvents) with prod and
// to st.
func New(prod *bus.Producer, topic string, st store.Store) *Sink {
	if topic == "" {
		topic = bus.TopicEvents
	}
	return &Sink{prod: prod, topic: topic, st: st, writers: map[string]store.BulkWriter{}}
}

// Store is the store the sink writes to.
func (s *Sink) Store() store.Store { return s.st }

// Publish writes the events to Kafka, then to the store, and returns once
// both acknowledged them.
func (s *Sink) Publish(ctx context.Context, evs []event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	msgs := make([]bus.Message, 0, len(evs))
	docs := make([]store.Doc, 0, len(evs))
	for _, e := range evs {
		js, err := e.MarshalJSON()
		if err != nil {
			return fmt.Errorf("event %s: %w", e.ID(), err)
		}
		msgs = append(msgs, bus.Message{Topic: s.topic, Key: []byte(e.Org()), Value: js,
			Headers: []bus.Header{{Key: bus.HeaderSchema, Value: []byte(event.SchemaVersion)}}})
		docs = append(docs, store.Doc{ID: e.ID(), Tenant: e.Org(), Source: js})
	}
	if err := s.prod.Produce(ctx, msgs...); err != nil {
		return err
	}
	touched := map[string]store.BulkWriter{}
	for _, d := range docs {
		w, ok := s.writers[d.Tenant]
		if !ok {
			var err error
			if w, err = s.st.Bulk(store.TenantScope(d.Tenant), store.Events, store.BulkOptions{}); err != nil {
				return err
			}
			s.writers[d.Tenant] = w
		}
		if err := w.Add(ctx, d); err != nil {
			return err
		}
		touched[d.Tenant] = w
	}
	for _, w := range touched {
		if err := w.Flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the bulk writers (not the producer or the store).
func (s *Sink) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, w := range s.writers {
		_ = w.Close(ctx)
	}
	s.writers = map[string]store.BulkWriter{}
}
