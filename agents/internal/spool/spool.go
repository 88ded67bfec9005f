// Package spool is the agent's bounded on-disk FIFO queue of encoded
// batches. The shipper appends every sealed batch, sends the oldest
// unacknowledged ones to Kafka, and acknowledges them only after Kafka did
// (DESIGN.md, "Reliability model"): data leaves the spool only on Ack.
//
// # Layout on disk
//
// A spool directory holds segment files named seg-<first id, 20 digits>.spool
// and a head file. A segment starts with the 8-byte header "CSSPOOL" 0x01 and
// holds entries back to back; all integers are big-endian:
//
//	4  data length n
//	4  CRC-32C (Castagnoli) of the next 16+n bytes
//	8  entry id (consecutive within a segment)
//	8  append time (int64 ns since the Unix epoch)
//	n  data
//
// The head file is a log of 12-byte records, each the id of the oldest
// unacknowledged entry (8 bytes) and a CRC-32C of it, appended (and fsynced)
// at every Ack or drop; the last valid record wins. At 4 KiB it is replaced
// by a one-record file (temp file, fsync, rename). A missing or damaged head
// file means "start at the oldest entry": entries may be sent twice, never
// lost.
//
// # Crash safety
//
// Open scans every segment. The first entry that is short or fails its CRC
// ends the segment: the file is truncated there with a warning naming the
// bytes cut (a torn write of the last append before a crash). This is
// never fatal. Open then fsyncs every segment, so that whatever a restart
// finds in the spool is durable (after a SIGKILL it may have been in the
// page cache only).
//
// Appends are fsynced unless Options.NoSync or Options.DeferSync. With
// DeferSync an append is one pwrite, and Sync fsyncs what was appended
// since the last one (the agent's group commit: whoever needs appended
// entries durable calls Sync first, see docs/agent.md "Power loss"). Two
// rules keep what survives a power loss a prefix of what was appended: the
// segment being appended to is fsynced before a new one starts, and an
// entry is only ever written after the entries before it. So after a power
// loss the spool holds the entries with ids below some n, and Mark tells
// which n the spool found at Open: entries below Mark().Next exist on disk
// for good (until acknowledged), entries from it on were written by this
// run.
//
// The head file is written in place at every Ack without fsync: after a
// power loss it may point to an older entry and batches already
// acknowledged are sent again, under their own sequence numbers (the
// collector drops such duplicates). It never points past the entries on
// disk: Open clamps it.
//
// # Limits
//
// MaxBytes bounds the segment files' total size and MaxAge the age of an
// entry. When an append would exceed MaxBytes, the oldest segments are
// deleted whole (their unacknowledged entries are counted as dropped); when
// the oldest entry is older than MaxAge it is dropped. Drops are counted in
// Stats and logged: the spool never blocks the agent and never grows past
// its limit.
package spool

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

