package syslogin

import (
	"bufio"
	"errors"
	"io"
)

// framingMode is how messages are delimited on a stream connection (RFC 6587).
type framingMode int

// The framings of RFC 6587, detected from a connection's first frame.
const (
	framingUnknown framingMode = iota // no frame read yet
	framingOctet                      // "MSG-LEN SP SYSLOG-MSG", RFC 6587 3.4.1 (and RFC 5425)
	framingNewline                    // message then LF (or NUL), RFC 6587 3.4.2
)

func (f framingMode) String() string {
	switch f {
	case framingOctet:
		return "octet-counting"
	case framingNewline:
		return "newline"
	}
	return "unknown"
}

// maxLenDigits bounds the MSG-LEN of an octet-counted frame: nine digits
// (just under 1 GB) are more than any sender needs; a longer number means
// the stream is not octet-counted.
const maxLenDigits = 9

// errIncomplete is returned when the stream ends inside an octet-counted
// frame: its start was read but not MSG-LEN bytes.
var errIncomplete = errors.New("stream ended inside an octet-counted frame")

// frameReader splits a byte stream into syslog messages. The framing is
// detected on the first frame: a frame that starts with a non-zero digit
// followed by at most nine digits and a space is octet-counted, anything
// else is newline-terminated (LF, or NUL as some senders use). Once a
// connection is newline-framed it stays so (a message without PRI may start
// with digits); on an octet-counted connection a frame that does not start
// with a valid length is read as newline-terminated (the sender lost sync
// or mixes framings) rather than refused.
//
// Memory is bounded: a message longer than max is cut to max bytes and
// reported as truncated; the rest of its frame is read and discarded.
type frameReader struct {
	r       *bufio.Reader
	max     int
	framing framingMode
	buf     []byte
}

// newFrameReader reads frames from r; max (> 0) is the longest message kept.
func newFrameReader(r io.Reader, max int) *frameReader {
	// The read buffer does not depend on max: messages are assembled in
	// buf, which grows only as far as the longest message actually seen.
	return &frameReader{r: bufio.NewReaderSize(r, 16<<10), max: max}
}

// mode returns the framing detected so far.
func (f *frameReader) mode() framingMode { return f.framing }

// Next returns the next non-empty message. The slice is valid until the
// next call. At the end of the stream it returns io.EOF (a last
// newline-framed message without its terminator is still returned first),
// or errIncomplete when the stream ended inside an octet-counted frame. Any
// other error is the underlying reader's.
func (f *frameReader) Next() (msg []byte, truncated bool, err error) {
	for {
		if err := f.skipSeparators(); err != nil {
			return nil, false, err
		}
		n, ok, err := f.octetLength()
		if err != nil {
			return nil, false, err
		}
		if ok {
			if f.framing == framingUnknown {
				f.framing = framingOctet
			}
			return f.readCounted(n)
		}
		if f.framing == framingUnknown {
			f.framing = framingNewline
		}
		msg, truncated, err = f.readLine()
		if len(msg) == 0 && !truncated && err == nil {
			continue
		}
		if len(msg) > 0 || truncated {
			return msg, truncated, nil // an error, if any, comes back on the next call
		}
		return nil, false, err
	}
}

// skipSeparators drops the LF, CR and NUL bytes between frames (an
// octet-counting sender that also appends LF, blank lines).
func (f *frameReader) skipSeparators() error {
	for {
		b, err := f.r.Peek(1)
		if err != nil {
			return err
		}
		switch b[0] {
		case '\n', '\r', 0:
			_, _ = f.r.Discard(1)
		default:
			return nil
		}
	}
}

// octetLength reports whether the next frame starts with "MSG-LEN SP" and
// consumes that prefix if so. Nothing is consumed otherwise.
func (f *frameReader) octetLength() (int, bool, error) {
	if f.framing == framingNewline {
		return 0, false, nil
	}
	n := 0
	for i := 0; ; i++ {
		b, err := f.r.Peek(i + 1)
		if err != nil {
			if errors.Is(err, io.EOF) && i > 0 {
				return 0, false, nil // a bare number at the end: a newline-framed message
			}
			return 0, false, err
		}
		c := b[i]
		switch {
		case c >= '0' && c <= '9' && (i > 0 || c != '0') && i < maxLenDigits:
			n = n*10 + int(c-'0')
		case c == ' ' && i > 0:
			_, _ = f.r.Discard(i + 1)
			return n, true, nil
		default:
			return 0, false, nil
		}
	}
}

// readCounted reads an octet-counted message of n bytes.
func (f *frameReader) readCounted(n int) ([]byte, bool, error) {
	keep := min(n, f.max)
	f.buf = growTo(f.buf, keep)
	if _, err := io.ReadFull(f.r, f.buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, false, errIncomplete
		}
		return nil, false, err
	}
	if rest := n - keep; rest > 0 {
		if d, err := f.r.Discard(rest); err != nil {
			if d < rest && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				return nil, false, errIncomplete
			}
			return nil, false, err
		}
		return f.buf, true, nil
	}
	return f.buf, false, nil
}

// readLine reads up to LF or NUL. A trailing CR is dropped. Bytes beyond
// max are read and discarded; truncated then reports the cut.
func (f *frameReader) readLine() ([]byte, bool, error) {
	f.buf = f.buf[:0]
	total := 0 // bytes of the message seen, kept or not
	var last byte
	for {
		chunk, err := f.r.Peek(max(f.r.Buffered(), 1))
		if len(chunk) == 0 {
			return f.end(total, last, err)
		}
		end, found := len(chunk), false
		for i, c := range chunk {
			if c == '\n' || c == 0 {
				end, found = i, true
				break
			}
		}
		if room := f.max - len(f.buf); room > 0 {
			f.buf = append(f.buf, chunk[:min(end, room)]...)
		}
		if end > 0 {
			last = chunk[end-1]
		}
		total += end
		consumed := end
		if found {
			consumed++
		}
		_, _ = f.r.Discard(consumed)
		if found {
			return f.end(total, last, nil)
		}
	}
}

// cut reports whether a line of total bytes ending in last was longer than
// max (a trailing CR does not count).
func (f *frameReader) cut(total int, last byte) bool {
	if last == '\r' {
		total--
	}
	return total > f.max
}

// end returns the line read: a trailing CR is dropped unless the line was
// cut (then the kept part is exactly max bytes).
func (f *frameReader) end(total int, last byte, err error) ([]byte, bool, error) {
	if f.cut(total, last) {
		return f.buf, true, err
	}
	if n := len(f.buf); n > 0 && f.buf[n-1] == '\r' {
		f.buf = f.buf[:n-1]
	}
	return f.buf, false, err
}

func growTo(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}
