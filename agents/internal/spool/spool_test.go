package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func open(t *testing.T, dir string, o Options) *Spool {
	t.Helper()
	if o.Now == nil {
		o.Now = (&clock{t: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}).Now
	}
	o.NoSync = true
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func payload(i int, size int) []byte {
	b := bytes.Repeat([]byte{byte('a' + i%26)}, size)
	copy(b, fmt.Sprintf("entry-%06d;", i))
	return b
}

func mustAppend(t *testing.T, s *Spool, data []byte) {
	t.Helper()
	if err := s.Append(data); err != nil {
		t.Fatal(err)
	}
}

func TestFIFOAckReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{MaxBytes: 1 << 20, SegmentBytes: 4 << 10})
	if _, err := s.Peek(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty spool: %v", err)
	}
	for i := range 100 {
		mustAppend(t, s, payload(i, 100))
	}
	if st := s.Stats(); st.Entries != 100 || st.Segments < 3 {
		t.Fatalf("stats %+v", st)
	}
	for i := range 40 {
		e, err := s.Peek()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e.Data, payload(i, 100)) || e.ID != uint64(i+1) {
			t.Fatalf("entry %d: id %d data %q", i, e.ID, e.Data[:12])
		}
		if err := s.Ack(e.ID); err != nil {
			t.Fatal(err)
		}
	}
	segsBefore := s.Stats().Segments
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{MaxBytes: 1 << 20, SegmentBytes: 4 << 10})
	st := s.Stats()
	if st.Entries != 60 || st.Segments != segsBefore {
		t.Fatalf("after reopen: %+v (segments before %d)", st, segsBefore)
	}
	ctx := context.Background()
	for i := 40; i < 100; i++ {
		e, err := s.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e.Data, payload(i, 100)) {
			t.Fatalf("entry %d after reopen: %q", i, e.Data[:12])
		}
	}
	// Rewind resends from the oldest unacknowledged entry.
	s.Rewind()
	e, _ := s.Next(ctx)
	if e.ID != 41 {
		t.Fatalf("after rewind got id %d", e.ID)
	}
	if err := s.Ack(100); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Entries != 0 || st.Segments != 1 || st.Bytes != 0 {
		t.Fatalf("all acked: %+v", st)
	}
	if err := s.Ack(500); err == nil {
		t.Fatal("ack beyond the tail accepted")
	}
	// Ids keep increasing across reopen even when empty.
	mustAppend(t, s, []byte("x"))
	_ = s.Close()
	s = open(t, dir, Options{MaxBytes: 1 << 20, SegmentBytes: 4 << 10})
	if e, err := s.Peek(); err != nil || e.ID != 101 || string(e.Data) != "x" {
		t.Fatalf("after empty reopen: %+v %v", e, err)
	}
}

func TestNextWaitsForAppend(t *testing.T) {
	s := open(t, t.TempDir(), Options{MaxBytes: 1 << 20})
	got := make(chan Entry, 1)
	go func() {
		e, err := s.Next(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- e
	}()
	time.Sleep(20 * time.Millisecond)
	mustAppend(t, s, []byte("hello"))
	select {
	case e := <-got:
		if string(e.Data) != "hello" {
			t.Fatalf("got %q", e.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not wake up")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on empty: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.Next(context.Background()); done <- err }()
	time.Sleep(20 * time.Millisecond)
	_ = s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "seg-*.spool"))
	sort.Strings(m)
	if len(m) == 0 {
		t.Fatal("no segment")
	}
	return m[len(m)-1]
}

// TestCrashRecovery simulates crashes that leave the last segment torn or
// corrupt: reopening cuts the bad tail with a warning and keeps the rest.
func TestCrashRecovery(t *testing.T) {
	cases := map[string]struct {
		damage func(t *testing.T, path string)
		want   int // entries left of 10
	}{
		"torn header": {func(t *testing.T, p string) { appendBytes(t, p, []byte{0, 0, 0}) }, 10},
		"torn data": {func(t *testing.T, p string) {
			st, _ := os.Stat(p)
			if err := os.Truncate(p, st.Size()-7); err != nil {
				t.Fatal(err)
			}
		}, 9},
		"flipped byte in last entry": {func(t *testing.T, p string) { flip(t, p, -3) }, 9},
		"garbage length": {func(t *testing.T, p string) {
			appendBytes(t, p, []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8})
		}, 10},
		"zeroed tail (ext4 after power loss)": {func(t *testing.T, p string) { appendBytes(t, p, make([]byte, 4096)) }, 10},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, Options{MaxBytes: 1 << 20})
			for i := range 10 {
				mustAppend(t, s, payload(i, 50))
			}
			_ = s.Close()
			c.damage(t, lastSegment(t, dir))
			logger, hook := test.NewNullLogger()
			s = open(t, dir, Options{MaxBytes: 1 << 20, Logger: logger})
			st := s.Stats()
			if st.Entries != int64(c.want) {
				t.Fatalf("%d entries left, want %d", st.Entries, c.want)
			}
			if st.TruncatedBytes == 0 {
				t.Fatal("nothing counted as truncated")
			}
			if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel {
				t.Fatalf("no warning logged: %v", hook.AllEntries())
			}
			for i := range c.want {
				e, err := s.Next(context.Background())
				if err != nil || !bytes.Equal(e.Data, payload(i, 50)) {
					t.Fatalf("entry %d: %v", i, err)
				}
			}
			// Appending after recovery continues the sequence of ids.
			mustAppend(t, s, []byte("after"))
			e, _ := s.Next(context.Background())
			if e.ID != uint64(c.want+1) || string(e.Data) != "after" {
				t.Fatalf("append after recovery: %+v", e)
			}
		})
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
}

