package ship

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/agents/internal/seq"
	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/agents/internal/spool"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/bus/bustest"
	"github.com/csirt-toscana/platform/internal/envelope"
)

const (
	testAgent  = "agent-7"
	testEntity = "comune-di-prato"
	lineBytes  = 250
)

// line is the deterministic content of line n of a stream, lineBytes long.
func line(stream string, n int64) []byte {
	b := fmt.Appendf(nil, "%s line %09d ", stream, n)
	return append(b, bytes.Repeat([]byte{'x'}, lineBytes-len(b))...)
}

// fakeSource emits, for each of its streams, lines numbered from a start
// offset, n at a time when told to by Emit. Cursor.Origin is the stream's
// index and Cursor.Offset the line number after the record.
type fakeSource struct {
	streams []string
	more    chan int

	mu    sync.Mutex
	next  []int64 // next line number per stream
	acked []int64 // highest acknowledged offset per stream
}

func newFakeSource(streams []string, start []int64) *fakeSource {
	s := &fakeSource{streams: streams, more: make(chan int, 100), next: make([]int64, len(streams)), acked: make([]int64, len(streams))}
	if start != nil {
		copy(s.next, start)
		copy(s.acked, start)
	}
	return s
}

// Emit asks Run to send n more lines per stream.
func (s *fakeSource) Emit(n int) { s.more <- n }

func (s *fakeSource) Run(ctx context.Context, out chan<- source.Record) error {
	for {
		var n int
		select {
		case <-ctx.Done():
			return nil
		case n = <-s.more:
		}
		for range n {
			for i, st := range s.streams {
				s.mu.Lock()
				num := s.next[i]
				s.next[i]++
				s.mu.Unlock()
				r := source.Record{Stream: st, Time: time.Now(), Kind: envelope.KindRawLine, Data: line(st, num), Cursor: source.Cursor{Origin: uint64(i), Offset: num + 1}}
				select {
				case <-ctx.Done():
					return nil
				case out <- r:
				}
			}
		}
	}
}

func (s *fakeSource) Ack(cursors ...source.Cursor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range cursors {
		s.acked[c.Origin] = max(s.acked[c.Origin], c.Offset)
	}
	return nil
}

func (s *fakeSource) Acked() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.acked...)
}

func (s *fakeSource) Status() []source.Status { return nil }

var _ source.Source = (*fakeSource)(nil)

// rig is one agent: keys, state directory, Kafka connection and topic.
type rig struct {
	t        testing.TB
	stateDir string
	bus      bus.Options
	topic    string
	signer   envelope.Signer
	verifier envelope.Verifier
	noSync   bool
}

func newRig(t testing.TB, opts bus.Options) *rig {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	sg, err := envelope.NewEd25519Signer("k1", priv)
	require.NoError(t, err)
	v, err := envelope.NewEd25519Verifier(pub)
	require.NoError(t, err)
	r := &rig{t: t, stateDir: t.TempDir(), bus: opts, topic: bustest.Unique(t, "raw"), signer: sg, verifier: v}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, bus.EnsureTopics(ctx, opts, []bus.TopicSpec{{Name: r.topic, Partitions: 1, ReplicationFactor: 1}}))
	return r
}

// agent is one run of the agent's shipping part on the rig's state.
type agent struct {
	pipe   *Pipeline
	spool  *spool.Spool
	prod   *bus.Producer
	cancel context.CancelFunc
	done   chan error
}

