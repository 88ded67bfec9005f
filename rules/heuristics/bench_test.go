package heuristics

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// benchPool is a realistic mix for one entity: 60% flows from 5,000
// internal hosts to 2,000 external servers on common ports, 40% DNS
// queries for 500 parents, one event every 2 ms of event time.
func benchPool(n int) []event.Event {
	r := rand.New(rand.NewPCG(41, 41))
	ports := []int64{443, 443, 443, 80, 22, 25, 993, 8080}
	evs := make([]event.Event, 0, n)
	for i := range n {
		at := t0.Add(time.Duration(i) * 2 * time.Millisecond)
		src := fmt.Sprintf("10.%d.%d.%d", r.IntN(4), r.IntN(40), 1+r.IntN(250))
		if r.IntN(10) < 6 {
			dst := fmt.Sprintf("%d.%d.%d.%d", 20+r.IntN(150), r.IntN(256), r.IntN(256), 1+r.IntN(250))
			ev := flowEv("comune-bench", at, src, dst, ports[r.IntN(len(ports))], "SF", 500+r.Int64N(50_000), 1000+r.Int64N(500_000))
			ev["network.community_id"] = fmt.Sprintf("1:%x", r.Uint64())
			evs = append(evs, ev)
		} else {
			name := fmt.Sprintf("host%d.site%d.example.it", r.IntN(20), r.IntN(500))
			evs = append(evs, dnsEv("comune-bench", at, src, name, "A"))
		}
	}
	return evs
}

func benchDetectors() map[string]func() Detector {
	return map[string]func() Detector{
		PortScanID:  func() Detector { return NewPortScan(NewLayered(DefaultPortScanParams()), Options{}) },
		BeaconingID: func() Detector { return NewBeaconing(NewLayered(DefaultBeaconParams()), Options{}) },
		DNSTunnelID: func() Detector { return NewDNSTunnel(NewLayered(DefaultDNSTunnelParams()), Options{}) },
		VolumeID:    func() Detector { return NewVolume(NewLayered(DefaultVolumeParams()), Options{}) },
		"combined":  func() Detector { return setDetector{NewSet(nil, Options{})} },
	}
}

// setDetector adapts a Set to Detector for the combined benchmark.
type setDetector struct{ *Set }

func (setDetector) ID() string   { return "combined" }
func (setDetector) Stats() Stats { return Stats{} }

// BenchmarkObserve measures events per second through each detector and
// through all four (combined), over a realistic mix of events.
func BenchmarkObserve(b *testing.B) {
	pool := benchPool(200_000)
	for _, name := range []string{PortScanID, BeaconingID, DNSTunnelID, VolumeID, "combined"} {
		mk := benchDetectors()[name]
		b.Run(name, func(b *testing.B) {
			d := mk()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % len(pool)
				if j == 0 && i > 0 {
					b.StopTimer()
					d = mk() // the pool's times start again: a fresh detector
					b.StartTimer()
				}
				d.Observe(pool[j])
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkMemoryPer100kKeys measures the live heap of 100,000 keys, each
// created by one event (a distinct source address), after GC.
func BenchmarkMemoryPer100kKeys(b *testing.B) {
	const keys = 100_000
	for _, name := range []string{PortScanID, BeaconingID, DNSTunnelID, VolumeID} {
		mk := benchDetectors()[name]
		b.Run(name, func(b *testing.B) {
			mkEv := func(i int) event.Event {
				src := fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255)
				at := t0.Add(time.Duration(i) * 100 * time.Microsecond) // within every window
				var ev event.Event
				if name == DNSTunnelID {
					ev = dnsEv("comune-bench", at, src, "www.example.it", "A")
				} else {
					ev = flowEv("comune-bench", at, src, "198.51.100.1", 443, "SF", 5000, 5000)
				}
				ev["event.id"] = fmt.Sprintf("%032x", i) // as long as a real event id
				return ev
			}
			var perKey float64
			for range b.N {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				d := mk()
				for i := range keys {
					d.Observe(mkEv(i)) // the event is garbage afterwards: only what the detector keeps stays
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				if d.Stats().Keys != keys {
					b.Fatalf("%d keys, want %d", d.Stats().Keys, keys)
				}
				perKey = float64(after.HeapAlloc-before.HeapAlloc) / keys
				runtime.KeepAlive(d)
			}
			b.ReportMetric(perKey, "bytes/key")
			b.ReportMetric(perKey*keys/1e6, "MB/100k-keys")
		})
	}
}
