package ship

import (
	"context"
	"crypto/ed25519"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/agents/internal/seq"
	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/internal/envelope"
)

// journal records the order of reservations, appends and acks.
type journal struct {
	mu        sync.Mutex
	events    []string
	batches   []*envelope.Batch
	failFirst int // appends that fail before one succeeds
	next      map[seq.Key]uint64
}

func (j *journal) log(e string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
}

func (j *journal) Reserve(k seq.Key, n int) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.next == nil {
		j.next = map[seq.Key]uint64{}
	}
	first := max(j.next[k], 1)
	j.next[k] = first + uint64(n)
	j.events = append(j.events, "reserve")
	return first, nil
}

func (j *journal) Append(data []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failFirst > 0 {
		j.failFirst--
		j.events = append(j.events, "append-failed")
		return errors.New("disk full")
	}
	b, err := envelope.Decode(data)
	if err != nil {
		return err
	}
	j.batches = append(j.batches, b)
	j.events = append(j.events, "append")
	return nil
}

func (j *journal) Ack(...source.Cursor) error { j.log("ack"); return nil }

func (j *journal) snapshot() ([]string, []*envelope.Batch) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.events...), append([]*envelope.Batch(nil), j.batches...)
}

func testSigner(t testing.TB) envelope.Signer {
	s, err := envelope.NewEd25519Signer("k1", ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	require.NoError(t, err)
	return s
}

func runBatcher(t *testing.T, j *journal, o BatcherOptions, recs []source.Record) {
	t.Helper()
	o.AgentID, o.EntityID, o.Signer, o.Sequencer, o.Spool, o.Ack = testAgent, testEntity, testSigner(t), j, j, j.Ack
	o.RetryBackoff = time.Millisecond
	b, err := NewBatcher(o)
	require.NoError(t, err)
	in := make(chan source.Record, len(recs))
	for _, r := range recs {
		in <- r
	}
	close(in)
	require.NoError(t, b.Run(context.Background(), in))
}

func recs(stream string, n, size int) []source.Record {
	out := make([]source.Record, n)
	for i := range out {
		out[i] = source.Record{Stream: stream, Time: time.Unix(1700000000, 0), Kind: envelope.KindRawLine, Data: make([]byte, size), Cursor: source.Cursor{Offset: int64(i + 1)}}
	}
	return out
}

func TestBatcherFlushes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  BatcherOptions
		recs  []source.Record
		sizes []int
	}{
		{"by count", BatcherOptions{MaxRecords: 4, Linger: time.Hour}, recs("a", 10, 10), []int{4, 4, 2}},
		{"by bytes", BatcherOptions{MaxBytes: 3 * (recordOverhead + 100), Linger: time.Hour}, recs("a", 7, 100), []int{3, 3, 1}},
		{"per stream", BatcherOptions{MaxRecords: 2, Linger: time.Hour}, append(recs("a", 3, 1), recs("b", 1, 1)...), []int{2, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := &journal{}
			runBatcher(t, j, tc.opts, tc.recs)
			_, batches := j.snapshot()
			var sizes []int
			next := map[string]uint64{}
			for _, b := range batches {
				sizes = append(sizes, len(b.Records))
				require.Equal(t, max(next[b.StreamID], 1), b.FirstSeq, "sequence numbers follow each other per stream")
				next[b.StreamID] = b.LastSeq() + 1
			}
			require.ElementsMatch(t, tc.sizes, sizes)
		})
	}
}

func TestBatcherLinger(t *testing.T) {
	j := &journal{}
	b, err := NewBatcher(BatcherOptions{AgentID: testAgent, EntityID: testEntity, Signer: testSigner(t), Sequencer: j, Spool: j, Ack: j.Ack, Linger: 20 * time.Millisecond})
	require.NoError(t, err)
	in := make(chan source.Record)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx, in) }()
	start := time.Now()
	in <- recs("a", 1, 10)[0]
	waitFor(t, 5*time.Second, "linger flush", func() bool { return b.Stats().BatchesSpooled == 1 })
	took := time.Since(start)
	require.GreaterOrEqual(t, took, 20*time.Millisecond)
	t.Logf("one record flushed after %s (linger 20 ms)", took)
	cancel()
	require.NoError(t, <-done)
}

// TestBatcherLingerWhileBusy: while records keep waiting the linger timer is
// not set (that would wake the runtime's poller for nothing), but a batch
// whose linger is over is still flushed before the next record is taken.
func TestBatcherLingerWhileBusy(t *testing.T) {
	j := &journal{}
	var clock atomic.Int64 // ms; every call to Now moves it on by 1 ms
	now := func() time.Time { return time.UnixMilli(1_700_000_000_000 + clock.Add(1)) }
	b, err := NewBatcher(BatcherOptions{AgentID: testAgent, EntityID: testEntity, Signer: testSigner(t), Sequencer: j, Spool: j, Ack: j.Ack,
		Linger: 10 * time.Millisecond, MaxRecords: envelope.MaxRecords, Now: now})
	require.NoError(t, err)
	const n = 100
	in := make(chan source.Record, n)
	for _, r := range recs("a", n, 10) {
		in <- r
	}
	close(in)
	require.NoError(t, b.Run(context.Background(), in))
	_, batches := j.snapshot()
	require.Greater(t, len(batches), 2, "a busy input went into %d batches: linger ignored", len(batches))
	total := 0
	for _, bt := range batches {
		total += len(bt.Records)
	}
	require.Equal(t, n, total)
}

