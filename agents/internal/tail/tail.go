// Package tail is the agent's file source: it follows the files matching a
// set of globs, line by line, and survives rotation.
//
//   - Files are identified by device and inode, plus a fingerprint (SHA-256
//     of the first FingerprintBytes bytes) so that a reused inode is not
//     mistaken for the file it replaced.
//   - Rotation by rename: the renamed file is read to its end (it stays open
//     by inode), the new file at the path is picked up from its start.
//   - Rotation by copytruncate: a file that shrinks, or whose first bytes
//     change, is read again from offset 0. Every chunk is checked against
//     the fingerprint after it is read, so bytes of the new content are
//     never taken for the old. When the copy matches a glob too, it is
//     recognised by its fingerprint (that of the file being followed, or
//     of a checkpointed file when the rotation happened while the agent
//     was stopped) and read from where the original stopped: the lines
//     written just before the truncation are not lost, and not read twice.
//   - While lines keep coming the files are read every PollInterval (70 ms
//     by default) on a ticker. A quiet source waits for inotify to report a
//     change in a watched directory (then reads at most PollInterval after
//     its last round) and checks every RescanInterval (1 s) without events;
//     without inotify the files are polled every PollInterval. New files
//     matching a glob are picked up at the next check.
//   - A line longer than MaxLineBytes is cut: its first MaxLineBytes bytes
//     are emitted with envelope.FlagTruncated and the rest is skipped in
//     chunks, never held in memory. Invalid UTF-8 is kept as bytes and
//     flagged with envelope.FlagInvalidUTF8. A final "\r" is removed with
//     the "\n".
//   - Offsets are checkpointed only when the caller acknowledges a cursor
//     (Ack), which happens once the batch holding the lines is in the
//     spool. The checkpoint is a two-slot file written in place (package
//     slotfile: one pwrite per Ack, no temporary file, no rename, no fsync;
//     an fsync about once a second from Run). After a restart or a SIGKILL
//     reading resumes at the acknowledged offset: lines emitted but not
//     acknowledged are read again, nothing else. After a power loss the
//     checkpoint may be up to about a second old: those lines are read
//     again (duplicates, never loss). With AckSpooled the checkpoint also
//     names the spool entry holding the lines; the spool is synced before
//     the checkpoint is, and at start a slot whose entry a power loss took
//     is passed over for the older, synced one (docs/agent.md, "Power
//     loss").
//   - A file that vanishes, cannot be opened, or is replaced by a directory
//     gets an error status and a log line; the other files keep going and
//     the path is retried at every poll.
package tail

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/agents/internal/seq/slotfile"
	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/internal/envelope"
)

// Kind is the registry name of the file source.
const Kind = "file"

func init() { source.Register(Kind, New) }

var _ source.Source = (*FileSource)(nil)

// Config configures one file source. YAML keys are the snake_case names.
type Config struct {
	// Paths are globs (filepath.Match syntax) of the files to follow.
	Paths []string `yaml:"paths"`
	// Exclude are globs of paths to leave out (e.g. "*.gz").
	Exclude []string `yaml:"exclude"`
	// Stream is the envelope stream id. Default "file:<source name>".
	Stream string `yaml:"stream"`
	// MaxLineBytes is the line cap. Default 64 KiB; at most
	// envelope.MaxRecordSize.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// PollInterval is how often globs and files are checked while they
	// change, at most: a change seen by inotify is read at once when the
	// last check is this old, else when it becomes so. Without inotify
	// (NoInotify, other systems, or inotify failing) it is the polling
	// period. Default 50 ms, so that a line reaches Kafka within about
	// 100 ms.
	PollInterval time.Duration `yaml:"poll_interval"`
	// RescanInterval is how often, with inotify, globs and files are
	// checked with no event: files on filesystems without inotify events
	// (network mounts), directories that appear later. Default 1 s; at
	// least PollInterval.
	RescanInterval time.Duration `yaml:"rescan_interval"`
	// NoInotify turns inotify off: the files are polled every PollInterval.
	NoInotify bool `yaml:"no_inotify"`
	// StartAt says where to start in a file found at the first scan that
	// has no checkpoint: "beginning" (default) or "end". Files appearing
	// later are always read from their beginning.
	StartAt string `yaml:"start_at"`
	// CloseAfter is how long a renamed-away or removed file stays open
	// with no new data before it is closed. Default 5 s.
	CloseAfter time.Duration `yaml:"close_after"`
	// FingerprintBytes is how many leading bytes identify a file's
	// content. Default 1024.
	FingerprintBytes int `yaml:"fingerprint_bytes"`
}

