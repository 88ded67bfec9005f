package journal

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/csirt-toscana/platform/internal/envelope"
)

// entry holds the fields of one journal entry that the source uses. The
// journal's JSON export (journalctl -o json) is one flat object per line:
// every value is a string, null (a field too large for the output), an
// array of numbers 0..255 (a value that is not printable UTF-8: bytes), or
// an array of such values (a field that occurs several times; the first
// occurrence is used here).
type entry struct {
	cursor      string
	realtime    int64 // microseconds since the epoch; valid when hasRealtime
	hasRealtime bool
	message     []byte
	hasMessage  bool
	identifier  string // SYSLOG_IDENTIFIER
	comm        string // _COMM
	syslogPID   string // SYSLOG_PID
	pid         string // _PID
	hostname    string // _HOSTNAME
	unit        string // _SYSTEMD_UNIT
	transport   string // _TRANSPORT
	priority    int    // PRIORITY 0..7, -1 when absent or invalid
	facility    int    // SYSLOG_FACILITY 0..23, -1 when absent or invalid
	cut         bool   // the line was cut before its end (partial parse)
}

// Errors of parseEntry.
var (
	errSyntax   = errors.New("journal JSON: syntax error")
	errEOF      = errors.New("journal JSON: unexpected end of entry")
	errTooDeep  = errors.New("journal JSON: values nested too deeply")
	errTrailing = errors.New("journal JSON: data after the entry")
)

// maxDepth bounds the nesting of arrays and objects (as encoding/json
// does). Journal values nest two deep at most (a multi-valued binary field
// is an array of arrays of numbers); deeper values are skipped.
const maxDepth = 10000

// parseEntry decodes one line of journalctl's JSON output. b must hold the
// whole object unless partial is true: then b is the start of an entry that
// was cut (longer than the reader's cap), and the fields decoded before
// the cut are returned, with the value being decoded at the cut kept as far
// as it got when it is MESSAGE (e.cut is set). parseEntry never panics and
// never keeps a reference to b.
func parseEntry(b []byte, partial bool) (entry, error) {
	p := parser{b: b}
	e := entry{priority: -1, facility: -1}
	err := p.object(&e)
	if errors.Is(err, errEOF) && partial {
		e.cut = true
		return e, nil
	}
	if err != nil {
		return entry{}, err
	}
	p.space()
	if p.i != len(p.b) {
		return entry{}, fmt.Errorf("%w at byte %d", errTrailing, p.i)
	}
	return e, nil
}

type parser struct {
	b []byte
	i int
	// scratch holds decoded values, key the current key; both reused.
	scratch []byte
	key     []byte
}

func (p *parser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) fail() error {
	if p.i >= len(p.b) {
		return errEOF
	}
	return fmt.Errorf("%w at byte %d", errSyntax, p.i)
}

// object parses {"KEY": value, ...} into e.
func (p *parser) object(e *entry) error {
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return p.fail()
	}
	p.i++
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return nil
	}
	for {
		p.space()
		key, err := p.str(p.key[:0])
		p.key = key
		if err != nil {
			return err
		}
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return p.fail()
		}
		p.i++
		p.space()
		v, present, err := p.value(0)
		if err != nil {
			if errors.Is(err, errEOF) && string(key) == "MESSAGE" && len(v) > 0 {
				// Cut inside MESSAGE: keep what was decoded.
				e.message, e.hasMessage = append([]byte(nil), v...), true
			}
			return err
		}
		e.set(key, v, present)
		p.space()
		if p.i >= len(p.b) {
			return errEOF
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return nil
		default:
			return p.fail()
		}
	}
}

// set stores a field the source uses; others are ignored. A later
// occurrence of a key replaces an earlier one, as in encoding/json; a
// value that is not present (null, []) clears the field.
func (e *entry) set(k, v []byte, present bool) {
	if !present {
		v = nil
	}
	switch string(k) { // no allocation: the compiler compares in place
	case "__CURSOR":
		e.cursor = string(v)
	case "__REALTIME_TIMESTAMP":
		n, err := strconv.ParseInt(string(v), 10, 64)
		e.realtime, e.hasRealtime = n, err == nil && n >= 0
	case "MESSAGE":
		// A byte-array message is recognised later by its content
		// (utf8.Valid): journalctl uses arrays for any unprintable value.
		e.message, e.hasMessage = append([]byte(nil), v...), present
	case "SYSLOG_IDENTIFIER":
		e.identifier = string(v)
	case "_COMM":
		e.comm = string(v)
	case "SYSLOG_PID":
		e.syslogPID = string(v)
	case "_PID":
		e.pid = string(v)
	case "_HOSTNAME":
		e.hostname = string(v)
	case "_SYSTEMD_UNIT":
		e.unit = string(v)
	case "_TRANSPORT":
		e.transport = string(v)
	case "PRIORITY":
		e.priority = smallInt(v, 7)
	case "SYSLOG_FACILITY":
		e.facility = smallInt(v, 23)
	}
}

