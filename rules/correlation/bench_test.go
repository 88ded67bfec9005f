package correlation

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// heap returns the live heap after a full collection.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// memoryPerKey fills one correlation with n live group keys, one match each
// (a source address and a 32-character event id, freshly allocated as the
// collector would), and returns the live heap per key.
func memoryPerKey(tb testing.TB, doc string, n int, o Options, mk func(i int) event.Event) float64 {
	rs, err := ParseBytes([]byte(doc), "bench.yml")
	if err != nil {
		tb.Fatal(err)
	}
	o.MaxKeysPerRule = n
	e, err := New(rs, o)
	if err != nil {
		tb.Fatal(err)
	}
	before := heap()
	for i := 0; i < n; i++ {
		e.Process(Match{RuleName: "failed", Event: mk(i)})
	}
	after := heap()
	if s := e.Stats()[0]; s.Keys != n {
		tb.Fatalf("%d live keys, want %d", s.Keys, n)
	}
	runtime.KeepAlive(e)
	return float64(after-before) / float64(n)
}

func ipEvent(i int) event.Event {
	return event.Event{
		"@timestamp":       time.Unix(1_700_000_000+int64(i%3600), 0).UTC(),
		"event.id":         fmt.Sprintf("%032x", i),
		"source.ip":        fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
		"user.name":        fmt.Sprintf("user%d", i%5000),
		"destination.port": int64(i % 65536),
	}
}

const benchEventCount = `title: bf
id: bf
correlation: {type: event_count, rules: [failed], group-by: [source.ip], timespan: 10m, condition: {gte: 10}}
`

const benchValueCount = `title: scan
id: scan
correlation: {type: value_count, rules: [failed], group-by: [source.ip], timespan: 10m, condition: {field: destination.port, gte: 20}}
`

const benchOrdered = `title: seq
id: seq
correlation: {type: temporal_ordered, rules: [failed, ok], group-by: [source.ip, user.name], timespan: 10m}
`

// BenchmarkMemoryPerKey measures the live heap per group key with one
// million keys (goal: at most 300 bytes/key, i.e. 1M keys in 300 MB):
//
//	go test ./rules/correlation -run '^$' -bench MemoryPerKey -benchtime 1x
func BenchmarkMemoryPerKey(b *testing.B) {
	const n = 1_000_000
	for _, c := range []struct {
		name, doc string
		o         Options
	}{
		{"event_count", benchEventCount, Options{}},
		{"event_count_no_ids", benchEventCount, Options{MaxEventIDs: -1}},
		{"value_count", benchValueCount, Options{}},
		{"temporal_ordered_2_fields", benchOrdered, Options{}},
	} {
		b.Run(c.name, func(b *testing.B) {
			c.o.BaseRules = []RuleRef{{Name: "failed"}, {Name: "ok"}}
			var per float64
			for i := 0; i < b.N; i++ {
				per = memoryPerKey(b, c.doc, n, c.o, ipEvent)
			}
			b.ReportMetric(per, "bytes/key")
			b.ReportMetric(per*n/1e6, "MB/1Mkeys")
		})
	}
}

// TestMemoryPerKeyBudget checks the budget on 200k keys (fast enough for
// every run): at most 300 bytes per live key.
func TestMemoryPerKeyBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates ~60 MB per case")
	}
	for _, c := range []struct{ name, doc string }{
		{"event_count", benchEventCount},
		{"temporal_ordered_2_fields", benchOrdered},
	} {
		per := memoryPerKey(t, c.doc, 200_000, Options{BaseRules: []RuleRef{{Name: "failed"}, {Name: "ok"}}}, ipEvent)
		t.Logf("%s: %.0f bytes per live key", c.name, per)
		if per > 300 {
			t.Fatalf("%s: %.0f bytes per key, budget 300", c.name, per)
		}
	}
}

// BenchmarkProcess: one match through an event_count and a
// temporal_ordered correlation, 10k keys.
func BenchmarkProcess(b *testing.B) {
	rs, err := ParseBytes([]byte(benchEventCount+"---\n"+benchOrdered), "bench.yml")
	if err != nil {
		b.Fatal(err)
	}
	e, err := New(rs, Options{BaseRules: []RuleRef{{Name: "failed"}, {Name: "ok"}}})
	if err != nil {
		b.Fatal(err)
	}
	evs := make([]event.Event, 10_000)
	for i := range evs {
		evs[i] = ipEvent(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev := evs[i%len(evs)]
		ev["@timestamp"] = time.Unix(1_700_000_000+int64(i/1000), 0)
		e.Process(Match{RuleName: "failed", Event: ev})
	}
}
