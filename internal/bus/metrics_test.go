package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/csirt-toscana/platform/internal/bus"
	"github.com/csirt-toscana/platform/internal/bus/bustest"
)

// metricValue sums the samples of a counter or gauge family in reg whose
// labels include want.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func TestMetricsEmbedded(t *testing.T) {
	opts := startEmbedded(t)
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic := bustest.Unique(t, "topic")
	if err := bus.EnsureTopics(ctx, opts, []bus.TopicSpec{{Name: topic, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	// Two producers on one registry share the collectors.
	p1, err := bus.NewProducer(bus.ProducerOptions{Options: opts, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer p1.Close()
	p2, err := bus.NewProducer(bus.ProducerOptions{Options: opts, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	for _, p := range []*bus.Producer{p1, p2} {
		if err := p.Produce(ctx, bus.Message{Topic: topic, Key: []byte("k"), Value: []byte("0123456789")}, bus.Message{Topic: topic, Value: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := bus.NewConsumer(bus.ConsumerOptions{Options: opts, GroupID: bustest.Unique(t, "group"), Topics: []string{topic}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := c.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(ctx, m); err != nil {
		t.Fatal(err)
	}
	byTopic := map[string]string{"topic": topic}
	for name, want := range map[string]float64{
		"csirt_bus_produced_messages_total":  4,
		"csirt_bus_produced_bytes_total":     24,
		"csirt_bus_produce_errors_total":     0,
		"csirt_bus_consumed_messages_total":  1,
		"csirt_bus_committed_messages_total": 1,
		"csirt_bus_consumer_lag_messages":    3,
	} {
		if got := metricValue(t, reg, name, byTopic); got != want {
			t.Errorf("%s{topic=%s} = %v, want %v", name, topic, got, want)
		}
	}
}
