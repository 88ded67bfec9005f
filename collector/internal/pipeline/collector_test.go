package pipeline_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/collector"
	"github.com/csirt-toscana/platform/collector/internal/enrich"
	"github.com/csirt-toscana/platform/collector/internal/verify"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/elastic"
	"github.com/csirt-toscana/platform/internal/testenv"
)

var million = flag.Bool("million", false, "run TestCollectorMillion (1,000,000 records through the collector on real Kafka and Elasticsearch)")

// EnvMillion also enables TestCollectorMillion.
const EnvMillion = "CSIRT_COLLECTOR_MILLION"

// TestCollector50k runs the acceptance scenario of issue 6 with 50,000
// records: it runs whenever the real services are available.
func TestCollector50k(t *testing.T) { runCollectorScenario(t, 50_000) }

// TestCollectorMillion is the same scenario with 1,000,000 records (minutes):
//
//	go test -run TestCollectorMillion -v -timeout 2h ./collector/internal/pipeline/ -args -million
//
// (or CSIRT_COLLECTOR_MILLION=1 instead of -args -million).
func TestCollectorMillion(t *testing.T) {
	if !*million && os.Getenv(EnvMillion) == "" {
		t.Skip("1M-record run is opt-in: pass -million or set " + EnvMillion + "=1")
	}
	runCollectorScenario(t, 1_000_000)
}

const (
	nAgents     = 5
	perBatch    = 500
	authLog     = "/var/log/auth.log"
	entityA     = "comune-alpha"
	entityB     = "comune-beta"
	entityAName = "Comune di Alpha"
)

type agentSim struct {
	id, entity string
	signer     envelope.Signer
	next       uint64
}

var simLines = []string{
	"Nov 22 10:%02d:%02d srv sshd[%d]: Failed password for invalid user admin from 203.0.113.%d port 22 ssh2",
	"Nov 22 10:%02d:%02d srv sshd[%d]: Accepted publickey for deploy from 192.0.2.%d port 50022 ssh2: ED25519 SHA256:abc",
	"Nov 22 10:%02d:%02d srv sudo[%d]:   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id %d",
}

// seal builds a batch of n records starting at first (the agent's next
// sequence when 0) on stream, signed by signer (the agent's key when nil).
func (a *agentSim) seal(t testing.TB, stream string, first uint64, n int, signer envelope.Signer, kind envelope.Kind, data func(seq uint64) []byte) []byte {
	t.Helper()
	if first == 0 {
		first = a.next + 1
	}
	if signer == nil {
		signer = a.signer
	}
	b := &envelope.Batch{AgentID: a.id, EntityID: a.entity, StreamID: stream, FirstSeq: first, Created: time.Now()}
	b.Records = make([]envelope.Record, n)
	for i := range n {
		seq := first + uint64(i)                                                                                     //nolint:gosec // G115: small test numbers
		b.Records[i] = envelope.Record{Time: time.Unix(1763805600+int64(seq%86400), 0), Kind: kind, Data: data(seq)} //nolint:gosec // G115
	}
	out, err := envelope.Seal(b, signer)
	require.NoError(t, err)
	if last := b.LastSeq(); last > a.next && stream == authLog {
		a.next = last
	}
	return out
}

func line(seq uint64) []byte {
	s := int(seq % 1_000_000) //nolint:gosec // G115: bounded
	return fmt.Appendf(nil, simLines[s%len(simLines)], (s/60)%60, s%60, 1000+s%5000, s%250)
}

func enrol(t testing.TB, st store.Store, id, entity string) *agentSim {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := envelope.NewEd25519Signer("k-"+id, priv)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	require.NoError(t, collector.RegisterAgent(context.Background(), st, collector.Agent{
		AgentID: id, EntityID: entity, Hostname: "srv-" + id, Algorithm: envelope.Ed25519.String(), KeyID: "k-" + id,
		PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	}))
	return &agentSim{id: id, entity: entity, signer: s}
}

