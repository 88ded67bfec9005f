package correlator

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/broker"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/sqlite"
)

const bruteForceRule = "a8e1ca73-16d2-4dd4-9a0c-602eb0497580" // ssh_bruteforce in rules/library

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	return l
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// env is an embedded broker, a SQLite store and topic names of one test.
type env struct {
	bus                          bus.Options
	st                           store.Store
	events, findings, dlq, group string
	prod                         *bus.Producer
}

func newEnv(t *testing.T, opts bus.Options, st store.Store, suffix string) *env {
	t.Helper()
	if opts.Brokers == nil {
		b, err := broker.Start(broker.Options{Addr: freeAddr(t)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = b.Close() })
		opts = bus.Options{Brokers: []string{b.Addr()}}
	}
	if st == nil {
		var err error
		st, err = sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(t.TempDir(), "store.db"), Logger: quiet()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
	}
	e := &env{bus: opts, st: st, events: bus.TopicEvents + suffix, findings: bus.TopicFindings + suffix,
		dlq: bus.TopicDLQ + suffix, group: DefaultGroup + suffix}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, bus.EnsureTopics(ctx, opts, []bus.TopicSpec{{Name: e.events, Partitions: 2}, {Name: e.findings, Partitions: 1},
		{Name: e.dlq, Partitions: 1}}))
	p, err := bus.NewProducer(bus.ProducerOptions{Options: opts, BatchTimeout: 2 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	e.prod = p
	return e
}

func (e *env) correlator(t *testing.T, mod func(*Options)) *Correlator {
	t.Helper()
	o := Options{Bus: e.bus, Store: e.st, Group: e.group, Topic: e.events, FindingsTopic: e.findings, DLQTopic: e.dlq,
		SnapshotInterval: 150 * time.Millisecond, FlushInterval: 20 * time.Millisecond, IntelInterval: 100 * time.Millisecond,
		SessionTimeout: 6 * time.Second, BatchTimeout: 2 * time.Millisecond, Logger: quiet()}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	require.NoError(t, err)
	return c
}

// run starts c and returns a stop function that waits for Run.
func run(t *testing.T, c *Correlator) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(60 * time.Second):
			t.Fatal("correlator did not stop")
		}
	}
}

func sshFailure(entity, ip string, n int, at time.Time) []byte {
	ev := map[string]any{"@timestamp": at.UTC().Format(time.RFC3339Nano), "event.id": fmt.Sprintf("%s-ssh-%d", entity, n),
		"event.ingested": at.UTC().Format(time.RFC3339Nano), "event.kind": "event", "event.category": []string{"authentication"},
		"event.type": []string{"start"}, "event.dataset": "sshd", "event.outcome": "failure", "organization.id": entity,
		"agent.id": "agent-" + entity, "host.name": "srv-" + entity, "source.ip": ip, "user.name": "root",
		"event.original": fmt.Sprintf("Failed password for root from %s port 22 ssh2", ip)}
	b, _ := json.Marshal(ev)
	return b
}

func (e *env) produce(t *testing.T, entity string, values ...[]byte) {
	t.Helper()
	msgs := make([]bus.Message, len(values))
	for i, v := range values {
		msgs[i] = bus.Message{Topic: e.events, Key: []byte(entity), Value: v}
	}
	require.NoError(t, e.prod.Produce(context.Background(), msgs...))
}

// findingsOf returns the stored findings of a rule.
func (e *env) findingsOf(t *testing.T, rule string) []*finding.Finding {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, e.st.Refresh(ctx, store.Findings))
	res, err := e.st.Search(ctx, store.RegionalScope(), store.Findings, store.SearchRequest{Query: "rule.id:" + rule, Size: 100})
	require.NoError(t, err)
	var out []*finding.Finding
	for _, d := range res.Docs {
		f, err := finding.Decode(d.Source)
		require.NoError(t, err)
		out = append(out, f)
	}
	return out
}