const (
	segHeader     = "CSSPOOL\x01"
	entryHeader   = 4 + 4 + 8 + 8
	headFile      = "head"
	headRecord    = 12   // id (8) + CRC-32C (4)
	headLogMax    = 4096 // head log size that triggers compaction
	segPrefix     = "seg-"
	segSuffix     = ".spool"
	maxEntryLimit = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt: an entry that passed the scan at Open no longer passes its
// CRC (the disk changed under us). It is skipped and counted as dropped.
var errCorrupt = errors.New("spool: entry fails its CRC (disk corruption)")

// Errors callers branch on.
var (
	// ErrEmpty: Peek found no unacknowledged entry.
	ErrEmpty = errors.New("spool: empty")
	// ErrClosed: the spool is closed.
	ErrClosed = errors.New("spool: closed")
	// ErrTooLarge: an entry is larger than MaxEntryBytes.
	ErrTooLarge = errors.New("spool: entry too large")
)

// Options configure a spool. Zero values take the defaults noted.
type Options struct {
	// MaxBytes bounds the total size of the segment files. Default 256 MiB.
	MaxBytes int64
	// MaxAge drops entries older than this. Default 7 days; negative
	// disables the age limit.
	MaxAge time.Duration
	// SegmentBytes is the size at which a new segment starts. Default
	// MaxBytes/16, at least 64 KiB (at most MaxBytes). Drops free space one
	// segment at a time.
	SegmentBytes int64
	// MaxEntryBytes is the largest entry accepted. Default 1 MiB; at most
	// SegmentBytes and 64 MiB.
	MaxEntryBytes int
	// NoSync skips every fsync (tests, benchmarks).
	NoSync bool
	// DeferSync makes Append skip its fsync; Sync makes the appended
	// entries durable (see "Crash safety").
	DeferSync bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives recovery and drop warnings. Default: discard.
	Logger logrus.FieldLogger
	// BeforeRemove, when set, is called before a segment file holding
	// entries is deleted (all acknowledged, or dropped when full). The
	// agent makes its sequence numbers durable there: after a power loss
	// they are raised past every entry still on disk (ScanAll). When it
	// fails, the segment is kept and the removal retried later. With
	// BeforeRemove set, Open deletes nothing, so that ScanAll sees every
	// entry left by the previous run; acknowledged segments go at the
	// next head move.
	BeforeRemove func() error
}

func (o Options) withDefaults() (Options, error) {
	if o.MaxBytes == 0 {
		o.MaxBytes = 256 << 20
	}
	if o.MaxAge == 0 {
		o.MaxAge = 7 * 24 * time.Hour
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = min(max(o.MaxBytes/16, 64<<10), o.MaxBytes)
	}
	if o.MaxEntryBytes == 0 {
		o.MaxEntryBytes = 1 << 20
	}
	o.MaxEntryBytes = int(min(int64(o.MaxEntryBytes), o.SegmentBytes-int64(len(segHeader)+entryHeader), maxEntryLimit))
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Logger = l
	}
	switch {
	case o.MaxBytes < 0:
		return o, errors.New("spool options: max_bytes is negative")
	case o.SegmentBytes > o.MaxBytes:
		return o, fmt.Errorf("spool options: segment_bytes %d is larger than max_bytes %d", o.SegmentBytes, o.MaxBytes)
	case o.MaxEntryBytes <= 0:
		return o, fmt.Errorf("spool options: segment_bytes %d leaves no room for an entry", o.SegmentBytes)
	}
	return o, nil
}

// Entry is one spooled batch.
type Entry struct {
	ID       uint64    // increasing, never reused in a spool directory
	Appended time.Time // when Append was called
	Data     []byte
}

// Stats are the spool's counters since Open (drops) and its current depth.
type Stats struct {
	Entries        int64  // unacknowledged entries (depth)
	Bytes          int64  // their size on disk, headers included
	DiskBytes      int64  // size of all segment files
	Segments       int    // segment files
	Appended       uint64 // entries appended since Open
	Acked          uint64 // entries acknowledged since Open
	DroppedEntries uint64 // unacknowledged entries dropped (full or expired)
	DroppedBytes   uint64 // their bytes, headers included
	ExpiredEntries uint64 // the part of DroppedEntries dropped for age
	TruncatedBytes uint64 // bytes cut from torn or corrupt segment tails at Open
}

type segment struct {
	first uint64 // id of the first entry
	count uint64 // entries
	size  int64  // file size
	f     *os.File
	path  string
}

func (s *segment) next() uint64 { return s.first + s.count }

// position of an entry: segment index and byte offset.
type pos struct {
	seg int
	off int64
	id  uint64
}

// Spool is a bounded on-disk FIFO queue. It is safe for concurrent use.
type Spool struct {
	dir  string
	opts Options
	log  logrus.FieldLogger

	mu       sync.Mutex
	closed   bool
	segs     []*segment // oldest first; the last one is appended to
	head     pos        // oldest unacknowledged entry (== tail when empty)
	cursor   pos        // next entry Next returns
	nextID   uint64
	stats    Stats
	headF    *os.File // head log, appended on every head move
	headSize int64
	wake     chan struct{} // closed and replaced on append and close
	unsynced bool          // the tail segment has appends not yet fsynced (DeferSync)
	mark     Mark
	// headTime is the append time of the head entry when headTimeID is
	// the head's id: expire, called by every Append and Next, reads it
	// from disk only once per head.
	headTime   time.Time
	headTimeID uint64
}

// Mark identifies what a spool held when it was opened: Run is random,
// new at every Open; entries with ids below Next were on disk at Open (and
// were fsynced by it). Together they tell whether an entry id recorded
// elsewhere (a source checkpoint) is still backed by the spool after a
// power loss: it is when it was recorded in this run, or is below Next.
type Mark struct {
	Run  string
	Next uint64
}

// Covers reports whether entry id, recorded during run, is known to be in
// the spool or to have left it acknowledged: it was recorded by this run,
// or it is below the first id not on disk at Open.
func (m Mark) Covers(run string, id uint64) bool { return run == m.Run || id < m.Next }

