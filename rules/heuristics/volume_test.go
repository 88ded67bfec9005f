package heuristics

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

func newVol() *Volume { return NewVolume(NewLayered(DefaultVolumeParams()), Options{}) }

// uploads returns, for each 15-minute window, flows from src to external
// addresses totalling a few MB (1-5 MB in 10 flows).
func uploads(r *rand.Rand, src string, from time.Time, windows int) []event.Event {
	var evs []event.Event
	for w := range windows {
		for i := range 10 {
			at := from.Add(time.Duration(w)*15*time.Minute + time.Duration(i)*80*time.Second)
			evs = append(evs, flowEv("comune-e", at, src, "198.51.100.7", 443, "SF", 100_000+r.Int64N(400_000), 2_000_000))
		}
	}
	return evs
}

func TestVolumeSuddenUpload(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 21))
	d := newVol()
	if alerts := runAll(d, uploads(r, "10.5.0.8", t0, 48)); len(alerts) != 0 {
		t.Fatalf("12 h of baseline gave %d alerts: %s", len(alerts), alerts[0].Message)
	}
	// 500 MB to a new address, in 5 flows within one window.
	var big []event.Event
	at := t0.Add(48 * 15 * time.Minute)
	for i := range 5 {
		big = append(big, flowEv("comune-e", at.Add(time.Duration(i)*time.Minute), "10.5.0.8", "203.0.113.99", 443, "SF", 100_000_000, 500_000))
	}
	alerts := runAll(d, big)
	if len(alerts) != 1 {
		t.Fatalf("500 MB upload gave %d alerts, want 1", len(alerts))
	}
	a := alerts[0]
	if a.Metrics["bytes"] < 100_000_000 || a.Metrics["z_score"] < 6 || a.Observables[1].Value != "203.0.113.99" {
		t.Errorf("alert %+v", a)
	}
	t.Log(a.Message)
}

func TestVolumeWarmupInternalAndSteadyHosts(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 22))
	// Before the warm-up is over: no alert even for 500 MB.
	d := newVol()
	evs := uploads(r, "10.5.0.9", t0, 4)
	evs = append(evs, flowEv("comune-e", t0.Add(4*15*time.Minute), "10.5.0.9", "203.0.113.99", 443, "SF", 500_000_000, 1000))
	if alerts := runAll(d, evs); len(alerts) != 0 {
		t.Fatalf("during warm-up: %d alerts", len(alerts))
	}
	// Internal destinations are not outbound.
	d = newVol()
	evs = uploads(r, "10.5.0.10", t0, 20)
	evs = append(evs, flowEv("comune-e", t0.Add(20*15*time.Minute), "10.5.0.10", "10.9.0.1", 445, "SF", 500_000_000, 1000))
	if alerts := runAll(d, evs); len(alerts) != 0 {
		t.Fatalf("internal copy: %d alerts", len(alerts))
	}
	// A backup server sending ~400 MB every window is its own baseline.
	d = newVol()
	evs = nil
	for w := range 40 {
		evs = append(evs, flowEv("comune-e", t0.Add(time.Duration(w)*15*time.Minute), "10.5.0.11", "198.51.100.20", 22, "SF", 380_000_000+r.Int64N(40_000_000), 1000))
	}
	if alerts := runAll(d, evs); len(alerts) != 0 {
		t.Fatalf("steady backup: %d alerts", len(alerts))
	}
}

func TestVolumeInterimRecords(t *testing.T) {
	// A long flow reported every 10 minutes with running totals must be
	// counted once: 3 reports of 40, 80, 120 MB are 120 MB, not 240 MB.
	d := newVol()
	start := t0
	for i, b := range []int64{40e6, 80e6, 120e6} {
		ev := flowEv("comune-e", start, "10.5.0.12", "203.0.113.5", 443, "S1", b, 1000)
		ev["network.community_id"] = "1:abc"
		if i < 2 {
			ev["event.type"] = []string{"connection", "info"}
		}
		d.Observe(ev)
	}
	e := d.keys.get([]byte("comune-e|10.5.0.12"))
	if e == nil || e.s.sum != 120e6 {
		t.Fatalf("sum = %+v, want 120 MB", e)
	}
}

func TestHumanBytes(t *testing.T) {
	for in, want := range map[float64]string{0: "0 B", 1500: "1.5 kB", 500e6: "500 MB", 2.25e9: "2.2 GB"} {
		if got := humanBytes(in); got != want {
			t.Errorf("humanBytes(%v) = %q, want %q", in, got, want)
		}
	}
}
