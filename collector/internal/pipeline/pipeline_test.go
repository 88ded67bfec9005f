package pipeline

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/collector/internal/verify"
	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
)

// scenario sends, from three agents of two entities, perBatch-record
// batches plus a wrongly signed batch, a replayed batch, a skipped range
// and an undecodable message; it returns the number of records that must
// become events.
func scenario(t testing.TB, h *harness, batches, perBatch int) int64 {
	t.Helper()
	a1 := h.enrol(t, "agent-1", "comune-a")
	a2 := h.enrol(t, "agent-2", "comune-b")
	a3 := h.enrol(t, "agent-3", "comune-b")
	intruder := h.enrol(t, "agent-x", "comune-x") // its key signs a batch claiming to be agent-1
	var want int64
	var first2 []byte
	for i := range batches {
		for _, a := range []*simAgent{a1, a2, a3} {
			for _, stream := range []string{"/var/log/auth.log", "sshd"} {
				b := a.batch(t, stream, 0, perBatch, nil)
				if a == a2 && i == 0 && stream == "sshd" {
					first2 = b
				}
				h.send(t, a.id, b)
				want += int64(perBatch)
			}
		}
	}
	// Wrong key: agent-1's batch signed by another agent's key.
	h.send(t, a1.id, a1.batch(t, "/var/log/auth.log", 0, 3, intruder.signer))
	// Replay of agent-2's first sshd batch.
	h.send(t, a2.id, first2)
	// Agent-3 skips 100 sequence numbers of auth.log.
	skipFrom := a3.next["/var/log/auth.log"] + 1
	h.send(t, a3.id, a3.batch(t, "/var/log/auth.log", skipFrom+100, perBatch, nil))
	want += int64(perBatch)
	// Undecodable bytes.
	h.send(t, a1.id, []byte("this is not an envelope"))
	t.Logf("gap expected on agent-3 /var/log/auth.log: %d-%d", skipFrom, skipFrom+99)
	return want
}

