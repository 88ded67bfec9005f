package heuristics

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestBeaconCalibration measures the defaults on fixed random draws: the
// share of 5 s +/- 0.2 s beacons recognised at the first judgement
// (min_intervals intervals) and of Poisson-like connection sequences (gaps
// 1 s + exponential with mean 5 s) wrongly judged periodic.
func TestBeaconCalibration(t *testing.T) {
	p := DefaultBeaconParams()
	d := NewBeaconing(NewLayered(p), Options{})
	n := p.MinIntervals
	det := 0
	for seed := range uint64(2000) {
		r := rand.New(rand.NewPCG(seed, 1))
		var beats []int64
		for i := range n + 1 {
			j := time.Duration((r.Float64()*2 - 1) * float64(200*time.Millisecond))
			beats = append(beats, int64(time.Duration(i)*5*time.Second+j))
		}
		if _, _, _, _, ok := d.regularity(beats, &p); ok {
			det++
		}
	}
	fp := 0
	for seed := range uint64(20000) {
		r := rand.New(rand.NewPCG(seed, 2))
		var beats []int64
		at := int64(0)
		for range n + 1 {
			at += int64(time.Second) + int64(r.ExpFloat64()*float64(5*time.Second))
			beats = append(beats, at)
		}
		if _, _, _, _, ok := d.regularity(beats, &p); ok {
			fp++
		}
	}
	t.Logf("%d intervals: beacons recognised %d/2000, random sequences judged periodic %d/20000", n, det, fp)
	if det < 1960 || fp > 4 {
		t.Fatalf("calibration drifted: recognised %d/2000 (want >= 1960), false %d/20000 (want <= 4)", det, fp)
	}
}
