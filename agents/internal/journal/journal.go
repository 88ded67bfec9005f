// Package journal is the agent's systemd journal source (kind "journal"):
// it follows the journal through `journalctl -o json --follow`, turns each
// entry into an RFC 5424 syslog line, and checkpoints the journal cursor of
// the last acknowledged entry.
//
//   - journalctl is started as
//     `journalctl -o json --all --output-fields=... --follow --no-pager`
//     plus, with a checkpoint, `--no-tail --after-cursor=<cursor>`; without
//     one `--lines=0` (start_at: end, the default: new entries only),
//     `--no-tail` (start_at: beginning) or `--no-tail --since=<since>`.
//     units become `-u`, identifiers `-t`, directory `-D`, files `--file`.
//     journalctl ANDs the two lists: an entry must match one unit and one
//     identifier when both are given; use two sources otherwise.
//   - Each entry becomes one record whose data is an RFC 5424 line (see
//     entry.format): `<PRI>1 2024-05-06T07:08:09.123456Z host sshd 1234 - - Failed password ...`.
//     The collector's syslog parser reads that header and hands the message
//     to the program's parser (sshd, sudo, su, PAM, ...) by APP-NAME. The
//     record's time is the entry's __REALTIME_TIMESTAMP.
//   - MESSAGE may come as a byte array (journalctl's form for values that
//     are not printable UTF-8): the bytes are kept and the record is
//     flagged envelope.FlagInvalidUTF8 when they are not valid UTF-8. A
//     message longer than max_line_bytes is cut and flagged
//     envelope.FlagTruncated. A JSON line longer than max_entry_bytes is
//     read up to the cap and the rest skipped (never held in memory); the
//     fields decoded before the cut are used, flagged truncated.
//   - The cursor is checkpointed only on Ack, to a JSON file in the state
//     directory written atomically (temp file, fsync, rename, fsync of the
//     directory), with the entry's time: when journalctl refuses the cursor
//     (journal vacuumed or replaced) reading restarts `--since` that time,
//     which may repeat entries of that second but loses none.
//   - When journalctl exits it is started again after the last entry it
//     gave, with a delay that doubles from restart_delay to
//     max_restart_delay (and returns to restart_delay once it works again).
//     A missing journalctl, a permission problem (the agent's user not in
//     the systemd-journal or adm group) and journalctl's own error lines are
//     logged and shown in Status; Run keeps retrying and never fails the
//     agent.
package journal

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/internal/envelope"
)

// Kind is the registry name of the journal source.
const Kind = "journal"

func init() { source.Register(Kind, New) }

var _ source.Source = (*Source)(nil)

// outputFields are the fields asked of journalctl (--output-fields);
// __CURSOR and __REALTIME_TIMESTAMP are always printed.
var outputFields = []string{
	"MESSAGE", "PRIORITY", "SYSLOG_FACILITY", "SYSLOG_IDENTIFIER", "SYSLOG_PID",
	"_PID", "_COMM", "_HOSTNAME", "_SYSTEMD_UNIT", "_TRANSPORT",
}

// headerRoom is what the RFC 5424 header may add to a message: PRI,
// timestamp and the capped header fields.
const headerRoom = 8 + 28 + maxHostname + maxAppName + maxProcID + 8

// Config configures one journal source. YAML keys are the snake_case names.
type Config struct {
	// Command is the journalctl to run (a path or a name looked up in
	// PATH). Default "journalctl".
	Command string `yaml:"command"`
	// Units are systemd units to follow (journalctl -u); empty: all.
	Units []string `yaml:"units"`
	// Identifiers are syslog identifiers to follow (journalctl -t);
	// empty: all.
	Identifiers []string `yaml:"identifiers"`
	// Directory reads the journal files of a directory (journalctl -D)
	// instead of the system journal.
	Directory string `yaml:"directory"`
	// Files reads these journal files (journalctl --file; globs allowed)
	// instead of the system journal.
	Files []string `yaml:"files"`
	// Stream is the envelope stream id. Default "journal:<source name>".
	Stream string `yaml:"stream"`
	// StartAt says where to start when there is no checkpoint: "end"
	// (default: new entries only) or "beginning" (the whole journal).
	StartAt string `yaml:"start_at"`
	// Since, when set and there is no checkpoint, starts at this time
	// (journalctl --since syntax, e.g. "-1h" or "2024-05-01 00:00:00").
	// It cannot be combined with start_at: end.
	Since string `yaml:"since"`
	// MaxLineBytes caps a message. Default 64 KiB; at most
	// envelope.MaxRecordSize minus room for the syslog header.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// MaxEntryBytes caps one JSON line read from journalctl. Default
	// 4 × MaxLineBytes + 64 KiB.
	MaxEntryBytes int `yaml:"max_entry_bytes"`
	// RestartDelay is the first delay before journalctl is started again
	// after it exited. Default 1 s.
	RestartDelay time.Duration `yaml:"restart_delay"`
	// MaxRestartDelay caps the doubling delay. Default 1 min.
	MaxRestartDelay time.Duration `yaml:"max_restart_delay"`
}