// Open opens or creates the spool in dir and recovers its state.
func Open(dir string, opts Options) (*Spool, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: creating %s: %w", dir, err)
	}
	s := &Spool{dir: dir, opts: opts, log: opts.Logger.WithField("spool", dir), wake: make(chan struct{}), nextID: 1}
	if err := s.recover(); err != nil {
		return nil, errors.Join(err, s.closeFiles())
	}
	var run [12]byte
	if _, err := rand.Read(run[:]); err != nil {
		return nil, errors.Join(fmt.Errorf("spool: %w", err), s.closeFiles())
	}
	s.mark = Mark{Run: hex.EncodeToString(run[:]), Next: s.nextID}
	return s, nil
}

// Mark returns what the spool held at Open (see Mark).
func (s *Spool) Mark() Mark { return s.mark }

// Sync makes every entry appended so far durable (fsync of the segment
// being appended to; earlier ones were fsynced when it started). Without
// DeferSync it has nothing to do.
func (s *Spool) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.syncTail()
}

func (s *Spool) syncTail() error {
	if !s.unsynced {
		return nil
	}
	if err := s.sync(s.segs[len(s.segs)-1].f); err != nil {
		return err
	}
	s.unsynced = false
	return nil
}

func segName(first uint64) string { return fmt.Sprintf("%s%020d%s", segPrefix, first, segSuffix) }

func (s *Spool) recover() error {
	names, err := filepath.Glob(filepath.Join(s.dir, segPrefix+"*"+segSuffix))
	if err != nil {
		return fmt.Errorf("spool: listing %s: %w", s.dir, err)
	}
	type found struct {
		first uint64
		path  string
	}
	var segs []found
	for _, p := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), segPrefix), segSuffix)
		first, err := strconv.ParseUint(base, 10, 64)
		if err != nil {
			s.log.WithField("file", p).Warn("spool: ignoring a file with a malformed segment name")
			continue
		}
		segs = append(segs, found{first, p})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].first < segs[j].first })
	for i, fs := range segs {
		last := i == len(segs)-1
		seg, err := s.scan(fs.path, fs.first)
		if err != nil {
			return err
		}
		if seg.count == 0 && !last {
			_ = seg.f.Close()
			if err := os.Remove(seg.path); err != nil {
				return fmt.Errorf("spool: removing empty segment: %w", err)
			}
			continue
		}
		if n := len(s.segs); n > 0 && seg.first < s.segs[n-1].next() {
			_ = seg.f.Close()
			return fmt.Errorf("spool: segment %s overlaps the previous one: the directory was tampered with", seg.path)
		}
		// What this start sees must stay: after a SIGKILL it may be in the
		// page cache only (Mark relies on it).
		if err := s.sync(seg.f); err != nil {
			_ = seg.f.Close()
			return err
		}
		s.segs = append(s.segs, seg)
	}
	if len(s.segs) == 0 {
		if err := s.newSegment(1); err != nil {
			return err
		}
	}
	tail := s.segs[len(s.segs)-1]
	s.nextID = tail.next()
	// Head: the persisted id, clamped to what exists.
	headID := s.segs[0].first
	if id, err := s.readHead(); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.WithError(err).Warn("spool: head file is damaged; resending from the oldest entry (duplicates are possible)")
		}
	} else if id > headID {
		headID = min(id, s.nextID)
	}
	p, err := s.seek(headID)
	if err != nil {
		return err
	}
	s.head, s.cursor = p, p
	if err := s.openHead(); err != nil {
		return err
	}
	if s.opts.BeforeRemove == nil {
		if err := s.removeDead(); err != nil {
			return err
		}
	}
	s.refreshDepth()
	return nil
}

