package syslogin

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons (label "reason" of csirt_syslog_dropped_messages_total).
const (
	DropRateLimit     = "rate_limit"     // the source exceeded rate_per_source
	DropQueueFull     = "queue_full"     // UDP message while the sink was behind
	DropSinkError     = "sink_error"     // the sink refused the batch after retries
	DropIncomplete    = "incomplete"     // a stream ended inside an octet-counted frame
	DropUnknownSource = "unknown_source" // only with Options.DropUnknown
	DropParserPanic   = "parser_panic"   // a parser bug; the message is logged
)

// metrics are the intake's counters. Labels are bounded: transport (udp,
// tcp, tls) and a drop reason from the list above.
type metrics struct {
	received     *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	truncated    *prometheus.CounterVec
	unknown      *prometheus.CounterVec
	published    prometheus.Counter
	connsOpen    *prometheus.GaugeVec
	connsRefused *prometheus.CounterVec
	connErrors   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	tr := []string{"transport"}
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_syslog_received_messages_total", Help: "Syslog messages received, before limits.",
		}, tr),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_syslog_received_bytes_total", Help: "Bytes of syslog messages received (as framed, before cutting).",
		}, tr),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_syslog_dropped_messages_total", Help: "Syslog messages dropped, by reason.",
		}, []string{"transport", "reason"}),
		truncated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_syslog_truncated_messages_total", Help: "Syslog messages longer than max_message_bytes, cut and tagged.",
		}, tr),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_syslog_unknown_source_messages_total", Help: "Syslog messages from an address no registered device covers.",
		}, tr),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "csirt_syslog_published_events_total", Help: "Events accepted by the sink.",
		}),
		connsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "csirt_syslog_open_connections", Help: "Open TCP and TLS syslog connections.",
		}, tr),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_syslog_refused_connections_total", Help: "Connections closed at once because max_connections were open.",
		}, tr),
		connErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csirt_syslog_connection_errors_total", Help: "Connections ended by an error (TLS handshake, read), idle timeouts excluded.",
		}, tr),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	for _, r := range []func() error{
		func() error { m.received, err = register(reg, m.received); return err },
		func() error { m.bytes, err = register(reg, m.bytes); return err },
		func() error { m.dropped, err = register(reg, m.dropped); return err },
		func() error { m.truncated, err = register(reg, m.truncated); return err },
		func() error { m.unknown, err = register(reg, m.unknown); return err },
		func() error { m.published, err = register(reg, m.published); return err },
		func() error { m.connsOpen, err = register(reg, m.connsOpen); return err },
		func() error { m.connsRefused, err = register(reg, m.connsRefused); return err },
		func() error { m.connErrors, err = register(reg, m.connErrors); return err },
	} {
		if err := r(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// the same description (a second intake on the same registry shares it).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("registering syslog metrics: %w", err)
	}
	return c, nil
}
