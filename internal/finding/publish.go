package finding

import (
	"context"
	"errors"
	"fmt"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/store"
)

// Publisher makes findings durable in both places they go: the
// csirt.findings.v1 topic (key: the entity id) and the store's findings
// collection. Publish returns only after both acknowledged, so a caller
// that publishes before committing its input never loses a finding; a
// retry after a failure writes the same ids again (the store keeps one
// document, consumers drop repeated ids).
type Publisher struct {
	Sender bus.Sender  // required
	Store  store.Store // required
	Topic  string      // default bus.TopicFindings
}

// Publish encodes, produces and stores the findings. It stops at the
// first error; the error names the finding.
func (p *Publisher) Publish(ctx context.Context, fs ...*Finding) error {
	if p.Sender == nil || p.Store == nil {
		return errors.New("finding publisher: sender and store are required")
	}
	if len(fs) == 0 {
		return nil
	}
	topic := p.Topic
	if topic == "" {
		topic = bus.TopicFindings
	}
	msgs := make([]bus.Message, 0, len(fs))
	docs := make([]store.Doc, 0, len(fs))
	for _, f := range fs {
		d, err := f.Doc()
		if err != nil {
			return err
		}
		docs = append(docs, d)
		msgs = append(msgs, bus.Message{Topic: topic, Key: f.Key(), Value: d.Source})
	}
	if err := p.Sender.Produce(ctx, msgs...); err != nil {
		return fmt.Errorf("producing %d findings to %s: %w", len(msgs), topic, err)
	}
	for i, f := range fs {
		d := docs[i]
		if _, err := p.Store.Put(ctx, f.Scope(), store.Findings, d, store.WriteOptions{}); err != nil {
			return fmt.Errorf("storing finding %s: %w", d.ID, err)
		}
	}
	return nil
}
