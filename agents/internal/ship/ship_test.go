package ship

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/broker"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/testenv"
)

func startBroker(t testing.TB, addr, dataDir string) *broker.Broker {
	t.Helper()
	b, err := broker.Start(broker.Options{Addr: addr, DataDir: dataDir, Partitions: 1})
	require.NoError(t, err)
	return b
}

// happyPath ships 3 streams × 2000 lines, then one more line per stream
// to measure the latency, and checks everything arrived once, in order,
// signed.
func happyPath(t *testing.T, opts bus.Options) {
	r := newRig(t, opts)
	streams := streamNames(3)
	src := newFakeSource(streams, nil)
	a := r.start(src, nil)
	defer a.stop(t)

	const n = 2000
	src.Emit(n)
	waitFor(t, time.Minute, "lines shipped", func() bool { return a.pipe.Stats().LinesShipped == 3*n })

	// Latency of one line per stream, from the source to Kafka's ack.
	start := time.Now()
	src.Emit(1)
	waitFor(t, 10*time.Second, "last lines shipped", func() bool { return a.pipe.Stats().LinesShipped == 3*(n+1) })
	latency := time.Since(start)
	t.Logf("one line per stream: source to Kafka acknowledgement in %s", latency)
	require.Less(t, latency, time.Second, "a line must reach Kafka quickly when the link is up (goal 100 ms)")

	got := r.consume(3*(n+1), time.Minute)
	got.checkExactlyOnce(t, streams, n+1)
	require.Zero(t, got.duplicates, "no duplicate without a failure")

	st := a.pipe.Stats()
	t.Logf("counters: %+v; %d batches", st, got.batches)
	require.Equal(t, uint64(3*(n+1)), st.LinesRead)
	require.Equal(t, uint64(3*(n+1)), st.LinesSpooled)
	require.Equal(t, st.BatchesSpooled, st.BatchesShipped)
	require.Equal(t, int(st.BatchesShipped), got.batches)
	require.Zero(t, st.Errors)
	require.Zero(t, st.SpoolDepth)
	require.False(t, st.LastShip.IsZero())
	require.Equal(t, []int64{n + 1, n + 1, n + 1}, src.Acked(), "the source is acknowledged up to the last line")
}

func TestEmbeddedBrokerHappyPath(t *testing.T) {
	b := startBroker(t, freeAddr(t), "")
	defer b.Close()
	happyPath(t, bus.Options{Brokers: []string{b.Addr()}})
}

func TestRealKafkaHappyPath(t *testing.T) {
	happyPath(t, bus.Options{Brokers: []string{testenv.Kafka(t)}})
}

func TestRealKafkaMTLSHappyPath(t *testing.T) {
	addr, tlsConf := testenv.KafkaMTLS(t)
	happyPath(t, bus.Options{Brokers: []string{addr}, TLS: tlsConf})
}

// TestBrokerDownThenUp stops the embedded broker while lines keep coming:
// they wait in the spool, the shipper backs off, and once the broker is
// back (same address, same data directory) every line arrives.
func TestBrokerDownThenUp(t *testing.T) {
	addr, dataDir := freeAddr(t), t.TempDir()
	b := startBroker(t, addr, dataDir)
	r := newRig(t, bus.Options{Brokers: []string{addr}})
	streams := streamNames(2)
	src := newFakeSource(streams, nil)
	a := r.start(src, nil)
	defer a.stop(t)

	src.Emit(1000)
	waitFor(t, time.Minute, "first lines shipped", func() bool { return a.pipe.Stats().LinesShipped == 2000 })
	require.NoError(t, b.Close())

	src.Emit(3000)
	waitFor(t, time.Minute, "lines spooled while Kafka is down", func() bool { return a.pipe.Stats().LinesSpooled == 8000 })
	waitFor(t, time.Minute, "retries while Kafka is down", func() bool { return a.pipe.Stats().Retries >= 5 })
	down := a.pipe.Stats()
	t.Logf("while down: %+v", down)
	require.Positive(t, down.SpoolDepth, "batches wait in the spool")
	require.Positive(t, down.Errors, "failed sends are counted")
	require.Less(t, down.LinesShipped, uint64(8000))
	require.Equal(t, []int64{4000, 4000}, src.Acked(), "spooled lines are acknowledged to the source")

	b = startBroker(t, addr, dataDir)
	defer b.Close()
	waitFor(t, time.Minute, "spool drained after restart", func() bool {
		s := a.pipe.Stats()
		return s.SpoolDepth == 0 && s.LinesShipped >= 8000
	})
	got := r.consume(8000, time.Minute)
	got.checkExactlyOnce(t, streams, 4000)
	t.Logf("after restart: %+v; %d records arrived, %d duplicates", a.pipe.Stats(), got.records, got.duplicates)
}