func (c *Config) defaults(name string) error {
	if len(c.Paths) == 0 {
		return errors.New("paths: at least one glob is required")
	}
	for _, p := range append(append([]string(nil), c.Paths...), c.Exclude...) {
		if _, err := filepath.Match(p, ""); err != nil {
			return fmt.Errorf("paths: bad glob %q: %w", p, err)
		}
	}
	if c.Stream == "" {
		c.Stream = "file:" + name
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = 64 << 10
	}
	if c.MaxLineBytes < 0 || c.MaxLineBytes > envelope.MaxRecordSize {
		return fmt.Errorf("max_line_bytes: %d is outside 1..%d", c.MaxLineBytes, envelope.MaxRecordSize)
	}
	if c.PollInterval == 0 {
		c.PollInterval = 70 * time.Millisecond
	}
	if c.PollInterval < 0 {
		return errors.New("poll_interval: must be positive")
	}
	if c.RescanInterval == 0 {
		c.RescanInterval = time.Second
	}
	if c.RescanInterval < 0 {
		return errors.New("rescan_interval: must be positive")
	}
	c.RescanInterval = max(c.RescanInterval, c.PollInterval)
	switch c.StartAt {
	case "":
		c.StartAt = "beginning"
	case "beginning", "end":
	default:
		return fmt.Errorf("start_at: %q is not beginning or end", c.StartAt)
	}
	if c.CloseAfter == 0 {
		c.CloseAfter = 5 * time.Second
	}
	if c.FingerprintBytes == 0 {
		c.FingerprintBytes = 1024
	}
	if c.FingerprintBytes < 16 || c.FingerprintBytes > 1<<20 {
		return fmt.Errorf("fingerprint_bytes: %d is outside 16..1048576", c.FingerprintBytes)
	}
	return nil
}

// fileKey identifies a file on this host.
type fileKey struct{ Dev, Ino uint64 }

func keyOf(fi os.FileInfo) (fileKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{Dev: uint64(st.Dev), Ino: st.Ino}, true //nolint:unconvert // Dev is not uint64 everywhere
}

type fingerprint struct {
	n   int
	sum [32]byte
}

// tracked is one open file. Fields without a comment are owned by Run.
type tracked struct {
	id   uint64 // cursor origin; a new id after a truncation
	key  fileKey
	path string // guarded by FileSource.mu
	f    *os.File
	fp   fingerprint // guarded by FileSource.mu
	head []byte      // its first bytes (at most FingerprintBytes) when found; guarded by FileSource.mu

	next     int64 // offset of the next byte to read
	lineOff  int64 // offset where the pending line starts
	pend     []byte
	over     bool // the pending line passed the cap: skipping its rest
	lastSize int64
	lastMod  time.Time
	idleFrom time.Time // last time data was read (for CloseAfter)

	gone  bool         // path no longer leads here; guarded by mu
	read  int64        // offset emitted up to; guarded by mu
	acked int64        // guarded by mu
	state source.State // guarded by mu
	since time.Time    // guarded by mu
}

type pathStatus struct {
	state source.State
	err   string
	since time.Time
}

// FileSource follows files. Build it with New or through the registry.
type FileSource struct {
	name string
	cfg  Config
	log  logrus.FieldLogger
	now  func() time.Time
	ckpt string // checkpoint file path

	// ckptSyncEvery is how often Run fsyncs a changed checkpoint.
	ckptSyncEvery time.Duration

	chunk []byte // read buffer, owned by Run
	fpBuf []byte // fingerprint buffer, owned by Run

	onRound func() // NotifyRounds; set before Run
	emitted int    // records sent in the current round, owned by Run

	mu      sync.Mutex
	files   map[fileKey]*tracked // open files
	byID    map[uint64]*tracked  // cursor origin -> file, open or closed
	nextID  uint64
	saved   map[fileKey]ckptEntry // checkpoint as loaded at start
	savedFP map[string]ckptEntry  // the same, by full fingerprint
	paths   map[string]pathStatus // problems with configured paths
	// young holds new files too short to be told apart from a copy that
	// copytruncate is still making, with when they were first seen.
	young    map[fileKey]time.Time
	ran      bool
	ckptErrs int
	ckptF    *slotfile.File // guarded by mu; nil after Close
	legacy   string         // JSON checkpoint of earlier versions, removed after the first write
	spool    source.SpoolDeps
	ref      source.SpoolRef // spool entry of the last AckSpooled; zero after an Ack; guarded by mu
}

// New builds a file source from its configuration (the registry factory).
func New(name string, decode func(any) error, deps source.Deps) (source.Source, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return NewFileSource(name, cfg, deps)
}