func TestPipelineEmbedded(t *testing.T) {
	h := embedded(t)
	want := scenario(t, h, 3, 50)

	p, c := h.pipeline(t, nil, nil)
	err := runUntil(t, p, c, time.Minute, func() bool {
		return h.topicCount(t, h.dlq) >= 3 && h.storeCount(t, store.Events, "") >= want
	})
	require.NoError(t, err)

	require.Equal(t, want, h.topicCount(t, h.events), "events in Kafka")
	require.Equal(t, want, h.storeCount(t, store.Events, ""), "events in the store")
	require.Equal(t, int64(3), h.topicCount(t, h.dlq), "dead letters")
	st := p.Stats()
	require.Equal(t, want, st.Events)
	require.Equal(t, int64(3), st.Rejected)
	require.Equal(t, int64(1), st.Gaps)

	integrity := h.findings(t, "kind:integrity")
	require.Len(t, integrity, 3, "%v", integrity)
	joined := strings.Join(integrity, "\n")
	for _, r := range []verify.Reason{verify.ReasonBadSignature, verify.ReasonReplay, verify.ReasonMalformed} {
		require.Contains(t, joined, "reason:"+string(r))
	}
	require.Contains(t, joined, `"rule":{"id":"csirt.agent.integrity","name":"Agent batch rejected","group":"agent-health"}`)
	cov := h.findings(t, "kind:coverage")
	require.Len(t, cov, 1)
	require.Contains(t, cov[0], `Agent \"agent-3\" stream \"/var/log/auth.log\": sequence numbers 151 to 250 (100 records) never arrived.`)
	require.Contains(t, cov[0], `"organization":{"id":"comune-b"}`)
	require.Equal(t, int64(4), st.Findings)

	// The same findings are on csirt.findings.v1, keyed by their tenant.
	onTopic := h.topicFindings(t)
	require.Len(t, onTopic, 4)
	kinds := map[finding.Kind]int{}
	for _, f := range onTopic {
		kinds[f.Kind]++
		if f.Kind == finding.KindCoverage {
			require.Equal(t, "comune-b", f.Entity)
			require.Equal(t, map[string]string{"stream": "/var/log/auth.log", "gap_from": "151", "gap_to": "250"}, f.Labels)
		}
		if f.Labels["reason"] == string(verify.ReasonBadSignature) {
			require.Equal(t, "comune-a", f.Entity, "a bad signature on a known agent's batch is that entity's finding")
		}
		if f.Labels["reason"] == string(verify.ReasonMalformed) {
			require.Empty(t, f.Entity, "an undecodable message is regional")
		}
	}
	require.Equal(t, map[finding.Kind]int{finding.KindIntegrity: 3, finding.KindCoverage: 1}, kinds)

	// Agents' activity reached their documents.
	ag, err := h.st.Get(context.Background(), store.RegionalScope(), store.Agents, "agent-2")
	require.NoError(t, err)
	require.Contains(t, string(ag.Source), `"status":"active"`)
	require.Contains(t, string(ag.Source), `"last_seen":"`)

	// Tenancy: entity comune-a sees only its own events, all stamped.
	ctx := context.Background()
	res, err := h.st.Search(ctx, store.TenantScope("comune-a"), store.Events, store.SearchRequest{Size: 1000})
	require.NoError(t, err)
	require.Equal(t, int64(3*2*50), res.Total)
	for _, d := range res.Docs {
		var ev event.Event
		require.NoError(t, ev.UnmarshalJSON(d.Source))
		require.Equal(t, "agent-1", ev.String("agent.id"))
		require.Equal(t, d.ID, ev.ID())
		for _, f := range event.Required {
			_, ok := ev.Get(f)
			require.True(t, ok, "event %s lacks %s", d.ID, f)
		}
	}

	// The events topic carries the entity key and the schema header.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ec, err := bus.NewConsumer(bus.ConsumerOptions{Options: h.bus, GroupID: "check", Topics: []string{h.events}})
	require.NoError(t, err)
	defer func() { _ = ec.Close() }()
	m, err := ec.Fetch(ctx)
	require.NoError(t, err)
	sv, _ := m.Header(bus.HeaderSchema)
	require.Equal(t, event.SchemaVersion, string(sv))
	require.Contains(t, []string{"comune-a", "comune-b"}, string(m.Key))
}

// killed is a Source whose commits never happen: the collector dies
// after its outputs are written and before the offsets are committed.
type killed struct {
	Source
	commits atomic.Int64
}

var errKilled = errors.New("killed before commit")

func (k *killed) Commit(context.Context, ...bus.Message) error {
	k.commits.Add(1)
	return errKilled
}

func TestPipelineRestartNoDuplicates(t *testing.T) {
	h := embedded(t)
	h.maxPending = 1000 // one checkpoint for everything fetched within FlushInterval
	h.flushInterval = time.Second
	a := h.enrol(t, "agent-1", "comune-a")
	var want int64
	for range 20 {
		h.send(t, a.id, a.batch(t, "/var/log/auth.log", 0, 100, nil))
		want += 100
	}

	// 1. Dies at its first commit: outputs durable, marks saved, offsets not committed.
	p1, c1 := h.pipeline(t, nil, func(s Source) Source { return &killed{Source: s} })
	err := runUntil(t, p1, c1, time.Minute, func() bool { return false })
	require.ErrorIs(t, err, errKilled)
	first := p1.Stats().Events
	require.Positive(t, first)

	// 2. Dies the same way, but its sequence marks were never saved
	// (fresh in-memory state): it re-parses and rewrites the same ids.
	p2, c2 := h.pipeline(t, verify.NewMemorySeqs(), func(s Source) Source { return &killed{Source: s} })
	err = runUntil(t, p2, c2, time.Minute, func() bool { return false })
	require.ErrorIs(t, err, errKilled)
	require.Zero(t, p2.Stats().Rejected, "redelivered batches must not be taken for replays")

	// 3. A healthy restart with the saved marks finishes the job.
	p3, c3 := h.pipeline(t, nil, nil)
	err = runUntil(t, p3, c3, time.Minute, func() bool { return h.storeCount(t, store.Events, "") >= want })
	require.NoError(t, err)
	require.Zero(t, p3.Stats().Rejected)
	require.Positive(t, p3.Stats().Redelivered, "batches done by run 1 are recognised by position")
	require.Equal(t, want, h.storeCount(t, store.Events, ""), "no duplicate in the store")
	require.Zero(t, h.topicCount(t, h.dlq))
	t.Logf("run 1 wrote %d events, run 2 %d, run 3 %d (redelivered %d batches); store holds %d, csirt.events.v1 %d (at-least-once)",
		first, p2.Stats().Events, p3.Stats().Events, p3.Stats().Redelivered, h.storeCount(t, store.Events, ""), h.topicCount(t, h.events))
}