// topicFindings reads every finding message on the findings topic.
func (e *env) topicFindings(t *testing.T, rule string) []string {
	t.Helper()
	c, err := bus.NewConsumer(bus.ConsumerOptions{Options: e.bus, GroupID: fmt.Sprintf("reader-%d", time.Now().UnixNano()), Topics: []string{e.findings}})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	ends, err := bus.EndOffsets(context.Background(), e.bus, e.findings)
	require.NoError(t, err)
	var total int64
	for _, o := range ends {
		total += o
	}
	var ids []string
	for i := int64(0); i < total; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		m, err := c.Fetch(ctx)
		cancel()
		require.NoError(t, err)
		f, err := finding.Decode(m.Value)
		require.NoError(t, err)
		if f.RuleID == rule {
			ids = append(ids, f.ID)
		}
	}
	return ids
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) committed(t *testing.T) int64 {
	offs, err := bus.CommittedOffsets(context.Background(), e.bus, e.group, e.events)
	if err != nil { // the group does not exist yet
		return 0
	}
	var n int64
	for _, o := range offs {
		if o > 0 {
			n += o
		}
	}
	return n
}

// A graceful restart between the 4th and the 5th failure keeps the window:
// the correlation fires once, with the events of both runs.
func TestRestartKeepsWindow(t *testing.T) {
	e := newEnv(t, bus.Options{}, nil, ".restart")
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	var first [][]byte
	for i := 0; i < 4; i++ {
		first = append(first, sshFailure("comune-a", "203.0.113.7", i, t0.Add(time.Duration(i)*time.Second)))
	}
	e.produce(t, "comune-a", first...)
	stop := run(t, e.correlator(t, nil))
	waitFor(t, "4 offsets committed", func() bool { return e.committed(t) == 4 })
	stop()
	require.Empty(t, e.findingsOf(t, bruteForceRule), "4 failures are below the threshold of 6")

	stop = run(t, e.correlator(t, nil))
	defer stop()
	e.produce(t, "comune-a", sshFailure("comune-a", "203.0.113.7", 4, t0.Add(4*time.Second)), sshFailure("comune-a", "203.0.113.7", 5, t0.Add(5*time.Second)))
	waitFor(t, "the brute-force finding", func() bool { return len(e.findingsOf(t, bruteForceRule)) > 0 })
	fs := e.findingsOf(t, bruteForceRule)
	require.Len(t, fs, 1)
	f := fs[0]
	require.Equal(t, "comune-a", f.Entity)
	require.Equal(t, "203.0.113.7", f.SourceIP)
	require.Equal(t, finding.KindCorrelation, f.Kind)
	require.Equal(t, finding.High, f.Severity)
	require.Contains(t, f.Techniques, "T1110.001")
	require.Len(t, f.EventIDs, 6, "the alert cites events of both runs")
	require.Contains(t, f.EventIDs, "comune-a-ssh-0")
	require.Contains(t, f.EventIDs, "comune-a-ssh-5")
}

// A crash after a finding was emitted but before the state covering it was
// saved replays the events: the correlation fires again with the same id,
// and the replay guard keeps it off the findings topic.
func TestCrashReplayEmitsNoDuplicate(t *testing.T) {
	e := newEnv(t, bus.Options{}, nil, ".crash")
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	var evs [][]byte
	for i := 0; i < 4; i++ {
		evs = append(evs, sshFailure("comune-b", "198.51.100.9", i, t0.Add(time.Duration(i)*time.Second)))
	}
	e.produce(t, "comune-b", evs...)
	c := e.correlator(t, func(o *Options) { o.SnapshotInterval = 400 * time.Millisecond })
	stop := run(t, c)
	waitFor(t, "4 offsets committed", func() bool { return e.committed(t) == 4 })
	// The stop is a crash (nothing saved at the end; c saw only these 4).
	c.crashOnCancel = true
	stop()
	c2 := e.correlator(t, func(o *Options) { o.SnapshotInterval = time.Hour })
	c2.crashOnCancel = true
	stop = run(t, c2)
	e.produce(t, "comune-b", sshFailure("comune-b", "198.51.100.9", 4, t0.Add(4*time.Second)), sshFailure("comune-b", "198.51.100.9", 5, t0.Add(5*time.Second)))
	waitFor(t, "the brute-force finding", func() bool { return len(e.findingsOf(t, bruteForceRule)) > 0 })
	stop() // crash: offsets 4 and 5 are not committed, the state not saved
	require.Equal(t, int64(4), e.committed(t))

	c3 := e.correlator(t, nil)
	stop = run(t, c3)
	waitFor(t, "6 offsets committed", func() bool { return e.committed(t) == 6 })
	stop()
	require.Len(t, e.findingsOf(t, bruteForceRule), 1)
	require.Len(t, e.topicFindings(t, bruteForceRule), 1, "the replayed finding is not produced again")
	require.Positive(t, c3.replayed.Load())
}

