// Package slotfile keeps one small piece of agent state (sequence counters,
// file checkpoints) in a file that is updated in place, without a temporary
// file, a rename or an fsync per update, and that survives both SIGKILL and
// power loss.
//
// # Layout
//
// The file is two slots of equal size (a multiple of 4 KiB); its size is
// twice the slot size. Each slot starts with a 24-byte header, all integers
// big-endian:
//
//	8  magic "CSSLOT" 0x00 0x01
//	8  generation (incremented by every Write)
//	4  payload length n
//	4  CRC-32C (Castagnoli) of the generation, the length and the payload
//	n  payload
//
// Open picks the valid slot with the highest generation.
//
// # Safety
//
// Write is one pwrite of a slot, without fsync: after a SIGKILL the page
// cache keeps it and the newest slot is the last Write. Every Write between
// two Syncs goes to the same slot (the "active" one); the other slot holds
// the state made durable by the last Sync and is not touched until the next
// Sync has made the active slot durable. After a power loss the active slot
// may be stale or torn, the other one is intact: Open returns the last
// synced state or something newer, never garbage. Open fsyncs the file
// before anything is written, so what it read is durable. A payload that
// does not fit in a slot makes Write rewrite the whole file with bigger
// slots through a temporary file, fsync and rename (rare).
//
// A path is open in at most one File at a time: Open removes the temporary
// files of rewrites it takes for interrupted, so a second opener would
// break a rewrite in progress. The agent's state-directory lock keeps other
// processes out; inside the agent, the owner closes a File before the path
// is opened again.
package slotfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

