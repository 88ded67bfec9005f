package journal

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"

	"github.com/csirt-toscana/platform/agents/internal/source"
	"github.com/csirt-toscana/platform/collector/parsecli"
	"github.com/csirt-toscana/platform/internal/envelope"
	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/testenv"
)

// Environment of the fake journalctl (this test binary run again).
const (
	envFake       = "CSIRT_FAKE_JOURNALCTL"            // path of the JSONL entries it serves
	envFakeArgs   = "CSIRT_FAKE_JOURNALCTL_ARGS"       // file it appends its arguments to (one line per run)
	envFakeExit   = "CSIRT_FAKE_JOURNALCTL_EXIT_AFTER" // exit with status 1 after printing this many entries
	envFakeStderr = "CSIRT_FAKE_JOURNALCTL_STDERR"     // a line to print on stderr at start
	envFakeFail   = "CSIRT_FAKE_JOURNALCTL_FAIL"       // print this on stderr and exit with status 1 at once
)

func TestMain(m *testing.M) {
	if path := os.Getenv(envFake); path != "" {
		os.Exit(fakeJournalctl(path))
	}
	os.Exit(m.Run())
}

// fakeJournalctl serves the entries of a JSONL file like
// `journalctl -o json --follow`: it honours --after-cursor (exit 1 with
// journalctl's message when the cursor is unknown), --since=@S.U,
// --lines=0 and --no-tail, then follows the file for appended entries.
func fakeJournalctl(path string) int {
	var after, since string
	atEnd := false
	for _, a := range os.Args[1:] {
		switch {
		case strings.HasPrefix(a, "--after-cursor="):
			after = strings.TrimPrefix(a, "--after-cursor=")
		case strings.HasPrefix(a, "--since="):
			since = strings.TrimPrefix(a, "--since=")
		case a == "--lines=0":
			atEnd = true
		}
	}
	if msg := os.Getenv(envFakeStderr); msg != "" {
		fmt.Fprintln(os.Stderr, msg)
	}
	if msg := os.Getenv(envFakeFail); msg != "" {
		logArgs()
		fmt.Fprint(os.Stderr, msg) // no final newline: the source must still see it
		return 1
	}
	exitAfter, _ := strconv.Atoi(os.Getenv(envFakeExit))
	read := func() []string {
		b, _ := os.ReadFile(path)
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
		return lines
	}
	lines := read()
	start := 0
	switch {
	case after != "":
		start = -1
		for i, l := range lines {
			var e struct {
				C string `json:"__CURSOR"`
			}
			if json.Unmarshal([]byte(l), &e) == nil && e.C == after {
				start = i + 1
			}
		}
		if start < 0 {
			logArgs()
			fmt.Fprintln(os.Stderr, "Failed to seek to cursor: Invalid argument")
			return 1
		}
	case since != "":
		sec, _ := strconv.ParseFloat(strings.TrimPrefix(since, "@"), 64)
		start = len(lines)
		for i, l := range lines {
			var e struct {
				T string `json:"__REALTIME_TIMESTAMP"`
			}
			_ = json.Unmarshal([]byte(l), &e)
			if us, _ := strconv.ParseInt(e.T, 10, 64); float64(us)/1e6 >= sec-1e-7 {
				start = i
				break
			}
		}
	case atEnd:
		start = len(lines)
	}
	logArgs()
	w := bufio.NewWriter(os.Stdout)
	printed := 0
	for next := start; ; {
		for ; next < len(lines); next++ {
			if exitAfter > 0 && printed == exitAfter {
				_ = w.Flush()
				fmt.Fprintln(os.Stderr, "fake journalctl: exiting as told")
				return 1
			}
			fmt.Fprintln(w, lines[next])
			printed++
		}
		_ = w.Flush()
		time.Sleep(5 * time.Millisecond)
		lines = read()
	}
}

// logArgs appends the fake's arguments to the file named by envFakeArgs.
func logArgs() {
	if f := os.Getenv(envFakeArgs); f != "" {
		af, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			fmt.Fprintln(af, strings.Join(os.Args[1:], " "))
			_ = af.Close()
		}
	}
}

