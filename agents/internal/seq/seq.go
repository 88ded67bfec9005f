// Package seq hands out the envelope sequence numbers of the agent: one
// counter per (agent, stream), starting at 1, that survives restarts,
// SIGKILL and power loss (DESIGN.md, "Agent batch envelope": sequence
// numbers are per agent and per stream, monotonic across restarts).
//
// Reserve updates the counters in memory and writes them in place into a
// two-slot state file (package slotfile): one pwrite, no temporary file, no
// rename and no fsync per batch. A SIGKILL keeps what was written (it is in
// the page cache), so numbers are never reused after a kill. Power loss can
// lose the writes made since the last fsync; three rules make up for that:
//
//   - the store fsyncs the file in the background every SyncInterval
//     (default 1 s) and at Close;
//   - the spool calls Sync before it deletes a segment file (spool
//     Options.BeforeRemove), so a number is on disk before the last copy of
//     the batch that carries it disappears;
//   - at start the agent raises every counter past the numbers of every
//     envelope still present in the spool (Raise, RangeOf), acknowledged or
//     not.
//
// A number that reached Kafka was in the spool first, so after a power loss
// it is either still in a spool segment or was synced before its segment
// was removed: it is never handed out again. A number reserved but never
// appended to the spool may be handed out again after a power loss; it
// never left the machine, so nobody saw it. Numbers do not depend on the
// clock: a clock jumping backwards changes nothing.
//
// The batcher calls Reserve before it appends the batch to the spool; a
// crash between the two leaves a gap of at most one batch per stream
// although no line was lost (the lines are read again under new numbers).
// A reused number would be worse: the collector would drop the batch as a
// replay.
package seq

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/seq/slotfile"
)

// FileName is the state file (a slot file) in the directory given to Open.
const FileName = "sequences.dat"

// LegacyFileName is the JSON state file of earlier versions. Open merges it
// (the higher counter wins) and deletes it once FileName is on disk.
const LegacyFileName = "sequences.json"

// stateVersion is the first byte of the payload.
const stateVersion = 1

// Key names one counter.
type Key struct {
	Agent  string
	Stream string
}

// Options configure a Store.
type Options struct {
	// NoSync skips the fsyncs (benchmarks and tests only: a power loss
	// may then lose the last reservations and numbers would be reused).
	NoSync bool
	// SyncInterval is how often dirty counters are fsynced in the
	// background. Default 1 s; negative disables the background sync
	// (Sync and Close still sync).
	SyncInterval time.Duration
}

// Store is the set of counters of one agent state directory. It is safe
// for concurrent use. Close it to stop the background sync.
type Store struct {
	path string
	opts Options

	mu     sync.Mutex
	file   *slotfile.File
	next   map[Key]uint64 // next number to hand out; absent means 1
	closed bool
	buf    []byte
	stop   chan struct{}
	done   chan struct{}
}

// Open loads the counters kept in dir (created if missing). A missing
// state file means every counter starts at 1; an unreadable or damaged one
// is an error, never a silent restart from 1 (that would reuse numbers).
func Open(dir string, opts Options) (*Store, error) {
	if opts.SyncInterval == 0 {
		opts.SyncInterval = time.Second
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening sequence store: %w", err)
	}
	s := &Store{path: filepath.Join(dir, FileName), opts: opts, next: map[Key]uint64{}}
	f, payload, err := slotfile.Open(s.path, slotfile.Options{NoSync: opts.NoSync})
	if err != nil {
		return nil, fmt.Errorf("reading sequence numbers: %w (restore the state directory from a backup; deleting the file would make the agent reuse numbers)", err)
	}
	s.file = f
	if payload != nil {
		if err := s.decode(payload); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("reading sequence numbers from %s: %w", s.path, err)
		}
	}
	legacy := filepath.Join(dir, LegacyFileName)
	hadLegacy, err := s.mergeLegacy(legacy)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	// Stale temporary files of the JSON format.
	if stale, _ := filepath.Glob(legacy + ".tmp-*"); len(stale) > 0 {
		for _, p := range stale {
			_ = os.Remove(p)
		}
	}
	if hadLegacy {
		err := s.file.Write(s.encode())
		if err == nil {
			err = s.file.Sync()
		}
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("converting %s: %w", legacy, err)
		}
		if err := os.Remove(legacy); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("removing %s after converting it: %w", legacy, err)
		}
	}
	if opts.SyncInterval > 0 {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.syncLoop()
	}
	return s, nil
}

// fileEntry and fileState are the legacy JSON format.
type fileEntry struct {
	Agent  string `json:"agent"`
	Stream string `json:"stream"`
	Next   uint64 `json:"next"`
}

type fileState struct {
	Version int         `json:"version"`
	Streams []fileEntry `json:"streams"`
}

