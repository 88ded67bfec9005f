package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

// Sender writes messages durably. Produce returns nil only after every message
// is acknowledged by the brokers; on error some may have been written and
// the caller may retry (duplicates are possible). *Producer implements it.
type Sender interface {
	Produce(ctx context.Context, msgs ...Message) error
}

var _ Sender = (*Producer)(nil)

// maxErrorHeader bounds the error text stored in HeaderError.
const maxErrorHeader = 4096

// DLQOptions configure a DLQ.
type DLQOptions struct {
	// Sender writes the dead letters. Required.
	Sender Sender
	// Topic is the dead-letter topic. Default TopicDLQ.
	Topic string
	// Now is the clock for HeaderFailedAt. Default time.Now.
	Now func() time.Time

	Logger     logrus.FieldLogger    // default: a logger that discards
	Registerer prometheus.Registerer // nil: metrics are kept but not registered
}

func (o DLQOptions) withDefaults() DLQOptions {
	if o.Topic == "" {
		o.Topic = TopicDLQ
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = discardLogger()
	}
	return o
}

// DLQ sends messages that cannot be processed (poison messages) to the
// dead-letter topic so that their partition keeps flowing.
type DLQ struct {
	opts DLQOptions
	m    *metrics
	log  logrus.FieldLogger
}

// NewDLQ builds a DLQ.
func NewDLQ(opts DLQOptions) (*DLQ, error) {
	opts = opts.withDefaults()
	if opts.Sender == nil {
		return nil, errors.New("dlq options: sender is required")
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("building dlq: %w", err)
	}
	return &DLQ{opts: opts, m: m, log: opts.Logger.WithField("component", "bus.dlq")}, nil
}

// Send writes orig's key, value and headers to the dead-letter topic with
// headers naming cause, the source topic, partition and offset, and the
// failure time. It returns after the brokers acknowledged the dead letter;
// the caller then commits orig so that its partition keeps flowing. If Send
// fails the caller must not commit orig (retry, or stop and let the message
// be redelivered).
func (d *DLQ) Send(ctx context.Context, orig Message, cause error) error {
	text := "unknown error"
	if cause != nil {
		text = cause.Error()
	}
	if len(text) > maxErrorHeader {
		text = text[:maxErrorHeader]
	}
	hs := make([]Header, 0, len(orig.Headers)+5)
	hs = append(hs, orig.Headers...)
	hs = append(hs,
		Header{Key: HeaderError, Value: []byte(text)},
		Header{Key: HeaderSourceTopic, Value: []byte(orig.Topic)},
		Header{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(orig.Partition))},
		Header{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(orig.Offset, 10))},
		Header{Key: HeaderFailedAt, Value: []byte(d.opts.Now().UTC().Format(time.RFC3339Nano))},
	)
	dead := Message{Topic: d.opts.Topic, Key: orig.Key, Value: orig.Value, Headers: hs}
	if err := d.opts.Sender.Produce(ctx, dead); err != nil {
		return fmt.Errorf("dead-lettering %s/%d@%d to %s: %w", orig.Topic, orig.Partition, orig.Offset, d.opts.Topic, err)
	}
	d.m.deadLettered.WithLabelValues(orig.Topic).Inc()
	d.log.WithFields(logrus.Fields{
		"topic": orig.Topic, "partition": orig.Partition, "offset": orig.Offset, "error": text,
	}).Warn("message sent to the dead-letter topic")
	return nil
}