// TestBatcherOrder: numbers are reserved before the append, and the source
// is acknowledged only after a successful append (here after two failed
// ones).
func TestBatcherOrder(t *testing.T) {
	j := &journal{failFirst: 2}
	runBatcher(t, j, BatcherOptions{MaxRecords: 5, Linger: time.Hour}, recs("a", 5, 10))
	events, _ := j.snapshot()
	require.Equal(t, []string{"reserve", "append-failed", "append-failed", "append", "ack"}, events)
}

// TestBatcherFlushOnCancel: records held when ctx ends are spooled and
// acknowledged, not lost.
func TestBatcherFlushOnCancel(t *testing.T) {
	j := &journal{}
	b, err := NewBatcher(BatcherOptions{AgentID: testAgent, EntityID: testEntity, Signer: testSigner(t), Sequencer: j, Spool: j, Ack: j.Ack, Linger: time.Hour})
	require.NoError(t, err)
	in := make(chan source.Record, 3)
	for _, r := range recs("a", 3, 10) {
		in <- r
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx, in) }()
	waitFor(t, 5*time.Second, "records taken", func() bool { return b.Stats().RecordsIn == 3 })
	cancel()
	require.NoError(t, <-done)
	_, batches := j.snapshot()
	require.Len(t, batches, 1)
	require.Len(t, batches[0].Records, 3)
}

func TestLastPerOrigin(t *testing.T) {
	got := lastPerOrigin([]source.Cursor{{Origin: 1, Offset: 10}, {Origin: 2, Offset: 5}, {Origin: 1, Offset: 20}, {Origin: 2, Offset: 7}})
	require.Equal(t, []source.Cursor{{Origin: 1, Offset: 20}, {Origin: 2, Offset: 7}}, got)
}

func TestOptionsValidate(t *testing.T) {
	j := &journal{}
	base := BatcherOptions{AgentID: testAgent, EntityID: testEntity, Signer: testSigner(t), Sequencer: j, Spool: j, Ack: j.Ack}
	for name, mod := range map[string]func(*BatcherOptions){
		"no agent":      func(o *BatcherOptions) { o.AgentID = "" },
		"no signer":     func(o *BatcherOptions) { o.Signer = nil },
		"too many":      func(o *BatcherOptions) { o.MaxRecords = envelope.MaxRecords + 1 },
		"too big":       func(o *BatcherOptions) { o.MaxBytes = envelope.MaxBatchSize },
		"negative wait": func(o *BatcherOptions) { o.Linger = -1 },
	} {
		o := base
		mod(&o)
		_, err := NewBatcher(o)
		require.Error(t, err, name)
	}
	_, err := NewBatcher(base)
	require.NoError(t, err)
	_, err = NewShipper(ShipperOptions{AgentID: testAgent})
	require.Error(t, err)
}

func TestBatcherRejectsBadStreamBeforeReserving(t *testing.T) {
	j := &journal{}
	b, err := NewBatcher(BatcherOptions{AgentID: testAgent, EntityID: testEntity, Signer: testSigner(t), Sequencer: j, Spool: j, Ack: j.Ack})
	require.NoError(t, err)
	in := make(chan source.Record, 1)
	in <- recs("", 1, 10)[0]
	require.Error(t, b.Run(context.Background(), in))
	events, _ := j.snapshot()
	require.Empty(t, events, "no number reserved for a batch that cannot be sealed")
}

// TestRoundDoneFlushesWithoutLinger: with an hour of linger, a batch
// leaves only when the source says its read round is over, and holds
// every record sent before the signal.
func TestRoundDoneFlushesWithoutLinger(t *testing.T) {
	j := &journal{}
	b, err := NewBatcher(BatcherOptions{
		AgentID: testAgent, EntityID: testEntity, Signer: testSigner(t), Sequencer: j, Spool: j, Ack: j.Ack,
		Linger: time.Hour,
	})
	require.NoError(t, err)
	in := make(chan source.Record, 16)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, in) }()
	spooled := func() int { _, bs := j.snapshot(); return len(bs) }
	for round := 1; round <= 3; round++ {
		for i := range 5 {
			in <- source.Record{Stream: "s", Kind: envelope.KindRawLine, Data: []byte{byte('a' + i)}, Cursor: source.Cursor{Origin: 1, Offset: int64(i)}}
		}
		b.RoundDone()
		deadline := time.Now().Add(10 * time.Second)
		for spooled() < round && time.Now().Before(deadline) {
			select {
			case err := <-done:
				t.Fatalf("batcher stopped: %v", err)
			default:
			}
			time.Sleep(time.Millisecond)
		}
		_, bs := j.snapshot()
		require.Len(t, bs, round, "round %d not spooled although linger is an hour", round)
		require.Len(t, bs[round-1].Records, 5, "round %d: the batch must hold every record sent before RoundDone", round)
	}
	// A signal with nothing pending spools nothing.
	b.RoundDone()
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, 3, spooled())
	cancel()
	require.NoError(t, <-done)
}
