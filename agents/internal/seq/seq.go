// Package seq hands out the envelope sequence numbers of the agent: one
// counter per (agent, stream), starting at 1, that survives restarts,
// SIGKILL and power loss (DESIGN.md, "Agent batch envelope": sequence
// numbers are per agent and per stream, monotonic across restarts). A
// number must never be handed out twice: the collector would drop the
// second batch as a replay, and its lines would be lost.
//
// Each counter has two values in a two-slot state file (package slotfile):
// next, the number the next Reserve returns, and limit, a bound reserved
// ahead of it. The rule is that every number handed out is below the
// limit on disk:
//
//   - Reserve moves next in memory and writes it in place (one pwrite, no
//     fsync). When next would pass limit, it first raises limit by Block
//     (default 4096) and fsyncs: about one fsync per Block numbers, not
//     one per batch.
//   - The file also holds the kernel's boot id. At Open, when it is the
//     boot id of the running kernel, the machine has not restarted since
//     the last write, which is then in the page cache even after a SIGKILL:
//     counting resumes at next, exactly. Otherwise the machine restarted
//     (power loss, crash, or a reboot) and the unsynced next may be stale:
//     counting resumes at limit, which was fsynced before any number below
//     it was handed out. A power loss therefore leaves a gap of at most
//     Block numbers per stream (the collector reports it as a gap), never a
//     reused number. Close sets limit to next and fsyncs, so that a clean
//     stop followed by a reboot leaves no gap.
//   - At start the agent also raises every counter past the numbers of
//     every envelope still present in the spool (Raise, RangeOf),
//     acknowledged or not; the spool calls Sync before it deletes a segment
//     (spool Options.BeforeRemove). Neither is needed for the rule above;
//     they keep counting exact when the state file is older than the spool
//     (restored from a backup, or written by an earlier version).
//
// Numbers do not depend on the clock: a clock jumping backwards changes
// nothing. The batcher calls Reserve before it appends the batch to the
// spool; a crash between the two leaves a gap of at most one batch per
// stream although no line was lost (the lines are read again under new
// numbers).
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
	"strings"
	"sync"
	"time"

	"github.com/csirt-toscana/platform/agents/internal/seq/slotfile"
)

// FileName is the state file (a slot file) in the directory given to Open.
const FileName = "sequences.dat"

// LegacyFileName is the JSON state file of earlier versions. Open merges it
// (the higher counter wins) and deletes it once FileName is on disk.
const LegacyFileName = "sequences.json"

// Payload versions (the first byte). Version 1 had next only; Open still
// reads it (its limit is its next).
const (
	stateVersion1 = 1
	stateVersion  = 2
)

// DefaultBlock is how many numbers Reserve reserves ahead on disk.
const DefaultBlock = 4096

// bootIDFile names the running kernel's boot (Linux).
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// CurrentBootID returns the running kernel's boot id, or "" when unknown
// (then every Open counts as after a restart: resuming at the limit).
func CurrentBootID() string {
	b, err := os.ReadFile(bootIDFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

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
	// SyncInterval, when positive, also fsyncs changed counters in the
	// background at this interval. Not needed for safety (see the package
	// comment); zero or negative: no background sync.
	SyncInterval time.Duration
	// Block is how many numbers are reserved ahead on disk with one fsync,
	// and the largest gap a power loss can leave per stream. Default
	// DefaultBlock.
	Block uint64
	// BootID overrides the running kernel's boot id (tests simulating a
	// restart). Default CurrentBootID().
	BootID string
}

// Store is the set of counters of one agent state directory. It is safe
// for concurrent use. Close it to stop the background sync.
type Store struct {
	path string
	opts Options

	mu     sync.Mutex
	file   *slotfile.File
	next   map[Key]uint64 // next number to hand out; absent means 1
	limit  map[Key]uint64 // every number handed out is below limit on disk
	boot   string         // boot id written with the state
	closed bool
	buf    []byte
	stop   chan struct{}
	done   chan struct{}
}

// Open loads the counters kept in dir (created if missing). A missing
// state file means every counter starts at 1; an unreadable or damaged one
// is an error, never a silent restart from 1 (that would reuse numbers).
func Open(dir string, opts Options) (*Store, error) {
	if opts.Block == 0 {
		opts.Block = DefaultBlock
	}
	if opts.BootID == "" {
		opts.BootID = CurrentBootID()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening sequence store: %w", err)
	}
	s := &Store{path: filepath.Join(dir, FileName), opts: opts, next: map[Key]uint64{}, limit: map[Key]uint64{}, boot: opts.BootID}
	f, payload, err := slotfile.Open(s.path, slotfile.Options{NoSync: opts.NoSync})
	if err != nil {
		return nil, fmt.Errorf("reading sequence numbers: %w (restore the state directory from a backup; deleting the file would make the agent reuse numbers)", err)
	}
	s.file = f
	if payload != nil {
		boot, err := s.decode(payload)
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("reading sequence numbers from %s: %w", s.path, err)
		}
		if boot == "" || boot != opts.BootID {
			// The machine restarted since the last write: the exact
			// counters may not have reached the disk; the limits did.
			for k, l := range s.limit {
				s.next[k] = max(s.next[k], l)
			}
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
		s.limit[k] = max(s.limit[k], s.next[k])
	}
	return true, nil
}

// encode is the payload: version byte, boot id (u16 length + bytes), then
// per counter (sorted) agent (u16 length + bytes), stream (u16 length +
// bytes), next (u64), limit (u64).
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
	b = binary.BigEndian.AppendUint16(b, uint16(min(len(s.boot), math.MaxUint16))) //nolint:gosec // G115: bounded just here
	b = append(b, s.boot[:min(len(s.boot), math.MaxUint16)]...)
	for _, k := range keys {
		b = binary.BigEndian.AppendUint16(b, uint16(len(k.Agent))) //nolint:gosec // G115: ids are at most 255 bytes (envelope str8)
		b = append(b, k.Agent...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(k.Stream))) //nolint:gosec // G115: ids are at most 255 bytes (envelope str8)
		b = append(b, k.Stream...)
		b = binary.BigEndian.AppendUint64(b, s.next[k])
		b = binary.BigEndian.AppendUint64(b, max(s.limit[k], s.next[k]))
	}
	s.buf = b
	return b
}