// smallInt parses a decimal in 0..max, or returns -1.
func smallInt(v []byte, max int) int {
	if len(v) == 0 || len(v) > 2 {
		return -1
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	if n > max {
		return -1
	}
	return n
}

// value parses one value and returns its bytes (valid until the next call)
// and whether it is present (not null and not an empty array). On errEOF inside a string, v holds the part
// decoded so far.
func (p *parser) value(depth int) (v []byte, present bool, err error) {
	if p.i >= len(p.b) {
		return nil, false, errEOF
	}
	switch c := p.b[p.i]; {
	case c == '"':
		s, err := p.str(p.scratch[:0])
		p.scratch = s[:0]
		return s, err == nil, err
	case c == 'n':
		return nil, false, p.literal("null")
	case c == 't':
		return []byte("true"), true, p.literal("true")
	case c == 'f':
		return []byte("false"), true, p.literal("false")
	case c == '-' || (c >= '0' && c <= '9'):
		s, err := p.number()
		return s, err == nil, err
	case c == '[' || c == '{':
		if depth >= maxDepth {
			return nil, false, errTooDeep
		}
		if c == '{' {
			return nil, false, p.skipObject(depth + 1)
		}
		return p.array(depth + 1)
	default:
		return nil, false, p.fail()
	}
}

func (p *parser) literal(word string) error {
	for j := 0; j < len(word); j++ {
		if p.i >= len(p.b) {
			return errEOF
		}
		if p.b[p.i] != word[j] {
			return p.fail()
		}
		p.i++
	}
	return nil
}

// number scans a JSON number and returns its text.
func (p *parser) number() ([]byte, error) {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.i >= len(p.b) {
		return nil, errEOF
	}
	if p.b[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return nil, p.fail()
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return nil, p.fail()
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, p.fail()
		}
	}
	if p.i >= len(p.b) {
		// A number may be cut anywhere: only a following byte proves
		// it complete.
		return nil, errEOF
	}
	return p.b[start:p.i], nil
}

// array parses a byte array ([98,105]: bytes) or a multi-valued field
// (["a","b"] or [[97],[98]]: the first value). Any other array is valid
// JSON but no journal value: it counts as absent.
func (p *parser) array(depth int) (v []byte, present bool, err error) {
	p.i++ // '['
	var out, first []byte
	bytesOK, firstIsValue, firstPresent := true, false, false
	for n := 0; ; n++ {
		p.space()
		if p.i >= len(p.b) {
			return nil, false, errEOF
		}
		if p.b[p.i] == ']' && n == 0 {
			p.i++
			return nil, false, nil
		}
		if c := p.b[p.i]; c >= '0' && c <= '9' || c == '-' {
			num, err := p.number()
			if err != nil {
				return nil, false, err
			}
			if b, err := strconv.ParseUint(string(num), 10, 8); err == nil && bytesOK {
				out = append(out, byte(b))
			} else {
				bytesOK = false
			}
		} else {
			bytesOK = false
			val, pres, err := p.value(depth)
			if err != nil {
				return nil, false, err
			}
			if n == 0 {
				first, firstPresent, firstIsValue = append([]byte(nil), val...), pres, true
			}
		}
		p.space()
		if p.i >= len(p.b) {
			return nil, false, errEOF
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			switch {
			case firstIsValue:
				return first, firstPresent, nil
			case bytesOK:
				return out, true, nil
			}
			return nil, false, nil
		default:
			return nil, false, p.fail()
		}
	}
}

// skipObject skips a nested object (valid JSON, but no journal value).
func (p *parser) skipObject(depth int) error {
	p.i++ // '{'
	for n := 0; ; n++ {
		p.space()
		if p.i >= len(p.b) {
			return errEOF
		}
		if p.b[p.i] == '}' && n == 0 {
			p.i++
			return nil
		}
		if _, err := p.str(p.scratch[:0]); err != nil {
			return err
		}
		p.space()
		if p.i >= len(p.b) {
			return errEOF
		}
		if p.b[p.i] != ':' {
			return p.fail()
		}
		p.i++
		p.space()
		if _, _, err := p.value(depth); err != nil {
			return err
		}
		p.space()
		if p.i >= len(p.b) {
			return errEOF
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return nil
		default:
			return p.fail()
		}
	}
}