func runCollectorScenario(t *testing.T, records int) {
	kafkaAddr := testenv.Kafka(t)
	esURL := testenv.Elasticsearch(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	run := hex.EncodeToString(rnd[:])
	ctx := context.Background()
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)

	zero := 0
	es, err := elastic.Open(ctx, elastic.Options{Addresses: []string{esURL}, IndexPrefix: "test-collector-m-" + run,
		Replicas: &zero, RefreshInterval: 30 * time.Second, Logger: l}) // the test refreshes when it counts
	require.NoError(t, err)
	t.Cleanup(func() {
		// Without the data-streams module (the test distribution) Drop
		// empties the streams by query, which a busy node may not finish
		// at once: retry.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		var err error
		for range 5 {
			if err = es.Drop(ctx); err == nil {
				break
			}
			t.Logf("dropping test indices (retrying): %v", err)
		}
		if err != nil {
			t.Errorf("dropping test indices: %v", err)
		}
		_ = es.Close()
	})
	busOpts := bus.Options{Brokers: []string{kafkaAddr}}
	suffix := ".test-m-" + run
	raw, events, findings, dlq := bus.TopicRaw+suffix, bus.TopicEvents+suffix, bus.TopicFindings+suffix, bus.TopicDLQ+suffix
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	require.NoError(t, bus.EnsureTopics(tctx, busOpts, []bus.TopicSpec{
		{Name: raw, Partitions: 3}, {Name: events, Partitions: 3}, {Name: findings, Partitions: 1}, {Name: dlq, Partitions: 1}}))
	cancel()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cl := &kafka.Client{Addr: kafka.TCP(kafkaAddr)}
		if _, err := cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{raw, events, findings, dlq}}); err != nil {
			t.Logf("deleting test topics: %v", err)
		}
	})

	// Entities, an asset with an alias, five agents with real keys and an
	// intruder whose key signs a batch in another agent's name.
	src, _ := json.Marshal(map[string]any{"name": entityAName, "kind": "comune", "nis2": true})
	_, err = es.Put(ctx, store.TenantScope(entityA), store.Entities, store.Doc{ID: entityA, Tenant: entityA, Source: src}, store.WriteOptions{})
	require.NoError(t, err)
	require.NoError(t, enrich.PutAsset(ctx, es, entityA, enrich.AssetDoc{Name: "srv-main", Aliases: []string{"SRV-AGENT-1"}, Criticality: "high", Owner: "CED"}))
	require.NoError(t, es.Refresh(ctx, store.Entities)) // searchable before the collector caches the entity
	agents := make([]*agentSim, nAgents)
	for i := range agents {
		entity := entityA
		if i%2 == 1 {
			entity = entityB
		}
		agents[i] = enrol(t, es, fmt.Sprintf("agent-%d", i+1), entity)
	}
	intruder := enrol(t, es, "agent-intruder", entityB)

	prod, err := bus.NewProducer(bus.ProducerOptions{Options: busOpts, BatchTimeout: 5 * time.Millisecond})
	require.NoError(t, err)
	defer func() { _ = prod.Close() }()
	send := func(key string, values ...[]byte) {
		msgs := make([]bus.Message, len(values))
		for i, v := range values {
			msgs[i] = bus.Message{Topic: raw, Key: []byte(key), Value: v}
		}
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		require.NoError(t, prod.Produce(pctx, msgs...))
	}

	// Input: records raw lines in 500-record batches, round-robin over
	// the agents; the last batch of agent-3 skips 100 sequence numbers.
	start := time.Now()
	var want int64
	var replay []byte
	batches := records / perBatch
	pending := map[string][][]byte{}
	for i := range batches {
		a := agents[i%nAgents]
		skip := uint64(0)
		if a.id == "agent-3" && i >= batches-nAgents {
			skip = a.next + 101
		}
		b := a.seal(t, authLog, skip, perBatch, nil, envelope.KindRawLine, line)
		if a.id == "agent-2" && replay == nil {
			replay = b
		}
		pending[a.id] = append(pending[a.id], b)
		want += perBatch
		if len(pending[a.id]) == 20 {
			send(a.id, pending[a.id]...)
			pending[a.id] = nil
		}
	}
	for id, bs := range pending {
		if len(bs) > 0 {
			send(id, bs...)
		}
	}
	// One heartbeat per agent.
	for _, a := range agents {
		hb := a.seal(t, "agent.heartbeat", 1, 1, nil, envelope.KindSummary, func(uint64) []byte {
			return fmt.Appendf(nil, `{"type":"agent.heartbeat","schema":1,"agent_version":"0.9.1","hostname":"srv-%s","policy_revision":"r1","counters":{"lines_read":%d,"lines_shipped":%d,"spool_depth":0},"sources":[{"source":"auth","kind":"file","state":"ok"}],"future_field":{"x":1}}`,
				a.id, records/nAgents, records/nAgents)
		})
		send(a.id, hb)
		want++
	}
	// A batch of agent-1 signed with the intruder's key, and a replay.
	send(agents[0].id, agents[0].seal(t, authLog, 0, 3, intruder.signer, envelope.KindRawLine, line))
	send(agents[1].id, replay)
	produced := time.Since(start)
	t.Logf("produced %d records in %d batches in %s", want, batches+nAgents+2, produced.Round(time.Millisecond))

	// The collector, on its own topics and group.
	col, err := collector.New(collector.Options{Bus: busOpts, BatchTimeout: 5 * time.Millisecond, Store: es, Logger: l,
		RawTopic: raw, EventsTopic: events, FindingsTopic: findings, DLQTopic: dlq, GroupID: collector.GroupID + suffix,
		SilenceCheck: time.Hour, Instance: "test-" + run})
	require.NoError(t, err)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	errc, done := make(chan error, 1), make(chan struct{})
	began := time.Now()
	go func() { defer close(done); errc <- col.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done }) // before the indices are dropped: a draining collector would recreate them

	count := func(c store.Collection, q string) int64 {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		require.NoError(t, es.Refresh(cctx, c))
		res, err := es.Search(cctx, store.RegionalScope(), c, store.SearchRequest{Query: q, Size: 1})
		require.NoError(t, err)
		return res.Total
	}
	endOffsets := func(topic string) int64 {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		offs, err := bus.EndOffsets(cctx, busOpts, topic)
		require.NoError(t, err)
		var n int64
		for _, o := range offs {
			n += o
		}
		return n
	}
	poll := 2 * time.Second
	if records > 100_000 {
		poll = 15 * time.Second
	}
	// Generous: on a shared 2-core machine Elasticsearch may index only a
	// few hundred events per second.
	deadline := time.Now().Add(time.Duration(records/100+300) * time.Second)
	for {
		select {
		case err := <-errc:
			t.Fatalf("collector stopped: %v", err)
		case <-time.After(poll):
		}
		n := count(store.Events, "")
		if n >= want && endOffsets(dlq) >= 2 {
			break
		}
		t.Logf("%s: %d of %d events in the store", time.Since(began).Round(time.Second), n, want)
		require.True(t, time.Now().Before(deadline), "only %d of %d events in the store after %s", n, want, time.Since(began))
	}
	elapsed := time.Since(began)
	stop()
	require.NoError(t, <-errc)
	st := col.Stats()
	t.Logf("collector: %d records through in %s = %.0f records/s end to end (real Kafka %s + Elasticsearch %s); stats %+v",
		want, elapsed.Round(time.Millisecond), float64(want)/elapsed.Seconds(), os.Getenv(testenv.EnvKafkaVersion), os.Getenv(testenv.EnvESVersion), st)

	require.Equal(t, want, endOffsets(events), "events in csirt.events.v1")
	require.Equal(t, want, count(store.Events, ""), "events in the store")
	require.Equal(t, int64(2), endOffsets(dlq), "dead letters: the wrongly signed and the replayed batch")
	require.Equal(t, int64(nAgents), count(store.Events, "event.dataset:agent.heartbeat"))
	require.Equal(t, want-int64(nAgents), count(store.Events, "event.dataset:sshd OR event.dataset:sudo"))
	// Enrichment: every event of entity A carries its name; agent-1's
	// host name (srv-agent-1, an alias) became the asset's canonical name.
	require.Equal(t, count(store.Events, "organization.id:"+entityA), count(store.Events, `organization.name:"`+entityAName+`"`))
	require.Zero(t, count(store.Events, "host.name:srv-agent-1"))
	require.Positive(t, count(store.Events, "agent.id:agent-1"))
	require.Equal(t, count(store.Events, "agent.id:agent-1"), count(store.Events, "host.name:srv-main"))

	// Findings, in the store and on csirt.findings.v1.
	require.Equal(t, int64(2), count(store.Findings, "kind:integrity"))
	require.Equal(t, int64(1), count(store.Findings, `kind:integrity AND tags:"reason:bad-signature"`))
	require.Equal(t, int64(1), count(store.Findings, `kind:integrity AND tags:"reason:replay"`))
	require.Equal(t, int64(1), count(store.Findings, "kind:coverage"))
	onTopic := readFindings(t, busOpts, findings, endOffsets(findings))
	require.Len(t, onTopic, 3)
	var gap *finding.Finding
	for _, f := range onTopic {
		if f.Kind == finding.KindCoverage {
			gap = f
		}
	}
	require.NotNil(t, gap)
	require.Equal(t, "agent-3", gap.AgentID)
	require.True(t, strings.Contains(gap.Message, "sequence numbers") && strings.Contains(gap.Message, "(100 records) never arrived"), gap.Message)

	// The heartbeat reached the agent's document.
	doc, err := es.Get(ctx, store.RegionalScope(), store.Agents, "agent-1")
	require.NoError(t, err)
	var ag map[string]any
	require.NoError(t, json.Unmarshal(doc.Source, &ag))
	require.Equal(t, "0.9.1", ag["version"])
	require.Equal(t, "active", ag["status"])
	require.NotEmpty(t, ag["last_seen"])
	_, err = verify.StoreAgents{Store: es}.Agent(ctx, "agent-1")
	require.NoError(t, err, "the activity update keeps the agent verifiable")
}

func readFindings(t *testing.T, opts bus.Options, topic string, n int64) []*finding.Finding {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := bus.NewConsumer(bus.ConsumerOptions{Options: opts, GroupID: "read-" + topic, Topics: []string{topic}})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	var out []*finding.Finding
	for int64(len(out)) < n {
		m, err := c.Fetch(ctx)
		require.NoError(t, err)
		f, err := finding.Decode(m.Value)
		require.NoError(t, err)
		out = append(out, f)
	}
	return out
}