// scan opens a segment, validates its entries and truncates a bad tail.
func (s *Spool) scan(path string, first uint64) (*segment, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: opening segment: %w", err)
	}
	seg := &segment{first: first, f: f, path: path}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("spool: %w", err)
	}
	size := st.Size()
	var hdr [len(segHeader)]byte
	off := int64(len(segHeader))
	var reason string
	if _, err := f.ReadAt(hdr[:], 0); err != nil || string(hdr[:]) != segHeader {
		off, reason = 0, "bad segment header"
	} else {
		buf := make([]byte, 64<<10)
		for off < size {
			n, why := s.checkEntry(f, off, size, first+seg.count, &buf)
			if why != "" {
				reason = why
				break
			}
			off += n
			seg.count++
		}
	}
	if off < size {
		s.log.WithFields(logrus.Fields{"segment": path, "offset": off, "bytes_cut": size - off, "reason": reason}).
			Warn("spool: truncating a torn or corrupt segment tail (left by a crash)")
		s.stats.TruncatedBytes += toU64(size - off)
		if off == 0 {
			if _, err := f.WriteAt([]byte(segHeader), 0); err != nil {
				_ = f.Close()
				return nil, fmt.Errorf("spool: rewriting segment header: %w", err)
			}
			off = int64(len(segHeader))
		}
		if err := f.Truncate(off); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("spool: truncating segment: %w", err)
		}
		if err := s.sync(f); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	seg.size = off
	return seg, nil
}

// checkEntry validates the entry at off; it returns its total size or why
// it is bad.
func (s *Spool) checkEntry(f *os.File, off, size int64, wantID uint64, buf *[]byte) (int64, string) {
	if size-off < entryHeader {
		return 0, "short entry header"
	}
	var h [entryHeader]byte
	if _, err := f.ReadAt(h[:], off); err != nil {
		return 0, "reading entry header: " + err.Error()
	}
	n := int64(binary.BigEndian.Uint32(h[0:]))
	if n > maxEntryLimit || size-off-entryHeader < n {
		return 0, "entry length beyond the end of the segment"
	}
	if id := binary.BigEndian.Uint64(h[8:]); id != wantID {
		return 0, fmt.Sprintf("entry id %d, want %d", id, wantID)
	}
	crc := crc32.Update(0, castagnoli, h[8:])
	for done := int64(0); done < n; {
		chunk := min(n-done, int64(len(*buf)))
		b := (*buf)[:chunk]
		if _, err := f.ReadAt(b, off+entryHeader+done); err != nil {
			return 0, "reading entry: " + err.Error()
		}
		crc = crc32.Update(crc, castagnoli, b)
		done += chunk
	}
	if crc != binary.BigEndian.Uint32(h[4:]) {
		return 0, "CRC mismatch"
	}
	return entryHeader + n, ""
}

func (s *Spool) sync(f *os.File) error {
	if s.opts.NoSync {
		return nil
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("spool: fsync %s: %w", f.Name(), err)
	}
	return nil
}

func (s *Spool) syncDir() error {
	if s.opts.NoSync {
		return nil
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return fmt.Errorf("spool: fsync %s: %w", s.dir, err)
	}
	return d.Close()
}

func (s *Spool) newSegment(first uint64) error {
	// Entries of the current tail are durable before any entry of the new
	// segment can be: what a power loss leaves is a prefix.
	if len(s.segs) > 0 {
		if err := s.syncTail(); err != nil {
			return err
		}
	}
	path := filepath.Join(s.dir, segName(first))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: creating segment: %w", err)
	}
	if _, err := f.Write([]byte(segHeader)); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("spool: writing segment header: %w", err)
	}
	if err := s.sync(f); err != nil {
		_ = f.Close()
		return err
	}
	if err := s.syncDir(); err != nil {
		_ = f.Close()
		return err
	}
	s.segs = append(s.segs, &segment{first: first, size: int64(len(segHeader)), f: f, path: path})
	return nil
}

// seek returns the position of entry id (or the tail when id == nextID).
func (s *Spool) seek(id uint64) (pos, error) {
	for i, seg := range s.segs {
		if id >= seg.next() && i < len(s.segs)-1 {
			continue
		}
		if id < seg.first {
			id = seg.first
		}
		off := int64(len(segHeader))
		for cur := seg.first; cur < id && cur < seg.next(); cur++ {
			n, err := s.entrySize(seg, off)
			if err != nil {
				return pos{}, err
			}
			off += n
		}
		return pos{seg: i, off: off, id: min(id, seg.next())}, nil
	}
	return pos{}, errors.New("spool: no segment")
}

func (s *Spool) entrySize(seg *segment, off int64) (int64, error) {
	var h [4]byte
	if _, err := seg.f.ReadAt(h[:], off); err != nil {
		return 0, fmt.Errorf("spool: reading %s at %d: %w", seg.path, off, err)
	}
	return entryHeader + int64(binary.BigEndian.Uint32(h[:])), nil
}

// atEnd reports whether p is past the last entry.
func (s *Spool) atEnd(p pos) bool { return p.id >= s.nextID }