// crashingProducer, once armed, lets the real producer write the next
// call, then "crashes" the agent before the spool Ack: it remembers the
// batches of that call, cancels the run and reports an error. (Arming
// after some progress, rather than counting calls, keeps the crash in the
// middle of the stream however many batches the shipper puts in a call.)
type crashingProducer struct {
	Producer
	cancel context.CancelFunc
	armed  atomic.Bool

	mu      sync.Mutex
	crashed bool
	inCrash map[seqKey]bool // (stream, first seq) of the batches written, never acknowledged
}

func (p *crashingProducer) Produce(ctx context.Context, msgs ...bus.Message) error {
	p.mu.Lock()
	crash := p.armed.Load() && !p.crashed
	p.crashed = p.crashed || crash
	p.mu.Unlock()
	if err := p.Producer.Produce(ctx, msgs...); err != nil || !crash {
		return err
	}
	p.mu.Lock()
	for _, m := range msgs {
		b, err := envelope.Decode(m.Value)
		if err != nil {
			return err
		}
		p.inCrash[seqKey{b.StreamID, b.FirstSeq}] = true
	}
	p.mu.Unlock()
	p.cancel()
	return errSimulatedCrash
}

// TestRestartMidStream stops the agent right after Kafka acknowledged a
// send and before the spool Ack, then starts a new run on the same state
// (sequence store, spool, source checkpoint): only the unacknowledged
// batches arrive twice, no line is lost, sequence numbers carry on.
func TestRestartMidStream(t *testing.T) {
	b := startBroker(t, freeAddr(t), "")
	defer b.Close()
	r := newRig(t, bus.Options{Brokers: []string{b.Addr()}})
	streams := streamNames(3)
	src := newFakeSource(streams, nil)
	crash := &crashingProducer{inCrash: map[seqKey]bool{}}
	a := r.start(src, func(p Producer, cancel context.CancelFunc) Producer {
		crash.Producer, crash.cancel = p, cancel
		return crash
	})
	src.Emit(1500)
	waitFor(t, time.Minute, "a first send", func() bool { return a.pipe.Stats().LinesShipped > 0 })
	crash.armed.Store(true)
	src.Emit(1500)
	select {
	case err := <-a.done:
		require.NoError(t, err)
		a.done <- nil
	case <-time.After(time.Minute):
		t.Fatal("the simulated crash did not happen")
	}
	first := a.pipe.Stats()
	a.stop(t)
	require.NotEmpty(t, crash.inCrash)
	acked := src.Acked()
	t.Logf("at the crash: %+v; source acknowledged up to %v; %d batches written but not acknowledged", first, acked, len(crash.inCrash))
	require.Positive(t, first.SpoolDepth, "the batches of the crashed send are still in the spool")

	// The next run: the source resumes at its checkpoint.
	src2 := newFakeSource(streams, acked)
	a2 := r.start(src2, nil)
	defer a2.stop(t)
	var rest int64
	for _, n := range acked {
		rest = max(rest, 4000-n)
	}
	src2.Emit(int(rest)) // 1000 new lines per stream, plus what the furthest behind did not spool
	want := 0
	for _, n := range acked {
		want += int(n + rest)
	}
	waitFor(t, time.Minute, "second run shipped", func() bool {
		s := a2.pipe.Stats()
		return s.SpoolDepth == 0 && s.LinesSpooled == uint64(3*rest)
	})

	got := r.consume(want, time.Minute)
	for k, times := range got.batchSeen {
		if times > 1 {
			require.True(t, crash.inCrash[k], "batch %v arrived %d times but was acknowledged in the spool", k, times)
		}
	}
	for i, st := range streams {
		n := acked[i] + rest
		for j := range n {
			require.Equal(t, line(st, j), got.lines[seqKey{st, uint64(j + 1)}], "stream %s line %d", st, j)
		}
	}
	require.Len(t, got.lines, want)
	require.Positive(t, got.duplicates, "the unacknowledged batches were sent again")
	t.Logf("lines %d, records arrived %d, duplicates %d (all in the %d unacknowledged batches)", want, got.records, got.duplicates, len(crash.inCrash))
}