// jentry is a journal entry as journalctl prints it.
func jentry(i int, msg string) string {
	m := map[string]any{
		"__CURSOR":             fmt.Sprintf("s=abc;i=%x;b=0123;m=%x;t=%x;x=ff", i, i, i),
		"__REALTIME_TIMESTAMP": strconv.FormatInt(1700000000000000+int64(i)*1000, 10),
		"_HOSTNAME":            "srv-comune",
		"SYSLOG_IDENTIFIER":    "sshd",
		"_PID":                 strconv.Itoa(1000 + i),
		"PRIORITY":             "6",
		"SYSLOG_FACILITY":      "4",
		"_SYSTEMD_UNIT":        "ssh.service",
		"MESSAGE":              msg,
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func appendLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if _, err := fmt.Fprintln(f, l); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// harness runs a Source and collects what it emits.
type harness struct {
	t      *testing.T
	src    *Source
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	recs []source.Record
}

func start(t *testing.T, state string, cfg Config) *harness {
	t.Helper()
	if cfg.RestartDelay == 0 {
		cfg.RestartDelay = 10 * time.Millisecond
	}
	log := logrus.New()
	log.SetOutput(testWriter{t})
	src, err := NewSource("test", cfg, source.Deps{StateDir: state, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, src: src, cancel: cancel, done: make(chan struct{})}
	out := make(chan source.Record, 4)
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

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (h *harness) stop() {
	h.cancel()
	<-h.done
}

// wait waits until n records arrived and returns them.
func (h *harness) wait(n int) []source.Record {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		got := len(h.recs)
		h.mu.Unlock()
		if got >= n {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.recs) < n {
		h.t.Fatalf("got %d records, want %d; status %+v", len(h.recs), n, h.src.Status())
	}
	return append([]source.Record(nil), h.recs...)
}

// waitStatus waits until the status satisfies ok.
func (h *harness) waitStatus(ok func(source.Status) bool) source.Status {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var st source.Status
	for time.Now().Before(deadline) {
		st = h.src.Status()[0]
		if ok(st) {
			return st
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("status never reached the expected state: %+v", st)
	return st
}

// fake selects the fake journalctl serving entries and returns the file
// its arguments are logged to.
func fake(t *testing.T, entries string) (args string) {
	t.Helper()
	args = filepath.Join(t.TempDir(), "args")
	t.Setenv(envFake, entries)
	t.Setenv(envFakeArgs, args)
	return args
}

func readArgs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// messages returns the message numbers ("line N") of records.
func messages(t *testing.T, recs []source.Record) []int {
	t.Helper()
	var out []int
	for _, r := range recs {
		_, msg, ok := strings.Cut(string(r.Data), " - - ")
		if !ok {
			t.Fatalf("record is not an RFC 5424 line: %q", r.Data)
		}
		n, err := strconv.Atoi(strings.TrimPrefix(msg, "line "))
		if err != nil {
			t.Fatalf("unexpected message %q", msg)
		}
		out = append(out, n)
	}
	return out
}

func wantRange(t *testing.T, got []int, from, to int) {
	t.Helper()
	if len(got) != to-from+1 {
		t.Fatalf("got entries %v, want %d..%d", got, from, to)
	}
	for i, n := range got {
		if n != from+i {
			t.Fatalf("got entries %v, want %d..%d in order, once each", got, from, to)
		}
	}
}

func TestResumeAfterAckWithoutLossOrDuplicates(t *testing.T) {
	dir := t.TempDir()
	entries := filepath.Join(dir, "entries.jsonl")
	for i := 1; i <= 10; i++ {
		appendLines(t, entries, jentry(i, fmt.Sprintf("line %d", i)))
	}
	argsLog := fake(t, entries)
	exe, _ := os.Executable()
	state := filepath.Join(dir, "state")
	cfg := Config{Command: exe, StartAt: "beginning", Units: []string{"ssh.service"}}

	h := start(t, state, cfg)
	recs := h.wait(10)
	wantRange(t, messages(t, recs), 1, 10)
	r := recs[0]
	if want := "<38>1 2023-11-14T22:13:20.001000Z srv-comune sshd 1001 - - line 1"; string(r.Data) != want {
		t.Errorf("data = %q, want %q", r.Data, want)
	}
	if !r.Time.Equal(time.UnixMicro(1700000000001000)) || r.Stream != "journal:test" || r.Kind != envelope.KindRawLine || r.Flags != 0 {
		t.Errorf("record = %+v", r)
	}
	// Acknowledge up to entry 6, in two calls and out of order.
	if err := h.src.Ack(recs[5].Cursor, recs[2].Cursor); err != nil {
		t.Fatal(err)
	}
	if err := h.src.Ack(recs[1].Cursor); err != nil { // stale: ignored
		t.Fatal(err)
	}
	if st := h.src.Status()[0]; st.Acked != 6 || st.Read != 10 || st.State != source.StateReading {
		t.Errorf("status = %+v", st)
	}
	h.stop()
	for i := 11; i <= 15; i++ {
		appendLines(t, entries, jentry(i, fmt.Sprintf("line %d", i)))
	}

	h2 := start(t, state, cfg)
	h2.wait(9)
	time.Sleep(50 * time.Millisecond) // nothing more may come
	recs = h2.wait(9)
	wantRange(t, messages(t, recs), 7, 15)
	args := readArgs(t, argsLog)
	if len(args) != 2 {
		t.Fatalf("journalctl ran %d times, want 2: %q", len(args), args)
	}
	if !strings.Contains(args[0], "--no-tail") || strings.Contains(args[0], "--after-cursor") ||
		!strings.Contains(args[0], "--unit=ssh.service") || !strings.Contains(args[0], "-o json") || !strings.Contains(args[0], "--follow") {
		t.Errorf("first run's arguments: %s", args[0])
	}
	var e struct {
		C string `json:"__CURSOR"`
	}
	_ = json.Unmarshal([]byte(jentry(6, "")), &e)
	if !strings.Contains(args[1], "--after-cursor="+e.C) {
		t.Errorf("second run does not resume after entry 6's cursor %q: %s", e.C, args[1])
	}
}

func TestRestartsJournalctlWhenItExits(t *testing.T) {
	dir := t.TempDir()
	entries := filepath.Join(dir, "entries.jsonl")
	for i := 1; i <= 10; i++ {
		appendLines(t, entries, jentry(i, fmt.Sprintf("line %d", i)))
	}
	argsLog := fake(t, entries)
	t.Setenv(envFakeExit, "3")
	exe, _ := os.Executable()
	h := start(t, filepath.Join(dir, "state"), Config{Command: exe, StartAt: "beginning"})
	recs := h.wait(10)
	time.Sleep(50 * time.Millisecond)
	recs = append(recs[:0:0], h.wait(10)...)
	wantRange(t, messages(t, recs), 1, 10)
	if runs := len(readArgs(t, argsLog)); runs != 4 {
		t.Errorf("journalctl ran %d times, want 4 (3 entries per run)", runs)
	}
}

func TestFailingJournalctlIsRetriedAndReported(t *testing.T) {
	dir := t.TempDir()
	argsLog := fake(t, filepath.Join(dir, "entries.jsonl"))
	t.Setenv(envFakeFail, "Failed to open journal: Bad message")
	exe, _ := os.Executable()
	h := start(t, filepath.Join(dir, "state"), Config{Command: exe, RestartDelay: 5 * time.Millisecond, MaxRestartDelay: 20 * time.Millisecond})
	st := h.waitStatus(func(st source.Status) bool { return st.State == source.StateError })
	if !strings.Contains(st.Err, "Failed to open journal: Bad message") || !strings.Contains(st.Err, "exit status 1") {
		t.Errorf("status does not say why journalctl failed: %+v", st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(readArgs(t, argsLog)) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("journalctl was not started again")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStartAtEndReadsOnlyNewEntries(t *testing.T) {
	dir := t.TempDir()
	entries := filepath.Join(dir, "entries.jsonl")
	for i := 1; i <= 3; i++ {
		appendLines(t, entries, jentry(i, fmt.Sprintf("line %d", i)))
	}
	argsLog := fake(t, entries)
	exe, _ := os.Executable()
	h := start(t, filepath.Join(dir, "state"), Config{Command: exe})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(argsLog); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("journalctl never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	appendLines(t, entries, jentry(4, "line 4"), jentry(5, "line 5"))
	wantRange(t, messages(t, h.wait(2)), 4, 5)
	if args := readArgs(t, argsLog); !strings.Contains(args[0], "--lines=0") {
		t.Errorf("arguments: %s", args[0])
	}
}

func TestUnknownCursorResumesAtItsTime(t *testing.T) {
	dir := t.TempDir()
	entries := filepath.Join(dir, "entries.jsonl")
	for i := 1; i <= 5; i++ {
		appendLines(t, entries, jentry(i, fmt.Sprintf("line %d", i)))
	}
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	// A checkpoint whose cursor the journal no longer has, written at
	// entry 3's time.
	if err := writeCheckpoint(filepath.Join(state, "journal-test.json"), position{Cursor: "s=vacuumed;i=1", Realtime: 1700000000003000}); err != nil {
		t.Fatal(err)
	}
	argsLog := fake(t, entries)
	exe, _ := os.Executable()
	h := start(t, state, Config{Command: exe})
	wantRange(t, messages(t, h.wait(3)), 3, 5)
	args := readArgs(t, argsLog)
	if len(args) != 2 || !strings.Contains(args[0], "--after-cursor=s=vacuumed;i=1") || !strings.Contains(args[1], "--since=@1700000000.003000") {
		t.Errorf("arguments: %q", args)
	}
}

func TestMissingJournalctlIsReported(t *testing.T) {
	h := start(t, t.TempDir(), Config{Command: filepath.Join(t.TempDir(), "journalctl")})
	st := h.waitStatus(func(st source.Status) bool { return st.State == source.StateError })
	if !strings.Contains(st.Err, "journalctl not found") || !strings.Contains(st.Err, "install") {
		t.Errorf("status: %+v", st)
	}
}

func TestPermissionProblemIsReported(t *testing.T) {
	dir := t.TempDir()
	entries := filepath.Join(dir, "entries.jsonl")
	appendLines(t, entries, jentry(1, "line 1"))
	fake(t, entries)
	t.Setenv(envFakeStderr, "Hint: You are currently not seeing messages from other users and the system.")
	exe, _ := os.Executable()
	h := start(t, filepath.Join(dir, "state"), Config{Command: exe, StartAt: "beginning"})
	wantRange(t, messages(t, h.wait(1)), 1, 1)
	st := h.waitStatus(func(st source.Status) bool { return st.State == source.StateError })
	if !strings.Contains(st.Err, "systemd-journal group") {
		t.Errorf("status: %+v", st)
	}
}

func TestOversizedEntryAndBinaryMessage(t *testing.T) {
	dir := t.TempDir()
	entries := filepath.Join(dir, "entries.jsonl")
	huge := strings.Repeat("x", 100<<10)
	// __CURSOR first, as a cut line keeps only its start.
	big := `{"__CURSOR":"s=abc;i=big","__REALTIME_TIMESTAMP":"1700000000500000","SYSLOG_IDENTIFIER":"app","MESSAGE":"` + huge + `","_PID":"1"}`
	bin := `{"__CURSOR":"s=abc;i=bin","__REALTIME_TIMESTAMP":"1700000000600000","_COMM":"weird","_TRANSPORT":"kernel","PRIORITY":"3","MESSAGE":[98,105,110,255,0,10,108]}`
	appendLines(t, entries, big, "not json at all", bin, jentry(7, "line 7"))
	fake(t, entries)
	exe, _ := os.Executable()
	h := start(t, filepath.Join(dir, "state"), Config{Command: exe, StartAt: "beginning", MaxLineBytes: 1000, MaxEntryBytes: 4096})
	recs := h.wait(3)
	if len(recs) != 3 {
		t.Fatalf("got %d records, want 3 (the line that is not JSON is skipped)", len(recs))
	}
	r := recs[0]
	if r.Flags != envelope.FlagTruncated || !strings.HasPrefix(string(r.Data), "<14>1 2023-11-14T22:13:20.500000Z - app - - - xxx") ||
		len(r.Data) > 1000+100 || !strings.HasPrefix(r.Cursor.Token, "s=abc;i=big\n") {
		t.Errorf("oversized entry gave %d bytes %.80q flags %v token %q", len(r.Data), r.Data, r.Flags, r.Cursor.Token)
	}
	r = recs[1]
	if want := "<3>1 2023-11-14T22:13:20.600000Z - weird - - - bin\xff\x00\nl"; string(r.Data) != want || r.Flags != envelope.FlagInvalidUTF8 {
		t.Errorf("binary entry gave %q flags %v, want %q", r.Data, r.Flags, want)
	}
	wantRange(t, messages(t, recs[2:]), 7, 7)
}

func TestRegistryAndConfig(t *testing.T) {
	state := t.TempDir()
	s, err := source.Default.New(Kind, "sys", source.StrictYAML([]byte("units: [ssh.service]\nstart_at: beginning\n")), source.Deps{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); len(st) != 1 || st[0].Path != "journal units=ssh.service" || st[0].State != source.StateWaiting {
		t.Errorf("status: %+v", st)
	}
	for _, bad := range []string{
		"unit: [x]\n",                 // unknown key
		"start_at: middle\n",          // bad value
		"start_at: end\nsince: -1h\n", // contradiction
		"units: [\"--all\"]\n",        // not a unit
		"max_line_bytes: 300000\n",    // above the record cap
		"directory: /x\nfiles: [/y]\n",
	} {
		if _, err := source.Default.New(Kind, "sys", source.StrictYAML([]byte(bad)), source.Deps{StateDir: state}); err == nil {
			t.Errorf("config %q was accepted", bad)
		}
	}
}

// TestCollectorParsesJournalLines feeds lines of the documented format to
// the collector's parsers: sshd, sudo and PAM messages must give their
// datasets, with the header's time, host and process.
func TestCollectorParsesJournalLines(t *testing.T) {
	mk := func(ident, pid, msg string) string {
		e := entry{priority: 6, facility: 4, hasRealtime: true, realtime: 1700000000123456,
			hostname: "srv-comune", identifier: ident, pid: pid, message: []byte(msg), hasMessage: true}
		b, _ := e.format(nil, 1<<16)
		return string(b)
	}
	lines := []string{
		mk("sshd", "812", "Failed password for invalid user admin from 203.0.113.7 port 52144 ssh2"),
		mk("sudo", "900", "   mario : TTY=pts/0 ; PWD=/home/mario ; USER=root ; COMMAND=/usr/bin/id"),
		mk("sshd", "813", "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.7  user=root"),
	}
	var evs []event.Event
	err := parsecli.ReadEvents(strings.NewReader(strings.Join(lines, "\n")+"\n"), parsecli.Options{}, func(_ int, ev event.Event) error {
		evs = append(evs, ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("got %d events, want 3", len(evs))
	}
	want := []struct{ dataset, field, value string }{
		{"sshd", "source.ip", "203.0.113.7"},
		{"sudo", "user.name", "mario"},
		{"sshd", "source.ip", "203.0.113.7"},
	}
	for i, w := range want {
		ev := evs[i]
		if ev.String("event.dataset") != w.dataset || fmt.Sprint(ev[w.field]) != w.value {
			t.Errorf("line %d: dataset %q %s=%v, want %q %s=%s (event %v)", i, ev.String("event.dataset"), w.field, ev[w.field], w.dataset, w.field, w.value, ev)
		}
		if ts, ok := ev["@timestamp"].(time.Time); !ok || !ts.Equal(time.UnixMicro(1700000000123456)) {
			t.Errorf("line %d: @timestamp %v", i, ev["@timestamp"])
		}
		if ev.String("host.hostname") != "srv-comune" {
			t.Errorf("line %d: host.hostname %q", i, ev.String("host.hostname"))
		}
	}
}

// exportEntry writes one entry in the journal export format, which
// systemd-journal-remote turns into a journal file.
func exportEntry(b *strings.Builder, i int, ident, unit string, msg []byte) {
	fmt.Fprintf(b, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=0123456789abcdef0123456789abcdef\n", 1700000000000000+int64(i)*1000, 1000+i)
	fmt.Fprintf(b, "_HOSTNAME=srv-comune\nSYSLOG_IDENTIFIER=%s\n_PID=%d\nPRIORITY=5\nSYSLOG_FACILITY=10\n", ident, 100+i)
	if unit != "" {
		fmt.Fprintf(b, "_SYSTEMD_UNIT=%s\n", unit)
	}
	if bytes.ContainsAny(msg, "\n\x00") || !utf8.Valid(msg) {
		n := len(msg)
		b.WriteString("MESSAGE\n")
		b.Write([]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24), 0, 0, 0, 0})
		b.Write(msg)
		b.WriteString("\n")
	} else {
		fmt.Fprintf(b, "MESSAGE=%s\n", msg)
	}
	b.WriteString("\n")
}

// writeJournal appends entries to a journal file with systemd-journal-remote.
func writeJournal(t *testing.T, remote, file, export string) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "entries.export")
	if err := os.WriteFile(in, []byte(export), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(remote, "--output="+file, in).CombinedOutput(); err != nil {
		t.Fatalf("systemd-journal-remote: %v: %s", err, out)
	}
}

// TestRealJournalctl runs the real journalctl on a journal file written by
// systemd-journal-remote (Debian package systemd-journal-remote): entries,
// a binary message, the unit filter, resume after Ack, and following
// entries appended while it runs.
func TestRealJournalctl(t *testing.T) {
	jctl, err := exec.LookPath("journalctl")
	remote := "/lib/systemd/systemd-journal-remote"
	if _, rerr := os.Stat(remote); err != nil || rerr != nil {
		msg := "journalctl and " + remote + " are needed (apt-get install systemd systemd-journal-remote)"
		testenv.Unavailable(t, msg)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "test.journal") // journal files must end in .journal
	var b strings.Builder
	exportEntry(&b, 1, "sshd", "ssh.service", []byte("line 1"))
	exportEntry(&b, 2, "cron", "cron.service", []byte("line 2"))
	exportEntry(&b, 3, "sshd", "ssh.service", []byte("line 3"))
	exportEntry(&b, 4, "weird", "", []byte("bin\xff\x00\nx"))
	writeJournal(t, remote, file, b.String())

	state := filepath.Join(dir, "state")
	cfg := Config{Command: jctl, Files: []string{file}, StartAt: "beginning"}
	h := start(t, state, cfg)
	recs := h.wait(4)
	if want := "<85>1 2023-11-14T22:13:20.001000Z srv-comune sshd 101 - - line 1"; string(recs[0].Data) != want {
		t.Errorf("first entry: %q, want %q", recs[0].Data, want)
	}
	if want := "<85>1 2023-11-14T22:13:20.004000Z srv-comune weird 104 - - bin\xff\x00\nx"; string(recs[3].Data) != want || recs[3].Flags != envelope.FlagInvalidUTF8 {
		t.Errorf("binary entry: %q flags %v, want %q", recs[3].Data, recs[3].Flags, want)
	}
	if err := h.src.Ack(recs[1].Cursor); err != nil {
		t.Fatal(err)
	}
	h.stop()

	// Resume after entry 2; entries appended while it runs arrive too.
	h = start(t, state, cfg)
	h.wait(2)
	var b2 strings.Builder
	exportEntry(&b2, 5, "sshd", "ssh.service", []byte("line 5"))
	writeJournal(t, remote, file, b2.String())
	h.wait(3)
	time.Sleep(100 * time.Millisecond)
	recs = h.wait(3)
	if len(recs) != 3 || !strings.HasSuffix(string(recs[0].Data), " line 3") || recs[1].Flags != envelope.FlagInvalidUTF8 ||
		!strings.HasSuffix(string(recs[2].Data), " line 5") {
		for _, r := range recs {
			t.Logf("%q", r.Data)
		}
		t.Fatalf("after resume: got %d records, want entries 3, 4, 5", len(recs))
	}
	h.stop()

	// The unit filter, from the beginning of a fresh state.
	h = start(t, filepath.Join(dir, "state2"), Config{Command: jctl, Files: []string{file}, StartAt: "beginning", Units: []string{"ssh.service"}})
	h.wait(3)
	time.Sleep(100 * time.Millisecond)
	recs = h.wait(3)
	if len(recs) != 3 {
		t.Fatalf("unit filter: got %d records, want 3", len(recs))
	}
	for _, r := range recs {
		if !strings.Contains(string(r.Data), " sshd ") || r.Origin != "journal:ssh.service" {
			t.Errorf("unit filter let through %q (origin %q)", r.Data, r.Origin)
		}
	}
}