func (c *Config) defaults(name string) error {
	if c.Command == "" {
		c.Command = "journalctl"
	}
	if c.Stream == "" {
		c.Stream = "journal:" + name
	}
	for _, list := range [][]string{c.Units, c.Identifiers, c.Files} {
		for _, v := range list {
			if v == "" || strings.HasPrefix(v, "-") || strings.ContainsAny(v, "\x00\n") {
				return fmt.Errorf("units, identifiers, files: %q is not a valid name", v)
			}
		}
	}
	if c.Directory != "" && len(c.Files) > 0 {
		return errors.New("directory and files: give one or the other")
	}
	switch c.StartAt {
	case "":
		if c.Since == "" {
			c.StartAt = "end"
		} else {
			c.StartAt = "beginning"
		}
	case "beginning":
	case "end":
		if c.Since != "" {
			return errors.New("since: cannot be combined with start_at: end")
		}
	default:
		return fmt.Errorf("start_at: %q is not beginning or end", c.StartAt)
	}
	if strings.ContainsAny(c.Since, "\x00\n") {
		return fmt.Errorf("since: %q is not a time", c.Since)
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = 64 << 10
	}
	if c.MaxLineBytes < 1 || c.MaxLineBytes > envelope.MaxRecordSize-headerRoom {
		return fmt.Errorf("max_line_bytes: %d is outside 1..%d", c.MaxLineBytes, envelope.MaxRecordSize-headerRoom)
	}
	if c.MaxEntryBytes == 0 {
		c.MaxEntryBytes = 4*c.MaxLineBytes + 64<<10
	}
	if c.MaxEntryBytes < 1024 || c.MaxEntryBytes > 64<<20 {
		return fmt.Errorf("max_entry_bytes: %d is outside 1024..67108864", c.MaxEntryBytes)
	}
	if c.RestartDelay == 0 {
		c.RestartDelay = time.Second
	}
	if c.MaxRestartDelay == 0 {
		c.MaxRestartDelay = time.Minute
	}
	if c.RestartDelay < 0 || c.MaxRestartDelay < c.RestartDelay {
		return errors.New("restart_delay and max_restart_delay: must be positive, restart_delay <= max_restart_delay")
	}
	return nil
}

// position is where to resume: after an entry with this cursor, written
// at this time (microseconds since the epoch, 0 if unknown).
type position struct {
	Cursor   string `json:"cursor"`
	Realtime int64  `json:"realtime_usec,omitempty"`
}

// Source follows the systemd journal. Build it with New or through the
// registry.
type Source struct {
	name string
	cfg  Config
	log  logrus.FieldLogger
	now  func() time.Time
	ckpt string

	// Owned by Run.
	resume   position // after the last entry emitted (or the checkpoint)
	useSince bool     // the cursor was refused: resume --since its time

	mu       sync.Mutex
	ran      bool
	seq      int64    // entries emitted by this Source (Cursor.Offset)
	acked    int64    // highest Offset acknowledged
	ackedPos position // the cursor checkpointed
	state    source.State
	err      string
	since    time.Time
	permErr  string // permission problem reported by the current journalctl
	ckptErrs int
}

// New builds a journal source from its configuration (the registry
// factory).
func New(name string, decode func(any) error, deps source.Deps) (source.Source, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return NewSource(name, cfg, deps)
}