func TestPoisonMessageGoesToDLQ(t *testing.T) {
	e := newEnv(t, bus.Options{}, nil, ".poison")
	e.produce(t, "comune-c", []byte("{not json"), sshFailure("comune-c", "192.0.2.1", 0, time.Now()))
	stop := run(t, e.correlator(t, nil))
	waitFor(t, "2 offsets committed", func() bool { return e.committed(t) == 2 })
	stop()
	ends, err := bus.EndOffsets(context.Background(), e.bus, e.dlq)
	require.NoError(t, err)
	require.Equal(t, int64(1), ends[0])
}

// cancelDuringSnapshot cancels the correlator's context from inside its
// first snapshot write once armed, and fails that write the way a
// cancelled store request does.
type cancelDuringSnapshot struct {
	store.Store
	armed  atomic.Bool
	cancel context.CancelFunc
	fired  atomic.Bool
}

func (s *cancelDuringSnapshot) interrupt(ctx context.Context, c store.Collection) error {
	if c == store.RulesState && s.armed.Load() && s.fired.CompareAndSwap(false, true) {
		s.cancel()
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (s *cancelDuringSnapshot) Create(ctx context.Context, sc store.Scope, c store.Collection, d store.Doc, o store.WriteOptions) (store.Version, error) {
	if err := s.interrupt(ctx, c); err != nil {
		return store.Version{}, err
	}
	return s.Store.Create(ctx, sc, c, d, o)
}

func (s *cancelDuringSnapshot) Update(ctx context.Context, sc store.Scope, c store.Collection, d store.Doc, o store.WriteOptions) (store.Version, error) {
	if err := s.interrupt(ctx, c); err != nil {
		return store.Version{}, err
	}
	return s.Store.Update(ctx, sc, c, d, o)
}

// A shutdown that interrupts a periodic snapshot is a graceful stop: the
// final checkpoint saves the state and commits, Run returns nil (the load
// run once ended with "saving the snapshot ... context canceled").
func TestShutdownDuringSnapshot(t *testing.T) {
	base := newEnv(t, bus.Options{}, nil, ".snapcancel")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &cancelDuringSnapshot{Store: base.st, cancel: cancel}
	e := *base
	e.st = st
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	for i := range 4 {
		e.produce(t, "comune-a", sshFailure("comune-a", "203.0.113.9", i, t0.Add(time.Duration(i)*time.Second)))
	}
	c := e.correlator(t, nil)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, "the 4 events read", func() bool { return counterValue(c.m.events) >= 4 })
	st.armed.Store(true)
	select {
	case err := <-done:
		require.NoError(t, err, "a shutdown during a snapshot must end in the final checkpoint")
	case <-time.After(time.Minute):
		t.Fatal("correlator did not stop")
	}
	require.True(t, st.fired.Load(), "a snapshot write was interrupted")
	require.Equal(t, int64(4), e.committed(t), "the final checkpoint committed the events")

	// The saved window completes with two more failures after a restart.
	stop := run(t, base.correlator(t, nil))
	defer stop()
	e.produce(t, "comune-a", sshFailure("comune-a", "203.0.113.9", 4, t0.Add(4*time.Second)), sshFailure("comune-a", "203.0.113.9", 5, t0.Add(5*time.Second)))
	waitFor(t, "the brute-force finding", func() bool { return len(base.findingsOf(t, bruteForceRule)) == 1 })
}

func counterValue(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	return d.GetCounter().GetValue()
}
