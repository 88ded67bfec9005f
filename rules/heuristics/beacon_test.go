package heuristics

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

func newBC() *Beaconing { return NewBeaconing(NewLayered(DefaultBeaconParams()), Options{}) }

// beacon returns connections every period +/- jitter (uniform) for n beats,
// skipping the beats in skip.
func beacon(r *rand.Rand, n int, period, jitter time.Duration, skip map[int]bool) []event.Event {
	var evs []event.Event
	for i := range n {
		if skip[i] {
			continue
		}
		j := time.Duration((r.Float64()*2 - 1) * float64(jitter))
		at := t0.Add(time.Duration(i)*period + j)
		evs = append(evs, flowEv("comune-c", at, "10.3.0.15", "10.3.0.200", 8080, "SF", 400, 300))
	}
	return evs
}

func TestBeaconFiveSeconds(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	// 5 s +/- 0.2 s for 3 minutes, with two missed beats.
	evs := beacon(r, 36, 5*time.Second, 200*time.Millisecond, map[int]bool{12: true, 20: true})
	alerts := runAll(newBC(), evs)
	if len(alerts) != 1 {
		t.Fatalf("5 s beacon gave %d alerts, want 1", len(alerts))
	}
	a := alerts[0]
	if p := a.Metrics["period_seconds"]; math.Abs(p-5) > 0.2 {
		t.Errorf("period %v s", p)
	}
	if a.Observables[1] != (Observable{Type: "ip", Value: "10.3.0.200"}) || a.Observables[2].Value != "8080" {
		t.Errorf("observables %v", a.Observables)
	}
	if len(a.EventIDs) == 0 {
		t.Error("no event ids")
	}
	t.Logf("%s", a.Message)
}

func TestBeaconMissedBeatsAndParallelConnections(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 9))
	evs := beacon(r, 20, 30*time.Second, time.Second, map[int]bool{3: true, 4: true, 11: true})
	// Each beat opens a second connection 50 ms later (a burst).
	var all []event.Event
	for _, ev := range evs {
		all = append(all, ev)
		dup := ev.Clone()
		dup["@timestamp"] = ev.Time().Add(50 * time.Millisecond)
		dup["event.id"] = nextID()
		all = append(all, dup)
	}
	if alerts := runAll(newBC(), all); len(alerts) != 1 {
		t.Fatalf("30 s beacon with bursts and missed beats: %d alerts", len(alerts))
	}
}

func TestBeaconIrregularTrafficIsNot(t *testing.T) {
	// Poisson-like connections (exponential gaps, mean 5 s), bursts of page
	// loads, and a too-fast poller (1 s): none is a beacon.
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 3))
		var evs []event.Event
		at := t0
		for range 200 {
			at = at.Add(time.Duration(r.ExpFloat64() * float64(5*time.Second)))
			evs = append(evs, flowEv("comune-c", at, "10.3.0.16", "151.101.1.1", 443, "SF", 1000, 20000))
		}
		if alerts := runAll(newBC(), evs); len(alerts) != 0 {
			t.Fatalf("seed %d: exponential gaps gave %s", seed, alerts[0].Message)
		}
	}
	r := rand.New(rand.NewPCG(5, 5))
	if alerts := runAll(newBC(), beacon(r, 100, 1200*time.Millisecond, 0, nil)); len(alerts) != 0 {
		t.Fatalf("a 1.2 s poller (below min_period) gave %d alerts", len(alerts))
	}
	// Too much jitter: 10 s +/- 3 s.
	if alerts := runAll(newBC(), beacon(r, 60, 10*time.Second, 3*time.Second, nil)); len(alerts) != 0 {
		t.Fatalf("10 s +/- 3 s gave %s", alerts[0].Message)
	}
}

func TestBeaconIgnoredPortAndAllowList(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	evs := beacon(r, 30, 64*time.Second, 0, nil)
	for _, ev := range evs {
		ev["destination.port"] = int64(123) // NTP
	}
	if alerts := runAll(newBC(), evs); len(alerts) != 0 {
		t.Fatalf("NTP gave %d alerts", len(alerts))
	}
	l := NewLayered(DefaultBeaconParams())
	if err := l.SetEntity("comune-c", []byte("allow_destinations: [10.3.0.0/24]\n")); err != nil {
		t.Fatal(err)
	}
	if alerts := runAll(NewBeaconing(l, Options{}), beacon(r, 30, 5*time.Second, 0, nil)); len(alerts) != 0 {
		t.Fatalf("allow-listed destination gave %d alerts", len(alerts))
	}
}

func TestBeaconByDomain(t *testing.T) {
	l := NewLayered(DefaultBeaconParams())
	if err := l.SetEntity("comune-c", []byte("datasets: [flow, tls]\nallow_destinations: [updates.example.org]\n")); err != nil {
		t.Fatal(err)
	}
	d := NewBeaconing(l, Options{})
	var evs []event.Event
	for i := range 15 {
		for _, sni := range []string{"c2.bad-domain.example", "cdn.updates.example.org"} {
			ev := flowEv("comune-c", t0.Add(time.Duration(i)*time.Minute), "10.3.0.17", "203.0.113."+itoa(i+1), 443, "SF", 500, 500)
			ev["event.dataset"] = "tls"
			ev["tls.client.server_name"] = sni
			evs = append(evs, ev)
		}
	}
	alerts := runAll(d, evs)
	if len(alerts) != 1 || alerts[0].Observables[1] != (Observable{Type: "domain", Value: "c2.bad-domain.example"}) {
		t.Fatalf("domain beacon (changing addresses): %+v", alerts)
	}
}

func TestBeaconRealertAfterAnHour(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	// 5 s for 2 hours: an alert at the start, then one an hour later.
	alerts := runAll(newBC(), beacon(r, 2*720, 5*time.Second, 100*time.Millisecond, nil))
	if len(alerts) != 2 || alerts[0].ID == alerts[1].ID {
		t.Fatalf("2 h of beacon gave %d alerts", len(alerts))
	}
	if gap := alerts[1].WindowEnd.Sub(alerts[0].WindowEnd); gap < time.Hour {
		t.Fatalf("re-alert after %s", gap)
	}
}