// NewFileSource builds a file source.
func NewFileSource(name string, cfg Config, deps source.Deps) (*FileSource, error) {
	if err := cfg.defaults(name); err != nil {
		return nil, fmt.Errorf("file source %q: %w", name, err)
	}
	deps = deps.WithDefaults()
	if deps.StateDir == "" {
		return nil, fmt.Errorf("file source %q: a state directory is required for checkpoints", name)
	}
	if err := os.MkdirAll(deps.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("file source %q: creating state directory: %w", name, err)
	}
	s := &FileSource{
		name: name,
		cfg:  cfg,
		log:  deps.Logger.WithFields(logrus.Fields{"source": name, "kind": Kind}),
		now:  deps.Now,
		ckpt: filepath.Join(deps.StateDir, "tail-"+safeName(name)+".ckpt"),
		// legacy: the JSON file of earlier versions.
		legacy:        filepath.Join(deps.StateDir, "tail-"+safeName(name)+".json"),
		ckptSyncEvery: time.Second,
		chunk:         make([]byte, 64<<10),
		fpBuf:         make([]byte, cfg.FingerprintBytes),
		files:         map[fileKey]*tracked{},
		byID:          map[uint64]*tracked{},
		paths:         map[string]pathStatus{},
		spool:         deps.Spool,
	}
	f, saved, err := openCheckpoint(s.ckpt, s.legacy, deps.Spool.Covers)
	if errors.Is(err, slotfile.ErrRejected) {
		// Both slots name spool entries a power loss took: their lines
		// are neither in the spool nor (maybe) in Kafka. Read again.
		s.log.WithError(err).Warn("checkpoint refers to batches lost from the spool in a power loss; files will be read from their beginning (duplicates, no loss)")
		saved, err = map[fileKey]ckptEntry{}, nil
	}
	if err != nil {
		// A damaged checkpoint must not stop the agent: re-read (duplicates,
		// not loss) and say so.
		s.log.WithError(err).Error("checkpoint is unreadable; files will be read from their beginning")
		saved = nil
		if f == nil {
			if rerr := os.Remove(s.ckpt); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				return nil, fmt.Errorf("file source %q: removing the damaged checkpoint %s: %w", name, s.ckpt, rerr)
			}
			if f, _, err = slotfile.Open(s.ckpt, slotfile.Options{}); err != nil {
				return nil, fmt.Errorf("file source %q: %w", name, err)
			}
		}
	}
	s.ckptF = f
	s.saved = saved
	s.savedFP = map[string]ckptEntry{}
	s.young = map[fileKey]time.Time{}
	for _, e := range saved {
		if e.FPLen == cfg.FingerprintBytes {
			s.savedFP[e.FP] = e
		}
	}
	return s, nil
}

func safeName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 {
			return '_'
		}
		return r
	}, s)
	if s == "" || s == "." || s == ".." {
		s = "_" + s
	}
	return s
}

// NotifyRounds sets the function Run calls after a poll round that sent
// records, once nothing more is waiting (source.RoundNotifier). Call it
// before Run.
func (s *FileSource) NotifyRounds(done func()) { s.onRound = done }

// Run follows the files until ctx ends.
func (s *FileSource) Run(ctx context.Context, out chan<- source.Record) error {
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		return errors.New("file source: Run called twice")
	}
	s.ran = true
	s.mu.Unlock()
	defer s.closeAll()
	defer s.syncCheckpoint()
	first := true
	w := s.startWatcher()
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// While lines keep coming rounds follow a ticker: it stays armed
	// between rounds, where a timer set anew after each round is earlier
	// than the runtime's network poller expects and wakes that thread to
	// re-arm its sleep, a wake-up per round for nothing.
	ticker := time.NewTicker(s.cfg.PollInterval)
	ticker.Stop()
	defer ticker.Stop()
	ticking := false
	lastSync := s.now()
	var lastRound, lastWatch time.Time
	for {
		if now := s.now(); now.Sub(lastSync) >= s.ckptSyncEvery || now.Before(lastSync) {
			s.syncCheckpoint()
			lastSync = now
		}
		lastRound = time.Now()
		if w != nil {
			select {
			case <-w.Dead():
				s.log.WithError(w.Err()).Warn("inotify stopped working: polling the files every poll_interval")
				w.Close()
				w = nil
			default:
				w.Drain() // this round covers what happened so far
			}
		}
		if w != nil && (lastRound.Sub(lastWatch) >= s.cfg.RescanInterval || lastRound.Before(lastWatch)) {
			s.watchDirs(w)
			lastWatch = lastRound
		}
		s.scan(first)
		first = false
		more, err := s.readAll(ctx, out)
		if err != nil {
			return nil //nolint:nilerr // ctx ended while sending: a normal stop
		}
		if more {
			continue // a file has more than one round's worth: no sleep
		}
		hot := s.emitted > 0
		if hot && s.onRound != nil {
			s.onRound()
		}
		s.emitted = 0
		// While lines keep coming the next round is PollInterval after
		// this one, on the ticker alone; so without inotify, and for files
		// being rotated or copied. With inotify a quiet source waits for
		// the next event (but reads not before PollInterval since this
		// round) or RescanInterval.
		if w == nil || hot || s.settling() {
			if !ticking {
				ticker.Reset(s.cfg.PollInterval)
				ticking = true
			}
			select {
			case <-ctx.Done():
				return nil
			case <-ticker.C:
			}
			continue
		}
		if ticking {
			ticker.Stop()
			ticking = false
		}
		w.Arm()
		timer.Reset(s.cfg.RescanInterval - time.Since(lastRound))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-w.C():
			timer.Stop()
			if d := s.cfg.PollInterval - time.Since(lastRound); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return nil
				case <-timer.C:
				}
			}
		}
	}
}

// startWatcher returns an inotify watcher, or nil when the source polls.
func (s *FileSource) startWatcher() *watcher {
	if s.cfg.NoInotify {
		return nil
	}
	w, err := newWatcher()
	if err != nil {
		s.log.WithError(err).Warn("inotify is not available: polling the files every poll_interval")
		return nil
	}
	return w
}