// str parses a JSON string at p.i, appending its decoded bytes to dst.
// Invalid UTF-8 inside the string is kept as is; a lone surrogate escape
// becomes U+FFFD, as in encoding/json. On errEOF it returns what was
// decoded so far.
func (p *parser) str(dst []byte) ([]byte, error) {
	if p.i >= len(p.b) {
		return dst, errEOF
	}
	if p.b[p.i] != '"' {
		return dst, p.fail()
	}
	p.i++
	for {
		// Copy a run of plain bytes at once.
		start := p.i
		for p.i < len(p.b) && p.b[p.i] != '"' && p.b[p.i] != '\\' && p.b[p.i] >= 0x20 {
			p.i++
		}
		dst = append(dst, p.b[start:p.i]...)
		if p.i >= len(p.b) {
			return dst, errEOF
		}
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			return dst, nil
		case c < 0x20:
			return dst, p.fail()
		}
		// Escape.
		if p.i+1 >= len(p.b) {
			return dst, errEOF
		}
		esc := p.b[p.i+1]
		p.i += 2
		switch esc {
		case '"', '\\', '/':
			dst = append(dst, esc)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, err := p.hex4()
			if err != nil {
				return dst, err
			}
			if utf16.IsSurrogate(r) {
				// A high surrogate followed by \uDC00..\uDFFF is one rune.
				if p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
					save := p.i
					p.i += 2
					r2, err := p.hex4()
					if err != nil {
						return dst, err
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						dst = utf8.AppendRune(dst, dec)
						continue
					}
					p.i = save // not a pair: decode the second escape alone
				} else if p.i+1 >= len(p.b) && r < 0xDC00 {
					return dst, errEOF // the low half may follow after the cut
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		default:
			p.i -= 2
			return dst, p.fail()
		}
	}
}

func (p *parser) hex4() (rune, error) {
	if p.i+4 > len(p.b) {
		return 0, errEOF
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, p.fail()
		}
	}
	p.i += 4
	return r, nil
}

// Header limits of RFC 5424 (section 6).
const (
	maxHostname = 255
	maxAppName  = 48
	maxProcID   = 128
)

// format writes the entry as an RFC 5424 syslog line:
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - - MESSAGE
//
// PRI is SYSLOG_FACILITY*8+PRIORITY (facility default: 0 "kern" for the
// kernel transport, 1 "user" otherwise; priority default 6 "info");
// TIMESTAMP is __REALTIME_TIMESTAMP in UTC with microseconds ("-" when
// absent); HOSTNAME is _HOSTNAME; APP-NAME is SYSLOG_IDENTIFIER, else
// _COMM; PROCID is SYSLOG_PID, else _PID. Header fields are "-" when empty,
// cut to the RFC's lengths, and every byte outside printable ASCII (and
// space) becomes '_'. MESSAGE is appended as is, cut at maxMsg bytes (on a
// rune boundary when it is valid UTF-8), which sets FlagTruncated; a
// message that is not valid UTF-8 (given by journalctl as a byte array) is
// kept as bytes and sets FlagInvalidUTF8. An entry cut by the reader's cap
// (e.cut) also sets FlagTruncated.
func (e *entry) format(dst []byte, maxMsg int) ([]byte, envelope.Flags) {
	var flags envelope.Flags
	fac := e.facility
	if fac < 0 {
		fac = 1
		if e.transport == "kernel" {
			fac = 0
		}
	}
	sev := e.priority
	if sev < 0 {
		sev = 6
	}
	dst = append(dst, '<')
	dst = strconv.AppendInt(dst, int64(fac*8+sev), 10)
	dst = append(dst, ">1 "...)
	if e.hasRealtime {
		t := time.UnixMicro(e.realtime).UTC()
		dst = t.AppendFormat(dst, "2006-01-02T15:04:05.000000Z")
	} else {
		dst = append(dst, '-')
	}
	dst = append(dst, ' ')
	dst = appendHeader(dst, e.hostname, maxHostname)
	dst = append(dst, ' ')
	app := e.identifier
	if app == "" {
		app = e.comm
	}
	dst = appendHeader(dst, app, maxAppName)
	dst = append(dst, ' ')
	pid := e.syslogPID
	if pid == "" {
		pid = e.pid
	}
	dst = appendHeader(dst, pid, maxProcID)
	dst = append(dst, " - - "...)
	msg := e.message
	valid := utf8.Valid(msg)
	if len(msg) > maxMsg {
		cut := maxMsg
		if valid {
			for cut > 0 && !utf8.RuneStart(msg[cut]) {
				cut--
			}
		}
		msg = msg[:cut]
		flags |= envelope.FlagTruncated
	}
	if !valid && !utf8.Valid(msg) {
		flags |= envelope.FlagInvalidUTF8
	}
	if e.cut {
		flags |= envelope.FlagTruncated
	}
	return append(dst, msg...), flags
}

// appendHeader appends one RFC 5424 header field: NILVALUE for an empty
// value, otherwise PRINTUSASCII only.
func appendHeader(dst []byte, s string, max int) []byte {
	if s == "" {
		return append(dst, '-')
	}
	if len(s) > max {
		s = s[:max]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}
