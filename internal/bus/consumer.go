package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/sirupsen/logrus"
)

// StartOffset chooses where a consumer group with no committed offset for a
// partition starts reading it.
type StartOffset int

const (
	// StartFirst reads from the oldest retained message (the default).
	StartFirst StartOffset = iota
	// StartLast reads only messages produced after the group joined.
	StartLast
)

// ConsumerOptions configure a Consumer. Zero values take the defaults noted.
type ConsumerOptions struct {
	Options

	// GroupID is the consumer group. Required.
	GroupID string
	// Topics are the topics the group consumes. Required.
	Topics []string
	// StartOffset applies to partitions the group has never committed.
	StartOffset StartOffset

	// SessionTimeout: a member silent this long is removed from the group
	// and its partitions reassigned. Default 10 s (brokers allow >= 6 s).
	SessionTimeout time.Duration
	// HeartbeatInterval. Default 1 s.
	HeartbeatInterval time.Duration
	// RebalanceTimeout bounds how long a rebalance waits for members to
	// rejoin. Default 30 s.
	RebalanceTimeout time.Duration
	// MaxWait is how long a fetch waits for MinBytes. kafka-go also uses
	// it as the time limit for a fetch reply to start arriving, so a short
	// value makes large fetches on a loaded machine time out again and
	// again at one offset. Default 2 s (a fetch returns as soon as data is
	// there: this adds no latency).
	MaxWait time.Duration
	// MinBytes and MaxBytes bound one fetch response. Defaults 1 and 10 MiB.
	MinBytes, MaxBytes int
	// QueueCapacity is how many fetched messages are buffered. Default 1000.
	QueueCapacity int

	Logger     logrus.FieldLogger    // default: a logger that discards
	Registerer prometheus.Registerer // nil: metrics are kept but not registered
}

func (o ConsumerOptions) withDefaults() ConsumerOptions {
	o.Options = o.Options.withDefaults()
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = 10 * time.Second
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = time.Second
	}
	if o.RebalanceTimeout <= 0 {
		o.RebalanceTimeout = 30 * time.Second
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 2 * time.Second
	}
	if o.MinBytes <= 0 {
		o.MinBytes = 1
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 10 << 20
	}
	if o.QueueCapacity <= 0 {
		o.QueueCapacity = 1000
	}
	if o.Logger == nil {
		o.Logger = discardLogger()
	}
	return o
}

// Validate reports the first invalid field, after defaults are applied.
func (o ConsumerOptions) Validate() error {
	if err := o.Options.Validate(); err != nil {
		return err
	}
	if o.GroupID == "" {
		return errors.New("consumer options: group_id is required")
	}
	if len(o.Topics) == 0 {
		return errors.New("consumer options: topics: at least one topic is required")
	}
	if o.StartOffset != StartFirst && o.StartOffset != StartLast {
		return fmt.Errorf("consumer options: start_offset: unknown value %d", o.StartOffset)
	}
	if o.HeartbeatInterval >= o.SessionTimeout {
		return fmt.Errorf("consumer options: heartbeat_interval %s must be below session_timeout %s", o.HeartbeatInterval, o.SessionTimeout)
	}
	return nil
}

// Consumer reads a set of topics as one member of a consumer group.
//
// Contract (at-least-once):
//   - Fetch returns the next message of the partitions assigned to this
//     member, in offset order within a partition.
//   - Commit records that the given messages, and every earlier message of
//     their partitions, are done. Call it only after the outputs derived
//     from them are durable (produced with Producer.Produce, written to the
//     store, or sent to the DLQ). It is synchronous: when it returns nil the
//     group coordinator stored the offsets.
//   - Messages fetched but not committed are delivered again: to this
//     member's successor after Close, a crash, or a session timeout, and to
//     whichever member receives the partition after a rebalance. A rebalance
//     can thus hand out a partition whose tail this member is still
//     processing; the resulting duplicates are absorbed by deterministic ids.
//     A Commit for a partition this member no longer owns is still sent
//     (kafka-go commits with the current generation); it can only move the
//     group's offset to a position whose predecessors were processed, so it
//     may cause redelivery but never loss.
//   - Close leaves the group (its partitions move at once to the other
//     members) without committing anything.
//
// Fetch and Commit may be called from different goroutines; a Consumer is
// not meant for several concurrent Fetch callers.
type Consumer struct {
	r     *kafka.Reader
	m     *metrics
	log   logrus.FieldLogger
	group string
	// topics labels errors that belong to no single topic.
	topics string
}