// advance moves p past one entry; p must not be at the end.
func (s *Spool) advance(p pos) (pos, int64, error) {
	n, err := s.entrySize(s.segs[p.seg], p.off)
	if err != nil {
		return p, 0, err
	}
	return s.past(p, n), n, nil
}

// past returns the position after the entry at p, whose size on disk
// (header included) is n.
func (s *Spool) past(p pos, n int64) pos {
	seg := s.segs[p.seg]
	p.off += n
	p.id++
	if p.id >= seg.next() && p.seg < len(s.segs)-1 {
		p = pos{seg: p.seg + 1, off: int64(len(segHeader)), id: s.segs[p.seg+1].first}
	}
	return p
}

func (s *Spool) read(p pos) (Entry, error) {
	seg := s.segs[p.seg]
	var h [entryHeader]byte
	if _, err := seg.f.ReadAt(h[:], p.off); err != nil {
		return Entry{}, fmt.Errorf("spool: reading entry %d: %w", p.id, err)
	}
	n := binary.BigEndian.Uint32(h[0:])
	data := make([]byte, n)
	if _, err := seg.f.ReadAt(data, p.off+entryHeader); err != nil {
		return Entry{}, fmt.Errorf("spool: reading entry %d: %w", p.id, err)
	}
	crc := crc32.Update(crc32.Update(0, castagnoli, h[8:]), castagnoli, data)
	if crc != binary.BigEndian.Uint32(h[4:]) || binary.BigEndian.Uint64(h[8:]) != p.id {
		return Entry{}, fmt.Errorf("%w: entry %d in %s at offset %d", errCorrupt, p.id, seg.path, p.off)
	}
	return Entry{ID: binary.BigEndian.Uint64(h[8:]), Appended: wireTime(binary.BigEndian.Uint64(h[16:])), Data: data}, nil
}

// readHead returns the last valid record of the head log.
func (s *Spool) readHead() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, headFile))
	if err != nil {
		return 0, err
	}
	found, id := false, uint64(0)
	for len(b) >= headRecord {
		if crc32.Checksum(b[:8], castagnoli) == binary.BigEndian.Uint32(b[8:]) {
			found, id = true, binary.BigEndian.Uint64(b)
		}
		b = b[headRecord:]
	}
	if !found {
		return 0, errors.New("head file holds no valid record")
	}
	return id, nil
}

// openHead opens the head log for appending, cutting a torn last record.
func (s *Spool) openHead() error {
	f, err := os.OpenFile(filepath.Join(s.dir, headFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("spool: opening head file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("spool: %w", err)
	}
	s.headF, s.headSize = f, st.Size()/headRecord*headRecord
	return nil
}

// writeHead appends the head id to the head log; when the log reaches
// headLogMax it is replaced by a one-record file (temp, fsync, rename).
func (s *Spool) writeHead() error {
	var b [headRecord]byte
	binary.BigEndian.PutUint64(b[:], s.head.id)
	binary.BigEndian.PutUint32(b[8:], crc32.Checksum(b[:8], castagnoli))
	if s.headSize+headRecord <= headLogMax {
		if _, err := s.headF.WriteAt(b[:], s.headSize); err != nil {
			return fmt.Errorf("spool: writing head: %w", err)
		}
		s.headSize += headRecord
		return nil // no fsync: see "Crash safety" in the package comment
	}
	tmp := filepath.Join(s.dir, headFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: writing head: %w", err)
	}
	if _, err := f.Write(b[:]); err != nil {
		_ = f.Close()
		return fmt.Errorf("spool: writing head: %w", err)
	}
	if err := s.sync(f); err != nil {
		_ = f.Close()
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, headFile)); err != nil {
		_ = f.Close()
		return fmt.Errorf("spool: writing head: %w", err)
	}
	_ = s.headF.Close()
	s.headF, s.headSize = f, headRecord
	return nil
}

// removeDead deletes segments entirely before the head (never the last),
// after Options.BeforeRemove. When the hook fails nothing is removed and
// its error is returned.
func (s *Spool) removeDead() error {
	k := 0
	for k < len(s.segs)-1 && s.head.seg > k {
		k++
	}
	if k == 0 {
		return nil
	}
	if s.opts.BeforeRemove != nil {
		if err := s.opts.BeforeRemove(); err != nil {
			return fmt.Errorf("spool: before removing %d segment(s): %w", k, err)
		}
	}
	for _, seg := range s.segs[:k] {
		_ = seg.f.Close()
		if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.WithError(err).WithField("segment", seg.path).Warn("spool: cannot remove an acknowledged segment")
		}
	}
	s.segs = append(s.segs[:0:0], s.segs[k:]...)
	s.head.seg -= k
	s.cursor.seg -= k
	if s.cursor.seg < 0 || s.cursor.id < s.head.id {
		s.cursor = s.head
	}
	return nil
}

