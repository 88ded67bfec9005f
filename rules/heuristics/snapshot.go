package heuristics

import (
	"encoding/json"
	"fmt"
)

// SnapshotFormat and SnapshotVersion identify a detector snapshot (JSON).
// Restore refuses another format, version or detector.
const (
	SnapshotFormat  = "csirt-heuristics-state"
	SnapshotVersion = 1
)

// snapshot is the common envelope; Keys holds the detector's per-key
// records from the most to the least recently used.
type snapshot[K any] struct {
	Format    string `json:"format"`
	Version   int    `json:"version"`
	Detector  string `json:"detector"`
	Watermark int64  `json:"watermark"`
	Stats     Stats  `json:"stats"`
	Keys      []K    `json:"keys"`
}

func encodeSnapshot[K any](id string, watermark int64, st Stats, keys []K) ([]byte, error) {
	b, err := json.Marshal(snapshot[K]{Format: SnapshotFormat, Version: SnapshotVersion, Detector: id, Watermark: watermark, Stats: st, Keys: keys})
	if err != nil {
		return nil, fmt.Errorf("writing %s snapshot: %w", id, err)
	}
	return b, nil
}

func decodeSnapshot[K any](id string, data []byte) (*snapshot[K], error) {
	var s snapshot[K]
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("reading %s snapshot: %w (the state is not a snapshot of this detector: start without it)", id, err)
	}
	if s.Format != SnapshotFormat {
		return nil, fmt.Errorf("reading %s snapshot: format %q is not %q", id, s.Format, SnapshotFormat)
	}
	if s.Version != SnapshotVersion {
		return nil, fmt.Errorf("reading %s snapshot: version %d is not supported (this build reads %d)", id, s.Version, SnapshotVersion)
	}
	if s.Detector != id {
		return nil, fmt.Errorf("reading %s snapshot: it holds the state of detector %q", id, s.Detector)
	}
	return &s, nil
}
