package syslogin

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

type frame struct {
	msg       string
	truncated bool
}

// readAll returns every frame of a stream and the final error.
func readAll(t testing.TB, r io.Reader, max int) ([]frame, framingMode, error) {
	t.Helper()
	fr := newFrameReader(r, max)
	var out []frame
	for i := 0; i < 1<<16; i++ {
		msg, tr, err := fr.Next()
		if err != nil {
			return out, fr.mode(), err
		}
		if len(msg) > max {
			t.Fatalf("frame of %d bytes exceeds max %d", len(msg), max)
		}
		out = append(out, frame{string(msg), tr})
	}
	t.Fatal("reader did not end")
	return nil, 0, nil
}

func octet(msgs ...string) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString(strconv.Itoa(len(m)) + " " + m)
	}
	return b.String()
}

func TestFrameReader(t *testing.T) {
	long := "<13>1 - h app - - " + strings.Repeat("x", 200)
	for _, tc := range []struct {
		name    string
		in      string
		max     int
		want    []frame
		framing framingMode
		err     error
	}{
		{name: "newline", in: "<13>a\n<14>b\n", want: []frame{{"<13>a", false}, {"<14>b", false}}, framing: framingNewline, err: io.EOF},
		{name: "newline CRLF, NUL and blank lines", in: "<13>a\r\n\n<14>b\x00<15>c", want: []frame{{"<13>a", false}, {"<14>b", false}, {"<15>c", false}}, framing: framingNewline, err: io.EOF},
		{name: "octet counting", in: octet("<13>1 - a", "<14>1 - b\nwith newline"), want: []frame{{"<13>1 - a", false}, {"<14>1 - b\nwith newline", false}}, framing: framingOctet, err: io.EOF},
		{name: "octet counting with LF after frames", in: octet("<13>a") + "\n" + octet("<14>b") + "\n", want: []frame{{"<13>a", false}, {"<14>b", false}}, framing: framingOctet, err: io.EOF},
		{name: "newline connection keeps newline framing for digit lines", in: "<13>a\n5 abcdefgh\n", want: []frame{{"<13>a", false}, {"5 abcdefgh", false}}, framing: framingNewline, err: io.EOF},
		{name: "octet connection that loses sync reads a line", in: octet("<13>a") + "garbage line\n" + octet("<14>b"), want: []frame{{"<13>a", false}, {"garbage line", false}, {"<14>b", false}}, framing: framingOctet, err: io.EOF},
		{name: "octet cut", in: octet(long, "<14>b"), max: 50, want: []frame{{long[:50], true}, {"<14>b", false}}, framing: framingOctet, err: io.EOF},
		{name: "newline cut", in: long + "\n<14>b\n", max: 50, want: []frame{{long[:50], true}, {"<14>b", false}}, framing: framingNewline, err: io.EOF},
		{name: "exactly max with CR", in: "<13>ab\r\n", max: 6, want: []frame{{"<13>ab", false}}, framing: framingNewline, err: io.EOF},
		{name: "incomplete octet frame", in: "20 <13>short", want: nil, framing: framingOctet, err: errIncomplete},
		{name: "incomplete cut octet frame", in: "200 " + long[:100], max: 50, want: nil, framing: framingOctet, err: errIncomplete},
		{name: "leading zero is not a length", in: "05 abc\n", want: []frame{{"05 abc", false}}, framing: framingNewline, err: io.EOF},
		{name: "ten digits is not a length", in: "1234567890 x\n", want: []frame{{"1234567890 x", false}}, framing: framingNewline, err: io.EOF},
		{name: "bare number at end", in: "123", want: []frame{{"123", false}}, framing: framingNewline, err: io.EOF},
		{name: "empty", in: "", framing: framingUnknown, err: io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			max := tc.max
			if max == 0 {
				max = 1024
			}
			// One byte at a time too: frames must not depend on how reads split.
			for _, r := range []io.Reader{strings.NewReader(tc.in), iotest.OneByteReader(strings.NewReader(tc.in))} {
				got, framing, err := readAll(t, r, max)
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				if len(got) != len(tc.want) {
					t.Fatalf("frames %+v, want %+v", got, tc.want)
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Fatalf("frame %d: %+v, want %+v", i, got[i], tc.want[i])
					}
				}
				if framing != tc.framing {
					t.Fatalf("framing %s, want %s", framing, tc.framing)
				}
			}
		})
	}
}

// TestFrameReaderBoundedMemory: a 10 MB line with max 1 KiB never grows the
// message buffer past max.
func TestFrameReaderBoundedMemory(t *testing.T) {
	in := io.MultiReader(strings.NewReader("<13>"), io.LimitReader(repeatReader('a'), 10<<20), strings.NewReader("\n<14>next\n"))
	fr := newFrameReader(in, 1024)
	msg, tr, err := fr.Next()
	if err != nil || !tr || len(msg) != 1024 {
		t.Fatalf("len %d truncated %v err %v", len(msg), tr, err)
	}
	if cap(fr.buf) > 4096 {
		t.Fatalf("buffer grew to %d bytes", cap(fr.buf))
	}
	msg, tr, err = fr.Next()
	if err != nil || tr || string(msg) != "<14>next" {
		t.Fatalf("%q %v %v", msg, tr, err)
	}
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// FuzzFrameReader checks the framing reader's invariants on any stream: it
// ends, never returns a frame longer than max, never an empty frame, flags
// every cut, and splits an octet-counted stream of well-formed frames back
// into exactly its messages.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte("<13>1 2026-01-01T00:00:00Z h app - - - hello\n<14>b\n"), 64)
	f.Add([]byte(octet("<13>1 - h a - - - x", "<14>y\nz")), 16)
	f.Add([]byte("12 <13>abc\x00\r\n5 x"), 480)
	f.Add([]byte("999999999 "), 480)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max <= 0 || max > 1<<16 {
			max = 480
		}
		got, _, err := readAll(t, bytes.NewReader(data), max)
		if !errors.Is(err, io.EOF) && !errors.Is(err, errIncomplete) {
			t.Fatalf("unexpected error %v", err)
		}
		total := 0
		for _, fr := range got {
			if fr.msg == "" && !fr.truncated {
				t.Fatal("empty frame")
			}
			if fr.truncated && len(fr.msg) != max {
				t.Fatalf("cut frame of %d bytes, max %d", len(fr.msg), max)
			}
			total += len(fr.msg)
		}
		if total > len(data) {
			t.Fatalf("%d message bytes out of %d input bytes", total, len(data))
		}
		// Round trip: the first framed-in messages come back as they were.
		msgs := strings.FieldsFunc(string(data), func(r rune) bool { return r == 0 || r == '\n' })
		var wf []string
		for _, m := range msgs {
			if m != "" && m[0] != '\r' {
				wf = append(wf, m)
			}
		}
		if len(wf) == 0 {
			return
		}
		back, framing, err := readAll(t, strings.NewReader(octet(wf...)), len(data)+1)
		if !errors.Is(err, io.EOF) || framing != framingOctet || len(back) != len(wf) {
			t.Fatalf("octet round trip: %d frames (%v, %s), want %d", len(back), err, framing, len(wf))
		}
		for i := range back {
			if back[i].msg != wf[i] && back[i].msg != strings.TrimRight(wf[i], "\r") {
				t.Fatalf("octet round trip frame %d: %q, want %q", i, back[i].msg, wf[i])
			}
		}
	})
}
