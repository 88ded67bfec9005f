// Package seq hands out the envelope sequence numbers of the agent: one
// counter per (agent, stream), starting at 1, that survives restarts and
// crashes (DESIGN.md, "Agent batch envelope": sequence numbers are per
// agent and per stream, monotonic across restarts).
//
// Reserve persists the new high-water mark before it returns: the state
// file is written to a temporary file, fsynced, renamed over the old one,
// and the directory is fsynced. The batcher calls Reserve before it appends
// the batch that carries the numbers to the spool, so a number that reached
// the spool (and so Kafka) is never handed out again, whatever happens
// afterwards. Numbers do not depend on the clock: a clock jumping backwards
// changes nothing.
//
// The price of that order is a possible gap: a crash after Reserve and
// before the spool append loses the reserved numbers (the records are read
// again after the restart and get new ones). The collector then reports a
// gap of at most one batch per stream although no line was lost. A reused
// number would be worse: the collector would drop the batch as a replay.
package seq

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// FileName is the state file in the directory given to Open.
const FileName = "sequences.json"

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
}

// Store is the set of counters of one agent state directory. It is safe
// for concurrent use.
type Store struct {
	path string
	opts Options

	mu   sync.Mutex
	next map[Key]uint64 // next number to hand out; absent means 1
}

// fileEntry is one counter in the state file.
type fileEntry struct {
	Agent  string `json:"agent"`
	Stream string `json:"stream"`
	Next   uint64 `json:"next"`
}

type fileState struct {
	Version int         `json:"version"`
	Streams []fileEntry `json:"streams"`
}

// Open loads the counters kept in dir (created if missing). A missing
// state file means every counter starts at 1; an unreadable or damaged one
// is an error, never a silent restart from 1 (that would reuse numbers).
func Open(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening sequence store: %w", err)
	}
	s := &Store{path: filepath.Join(dir, FileName), opts: opts, next: map[Key]uint64{}}
	// Temporary files left by a crash in the middle of a write: the
	// rename never happened, so they hold nothing that was reserved.
	stale, err := filepath.Glob(s.path + ".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("opening sequence store: %w", err)
	}
	for _, p := range stale {
		if err := os.Remove(p); err != nil {
			return nil, fmt.Errorf("removing stale %s: %w", p, err)
		}
	}
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("reading sequence numbers: %w", err)
	}
	var st fileState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("reading sequence numbers from %s: %w", s.path, err)
	}
	if st.Version != 1 {
		return nil, fmt.Errorf("reading sequence numbers from %s: unknown version %d", s.path, st.Version)
	}
	for _, e := range st.Streams {
		if e.Next == 0 {
			return nil, fmt.Errorf("reading sequence numbers from %s: agent %q stream %q: next is 0", s.path, e.Agent, e.Stream)
		}
		s.next[Key{e.Agent, e.Stream}] = e.Next
	}
	return s, nil
}

// Reserve hands out n consecutive numbers for k and returns the first. The
// reservation is on disk when Reserve returns. On error nothing is
// reserved and the counter is unchanged.
func (s *Store) Reserve(k Key, n int) (uint64, error) {
	if n <= 0 {
		return 0, fmt.Errorf("reserving sequence numbers: count %d is not positive", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.next[k]
	if first == 0 {
		first = 1
	}
	if first > math.MaxUint64-uint64(n) {
		return 0, fmt.Errorf("reserving %d sequence numbers for agent %q stream %q: overflow", n, k.Agent, k.Stream)
	}
	s.next[k] = first + uint64(n)
	if err := s.writeLocked(); err != nil {
		s.next[k] = first // not on disk: not reserved
		if first == 1 {
			delete(s.next, k)
		}
		return 0, fmt.Errorf("reserving sequence numbers for agent %q stream %q: %w", k.Agent, k.Stream, err)
	}
	return first, nil
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

func (s *Store) writeLocked() error {
	st := fileState{Version: 1, Streams: make([]fileEntry, 0, len(s.next))}
	for k, n := range s.next {
		st.Streams = append(st.Streams, fileEntry{Agent: k.Agent, Stream: k.Stream, Next: n})
	}
	sort.Slice(st.Streams, func(i, j int) bool {
		a, b := st.Streams[i], st.Streams[j]
		if a.Agent != b.Agent {
			return a.Agent < b.Agent
		}
		return a.Stream < b.Stream
	})
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding sequence numbers: %w", err)
	}
	return writeFileAtomic(s.path, b, !s.opts.NoSync)
}

// writeFileAtomic replaces path with b: temporary file, fsync, rename,
// fsync of the directory.
func writeFileAtomic(path string, b []byte, sync bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", tmp, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s: %w", tmp, err)
	}
	ok = true
	if !sync {
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