const (
	magic      = "CSSLOT\x00\x01"
	headerSize = 8 + 8 + 4 + 4
	pageSize   = 4096
	// MaxPayload bounds a payload (and so the file at 2 × (MaxPayload +
	// header), rounded up to 4 KiB).
	MaxPayload = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrDamaged: the file exists but neither slot is valid.
var ErrDamaged = errors.New("slot file: no valid slot (the file is damaged or is not a slot file)")

// ErrRejected: OpenFunc's accept refused every valid slot. The File is
// returned and usable (the next Write starts a new state).
var ErrRejected = errors.New("slot file: no slot is backed by what it refers to (lost in a power loss)")

// File is an open slot file. It is not safe for concurrent use: the caller
// serialises Write, Sync and Close.
type File struct {
	path   string
	f      *os.File // nil until the first Write when the file did not exist
	slot   int64    // slot size
	active int64    // 0 or 1: the slot Write overwrites
	gen    uint64   // generation of the newest slot
	dirty  bool     // written since the last Sync
	noSync bool
	buf    []byte
}

// Options configure a File.
type Options struct {
	// NoSync turns every fsync into a no-op (tests and benchmarks only:
	// a power loss may then lose updates).
	NoSync bool
}

// Open opens the slot file at path and returns the payload of its newest
// valid slot. A missing file is no error: the payload is nil and the file
// is created (durably) by the first Write. A file with no valid slot gives
// ErrDamaged; the caller decides whether that is fatal.
func Open(path string, opts Options) (*File, []byte, error) {
	return OpenFunc(path, opts, nil)
}

// OpenFunc is Open where a valid slot counts only when accept returns true
// for its payload (accept nil: every valid slot counts): the newest
// accepted slot is returned, and the next Write overwrites the other one
// with a higher generation. When no slot is accepted the payload is nil,
// as for a missing file, and the error ErrRejected. A payload refers to
// something outside the file (a spool entry) that a power loss may have
// taken while the slot reached the disk; the caller's accept checks it.
func OpenFunc(path string, opts Options, accept func(payload []byte) bool) (*File, []byte, error) {
	sf := &File{path: path, noSync: opts.NoSync}
	// Temporary files of a rewrite interrupted before its rename hold
	// nothing the file does not.
	stale, _ := filepath.Glob(path + ".tmp-*")
	for _, p := range stale {
		if err := os.Remove(p); err != nil {
			return nil, nil, fmt.Errorf("removing stale %s: %w", p, err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		return sf, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("opening %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("opening %s: %w", path, err)
	}
	size := st.Size()
	if size == 0 || size%(2*pageSize) != 0 || size > 2*(MaxPayload+headerSize+pageSize) {
		_ = f.Close()
		return nil, nil, fmt.Errorf("%w: %s has size %d", ErrDamaged, path, size)
	}
	sf.f, sf.slot = f, size/2
	var best []byte
	bestSlot := int64(-1)
	var bestGen, maxGen uint64
	anyValid := false
	for i := range int64(2) {
		b := make([]byte, sf.slot)
		if _, err := f.ReadAt(b, i*sf.slot); err != nil {
			_ = f.Close()
			return nil, nil, fmt.Errorf("reading %s: %w", path, err)
		}
		gen, payload, ok := decodeSlot(b)
		if !ok {
			continue
		}
		if !anyValid || gen > maxGen {
			maxGen = gen
		}
		anyValid = true
		if (accept == nil || accept(payload)) && (bestSlot < 0 || gen > bestGen) {
			best, bestSlot, bestGen = payload, i, gen
		}
	}
	if !anyValid {
		_ = f.Close()
		return nil, nil, fmt.Errorf("%w: %s", ErrDamaged, path)
	}
	// Writes continue above every generation on disk, so that a rejected
	// slot can never win again.
	sf.gen = maxGen
	var rejected error
	if bestSlot < 0 {
		rejected = fmt.Errorf("%w: %s", ErrRejected, path)
		bestSlot = 1 // the next Write overwrites slot 0
	}
	// Make what was read durable (a previous process may have been killed
	// before its Sync) before the other slot is overwritten.
	if err := sf.fsync(); err != nil {
		_ = f.Close()
		return nil, nil, err
	}
	sf.active = 1 - bestSlot
	return sf, best, rejected
}

// Fits reports whether a payload of n bytes can be written in place (one
// pwrite); a larger one makes Write rewrite the file (fsynced, both slots).
func (sf *File) Fits(n int) bool { return sf.f != nil && int64(headerSize+n) <= sf.slot }

// decodeSlot checks one slot and returns its generation and payload.
func decodeSlot(b []byte) (uint64, []byte, bool) {
	if len(b) < headerSize || string(b[:8]) != magic {
		return 0, nil, false
	}
	gen := binary.BigEndian.Uint64(b[8:])
	n := int64(binary.BigEndian.Uint32(b[16:]))
	if n > int64(len(b)-headerSize) {
		return 0, nil, false
	}
	crc := crc32.Update(0, castagnoli, b[8:20])
	crc = crc32.Update(crc, castagnoli, b[headerSize:headerSize+n])
	if crc != binary.BigEndian.Uint32(b[20:]) {
		return 0, nil, false
	}
	return gen, b[headerSize : headerSize+n], true
}

func (sf *File) encode(gen uint64, payload []byte) []byte {
	need := headerSize + len(payload)
	if cap(sf.buf) < need {
		sf.buf = make([]byte, need)
	}
	b := sf.buf[:need]
	copy(b, magic)
	binary.BigEndian.PutUint64(b[8:], gen)
	binary.BigEndian.PutUint32(b[16:], uint32(len(payload))) //nolint:gosec // G115: len(payload) <= MaxPayload
	copy(b[headerSize:], payload)
	crc := crc32.Update(0, castagnoli, b[8:20])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.BigEndian.PutUint32(b[20:], crc)
	return b
}

// Write stores payload as the newest state: one pwrite, no fsync (see the
// package comment). It returns once the data is in the page cache.
func (sf *File) Write(payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("writing %s: state of %d bytes is larger than %d", sf.path, len(payload), MaxPayload)
	}
	if sf.f == nil || int64(headerSize+len(payload)) > sf.slot {
		return sf.rewrite(payload)
	}
	b := sf.encode(sf.gen+1, payload)
	if _, err := sf.f.WriteAt(b, sf.active*sf.slot); err != nil {
		return fmt.Errorf("writing %s: %w", sf.path, err)
	}
	sf.gen++
	sf.dirty = true
	return nil
}

// rewrite replaces the file with one whose slots fit payload: temporary
// file, fsync, rename, fsync of the directory. Both slots hold payload.
func (sf *File) rewrite(payload []byte) error {
	slot := int64(headerSize + len(payload))
	slot = (slot + pageSize - 1) / pageSize * pageSize
	if sf.slot > slot {
		slot = sf.slot
	}
	dir := filepath.Dir(sf.path)
	tmp, err := os.CreateTemp(dir, filepath.Base(sf.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w (is the state directory writable?)", sf.path, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	whole := make([]byte, 2*slot)
	gen := sf.gen + 1
	copy(whole, sf.encode(gen, payload))
	copy(whole[slot:], sf.encode(gen, payload))
	if _, err := tmp.Write(whole); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if !sf.noSync {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", tmp.Name(), err)
		}
	}
	if err := os.Rename(tmp.Name(), sf.path); err != nil {
		return fmt.Errorf("renaming %s: %w", tmp.Name(), err)
	}
	ok = true
	if err := syncDir(dir, sf.noSync); err != nil {
		_ = tmp.Close()
		return err
	}
	if sf.f != nil {
		_ = sf.f.Close()
	}
	sf.f, sf.slot, sf.gen, sf.active, sf.dirty = tmp, slot, gen, 0, false
	return nil
}

// Sync makes the last Write durable (fsync) and switches Write to the
// other slot. It does nothing when nothing was written since the last Sync.
func (sf *File) Sync() error {
	if !sf.dirty || sf.f == nil {
		return nil
	}
	if err := sf.fsync(); err != nil {
		return err
	}
	sf.dirty = false
	sf.active = 1 - sf.active
	return nil
}

// Dirty reports whether a Write happened since the last Sync.
func (sf *File) Dirty() bool { return sf.dirty }

func (sf *File) fsync() error {
	if sf.noSync {
		return nil
	}
	if err := sf.f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", sf.path, err)
	}
	return nil
}

// Close syncs and closes the file.
func (sf *File) Close() error {
	if sf.f == nil {
		return nil
	}
	err := sf.Sync()
	if cerr := sf.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing %s: %w", sf.path, cerr)
	}
	sf.f = nil
	return err
}

func syncDir(dir string, noSync bool) error {
	if noSync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