// removeDeadOrWarn is removeDead where a failure only delays the removal.
func (s *Spool) removeDeadOrWarn() {
	if err := s.removeDead(); err != nil {
		s.log.WithError(err).Warn("spool: keeping acknowledged segments for now; removal is retried at the next acknowledgement")
	}
}

// ScanAll calls fn with the data of every entry physically present in the
// segment files, acknowledged or not, oldest first. data is only valid
// during the call. Entries failing their CRC are skipped. An error from fn
// stops the scan and is returned.
func (s *Spool) ScanAll(fn func(data []byte) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	var data []byte
	for _, seg := range s.segs {
		off := int64(len(segHeader))
		for id := seg.first; id < seg.next(); id++ {
			var h [entryHeader]byte
			if _, err := seg.f.ReadAt(h[:], off); err != nil {
				return fmt.Errorf("spool: reading entry %d in %s: %w", id, seg.path, err)
			}
			n := int64(binary.BigEndian.Uint32(h[0:]))
			if int64(cap(data)) < n {
				data = make([]byte, n)
			}
			data = data[:n]
			if _, err := seg.f.ReadAt(data, off+entryHeader); err != nil {
				return fmt.Errorf("spool: reading entry %d in %s: %w", id, seg.path, err)
			}
			off += entryHeader + n
			crc := crc32.Update(crc32.Update(0, castagnoli, h[8:]), castagnoli, data)
			if crc != binary.BigEndian.Uint32(h[4:]) {
				s.log.WithFields(logrus.Fields{"segment": seg.path, "id": id}).Warn("spool: scan skips an entry that fails its CRC")
				continue
			}
			if err := fn(data); err != nil {
				return err
			}
		}
	}
	return nil
}

// refreshDepth recomputes Entries, Bytes, DiskBytes, Segments.
func (s *Spool) refreshDepth() {
	var disk, live, entries int64
	for i, seg := range s.segs {
		disk += seg.size
		switch {
		case i > s.head.seg:
			live += seg.size - int64(len(segHeader))
			entries += toI64(seg.count)
		case i == s.head.seg:
			live += seg.size - s.head.off
			entries += toI64(seg.next() - s.head.id)
		}
	}
	s.stats.DiskBytes, s.stats.Bytes, s.stats.Segments = disk, live, len(s.segs)
	s.stats.Entries = entries
}

// Append adds one entry at the tail. When the spool is full it first drops
// the oldest segments (counted in Stats). An entry larger than
// MaxEntryBytes is refused with ErrTooLarge; a write error (a full disk)
// leaves the spool as it was.
func (s *Spool) Append(data []byte) error {
	_, err := s.AppendID(data)
	return err
}

