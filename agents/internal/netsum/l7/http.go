package l7

import (
	"bytes"
	"errors"
	"strings"
)

// HTTPRequest holds the request line and the summary headers of an
// HTTP/1.x request head. Version is the text after "HTTP/" ("1.1").
// ContentLength is -1 when the header is absent or invalid; Chunked reports
// a chunked Transfer-Encoding (which takes precedence over Content-Length).
// String fields are capped at MaxFieldLen bytes (Host at 255) and bytes
// outside printable ASCII are escaped as \xHH.
type HTTPRequest struct {
	Method, URI, Version, Host, UserAgent string
	ContentLength                         int64
	Chunked                               bool
}

// HTTPResponse holds the status line and the framing headers of an
// HTTP/1.x response head; ContentLength and Chunked as in HTTPRequest.
type HTTPResponse struct {
	Version       string
	StatusCode    int
	Reason        string
	ContentLength int64
	Chunked       bool
}

var (
	errHTTPHeadTooLarge = &decodeError{msg: "HTTP head larger than 8 KiB"}
	errHTTPMethod       = &decodeError{msg: "HTTP request line does not start with a method token"}
	errHTTPRequestLine  = &decodeError{msg: "HTTP request line is not \"METHOD URI HTTP/x.y\""}
	errHTTPStatusLine   = &decodeError{msg: "HTTP status line is not \"HTTP/x.y NNN reason\""}
	errHTTPTooManyHdrs  = &decodeError{msg: "HTTP head has more than 100 header lines"}
)

// httpMethods are interned so that parsing a common method does not
// allocate; they also drive LooksLikeHTTPRequest.
var httpMethods = []string{
	"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "TRACE",
	"PATCH", "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK",
	"UNLOCK", "SEARCH", "REPORT", "MKCALENDAR", "SUBSCRIBE", "NOTIFY",
	"M-SEARCH", "PRI",
}

const maxMethodLen = 32

// isTChar reports whether c is an RFC 9110 token character.
func isTChar(c byte) bool {
	if isAlnum(c) {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// headEnd returns the length of the head (start line and headers,
// including the terminating empty line) at the start of stream, or an
// error: ErrIncomplete when the stream ends first, errHTTPHeadTooLarge
// when no end is found within MaxHTTPHeaderBytes.
func headEnd(stream []byte) (int, error) {
	limit := min(len(stream), MaxHTTPHeaderBytes)
	b := stream[:limit]
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
		// An empty line is "\n" or "\r\n" right after the previous '\n'.
		if i < len(b) && b[i] == '\n' {
			return i + 1, nil
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2, nil
		}
	}
	if len(stream) >= MaxHTTPHeaderBytes {
		return 0, errHTTPHeadTooLarge
	}
	return 0, ErrIncomplete
}

// nextLine splits the first line off b, without its CR LF or LF.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line = b[:i]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, b[i+1:]
}