// NewConsumer builds a Consumer; it joins the group on the first Fetch.
func NewConsumer(opts ConsumerOptions) (*Consumer, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	d, err := opts.dialer()
	if err != nil {
		return nil, fmt.Errorf("building consumer for group %s: %w", opts.GroupID, err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("building consumer for group %s: %w", opts.GroupID, err)
	}
	start := kafka.FirstOffset
	if opts.StartOffset == StartLast {
		start = kafka.LastOffset
	}
	log := opts.Logger.WithFields(logrus.Fields{"component": "bus.consumer", "group": opts.GroupID})
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           opts.Brokers,
		GroupID:           opts.GroupID,
		GroupTopics:       opts.Topics,
		Dialer:            d,
		QueueCapacity:     opts.QueueCapacity,
		MinBytes:          opts.MinBytes,
		MaxBytes:          opts.MaxBytes,
		MaxWait:           opts.MaxWait,
		HeartbeatInterval: opts.HeartbeatInterval,
		SessionTimeout:    opts.SessionTimeout,
		RebalanceTimeout:  opts.RebalanceTimeout,
		CommitInterval:    0, // synchronous commits
		StartOffset:       start,
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    time.Second,
		Logger:            kafka.LoggerFunc(log.Debugf),
		ErrorLogger:       kafka.LoggerFunc(log.Warnf),
	})
	return &Consumer{r: r, m: m, log: log, group: opts.GroupID, topics: strings.Join(opts.Topics, ",")}, nil
}

// Fetch blocks until a message is available or ctx is done. After Close it
// returns an error wrapping io.EOF.
func (c *Consumer) Fetch(ctx context.Context) (Message, error) {
	km, err := c.r.FetchMessage(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.m.consumeErrors.WithLabelValues(c.topics).Inc()
		}
		return Message{}, fmt.Errorf("fetching for group %s: %w", c.group, err)
	}
	m := fromKafka(km)
	c.m.consumed.WithLabelValues(m.Topic).Inc()
	c.m.consumedBytes.WithLabelValues(m.Topic).Add(float64(m.size()))
	if km.HighWaterMark > 0 {
		c.m.lag.WithLabelValues(m.Topic, strconv.Itoa(m.Partition)).Set(float64(km.HighWaterMark - km.Offset - 1))
	}
	return m, nil
}

// Commit stores, for each partition among msgs, the offset after the
// highest message given. See the Consumer contract for when to call it.
func (c *Consumer) Commit(ctx context.Context, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	type tp struct {
		topic string
		part  int
	}
	last := make(map[tp]int64, 4)
	for _, m := range msgs {
		k := tp{m.Topic, m.Partition}
		if o, ok := last[k]; !ok || m.Offset > o {
			last[k] = m.Offset
		}
	}
	kms := make([]kafka.Message, 0, len(last))
	for k, o := range last {
		kms = append(kms, kafka.Message{Topic: k.topic, Partition: k.part, Offset: o})
	}
	if err := c.r.CommitMessages(ctx, kms...); err != nil {
		c.m.consumeErrors.WithLabelValues(msgs[0].Topic).Inc()
		return fmt.Errorf("committing %d offsets for group %s: %w", len(kms), c.group, err)
	}
	for _, m := range msgs {
		c.m.commits.WithLabelValues(m.Topic).Inc()
	}
	return nil
}

// Close leaves the group without committing. Fetches in progress return.
func (c *Consumer) Close() error {
	if err := c.r.Close(); err != nil {
		return fmt.Errorf("closing consumer for group %s: %w", c.group, err)
	}
	return nil
}
