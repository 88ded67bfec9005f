package journal

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// Lines as journalctl 252 prints them (-o json), and edge cases.
var fuzzSeeds = []string{
	`{"_SYSTEMD_UNIT":"ssh.service","_PID":"100","PRIORITY":"6","__CURSOR":"s=73d1f064e7c94cadb0eff8da4419d0c8;i=1;b=0123456789abcdef0123456789abcdef;m=3e8;t=60a24181e4000;x=c0dfdd6eccdb51d4","_HOSTNAME":"comune-srv1","__MONOTONIC_TIMESTAMP":"1000","MESSAGE":"Failed password for root from 192.0.2.0 port 22 ssh2","_BOOT_ID":"0123456789abcdef0123456789abcdef","SYSLOG_IDENTIFIER":"sshd","__REALTIME_TIMESTAMP":"1700000000000000"}`,
	`{"__MONOTONIC_TIMESTAMP":"2000","_BOOT_ID":"0123456789abcdef0123456789abcdef","MESSAGE":[98,105,110,255,0,97,114,121,10,108,105,110,101],"__REALTIME_TIMESTAMP":"1700000000100000","SYSLOG_IDENTIFIER":"weird","__CURSOR":"s=73d1f064e7c94cadb0eff8da4419d0c8;i=4"}`,
	`{"MESSAGE":["first","second"],"SYSLOG_IDENTIFIER":[[97,98],[99]],"__CURSOR":"c"}`,
	`{"MESSAGE":null,"__CURSOR":"c","PRIORITY":"9","SYSLOG_FACILITY":"23"}`,
	`{"MESSAGE":"caf\u00e9 \ud83d\ude00 \ud800 \"q\" \\ \/ \b\f\n\r\t","_COMM":"x y"}`,
	`{}`,
	` { "MESSAGE" : "spaced" , "__CURSOR" : "c" } `,
	`{"MESSAGE":"cut in the middle of the mess`,
	`{"MESSAGE":1e5,"X":true,"Y":false,"Z":-0.5}`,
	`{"MESSAGE":[256]}`,
	`{"MESSAGE":[[[1]]]}`,
	`{"MESSAGE":{"a":"b"}}`,
	`{"MESSAGE":"a"}x`,
	"{\"MESSAGE\":\"bad \xff utf8\"}",
}

// FuzzJournalJSON checks the journal JSON reader on arbitrary lines: it
// never panics; whatever it accepts as a whole entry is valid JSON that
// encoding/json reads to the same values; whatever object encoding/json
// reads, it reads too; a cut entry gives a prefix of the
// message; the syslog line it formats keeps its header well-formed and
// its message within the cap.
func FuzzJournalJSON(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		e, err := parseEntry(b, false)
		var m map[string]any
		jerr := json.Unmarshal(b, &m)
		if err == nil {
			if jerr != nil && utf8.Valid(b) {
				t.Fatalf("accepted what encoding/json refuses (%v): %q", jerr, b)
			}
			if jerr == nil {
				compare(t, b, e, m)
			}
			checkFormat(t, e)
		} else if jerr == nil && m != nil {
			t.Fatalf("refused an object that encoding/json reads: %v: %q", err, b)
		}
		// A cut line: never panics; the message decoded so far is a
		// prefix of the whole message.
		k := int(cut)
		if k > len(b) {
			k = len(b)
		}
		p, perr := parseEntry(b[:k], true)
		if perr != nil {
			return
		}
		checkFormat(t, p)
		if err == nil && bytes.Count(b, []byte(`"MESSAGE"`)) == 1 && e.hasMessage && p.hasMessage && !bytes.HasPrefix(e.message, p.message) {
			t.Fatalf("cut entry's message %q is not a prefix of %q", p.message, e.message)
		}
		if err == nil && bytes.Count(b, []byte(`"__CURSOR"`)) == 1 && p.cursor != "" && p.cursor != e.cursor {
			t.Fatalf("cut entry's cursor %q differs from %q", p.cursor, e.cursor)
		}
	})
}

// compare checks the parsed fields against encoding/json's map.
func compare(t *testing.T, b []byte, e entry, m map[string]any) {
	t.Helper()
	str := func(k string) (string, bool) {
		if !utf8.Valid(b) {
			return "", false // encoding/json replaces invalid UTF-8; the reader keeps it
		}
		switch v := m[k].(type) {
		case string:
			return v, true
		case nil:
			return "", true
		}
		return "", false // arrays, numbers: checked by the unit tests
	}
	if v, ok := str("__CURSOR"); ok && v != e.cursor {
		t.Fatalf("__CURSOR %q, encoding/json %q: %q", e.cursor, v, b)
	}
	if v, ok := str("SYSLOG_IDENTIFIER"); ok && v != e.identifier {
		t.Fatalf("SYSLOG_IDENTIFIER %q, encoding/json %q: %q", e.identifier, v, b)
	}
	if v, ok := str("MESSAGE"); ok {
		if v != string(e.message) || e.hasMessage != (m["MESSAGE"] != nil) {
			t.Fatalf("MESSAGE %q (present %v), encoding/json %q: %q", e.message, e.hasMessage, v, b)
		}
	}
	if want, ok := byteArray(b); ok && !bytes.Equal(want, e.message) {
		t.Fatalf("byte-array MESSAGE is %q, encoding/json %q: %q", e.message, want, b)
	}
}

