package heuristics

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// Detector ids, used in alert ids, snapshots and configuration.
const (
	PortScanID  = "port_scan"
	BeaconingID = "beaconing"
	DNSTunnelID = "dns_tunnel"
	VolumeID    = "outbound_volume"
)

// Severities, on Sigma's level scale.
const (
	SeverityLow    = "low"
	SeverityMedium = "medium"
	SeverityHigh   = "high"
)

// Observable is one indicator an alert names (type is "ip", "domain",
// "port" or "host").
type Observable struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Alert is what a detector reports. One alert per key per window: ID is
// derived from the detector, the key and the window start, so replaying the
// same events gives the same id.
type Alert struct {
	ID          string             `json:"id"`
	Detector    string             `json:"detector"`
	Name        string             `json:"name"`
	Key         string             `json:"key"` // the detector's key fields joined by "|"
	Entity      string             `json:"entity"`
	Host        string             `json:"host,omitempty"`
	SourceIP    string             `json:"source_ip,omitempty"`
	Severity    string             `json:"severity"`
	WindowStart time.Time          `json:"window_start"`
	WindowEnd   time.Time          `json:"window_end"`
	Observables []Observable       `json:"observables"`
	Metrics     map[string]float64 `json:"metrics"`
	EventIDs    []string           `json:"event_ids,omitempty"` // a bounded sample
	Message     string             `json:"message"`
}

// AlertID is the deterministic id of the alert of a detector for a key and
// a window start.
func AlertID(detector, key string, windowStart int64) string {
	h := sha256.New()
	h.Write([]byte(detector))
	h.Write([]byte{0})
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(windowStart, 10)))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Detector is a streaming network heuristic. Observe is fed events in
// event-time order per entity (modest disorder is tolerated) and returns
// the alerts the event completes, usually none. Snapshot and Restore carry
// the whole state across a restart. Implementations are safe for
// concurrent use.
type Detector interface {
	ID() string
	Observe(ev event.Event) []Alert
	Snapshot() ([]byte, error)
	Restore(data []byte) error
	Stats() Stats
}

// Stats are a detector's counters.
type Stats struct {
	Events      uint64 `json:"events"`       // events observed
	Ignored     uint64 `json:"ignored"`      // events of other datasets or missing key fields
	Keys        int    `json:"keys"`         // live keys
	KeysEvicted uint64 `json:"keys_evicted"` // keys dropped because MaxKeys was reached
	KeysExpired uint64 `json:"keys_expired"` // idle keys dropped
	Late        uint64 `json:"late"`         // events too old for their key's window
	Alerts      uint64 `json:"alerts"`
}

// Options bound a detector's memory.
type Options struct {
	// MaxKeys is the largest number of keys kept; the least recently seen
	// key is evicted (Stats.KeysEvicted) to make room. Default 200,000.
	MaxKeys int
	// MaxEventIDs is the largest number of event ids an alert carries (and a
	// key keeps). Default 8; negative keeps none.
	MaxEventIDs int
}

func (o Options) withDefaults() Options {
	if o.MaxKeys <= 0 {
		o.MaxKeys = 200_000
	}
	if o.MaxEventIDs == 0 {
		o.MaxEventIDs = 8
	}
	if o.MaxEventIDs < 0 {
		o.MaxEventIDs = 0
	}
	return o
}

// evTime is the event time in Unix nanoseconds: @timestamp, else
// event.start; 0 when neither is set.
func evTime(ev event.Event) int64 {
	if t := ev.Time(); !t.IsZero() {
		return t.UnixNano()
	}
	if t, ok := ev["event.start"].(time.Time); ok && !t.IsZero() {
		return t.UnixNano()
	}
	return 0
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// addID appends an event id to a bounded sample.
func addID(ids []string, id string, maxIDs int) []string {
	if id == "" || len(ids) >= maxIDs {
		return ids
	}
	for _, x := range ids {
		if x == id {
			return ids
		}
	}
	return append(ids, id)
}
