// Package kafkaout is the agent's synchronous Kafka producer: one Produce
// call writes the messages to the leaders of their partitions and returns
// once the brokers acknowledged them with acks=all. Unlike internal/bus's
// producer (a kafka-go Writer with its batching goroutines and timers) it
// keeps one plain connection per partition leader and does the request and
// the response on the caller's goroutine, so a shipped batch costs the agent
// one network round trip and no goroutine hand-offs (docs/agent.md, "Cores").
//
// Messages go to the partition their key maps to with Murmur2, as with the
// Java clients and internal/bus, so an agent's batches share one partition
// whichever producer wrote them.
package kafkaout

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/internal/bus"
)

// Options configure a Producer. Brokers is required.
type Options struct {
	// Brokers are the bootstrap host:port addresses, tried in order.
	Brokers []string
	// TLS enables TLS (mutual TLS when it holds a client certificate).
	TLS *tls.Config
	// ClientID is sent to the brokers. Default "csirt-agent".
	ClientID string
	// Compression of record batches: zstd (default; the fastest level, see
	// zstdCodec), lz4, snappy, gzip or none.
	Compression bus.Compression
	// DialTimeout bounds a connection set-up (TCP, TLS, metadata). Default
	// 10 s.
	DialTimeout time.Duration
	// WriteTimeout bounds one produce request and its acknowledgement.
	// Default 10 s.
	WriteTimeout time.Duration
	// MetadataTTL is how long the partition count and leaders of a topic
	// are trusted before they are read again. Default 1 minute. Errors
	// that mean "leader moved" read them again at once.
	MetadataTTL time.Duration

	Now    func() time.Time   // default time.Now
	Logger logrus.FieldLogger // default: discard
}

func (o Options) withDefaults() (Options, kafka.CompressionCodec, error) {
	if o.ClientID == "" {
		o.ClientID = "csirt-agent"
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MetadataTTL <= 0 {
		o.MetadataTTL = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Logger = l
	}
	if len(o.Brokers) == 0 {
		return o, nil, errors.New("kafka producer options: no broker address: set at least one host:port")
	}
	for _, b := range o.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return o, nil, fmt.Errorf("kafka producer options: broker address %q is not host:port: %w", b, err)
		}
	}
	var codec kafka.CompressionCodec
	switch bus.Compression(strings.ToLower(strings.TrimSpace(string(o.Compression)))) {
	case "", bus.CompressionZstd:
		z, err := newZstdCodec()
		if err != nil {
			return o, nil, fmt.Errorf("kafka producer options: zstd: %w", err)
		}
		codec = z
	case bus.CompressionLZ4:
		codec = kafka.Lz4.Codec()
	case bus.CompressionSnappy:
		codec = kafka.Snappy.Codec()
	case bus.CompressionGzip:
		codec = kafka.Gzip.Codec()
	case bus.CompressionNone:
		codec = nil
	default:
		return o, nil, fmt.Errorf("kafka producer options: unknown compression %q (want zstd, lz4, snappy, gzip or none)", string(o.Compression))
	}
	return o, codec, nil
}

// topicPartition names one partition.
type topicPartition struct {
	topic     string
	partition int
}

// topicMeta is what the producer knows of a topic's partitions.
type topicMeta struct {
	leaders []kafka.Partition // indexed by partition id
	ids     []int             // 0..n-1, for the balancer
	read    time.Time
}

// Producer writes messages with acks=all over one connection per partition
// leader. It is safe for concurrent use; calls are serialised.
type Producer struct {
	opts   Options
	codec  kafka.CompressionCodec
	dialer *kafka.Dialer
	log    logrus.FieldLogger

	mu    sync.Mutex
	meta  map[string]*topicMeta
	conns map[topicPartition]*kafka.Conn
	// groups and order are reused by Produce (under mu).
	groups map[topicPartition][]kafka.Message
	order  []topicPartition
	closed bool
}

// New checks the options and builds a Producer. It does not contact the
// brokers until the first Produce.
func New(opts Options) (*Producer, error) {
	opts, codec, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Producer{
		opts:  opts,
		codec: codec,
		dialer: &kafka.Dialer{
			ClientID:  opts.ClientID,
			Timeout:   opts.DialTimeout,
			DualStack: true,
			TLS:       opts.TLS,
		},
		log:    opts.Logger.WithField("component", "kafkaout"),
		meta:   map[string]*topicMeta{},
		conns:  map[topicPartition]*kafka.Conn{},
		groups: map[topicPartition][]kafka.Message{},
	}, nil
}

// ErrClosed is returned by Produce after Close.
var ErrClosed = errors.New("kafka producer is closed")