// NewSource builds a journal source.
func NewSource(name string, cfg Config, deps source.Deps) (*Source, error) {
	if err := cfg.defaults(name); err != nil {
		return nil, fmt.Errorf("journal source %q: %w", name, err)
	}
	deps = deps.WithDefaults()
	if deps.StateDir == "" {
		return nil, fmt.Errorf("journal source %q: a state directory is required for checkpoints", name)
	}
	if err := os.MkdirAll(deps.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("journal source %q: creating state directory: %w", name, err)
	}
	s := &Source{
		name:  name,
		cfg:   cfg,
		log:   deps.Logger.WithFields(logrus.Fields{"source": name, "kind": Kind}),
		now:   deps.Now,
		ckpt:  filepath.Join(deps.StateDir, "journal-"+safeName(name)+".json"),
		state: source.StateWaiting,
		err:   "journalctl not started yet",
		since: deps.Now(),
	}
	pos, err := loadCheckpoint(s.ckpt)
	if err != nil {
		// Do not stop the agent: start as configured and say so.
		s.log.WithError(err).Error("journal checkpoint is unreadable; starting as configured by start_at/since")
	}
	s.resume, s.ackedPos = pos, pos
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

// args builds journalctl's arguments for the current resume position.
func (s *Source) args() []string {
	a := []string{"-o", "json", "--all", "--output-fields=" + strings.Join(outputFields, ","),
		"--follow", "--no-pager"}
	switch {
	case s.useSince && s.resume.Realtime > 0:
		a = append(a, "--no-tail", fmt.Sprintf("--since=@%d.%06d", s.resume.Realtime/1e6, s.resume.Realtime%1e6))
	case s.resume.Cursor != "" && !s.useSince:
		a = append(a, "--no-tail", "--after-cursor="+s.resume.Cursor)
	case s.cfg.Since != "":
		a = append(a, "--no-tail", "--since="+s.cfg.Since)
	case s.cfg.StartAt == "beginning":
		a = append(a, "--no-tail")
	default:
		a = append(a, "--lines=0")
	}
	if s.cfg.Directory != "" {
		a = append(a, "--directory="+s.cfg.Directory)
	}
	for _, f := range s.cfg.Files {
		a = append(a, "--file="+f)
	}
	for _, u := range s.cfg.Units {
		a = append(a, "--unit="+u)
	}
	for _, t := range s.cfg.Identifiers {
		a = append(a, "--identifier="+t)
	}
	return a
}

func (s *Source) setState(st source.State, why string) {
	s.mu.Lock()
	changed := s.state != st || s.err != why
	if changed {
		s.state, s.err, s.since = st, why, s.now()
	}
	s.mu.Unlock()
}

// Run starts journalctl and follows it until ctx ends, restarting it
// with backoff when it exits.
func (s *Source) Run(ctx context.Context, out chan<- source.Record) error {
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		return errors.New("journal source: Run called twice")
	}
	s.ran = true
	s.mu.Unlock()
	delay := s.cfg.RestartDelay
	for {
		n, err := s.runOnce(ctx, out)
		if ctx.Err() != nil {
			s.setState(source.StateWaiting, "stopped")
			return nil //nolint:nilerr // ctx ended: a normal stop, not a failure of the source
		}
		if n > 0 {
			delay = s.cfg.RestartDelay
		}
		msg := err.Error()
		s.setState(source.StateError, msg)
		s.log.WithField("retry_in", delay.String()).Error(msg)
		select {
		case <-ctx.Done():
			s.setState(source.StateWaiting, "stopped")
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, s.cfg.MaxRestartDelay)
	}
}

// runOnce runs journalctl once. It returns how many entries it emitted
// and why it ended (never nil unless ctx ended).
func (s *Source) runOnce(ctx context.Context, out chan<- source.Record) (int, error) {
	path, err := exec.LookPath(s.cfg.Command)
	if err != nil {
		return 0, fmt.Errorf("journalctl not found (command %q): install systemd's journalctl or set command in the journal source's configuration: %w", s.cfg.Command, err)
	}
	args := s.args()
	cmd := exec.CommandContext(ctx, path, args...) //nolint:gosec // the configured journalctl; arguments are built by args(), each value one argv entry
	cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "LC_ALL=C")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("starting journalctl: %w", err)
	}
	stderr := &lineWriter{fn: s.stderrLine}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return 0, fmt.Errorf("cannot run journalctl (%s): permission denied: check the file's mode and the agent's service sandbox: %w", path, err)
		}
		return 0, fmt.Errorf("starting journalctl (%s): %w", path, err)
	}
	s.mu.Lock()
	s.permErr = ""
	s.mu.Unlock()
	s.setState(source.StateReading, "")
	s.log.WithField("args", strings.Join(args, " ")).Info("journalctl started")

	// readEntries returns at the end of journalctl's output, or when ctx
	// ends (then exec sends SIGTERM, and SIGKILL after WaitDelay).
	n := s.readEntries(ctx, stdout, out)
	waitErr := cmd.Wait()
	lastErr := stderr.flush()
	if ctx.Err() != nil {
		return n, ctx.Err()
	}
	status := "journalctl exited"
	if waitErr != nil {
		status = "journalctl failed (" + waitErr.Error() + ")"
	}
	if lastErr != "" {
		status += ": " + lastErr
	}
	if strings.Contains(strings.ToLower(lastErr), "cursor") && n == 0 && !s.useSince && s.resume.Cursor != "" {
		// The journal no longer knows the cursor (vacuumed, replaced):
		// continue by time rather than lose or re-read everything.
		if s.resume.Realtime > 0 {
			s.useSince = true
			status += "; the saved cursor is not in the journal any more: resuming at its time instead"
		} else {
			s.resume.Cursor = ""
			status += "; the saved cursor is not in the journal any more and has no time: starting as configured by start_at"
		}
	}
	if hint := s.permission(); hint != "" {
		status += "; " + hint
	}
	return n, errors.New(status)
}

