package pipeline

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/collector/internal/enrich"
	"github.com/csirt-toscana/platform/collector/internal/parse"
	"github.com/csirt-toscana/platform/collector/internal/verify"
	"github.com/csirt-toscana/platform/internal/broker"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

// harness is a collector deployment for one test: bus, topics, store.
type harness struct {
	bus              bus.Options
	raw, events, dlq string
	findingsTopic    string
	group            string
	st               store.Store
	prod             *bus.Producer
	flushInterval    time.Duration
	enricher         enrich.Enricher
	maxPending       int
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// embedded starts kfake and a SQLite store.
func embedded(t testing.TB) *harness {
	t.Helper()
	b, err := broker.Start(broker.Options{Addr: freeAddr(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "store.db"), Synchronous: "NORMAL"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return newHarness(t, bus.Options{Brokers: []string{b.Addr()}}, "", st)
}

// newHarness creates the topics (names suffixed unless suffix is "") and
// a producer.
func newHarness(t testing.TB, opts bus.Options, suffix string, st store.Store) *harness {
	t.Helper()
	h := &harness{bus: opts, raw: bus.TopicRaw + suffix, events: bus.TopicEvents + suffix, dlq: bus.TopicDLQ + suffix,
		findingsTopic: bus.TopicFindings + suffix, group: GroupID + suffix, st: st, flushInterval: 200 * time.Millisecond, maxPending: 64}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, bus.EnsureTopics(ctx, opts, []bus.TopicSpec{
		{Name: h.raw, Partitions: 3}, {Name: h.events, Partitions: 3}, {Name: h.dlq, Partitions: 1}, {Name: h.findingsTopic, Partitions: 1},
	}))
	p, err := bus.NewProducer(bus.ProducerOptions{Options: opts, BatchTimeout: 2 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	h.prod = p
	return h
}

// simAgent is a simulated agent with its enrolled key and sequence.
type simAgent struct {
	id, entity, host string
	signer           envelope.Signer
	next             map[string]uint64
}

func (h *harness) enrol(t testing.TB, id, entity string) *simAgent {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := envelope.NewEd25519Signer("k-"+id, priv)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	require.NoError(t, verify.PutAgent(context.Background(), h.st, verify.AgentDoc{
		AgentID: id, EntityID: entity, Hostname: "srv-" + id, Algorithm: envelope.Ed25519.String(), KeyID: "k-" + id,
		PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	}))
	return &simAgent{id: id, entity: entity, host: "srv-" + id, signer: s, next: map[string]uint64{}}
}

var lines = []string{
	"Nov 22 10:%02d:%02d srv sshd[%d]: Failed password for invalid user admin from 203.0.113.%d port 22 ssh2",
	"Nov 22 10:%02d:%02d srv sshd[%d]: Accepted publickey for deploy from 192.0.2.%d port 50022 ssh2: ED25519 SHA256:abc",
	"Nov 22 10:%02d:%02d srv sudo[%d]:   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id %d",
}

// batch seals n records starting at the agent's next sequence number of
// stream (or at first when first > 0), signed with signer (the agent's
// own key when nil).
func (a *simAgent) batch(t testing.TB, stream string, first uint64, n int, signer envelope.Signer) []byte {
	t.Helper()
	if first == 0 {
		first = a.next[stream] + 1
	}
	if signer == nil {
		signer = a.signer
	}
	b := &envelope.Batch{AgentID: a.id, EntityID: a.entity, StreamID: stream, FirstSeq: first, Created: time.Unix(1763805600, 0)}
	for i := range n {
		seq := int(first) + i //nolint:gosec // G115: small test numbers
		line := fmt.Sprintf(lines[seq%len(lines)], (seq/60)%60, seq%60, 1000+seq%5000, seq%250)
		b.Records = append(b.Records, envelope.Record{Time: time.Unix(1763805600+int64(seq), 0), Kind: envelope.KindRawLine, Data: []byte(line)})
	}
	data, err := envelope.Seal(b, signer)
	require.NoError(t, err)
	if last := b.LastSeq(); last > a.next[stream] {
		a.next[stream] = last
	}
	return data
}

func (h *harness) send(t testing.TB, key string, values ...[]byte) {
	t.Helper()
	msgs := make([]bus.Message, len(values))
	for i, v := range values {
		msgs[i] = bus.Message{Topic: h.raw, Key: []byte(key), Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, h.prod.Produce(ctx, msgs...))
}

// pipeline builds a consumer and a pipeline; wrap, if set, wraps the
// consumer (to simulate crashes).
func (h *harness) pipeline(t testing.TB, seqs verify.SeqStore, wrap func(Source) Source) (*Pipeline, *bus.Consumer) {
	t.Helper()
	c, err := bus.NewConsumer(bus.ConsumerOptions{Options: h.bus, GroupID: h.group, Topics: []string{h.raw},
		SessionTimeout: 6 * time.Second, HeartbeatInterval: 500 * time.Millisecond, MaxWait: 100 * time.Millisecond})
	require.NoError(t, err)
	dlq, err := bus.NewDLQ(bus.DLQOptions{Sender: h.prod, Topic: h.dlq})
	require.NoError(t, err)
	if seqs == nil {
		seqs = verify.StoreSeqs{Store: h.st}
	}
	v, err := verify.New(verify.Options{Agents: verify.StoreAgents{Store: h.st}, Seqs: seqs})
	require.NoError(t, err)
	var src Source = c
	if wrap != nil {
		src = wrap(c)
	}
	p, err := New(Options{Source: src, Sender: h.prod, DLQ: dlq, Store: h.st, Verifier: v, EventsTopic: h.events, FindingsTopic: h.findingsTopic,
		Activity: &AgentActivity{Store: h.st}, Enricher: h.enricher,
		FlushInterval: h.flushInterval, MaxPending: h.maxPending})
	require.NoError(t, err)
	return p, c
}

// runUntil runs p until done() holds (polled), then cancels it and returns
// Run's error. If Run returns by itself first, its error is returned.
func runUntil(t testing.TB, p *Pipeline, c *bus.Consumer, timeout time.Duration, done func() bool) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	deadline := time.After(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	defer func() { _ = c.Close() }()
	for {
		select {
		case err := <-errc:
			return err
		case <-tick.C:
			if done() {
				cancel()
				return <-errc
			}
		case <-deadline:
			cancel()
			<-errc
			t.Fatalf("pipeline did not finish within %s", timeout)
			return nil
		}
	}
}

func (h *harness) topicCount(t testing.TB, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offs, err := bus.EndOffsets(ctx, h.bus, topic)
	require.NoError(t, err)
	var n int64
	for _, o := range offs {
		n += o
	}
	return n
}

func (h *harness) storeCount(t testing.TB, c store.Collection, q string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, h.st.Refresh(ctx, c))
	res, err := h.st.Search(ctx, store.RegionalScope(), c, store.SearchRequest{Query: q, Size: 1})
	require.NoError(t, err)
	return res.Total
}

func (h *harness) findings(t testing.TB, q string) []string {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, h.st.Refresh(ctx, store.Findings))
	res, err := h.st.Search(ctx, store.RegionalScope(), store.Findings, store.SearchRequest{Query: q, Size: 100})
	require.NoError(t, err)
	out := make([]string, len(res.Docs))
	for i, d := range res.Docs {
		out[i] = string(d.Source)
	}
	return out
}

// topicFindings reads every finding of the run's findings topic.
func (h *harness) topicFindings(t testing.TB) []*finding.Finding {
	t.Helper()
	n := h.topicCount(t, h.findingsTopic)
	if n == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := bus.NewConsumer(bus.ConsumerOptions{Options: h.bus, GroupID: "read-" + h.findingsTopic + "-" + t.Name(),
		Topics: []string{h.findingsTopic}})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	var out []*finding.Finding
	for int64(len(out)) < n {
		m, err := c.Fetch(ctx)
		require.NoError(t, err)
		f, err := finding.Decode(m.Value)
		require.NoError(t, err)
		require.Equal(t, f.Tenant(), string(m.Key))
		out = append(out, f)
	}
	return out
}

func newTestSigner(t testing.TB) envelope.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := envelope.NewEd25519Signer("k", priv)
	require.NoError(t, err)
	return s
}

func newParser() *parse.Dispatcher {
	return parse.New(parse.Options{Now: func() time.Time { return time.Unix(1763805600, 0) }})
}

func benchKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return pub, priv
}
