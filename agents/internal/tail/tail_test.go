package tail

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/internal/envelope"
)

// harness runs a FileSource and collects what it emits.
type harness struct {
	t      *testing.T
	src    *FileSource
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	recs []source.Record
}

func start(t *testing.T, state string, cfg Config) *harness {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 10 * time.Millisecond
	}
	if cfg.CloseAfter == 0 {
		cfg.CloseAfter = 100 * time.Millisecond
	}
	src, err := NewFileSource("test", cfg, source.Deps{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, src: src, cancel: cancel, done: make(chan struct{})}
	out := make(chan source.Record, 16)
	go func() {
		defer close(h.done)
		if err := src.Run(ctx, out); err != nil {
			t.Error(err)
		}
	}()
	go func() {
		for {
			select {
			case r := <-out:
				h.mu.Lock()
				h.recs = append(h.recs, r)
				h.mu.Unlock()
			case <-h.done:
				return
			}
		}
	}()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.cancel()
	<-h.done
}

func (h *harness) records() []source.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]source.Record(nil), h.recs...)
}

// wait waits until n records arrived, then a little longer to catch extras.
func (h *harness) wait(n int) []source.Record {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if len(h.records()) >= n {
			time.Sleep(100 * time.Millisecond)
			return h.records()
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("got %d records, want %d: %s", len(h.records()), n, lines(h.records()))
	return nil
}

// ackAll acknowledges every record received so far.
func (h *harness) ackAll() {
	h.t.Helper()
	var cs []source.Cursor
	for _, r := range h.records() {
		cs = append(cs, r.Cursor)
	}
	if err := h.src.Ack(cs...); err != nil {
		h.t.Fatal(err)
	}
}

func lines(rs []source.Record) string {
	var b strings.Builder
	for _, r := range rs {
		d := r.Data
		if len(d) > 40 {
			d = d[:40]
		}
		fmt.Fprintf(&b, "%q ", d)
	}
	return b.String()
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func numbered(prefix string, from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		// Long enough that a few lines fill the 1 KiB fingerprint.
		fmt.Fprintf(&b, "%s line %05d %s\n", prefix, i, strings.Repeat("x", 60))
	}
	return b.String()
}

// exactlyOnce checks that the records are the expected lines, each once,
// in any order across files but in order within one prefix.
func exactlyOnce(t *testing.T, rs []source.Record, want ...string) {
	t.Helper()
	got := map[string]int{}
	for _, r := range rs {
		got[string(r.Data)]++
	}
	var wantAll []string
	for _, w := range want {
		wantAll = append(wantAll, strings.Split(strings.TrimSuffix(w, "\n"), "\n")...)
	}
	for _, w := range wantAll {
		switch got[w] {
		case 1:
		case 0:
			t.Errorf("missing %q", w)
		default:
			t.Errorf("%q arrived %d times", w, got[w])
		}
		delete(got, w)
	}
	for g, n := range got {
		t.Errorf("unexpected %q (%d times)", g, n)
	}
	if len(rs) != len(wantAll) {
		t.Errorf("%d records, want %d", len(rs), len(wantAll))
	}
}

func TestAppendAndPartialLines(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendFile(t, log, "one\ntwo\r\nthr")
	h := start(t, t.TempDir(), Config{Paths: []string{log}})
	h.wait(2)
	appendFile(t, log, "ee\n")
	rs := h.wait(3)
	exactlyOnce(t, rs, "one\ntwo\nthree\n")
	if rs[2].Cursor.Offset != int64(len("one\ntwo\r\nthree\n")) || rs[0].Stream != "file:test" ||
		rs[0].Kind != envelope.KindRawLine || rs[0].Origin != log {
		t.Fatalf("record fields: %+v", rs[2])
	}
	st := h.src.Status()
	if len(st) != 1 || st[0].State != source.StateReading || st[0].Read != 15 || st[0].Acked != 0 {
		t.Fatalf("status %+v", st)
	}
}

func TestRenameRotation(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendFile(t, log, numbered("a", 0, 100))
	h := start(t, t.TempDir(), Config{Paths: []string{log}})
	h.wait(100)
	// The application keeps its descriptor: it writes after the rename.
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(numbered("a", 100, 150)); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	appendFile(t, log, numbered("b", 0, 100))
	rs := h.wait(250)
	exactlyOnce(t, rs, numbered("a", 0, 150), numbered("b", 0, 100))
	// The renamed file is closed once drained.
	time.Sleep(300 * time.Millisecond)
	if st := h.src.Status(); len(st) != 1 || st[0].Path != log {
		t.Fatalf("status after rotation: %+v", st)
	}
}

func TestCopyTruncate(t *testing.T) {
	for _, followCopy := range []bool{false, true} {
		t.Run(fmt.Sprintf("copy followed %v", followCopy), func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "app.log")
			pattern := log
			if followCopy {
				pattern = log + "*"
			}
			appendFile(t, log, numbered("a", 0, 100))
			h := start(t, t.TempDir(), Config{Paths: []string{pattern}, PollInterval: 200 * time.Millisecond})
			h.wait(100)
			// Lines written just before logrotate copies and truncates:
			// only the copy holds them if the poll did not see them.
			appendFile(t, log, numbered("a", 100, 120))
			b, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(log+".1", b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(log, 0); err != nil {
				t.Fatal(err)
			}
			appendFile(t, log, numbered("b", 0, 10))
			if followCopy {
				exactlyOnce(t, h.wait(130), numbered("a", 0, 120), numbered("b", 0, 10))
				return
			}
			// Without the copy, the lines between the last poll and the
			// truncation may be lost (as in every tailer), but the new
			// content is read from its start, once.
			rs := h.wait(110)
			var b0 int
			for _, r := range rs {
				if strings.HasPrefix(string(r.Data), "b line") {
					b0++
				}
			}
			if b0 != 10 {
				t.Fatalf("%d new lines after the truncation, want 10: %s", b0, lines(rs))
			}
		})
	}
}