func (s *Store) mergeLegacy(path string) (bool, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading sequence numbers: %w", err)
	}
	var st fileState
	if err := json.Unmarshal(b, &st); err != nil {
		return false, fmt.Errorf("reading sequence numbers from %s: %w", path, err)
	}
	if st.Version != 1 {
		return false, fmt.Errorf("reading sequence numbers from %s: unknown version %d", path, st.Version)
	}
	for _, e := range st.Streams {
		if e.Next == 0 {
			return false, fmt.Errorf("reading sequence numbers from %s: agent %q stream %q: next is 0", path, e.Agent, e.Stream)
		}
		k := Key{e.Agent, e.Stream}
		s.next[k] = max(s.next[k], e.Next)
	}
	return true, nil
}

// encode is the payload: version byte, then per counter (sorted) agent
// (u16 length + bytes), stream (u16 length + bytes), next (u64).
func (s *Store) encode() []byte {
	keys := make([]Key, 0, len(s.next))
	for k := range s.next {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Agent != keys[j].Agent {
			return keys[i].Agent < keys[j].Agent
		}
		return keys[i].Stream < keys[j].Stream
	})
	b := append(s.buf[:0], stateVersion)
	for _, k := range keys {
		b = binary.BigEndian.AppendUint16(b, uint16(len(k.Agent))) //nolint:gosec // G115: ids are at most 255 bytes (envelope str8)
		b = append(b, k.Agent...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(k.Stream))) //nolint:gosec // G115: ids are at most 255 bytes (envelope str8)
		b = append(b, k.Stream...)
		b = binary.BigEndian.AppendUint64(b, s.next[k])
	}
	s.buf = b
	return b
}

func (s *Store) decode(b []byte) error {
	if len(b) == 0 || b[0] != stateVersion {
		return errors.New("unknown state version")
	}
	b = b[1:]
	str := func() (string, error) {
		if len(b) < 2 {
			return "", errors.New("truncated state")
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return "", errors.New("truncated state")
		}
		v := string(b[2 : 2+n])
		b = b[2+n:]
		return v, nil
	}
	for len(b) > 0 {
		agent, err := str()
		if err != nil {
			return err
		}
		stream, err := str()
		if err != nil {
			return err
		}
		if len(b) < 8 {
			return errors.New("truncated state")
		}
		n := binary.BigEndian.Uint64(b)
		b = b[8:]
		if n == 0 {
			return fmt.Errorf("agent %q stream %q: next is 0", agent, stream)
		}
		s.next[Key{agent, stream}] = n
	}
	return nil
}

// Reserve hands out n consecutive numbers for k and returns the first. The
// reservation is written (page cache) when Reserve returns; see the package
// comment for power loss. On error nothing is reserved and the counter is
// unchanged.
func (s *Store) Reserve(k Key, n int) (uint64, error) {
	if n <= 0 {
		return 0, fmt.Errorf("reserving sequence numbers: count %d is not positive", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errors.New("reserving sequence numbers: the store is closed")
	}
	first := s.next[k]
	if first == 0 {
		first = 1
	}
	if first > math.MaxUint64-uint64(n) {
		return 0, fmt.Errorf("reserving %d sequence numbers for agent %q stream %q: overflow", n, k.Agent, k.Stream)
	}
	s.next[k] = first + uint64(n)
	if err := s.file.Write(s.encode()); err != nil {
		s.next[k] = first // not written: not reserved
		if first == 1 {
			delete(s.next, k)
		}
		return 0, fmt.Errorf("reserving sequence numbers for agent %q stream %q: %w", k.Agent, k.Stream, err)
	}
	return first, nil
}

// Raise makes the next number of k at least next (a number found in the
// spool at start). It writes the counters when one changed.
func (s *Store) Raise(k Key, next uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("raising a sequence number: the store is closed")
	}
	old := s.next[k]
	if next <= max(old, 1) {
		return nil
	}
	s.next[k] = next
	if err := s.file.Write(s.encode()); err != nil {
		if old == 0 {
			delete(s.next, k)
		} else {
			s.next[k] = old
		}
		return fmt.Errorf("raising the sequence number of agent %q stream %q: %w", k.Agent, k.Stream, err)
	}
	return nil
}

// Next returns the number the next Reserve for k would return.
func (s *Store) Next(k Key) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.next[k]; n != 0 {
		return n
	}
	return 1
}

// Sync makes every reservation so far durable (fsync). The spool calls it
// before deleting a segment file.
func (s *Store) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("syncing sequence numbers: the store is closed")
	}
	if err := s.file.Sync(); err != nil {
		return fmt.Errorf("syncing sequence numbers: %w", err)
	}
	return nil
}

func (s *Store) syncLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			if !s.closed {
				// A failure is retried at the next tick; Sync and Close
				// report theirs.
				_ = s.file.Sync()
			}
			s.mu.Unlock()
		}
	}
}

// Close stops the background sync, syncs and closes the state file. Later
// calls do nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.file.Close()
	s.mu.Unlock()
	if s.stop != nil {
		close(s.stop)
		<-s.done
	}
	if err != nil {
		return fmt.Errorf("closing the sequence store: %w", err)
	}
	return nil
}