// Produce writes msgs and returns nil only once the brokers acknowledged
// every one of them with acks=all. Every message must name its Topic; its
// Key chooses the partition (Murmur2, as the Java clients). Messages of one
// partition are written as one record batch, in order.
//
// On error some messages may have been written (the caller retries, which
// can duplicate them; consumers de-duplicate). A connection that fails is
// closed and the next call dials the partition's leader again; a failure on
// a connection that had been idle (closed by the broker) or on a leader
// that moved is retried once at once on a new connection. When ctx ends
// Produce returns an error wrapping ctx's.
func (p *Producer) Produce(ctx context.Context, msgs ...bus.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if err := p.group(ctx, msgs); err != nil {
		return err
	}
	for _, tp := range p.order {
		if err := p.write(ctx, tp, p.groups[tp]); err != nil {
			return err
		}
	}
	return nil
}

// group sorts msgs into p.groups by partition, keeping their order.
func (p *Producer) group(ctx context.Context, msgs []bus.Message) error {
	for tp, g := range p.groups {
		clear(g)
		p.groups[tp] = g[:0]
	}
	p.order = p.order[:0]
	var bal kafka.Murmur2Balancer
	for i, m := range msgs {
		if m.Topic == "" {
			return fmt.Errorf("producing message %d: no topic", i)
		}
		md, err := p.metadata(ctx, m.Topic)
		if err != nil {
			return err
		}
		km := kafka.Message{Key: m.Key, Value: m.Value, Time: m.Time}
		for _, h := range m.Headers {
			km.Headers = append(km.Headers, kafka.Header{Key: h.Key, Value: h.Value})
		}
		tp := topicPartition{m.Topic, bal.Balance(km, md.ids...)}
		g, seen := p.groups[tp]
		if !seen || len(g) == 0 {
			p.order = append(p.order, tp)
		}
		p.groups[tp] = append(g, km)
	}
	return nil
}

// metadata returns the topic's partitions, read again when older than
// MetadataTTL.
func (p *Producer) metadata(ctx context.Context, topic string) (*topicMeta, error) {
	if md := p.meta[topic]; md != nil && p.opts.Now().Sub(md.read) < p.opts.MetadataTTL {
		return md, nil
	}
	parts, err := p.readPartitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, pt := range parts {
		if pt.Topic == topic {
			n = max(n, pt.ID+1)
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("Kafka reports no partition of topic %s: create the topic (csirt serve and the collector's bootstrap do)", topic) //nolint:staticcheck // ST1005: Kafka is a name
	}
	md := &topicMeta{leaders: make([]kafka.Partition, n), ids: make([]int, n), read: p.opts.Now()}
	for i := range md.ids {
		md.ids[i] = i
	}
	for _, pt := range parts {
		if pt.Topic == topic && pt.ID >= 0 {
			md.leaders[pt.ID] = pt
		}
	}
	// Connections to a partition whose leader changed are closed; the next
	// write dials the new leader.
	for tp, c := range p.conns {
		if tp.topic != topic {
			continue
		}
		if tp.partition >= n || !sameBroker(md.leaders[tp.partition].Leader, c.Broker()) {
			p.drop(tp)
		}
	}
	p.meta[topic] = md
	return md, nil
}

// sameBroker compares broker ids: a connection knows the address it
// dialed, which need not be the advertised host name.
func sameBroker(a, b kafka.Broker) bool { return a.ID == b.ID }

// readPartitions asks an open connection, or else each bootstrap broker in
// turn, for the topic's partitions.
func (p *Producer) readPartitions(ctx context.Context, topic string) ([]kafka.Partition, error) {
	for tp, c := range p.conns {
		if err := p.deadline(ctx, c); err != nil {
			return nil, err
		}
		parts, err := c.ReadPartitions(topic)
		if err == nil {
			return parts, nil
		}
		p.log.WithError(err).WithField("broker", brokerAddr(c.Broker())).Debug("metadata request on an open connection failed; asking the bootstrap brokers")
		p.drop(tp)
		break
	}
	var errs []error
	for _, addr := range p.opts.Brokers {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading the partitions of %s: %w", topic, err)
		}
		c, err := p.dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("connecting to %s: %w", addr, err))
			continue
		}
		parts, err := p.readOn(ctx, c, topic)
		_ = c.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("metadata from %s: %w", addr, err))
			continue
		}
		return parts, nil
	}
	return nil, fmt.Errorf("reading the partitions of %s from the bootstrap brokers: %w", topic, errors.Join(errs...))
}

func (p *Producer) readOn(ctx context.Context, c *kafka.Conn, topic string) ([]kafka.Partition, error) {
	if err := p.deadline(ctx, c); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	return c.ReadPartitions(topic)
}

// deadline bounds the next request on c by WriteTimeout and ctx.
func (p *Producer) deadline(ctx context.Context, c *kafka.Conn) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := p.opts.Now().Add(p.opts.WriteTimeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	return c.SetDeadline(d)
}