// watchDirs (re)watches the directories of the configured paths and of
// the open files. A directory that does not exist (yet) is tried again at
// the next rescan; meanwhile the rescans find its files.
func (s *FileSource) watchDirs(w *watcher) {
	dirs := map[string]bool{}
	for _, p := range s.cfg.Paths {
		if d := filepath.Dir(p); !hasMeta(d) {
			dirs[d] = true
		}
	}
	s.mu.Lock()
	for _, t := range s.files {
		dirs[filepath.Dir(t.path)] = true
	}
	s.mu.Unlock()
	for d := range dirs {
		if err := w.add(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.WithError(err).Debug("cannot watch a directory; it is rescanned every rescan_interval")
		}
	}
}

// settling reports files that need a look every PollInterval whatever
// inotify says: renamed-away files being drained and closed, new files
// that may be a copy in progress.
func (s *FileSource) settling() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.young) > 0 {
		return true
	}
	for _, t := range s.files {
		if t.gone {
			return true
		}
	}
	return false
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

func (s *FileSource) excluded(p string) bool {
	for _, ex := range s.cfg.Exclude {
		if ok, _ := filepath.Match(ex, p); ok {
			return true
		}
		if ok, _ := filepath.Match(ex, filepath.Base(p)); ok {
			return true
		}
	}
	return false
}

// setPath records a path's problem (or clears it with state "") and logs
// each change once.
func (s *FileSource) setPath(path string, state source.State, err string) {
	s.mu.Lock()
	old, had := s.paths[path]
	if state == "" {
		delete(s.paths, path)
	} else if !had || old.state != state || old.err != err {
		s.paths[path] = pathStatus{state: state, err: err, since: s.now()}
	}
	s.mu.Unlock()
	switch {
	case state == "" && had && old.state == source.StateError:
		s.log.WithField("path", path).Info("file is readable again")
	case state == source.StateError && (!had || old.err != err):
		s.log.WithFields(logrus.Fields{"path": path, "problem": err}).Error("cannot follow file; retrying")
	case state == source.StateWaiting && !had:
		s.log.WithField("path", path).Info("file does not exist yet; waiting for it")
	}
}

// scan matches the globs, opens new files and marks vanished ones.
func (s *FileSource) scan(first bool) {
	seen := map[fileKey]bool{}
	statted := map[fileKey]bool{}
	done := map[string]bool{}
	for _, pattern := range s.cfg.Paths {
		matches, _ := filepath.Glob(pattern) // patterns were validated
		if len(matches) == 0 && !hasMeta(pattern) {
			s.setPath(pattern, source.StateWaiting, "no such file")
		}
		for _, p := range matches {
			if done[p] || s.excluded(p) {
				continue
			}
			done[p] = true
			s.discover(p, first, seen, statted)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if first {
		// Checkpointed files that no longer exist are forgotten; those
		// that exist but cannot be opened yet keep their place.
		for k, e := range s.saved {
			if !statted[k] {
				s.log.WithField("path", e.Path).Info("checkpointed file is gone; forgetting its offset")
				delete(s.saved, k)
			}
		}
	}
	for k, t := range s.files {
		if !seen[k] && !t.gone {
			t.gone = true
			t.state, t.since = source.StateDraining, s.now()
			t.idleFrom = s.now()
			s.log.WithFields(logrus.Fields{"path": t.path}).Info("file was renamed away or removed; reading what is left")
		}
	}
	for k := range s.young {
		if !statted[k] {
			delete(s.young, k)
		}
	}
	// Forget configured paths that no longer exist and were errors.
	for p := range s.paths {
		if !done[p] && hasMeta(p) {
			continue
		}
		if !done[p] && s.paths[p].state == source.StateError {
			if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
				delete(s.paths, p)
			}
		}
	}
}

func (s *FileSource) discover(p string, first bool, seen, statted map[fileKey]bool) {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) { // vanished between glob and stat
			return
		}
		s.setPath(p, source.StateError, err.Error())
		return
	}
	if fi.IsDir() {
		s.setPath(p, source.StateError, "is a directory, not a log file")
		return
	}
	if !fi.Mode().IsRegular() {
		s.setPath(p, source.StateError, "is not a regular file ("+fi.Mode().Type().String()+")")
		return
	}
	key, ok := keyOf(fi)
	if !ok {
		s.setPath(p, source.StateError, "cannot read its inode")
		return
	}
	statted[key] = true
	s.mu.Lock()
	t, known := s.files[key]
	if known {
		seen[key] = true
		if t.path != p && !t.gone {
			// renamed to another matching name: keep following by inode
			t.path = p
		} else if t.gone {
			t.gone, t.path, t.state, t.since = false, p, source.StateReading, s.now()
		}
	}
	s.mu.Unlock()
	if known {
		s.setPath(p, "", "")
		return
	}
	f, err := os.Open(p)
	if err != nil {
		s.setPath(p, source.StateError, err.Error())
		return
	}
	fi, err = f.Stat()
	if err != nil {
		_ = f.Close()
		s.setPath(p, source.StateError, err.Error())
		return
	}
	if k2, _ := keyOf(fi); k2 != key { // replaced between stat and open: next poll
		_ = f.Close()
		return
	}
	seen[key] = true
	s.setPath(p, "", "")
	fp, err := s.fingerprint(f, fi.Size())
	if err != nil {
		_ = f.Close()
		s.setPath(p, source.StateError, err.Error())
		return
	}
	start := int64(0)
	how := "new file, reading from its beginning"
	s.mu.Lock()
	if c, ok := s.saved[key]; ok {
		switch {
		case !c.matches(f, fi.Size()):
			how = "inode reused by another file (fingerprint differs), reading from its beginning"
		case c.Offset > fi.Size():
			how = "file shrank while the agent was stopped (copytruncate), reading from its beginning"
		default:
			start = c.Offset
			how = "resuming at the checkpoint"
		}
		delete(s.saved, key)
	} else if orig := s.copyOf(fp); orig != nil {
		// logrotate's copytruncate: this is the copy of a file being
		// followed. Read only what was not read from the original: the
		// lines written between the last read and the truncation.
		if fi.Size() < orig.lineOff {
			// Still being copied: look again at the next poll.
			s.mu.Unlock()
			_ = f.Close()
			delete(seen, key)
			return
		}
		start = orig.lineOff
		how = "copy of " + orig.path + " (copytruncate rotation), reading what the original had not yet given"
	} else if c, ok := s.savedFP[hex.EncodeToString(fp.sum[:])]; ok && fp.n == s.cfg.FingerprintBytes {
		// A copy, made while the agent was stopped, of a checkpointed
		// file (copytruncate while stopped): continue where that file
		// was acknowledged.
		if fi.Size() < c.Offset {
			s.mu.Unlock() // still being copied: look again at the next poll
			_ = f.Close()
			delete(seen, key)
			return
		}
		start = c.Offset
		how = "copy of checkpointed " + c.Path + " (copytruncate while stopped), resuming at its checkpoint"
		delete(s.savedFP, c.FP)
	} else if s.maybeCopyInProgress(key, f, fp.n, first) {
		// Too short to tell from a copy copytruncate is still making
		// (its bytes so far begin a followed file): look again at the
		// next poll, for at most youngWait.
		s.mu.Unlock()
		_ = f.Close()
		delete(seen, key)
		return
	} else if first && s.cfg.StartAt == "end" {
		start = fi.Size()
		how = "start_at end: reading new lines only"
	}
	delete(s.young, key)
	head := make([]byte, fp.n)
	if _, err := f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		head = nil
	}
	s.nextID++
	t = &tracked{
		id: s.nextID, key: key, path: p, f: f, fp: fp, head: head,
		next: start, lineOff: start, read: start, acked: start,
		lastSize: fi.Size(), lastMod: fi.ModTime(), idleFrom: s.now(),
		state: source.StateReading, since: s.now(),
	}
	s.files[key] = t
	s.byID[t.id] = t
	s.mu.Unlock()
	s.log.WithFields(logrus.Fields{"path": p, "offset": start, "size": fi.Size()}).Info("following file: " + how)
}