// start opens the state, builds a pipeline around src and runs it. wrap,
// when set, wraps the producer (fault injection).
func (r *rig) start(src source.Source, wrap func(Producer, context.CancelFunc) Producer) *agent {
	t := r.t
	t.Helper()
	sq, err := seq.Open(r.stateDir+"/seq", seq.Options{NoSync: r.noSync})
	require.NoError(t, err)
	sp, err := spool.Open(r.stateDir+"/spool", spool.Options{NoSync: r.noSync})
	require.NoError(t, err)
	prod, err := bus.NewProducer(bus.ProducerOptions{Options: r.bus, MaxAttempts: 1, WriteTimeout: 5 * time.Second, BatchTimeout: 2 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var p Producer = prod
	if wrap != nil {
		p = wrap(prod, cancel)
	}
	pipe, err := NewPipeline(PipelineOptions{
		Sources: []source.Source{src},
		Batcher: BatcherOptions{AgentID: testAgent, EntityID: testEntity, Signer: r.signer, Sequencer: sq, Spool: sp},
		Shipper: ShipperOptions{Queue: sp, Producer: p, AgentID: testAgent, Topic: r.topic, MinBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond},
	})
	require.NoError(t, err)
	a := &agent{pipe: pipe, spool: sp, prod: prod, cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- pipe.Run(ctx) }()
	return a
}

// stop ends the run and closes what it opened.
func (a *agent) stop(t testing.TB) {
	t.Helper()
	a.cancel()
	select {
	case err := <-a.done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("pipeline did not stop")
	}
	require.NoError(t, a.prod.Close())
	require.NoError(t, a.spool.Close())
}

// waitFor polls cond until it holds.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type seqKey struct {
	stream string
	seq    uint64
}

// arrived is what a consumer found in the topic.
type arrived struct {
	batches    int
	records    int
	duplicates int               // records whose (stream, seq) arrived before
	lines      map[seqKey][]byte // deduplicated
	batchSeen  map[seqKey]int    // (stream, first seq) -> times the batch arrived
}

// consume reads the rig's topic until want distinct (stream, seq) pairs
// arrived, opening and verifying every envelope.
func (r *rig) consume(want int, timeout time.Duration) *arrived {
	t := r.t
	t.Helper()
	c, err := bus.NewConsumer(bus.ConsumerOptions{Options: r.bus, GroupID: bustest.Unique(t, "check"), Topics: []string{r.topic}, SessionTimeout: 6 * time.Second, MaxWait: 50 * time.Millisecond})
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resolve := func(agentID, keyID string) (envelope.Verifier, error) {
		if agentID != testAgent || keyID != "k1" {
			return nil, fmt.Errorf("%w: unknown agent %q key %q", envelope.ErrBadSignature, agentID, keyID)
		}
		return r.verifier, nil
	}
	a := &arrived{lines: map[seqKey][]byte{}, batchSeen: map[seqKey]int{}}
	for len(a.lines) < want {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("after %d of %d records: %v", len(a.lines), want, err)
		}
		require.Equal(t, testAgent, string(m.Key), "message key")
		b, err := envelope.Open(m.Value, resolve)
		require.NoError(t, err, "opening envelope")
		require.Equal(t, testEntity, b.EntityID)
		a.batches++
		a.batchSeen[seqKey{b.StreamID, b.FirstSeq}]++
		for i, rec := range b.Records {
			a.records++
			k := seqKey{b.StreamID, b.Seq(i)}
			if old, dup := a.lines[k]; dup {
				require.Equal(t, old, rec.Data, "same (stream, seq) with different data: a reused sequence number")
				a.duplicates++
				continue
			}
			a.lines[k] = bytes.Clone(rec.Data)
		}
	}
	return a
}

// checkExactlyOnce checks that, after de-duplication by (stream, seq),
// each stream holds lines 0..n-1 once each, in sequence order, with no gap
// in the sequence numbers.
func (a *arrived) checkExactlyOnce(t testing.TB, streams []string, n int64) {
	t.Helper()
	for _, st := range streams {
		for i := range n {
			got, ok := a.lines[seqKey{st, uint64(i + 1)}]
			if !ok {
				t.Fatalf("stream %s: seq %d missing (line %d lost)", st, i+1, i)
			}
			if want := line(st, i); !bytes.Equal(got, want) {
				t.Fatalf("stream %s: seq %d holds %q, want line %d (%q)", st, i+1, got[:30], i, want[:30])
			}
		}
	}
	require.Len(t, a.lines, len(streams)*int(n), "records beyond the lines written")
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func streamNames(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("file:s%d", i)
	}
	return s
}

var errSimulatedCrash = errors.New("simulated crash after Kafka acknowledged, before the spool Ack")
