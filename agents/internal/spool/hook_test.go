package spool

import (
	"errors"
	"path/filepath"
	"testing"
)

func segFiles(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, segPrefix+"*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// TestBeforeRemoveAndScanAll: the hook runs before every segment deletion
// and a failing hook keeps the segment; with the hook set, Open deletes
// nothing, so ScanAll sees acknowledged entries of the previous run.
func TestBeforeRemoveAndScanAll(t *testing.T) {
	dir := t.TempDir()
	calls := 0
	var fail error
	hook := func() error {
		calls++
		return fail
	}
	s := open(t, dir, Options{SegmentBytes: 64 << 10, MaxBytes: 1 << 20, BeforeRemove: hook})
	for i := range 20 {
		mustAppend(t, s, payload(i, 10<<10)) // about 6 entries per segment
	}
	before := segFiles(t, dir)
	if before < 3 {
		t.Fatalf("want several segments, got %d", before)
	}
	fail = errors.New("sync failed")
	if err := s.Ack(8); err != nil {
		t.Fatalf("a failing hook must not fail the Ack: %v", err)
	}
	if calls == 0 || segFiles(t, dir) != before {
		t.Fatalf("hook calls %d, segments %d (want %d kept)", calls, segFiles(t, dir), before)
	}
	fail = nil
	if err := s.Ack(9); err != nil {
		t.Fatal(err)
	}
	if segFiles(t, dir) >= before {
		t.Fatalf("acknowledged segments were not removed after the hook succeeded")
	}
	removed := before - segFiles(t, dir)
	// The next removal fails: the acknowledged segment stays on disk for
	// the next run (as after a crash between the head write and the
	// removal).
	fail = errors.New("sync failed")
	if err := s.Ack(15); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fail = nil

	// Reopen with the hook: acknowledged entries still on disk are scanned.
	calls = 0
	s2 := open(t, dir, Options{SegmentBytes: 64 << 10, MaxBytes: 1 << 20, BeforeRemove: hook})
	if calls != 0 {
		t.Fatalf("Open called the hook %d times; it must delete nothing", calls)
	}
	var seen []string
	if err := s2.ScanAll(func(data []byte) error {
		seen = append(seen, string(data[:12]))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) == 0 || seen[len(seen)-1] != string(payload(19, 12)) {
		t.Fatalf("scan saw %d entries, last %q", len(seen), seen)
	}
	if len(seen) < 14 { // entries 7..20: the kept segment included
		t.Fatalf("scan saw %d entries: acknowledged entries still on disk are missing", len(seen))
	}
	t.Logf("segments removed through the hook: %d; entries scanned after reopen: %d", removed, len(seen))
	e, err := s2.Next(t.Context())
	if err != nil || string(e.Data[:12]) != string(payload(15, 12)) {
		t.Fatalf("next after reopen: %q %v", e.Data[:12], err)
	}
	stop := errors.New("stop")
	if err := s2.ScanAll(func([]byte) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("ScanAll returned %v, want the callback's error", err)
	}
	// The first Ack after reopen removes the dead segments, after the hook.
	if err := s2.Ack(e.ID); err != nil {
		t.Fatal(err)
	}
	if calls == 0 {
		t.Fatal("the dead segments kept at Open were removed without the hook")
	}
}