// copyOf returns the open file whose full fingerprint equals fp. s.mu is
// held. Short fingerprints never match: identical small files would be
// taken for copies, and reading twice is better than skipping.
// youngWait bounds how long a short new file waits to be told apart from a
// copy in progress.
const youngWait = 5 * time.Second

// maybeCopyInProgress reports whether a file found after the first scan,
// shorter than a fingerprint, could still be the copy that logrotate's
// copytruncate is making of a followed file: its bytes so far are the
// beginning of that file (an empty file begins every file). Such a file is
// looked at again at the next poll until it diverges, reaches a full
// fingerprint (then copyOf decides) or has waited youngWait. Called with
// s.mu held.
func (s *FileSource) maybeCopyInProgress(key fileKey, f *os.File, n int, first bool) bool {
	if first || n >= s.cfg.FingerprintBytes {
		return false
	}
	now := s.now()
	since, ok := s.young[key]
	if !ok {
		s.young[key] = now
		since = now
	}
	if now.Sub(since) >= youngWait || now.Before(since) {
		return false
	}
	head := make([]byte, n)
	if _, err := f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	for _, t := range s.files {
		if len(t.head) >= n && bytes.Equal(t.head[:n], head) && t.fp.n > n {
			return true
		}
	}
	return false
}

func (s *FileSource) copyOf(fp fingerprint) *tracked {
	if fp.n < s.cfg.FingerprintBytes {
		return nil
	}
	for _, t := range s.files {
		if t.fp == fp {
			return t
		}
	}
	return nil
}

// fingerprint hashes the first min(size, FingerprintBytes) bytes.
func (s *FileSource) fingerprint(f *os.File, size int64) (fingerprint, error) {
	n := int(min(size, int64(s.cfg.FingerprintBytes)))
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return fingerprint{}, fmt.Errorf("reading the first bytes: %w", err)
	}
	return fingerprint{n: n, sum: sha256.Sum256(b)}, nil
}

// readAll reads every open file once; more reports that some file has
// data left. It returns ctx's error when ctx ends while sending.
func (s *FileSource) readAll(ctx context.Context, out chan<- source.Record) (more bool, err error) {
	s.mu.Lock()
	files := make([]*tracked, 0, len(s.files))
	for _, t := range s.files {
		files = append(files, t)
	}
	s.mu.Unlock()
	sort.Slice(files, func(i, j int) bool { return files[i].id < files[j].id })
	for _, t := range files {
		m, err := s.readFile(ctx, t, out)
		if err != nil {
			return false, err
		}
		more = more || m
	}
	return more, nil
}

