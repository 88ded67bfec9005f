// Package heartbeat is the agent's heartbeat source: every interval it
// emits one JSON record, in its own stream "agent.heartbeat", describing
// the agent's health (counters, sources, certificate, policy). It is a
// source like any other, so heartbeats travel in the same signed,
// sequenced envelopes and through the same spool as log lines; the
// collector parses them into dataset "agent.heartbeat" and updates the
// agent's last_seen. The wire format is Report (docs/agent.md).
package heartbeat

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/internal/envelope"
)

// Stream is the envelope stream id of heartbeats.
const Stream = "agent.heartbeat"

// Kind is the source kind name, for status lines.
const Kind = "heartbeat"

// SchemaVersion is Report.Schema. Fields are only ever added.
const SchemaVersion = 1

// Report is one heartbeat, the JSON document in the record's data.
type Report struct {
	Type           string          `json:"type"`   // always "agent.heartbeat"
	Schema         int             `json:"schema"` // SchemaVersion
	Time           time.Time       `json:"time"`   // when it was made (agent clock)
	AgentID        string          `json:"agent_id"`
	EntityID       string          `json:"entity_id"`
	Hostname       string          `json:"hostname"`
	AgentVersion   string          `json:"agent_version"`
	Started        time.Time       `json:"started"`          // process start
	UptimeSeconds  int64           `json:"uptime_seconds"`   // since Started
	IntervalSecond int64           `json:"interval_seconds"` // expected gap to the next heartbeat
	PolicyRevision string          `json:"policy_revision"`
	Transport      string          `json:"transport"` // "kafka" or "intake"
	Counters       Counters        `json:"counters"`
	Sources        []SourceState   `json:"sources"`
	CertNotAfter   time.Time       `json:"cert_not_after"`
	CertState      string          `json:"cert_state"` // ok, renew-due, expired, revoked
	Problems       []string        `json:"problems,omitempty"`
	Capture        *CaptureCounter `json:"capture,omitempty"` // packet capture, when the policy turns it on
}

// Counters are the shipping counters since the process started.
type Counters struct {
	LinesRead      uint64    `json:"lines_read"`
	LinesSpooled   uint64    `json:"lines_spooled"`
	LinesShipped   uint64    `json:"lines_shipped"`
	BatchesSpooled uint64    `json:"batches_spooled"`
	BatchesShipped uint64    `json:"batches_shipped"`
	DroppedBatches uint64    `json:"dropped_batches"`
	DroppedBytes   uint64    `json:"dropped_bytes"`
	Errors         uint64    `json:"errors"`
	Retries        uint64    `json:"retries"`
	SpoolDepth     int64     `json:"spool_depth"`
	SpoolBytes     int64     `json:"spool_bytes"`
	LastAck        time.Time `json:"last_ack,omitzero"`
}

// SourceState is one input of one source (one file).
type SourceState struct {
	Source string    `json:"source"`
	Kind   string    `json:"kind"`
	Path   string    `json:"path,omitempty"`
	State  string    `json:"state"`
	Error  string    `json:"error,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	Read   int64     `json:"read_offset"`
	Acked  int64     `json:"acked_offset"`
}

// CaptureCounter are the live packet capture's counters since the
// capture started (it restarts when a new policy is applied).
type CaptureCounter struct {
	Interface        string `json:"interface"`
	Packets          uint64 `json:"packets"`           // packets the kernel passed the filter
	DroppedKernel    uint64 `json:"dropped_kernel"`    // ring full: the agent was too slow
	DroppedInterface uint64 `json:"dropped_interface"` // dropped by the network interface
	FlowsEvicted     uint64 `json:"flows_evicted"`     // flow table full: oldest flows reported early
	FlowsActive      int64  `json:"flows_active"`      // flows in the table now
	Summaries        uint64 `json:"summaries"`         // summary events emitted
}

// Source emits a Report every interval. Build it with New.
type Source struct {
	interval time.Duration
	report   func() Report
	now      func() time.Time

	mu      sync.Mutex
	last    time.Time
	emitted uint64
}

var _ source.Source = (*Source)(nil)

// New returns a heartbeat source calling report every interval (and once
// right at the start of Run).
func New(interval time.Duration, report func() Report, now func() time.Time) (*Source, error) {
	if interval <= 0 || report == nil {
		return nil, errors.New("heartbeat: a positive interval and a report function are required")
	}
	if now == nil {
		now = time.Now
	}
	return &Source{interval: interval, report: report, now: now}, nil
}

// Run emits heartbeats until ctx ends.
func (s *Source) Run(ctx context.Context, out chan<- source.Record) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		r := s.report()
		r.Type, r.Schema = Stream, SchemaVersion
		if r.Time.IsZero() {
			r.Time = s.now()
		}
		r.IntervalSecond = int64(s.interval / time.Second)
		b, err := json.Marshal(r)
		if err != nil {
			return err // plain structs: cannot happen
		}
		select {
		case out <- source.Record{Stream: Stream, Origin: Kind, Time: r.Time, Kind: envelope.KindSummary, Data: b}:
			s.mu.Lock()
			s.last = r.Time
			s.emitted++
			s.mu.Unlock()
		case <-ctx.Done():
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Ack does nothing: a heartbeat lost in a crash is not re-sent.
func (s *Source) Ack(...source.Cursor) error { return nil }

// Status reports when the last heartbeat was emitted.
func (s *Source) Status() []source.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := source.Status{Source: Kind, Path: Stream, State: source.StateReading, Since: s.last, Read: int64(s.emitted)} //nolint:gosec // G115: a count
	if s.emitted == 0 {
		st.State = source.StateWaiting
		st.Err = "no heartbeat emitted yet"
	}
	return []source.Status{st}
}