// permHints are journalctl's messages when the user may not read the
// system journal.
var permHints = []string{
	"insufficient permissions",
	"not seeing messages from other users",
	"permission denied",
}

// permission returns the current journalctl's permission problem, if any.
func (s *Source) permission() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.permErr
}

// stderrLine logs one line of journalctl's error output and recognises
// permission problems.
func (s *Source) stderrLine(text string) {
	lower := strings.ToLower(text)
	for _, h := range permHints {
		if strings.Contains(lower, h) {
			why := "journalctl cannot read the system journal (" + text + "): add the agent's user to the systemd-journal group (the package's unit does this with SupplementaryGroups) and restart the agent"
			s.mu.Lock()
			s.permErr = why
			s.mu.Unlock()
			s.setState(source.StateError, why)
			break
		}
	}
	s.log.WithField("journalctl", text).Warn("journalctl reports a problem")
}

// lineWriter splits journalctl's error output into lines (each capped at
// maxStderrLine bytes), calls fn for each non-empty one, and remembers the
// last.
type lineWriter struct {
	fn   func(string)
	mu   sync.Mutex
	buf  []byte
	last string
}

const maxStderrLine = 1024

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if room := maxStderrLine - len(w.buf); room > 0 {
			w.buf = append(w.buf, seg[:min(room, len(seg))]...)
		}
		if i < 0 {
			break
		}
		w.line()
		p = p[i+1:]
	}
	return n, nil
}

// line hands over the buffered line. w.mu is held.
func (w *lineWriter) line() {
	text := strings.ToValidUTF8(strings.TrimSpace(string(w.buf)), "?")
	w.buf = w.buf[:0]
	if text == "" {
		return
	}
	w.last = text
	w.fn(text)
}

// flush hands over a last line without a newline and returns the last
// line seen.
func (w *lineWriter) flush() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.line()
	return w.last
}

// readEntries reads JSON lines until journalctl's output ends or ctx
// ends, and returns how many records it sent.
func (s *Source) readEntries(ctx context.Context, r io.Reader, out chan<- source.Record) int {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	n := 0
	for {
		line, err := readCapped(br, s.cfg.MaxEntryBytes, buf[:0])
		buf = line.data
		if len(line.data) > 0 {
			rec, ok := s.record(line)
			if ok {
				select {
				case out <- rec:
				case <-ctx.Done():
					return n
				}
				n++
			}
		}
		if cap(buf) > 1<<20 {
			buf = nil // do not keep a huge buffer for a rare long entry
		}
		if err != nil {
			return n // end of journalctl's output: the caller reports why
		}
	}
}

// record turns one JSON line into a record; ok is false for a line that is
// not a journal entry (logged).
func (s *Source) record(line capped) (source.Record, bool) {
	e, err := parseEntry(line.data, line.over)
	if err != nil {
		s.log.WithError(err).WithField("bytes", line.n).Error("journalctl gave a line that is not a journal entry; skipped")
		return source.Record{}, false
	}
	if line.over {
		s.log.WithFields(logrus.Fields{"bytes": line.n, "kept": len(line.data), "cursor_known": e.cursor != ""}).
			Warn("journal entry longer than max_entry_bytes: truncated")
	}
	data, flags := e.format(make([]byte, 0, 128+len(e.message)), s.cfg.MaxLineBytes)
	t := s.now()
	if e.hasRealtime {
		t = time.UnixMicro(e.realtime)
	}
	s.mu.Lock()
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	if e.cursor != "" {
		s.resume = position{Cursor: e.cursor, Realtime: e.realtime}
		s.useSince = false
	}
	origin := "journal"
	if e.unit != "" {
		origin = "journal:" + e.unit
	}
	return source.Record{
		Stream: s.cfg.Stream,
		Origin: origin,
		Time:   t,
		Kind:   envelope.KindRawLine,
		Flags:  flags,
		Data:   data,
		Cursor: source.Cursor{Offset: seq, Token: e.cursor + "\n" + strconv.FormatInt(e.realtime, 10)},
	}, true
}

