package incidents

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
)

// memSource hands out messages from a slice and records commits.
type memSource struct {
	mu        sync.Mutex
	msgs      []bus.Message
	next      int
	committed []bus.Message
	applied   func() int // number of incidents stored when Commit is called
	atCommit  []int
	drained   chan struct{}
}

func (m *memSource) Fetch(ctx context.Context) (bus.Message, error) {
	m.mu.Lock()
	if m.next < len(m.msgs) {
		msg := m.msgs[m.next]
		m.next++
		m.mu.Unlock()
		return msg, nil
	}
	m.mu.Unlock()
	<-ctx.Done()
	return bus.Message{}, ctx.Err()
}

func (m *memSource) Commit(_ context.Context, msgs ...bus.Message) error {
	n := m.applied()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.committed = append(m.committed, msgs...)
	m.atCommit = append(m.atCommit, n)
	if len(m.committed) == len(m.msgs) {
		close(m.drained)
	}
	return nil
}

type memDLQ struct {
	mu   sync.Mutex
	sent []bus.Message
	errs []error
}

func (d *memDLQ) Send(_ context.Context, m bus.Message, cause error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sent = append(d.sent, m)
	d.errs = append(d.errs, cause)
	return nil
}

func TestRunCommitsAfterWritesAndDeadLettersPoison(t *testing.T) {
	st := sqliteStore(t)
	t0 := time.Date(2026, 11, 20, 11, 55, 0, 0, time.UTC)
	s := newStage(t, st, func() time.Time { return t0.Add(time.Hour) })
	var msgs []bus.Message
	for i, f := range campaignFindings(t0) {
		v, err := finding.Encode(f)
		require.NoError(t, err)
		msgs = append(msgs, bus.Message{Topic: bus.TopicFindings, Partition: 0, Offset: int64(2 * i), Key: f.Key(), Value: v})
		if i == 2 {
			msgs = append(msgs, bus.Message{Topic: bus.TopicFindings, Partition: 0, Offset: int64(2*i + 1), Value: []byte(`{"not":"a finding"}`)})
		}
	}
	src := &memSource{msgs: msgs, drained: make(chan struct{}), applied: func() int {
		res, err := st.Search(context.Background(), store.RegionalScope(), store.Incidents, store.SearchRequest{Size: 100})
		require.NoError(t, err)
		return int(res.Total)
	}}
	dlq := &memDLQ{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, src, dlq, RunOptions{MaxBatch: 3, Linger: 20 * time.Millisecond}) }()
	select {
	case <-src.drained:
	case err := <-done:
		t.Fatalf("Run stopped early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not commit every message within 30 s")
	}
	cancel()
	require.NoError(t, <-done)
	require.Len(t, dlq.sent, 1)
	require.Equal(t, int64(5), dlq.sent[0].Offset)
	require.ErrorContains(t, dlq.errs[0], "decoding finding")
	// Each commit came after its batch's incidents were stored; the last
	// one sees all five (three campaign members, the other source, the
	// campaign).
	require.Equal(t, 5, src.atCommit[len(src.atCommit)-1])
	require.Len(t, src.committed, len(msgs))
	checkCampaign(t, st)
}

// failingStore fails every incident write, as an unreachable store would.
type failingStore struct{ store.Store }

var errDown = errors.New("store down")

func (f failingStore) Create(context.Context, store.Scope, store.Collection, store.Doc, store.WriteOptions) (store.Version, error) {
	return store.Version{}, errDown
}

func TestRunDoesNotCommitOnStoreFailure(t *testing.T) {
	st := sqliteStore(t)
	t0 := time.Date(2026, 11, 20, 11, 55, 0, 0, time.UTC)
	s, err := New(Options{Store: failingStore{st}, Logger: quiet(), Now: func() time.Time { return t0 }})
	require.NoError(t, err)
	f := bruteForce("comune-prato", "203.0.113.7", "srv", t0)
	v, err := finding.Encode(f)
	require.NoError(t, err)
	src := &memSource{msgs: []bus.Message{{Topic: bus.TopicFindings, Value: v}}, drained: make(chan struct{}), applied: func() int { return 0 }}
	err = s.Run(context.Background(), src, &memDLQ{}, RunOptions{Linger: time.Millisecond})
	require.ErrorIs(t, err, errDown)
	require.Empty(t, src.committed, "nothing may be committed when the incident was not written")
}
