package spool

import (
	"bytes"
	"context"
	"testing"
)

// TestNextAcrossSegmentRoll: the shipper has taken every entry (Next is at
// the end) but not acknowledged them when an append starts a new segment;
// Next goes on in the new segment. It used to read past the end of the old
// one ("reading entry 13: EOF").
func TestNextAcrossSegmentRoll(t *testing.T) {
	s := open(t, t.TempDir(), Options{MaxBytes: 1 << 20, SegmentBytes: 4 << 10})
	ctx := context.Background()
	const n = 40 // about three segments of 300-byte entries
	for i := range n {
		if err := s.Append(payload(i, 300)); err != nil {
			t.Fatal(err)
		}
		e, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("entry %d: %v (%d segments)", i, err, len(s.segs))
		}
		if !bytes.Equal(e.Data, payload(i, 300)) {
			t.Fatalf("entry %d: Next returned other data", i)
		}
	}
	if len(s.segs) < 3 {
		t.Fatalf("%d segments: the test did not roll the segment twice", len(s.segs))
	}
	// Acknowledging all of them empties the spool and removes the old
	// segments; what comes next is read from where it was appended.
	last, err := s.AppendID(payload(n, 300))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(last - 1); err != nil {
		t.Fatal(err)
	}
	if e, err := s.Next(ctx); err != nil || e.ID != last {
		t.Fatalf("after the ack: entry %d, %v; want %d", e.ID, err, last)
	}
	if st := s.Stats(); st.Entries != 1 || st.Segments != 1 {
		t.Fatalf("after acknowledging all but the last: %d entries in %d segments, want 1 in 1", st.Entries, st.Segments)
	}
}
