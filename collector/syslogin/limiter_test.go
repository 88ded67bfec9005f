package syslogin

import (
	"net/netip"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := newLimiter(10, 20)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	passed := 0
	var reports []int64
	for range 100 {
		ok, rep := l.allow(a, t0)
		if ok {
			passed++
		}
		if rep > 0 {
			reports = append(reports, rep)
		}
	}
	if passed != 20 {
		t.Fatalf("%d passed at one instant, want the burst of 20", passed)
	}
	if len(reports) != 1 || reports[0] != 1 {
		t.Fatalf("drop reports %v: want one report of the first drop", reports)
	}
	if ok, _ := l.allow(b, t0); !ok {
		t.Fatal("another source must have its own bucket")
	}
	// Half a second later: 5 tokens back.
	passed = 0
	for range 10 {
		if ok, rep := l.allow(a, t0.Add(500*time.Millisecond)); ok {
			passed++
		} else if rep != 0 {
			t.Fatal("reported again within the minute")
		}
	}
	if passed != 5 {
		t.Fatalf("%d passed after 0.5 s at 10/s, want 5", passed)
	}
	// After a minute the drops since the last report are reported at once.
	ok, rep := l.allow(a, t0.Add(time.Minute))
	if !ok {
		t.Fatal("a full bucket after a minute")
	}
	for ok {
		ok, rep = l.allow(a, t0.Add(time.Minute))
	}
	if rep != 79+5+1 {
		t.Fatalf("report of %d drops, want %d", rep, 79+5+1)
	}

	// Unknown-source messages: reported once a minute with their count.
	if n := l.unknownSource(b, t0); n != 1 {
		t.Fatalf("first unknown report %d", n)
	}
	for range 3 {
		if n := l.unknownSource(b, t0.Add(time.Second)); n != 0 {
			t.Fatal("unknown reported twice within a minute")
		}
	}
	if n := l.unknownSource(b, t0.Add(61*time.Second)); n != 4 {
		t.Fatalf("unknown report %d, want 4", n)
	}
}

// TestLimiterForgetsIdleSources: the state of sources that went quiet is
// dropped, so spoofed floods cannot grow it without bound.
func TestLimiterForgetsIdleSources(t *testing.T) {
	l := newLimiter(1000, 2000)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		l.allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), t0)
	}
	if len(l.src) != 1000 {
		t.Fatalf("%d sources tracked", len(l.src))
	}
	l.allow(netip.MustParseAddr("192.0.2.1"), t0.Add(11*time.Minute))
	if len(l.src) != 1 {
		t.Fatalf("%d sources tracked after the idle ones were swept, want 1", len(l.src))
	}
}
