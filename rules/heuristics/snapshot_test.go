package heuristics

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// mixedStream interleaves every acceptance shape and background noise for
// two entities, in event-time order with a little disorder.
func mixedStream() []event.Event {
	r := rand.New(rand.NewPCG(31, 31))
	var evs []event.Event
	evs = append(evs, nmapSS("comune-a", "10.1.1.66", "10.1.1.10", t0.Add(30*time.Second), 300, nil)...)
	evs = append(evs, beacon(r, 60, 5*time.Second, 200*time.Millisecond, nil)...)
	evs = append(evs, tunnelQueries(r, 80, "t.exfil-example.com", "A", false)...)
	// Volume: a short baseline (warm-up lowered below) then an upload.
	for w := range 8 {
		for i := range 3 {
			evs = append(evs, flowEv("comune-e", t0.Add(time.Duration(w)*15*time.Minute+time.Duration(i)*time.Minute), "10.5.0.8", "198.51.100.7", 443, "SF", 1_000_000+r.Int64N(1_000_000), 10_000))
		}
	}
	evs = append(evs, flowEv("comune-e", t0.Add(8*15*time.Minute+time.Minute), "10.5.0.8", "203.0.113.9", 443, "SF", 300_000_000, 10_000))
	for i := range 300 {
		at := t0.Add(time.Duration(r.Int64N(int64(2 * time.Hour))))
		evs = append(evs, flowEv("comune-b", at, "10.2.0."+itoa(1+i%40), "151.101.3."+itoa(i%200), 443, "SF", 2000, 40000))
		evs = append(evs, dnsEv("comune-b", at, "10.2.0."+itoa(1+i%40), "www.site"+itoa(i%30)+".example.it", "A"))
	}
	sortByTime(evs)
	// A little disorder: swap some neighbours.
	for i := 1; i < len(evs); i += 17 {
		evs[i-1], evs[i] = evs[i], evs[i-1]
	}
	return evs
}

func sortByTime(evs []event.Event) {
	for i := 1; i < len(evs); i++ { // insertion sort: stable, input nearly sorted
		for j := i; j > 0 && evs[j].Time().Before(evs[j-1].Time()); j-- {
			evs[j], evs[j-1] = evs[j-1], evs[j]
		}
	}
}

func testConfig(t testing.TB) *Config {
	cfg, err := LoadConfig([]byte("outbound_volume: {warmup: 4}\n"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestSnapshotRestoreAtEveryCut: stopping after any event, snapshotting,
// restoring into a new detector set and continuing gives exactly the
// alerts of an uninterrupted run.
func TestSnapshotRestoreAtEveryCut(t *testing.T) {
	evs := mixedStream()
	cfg := testConfig(t)
	opts := Options{MaxKeys: 64} // small: evictions must survive restore too
	want := runSetAll(NewSet(cfg, opts), evs)
	kinds := map[string]int{}
	for _, a := range want {
		kinds[a.Detector]++
	}
	if len(kinds) != 4 {
		t.Fatalf("the stream should alert on every detector: %v", kinds)
	}
	r := rand.New(rand.NewPCG(32, 32))
	cuts := []int{0, 1, len(evs) - 1, len(evs)}
	for range 40 {
		cuts = append(cuts, r.IntN(len(evs)))
	}
	for _, cut := range cuts {
		a := NewSet(cfg, opts)
		got := runSetAll(a, evs[:cut])
		snap, err := a.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		b := NewSet(cfg, opts)
		if err := b.Restore(snap); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		again, err := b.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(snap, again) {
			t.Fatalf("cut %d: snapshot of the restored state differs", cut)
		}
		got = append(got, runSetAll(b, evs[cut:])...)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("cut %d: %d alerts after restore, want %d", cut, len(got), len(want))
		}
		for _, d := range b.Detectors {
			if d.Stats().Events != uint64(len(evs)) {
				t.Fatalf("cut %d: %s counted %d events, want %d", cut, d.ID(), d.Stats().Events, len(evs))
			}
		}
	}
}

func TestReplayAfterRestoreDoesNotRealert(t *testing.T) {
	evs := mixedStream()
	cfg := testConfig(t)
	a := NewSet(cfg, Options{})
	first := runSetAll(a, evs)
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b := NewSet(cfg, Options{})
	if err := b.Restore(snap); err != nil {
		t.Fatal(err)
	}
	// Replaying the last 20% (uncommitted offsets) fires nothing twice.
	ids := map[string]bool{}
	for _, x := range first {
		ids[x.ID] = true
	}
	for _, x := range runSetAll(b, evs[len(evs)*4/5:]) {
		if ids[x.ID] {
			t.Errorf("replay fired %s again", x.Detector)
		}
	}
}

func TestRestoreRejectsForeignState(t *testing.T) {
	ps := NewPortScan(NewLayered(DefaultPortScanParams()), Options{})
	bc := NewBeaconing(NewLayered(DefaultBeaconParams()), Options{})
	runAll(ps, nmapSS("comune-a", "10.1.1.66", "10.1.1.10", t0, 10, nil))
	snap, err := ps.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := bc.Restore(snap); err == nil || !strings.Contains(err.Error(), `detector "port_scan"`) {
		t.Fatalf("beaconing restored a port-scan snapshot: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(snap, &m); err != nil {
		t.Fatal(err)
	}
	m["version"] = 99
	bad, _ := json.Marshal(m)
	if err := ps.Restore(bad); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("version 99: %v", err)
	}
	if ps.Stats().Keys != 1 {
		t.Fatal("a failed restore changed the state")
	}
}

func TestMaxKeysEvictsOldest(t *testing.T) {
	d := NewPortScan(NewLayered(DefaultPortScanParams()), Options{MaxKeys: 3})
	for i := range 5 {
		d.Observe(flowEv("comune-a", t0.Add(time.Duration(i)*time.Second), "10.0.0."+itoa(i+1), "10.0.1.1", 80, "SF", 100, 100))
	}
	st := d.Stats()
	if st.Keys != 3 || st.KeysEvicted != 2 {
		t.Fatalf("stats %+v", st)
	}
	for _, gone := range []string{"comune-a|10.0.0.1", "comune-a|10.0.0.2"} {
		if d.keys.m[gone] != nil {
			t.Errorf("%s should have been evicted (oldest)", gone)
		}
	}
	// Idle keys expire once the window has passed.
	d.Observe(flowEv("comune-a", t0.Add(time.Hour), "10.0.0.9", "10.0.1.1", 80, "SF", 100, 100))
	if st := d.Stats(); st.Keys != 1 || st.KeysExpired != 3 {
		t.Fatalf("after an hour: %+v", st)
	}
}

func TestSetRestoreErrors(t *testing.T) {
	s := NewSet(nil, Options{})
	if err := s.Restore([]byte("not json")); err == nil || !strings.Contains(err.Error(), "start without it") {
		t.Fatalf("garbage: %v", err)
	}
	if err := s.Restore([]byte(`{"port_scan": {"format":"x"}}`)); err == nil || !strings.Contains(err.Error(), `format "x"`) {
		t.Fatalf("wrong format: %v", err)
	}
}