// decode reads a payload into the maps and returns its boot id.
func (s *Store) decode(b []byte) (string, error) {
	if len(b) == 0 || (b[0] != stateVersion && b[0] != stateVersion1) {
		return "", errors.New("unknown state version")
	}
	version := b[0]
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
	u64 := func() (uint64, error) {
		if len(b) < 8 {
			return 0, errors.New("truncated state")
		}
		v := binary.BigEndian.Uint64(b)
		b = b[8:]
		return v, nil
	}
	var boot string
	if version == stateVersion {
		var err error
		if boot, err = str(); err != nil {
			return "", err
		}
	}
	for len(b) > 0 {
		agent, err := str()
		if err != nil {
			return "", err
		}
		stream, err := str()
		if err != nil {
			return "", err
		}
		n, err := u64()
		if err != nil {
			return "", err
		}
		if n == 0 {
			return "", fmt.Errorf("agent %q stream %q: next is 0", agent, stream)
		}
		limit := n
		if version == stateVersion {
			if limit, err = u64(); err != nil {
				return "", err
			}
			if limit < n {
				return "", fmt.Errorf("agent %q stream %q: limit %d below next %d", agent, stream, limit, n)
			}
		}
		k := Key{agent, stream}
		s.next[k], s.limit[k] = n, limit
	}
	return boot, nil
}

// Reserve hands out n consecutive numbers for k and returns the first. The
// reservation is written (page cache) when Reserve returns, and every
// number handed out is below a limit already fsynced (see the package
// comment). On error nothing is reserved and the counter is unchanged.
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
	if first > math.MaxUint64-uint64(n)-s.opts.Block {
		return 0, fmt.Errorf("reserving %d sequence numbers for agent %q stream %q: overflow", n, k.Agent, k.Stream)
	}
	oldLimit, hadLimit := s.limit[k]
	s.next[k] = first + uint64(n)
	grow := s.next[k] > oldLimit
	if grow {
		s.limit[k] = s.next[k] + s.opts.Block
	}
	err := s.file.Write(s.encode())
	if err == nil && grow {
		err = s.file.Sync()
	}
	if err != nil {
		// Not written, or the new limit is not durable: not reserved.
		s.next[k] = first
		if first == 1 {
			delete(s.next, k)
		}
		if hadLimit {
			s.limit[k] = oldLimit
		} else {
			delete(s.limit, k)
		}
		return 0, fmt.Errorf("reserving sequence numbers for agent %q stream %q: %w", k.Agent, k.Stream, err)
	}
	return first, nil
}

// Raise makes the next number of k at least next (a number found in the
// spool at start), raising its limit with it. It writes the counters when
// one changed, and fsyncs when a limit moved.
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
	oldLimit, hadLimit := s.limit[k]
	s.next[k] = next
	grow := next > oldLimit
	if grow {
		s.limit[k] = next
	}
	err := s.file.Write(s.encode())
	if err == nil && grow {
		err = s.file.Sync()
	}
	if err != nil {
		if old == 0 {
			delete(s.next, k)
		} else {
			s.next[k] = old
		}
		if hadLimit {
			s.limit[k] = oldLimit
		} else {
			delete(s.limit, k)
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

// Close stops the background sync, lowers every limit to its counter
// (after a clean stop nothing needs skipping, even across a reboot), syncs
// and closes the state file. Later calls do nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var err error
	if len(s.next) > 0 {
		for k, n := range s.next {
			s.limit[k] = n
		}
		err = s.file.Write(s.encode())
	}
	if cerr := s.file.Close(); err == nil {
		err = cerr
	}
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
