package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/elastic"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// TestPipelineRealServices runs the scenario of TestPipelineEmbedded on the
// real Kafka and Elasticsearch of deploy/dev/services, with topics, group
// and index prefix unique to the run.
func TestPipelineRealServices(t *testing.T) {
	kafkaAddr := testenv.Kafka(t)
	esURL := testenv.Elasticsearch(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	run := hex.EncodeToString(rnd[:])

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	zero := 0
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	es, err := elastic.Open(ctx, elastic.Options{Addresses: []string{esURL}, IndexPrefix: "test-collector-" + run,
		Replicas: &zero, RefreshInterval: 100 * time.Millisecond, Logger: l})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := es.Drop(ctx); err != nil {
			t.Errorf("dropping test indices: %v", err)
		}
		_ = es.Close()
	})
	h := newHarness(t, bus.Options{Brokers: []string{kafkaAddr}}, ".test-"+run, es)
	t.Cleanup(func() { // the run's topics would otherwise pile up on the shared broker
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cl := &kafka.Client{Addr: kafka.TCP(kafkaAddr)}
		if _, err := cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{h.raw, h.events, h.dlq, h.findingsTopic}}); err != nil {
			t.Logf("deleting test topics: %v", err)
		}
	})
	want := scenario(t, h, 4, 100)

	p, c := h.pipeline(t, nil, nil)
	require.NoError(t, runUntil(t, p, c, 2*time.Minute, func() bool {
		return h.topicCount(t, h.dlq) >= 3 && h.storeCount(t, store.Events, "") >= want
	}))
	require.Equal(t, want, h.topicCount(t, h.events), "events in Kafka")
	require.Equal(t, want, h.storeCount(t, store.Events, ""), "events in Elasticsearch")
	require.Equal(t, int64(3), h.topicCount(t, h.dlq), "dead letters")
	require.Len(t, h.findings(t, "kind:integrity"), 3)
	cov := h.findings(t, "kind:coverage")
	require.Len(t, cov, 1)
	require.True(t, strings.Contains(cov[0], "sequence numbers 401 to 500"), cov[0])
}
