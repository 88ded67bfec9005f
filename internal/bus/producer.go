package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/sirupsen/logrus"
)

// Compression names a record batch codec.
type Compression string

// Supported codecs. The zero value means CompressionZstd.
const (
	CompressionZstd   Compression = "zstd"
	CompressionLZ4    Compression = "lz4"
	CompressionSnappy Compression = "snappy"
	CompressionGzip   Compression = "gzip"
	CompressionNone   Compression = "none"
)

// ParseCompression parses a codec name as written in configuration files.
func ParseCompression(s string) (Compression, error) {
	c := Compression(strings.ToLower(strings.TrimSpace(s)))
	if _, err := c.codec(); err != nil {
		return "", err
	}
	return c, nil
}

func (c Compression) codec() (kafka.Compression, error) {
	switch c {
	case "", CompressionZstd:
		return kafka.Zstd, nil
	case CompressionLZ4:
		return kafka.Lz4, nil
	case CompressionSnappy:
		return kafka.Snappy, nil
	case CompressionGzip:
		return kafka.Gzip, nil
	case CompressionNone:
		return 0, nil
	default:
		return 0, fmt.Errorf("unknown compression %q (want zstd, lz4, snappy, gzip or none)", string(c))
	}
}

// MaxBatchTimeout is the largest BatchTimeout a producer accepts: a
// synchronous Produce of one message waits up to BatchTimeout for company.
const MaxBatchTimeout = 50 * time.Millisecond

// ProducerOptions configure a Producer. Zero values take the defaults noted.
type ProducerOptions struct {
	Options

	// BatchTimeout is how long a partition batch waits for more messages
	// before it is sent. Default 10 ms, at most MaxBatchTimeout.
	BatchTimeout time.Duration
	// BatchSize is the most messages in one partition batch. Default 1000.
	BatchSize int
	// BatchBytes is the most bytes in one partition batch. Default 1,000,000
	// (below the brokers' default message.max.bytes).
	BatchBytes int64
	// Compression of record batches. Default zstd.
	Compression Compression
	// MaxAttempts is how many times a batch is tried. Default 10.
	MaxAttempts int
	// WriteTimeout bounds one produce request. Default 10 s.
	WriteTimeout time.Duration

	Logger     logrus.FieldLogger    // default: a logger that discards
	Registerer prometheus.Registerer // nil: metrics are kept but not registered
}

func (o ProducerOptions) withDefaults() ProducerOptions {
	o.Options = o.Options.withDefaults()
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = 10 * time.Millisecond
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 1_000_000
	}
	if o.Compression == "" {
		o.Compression = CompressionZstd
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = discardLogger()
	}
	return o
}

// Validate reports the first invalid field, after defaults are applied.
func (o ProducerOptions) Validate() error {
	if err := o.Options.Validate(); err != nil {
		return err
	}
	if o.BatchTimeout > MaxBatchTimeout {
		return fmt.Errorf("producer options: batch_timeout %s exceeds %s", o.BatchTimeout, MaxBatchTimeout)
	}
	if _, err := o.Compression.codec(); err != nil {
		return fmt.Errorf("producer options: compression: %w", err)
	}
	return nil
}

// Producer writes messages to any topic with acks=all. It is safe for
// concurrent use; concurrent Produce calls share batches.
type Producer struct {
	w   *kafka.Writer
	m   *metrics
	log logrus.FieldLogger
}

// NewProducer builds a Producer. It does not contact the brokers until the
// first Produce.
func NewProducer(opts ProducerOptions) (*Producer, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	codec, _ := opts.Compression.codec()
	tr, err := opts.transport()
	if err != nil {
		return nil, fmt.Errorf("building producer: %w", err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("building producer: %w", err)
	}
	log := opts.Logger.WithField("component", "bus.producer")
	w := &kafka.Writer{
		Addr:         kafka.TCP(opts.Brokers...),
		Balancer:     &kafka.Murmur2Balancer{}, // same partition for a key as the Java clients
		MaxAttempts:  opts.MaxAttempts,
		BatchSize:    opts.BatchSize,
		BatchBytes:   opts.BatchBytes,
		BatchTimeout: opts.BatchTimeout,
		WriteTimeout: opts.WriteTimeout,
		RequiredAcks: kafka.RequireAll,
		Compression:  codec,
		Transport:    tr,
		ErrorLogger:  kafka.LoggerFunc(log.Warnf),
		Logger:       kafka.LoggerFunc(log.Debugf),
	}
	return &Producer{w: w, m: m, log: log}, nil
}

// Produce writes msgs and returns nil only after the brokers acknowledged
// every one of them (acks=all), so the caller may then commit the inputs the
// messages were derived from. Every message must name its Topic.
//
// On error some messages may have been written: the caller retries the whole
// call, which can duplicate messages (consumers deduplicate by id). When ctx
// is cancelled Produce returns ctx's error; messages already handed to the
// brokers may still be written.
func (p *Producer) Produce(ctx context.Context, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	kms := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		if m.Topic == "" {
			return fmt.Errorf("producing message %d: no topic", i)
		}
		kms[i] = kafka.Message{Topic: m.Topic, Key: m.Key, Value: m.Value, Headers: toKafkaHeaders(m.Headers), Time: m.Time}
	}
	err := p.w.WriteMessages(ctx, kms...)
	var werrs kafka.WriteErrors
	switch {
	case err == nil:
		for _, m := range msgs {
			p.count(m, nil)
		}
		return nil
	case errors.As(err, &werrs) && len(werrs) == len(msgs):
		var first error
		failed := 0
		for i, m := range msgs {
			p.count(m, werrs[i])
			if werrs[i] != nil {
				failed++
				if first == nil {
					first = fmt.Errorf("producing to %s: %w", m.Topic, werrs[i])
				}
			}
		}
		return fmt.Errorf("%d of %d messages failed: %w", failed, len(msgs), first)
	default:
		for _, m := range msgs {
			p.m.produceErrors.WithLabelValues(m.Topic).Inc()
		}
		return fmt.Errorf("producing to %s: %w", msgs[0].Topic, err)
	}
}

func (p *Producer) count(m Message, err error) {
	if err != nil {
		p.m.produceErrors.WithLabelValues(m.Topic).Inc()
		return
	}
	p.m.produced.WithLabelValues(m.Topic).Inc()
	p.m.producedBytes.WithLabelValues(m.Topic).Add(float64(m.size()))
}

// Close flushes pending messages and releases the connections. Produce must
// not be called after Close.
func (p *Producer) Close() error {
	if err := p.w.Close(); err != nil {
		return fmt.Errorf("closing producer: %w", err)
	}
	return nil
}