// capped is one line read by readCapped.
type capped struct {
	data []byte // the line without "\n", at most max bytes
	n    int64  // its full length
	over bool   // longer than max: data is its start
}

// readCapped reads one line, keeping at most max bytes of it (appended to
// dst) and skipping the rest without holding it in memory.
func readCapped(br *bufio.Reader, max int, dst []byte) (capped, error) {
	c := capped{data: dst}
	for {
		chunk, err := br.ReadSlice('\n')
		if err == nil {
			chunk = chunk[:len(chunk)-1]
		}
		c.n += int64(len(chunk))
		if room := max - len(c.data); room > 0 {
			c.data = append(c.data, chunk[:min(room, len(chunk))]...)
		}
		if len(chunk) > 0 && c.n > int64(max) {
			c.over = true
		}
		switch {
		case err == nil:
			return c, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return c, err
		}
	}
}

// Ack checkpoints the cursor of the latest acknowledged entry.
func (s *Source) Ack(cursors ...source.Cursor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best source.Cursor
	for _, c := range cursors {
		if c.Offset > s.acked && c.Offset > best.Offset {
			best = c
		}
	}
	if best.Offset == 0 {
		return nil
	}
	s.acked = best.Offset
	cursor, rt, _ := strings.Cut(best.Token, "\n")
	if cursor == "" {
		return nil // an entry without a cursor: nothing to checkpoint
	}
	realtime, _ := strconv.ParseInt(rt, 10, 64)
	pos := position{Cursor: cursor, Realtime: realtime}
	if pos == s.ackedPos {
		return nil
	}
	if err := writeCheckpoint(s.ckpt, pos); err != nil {
		s.ckptErrs++
		return fmt.Errorf("journal source %q: writing checkpoint: %w", s.name, err)
	}
	s.ackedPos = pos
	return nil
}

// Status describes the journal input. Read and Acked count the entries
// emitted and acknowledged since the agent started.
func (s *Source) Status() []source.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	path := "journal"
	switch {
	case s.cfg.Directory != "":
		path = "journal:" + s.cfg.Directory
	case len(s.cfg.Files) > 0:
		path = "journal:" + strings.Join(s.cfg.Files, ",")
	}
	if len(s.cfg.Units) > 0 {
		path += " units=" + strings.Join(s.cfg.Units, ",")
	}
	if len(s.cfg.Identifiers) > 0 {
		path += " identifiers=" + strings.Join(s.cfg.Identifiers, ",")
	}
	return []source.Status{{
		Source: s.name, Path: path, State: s.state, Err: s.err, Since: s.since,
		Read: s.seq, Acked: s.acked,
	}}
}

type ckptFile struct {
	Version int `json:"version"`
	position
}

func loadCheckpoint(path string) (position, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return position{}, nil
	}
	if err != nil {
		return position{}, fmt.Errorf("reading checkpoint %s: %w", path, err)
	}
	var c ckptFile
	if err := json.Unmarshal(b, &c); err != nil {
		return position{}, fmt.Errorf("decoding checkpoint %s: %w", path, err)
	}
	if c.Version != 1 {
		return position{}, fmt.Errorf("checkpoint %s has version %d, want 1", path, c.Version)
	}
	if strings.ContainsAny(c.Cursor, "\x00\n") {
		return position{}, fmt.Errorf("checkpoint %s holds an invalid cursor", path)
	}
	return c.position, nil
}

func writeCheckpoint(path string, pos position) error {
	b, err := json.Marshal(ckptFile{Version: 1, position: pos})
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b)
}

// writeFileAtomic writes b to path via a temporary file, fsync, rename and
// fsync of the directory: after a crash path holds the old or the new
// content, never a mix.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // no-op after the rename
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return err
	}
	return d.Close()
}
