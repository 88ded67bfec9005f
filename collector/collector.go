// Package collector is the collector role: it consumes agents' signed
// batches from csirt.raw.v1, verifies them against the agents enrolled in
// the store, parses their records into ECS events, and publishes them to
// csirt.events.v1 and the store's events collection, committing Kafka
// offsets only once both are durable. Rejected batches go to the DLQ with
// an integrity finding; sequence gaps give coverage findings; both are
// published to csirt.findings.v1 and the store (internal/finding). Events
// are enriched (entity, asset, host aliases), agents' heartbeats and
// activity update their documents, and a silence detector raises coverage
// findings for agents and entities that stopped sending. This file only
// assembles the parts in collector/internal.
package collector

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/collector/internal/enrich"
	"github.com/csirt-toscana/platform/collector/internal/pipeline"
	"github.com/csirt-toscana/platform/collector/internal/silence"
	"github.com/csirt-toscana/platform/collector/internal/verify"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
)

// GroupID is the consumer group every collector instance joins.
const GroupID = "csirt-collector"

// FetchMaxWait is the consumer's MaxWait on csirt.raw.v1.
const FetchMaxWait = 3 * time.Second

// Options configure the collector role.
type Options struct {
	Bus          bus.Options // brokers, TLS, SASL
	BatchTimeout time.Duration
	Compression  bus.Compression
	Store        store.Store
	Logger       logrus.FieldLogger
	Registerer   prometheus.Registerer

	// SilenceCheck is how often agents' and entities' activity is
	// compared with their thresholds (config collector.silence_check);
	// default 1 min.
	SilenceCheck time.Duration
	// EntitySilenceAfter (config collector.entity_silence_after); default 6 h.
	EntitySilenceAfter time.Duration
	// Instance names this collector in the silence-check lease; default
	// host name and process id.
	Instance string
	// ActivityInterval is the least time between two writes of one
	// agent's document for its activity; default 1 min.
	ActivityInterval time.Duration
	// EnrichTTL is how long entity and asset data are cached; default 5 min.
	EnrichTTL time.Duration

	// Topics and consumer group; defaults: the bus.Topic* names and
	// GroupID. Tests and staging deployments set their own.
	RawTopic, EventsTopic, FindingsTopic, DLQTopic string
	GroupID                                        string
}

// Collector is a running collector role.
type Collector struct {
	consumer *bus.Consumer
	producer *bus.Producer
	pipe     *pipeline.Pipeline
	silence  *silence.Detector
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
	group, raw := opts.GroupID, opts.RawTopic
	if group == "" {
		group = GroupID
	}
	if raw == "" {
		raw = bus.TopicRaw
	}
	// kafka-go uses MaxWait as the deadline for the start of a fetch
	// response too: with the bus default (250 ms) a busy machine times out
	// on a response full of large batches and retries the same offset
	// forever. The broker answers as soon as data is there (MinBytes 1),
	// so a longer wait costs no latency.
	cons, err := bus.NewConsumer(bus.ConsumerOptions{Options: opts.Bus, GroupID: group,
		Topics: []string{raw}, MaxWait: FetchMaxWait, Logger: log, Registerer: opts.Registerer})
	if err != nil {
		_ = prod.Close()
		return nil, fmt.Errorf("collector: %w", err)
	}
	c := &Collector{consumer: cons, producer: prod}
	fail := func(err error) (*Collector, error) { c.close(); return nil, fmt.Errorf("collector: %w", err) }
	dlq, err := bus.NewDLQ(bus.DLQOptions{Sender: prod, Topic: opts.DLQTopic})
	if err != nil {
		return fail(err)
	}
	v, err := verify.New(verify.Options{Agents: verify.StoreAgents{Store: opts.Store}, Seqs: verify.StoreSeqs{Store: opts.Store}})
	if err != nil {
		return fail(err)
	}
	dir := &enrich.Directory{Store: opts.Store, TTL: opts.EnrichTTL}
	c.pipe, err = pipeline.New(pipeline.Options{Source: cons, Sender: prod, DLQ: dlq, Store: opts.Store, Verifier: v, Logger: log,
		EventsTopic: opts.EventsTopic, FindingsTopic: opts.FindingsTopic, Enricher: enrich.Default(dir),
		Activity: &pipeline.AgentActivity{Store: opts.Store, Interval: opts.ActivityInterval}})
	if err != nil {
		return fail(err)
	}
	instance := opts.Instance
	if instance == "" {
		host, _ := os.Hostname()
		instance = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	c.silence, err = silence.New(silence.Options{Store: opts.Store,
		Publisher: &finding.Publisher{Sender: prod, Store: opts.Store, Topic: opts.FindingsTopic},
		Check:     opts.SilenceCheck, EntityAfter: opts.EntitySilenceAfter, Instance: instance, Logger: log})
	if err != nil {
		return fail(err)
	}
	return c, nil
}

// Run processes batches and checks for silence until ctx is cancelled,
// then makes its last outputs durable, commits, and closes its Kafka
// clients. An error of the pipeline stops the silence checks too.
func (c *Collector) Run(ctx context.Context) error {
	defer c.close()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.silence.Run(sctx) }()
	err := c.pipe.Run(ctx)
	stop()
	<-done
	return err
}

// Stats returns the pipeline's counters (read them after Run returned).
func (c *Collector) Stats() pipeline.Stats { return c.pipe.Stats() }

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
