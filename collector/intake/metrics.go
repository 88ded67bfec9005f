package intake

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests    *prometheus.CounterVec // endpoint, code
	enrolments  *prometheus.CounterVec // result
	envelopes   prometheus.Counter
	bytes       prometheus.Counter
	rejected    *prometheus.CounterVec // reason
	produceErrs prometheus.Counter
	inflight    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "csirt_intake_requests_total",
			Help: "HTTPS intake requests by endpoint and HTTP status."}, []string{"endpoint", "code"}),
		enrolments: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "csirt_intake_enrolments_total",
			Help: "Enrolment attempts by result (ok or the refusal code)."}, []string{"result"}),
		envelopes: prometheus.NewCounter(prometheus.CounterOpts{Name: "csirt_intake_envelopes_total",
			Help: "Envelopes accepted on /v1/batches and acknowledged by Kafka."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "csirt_intake_envelope_bytes_total",
			Help: "Bytes of envelopes accepted on /v1/batches."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "csirt_intake_batches_rejected_total",
			Help: "Batch requests refused, by reason."}, []string{"reason"}),
		produceErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "csirt_intake_produce_errors_total",
			Help: "Batch requests answered 503 because Kafka did not acknowledge."}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "csirt_intake_requests_in_flight",
			Help: "Requests being served."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.enrolments, m.envelopes, m.bytes, m.rejected, m.produceErrs, m.inflight} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}