func flip(t *testing.T, path string, at int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if at < 0 {
		at += int64(len(b))
	}
	b[at] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDamagedHeadFile(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{MaxBytes: 1 << 20})
	for i := range 5 {
		mustAppend(t, s, payload(i, 10))
	}
	_ = s.Ack(3)
	_ = s.Close()
	if err := os.WriteFile(filepath.Join(dir, "head"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{MaxBytes: 1 << 20})
	// Resends from the oldest entry still on disk: duplicates, no loss.
	if e, err := s.Peek(); err != nil || e.ID != 1 {
		t.Fatalf("got %+v %v", e, err)
	}
}

// TestDropOldestWhenFull fills a small spool (a full disk simulated by the
// limit): the oldest entries go first, are counted, and the disk use stays
// under MaxBytes.
func TestDropOldestWhenFull(t *testing.T) {
	logger, hook := test.NewNullLogger()
	const maxBytes, seg = 64 << 10, 8 << 10
	s := open(t, t.TempDir(), Options{MaxBytes: maxBytes, SegmentBytes: seg, Logger: logger})
	const n, size = 1000, 200
	for i := range n {
		mustAppend(t, s, payload(i, size))
		if st := s.Stats(); st.DiskBytes > maxBytes {
			t.Fatalf("after %d appends disk use %d > %d", i, st.DiskBytes, maxBytes)
		}
	}
	st := s.Stats()
	if st.DroppedEntries == 0 || st.DroppedEntries+uint64(st.Entries) != n {
		t.Fatalf("dropped %d + left %d != %d", st.DroppedEntries, st.Entries, n)
	}
	if st.DroppedBytes != st.DroppedEntries*(entryHeader+size) {
		t.Fatalf("dropped bytes %d for %d entries", st.DroppedBytes, st.DroppedEntries)
	}
	if st.ExpiredEntries != 0 {
		t.Fatalf("expired %d", st.ExpiredEntries)
	}
	// What is left is the newest entries, in order.
	first := int(st.DroppedEntries)
	for i := first; i < n; i++ {
		e, err := s.Next(context.Background())
		if err != nil || !bytes.Equal(e.Data, payload(i, size)) {
			t.Fatalf("entry %d: %v %q", i, err, e.Data[:12])
		}
		if e.ID != uint64(i+1) {
			t.Fatalf("entry %d has id %d", i, e.ID)
		}
	}
	warned := false
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel && e.Data["entries"] != nil {
			warned = true
		}
	}
	if !warned {
		t.Fatal("drops were not logged")
	}
	// An in-flight entry dropped before its ack: the late ack is harmless.
	if err := s.Ack(1); err != nil {
		t.Fatalf("late ack of a dropped entry: %v", err)
	}
	if err := s.Append(make([]byte, seg)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize entry: %v", err)
	}
}

func TestDropByAge(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	s := open(t, dir, Options{MaxBytes: 1 << 20, SegmentBytes: 1 << 10, MaxAge: time.Hour, Now: c.Now})
	for i := range 30 {
		mustAppend(t, s, payload(i, 100))
		c.Add(10 * time.Minute) // entry i is appended at i*10 min
	}
	// Now = 300 min: entries appended before 240 min (i < 24) are too old.
	e, err := s.Peek()
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != 25 {
		t.Fatalf("oldest after expiry is %d, want 25", e.ID)
	}
	st := s.Stats()
	if st.ExpiredEntries != 24 || st.DroppedEntries != 24 || st.Entries != 6 {
		t.Fatalf("stats %+v", st)
	}
	// A clock jumping backwards expires nothing.
	c.Add(-48 * time.Hour)
	mustAppend(t, s, []byte("late"))
	if st := s.Stats(); st.Entries != 7 {
		t.Fatalf("after clock jump: %+v", st)
	}
}

func TestWriteFailureLeavesSpoolUsable(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{MaxBytes: 1 << 20})
	mustAppend(t, s, []byte("one"))
	// Simulate an I/O failure: the tail file handle is closed under us.
	_ = s.segs[len(s.segs)-1].f.Close()
	if err := s.Append([]byte("two")); err == nil {
		t.Fatal("append on a broken file succeeded")
	}
	_ = s.Close()
	s = open(t, dir, Options{MaxBytes: 1 << 20})
	if st := s.Stats(); st.Entries != 1 {
		t.Fatalf("after reopen %+v", st)
	}
}

