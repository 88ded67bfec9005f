package heartbeat

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/internal/envelope"
)

func TestHeartbeats(t *testing.T) {
	n := 0
	s, err := New(10*time.Millisecond, func() Report {
		n++
		return Report{AgentID: "a", Counters: Counters{LinesRead: uint64(n)}}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st[0].State != source.StateWaiting {
		t.Errorf("before the first heartbeat: %+v", st)
	}
	out := make(chan source.Record)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx, out) }()
	for i := 1; i <= 3; i++ {
		r := <-out
		var rep Report
		if err := json.Unmarshal(r.Data, &rep); err != nil {
			t.Fatal(err)
		}
		if r.Stream != Stream || r.Kind != envelope.KindSummary || rep.Type != Stream || rep.Schema != SchemaVersion || rep.AgentID != "a" || rep.Counters.LinesRead != uint64(i) || rep.Time.IsZero() {
			t.Errorf("heartbeat %d: %+v %+v", i, r, rep)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st[0].State != source.StateReading || st[0].Read != 3 {
		t.Errorf("after three: %+v", st)
	}
	if _, err := New(0, nil, nil); err == nil {
		t.Error("a zero interval must be refused")
	}
}