// AppendID is Append returning the id of the new entry.
func (s *Spool) AppendID(data []byte) (uint64, error) {
	if len(data) > s.opts.MaxEntryBytes {
		return 0, fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, len(data), s.opts.MaxEntryBytes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	id, err := s.append(data)
	if err != nil {
		return 0, err
	}
	close(s.wake)
	s.wake = make(chan struct{})
	return id, nil
}

func (s *Spool) append(data []byte) (uint64, error) {
	now := s.opts.Now()
	if err := s.expire(now); err != nil {
		return 0, err
	}
	need := int64(entryHeader + len(data))
	tail := s.segs[len(s.segs)-1]
	if tail.count > 0 && tail.size+need > s.opts.SegmentBytes {
		if err := s.newSegment(s.nextID); err != nil {
			return 0, err
		}
		start := pos{seg: len(s.segs) - 1, off: int64(len(segHeader)), id: s.nextID}
		if s.cursor.id == s.nextID {
			// Next has returned every entry: it goes on in the new
			// segment (left at the end of the old one it would read past
			// that segment's last entry while the head is still in it).
			s.cursor = start
		}
		if s.head.id == s.nextID { // empty: the head moves too, the old segment goes
			s.head = start
			s.removeDeadOrWarn()
		}
	}
	if err := s.makeRoom(need); err != nil {
		return 0, err
	}
	tail = s.segs[len(s.segs)-1]
	buf := make([]byte, entryHeader+len(data))
	binary.BigEndian.PutUint32(buf[0:], uint32(len(data))) //nolint:gosec // G115: len(data) <= MaxEntryBytes <= 64 MiB
	binary.BigEndian.PutUint64(buf[8:], s.nextID)
	binary.BigEndian.PutUint64(buf[16:], uint64(now.UnixNano())) //nolint:gosec // G115: two's complement on disk
	copy(buf[entryHeader:], data)
	binary.BigEndian.PutUint32(buf[4:], crc32.Checksum(buf[8:], castagnoli))
	if _, err := tail.f.WriteAt(buf, tail.size); err != nil {
		// Cut whatever part was written so the next append starts clean.
		_ = tail.f.Truncate(tail.size)
		return 0, fmt.Errorf("spool: appending to %s: %w", tail.path, err)
	}
	if s.opts.DeferSync {
		s.unsynced = true
	} else if err := s.sync(tail.f); err != nil {
		_ = tail.f.Truncate(tail.size)
		return 0, err
	}
	id := s.nextID
	if s.head.id == id {
		s.headTime, s.headTimeID = wireTime(uint64(now.UnixNano())), id //nolint:gosec // G115: as written to disk
	}
	tail.size += need
	tail.count++
	s.nextID++
	s.stats.Appended++
	s.refreshDepth()
	return id, nil
}

// makeRoom drops the oldest segments until need more bytes fit in MaxBytes.
func (s *Spool) makeRoom(need int64) error {
	for {
		var disk int64
		for _, seg := range s.segs {
			disk += seg.size
		}
		if disk+need <= s.opts.MaxBytes {
			return nil
		}
		if len(s.segs) == 1 {
			// Everything is in the segment being appended to: start a
			// new one so the old one can go.
			if s.segs[0].count == 0 {
				return fmt.Errorf("%w: %d bytes do not fit in max_bytes %d", ErrTooLarge, need, s.opts.MaxBytes)
			}
			if err := s.newSegment(s.nextID); err != nil {
				return err
			}
		}
		old := s.segs[0]
		if s.head.seg > 0 { // already acknowledged: just not removed yet
			if err := s.removeDead(); err != nil {
				return err
			}
			continue
		}
		entries := old.next() - s.head.id
		bytes := old.size - s.head.off
		if entries > 0 {
			s.stats.DroppedEntries += entries
			s.stats.DroppedBytes += toU64(bytes)
			s.log.WithFields(logrus.Fields{"entries": entries, "bytes": bytes, "first_id": s.head.id, "last_id": old.next() - 1}).
				Warn("spool: full, dropping the oldest unsent batches")
		}
		s.head = pos{seg: 1, off: int64(len(segHeader)), id: s.segs[1].first}
		s.removeDeadOrWarn()
		if err := s.writeHead(); err != nil {
			return err
		}
	}
}

// expire drops entries older than MaxAge from the head.
func (s *Spool) expire(now time.Time) error {
	if s.opts.MaxAge < 0 {
		return nil
	}
	moved := false
	for !s.atEnd(s.head) {
		appended := s.headTime
		if s.headTimeID != s.head.id || appended.IsZero() {
			seg := s.segs[s.head.seg]
			var h [entryHeader]byte
			if _, err := seg.f.ReadAt(h[:], s.head.off); err != nil {
				return fmt.Errorf("spool: reading entry %d: %w", s.head.id, err)
			}
			appended = wireTime(binary.BigEndian.Uint64(h[16:]))
			s.headTime, s.headTimeID = appended, s.head.id
		}
		if now.Sub(appended) <= s.opts.MaxAge {
			break
		}
		next, n, err := s.advance(s.head)
		if err != nil {
			return err
		}
		if !moved {
			s.log.WithFields(logrus.Fields{"id": s.head.id, "appended": appended, "max_age": s.opts.MaxAge}).
				Warn("spool: dropping batches older than max_age")
		}
		s.stats.DroppedEntries++
		s.stats.ExpiredEntries++
		s.stats.DroppedBytes += toU64(n)
		s.head = next
		moved = true
	}
	if moved {
		if s.cursor.id < s.head.id {
			s.cursor = s.head
		}
		s.removeDeadOrWarn()
		s.refreshDepth()
		return s.writeHead()
	}
	return nil
}

// Peek returns the oldest unacknowledged entry, or ErrEmpty.
func (s *Spool) Peek() (Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Entry{}, ErrClosed
	}
	if err := s.expire(s.opts.Now()); err != nil {
		return Entry{}, err
	}
	for !s.atEnd(s.head) {
		e, err := s.read(s.head)
		if !errors.Is(err, errCorrupt) {
			return e, err
		}
		if err := s.skipCorrupt(&s.head, err); err != nil {
			return Entry{}, err
		}
		if s.cursor.id < s.head.id {
			s.cursor = s.head
		}
		s.removeDeadOrWarn()
		s.refreshDepth()
		if err := s.writeHead(); err != nil {
			return Entry{}, err
		}
	}
	return Entry{}, ErrEmpty
}

