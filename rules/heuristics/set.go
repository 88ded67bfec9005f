package heuristics

import (
	"encoding/json"
	"fmt"

	"github.com/csirt-toscana/platform/internal/event"
)

// Set runs every detector of a Config over the same events.
type Set struct {
	Detectors []Detector
}

// NewSet returns the four detectors built from cfg (DefaultConfig when
// nil), in the order port scan, beaconing, DNS tunnelling, volume.
func NewSet(cfg *Config, opts Options) *Set {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	return &Set{Detectors: []Detector{
		NewPortScan(cfg.PortScan, opts),
		NewBeaconing(cfg.Beaconing, opts),
		NewDNSTunnel(cfg.DNSTunnel, opts),
		NewVolume(cfg.Volume, opts),
	}}
}

// Observe feeds an event to every detector and returns their alerts.
func (s *Set) Observe(ev event.Event) []Alert {
	var out []Alert
	for _, d := range s.Detectors {
		out = append(out, d.Observe(ev)...)
	}
	return out
}

// Snapshot returns the state of every detector (a JSON object by id). The
// object is assembled from the detectors' own JSON as is: re-encoding it
// through encoding/json would scan (compact) every byte again, which for
// the megabytes of a busy partition was a quarter of the snapshot's cost.
func (s *Set) Snapshot() ([]byte, error) {
	out := []byte{'{'}
	for i, d := range s.Detectors {
		b, err := d.Snapshot()
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, ',')
		}
		id, err := json.Marshal(d.ID())
		if err != nil {
			return nil, err
		}
		out = append(out, id...)
		out = append(out, ':')
		out = append(out, b...)
	}
	return append(out, '}'), nil
}

// Restore restores every detector from a Set snapshot. A detector absent
// from the snapshot keeps its current state (empty after NewSet); a
// detector whose state fails to restore keeps its state too, and the first
// error is returned after the others were restored.
func (s *Set) Restore(data []byte) error {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return fmt.Errorf("reading heuristics snapshot: %w (start without it)", err)
	}
	var first error
	for _, d := range s.Detectors {
		b, ok := all[d.ID()]
		if !ok {
			continue
		}
		if err := d.Restore(b); err != nil && first == nil {
			first = err
		}
	}
	return first
}
