package correlator

import (
	"fmt"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/finding"
	"github.com/csirt-toscana/platform/rules/intel"
)

// mixed returns n encoded events: ssh failures and flows of 50 entities.
func mixed(n int) [][]byte {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	out := make([][]byte, n)
	for i := range out {
		ent := fmt.Sprintf("comune-%02d", i%50)
		at := t0.Add(time.Duration(i) * time.Millisecond)
		if i%2 == 0 {
			out[i] = sshFailure(ent, fmt.Sprintf("203.0.%d.%d", i/256%256, i%256), i, at)
		} else {
			out[i] = flowEvent(ent, fmt.Sprintf("flow-%d", i), fmt.Sprintf("198.18.%d.%d", i/256%256, i%256), at)
		}
	}
	return out
}

func benchState(b *testing.B, indicators int) {
	c, digest, err := LoadCollection(nil, false)
	if err != nil {
		b.Fatal(err)
	}
	p, err := BuildProgram(c, digest, ProgramOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var h *intel.Holder
	if indicators > 0 {
		inds := make([]intel.Indicator, 0, indicators)
		for i := 0; i < indicators; i++ {
			ind, err := intel.New(intel.IPv4, fmt.Sprintf("100.%d.%d.%d", 64+i/65536%64, i/256%256, i%256), "bench")
			if err != nil {
				b.Fatal(err)
			}
			inds = append(inds, ind)
		}
		m, err := intel.Build(inds, intel.MatcherOptions{})
		if err != nil {
			b.Fatal(err)
		}
		h = intel.NewHolder(m)
	}
	s := NewState(p, h)
	evs := mixed(4096)
	var out []*finding.Finding
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev, err := event.Decode(evs[i%len(evs)])
		if err != nil {
			b.Fatal(err)
		}
		out = s.Process(ev, now, out[:0])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecodeDetect: event.Decode + Sigma library + correlations +
// heuristics, one core.
func BenchmarkDecodeDetect(b *testing.B) { benchState(b, 0) }

// BenchmarkDecodeDetectIntel100k adds a matcher of 100,000 indicators.
func BenchmarkDecodeDetectIntel100k(b *testing.B) { benchState(b, 100_000) }

// BenchmarkDecode is event.Decode alone, for comparison.
func BenchmarkDecode(b *testing.B) {
	evs := mixed(4096)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := event.Decode(evs[i%len(evs)]); err != nil {
			b.Fatal(err)
		}
	}
}