// skipCorrupt moves p past a corrupt entry, counting it as dropped.
func (s *Spool) skipCorrupt(p *pos, cause error) error {
	next, n, err := s.advance(*p)
	if err != nil {
		return err
	}
	s.log.WithError(cause).Error("spool: skipping a corrupt entry")
	s.stats.DroppedEntries++
	s.stats.DroppedBytes += toU64(n)
	*p = next
	return nil
}

// Next returns the entry after the last one Next returned (starting at the
// oldest unacknowledged one), waiting for an append when there is none. It
// lets the shipper keep several batches in flight; Rewind starts again at
// the oldest unacknowledged entry after a failed send. It returns ctx's
// error when ctx ends, ErrClosed when the spool is closed.
func (s *Spool) Next(ctx context.Context) (Entry, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return Entry{}, ErrClosed
		}
		if err := s.expire(s.opts.Now()); err != nil {
			s.mu.Unlock()
			return Entry{}, err
		}
		if !s.atEnd(s.cursor) {
			e, err := s.read(s.cursor)
			if errors.Is(err, errCorrupt) {
				// Counted here; the head passes it with the next Ack.
				err = s.skipCorrupt(&s.cursor, err)
				s.mu.Unlock()
				if err != nil {
					return Entry{}, err
				}
				continue
			}
			if err == nil {
				s.cursor = s.past(s.cursor, entryHeader+int64(len(e.Data)))
			}
			s.mu.Unlock()
			return e, err
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return Entry{}, ctx.Err()
		case <-wake:
		}
	}
}

// Rewind makes Next start again at the oldest unacknowledged entry.
func (s *Spool) Rewind() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cursor = s.head
}

// Ack acknowledges every entry up to and including id: the caller has
// Kafka's acknowledgement for them. They leave the spool; acknowledging an
// id already acknowledged or dropped does nothing. Acknowledging an id not
// yet appended is an error.
func (s *Spool) Ack(id uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if id >= s.nextID {
		return fmt.Errorf("spool: ack of entry %d, which was never appended (next id %d)", id, s.nextID)
	}
	if id < s.head.id {
		return nil
	}
	if id+1 == s.cursor.id {
		// The usual case: everything Next returned is acknowledged, and
		// the cursor is where the head goes.
		s.stats.Acked += s.cursor.id - s.head.id
		s.head = s.cursor
	}
	for s.head.id <= id {
		next, _, err := s.advance(s.head)
		if err != nil {
			return err
		}
		s.head = next
		s.stats.Acked++
	}
	if s.cursor.id < s.head.id {
		s.cursor = s.head
	}
	s.removeDeadOrWarn()
	s.refreshDepth()
	return s.writeHead()
}

// Stats returns the counters and the current depth.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Close closes the segment files. Pending Next calls return ErrClosed.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.wake)
	return errors.Join(s.syncTail(), s.closeFiles())
}

func (s *Spool) closeFiles() error {
	var errs []error
	if s.headF != nil {
		if err := s.headF.Close(); err != nil {
			errs = append(errs, fmt.Errorf("spool: closing head file: %w", err))
		}
	}
	for _, seg := range s.segs {
		if err := seg.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("spool: closing %s: %w", seg.path, err))
		}
	}
	return errors.Join(errs...)
}

// Conversions whose bounds gosec (G115) cannot see.

func toU64(n int64) uint64 { return uint64(n) } //nolint:gosec // G115: sizes are >= 0
func toI64(n uint64) int64 { return int64(n) }  //nolint:gosec // G115: entry counts are far below 2^63

func wireTime(v uint64) time.Time { return time.Unix(0, int64(v)) } //nolint:gosec // G115: two's complement on disk