// parseVersion checks "HTTP/x.y" and returns "x.y" (interned for 1.0/1.1).
func parseVersion(b []byte) (string, bool) {
	if len(b) != 8 || string(b[:5]) != "HTTP/" || !isDigit(b[5]) || b[6] != '.' || !isDigit(b[7]) {
		return "", false
	}
	switch string(b[5:]) {
	case "1.1":
		return "1.1", true
	case "1.0":
		return "1.0", true
	}
	return string(b[5:]), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// ParseHTTPRequest decodes the request line and headers at the start of
// stream (client-to-server bytes). It returns the request and the number
// of bytes consumed up to and including the empty line that ends the
// head; the body, if any, follows (see ContentLength and Chunked).
// ErrIncomplete means the head is not complete yet; an invalid request
// line is reported as soon as it is seen.
func ParseHTTPRequest(stream []byte) (HTTPRequest, int, error) {
	req := HTTPRequest{ContentLength: -1}
	// Check the method before waiting for the whole head, so that non-HTTP
	// streams are rejected early.
	m := 0
	for m < len(stream) && m <= maxMethodLen && isTChar(stream[m]) {
		m++
	}
	if m == len(stream) && m <= maxMethodLen {
		return req, 0, ErrIncomplete
	}
	if m == 0 || m > maxMethodLen || stream[m] != ' ' {
		return req, 0, errHTTPMethod
	}
	if line, _ := nextLine(stream); len(line) < len(stream) {
		if _, _, _, ok := splitRequestLine(line); !ok {
			return req, 0, errHTTPRequestLine
		}
	}
	n, err := headEnd(stream)
	if err != nil {
		return req, 0, err
	}
	line, rest := nextLine(stream[:n])
	method, uri, version, ok := splitRequestLine(line)
	if !ok {
		return req, 0, errHTTPRequestLine
	}
	req.Method = internMethod(method)
	req.URI = escapedString(uri, MaxFieldLen)
	req.Version = version
	err = scanHeaders(rest, func(name, value []byte) {
		switch {
		case req.Host == "" && asciiEqualFold(name, "host"):
			req.Host = escapedString(value, MaxDNSNameLen)
		case req.UserAgent == "" && asciiEqualFold(name, "user-agent"):
			req.UserAgent = escapedString(value, MaxFieldLen)
		default:
			framingHeader(name, value, &req.ContentLength, &req.Chunked)
		}
	})
	if err != nil {
		return req, 0, err
	}
	return req, n, nil
}

// splitRequestLine splits "METHOD SP URI SP HTTP/x.y".
func splitRequestLine(line []byte) (method, uri []byte, version string, ok bool) {
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 {
		return nil, nil, "", false
	}
	method, uri = line[:sp1], line[sp1+1:sp2]
	for _, c := range method {
		if !isTChar(c) {
			return nil, nil, "", false
		}
	}
	for _, c := range uri {
		if c <= ' ' || c == 0x7f {
			return nil, nil, "", false
		}
	}
	version, ok = parseVersion(line[sp2+1:])
	return method, uri, version, ok
}

func internMethod(m []byte) string {
	for _, s := range httpMethods {
		if string(m) == s {
			return s
		}
	}
	return string(m)
}

// scanHeaders calls fn for each "name: value" line of a header block
// (which ends with an empty line). Lines without a colon and obsolete line
// folding are skipped; values are trimmed of spaces and tabs.
func scanHeaders(b []byte, fn func(name, value []byte)) error {
	count := 0
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if len(line) == 0 {
			return nil
		}
		count++
		if count > MaxHTTPHeaders {
			return errHTTPTooManyHdrs
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // obs-fold continuation
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		fn(bytes.TrimRight(line[:colon], " \t"), bytes.Trim(line[colon+1:], " \t"))
	}
	return nil
}

// framingHeader records Content-Length and chunked Transfer-Encoding.
func framingHeader(name, value []byte, contentLength *int64, chunked *bool) {
	switch {
	case asciiEqualFold(name, "content-length"):
		if *contentLength < 0 {
			*contentLength = parseContentLength(value)
		}
	case asciiEqualFold(name, "transfer-encoding"):
		// "chunked" must be the final coding.
		v := bytes.TrimRight(value, " \t")
		if i := bytes.LastIndexByte(v, ','); i >= 0 {
			v = bytes.TrimLeft(v[i+1:], " \t")
		}
		if asciiEqualFold(v, "chunked") {
			*chunked = true
		}
	}
}

// parseContentLength parses a non-negative decimal of at most 18 digits;
// anything else gives -1.
func parseContentLength(v []byte) int64 {
	if len(v) == 0 || len(v) > 18 {
		return -1
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// ParseHTTPResponse decodes the status line and headers at the start of
// stream (server-to-client bytes), returning the response and the number
// of bytes consumed up to the end of the head.
func ParseHTTPResponse(stream []byte) (HTTPResponse, int, error) {
	resp := HTTPResponse{ContentLength: -1}
	if !LooksLikeHTTPResponse(stream) {
		if len(stream) < 9 && statusLinePrefix(stream) {
			return resp, 0, ErrIncomplete
		}
		return resp, 0, errHTTPStatusLine
	}
	n, err := headEnd(stream)
	if err != nil {
		return resp, 0, err
	}
	line, rest := nextLine(stream[:n])
	// "HTTP/x.y SP NNN [SP reason]"
	if len(line) < 12 || line[8] != ' ' || !isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) ||
		(len(line) > 12 && line[12] != ' ') {
		return resp, 0, errHTTPStatusLine
	}
	var ok bool
	if resp.Version, ok = parseVersion(line[:8]); !ok {
		return resp, 0, errHTTPStatusLine
	}
	resp.StatusCode = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if len(line) > 13 {
		resp.Reason = internReason(line[13:])
	}
	err = scanHeaders(rest, func(name, value []byte) {
		framingHeader(name, value, &resp.ContentLength, &resp.Chunked)
	})
	if err != nil {
		return resp, 0, err
	}
	return resp, n, nil
}

var commonReasons = []string{"OK", "Not Found", "Not Modified", "Found", "Moved Permanently",
	"No Content", "Bad Request", "Forbidden", "Unauthorized", "Internal Server Error",
	"Partial Content", "Continue", "Switching Protocols", "See Other", "Temporary Redirect"}

func internReason(b []byte) string {
	for _, s := range commonReasons {
		if string(b) == s {
			return s
		}
	}
	return escapedString(b, MaxFieldLen)
}

// LooksLikeHTTPRequest reports whether b starts with a known HTTP method
// followed by a space (or is a prefix of such a start).
func LooksLikeHTTPRequest(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, m := range httpMethods {
		if len(b) > len(m) {
			if string(b[:len(m)]) == m && b[len(m)] == ' ' {
				return true
			}
		} else if string(b) == m[:len(b)] {
			return true
		}
	}
	return false
}

// LooksLikeHTTPResponse reports whether b starts with "HTTP/x.y ".
func LooksLikeHTTPResponse(b []byte) bool {
	return len(b) >= 9 && string(b[:5]) == "HTTP/" && isDigit(b[5]) && b[6] == '.' && isDigit(b[7]) && b[8] == ' '
}

// statusLinePrefix reports whether b (shorter than 9 bytes) can still grow
// into "HTTP/x.y ".
func statusLinePrefix(b []byte) bool {
	const pattern = "HTTP/0.0 "
	for i, c := range b {
		switch p := pattern[i]; p {
		case '0':
			if !isDigit(c) {
				return false
			}
		default:
			if c != p {
				return false
			}
		}
	}
	return true
}

var (
	errHTTPChunkSize = &decodeError{msg: "HTTP chunk size line is not a hex number"}
	errHTTPChunkEnd  = &decodeError{msg: "HTTP chunk data is not followed by CRLF"}
)

// maxChunkLine bounds a chunk-size line (size and extensions).
const maxChunkLine = 1024

// SkipChunkedBody returns the length of the chunked message body
// (RFC 9112 section 7.1: chunks, last chunk, trailer section) at the start
// of stream, so that a caller can step over it to the next pipelined
// message without keeping it. It returns ErrIncomplete when the body
// continues beyond stream.
func SkipChunkedBody(stream []byte) (int, error) {
	off := 0
	for {
		line, next, err := chunkLine(stream, off)
		if err != nil {
			return 0, err
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return 0, errHTTPChunkSize
		}
		off = next
		if size == 0 {
			break
		}
		if int64(len(stream)-off) < size+2 {
			return 0, ErrIncomplete
		}
		off += int(size)
		switch {
		case stream[off] == '\r' && stream[off+1] == '\n':
			off += 2
		case stream[off] == '\n':
			off++
		default:
			return 0, errHTTPChunkEnd
		}
	}
	// Trailer section: header lines up to an empty line.
	n, err := trailerEnd(stream[off:])
	if err != nil {
		return 0, err
	}
	return off + n, nil
}

// chunkLine returns the line starting at off (without CR LF) and the
// offset after it.
func chunkLine(b []byte, off int) ([]byte, int, error) {
	rest := b[off:]
	i := bytes.IndexByte(rest[:min(len(rest), maxChunkLine)], '\n')
	if i < 0 {
		if len(rest) >= maxChunkLine {
			return nil, 0, errHTTPChunkSize
		}
		return nil, 0, ErrIncomplete
	}
	line := rest[:i]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, off + i + 1, nil
}

// parseChunkSize parses the hex size before any ';' extension.
func parseChunkSize(line []byte) (int64, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range line {
		d, ok := unhex(c)
		if !ok {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, true
}

// trailerEnd returns the length of a trailer section ending with an empty
// line (which may be the first line).
func trailerEnd(b []byte) (int, error) {
	off := 0
	for lines := 0; ; lines++ {
		if lines > MaxHTTPHeaders || off > MaxHTTPHeaderBytes {
			return 0, errHTTPTooManyHdrs
		}
		line, next, err := chunkLine(b, off)
		if err != nil {
			if errors.Is(err, errHTTPChunkSize) {
				return 0, errHTTPHeadTooLarge
			}
			return 0, err
		}
		off = next
		if len(line) == 0 {
			return off, nil
		}
	}
}

// UnescapeURI decodes %XX escapes in a URI as Zeek does for http.log's uri
// field (invalid escapes are kept as they are). Decoded bytes outside
// printable ASCII, and backslashes, are escaped as \xHH like every string
// this package returns; escapes already in uri are kept.
func UnescapeURI(uri string) string {
	if !strings.Contains(uri, "%") {
		return uri
	}
	out := make([]byte, 0, len(uri))
	for i := 0; i < len(uri); i++ {
		c := uri[i]
		if c == '%' && i+2 < len(uri) {
			if b, ok := unhex2(uri[i+1], uri[i+2]); ok {
				if b < 0x20 || b >= 0x7f || b == '\\' {
					out = append(out, '\\', 'x', hexDigits[b>>4], hexDigits[b&0xf])
				} else {
					out = append(out, b)
				}
				i += 2
				continue
			}
		}
		out = append(out, c)
	}
	return string(out)
}
