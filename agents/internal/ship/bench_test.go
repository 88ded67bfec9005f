package ship

import (
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/bus"
)

// BenchmarkPipeline measures lines/s through batch, seal (Ed25519), spool
// and ship to the embedded broker (in the same process: run with -cpu 1 to
// give everything, the broker included, one core). One stream, 250-byte
// lines, default batcher options (500 records or 256 KiB, 20 ms linger).
func BenchmarkPipeline(b *testing.B) {
	for _, bc := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(bc.name, func(b *testing.B) {
			br := startBroker(b, freeAddr(b), "")
			defer br.Close()
			r := newRig(b, bus.Options{Brokers: []string{br.Addr()}})
			r.noSync = bc.noSync
			src := newFakeSource([]string{"file:bench"}, nil)
			a := r.start(src, nil)
			defer a.stop(b)
			b.SetBytes(lineBytes)
			b.ResetTimer()
			src.Emit(b.N)
			waitFor(b, 10*time.Minute, "lines shipped", func() bool { return a.pipe.Stats().LinesShipped == uint64(b.N) })
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
