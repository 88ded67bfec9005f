package intel

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/testenv"
)

func mustNew(t testing.TB, typ Type, v string) Indicator {
	t.Helper()
	ind, err := New(typ, v, "test")
	if err != nil {
		t.Fatal(err)
	}
	return ind
}

func mustBuild(t testing.TB, inds []Indicator, opts MatcherOptions) *Matcher {
	t.Helper()
	m, err := Build(inds, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func matchedValues(ms []Match) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Field + "=" + m.Value + " -> " + string(m.Indicator.Type) + " " + m.Indicator.Value
	}
	return out
}

// Acceptance (issue 7): a flow to 98.126.156.210 matches the shared PyMISP
// event 5a0a9aa9, and the match cites the event and the attribute.
func TestAcceptanceFlowMatchesPyMISPEvent(t *testing.T) {
	f, err := os.Open(filepath.Join(testenv.SharedData(t), "intel", "pymisp", sunorcal+".json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inds, _, err := ParseMISP(f, Options{Source: "circl-osint"})
	if err != nil {
		t.Fatal(err)
	}
	m := mustBuild(t, inds, MatcherOptions{})
	flow := event.Event{
		"@timestamp": time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), "event.dataset": "flow", "event.kind": "event",
		"source.ip": "10.20.30.40", "source.port": int64(51234), "destination.ip": "98.126.156.210", "destination.port": int64(443),
		"network.transport": "tcp", "related.ip": []string{"10.20.30.40", "98.126.156.210"},
	}
	ms := m.MatchEvent(flow, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	if len(ms) != 1 {
		t.Fatalf("matches = %v, want one (related.ip repeats destination.ip)", matchedValues(ms))
	}
	got := ms[0]
	if got.Field != "destination.ip" || got.Value != "98.126.156.210" || got.Indicator.Refs[0].Parent != sunorcal ||
		got.Indicator.Refs[0].ID != "5a0a9e4c-bcf8-42ac-86dc-48b0950d210f" || got.Indicator.Source != "circl-osint" {
		t.Errorf("match = %+v, indicator %+v", got, got.Indicator)
	}
	// A flow elsewhere matches nothing.
	other := event.Event{"source.ip": "10.20.30.40", "destination.ip": "98.126.156.211"}
	if ms := m.MatchEvent(other, time.Time{}); len(ms) != 0 {
		t.Errorf("98.126.156.211 matched %v", matchedValues(ms))
	}
	// The hostnames of the event match DNS queries, subdomains included.
	dns := event.Event{"dns.question.name": "WWW.FYOUTSIDE.COM."}
	if ms := m.MatchEvent(dns, time.Time{}); len(ms) != 1 || ms[0].Indicator.Value != "www.fyoutside.com" {
		t.Errorf("dns matches = %v", matchedValues(ms))
	}
}

// Acceptance (issue 7): an address inside a CIDR of the shared STIX APT1
// bundle matches.
func TestAcceptanceAddressInAPT1CIDR(t *testing.T) {
	f, err := os.Open(filepath.Join(testenv.SharedData(t), "intel", "stix21", "examples", "threat-reports", "apt1.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inds, _, err := ParseSTIX(f, Options{Source: "mandiant-apt1"})
	if err != nil {
		t.Fatal(err)
	}
	m := mustBuild(t, inds, MatcherOptions{})
	for addr, want := range map[string]string{
		"223.167.10.20":  "223.166.0.0/15", // inside the /15, in its second /16
		"58.246.0.1":     "58.246.0.0/15",
		"112.65.255.255": "112.64.0.0/15",
		"139.226.0.0":    "139.226.0.0/15",
		"223.168.0.0":    "", // just past 223.166.0.0/15
		"58.245.255.255": "",
	} {
		ms := m.MatchEvent(event.Event{"source.ip": addr}, time.Now())
		switch {
		case want == "" && len(ms) != 0:
			t.Errorf("%s matched %v", addr, matchedValues(ms))
		case want != "" && (len(ms) != 1 || ms[0].Indicator.Value != want || ms[0].Indicator.Type != CIDR ||
			!strings.HasPrefix(ms[0].Indicator.Refs[0].ID, "indicator--")):
			t.Errorf("%s: matches %v, want %s", addr, matchedValues(ms), want)
		}
	}
	if ms := m.MatchEvent(event.Event{"url.domain": "update.hugesoft.org"}, time.Now()); len(ms) != 1 {
		t.Errorf("APT1 domain: %v", matchedValues(ms))
	}
}

// Acceptance (issue 7): evil.com matches mail.evil.com and
// sub.mail.evil.com, not example.com or notevil.com.
func TestAcceptanceSubdomains(t *testing.T) {
	m := mustBuild(t, []Indicator{mustNew(t, Domain, "evil.com")}, MatcherOptions{})
	for name, want := range map[string]bool{
		"evil.com": true, "mail.evil.com": true, "sub.mail.evil.com": true, "MAIL.Evil.Com.": true,
		"example.com": false, "notevil.com": false, "evil.com.example.com": false, "evil.co": false, "com": false, "evilcom": false,
	} {
		ms := m.MatchEvent(event.Event{"dns.question.name": name}, time.Now())
		if got := len(ms) == 1; got != want || len(ms) > 1 {
			t.Errorf("%s: matches %v, want match=%v", name, matchedValues(ms), want)
		}
	}
	// The same through every domain-bearing field, and the host of a URL.
	for _, f := range []string{"url.domain", "destination.domain", "tls.client.server_name", "related.hosts", "dns.answers.data"} {
		if ms := m.MatchEvent(event.Event{f: "mail.evil.com"}, time.Now()); len(ms) != 1 || ms[0].Field != f {
			t.Errorf("field %s: %v", f, matchedValues(ms))
		}
	}
	if ms := m.MatchEvent(event.Event{"url.full": "https://sub.mail.evil.com:8443/x?y"}, time.Now()); len(ms) != 1 || ms[0].Field != "url.full" {
		t.Errorf("URL host: %v", matchedValues(ms))
	}
}

// Acceptance (issue 7): expired indicators do not match.
func TestAcceptanceExpiry(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ip := mustNew(t, IPv4, "192.0.2.50")
	ip.Expires = t0.Add(24 * time.Hour)
	cidr := mustNew(t, CIDR, "192.0.2.0/24")
	cidr.Expires = t0.Add(time.Hour)
	forever := mustNew(t, CIDR, "192.0.0.0/16")
	m := mustBuild(t, []Indicator{ip, cidr, forever}, MatcherOptions{})
	ev := event.Event{"destination.ip": "192.0.2.50"}
	for _, c := range []struct {
		now  time.Time
		want []string
	}{
		{t0, []string{"192.0.2.50", "192.0.2.0/24", "192.0.0.0/16"}},
		{t0.Add(time.Hour), []string{"192.0.2.50", "192.0.0.0/16"}}, // expiry is exclusive: at Expires it is expired
		{t0.Add(25 * time.Hour), []string{"192.0.0.0/16"}},
	} {
		var got []string
		for _, mt := range m.MatchEvent(ev, c.now) {
			got = append(got, mt.Indicator.Value)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("at %v: %v, want %v (exact first, then CIDRs innermost first)", c.now, got, c.want)
		}
	}
	// Expiry from a feed's TTL.
	inds, _, err := ParseCSV(strings.NewReader("198.51.100.9\n"), Options{Now: t0, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	m = mustBuild(t, inds, MatcherOptions{})
	if len(m.MatchEvent(event.Event{"source.ip": "198.51.100.9"}, t0.Add(59*time.Minute))) != 1 ||
		len(m.MatchEvent(event.Event{"source.ip": "198.51.100.9"}, t0.Add(61*time.Minute))) != 0 {
		t.Error("TTL expiry not honoured")
	}
}

func TestMatcherKinds(t *testing.T) {
	inds := []Indicator{
		mustNew(t, IPv6, "2001:db8::bad"), mustNew(t, CIDR, "2001:db8:1::/48"),
		mustNew(t, URL, "http://files.example.net/a.exe"), mustNew(t, URL, "https://shared.example.org/evil/x"),
		mustNew(t, MD5, "44d88612fea8a8f36de82e1278abb02f"), mustNew(t, SHA256, strings.Repeat("ab", 32)),
		mustNew(t, Email, "phisher@example.org"), mustNew(t, Domain, "bücher.example"), mustNew(t, IPv4, "203.0.113.7"),
	}
	m := mustBuild(t, inds, MatcherOptions{})
	ev := event.Event{
		"source.ip":          "2001:db8:1:2::3",
		"destination.ip":     "2001:DB8::BAD",
		"url.full":           "HTTP://Files.Example.NET:80/a.exe#frag",
		"url.original":       "/a.exe", // a path: not looked up
		"file.hash.md5":      "44D88612FEA8A8F36DE82E1278ABB02F",
		"related.hash":       []string{strings.Repeat("ab", 32), "00"},
		"email.from.address": "Phisher@Example.org",
		"dns.question.name":  "www.xn--bcher-kva.example",
		"url.domain":         "203.0.113.7", // an address in a host field
		"source.port":        int64(443),
	}
	got := matchedValues(m.MatchEvent(ev, time.Now()))
	want := []string{
		"source.ip=2001:db8:1:2::3 -> cidr 2001:db8:1::/48",
		"destination.ip=2001:DB8::BAD -> ipv6 2001:db8::bad",
		"dns.question.name=www.xn--bcher-kva.example -> domain xn--bcher-kva.example",
		"url.domain=203.0.113.7 -> ipv4 203.0.113.7",
		"url.full=HTTP://Files.Example.NET:80/a.exe#frag -> url http://files.example.net/a.exe",
		"file.hash.md5=44D88612FEA8A8F36DE82E1278ABB02F -> md5 44d88612fea8a8f36de82e1278abb02f",
		"email.from.address=Phisher@Example.org -> email phisher@example.org",
		"related.hash=" + strings.Repeat("ab", 32) + " -> sha256 " + strings.Repeat("ab", 32),
	}
	if !slices.Equal(got, want) {
		t.Errorf("matches:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	// URL hosts: off by default, exact host when on.
	host := event.Event{"url.domain": "shared.example.org"}
	if ms := m.MatchEvent(host, time.Now()); len(ms) != 0 {
		t.Errorf("URL host matched without URLHosts: %v", matchedValues(ms))
	}
	m2 := mustBuild(t, inds, MatcherOptions{URLHosts: true})
	if ms := m2.MatchEvent(host, time.Now()); len(ms) != 1 || ms[0].Indicator.Value != "https://shared.example.org/evil/x" {
		t.Errorf("URLHosts: %v", matchedValues(ms))
	}
	if ms := m2.MatchEvent(event.Event{"url.domain": "a.shared.example.org"}, time.Now()); len(ms) != 0 {
		t.Errorf("URLHosts must be exact: %v", matchedValues(ms))
	}
	// Custom fields replace the defaults.
	m3 := mustBuild(t, inds, MatcherOptions{Fields: []Field{{"x.addr", KindIP}}})
	if len(m3.MatchEvent(event.Event{"x.addr": "203.0.113.7", "source.ip": "203.0.113.7"}, time.Now())) != 1 {
		t.Error("custom fields")
	}
	if ms := m.AppendValue(nil, "hunt", KindDomain, "203.0.113.7", time.Now()); len(ms) != 1 || ms[0].Field != "hunt" {
		t.Errorf("AppendValue: %v", matchedValues(ms))
	}
	if got := m.Counts(); got[URL] != 2 || got[CIDR] != 1 || m.Len() != len(inds) {
		t.Errorf("counts %v len %d", got, m.Len())
	}
	// Several sources for one value: one match per indicator.
	a, b := mustNew(t, IPv4, "192.0.2.1"), mustNew(t, IPv4, "192.0.2.1")
	b.Source = "other"
	m4 := mustBuild(t, []Indicator{a, b, a}, MatcherOptions{})
	if ms := m4.MatchEvent(event.Event{"source.ip": "192.0.2.1"}, time.Now()); len(ms) != 2 || m4.Len() != 2 {
		t.Errorf("two sources: %v (len %d)", matchedValues(ms), m4.Len())
	}
	// Invalid indicators are refused.
	if _, err := Build([]Indicator{{Type: Domain, Value: "Not Normal", Source: "x"}}, MatcherOptions{}); err == nil {
		t.Error("Build accepted an invalid indicator")
	}
	var nilM *Matcher
	if nilM.MatchEvent(ev, time.Now()) != nil || nilM.Len() != 0 {
		t.Error("a nil matcher matches nothing")
	}
}

// The CIDR table agrees with a brute-force scan on random nested prefixes.
func TestCIDRTableAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 5; round++ {
		var prefixes []netip.Prefix
		var inds []Indicator
		seen := map[netip.Prefix]bool{}
		for i := 0; i < 200; i++ {
			var p netip.Prefix
			if r.IntN(3) == 0 {
				var b [16]byte
				b[0], b[1], b[2] = 0x20, 0x01, byte(r.IntN(4))
				b[3] = byte(r.IntN(256))
				p, _ = netip.AddrFrom16(b).Prefix(16 + r.IntN(100))
			} else {
				a := netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
				p, _ = a.Prefix(8 + r.IntN(24))
			}
			if seen[p] {
				continue
			}
			seen[p] = true
			prefixes = append(prefixes, p)
			inds = append(inds, Indicator{Type: CIDR, Value: p.String(), Source: "rand"})
		}
		m := mustBuild(t, inds, MatcherOptions{})
		probe := func(a netip.Addr) {
			var want []string
			for _, p := range prefixes {
				if p.Contains(a) {
					want = append(want, p.String())
				}
			}
			var got []string
			for _, mt := range m.AppendValue(nil, "x", KindIP, a.String(), time.Time{}) {
				got = append(got, mt.Indicator.Value)
			}
			sort.Strings(want)
			sort.Strings(got)
			if !slices.Equal(got, want) {
				t.Fatalf("round %d, %s: got %v, want %v", round, a, got, want)
			}
		}
		for i := 0; i < 100; i++ {
			p := prefixes[r.IntN(len(prefixes))]
			probe(p.Addr())
			// The last address of the prefix and the one after it.
			last := lastOf(p)
			var a netip.Addr
			if p.Addr().Is4() {
				a = netip.AddrFrom4([4]byte{byte(last.lo >> 24), byte(last.lo >> 16), byte(last.lo >> 8), byte(last.lo)})
			} else {
				var b [16]byte
				for k := 0; k < 8; k++ {
					b[k], b[8+k] = byte(last.hi>>(56-8*k)), byte(last.lo>>(56-8*k))
				}
				a = netip.AddrFrom16(b)
			}
			probe(a)
			probe(a.Next())
			probe(p.Addr().Prev())
		}
	}
}

// A Holder swaps matchers while readers match (run with -race).
func TestHolderConcurrentSwap(t *testing.T) {
	build := func(n int) *Matcher {
		return mustBuild(t, []Indicator{mustNew(t, IPv4, fmt.Sprintf("192.0.2.%d", n))}, MatcherOptions{})
	}
	h := NewHolder(nil)
	if h.MatchEvent(event.Event{"source.ip": "192.0.2.1"}, time.Now()) != nil {
		t.Error("an empty holder matched")
	}
	h.Store(build(1))
	var wg sync.WaitGroup
	var reads atomic.Int64
	stop := make(chan struct{})
	errs := make(chan string, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				m := h.Load()
				ms := m.MatchEvent(event.Event{"source.ip": "192.0.2.1", "destination.ip": "192.0.2.2"}, time.Now())
				if len(ms) != 1 {
					errs <- fmt.Sprintf("matches %v", matchedValues(ms))
					return
				}
				reads.Add(1)
			}
		}()
	}
	// Swap until the readers have matched many times across swaps.
	for i := 0; i < 200 || reads.Load() < 2000; i++ {
		if prev := h.Store(build(1 + i%2)); prev == nil {
			t.Error("Store returned no previous matcher")
		}
		if i > 1_000_000 {
			t.Fatal("readers made no progress")
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
