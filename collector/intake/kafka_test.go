package intake

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/enroll"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// An envelope posted to /v1/batches is in Kafka (acks=all) when the
// intake answers 200; a refused one is not.
func TestBatchesReachKafka(t *testing.T) {
	addr := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := bus.Options{Brokers: []string{addr}, ClientID: "intake-test"}
	topic := fmt.Sprintf("test.intake.raw.%d", time.Now().UnixNano())
	if err := bus.EnsureTopics(ctx, opts, []bus.TopicSpec{{Name: topic, Partitions: 1, ReplicationFactor: 1}}); err != nil {
		t.Fatal(err)
	}
	prod, err := bus.NewProducer(bus.ProducerOptions{Options: opts, BatchTimeout: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	h := newHarness(t, harnessOpts{producer: prod, topic: topic})
	e := h.mustEnrol("kafka01")
	bc, err := enroll.NewBatchClient(session(t, e))
	if err != nil {
		t.Fatal(err)
	}
	good := sealed(t, e, e.AgentID, testEntity, 1, "first line", "second line")
	if err := bc.Produce(ctx, bus.Message{Value: good}); err != nil {
		t.Fatal(err)
	}
	// The claim of another entity is refused and must not reach Kafka.
	if err := bc.Produce(ctx, bus.Message{Value: sealed(t, e, e.AgentID, "comune-altro", 3, "x")}); err == nil {
		t.Fatal("foreign entity accepted")
	}
	last := sealed(t, e, e.AgentID, testEntity, 3, "third line")
	if err := bc.Produce(ctx, bus.Message{Value: last}); err != nil {
		t.Fatal(err)
	}
	// Acknowledged means readable now: the end offset already covers both.
	ends, err := bus.EndOffsets(ctx, opts, topic)
	if err != nil {
		t.Fatal(err)
	}
	if ends[0] != 2 {
		t.Fatalf("end offset %v right after the 200s, want 2 messages", ends)
	}
	c, err := bus.NewConsumer(bus.ConsumerOptions{Options: opts, GroupID: topic + ".reader", Topics: []string{topic}, StartOffset: bus.StartFirst})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, want := range [][]byte{good, last} {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.Value, want) || string(m.Key) != e.AgentID {
			t.Fatalf("message %d: key %q, value of %d bytes differs from the envelope sent", i, m.Key, len(m.Value))
		}
	}
	t.Logf("2 envelopes of agent %s read back from %s; the refused one is absent", e.AgentID, topic)
}
