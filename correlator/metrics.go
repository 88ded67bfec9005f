package correlator

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events, skipped, poison, findings, guarded, snapshots, restored prometheus.Counter
	partitions, snapshotBytes                                       prometheus.Gauge
	delay                                                           prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	ctr := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "csirt", Subsystem: "correlator", Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "csirt", Subsystem: "correlator", Name: name, Help: help})
	}
	m := &metrics{
		events:        ctr("events_total", "Events evaluated."),
		skipped:       ctr("events_skipped_total", "Redelivered events already in the restored state."),
		poison:        ctr("events_poison_total", "Undecodable events sent to the dead-letter topic."),
		findings:      ctr("findings_total", "Findings written to the store and the findings topic."),
		guarded:       ctr("findings_replayed_total", "Findings of replayed events found already stored and not emitted again."),
		snapshots:     ctr("snapshots_total", "Partition state snapshots saved."),
		restored:      ctr("restores_total", "Partition assignments that restored a saved state."),
		partitions:    gauge("partitions", "Partitions this instance holds state for."),
		snapshotBytes: gauge("snapshot_bytes", "Size of the last partition snapshot saved."),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "csirt", Subsystem: "correlator", Name: "finding_delay_seconds",
			Help:    "From the @timestamp of the event that raised a finding to the finding stored (stream findings; a lagging consumer or late events show here).",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300, 3600}}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.events, m.skipped, m.poison, m.findings, m.guarded, m.snapshots, m.restored, m.partitions, m.snapshotBytes, m.delay} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					return nil, err
				}
			}
		}
	}
	return m, nil
}
