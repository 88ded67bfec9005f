package intel

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// synthIndicators makes n indicators with the mix of a regional feed set:
// 40% IPv4, 5% IPv6, 10% CIDR, 25% domains, 10% URLs, 10% hashes.
func synthIndicators(n int) []Indicator {
	r := rand.New(rand.NewPCG(7, 11))
	out := make([]Indicator, 0, n)
	hex := func(k int) string {
		const digits = "0123456789abcdef"
		b := make([]byte, k)
		for i := range b {
			b[i] = digits[r.IntN(16)]
		}
		return string(b)
	}
	for i := 0; i < n; i++ {
		var ind Indicator
		switch p := i % 20; {
		case p < 8:
			a := netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
			ind = Indicator{Type: IPv4, Value: a.String()}
		case p < 9:
			var b [16]byte
			b[0], b[1] = 0x2a, byte(r.IntN(256))
			for k := 2; k < 16; k++ {
				b[k] = byte(r.IntN(256))
			}
			ind = Indicator{Type: IPv6, Value: netip.AddrFrom16(b).String()}
		case p < 11:
			a := netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
			pf, _ := a.Prefix(16 + r.IntN(14))
			ind = Indicator{Type: CIDR, Value: pf.String()}
		case p < 16:
			ind = Indicator{Type: Domain, Value: fmt.Sprintf("%s%d.%s.example", hex(6), i, hex(4))}
		case p < 18:
			ind = Indicator{Type: URL, Value: fmt.Sprintf("http://%s.example/%s/%d.exe", hex(8), hex(6), i)}
		default:
			ind = Indicator{Type: SHA256, Value: hex(64)}
		}
		ind.Source, ind.Confidence, ind.TLP = "bench", 80, TLPClear
		ind.Tags = []string{"malware"}
		out = append(out, ind)
	}
	return out
}

// benchEvent is a flow/DNS/HTTP-like event with 11 observable values.
func benchEvent(i int) event.Event {
	return event.Event{
		"@timestamp": time.Unix(1767225600, 0), "event.dataset": "http", "organization.id": "comune-di-prato",
		"source.ip": fmt.Sprintf("10.1.%d.%d", i%200, i%250), "destination.ip": fmt.Sprintf("93.184.%d.%d", i%200, 1+i%250),
		"related.ip":        []string{fmt.Sprintf("10.1.%d.%d", i%200, i%250), fmt.Sprintf("93.184.%d.%d", i%200, 1+i%250)},
		"dns.question.name": fmt.Sprintf("cdn%d.static.example.org", i%1000), "url.domain": "www.comune.example.it",
		"destination.domain": "www.comune.example.it", "tls.client.server_name": "www.comune.example.it",
		"url.full":           fmt.Sprintf("https://www.comune.example.it/albo/%d?page=2", i%1000),
		"file.hash.sha256":   "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
		"email.from.address": "protocollo@comune.example.it",
		"source.port":        int64(50000 + i%1000), "destination.port": int64(443),
	}
}

// BenchmarkBuild100k builds a matcher of 100k indicators. Besides the time
// per build it reports the heap a matcher keeps: MB-index with the
// indicators' strings shared with the input, MB-total for indicators and
// matcher together once the parsed input is dropped.
func BenchmarkBuild100k(b *testing.B) {
	inds := synthIndicators(100_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(inds, MatcherOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	m, _ := Build(inds, MatcherOptions{})
	b.ReportMetric(float64(heap()-before)/(1<<20), "MB-index")
	runtime.KeepAlive(m)
	inds = nil
	runtime.KeepAlive(inds)
	before = heap()
	m2, _ := Build(synthIndicators(100_000), MatcherOptions{})
	b.ReportMetric(float64(heap()-before)/(1<<20), "MB-total")
	runtime.KeepAlive(m2)
}

func benchMatch(b *testing.B, hit bool) {
	m, err := Build(synthIndicators(100_000), MatcherOptions{})
	if err != nil {
		b.Fatal(err)
	}
	events := make([]event.Event, 1024)
	for i := range events {
		events[i] = benchEvent(i)
	}
	if hit {
		// Every event carries one indicator (a domain) in its DNS query.
		for i := range events {
			events[i]["dns.question.name"] = "sub." + m.inds[15+20*(i%1000)].Value
		}
	}
	now := time.Unix(1767225600, 0)
	var dst []Match
	matches := 0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		dst = m.AppendEvent(dst[:0], events[i&1023], now)
		matches += len(dst)
		i++
	}
	if hit && matches < i {
		b.Fatalf("%d matches for %d events", matches, i)
	}
	if !hit && matches != 0 {
		b.Fatalf("%d unexpected matches", matches)
	}
}

// BenchmarkMatchEvent100k matches events with 11 observable values against
// 100k indicators; none matches (the common case).
func BenchmarkMatchEvent100k(b *testing.B) { benchMatch(b, false) }

// BenchmarkMatchEvent100kHit is the same with one matching domain per event.
func BenchmarkMatchEvent100kHit(b *testing.B) { benchMatch(b, true) }

// BenchmarkParseFeodo parses a 10k-line Feodo Tracker blocklist.
func BenchmarkParseFeodo(b *testing.B) {
	var buf []byte
	buf = append(buf, "# \"first_seen_utc\",\"dst_ip\",\"dst_port\",\"c2_status\",\"last_online\",\"malware\"\n"...)
	for i := 0; i < 10000; i++ {
		buf = fmt.Appendf(buf, "\"2026-01-01 00:00:00\",\"10.%d.%d.%d\",\"443\",\"online\",\"2026-02-01\",\"Dridex\"\n", i>>16&255, i>>8&255, i&255)
	}
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, _, err := ParseFeodo(bytes.NewReader(buf), Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
