// Package collector is the collector role: it consumes agents' signed
// batches from csirt.raw.v1, verifies them against the agents enrolled in
// the store, parses their records into ECS events, and publishes them to
// csirt.events.v1 and the store's events collection, committing Kafka
// offsets only once both are durable. Rejected batches go to the DLQ with
// an agent-integrity finding; sequence gaps give coverage findings. This
// file only assembles the parts in collector/internal.
package collector

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/collector/internal/pipeline"
	"github.com/csirt-toscana/platform/collector/internal/verify"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/store"
)

// GroupID is the consumer group every collector instance joins.
const GroupID = "csirt-collector"

// Options configure the collector role.
type Options struct {
	Bus          bus.Options // brokers, TLS, SASL
	BatchTimeout time.Duration
	Compression  bus.Compression
	Store        store.Store
	Logger       logrus.FieldLogger
	Registerer   prometheus.Registerer
}

// Collector is a running collector role.
type Collector struct {
	consumer *bus.Consumer
	producer *bus.Producer
	pipe     *pipeline.Pipeline
}

// New connects the consumer and producer and builds the pipeline.
func New(opts Options) (*Collector, error) {
	if opts.Store == nil {
		return nil, fmt.Errorf("collector: a store is required")
	}
	log := opts.Logger
	if log == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		log = l
	}
	log = log.WithField("component", "collector")
	prod, err := bus.NewProducer(bus.ProducerOptions{Options: opts.Bus, BatchTimeout: opts.BatchTimeout,
		Compression: opts.Compression, Logger: log, Registerer: opts.Registerer})
	if err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	cons, err := bus.NewConsumer(bus.ConsumerOptions{Options: opts.Bus, GroupID: GroupID,
		Topics: []string{bus.TopicRaw}, Logger: log, Registerer: opts.Registerer})
	if err != nil {
		_ = prod.Close()
		return nil, fmt.Errorf("collector: %w", err)
	}
	c := &Collector{consumer: cons, producer: prod}
	fail := func(err error) (*Collector, error) { c.close(); return nil, fmt.Errorf("collector: %w", err) }
	dlq, err := bus.NewDLQ(bus.DLQOptions{Sender: prod})
	if err != nil {
		return fail(err)
	}
	v, err := verify.New(verify.Options{Agents: verify.StoreAgents{Store: opts.Store}, Seqs: verify.StoreSeqs{Store: opts.Store}})
	if err != nil {
		return fail(err)
	}
	c.pipe, err = pipeline.New(pipeline.Options{Source: cons, Sender: prod, DLQ: dlq, Store: opts.Store, Verifier: v, Logger: log})
	if err != nil {
		return fail(err)
	}
	return c, nil
}

// Run processes batches until ctx is cancelled, then makes its last
// outputs durable, commits, and closes its Kafka clients.
func (c *Collector) Run(ctx context.Context) error {
	defer c.close()
	return c.pipe.Run(ctx)
}

func (c *Collector) close() {
	_ = c.consumer.Close()
	_ = c.producer.Close()
}

// Agent is the store document of an enrolled agent: its id, its entity (the
// tenant), its signature algorithm and public key. Enrolment writes it;
// the collector reads it to verify every batch.
type Agent = verify.AgentDoc

// RegisterAgent writes (or replaces) an agent's document in the store,
// in its entity's tenant scope.
func RegisterAgent(ctx context.Context, s store.Store, a Agent) error {
	return verify.PutAgent(ctx, s, a)
}
