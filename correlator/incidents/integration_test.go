package incidents

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/elastic"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// TestCampaignKafkaElasticsearch runs the regional campaign acceptance on
// the real services: the findings go to a Kafka topic, two stage
// instances consume it in one group and write to Elasticsearch; then a
// second group re-reads the whole topic (a redelivery of everything) and
// must change nothing.
func TestCampaignKafkaElasticsearch(t *testing.T) {
	esURL := testenv.Elasticsearch(t)
	broker := testenv.Kafka(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	run := hex.EncodeToString(rnd[:])
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	zero := 0
	st, err := elastic.Open(ctx, elastic.Options{Addresses: []string{esURL}, IndexPrefix: "test-incidents-" + run,
		Replicas: &zero, RefreshInterval: 100 * time.Millisecond, Logger: quiet()})
	require.NoError(t, err)
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
		defer dcancel()
		if err := st.Drop(dctx); err != nil {
			t.Errorf("dropping test indices: %v", err)
		}
		_ = st.Close()
	})
	addEntity(t, st, "comune-prato", true)

	opts := bus.Options{Brokers: []string{broker}}
	topic := "test.incidents.findings." + run
	require.NoError(t, bus.EnsureTopics(ctx, opts, []bus.TopicSpec{{Name: topic, Partitions: 3}}))
	prod, err := bus.NewProducer(bus.ProducerOptions{Options: opts, BatchTimeout: 5 * time.Millisecond})
	require.NoError(t, err)
	defer func() { _ = prod.Close() }()
	t0 := time.Date(2026, 11, 20, 11, 55, 0, 0, time.UTC)
	fs := campaignFindings(t0)
	// The publisher writes each finding to the topic and the store, as
	// the correlator does.
	pub := &finding.Publisher{Sender: prod, Store: st, Topic: topic}
	require.NoError(t, pub.Publish(ctx, fs...))

	consume := func(group string, instances int) {
		t.Helper()
		rctx, rcancel := context.WithCancel(ctx)
		defer rcancel()
		errs := make(chan error, instances)
		var stages []*Stage
		for i := 0; i < instances; i++ {
			cons, err := bus.NewConsumer(bus.ConsumerOptions{Options: opts, GroupID: group, Topics: []string{topic}})
			require.NoError(t, err)
			defer func() { _ = cons.Close() }()
			s := newStage(t, st, func() time.Time { return t0.Add(time.Hour) })
			stages = append(stages, s)
			go func() { errs <- s.Run(rctx, cons, nil, RunOptions{Linger: 50 * time.Millisecond}) }()
		}
		// Wait until the instances applied every finding between them.
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			var n int64
			for _, s := range stages {
				n += s.Stats().Findings
			}
			if n >= int64(len(fs)) {
				break
			}
			select {
			case err := <-errs:
				t.Fatalf("stage stopped: %v", err)
			case <-ctx.Done():
				t.Fatalf("only %d of %d findings applied before the deadline", n, len(fs))
			case <-tick.C:
			}
		}
		rcancel()
		for range stages {
			require.NoError(t, <-errs)
		}
	}
	consume("test-incidents-a-"+run, 2)
	require.NoError(t, st.Refresh(ctx, store.Incidents))
	checkCampaign(t, st)
	before := snapshot(t, st)

	consume("test-incidents-b-"+run, 1)
	require.Equal(t, before, snapshot(t, st), "re-reading the topic changed the incidents")
}