// maxRoundBytes bounds what one file may read per round, for fairness.
const maxRoundBytes = 8 << 20

func (s *FileSource) readFile(ctx context.Context, t *tracked, out chan<- source.Record) (bool, error) {
	fi, err := t.f.Stat()
	if err != nil {
		s.log.WithError(err).WithField("path", t.path).Error("stat of an open file failed")
		return false, nil
	}
	size := fi.Size()
	if size != t.lastSize || !fi.ModTime().Equal(t.lastMod) {
		// A file that grew is checked by the first chunk read below (its
		// first bytes are compared after every chunk); one that did not
		// grow, or whose fingerprint is still short, is checked now.
		s.mu.Lock()
		fpShort := t.fp.n < s.cfg.FingerprintBytes
		s.mu.Unlock()
		if size <= t.next || fpShort {
			if _, err := s.checkTruncation(t, size); err != nil {
				s.log.WithError(err).WithField("path", t.path).Error("checking for truncation failed")
			}
		}
		t.lastSize, t.lastMod = size, fi.ModTime()
	}
	rechecked := false
	var round int64
	for t.next < size && round < maxRoundBytes {
		want := min(int64(len(s.chunk)), size-t.next)
		n, err := t.f.ReadAt(s.chunk[:want], t.next)
		if n == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				s.log.WithError(err).WithField("path", t.path).Error("reading file failed")
			}
			break
		}
		// The file may have been truncated and rewritten since the stat
		// (copytruncate): only a chunk read while the first bytes were
		// still the fingerprinted ones is the old content. Otherwise
		// leave it; the next poll sees the truncation, and the lines not
		// read are in the copy, which starts at t.lineOff.
		if same, err := s.sameStart(t); err != nil || !same {
			if err == nil && !rechecked {
				// Truncated and rewritten past the offset read: start
				// again at 0 now rather than at the next round.
				rechecked = true
				if truncated, err := s.checkTruncation(t, size); err == nil && truncated {
					continue
				}
			}
			t.lastSize = -1 // force the truncation check
			break
		}
		round += int64(n)
		if err := s.consume(ctx, t, s.chunk[:n], out); err != nil {
			return false, err
		}
		if int64(n) < want {
			break // short read: the file shrank
		}
	}
	now := s.now()
	if round > 0 {
		t.idleFrom = now
	}
	s.mu.Lock()
	gone := t.gone
	s.mu.Unlock()
	if gone && t.next >= size && now.Sub(t.idleFrom) >= s.cfg.CloseAfter {
		// The last line of a rotated file may lack its newline: emit it.
		if len(t.pend) > 0 || t.over {
			if err := s.emit(ctx, t, t.next, out); err != nil {
				return false, err
			}
		}
		s.close(t)
	}
	return t.next < size, nil
}

// sameStart reports whether the file still starts with its fingerprinted
// bytes.
func (s *FileSource) sameStart(t *tracked) (bool, error) {
	s.mu.Lock()
	fp := t.fp
	s.mu.Unlock()
	if fp.n == 0 {
		return true, nil
	}
	b := s.fpBuf[:fp.n]
	if n, err := t.f.ReadAt(b, 0); n < fp.n {
		return false, err
	}
	return sha256.Sum256(b) == fp.sum, nil
}

// checkTruncation restarts a file at 0 when it shrank below what was read
// or its first bytes changed (copytruncate), and reports whether it did.
func (s *FileSource) checkTruncation(t *tracked, size int64) (bool, error) {
	s.mu.Lock()
	fp := t.fp
	s.mu.Unlock()
	truncated := size < t.next
	if !truncated && fp.n > 0 && size >= int64(fp.n) {
		b := s.fpBuf[:fp.n]
		if _, err := t.f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		truncated = sha256.Sum256(b) != fp.sum
	}
	if truncated {
		s.log.WithFields(logrus.Fields{"path": t.path, "offset": t.next, "size": size}).
			Warn("file was truncated (copytruncate rotation); reading it again from the beginning")
		t.next, t.lineOff, t.pend, t.over = 0, 0, t.pend[:0], false
	}
	if truncated || (fp.n < s.cfg.FingerprintBytes && size > int64(fp.n)) {
		nfp, err := s.fingerprint(t.f, size)
		if err != nil {
			return truncated, err
		}
		s.mu.Lock()
		t.fp = nfp
		if truncated {
			// Acks of the old content are stale from now on.
			delete(s.byID, t.id)
			s.nextID++
			t.id = s.nextID
			s.byID[t.id] = t
			t.read, t.acked = 0, 0
		}
		s.mu.Unlock()
	}
	return truncated, nil
}

