package bus

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the bus counters. Labels are bounded: the topic name (a
// constant of this package or of a test) and, for lag, the partition number.
type metrics struct {
	produced      *prometheus.CounterVec
	producedBytes *prometheus.CounterVec
	produceErrors *prometheus.CounterVec
	consumed      *prometheus.CounterVec
	consumedBytes *prometheus.CounterVec
	consumeErrors *prometheus.CounterVec
	commits       *prometheus.CounterVec
	lag           *prometheus.GaugeVec
	deadLettered  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_bus_produced_messages_total", Help: "Messages acknowledged by the brokers.",
		}, []string{"topic"}),
		producedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_bus_produced_bytes_total", Help: "Key, value and header bytes acknowledged by the brokers.",
		}, []string{"topic"}),
		produceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_bus_produce_errors_total", Help: "Messages whose produce failed.",
		}, []string{"topic"}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_bus_consumed_messages_total", Help: "Messages fetched by consumers.",
		}, []string{"topic"}),
		consumedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_bus_consumed_bytes_total", Help: "Key, value and header bytes fetched by consumers.",
		}, []string{"topic"}),
		consumeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_bus_consume_errors_total", Help: "Failed fetches and commits.",
		}, []string{"topic"}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_bus_committed_messages_total", Help: "Messages passed to a successful Commit.",
		}, []string{"topic"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "csirt_bus_consumer_lag_messages", Help: "High watermark minus the next offset, as of the last fetch.",
		}, []string{"topic", "partition"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_bus_dead_lettered_total", Help: "Messages sent to the dead-letter topic, by source topic.",
		}, []string{"topic"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.produced, err = register(reg, m.produced)
	if err == nil {
		m.producedBytes, err = register(reg, m.producedBytes)
	}
	if err == nil {
		m.produceErrors, err = register(reg, m.produceErrors)
	}
	if err == nil {
		m.consumed, err = register(reg, m.consumed)
	}
	if err == nil {
		m.consumedBytes, err = register(reg, m.consumedBytes)
	}
	if err == nil {
		m.consumeErrors, err = register(reg, m.consumeErrors)
	}
	if err == nil {
		m.commits, err = register(reg, m.commits)
	}
	if err == nil {
		m.deadLettered, err = register(reg, m.deadLettered)
	}
	if err == nil {
		m.lag, err = register(reg, m.lag)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// the same description so that several producers and consumers can share
// one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("registering bus metrics: %w", err)
	}
	return c, nil
}
