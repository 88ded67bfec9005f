package event_test

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/loadgen"
)

// loadgenDocs returns n events of the load generator's realistic mix as
// the correlator reads them from Kafka (nested JSON written by
// MarshalJSON), and the agents' summary documents (dotted JSON, as the
// collector decodes them) met on the way.
func loadgenDocs(tb testing.TB, n int) (events, summaries [][]byte) {
	tb.Helper()
	g, err := loadgen.New(40, 7)
	if err != nil {
		tb.Fatal(err)
	}
	t := time.Date(2026, 11, 2, 8, 30, 1, 123456789, time.UTC)
	for i := 0; i < n; i++ {
		r := g.Next(t.Add(time.Duration(i) * 1317 * time.Microsecond))
		b, err := r.Event.MarshalJSON()
		if err != nil {
			tb.Fatal(err)
		}
		events = append(events, b)
		if r.Summary {
			summaries = append(summaries, r.Raw)
		}
	}
	return events, summaries
}

// BenchmarkDecodeMix decodes the load generator's event mix (sshd, sudo,
// web, firewall, flows, DNS); one op is one event.
func BenchmarkDecodeMix(b *testing.B) {
	benchmarkMix(b, event.Decode)
}

// BenchmarkOldDecodeMix is BenchmarkDecodeMix with the old decoder (the
// oracle of the differential tests), to compare both in one run on a busy
// machine.
func BenchmarkOldDecodeMix(b *testing.B) {
	benchmarkMix(b, event.OracleDecode)
}

func benchmarkMix(b *testing.B, decode func([]byte) (event.Event, error)) {
	events, summaries := loadgenDocs(b, 1000)
	for _, c := range []struct {
		name string
		docs [][]byte
	}{{"events", events}, {"summaries", summaries}} {
		b.Run(c.name, func(b *testing.B) {
			size := 0
			for _, d := range c.docs {
				size += len(d)
			}
			b.SetBytes(int64(size / len(c.docs)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := decode(c.docs[i%len(c.docs)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

var updateCorpus = flag.Bool("update-corpus", false,
	"rewrite testdata/fuzz/FuzzDecodeDifferential from the load generator and the seeds")

// TestDecodeLoadgenMatchesOracle: the streaming decoder and the old one
// agree on the load generator's events and summaries.
func TestDecodeLoadgenMatchesOracle(t *testing.T) {
	events, summaries := loadgenDocs(t, 3000)
	for _, d := range append(events, summaries...) {
		event.CompareDecoders(t, d)
	}
}

// TestDifferentialCorpus writes (with -update-corpus) and checks the
// committed seed corpus of FuzzDecodeDifferential: real events of the load
// generator (nested, and the dotted summaries) and the edge-case seeds.
func TestDifferentialCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeDifferential")
	events, summaries := loadgenDocs(t, 400)
	docs := append(append([][]byte(nil), events[:60]...), summaries[:20]...)
	for _, s := range event.DifferentialSeeds {
		docs = append(docs, []byte(s))
	}
	if *updateCorpus {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", d)
			name := fmt.Sprintf("%x", sha256.Sum256([]byte(body)))[:16]
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading the corpus: %v (write it with -update-corpus)", err)
	}
	if len(files) < len(docs) {
		t.Fatalf("%s holds %d files, want at least %d (rewrite it with -update-corpus)", dir, len(files), len(docs))
	}
}