// consume splits a chunk read at t.next into lines.
func (s *FileSource) consume(ctx context.Context, t *tracked, b []byte, out chan<- source.Record) error {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		seg := b
		if i >= 0 {
			seg = b[:i]
		}
		if !t.over {
			room := s.cfg.MaxLineBytes - len(t.pend)
			if len(seg) > room {
				t.pend = append(t.pend, seg[:room]...)
				t.over = true
			} else {
				t.pend = append(t.pend, seg...)
			}
		}
		if i < 0 {
			t.next += int64(len(b))
			return nil
		}
		t.next += int64(i + 1)
		b = b[i+1:]
		if err := s.emit(ctx, t, t.next, out); err != nil {
			return err
		}
	}
	return nil
}

// emit sends the pending line, which ends at offset end.
func (s *FileSource) emit(ctx context.Context, t *tracked, end int64, out chan<- source.Record) error {
	line := t.pend
	if !t.over && len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	var flags envelope.Flags
	if t.over {
		flags |= envelope.FlagTruncated
	}
	if !utf8.Valid(line) {
		flags |= envelope.FlagInvalidUTF8
	}
	rec := source.Record{
		Stream: s.cfg.Stream,
		Origin: t.path,
		Time:   s.now(),
		Kind:   envelope.KindRawLine,
		Flags:  flags,
		Data:   append([]byte(nil), line...),
		Cursor: source.Cursor{Origin: t.id, Offset: end},
	}
	if t.over {
		s.log.WithFields(logrus.Fields{"path": t.path, "offset": t.lineOff, "length": end - t.lineOff, "kept": len(line)}).
			Warn("line longer than max_line_bytes: truncated")
	}
	t.pend, t.over, t.lineOff = t.pend[:0], false, end
	if cap(t.pend) > 4*4096 && s.cfg.MaxLineBytes > 4*4096 {
		t.pend = nil // do not keep a huge buffer for a rare long line
	}
	select {
	case out <- rec:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.emitted++
	s.mu.Lock()
	t.read = end
	s.mu.Unlock()
	return nil
}

func (s *FileSource) close(t *tracked) {
	_ = t.f.Close()
	s.mu.Lock()
	delete(s.files, t.key)
	// Keep it in byID until its lines are acknowledged.
	if t.acked >= t.read {
		delete(s.byID, t.id)
	}
	s.mu.Unlock()
	s.log.WithFields(logrus.Fields{"path": t.path}).Info("closed a rotated or removed file after reading it to the end")
}

func (s *FileSource) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.files {
		_ = t.f.Close()
	}
}

// Close makes the checkpoint durable and releases it. The agent calls it
// once Run returned and the last Ack was made: two sources must not hold
// the same checkpoint file open (see package slotfile). Acks after Close
// fail.
func (s *FileSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ckptF == nil {
		return nil
	}
	err := s.spoolSyncLocked()
	if cerr := s.ckptF.Close(); err == nil {
		err = cerr
	}
	s.ckptF = nil
	if err != nil {
		return fmt.Errorf("file source %q: closing the checkpoint: %w", s.name, err)
	}
	return nil
}

// spoolSyncLocked makes the spool entries the checkpoint refers to durable
// before the checkpoint itself is fsynced. s.mu is held, so no Ack comes
// in between.
func (s *FileSource) spoolSyncLocked() error {
	if s.spool.Sync == nil || !s.ckptF.Dirty() {
		return nil
	}
	if err := s.spool.Sync(); err != nil {
		return fmt.Errorf("syncing the spool before the checkpoint: %w", err)
	}
	return nil
}

// Ack checkpoints the acknowledged offsets; the caller made the records
// durable.
func (s *FileSource) Ack(cursors ...source.Cursor) error {
	return s.ack(source.SpoolRef{}, cursors)
}

// AckSpooled checkpoints the acknowledged offsets of records held by spool
// entry ref, which may not be durable yet (source.SpoolAcker): ref is kept
// in the checkpoint, the spool is synced before the checkpoint is, and
// after a power loss a checkpoint whose entry is gone is not used.
func (s *FileSource) AckSpooled(ref source.SpoolRef, cursors ...source.Cursor) error {
	return s.ack(ref, cursors)
}

func (s *FileSource) ack(ref source.SpoolRef, cursors []source.Cursor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ckptF == nil {
		return fmt.Errorf("file source %q: acknowledgement after Close", s.name)
	}
	changed := false
	for _, c := range cursors {
		t, ok := s.byID[c.Origin]
		if !ok || c.Offset <= t.acked {
			continue
		}
		t.acked = c.Offset
		changed = true
		if _, open := s.files[t.key]; !open && t.acked >= t.read {
			delete(s.byID, t.id)
		}
	}
	if !changed {
		return nil
	}
	s.ref = ref
	return s.writeCheckpointLocked()
}

// Status lists followed files and problem paths.
func (s *FileSource) Status() []source.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []source.Status
	for _, t := range s.files {
		out = append(out, source.Status{Source: s.name, Path: t.path, State: t.state, Since: t.since, Read: t.read, Acked: t.acked})
	}
	for p, ps := range s.paths {
		out = append(out, source.Status{Source: s.name, Path: p, State: ps.state, Err: ps.err, Since: ps.since})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// ckptEntry is one file in the checkpoint file.
type ckptEntry struct {
	Path   string `json:"path"` // informative only
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	FPLen  int    `json:"fp_len"`
	FP     string `json:"fp_sha256"`
	Offset int64  `json:"offset"`
}

type ckptFile struct {
	Version int         `json:"version"`
	Files   []ckptEntry `json:"files"`
	// SpoolRun and SpoolID name the spool entry holding the last lines
	// acknowledged (AckSpooled); absent when they were durable.
	SpoolRun string `json:"spool_run,omitempty"`
	SpoolID  uint64 `json:"spool_id,omitempty"`
}

// matches reports whether f starts with the fingerprinted bytes.
func (c ckptEntry) matches(f *os.File, size int64) bool {
	if int64(c.FPLen) > size {
		return false
	}
	b := make([]byte, c.FPLen)
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]) == c.FP
}