// byteArray returns MESSAGE's bytes when encoding/json (with UseNumber)
// reads it as an array of integers 0..255 written as plain digits.
func byteArray(b []byte) ([]byte, bool) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if d.Decode(&m) != nil {
		return nil, false
	}
	arr, ok := m["MESSAGE"].([]any)
	if !ok || len(arr) == 0 {
		return nil, false
	}
	out := make([]byte, 0, len(arr))
	for _, x := range arr {
		n, ok := x.(json.Number)
		if !ok {
			return nil, false
		}
		v, err := strconv.ParseUint(string(n), 10, 8)
		if err != nil {
			return nil, false
		}
		out = append(out, byte(v))
	}
	return out, true
}

// checkFormat checks the formatted line's header and message cap.
func checkFormat(t *testing.T, e entry) {
	t.Helper()
	const maxMsg = 100
	line, _ := e.format(nil, maxMsg)
	fields := strings.SplitN(string(line), " ", 8)
	if len(fields) < 7 {
		t.Fatalf("formatted line has %d header fields: %q", len(fields), line)
	}
	for i, f := range fields[1:7] {
		if f == "" {
			t.Fatalf("empty header field %d: %q", i+1, line)
		}
		for j := 0; j < len(f); j++ {
			if f[j] < 33 || f[j] > 126 {
				t.Fatalf("header field %d has byte %#x: %q", i+1, f[j], line)
			}
		}
	}
	msg := line[len(strings.Join(fields[:7], " "))+1:]
	if len(msg) > maxMsg || !bytes.HasPrefix(e.message, msg) {
		t.Fatalf("message %q is not a prefix of %q within %d bytes", msg, e.message, maxMsg)
	}
}

func TestParseEntryCases(t *testing.T) {
	for _, tc := range []struct {
		in      string
		partial bool
		msg     string
		ident   string
		wantErr bool
		cut     bool
	}{
		{in: `{"MESSAGE":["first","second"],"SYSLOG_IDENTIFIER":[[97,98],[99]]}`, msg: "first", ident: "ab"},
		{in: `{"MESSAGE":[104,105]}`, msg: "hi"},
		{in: `{"MESSAGE":"a","MESSAGE":"b"}`, msg: "b"},
		{in: `{"MESSAGE":"x\ud83d\ude00y\ud800z"}`, msg: "x\U0001F600y\uFFFDz"},
		{in: `{"MESSAGE":[256],"SYSLOG_IDENTIFIER":"a"}`, ident: "a"}, // not bytes: absent
		{in: `{"MESSAGE":[1,"a"]}`},
		{in: `{"MESSAGE":[[[104]]]}`, msg: "h"},
		{in: `{"MESSAGE":{"a":[1,{}]},"SYSLOG_IDENTIFIER":"b"}`, ident: "b"},
		{in: `{"MESSAGE":{"a" 1}}`, wantErr: true},
		{in: `{"MESSAGE":[1 2]}`, wantErr: true},
		{in: `{"MESSAGE":"a",}`, wantErr: true},
		{in: `{"MESSAGE":tru}`, wantErr: true},
		{in: `{"MESSAGE":"a"} x`, wantErr: true},
		{in: `{"MESSAGE":"a`, wantErr: true},
		{in: `{"SYSLOG_IDENTIFIER":"sshd","MESSAGE":"hello wor`, partial: true, msg: "hello wor", ident: "sshd", cut: true},
		{in: `{"SYSLOG_IDENTIFIER":"ss`, partial: true, cut: true},
		{in: "{\"MESSAGE\":\"tab\x01\"}", wantErr: true},
	} {
		e, err := parseEntry([]byte(tc.in), tc.partial)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && (string(e.message) != tc.msg || e.identifier != tc.ident || e.cut != tc.cut) {
			t.Errorf("%q: message %q identifier %q cut %v, want %q %q %v", tc.in, e.message, e.identifier, e.cut, tc.msg, tc.ident, tc.cut)
		}
	}
}

func TestFormatCutsOnRuneBoundary(t *testing.T) {
	e := entry{priority: -1, facility: -1, message: []byte("ééé")} // 6 bytes
	line, flags := e.format(nil, 3)
	if string(line) != "<14>1 - - - - - - é" || flags != 1 {
		t.Errorf("got %q flags %v", line, flags)
	}
	e = entry{priority: 2, facility: 10, identifier: "a b\xff", hostname: strings.Repeat("h", 300), message: []byte("m")}
	line, _ = e.format(nil, 10)
	if want := "<82>1 - " + strings.Repeat("h", 255) + " a_b_ - - - m"; string(line) != want {
		t.Errorf("got %q, want %q", line, want)
	}
}

// BenchmarkEntry parses and formats one journalctl JSON line (a typical
// sshd entry of ~600 bytes).
func BenchmarkEntry(b *testing.B) {
	line := []byte(fuzzSeeds[0])
	buf := make([]byte, 0, 512)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		e, err := parseEntry(line, false)
		if err != nil {
			b.Fatal(err)
		}
		buf, _ = e.format(buf[:0], 64<<10)
	}
}
