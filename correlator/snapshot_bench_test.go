package correlator_test

import (
	"testing"
	"time"

	"github.com/csirt-toscana/platform/correlator"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/internal/loadgen"
)

// loadedState is a State (rule library, no intel) after n loadgen events
// of 200 entities spread over one minute: a partition's state during a
// load run.
func loadedState(b *testing.B, n int) *correlator.State {
	b.Helper()
	c, digest, err := correlator.LoadCollection(nil, false)
	if err != nil {
		b.Fatal(err)
	}
	p, err := correlator.BuildProgram(c, digest, correlator.ProgramOptions{})
	if err != nil {
		b.Fatal(err)
	}
	g, err := loadgen.New(200, 1)
	if err != nil {
		b.Fatal(err)
	}
	s := correlator.NewState(p, nil)
	t0 := time.Now().Add(-time.Minute)
	var out []*finding.Finding
	for i := 0; i < n; i++ {
		at := t0.Add(time.Duration(i) * time.Minute / time.Duration(n))
		r := g.Next(at)
		out = s.Process(r.Event, at, out[:0])
	}
	return s
}

// BenchmarkSnapshot is the state serialisation of a checkpoint (State
// snapshot and the document encoding) after 75,000 events (a minute of
// 5,000 events/s on one of four partitions).
func BenchmarkSnapshot(b *testing.B) {
	s := loadedState(b, 75_000)
	var size int
	b.ReportAllocs()
	for b.Loop() {
		st, err := s.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		src, err := correlator.EncodeSnapshotDoc(st)
		if err != nil {
			b.Fatal(err)
		}
		size = len(src)
	}
	b.ReportMetric(float64(size), "doc-bytes")
}

func BenchmarkSnapshotStateOnly(b *testing.B) {
	s := loadedState(b, 75_000)
	for b.Loop() {
		if _, err := s.Snapshot(); err != nil {
			b.Fatal(err)
		}
	}
}