// TestCopyTruncateRegrown: the file is truncated and rewritten past the
// offset already read before the source looks again. The first chunk read
// at the old offset does not start with the fingerprinted bytes: it is
// dropped and the file read again from its start, at once.
func TestCopyTruncateRegrown(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendFile(t, log, numbered("a", 0, 100))
	h := start(t, t.TempDir(), Config{Paths: []string{log}, PollInterval: 300 * time.Millisecond})
	h.wait(100)
	// One write: the truncation and the new, longer content together.
	if err := os.WriteFile(log, []byte(numbered("b", 0, 300)), 0o644); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, h.wait(400), numbered("a", 0, 100), numbered("b", 0, 300))
}

func TestGlobPicksUpNewFiles(t *testing.T) {
	dir := t.TempDir()
	h := start(t, t.TempDir(), Config{Paths: []string{filepath.Join(dir, "*.log")}, Exclude: []string{"*.gz"}})
	appendFile(t, filepath.Join(dir, "a.log"), "a1\n")
	h.wait(1)
	appendFile(t, filepath.Join(dir, "b.log"), "b1\nb2\n")
	appendFile(t, filepath.Join(dir, "c.log.gz"), "zzz\n")
	appendFile(t, filepath.Join(dir, "a.log"), "a2\n")
	exactlyOnce(t, h.wait(4), "a1\na2\nb1\nb2\n")
}

// TestRestartFromCheckpoint: only acknowledged lines are skipped after a
// restart; the unacknowledged tail comes again, nothing is lost, including
// lines written and rotated while the agent was down.
func TestRestartFromCheckpoint(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendFile(t, log, numbered("a", 0, 100))
	h := start(t, state, Config{Paths: []string{log + "*"}})
	rs := h.wait(100)
	var cs []source.Cursor
	for _, r := range rs[:60] {
		cs = append(cs, r.Cursor)
	}
	if err := h.src.Ack(cs...); err != nil {
		t.Fatal(err)
	}
	h.stop()
	// While stopped: more lines, then a rename rotation and a new file.
	appendFile(t, log, numbered("a", 100, 120))
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, log, numbered("b", 0, 5))

	h2 := start(t, state, Config{Paths: []string{log + "*"}})
	exactlyOnce(t, h2.wait(65), numbered("a", 60, 120), numbered("b", 0, 5))
	h2.ackAll()
	h2.stop()
	h3 := start(t, state, Config{Paths: []string{log + "*"}})
	time.Sleep(200 * time.Millisecond)
	if rs := h3.records(); len(rs) != 0 {
		t.Fatalf("after acknowledging everything a restart re-read %d lines: %s", len(rs), lines(rs))
	}
}