// A parser panic on one batch sends that message to the dead-letter topic
// and the partition keeps flowing; an invalid UTF-8 record is archived.
func TestPoisonDoesNotStall(t *testing.T) {
	h := embedded(t)
	a := h.enrol(t, "agent-1", "comune-a")
	good := a.batch(t, "s", 0, 5, nil)
	b := &envelope.Batch{AgentID: a.id, EntityID: a.entity, StreamID: "s", FirstSeq: 6, Created: time.Unix(1763805600, 0),
		Records: []envelope.Record{{Time: time.Unix(1763805600, 0), Kind: envelope.KindRawLine, Flags: envelope.FlagInvalidUTF8, Data: []byte("bad \xff\xfe line")}}}
	odd, err := envelope.Seal(b, a.signer)
	require.NoError(t, err)
	a.next["s"] = 6
	poison := a.batch(t, "s", 0, 5, nil) // 7..11
	after := a.batch(t, "s", 0, 5, nil)  // 12..16
	h.send(t, a.id, good, odd, poison, after)

	p, c := h.pipeline(t, nil, nil)
	real := p.parse
	p.parse = func(res verify.Result, ingested time.Time) ([]encoded, error) {
		if res.Batch.FirstSeq == 7 {
			panic("parser bug")
		}
		return real(res, ingested)
	}
	require.NoError(t, runUntil(t, p, c, time.Minute, func() bool { return h.storeCount(t, store.Events, "") >= 11 }))
	require.Equal(t, int64(11), h.storeCount(t, store.Events, ""))
	require.Equal(t, int64(11), h.topicCount(t, h.events))
	require.Equal(t, int64(1), h.topicCount(t, h.dlq))
	require.Equal(t, int64(1), p.Stats().Poison)
	require.Equal(t, int64(1), h.storeCount(t, store.Events, "tags:invalid_utf8"))
}