// openCheckpoint opens the checkpoint slot file at path and decodes its
// newest slot; when path does not exist it reads the JSON file of earlier
// versions (legacy) instead. On a decoding error the returned file is
// still usable (it is overwritten by the next Ack); a nil file means the
// slot file itself is damaged.
//
// With covers set, a slot naming a spool entry that covers says is gone
// (lost in a power loss) is passed over for the other one; when both are,
// the error wraps slotfile.ErrRejected and the file is usable.
func openCheckpoint(path, legacy string, covers func(string, uint64) bool) (*slotfile.File, map[fileKey]ckptEntry, error) {
	var accept func([]byte) bool
	if covers != nil {
		accept = func(payload []byte) bool {
			var c ckptFile
			if json.Unmarshal(payload, &c) != nil {
				return true // decoding errors are reported below
			}
			return c.SpoolRun == "" || covers(c.SpoolRun, c.SpoolID)
		}
	}
	f, payload, err := slotfile.OpenFunc(path, slotfile.Options{}, accept)
	if errors.Is(err, slotfile.ErrRejected) {
		return f, nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	if payload == nil {
		m, err := loadCheckpoint(legacy)
		return f, m, err
	}
	m, err := decodeCheckpoint(path, payload)
	return f, m, err
}

// syncCheckpoint makes the last checkpoint durable (fsync) when it changed.
func (s *FileSource) syncCheckpoint() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ckptF == nil {
		return
	}
	if err := s.spoolSyncLocked(); err != nil {
		s.ckptErrs++
		s.log.WithError(err).Warn("cannot sync the spool, so not the checkpoint either; retrying (after a power loss some lines may be read again)")
		return
	}
	if err := s.ckptF.Sync(); err != nil {
		s.ckptErrs++
		s.log.WithError(err).Warn("cannot sync the checkpoint; retrying (after a power loss some lines may be read again)")
	}
}

func loadCheckpoint(path string) (map[fileKey]ckptEntry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[fileKey]ckptEntry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint %s: %w", path, err)
	}
	return decodeCheckpoint(path, b)
}

func decodeCheckpoint(path string, b []byte) (map[fileKey]ckptEntry, error) {
	var c ckptFile
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decoding checkpoint %s: %w", path, err)
	}
	if c.Version != 1 {
		return nil, fmt.Errorf("checkpoint %s has version %d, want 1", path, c.Version)
	}
	m := make(map[fileKey]ckptEntry, len(c.Files))
	for _, e := range c.Files {
		m[fileKey{e.Dev, e.Ino}] = e
	}
	return m, nil
}

// writeCheckpointLocked writes the acknowledged offsets of the files in
// byID (open, or closed with unacknowledged lines) and of the files in the
// loaded checkpoint not seen yet (so a file absent for a while keeps its
// place). s.mu is held.
func (s *FileSource) writeCheckpointLocked() error {
	c := ckptFile{Version: 1}
	have := map[fileKey]bool{}
	for _, t := range s.byID {
		if have[t.key] {
			continue
		}
		have[t.key] = true
		c.Files = append(c.Files, ckptEntry{
			Path: t.path, Dev: t.key.Dev, Ino: t.key.Ino,
			FPLen: t.fp.n, FP: hex.EncodeToString(t.fp.sum[:]), Offset: t.acked,
		})
	}
	for k, e := range s.saved {
		if !have[k] {
			c.Files = append(c.Files, e)
		}
	}
	sort.Slice(c.Files, func(i, j int) bool { return c.Files[i].Path < c.Files[j].Path })
	c.SpoolRun, c.SpoolID = s.ref.Run, s.ref.ID
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding checkpoint: %w", err)
	}
	if !s.ckptF.Fits(len(b)) && s.spool.Sync != nil {
		// A rewrite fsyncs both slots with this state: its spool entry
		// must be durable first.
		if err := s.spool.Sync(); err != nil {
			s.ckptErrs++
			return fmt.Errorf("file source %q: syncing the spool before growing the checkpoint: %w", s.name, err)
		}
	}
	if err := s.ckptF.Write(b); err != nil {
		s.ckptErrs++
		return fmt.Errorf("file source %q: writing checkpoint: %w", s.name, err)
	}
	if s.legacy != "" {
		// The slot file exists now (its creation is durable): the JSON
		// file of earlier versions is no longer needed.
		if err := os.Remove(s.legacy); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.WithError(err).WithField("file", s.legacy).Warn("cannot remove the old checkpoint file")
		}
		s.legacy = ""
	}
	return nil
}