func TestReplacedFileIsReadFromStart(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendFile(t, log, numbered("a", 0, 30))
	h := start(t, state, Config{Paths: []string{log}})
	h.wait(30)
	h.ackAll()
	h.stop()
	// Replaced while stopped; the inode may well be reused.
	if err := os.Remove(log); err != nil {
		t.Fatal(err)
	}
	appendFile(t, log, numbered("c", 0, 40))
	h2 := start(t, state, Config{Paths: []string{log}})
	exactlyOnce(t, h2.wait(40), numbered("c", 0, 40))
}

func TestStartAtEnd(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendFile(t, log, "old\n")
	h := start(t, t.TempDir(), Config{Paths: []string{filepath.Join(dir, "*.log")}, StartAt: "end"})
	time.Sleep(50 * time.Millisecond)
	appendFile(t, log, "new\n")
	appendFile(t, filepath.Join(dir, "later.log"), "later\n")
	exactlyOnce(t, h.wait(2), "new\nlater\n")
}

// TestOverlongLine: a 10 MB line with a 64 KiB cap gives one truncated
// record of 64 KiB; the next line is intact.
func TestOverlongLine(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for range 160 {                                         // 10 MiB
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.WriteString("\nnext\n"); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	h := start(t, t.TempDir(), Config{Paths: []string{log}, MaxLineBytes: 64 << 10})
	rs := h.wait(2)
	if len(rs) != 2 {
		t.Fatalf("%d records", len(rs))
	}
	if len(rs[0].Data) != 64<<10 || rs[0].Flags != envelope.FlagTruncated || !bytes.Equal(rs[0].Data, chunk) {
		t.Fatalf("long line: %d bytes, flags %v", len(rs[0].Data), rs[0].Flags)
	}
	if string(rs[1].Data) != "next" || rs[1].Flags != 0 {
		t.Fatalf("next line: %q flags %v", rs[1].Data, rs[1].Flags)
	}
	if rs[0].Cursor.Offset != 10<<20+1 {
		t.Fatalf("cursor after the long line %d", rs[0].Cursor.Offset)
	}
}

func TestBinaryData(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	bin := "\x00\x01\xff\xfe bad \xc3\x28 utf8"
	appendFile(t, log, "città ok\n"+bin+"\n")
	h := start(t, t.TempDir(), Config{Paths: []string{log}})
	rs := h.wait(2)
	if string(rs[0].Data) != "città ok" || rs[0].Flags != 0 {
		t.Fatalf("utf-8 line: %q %v", rs[0].Data, rs[0].Flags)
	}
	if string(rs[1].Data) != bin || rs[1].Flags != envelope.FlagInvalidUTF8 {
		t.Fatalf("binary line: %q %v", rs[1].Data, rs[1].Flags)
	}
}

// TestFileReplacedByDirectory: one path becomes a directory and another
// file vanishes; both get a status, the third file keeps going.
func TestFileReplacedByDirectory(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log"), filepath.Join(dir, "c.log")
	appendFile(t, a, "a1\n")
	appendFile(t, b, "b1\n")
	appendFile(t, c, "c1\n")
	h := start(t, t.TempDir(), Config{Paths: []string{a, b, c}})
	h.wait(3)
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(a, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	appendFile(t, c, "c2\n")
	h.wait(4)
	time.Sleep(200 * time.Millisecond)
	st := map[string]source.Status{}
	for _, s := range h.src.Status() {
		st[s.Path] = s
	}
	if s := st[a]; s.State != source.StateError || !strings.Contains(s.Err, "directory") {
		t.Errorf("a: %+v", s)
	}
	if s := st[b]; s.State != source.StateWaiting {
		t.Errorf("b: %+v", s)
	}
	if s := st[c]; s.State != source.StateReading {
		t.Errorf("c: %+v", s)
	}
	// The directory goes away, the file comes back: followed again.
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	appendFile(t, a, "a2\n")
	exactlyOnce(t, h.wait(5), "a1\nb1\nc1\nc2\na2\n")
}

// TestUnreadableFiles: a file without read permission (when not root), a
// symbolic link loop and a FIFO each get an error status; the readable
// file is followed.
func TestUnreadableFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	loop, fifo := filepath.Join(dir, "loop.log"), filepath.Join(dir, "fifo.log")
	appendFile(t, a, "secret\n")
	appendFile(t, b, "b1\n")
	if err := os.Symlink(loop, loop); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	if !root {
		if err := os.Chmod(a, 0); err != nil {
			t.Fatal(err)
		}
	}
	h := start(t, t.TempDir(), Config{Paths: []string{filepath.Join(dir, "*.log")}})
	if root {
		exactlyOnce(t, h.wait(2), "secret\nb1\n")
	} else {
		exactlyOnce(t, h.wait(1), "b1\n")
	}
	want := map[string]string{loop: "too many levels", fifo: "not a regular file"}
	if !root {
		want[a] = "permission denied"
	}
	got := map[string]source.Status{}
	for _, s := range h.src.Status() {
		got[s.Path] = s
	}
	for p, msg := range want {
		if s := got[p]; s.State != source.StateError || !strings.Contains(s.Err, msg) {
			t.Errorf("%s: %+v, want an error containing %q", filepath.Base(p), s, msg)
		}
	}
}

func TestRegistry(t *testing.T) {
	dir := t.TempDir()
	deps := source.Deps{StateDir: t.TempDir()}
	yml := fmt.Sprintf("paths: [%q]\nmax_line_bytes: 1024\npoll_interval: 50ms\n", filepath.Join(dir, "*.log"))
	s, err := source.Default.New(Kind, "sshd", source.StrictYAML([]byte(yml)), deps)
	if err != nil {
		t.Fatal(err)
	}
	fs := s.(*FileSource)
	if fs.cfg.PollInterval != 50*time.Millisecond || fs.cfg.Stream != "file:sshd" {
		t.Fatalf("config %+v", fs.cfg)
	}
	for _, bad := range []string{"paths: [a]\nmax_line_byte: 3\n", "paths: []\n", "paths: ['[']\n", "paths: [a]\nstart_at: middle\n"} {
		if _, err := source.Default.New(Kind, "x", source.StrictYAML([]byte(bad)), deps); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	if _, err := source.Default.New("nope", "x", source.StrictYAML(nil), deps); err == nil || !strings.Contains(err.Error(), "file") {
		t.Errorf("unknown kind: %v", err)
	}
}

func BenchmarkTail250(b *testing.B) {
	dir := b.TempDir()
	log := filepath.Join(dir, "app.log")
	line := strings.Repeat("y", 249) + "\n"
	content := strings.Repeat(line, 10000)
	src, err := NewFileSource("bench", Config{Paths: []string{log}, PollInterval: time.Millisecond}, source.Deps{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	out := make(chan source.Record, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = src.Run(ctx, out) }()
	f, err := os.Create(log)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(int64(len(content)))
	for b.Loop() {
		if _, err := f.WriteString(content); err != nil {
			b.Fatal(err)
		}
		for range 10000 {
			<-out
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/line")
}

// TestCopyTruncateWhileStopped: logrotate copies and truncates the file
// while the agent is down; the copy is recognised by the fingerprint in the
// checkpoint and continues where the original was acknowledged.
func TestCopyTruncateWhileStopped(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendFile(t, log, numbered("a", 0, 100))
	h := start(t, state, Config{Paths: []string{log + "*"}})
	rs := h.wait(100)
	if err := h.src.Ack(rs[59].Cursor); err != nil {
		t.Fatal(err)
	}
	h.stop()
	appendFile(t, log, numbered("a", 100, 120))
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(log+".1", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(log, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, log, numbered("b", 0, 5))
	h2 := start(t, state, Config{Paths: []string{log + "*"}})
	exactlyOnce(t, h2.wait(65), numbered("a", 60, 120), numbered("b", 0, 5))
}

// A copytruncate copy seen while it is still empty (or shorter than a
// fingerprint) must not be read from its beginning: its lines were already
// read from the original.
func TestCopyTruncateCopySeenEmpty(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "app.log")
	var want []string
	var b strings.Builder
	for i := range 200 {
		l := fmt.Sprintf("line %04d of the original, long enough to fill a fingerprint", i)
		want = append(want, l)
		b.WriteString(l + "\n")
	}
	require.NoError(t, os.WriteFile(orig, []byte(b.String()), 0o644))
	src, err := NewFileSource("t", Config{Paths: []string{filepath.Join(dir, "app.log*")}, PollInterval: 10 * time.Millisecond},
		source.Deps{StateDir: t.TempDir()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan source.Record, 1000)
	go func() { _ = src.Run(ctx, out) }()
	got := map[string]int{}
	collect := func(n int) {
		deadline := time.After(10 * time.Second)
		for len(got) < n {
			select {
			case r := <-out:
				got[string(r.Data)]++
				_ = src.Ack(r.Cursor)
			case <-deadline:
				t.Fatalf("got %d distinct lines, want %d", len(got), n)
			}
		}
	}
	collect(200)
	// copytruncate, slowly: the copy exists empty for a few polls, then
	// fills, then the original is truncated and gets new lines.
	cp, err := os.Create(orig + ".1")
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	_, err = cp.WriteString(b.String())
	require.NoError(t, err)
	require.NoError(t, cp.Close())
	require.NoError(t, os.Truncate(orig, 0))
	f, err := os.OpenFile(orig, os.O_APPEND|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	for i := range 10 {
		l := fmt.Sprintf("line %04d after the rotation", i)
		want = append(want, l)
		_, err = f.WriteString(l + "\n")
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())
	collect(210)
	time.Sleep(300 * time.Millisecond) // anything re-read would arrive by now
	for len(out) > 0 {
		r := <-out
		got[string(r.Data)]++
	}
	for _, l := range want {
		if got[l] != 1 {
			t.Errorf("%q arrived %d times", l, got[l])
		}
	}
}

// TestRoundNotifications: the source tells when a poll round that sent
// records is over, after those records, and stays silent on rounds that
// find nothing new.
func TestRoundNotifications(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "app.log")
	appendFile(t, log, "one\ntwo\n")
	src, err := NewFileSource("test", Config{Paths: []string{log}, PollInterval: 5 * time.Millisecond}, source.Deps{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan source.Record, 16)
	rounds := make(chan int, 16) // records seen in out when each notification came
	src.NotifyRounds(func() { rounds <- len(out) })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := src.Run(ctx, out); err != nil {
			t.Error(err)
		}
	}()
	defer func() { cancel(); <-done }()
	if n := <-rounds; n != 2 {
		t.Fatalf("first notification with %d records sent, want 2", n)
	}
	<-out
	<-out
	time.Sleep(50 * time.Millisecond) // about ten empty rounds
	if len(rounds) != 0 {
		t.Fatalf("%d notifications for rounds without records", len(rounds))
	}
	appendFile(t, log, "three\n")
	if n := <-rounds; n != 1 {
		t.Fatalf("second notification with %d records sent, want 1", n)
	}
	if r := <-out; string(r.Data) != "three" {
		t.Fatalf("record %q", r.Data)
	}
}

// TestWakeups: with inotify, appends, rotations and copytruncate are
// seen without any rescan (RescanInterval an hour); without inotify the
// same is seen by polling.
func TestWakeups(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"inotify", Config{RescanInterval: time.Hour}},
		{"polling", Config{NoInotify: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "app.log")
			cfg := tc.cfg
			cfg.Paths = []string{log, filepath.Join(dir, "*.txt")}
			appendFile(t, log, numbered("a", 0, 10))
			h := start(t, t.TempDir(), cfg)
			h.wait(10)
			// Quiet spells longer than two poll intervals: with inotify the
			// source no longer reads on its timer but waits for an event
			// (the rescan is an hour away), each time.
			for i := 10; i < 20; i += 5 {
				time.Sleep(300 * time.Millisecond)
				appendFile(t, log, numbered("a", i, i+5))
				h.wait(i + 5)
			}
			// Rename rotation: the new file is found.
			if err := os.Rename(log, log+".1"); err != nil {
				t.Fatal(err)
			}
			appendFile(t, log, numbered("b", 0, 10))
			h.wait(30)
			// A new file matching a glob.
			appendFile(t, filepath.Join(dir, "new.txt"), numbered("c", 0, 10))
			h.wait(40)
			// Copytruncate of the new app.log.
			if err := os.Truncate(log, 0); err != nil {
				t.Fatal(err)
			}
			appendFile(t, log, numbered("d", 0, 10))
			rs := h.wait(50)
			exactlyOnce(t, rs, numbered("a", 0, 20), numbered("b", 0, 10), numbered("c", 0, 10), numbered("d", 0, 10))
		})
	}
}
