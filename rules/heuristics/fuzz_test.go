package heuristics

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte("port_scan: {window: 2m, min_ports: 30}\nentities:\n  c1:\n    port_scan: {min_ports: 50}\n"))
	f.Add([]byte("beaconing:\n  ignore_ports: [123]\n  allow_destinations: [10.0.0.0/8, updates.example.org]\n"))
	f.Add([]byte("dns_tunnel: {extra_allow_parents: [example.org], query_types: [TXT]}\noutbound_volume: {key_by: host.name}\n"))
	f.Add([]byte("entities: {c: {outbound_volume: {window: 1h, forget_after: 30m}}}\n"))
	f.Add([]byte("port_scan: &a {min_ports: 3}\nbeaconing: *a\n"))
	f.Add([]byte(""))
	probe := mixedStream()[:300]
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := LoadConfig(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		for _, v := range []validator{&cfg.PortScan.Regional, &cfg.Beaconing.Regional, &cfg.DNSTunnel.Regional, &cfg.Volume.Regional} {
			if err := v.Validate(); err != nil {
				t.Fatalf("accepted invalid parameters: %v", err)
			}
		}
		for _, e := range cfg.PortScan.Entities() {
			p := *cfg.PortScan.For(e)
			if err := p.Validate(); err != nil {
				t.Fatalf("entity %q: accepted invalid parameters: %v", e, err)
			}
		}
		// The detectors must run on whatever was accepted.
		s := NewSet(cfg, Options{MaxKeys: 16})
		for _, ev := range probe {
			s.Observe(ev)
		}
	})
}

func FuzzRestore(f *testing.F) {
	// Seeds: real snapshots of each detector after a short stream (small:
	// the fuzzer minimises interesting inputs, slowly when they are large).
	s := NewSet(testConfig(f), Options{})
	for _, ev := range seedStream() {
		s.Observe(ev)
	}
	for i, d := range s.Detectors {
		snap, err := d.Snapshot()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), snap)
	}
	f.Add(uint8(0), []byte(`{"format":"csirt-heuristics-state","version":1,"detector":"port_scan","keys":[{"k":"a|b","targets":[{"t":1,"ip":"10.0.0.1","p":80}]}]}`))
	f.Add(uint8(1), []byte(`{"format":"csirt-heuristics-state","version":1,"detector":"beaconing","keys":[{"k":"a|b|c|1","beats":[3,2]}]}`))
	f.Add(uint8(3), []byte(`{"format":"csirt-heuristics-state","version":1,"detector":"outbound_volume","keys":[{"k":"a|b","win":-9223372036854775808,"n":40}]}`))
	probe := mixedStream()[400:480]
	cfg := testConfig(f) // read-only once built: shared by every run
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		set := NewSet(cfg, Options{MaxKeys: 32})
		d := set.Detectors[int(which)%len(set.Detectors)]
		before, _ := d.Snapshot()
		if err := d.Restore(data); err != nil {
			after, _ := d.Snapshot()
			if !bytes.Equal(before, after) {
				t.Fatal("a failed Restore changed the state")
			}
			return
		}
		snap, err := d.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		other := NewSet(cfg, Options{MaxKeys: 32}).Detectors[int(which)%len(set.Detectors)]
		if err := other.Restore(snap); err != nil {
			t.Fatalf("a snapshot of restored state does not restore: %v", err)
		}
		again, _ := other.Snapshot()
		if !bytes.Equal(snap, again) {
			t.Fatal("snapshot -> restore -> snapshot differs")
		}
		for _, ev := range probe {
			d.Observe(ev)
		}
		if _, err := d.Snapshot(); err != nil {
			t.Fatal(err)
		}
	})
}

// seedStream is a short stream that leaves state in every detector: a few
// refused ports, beats, tunnel-like queries and volume windows.
func seedStream() []event.Event {
	r := rand.New(rand.NewPCG(51, 51))
	var evs []event.Event
	evs = append(evs, nmapSS("comune-a", "10.1.1.66", "10.1.1.10", t0, 5, nil)...)
	evs = append(evs, beacon(r, 4, 5*time.Second, 200*time.Millisecond, nil)...)
	evs = append(evs, tunnelQueries(r, 3, "t.exfil-example.com", "TXT", false)...)
	for w := range 3 {
		evs = append(evs, flowEv("comune-e", t0.Add(time.Duration(w)*15*time.Minute), "10.5.0.8", "198.51.100.7", 443, "SF", 1_000_000, 10_000))
	}
	sortByTime(evs)
	return evs
}