func TestParseBatchIDs(t *testing.T) {
	a := &simAgent{id: "a", entity: "e", signer: newTestSigner(t), next: map[string]uint64{}}
	data := a.batch(t, "auditd", 1, 1, nil)
	b, err := envelope.Decode(data)
	require.NoError(t, err)
	// Three auditd records of one serial, then one of another: the first
	// group completes at record 3, the second is flushed at the end.
	recs := []string{
		`type=SYSCALL msg=audit(1700000000.100:10): arch=c000003e syscall=59 success=yes exit=0 a0=1 ppid=1 pid=2 auid=0 uid=0 gid=0 euid=0 comm="id" exe="/usr/bin/id" key=(null)`,
		`type=EXECVE msg=audit(1700000000.100:10): argc=1 a0="id"`,
		`type=PROCTITLE msg=audit(1700000000.100:10): proctitle=6964`,
		`type=SYSCALL msg=audit(1700000000.200:11): arch=c000003e syscall=59 success=yes exit=0 a0=1 ppid=1 pid=3 auid=0 uid=0 gid=0 euid=0 comm="ls" exe="/usr/bin/ls" key=(null)`,
	}
	b.Records = nil
	for _, r := range recs {
		b.Records = append(b.Records, envelope.Record{Time: time.Unix(1700000000, 0), Kind: envelope.KindRawLine, Data: []byte(r)})
	}
	d := newParser()
	evs1, err := parseBatch(d, nil, verify.Result{Batch: b, Agent: verify.Agent{ID: "a", EntityID: "e"}}, time.Unix(1700000001, 0))
	require.NoError(t, err)
	evs2, err := parseBatch(d, nil, verify.Result{Batch: b, Agent: verify.Agent{ID: "a", EntityID: "e"}}, time.Unix(1700000002, 0))
	require.NoError(t, err)
	require.NotEmpty(t, evs1)
	ids := map[string]bool{}
	for i := range evs1 {
		require.Equal(t, evs1[i].id, evs2[i].id, "ids are deterministic")
		require.False(t, ids[evs1[i].id], "ids are unique")
		ids[evs1[i].id] = true
	}
	t.Logf("%d auditd records gave %d events", len(recs), len(evs1))
}

// shutdownDuringSave cancels the pipeline's context from inside the first
// sequence-mark save and fails that save the way a cancelled store request
// does.
type shutdownDuringSave struct {
	verify.SeqStore
	cancel context.CancelFunc
	fired  atomic.Bool
}

func (s *shutdownDuringSave) Save(ctx context.Context, states []verify.SeqState) error {
	if s.fired.CompareAndSwap(false, true) {
		s.cancel()
		<-ctx.Done()
		return ctx.Err()
	}
	return s.SeqStore.Save(ctx, states)
}

// A shutdown that interrupts a checkpoint is a drain, not a failure: the
// checkpoint is finished within DrainTimeout, Run returns nil and a
// restart has nothing left to redo. CI once saw Run fail with "saving
// sequence state ... context canceled" here.
func TestShutdownDuringCheckpoint(t *testing.T) {
	h := embedded(t)
	a := h.enrol(t, "agent-1", "comune-a")
	const want = 300
	for range 3 {
		h.send(t, a.id, a.batch(t, "/var/log/auth.log", 0, 100, nil))
	}
	h.maxPending = 3 // the first checkpoint comes after the third batch (or 1 s)
	h.flushInterval = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seqs := &shutdownDuringSave{SeqStore: verify.StoreSeqs{Store: h.st}, cancel: cancel}
	p, c := h.pipeline(t, seqs, nil)
	err := p.Run(ctx)
	_ = c.Close()
	require.NoError(t, err, "a shutdown during a checkpoint must drain, not fail")
	require.True(t, seqs.fired.Load(), "the save was interrupted")
	first := h.storeCount(t, store.Events, "")
	require.Positive(t, first)

	// What the first run handled was committed by the drain; a restart
	// redelivers none of it and finishes the rest, if any.
	committed, err := bus.CommittedOffsets(context.Background(), h.bus, h.group, h.raw)
	require.NoError(t, err)
	var sum int64
	for _, o := range committed {
		sum += max(o, 0) // -1: nothing committed on that partition
	}
	require.Positive(t, sum, "the drain committed the checkpoint's messages")
	p2, c2 := h.pipeline(t, nil, nil)
	err = runUntil(t, p2, c2, time.Minute, func() bool { return h.storeCount(t, store.Events, "") >= want })
	require.NoError(t, err)
	require.Zero(t, p2.Stats().Redelivered, "the interrupted checkpoint was committed by the drain")
	require.Equal(t, int64(want), h.storeCount(t, store.Events, ""))
	t.Logf("first run: %d events, shut down during its checkpoint, committed offsets %v; restart: %d events, %d redelivered",
		first, committed, p2.Stats().Events, p2.Stats().Redelivered)
}
