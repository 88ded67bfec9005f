// Package bus moves messages between the platform's roles over the Kafka
// protocol: it owns the topic and header names, the producer, the
// consumer-group consumer, the dead-letter queue helper and topic bootstrap.
// The same code (segmentio/kafka-go) talks to a real Kafka cluster and to the
// embedded broker of single-node mode (internal/broker).
//
// Reliability contract (DESIGN.md, "Reliability model"): Producer.Produce
// returns only after the broker acknowledged every message with acks=all, and
// a consumer commits an input only after the outputs derived from it are
// durable. Delivery is therefore at-least-once; consumers make effects
// idempotent with deterministic ids.
package bus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Topic names. The version suffix is part of the contract: an incompatible
// change of key or value gets a new topic.
const (
	TopicRaw      = "csirt.raw.v1"      // key agent id, value signed batch envelope
	TopicEvents   = "csirt.events.v1"   // key entity id, value one normalised event
	TopicFindings = "csirt.findings.v1" // key entity id, value one finding
	TopicDLQ      = "csirt.dlq.v1"      // key and value of the failed message, error headers
)

// Header names.
const (
	// HeaderSchema carries the schema version of the value (e.g. "1.0").
	HeaderSchema = "csirt-schema"

	// Dead-letter headers, set by DLQ.Send.
	HeaderError           = "csirt-error"            // error text of the failure
	HeaderSourceTopic     = "csirt-source-topic"     // topic the message was read from
	HeaderSourcePartition = "csirt-source-partition" // partition, decimal
	HeaderSourceOffset    = "csirt-source-offset"    // offset, decimal
	HeaderFailedAt        = "csirt-failed-at"        // RFC 3339 with nanoseconds, UTC
)

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Message is one Kafka record. Producers set Topic, Key, Value, Headers and
// optionally Time (zero means "now"). Consumers receive all fields filled in;
// Partition and Offset identify the record for Commit and for the DLQ.
type Message struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Time      time.Time
}

// Header returns the value of the first header named key.
func (m Message) Header(key string) ([]byte, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return h.Value, true
		}
	}
	return nil, false
}

// size is the number of key, value and header bytes, used for metrics.
func (m Message) size() int {
	n := len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// SASL mechanisms supported by Options.SASL.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASL holds SASL credentials. The password is never printed by String.
type SASL struct {
	Mechanism string // SASLPlain or SASLScramSHA512
	Username  string
	Password  string
}

// String describes the credentials without the password.
func (s SASL) String() string {
	return fmt.Sprintf("SASL{%s user=%q password=[redacted]}", s.Mechanism, s.Username)
}

// Options tell every client how to reach and authenticate to the brokers.
type Options struct {
	// Brokers are the bootstrap host:port addresses. Required.
	Brokers []string
	// TLS enables TLS; it is mutual TLS when it holds client certificates
	// (Certificates or GetClientCertificate).
	TLS *tls.Config
	// SASL enables SASL authentication (over TLS when TLS is set).
	SASL *SASL
	// ClientID is sent to the brokers (logs, quotas). Default "csirt".
	ClientID string
	// DialTimeout bounds connection set-up. Default 10 s.
	DialTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.ClientID == "" {
		o.ClientID = "csirt"
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	return o
}

// Validate reports the first invalid field.
func (o Options) Validate() error {
	if len(o.Brokers) == 0 {
		return errors.New("bus options: brokers: at least one address is required")
	}
	for _, b := range o.Brokers {
		if b == "" {
			return errors.New("bus options: brokers: empty address")
		}
	}
	if o.SASL != nil {
		if _, err := o.SASL.mechanism(); err != nil {
			return fmt.Errorf("bus options: sasl: %w", err)
		}
	}
	return nil
}

func (s *SASL) mechanism() (sasl.Mechanism, error) {
	if s == nil {
		return nil, nil
	}
	if s.Username == "" {
		return nil, errors.New("username is required")
	}
	switch s.Mechanism {
	case SASLPlain:
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case SASLScramSHA512:
		m, err := scram.Mechanism(scram.SHA512, s.Username, s.Password)
		if err != nil {
			return nil, fmt.Errorf("building SCRAM-SHA-512 mechanism: %w", err)
		}
		return m, nil
	default:
		return nil, fmt.Errorf("unsupported mechanism %q (want %s or %s)", s.Mechanism, SASLPlain, SASLScramSHA512)
	}
}

// transport builds the kafka-go transport used by writers and admin clients.
func (o Options) transport() (*kafka.Transport, error) {
	mech, err := o.SASL.mechanism()
	if err != nil {
		return nil, fmt.Errorf("configuring SASL: %w", err)
	}
	return &kafka.Transport{
		DialTimeout: o.DialTimeout,
		ClientID:    o.ClientID,
		TLS:         o.TLS,
		SASL:        mech,
		MetadataTTL: 30 * time.Second,
	}, nil
}

// dialer builds the kafka-go dialer used by readers.
func (o Options) dialer() (*kafka.Dialer, error) {
	mech, err := o.SASL.mechanism()
	if err != nil {
		return nil, fmt.Errorf("configuring SASL: %w", err)
	}
	return &kafka.Dialer{
		ClientID:      o.ClientID,
		Timeout:       o.DialTimeout,
		DualStack:     true,
		TLS:           o.TLS,
		SASLMechanism: mech,
	}, nil
}

func toKafkaHeaders(hs []Header) []kafka.Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]kafka.Header, len(hs))
	for i, h := range hs {
		out[i] = kafka.Header{Key: h.Key, Value: h.Value}
	}
	return out
}

func fromKafka(m kafka.Message) Message {
	var hs []Header
	if len(m.Headers) > 0 {
		hs = make([]Header, len(m.Headers))
		for i, h := range m.Headers {
			hs[i] = Header{Key: h.Key, Value: h.Value}
		}
	}
	return Message{
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		Key:       m.Key,
		Value:     m.Value,
		Headers:   hs,
		Time:      m.Time,
	}
}