func BenchmarkAppendAck(b *testing.B) {
	for _, c := range []struct {
		name string
		sync bool
		size int
	}{{"nosync-1KiB", false, 1 << 10}, {"nosync-128KiB", false, 128 << 10}, {"fsync-128KiB", true, 128 << 10}} {
		b.Run(c.name, func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{MaxBytes: 64 << 20, NoSync: !c.sync})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := payload(0, c.size)
			b.SetBytes(int64(c.size))
			ctx := context.Background()
			for b.Loop() {
				if err := s.Append(data); err != nil {
					b.Fatal(err)
				}
				e, err := s.Next(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Ack(e.ID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCorruptMiddleSegment: damage in a segment that is not the last one
// cuts that segment at the bad entry; later segments are kept.
func TestCorruptMiddleSegment(t *testing.T) {
	dir := t.TempDir()
	o := Options{MaxBytes: 1 << 20, SegmentBytes: 4 << 10}
	s := open(t, dir, o)
	for i := range 100 {
		mustAppend(t, s, payload(i, 100))
	}
	_ = s.Close()
	m, _ := filepath.Glob(filepath.Join(dir, "seg-*.spool"))
	sort.Strings(m)
	if len(m) < 3 {
		t.Fatalf("%d segments", len(m))
	}
	flip(t, m[1], -3) // the last entry of the second segment
	s = open(t, dir, o)
	st := s.Stats()
	if st.Entries != 99 || st.TruncatedBytes != entryHeader+100 {
		t.Fatalf("stats %+v", st)
	}
	var ids []uint64
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		e, err := s.Next(ctx)
		cancel()
		if err != nil {
			break
		}
		ids = append(ids, e.ID)
	}
	if len(ids) != 99 || ids[98] != 100 {
		t.Fatalf("read %d entries, last %v", len(ids), ids[len(ids)-1])
	}
}

// TestCorruptionAtRuntime: an entry damaged after Open is skipped with an
// error log and counted as dropped; the spool keeps going.
func TestCorruptionAtRuntime(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{MaxBytes: 1 << 20})
	for i := range 3 {
		mustAppend(t, s, payload(i, 100))
	}
	// Flip a data byte of entry 1 behind the spool's back.
	seg := s.segs[0]
	if _, err := seg.f.WriteAt([]byte{'!'}, int64(len(segHeader))+entryHeader+50); err != nil {
		t.Fatal(err)
	}
	e, err := s.Peek()
	if err != nil || e.ID != 2 {
		t.Fatalf("peek after corruption: %+v %v", e, err)
	}
	if st := s.Stats(); st.DroppedEntries != 1 || st.Entries != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestHeadLog: many acks compact the head log; a torn head record is
// ignored (the previous one wins).
func TestHeadLog(t *testing.T) {
	dir := t.TempDir()
	o := Options{MaxBytes: 1 << 20}
	s := open(t, dir, o)
	for i := range 1000 {
		mustAppend(t, s, payload(i, 10))
		if err := s.Ack(uint64(i + 1)); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(t, s, []byte("left"))
	_ = s.Close()
	st, err := os.Stat(filepath.Join(dir, "head"))
	if err != nil || st.Size() > headLogMax {
		t.Fatalf("head log not compacted: %v %v", st.Size(), err)
	}
	appendBytes(t, filepath.Join(dir, "head"), []byte{0, 0, 0, 0, 0})
	s = open(t, dir, o)
	if e, err := s.Peek(); err != nil || string(e.Data) != "left" || e.ID != 1001 {
		t.Fatalf("after reopen: %+v %v", e, err)
	}
	if st := s.Stats(); st.Entries != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDeferSyncMark: with DeferSync, AppendID numbers entries, Sync and
// Close make them durable, and Mark tells a later run which entry ids were
// on disk when it opened.
func TestDeferSyncMark(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{DeferSync: true})
	if err != nil {
		t.Fatal(err)
	}
	m1 := s.Mark()
	if m1.Next != 1 || m1.Run == "" {
		t.Fatalf("fresh spool mark %+v, want next 1 and a run", m1)
	}
	for want := uint64(1); want <= 3; want++ {
		id, err := s.AppendID([]byte("batch"))
		if err != nil || id != want {
			t.Fatalf("AppendID = %d, %v; want %d", id, err, want)
		}
		if !s.unsynced {
			t.Fatal("DeferSync: an append must not fsync")
		}
	}
	if err := s.Sync(); err != nil || s.unsynced {
		t.Fatalf("Sync: %v, unsynced %v", err, s.unsynced)
	}
	if _, err := s.AppendID([]byte("batch 4")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{DeferSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	m2 := s2.Mark()
	switch {
	case m2.Next != 5 || m2.Run == m1.Run:
		t.Fatalf("reopened mark %+v after %+v, want next 5 and a new run", m2, m1)
	case !m2.Covers(m1.Run, 4) || m2.Covers(m1.Run, 5):
		t.Fatal("an entry of an earlier run is covered exactly when it was on disk at Open")
	case !m2.Covers(m2.Run, 99):
		t.Fatal("an entry recorded by this run is covered")
	}
	if err := s2.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendID([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
}