// write produces one partition's messages, retrying once on a new
// connection when a reused one turns out to be dead or no longer the
// leader's.
func (p *Producer) write(ctx context.Context, tp topicPartition, kms []kafka.Message) error {
	for attempt := 0; ; attempt++ {
		c, reused, err := p.conn(ctx, tp)
		if err != nil {
			return err
		}
		err = p.writeOn(ctx, c, kms)
		if err == nil {
			return nil
		}
		p.drop(tp)
		if ctx.Err() != nil {
			return fmt.Errorf("producing to %s partition %d: %w", tp.topic, tp.partition, ctx.Err())
		}
		if leaderMoved(err) {
			delete(p.meta, tp.topic)
		}
		if attempt == 0 && reused && (leaderMoved(err) || !isKafkaError(err)) {
			p.log.WithError(err).WithField("broker", brokerAddr(c.Broker())).Debug("produce on a reused connection failed; retrying once on a new one")
			if tp2, err := p.repartition(ctx, tp, kms); err == nil {
				tp = tp2
				continue
			}
		}
		return fmt.Errorf("producing %d messages to %s partition %d at broker %s: %w", len(kms), tp.topic, tp.partition, brokerAddr(c.Broker()), err)
	}
}

// repartition re-reads the topic's partitions after an error and returns
// where the messages (all with one key's partition) go now.
func (p *Producer) repartition(ctx context.Context, tp topicPartition, kms []kafka.Message) (topicPartition, error) {
	md, err := p.metadata(ctx, tp.topic)
	if err != nil {
		return tp, err
	}
	var bal kafka.Murmur2Balancer
	np := bal.Balance(kms[0], md.ids...)
	for _, m := range kms[1:] {
		if bal.Balance(m, md.ids...) != np {
			return tp, errors.New("messages of one batch map to different partitions after a metadata change")
		}
	}
	return topicPartition{tp.topic, np}, nil
}

func (p *Producer) writeOn(ctx context.Context, c *kafka.Conn, kms []kafka.Message) error {
	if err := p.deadline(ctx, c); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	_, err := c.WriteCompressedMessages(p.codec, kms...)
	return err
}

// conn returns the open connection to tp's leader, or dials it; reused
// tells which.
func (p *Producer) conn(ctx context.Context, tp topicPartition) (*kafka.Conn, bool, error) {
	if c := p.conns[tp]; c != nil {
		return c, true, nil
	}
	md, err := p.metadata(ctx, tp.topic)
	if err != nil {
		return nil, false, err
	}
	if tp.partition >= len(md.leaders) {
		return nil, false, fmt.Errorf("partition %d of %s is gone (the topic has %d): retry", tp.partition, tp.topic, len(md.leaders))
	}
	pt := md.leaders[tp.partition]
	if pt.Leader.Host == "" || pt.Leader.ID < 0 {
		delete(p.meta, tp.topic)
		return nil, false, fmt.Errorf("partition %d of %s has no leader at the moment (broker starting or electing): retry", tp.partition, tp.topic)
	}
	c, err := p.dialer.DialPartition(ctx, "tcp", "", pt)
	if err != nil {
		delete(p.meta, tp.topic)
		return nil, false, fmt.Errorf("connecting to the leader of %s partition %d at %s: %w", tp.topic, tp.partition, brokerAddr(pt.Leader), err)
	}
	if err := c.SetRequiredAcks(int(kafka.RequireAll)); err != nil {
		_ = c.Close()
		return nil, false, fmt.Errorf("setting acks=all: %w", err)
	}
	p.conns[tp] = c
	return c, false, nil
}

// drop closes and forgets tp's connection.
func (p *Producer) drop(tp topicPartition) {
	if c := p.conns[tp]; c != nil {
		_ = c.Close()
		delete(p.conns, tp)
	}
}

func brokerAddr(b kafka.Broker) string {
	return net.JoinHostPort(b.Host, fmt.Sprint(b.Port))
}

// leaderMoved reports Kafka errors that mean the partition's leader is
// elsewhere or being elected.
func leaderMoved(err error) bool {
	return errors.Is(err, kafka.NotLeaderForPartition) || errors.Is(err, kafka.LeaderNotAvailable) ||
		errors.Is(err, kafka.UnknownTopicOrPartition) || errors.Is(err, kafka.BrokerNotAvailable) ||
		errors.Is(err, kafka.FencedLeaderEpoch) || errors.Is(err, kafka.UnknownLeaderEpoch)
}

func isKafkaError(err error) bool {
	var ke kafka.Error
	return errors.As(err, &ke)
}

// Close closes the connections. Produce fails with ErrClosed afterwards.
func (p *Producer) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for tp := range p.conns {
		p.drop(tp)
	}
	return nil
}
