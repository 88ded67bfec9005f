package parse

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// syslogHeader is the header of an RFC 3164 or RFC 5424 message.
type syslogHeader struct {
	rfc5424  bool
	priority int // -1 when absent
	ts       time.Time
	hostname string
	appname  string
	procid   string
	msgid    string
	sd       []sdElement
	hasSD    bool
	message  string
}

type sdElement struct {
	id     string
	params [][2]string
}

func (h *syslogHeader) fill(ev event.Event) {
	if h.priority >= 0 {
		ev["log.syslog.priority"] = int64(h.priority)
		ev["log.syslog.facility.code"] = int64(h.priority / 8)
		ev["log.syslog.severity.code"] = int64(h.priority % 8)
	}
	if !h.ts.IsZero() {
		ev["@timestamp"] = h.ts.UTC()
	}
	set(ev, "log.syslog.hostname", h.hostname)
	set(ev, "host.hostname", h.hostname)
	if h.appname != "" {
		ev["log.syslog.appname"] = h.appname
		ev["process.name"] = h.appname
		ev["event.provider"] = h.appname
	}
	if h.procid != "" {
		ev["log.syslog.procid"] = h.procid
		setInt(ev, "process.pid", h.procid)
	}
	set(ev, "log.syslog.msgid", h.msgid)
	if h.rfc5424 {
		ev["log.syslog.version"] = "1"
	}
	// Structured data: ECS log.syslog.structured_data is a flattened
	// object; in the flat event it is one key per SD-ID and parameter.
	for _, e := range h.sd {
		for _, p := range e.params {
			ev["log.syslog.structured_data."+e.id+"."+p[0]] = p[1]
		}
	}
	ev["message"] = h.message
}

// splitSyslog splits a syslog header off in.line when there is one.
func splitSyslog(in *input) bool {
	h, ok := parseSyslog(in.line, in.ref(), in.opts.Location)
	if !ok {
		return false
	}
	in.hdr = h
	in.msg = h.message
	return true
}

// parseSyslog parses an RFC 5424 or RFC 3164 message. ref is the reference
// time for the year of RFC 3164 timestamps; loc their time zone.
func parseSyslog(s string, ref time.Time, loc *time.Location) (*syslogHeader, bool) {
	h := &syslogHeader{priority: -1}
	rest := s
	if strings.HasPrefix(rest, "<") {
		end := strings.IndexByte(rest, '>')
		if end < 2 || end > 4 {
			return nil, false
		}
		p, err := strconv.Atoi(rest[1:end])
		if err != nil || p < 0 || p > 191 {
			return nil, false
		}
		h.priority = p
		rest = rest[end+1:]
		if strings.HasPrefix(rest, "1 ") {
			if parse5424(h, rest[2:]) {
				return h, true
			}
			return nil, false
		}
	}
	if parse3164(h, rest, ref, loc) {
		return h, true
	}
	return nil, false
}

func nilDash(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

func parse5424(h *syslogHeader, s string) bool {
	h.rfc5424 = true
	var f [5]string
	for i := range f {
		var ok bool
		f[i], s, ok = strings.Cut(s, " ")
		if !ok && i < 4 {
			return false
		}
		if f[i] == "" {
			return false
		}
	}
	if f[0] != "-" {
		t, err := time.Parse(time.RFC3339Nano, f[0])
		if err != nil {
			return false
		}
		h.ts = t
	}
	h.hostname, h.appname, h.procid, h.msgid = nilDash(f[1]), nilDash(f[2]), nilDash(f[3]), nilDash(f[4])
	if s == "" {
		return true
	}
	if strings.HasPrefix(s, "-") {
		s = s[1:]
	} else if strings.HasPrefix(s, "[") {
		h.hasSD = true
		for strings.HasPrefix(s, "[") {
			el, rest, ok := parseSDElement(s)
			if !ok {
				return false
			}
			h.sd = append(h.sd, el)
			s = rest
		}
	} else {
		return false
	}
	s = strings.TrimPrefix(s, " ")
	s = strings.TrimPrefix(s, "\uFEFF")
	h.message = s
	return true
}

// parseSDElement parses one [id k="v" ...] element.
func parseSDElement(s string) (sdElement, string, bool) {
	var el sdElement
	s = s[1:]
	i := strings.IndexAny(s, " ]")
	if i <= 0 {
		return el, "", false
	}
	el.id = s[:i]
	s = s[i:]
	for {
		if strings.HasPrefix(s, "]") {
			return el, s[1:], true
		}
		if !strings.HasPrefix(s, " ") {
			return el, "", false
		}
		s = s[1:]
		eq := strings.Index(s, "=\"")
		if eq <= 0 || strings.ContainsAny(s[:eq], " ]") {
			return el, "", false
		}
		name := s[:eq]
		s = s[eq+2:]
		var b strings.Builder
		closed := false
		for j := 0; j < len(s); j++ {
			c := s[j]
			if c == '\\' && j+1 < len(s) && (s[j+1] == '"' || s[j+1] == '\\' || s[j+1] == ']') {
				b.WriteByte(s[j+1])
				j++
				continue
			}
			if c == '"' {
				s = s[j+1:]
				closed = true
				break
			}
			b.WriteByte(c)
		}
		if !closed {
			return el, "", false
		}
		el.params = append(el.params, [2]string{name, b.String()})
	}
}

var months = map[string]time.Month{
	"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "Jun": 6,
	"Jul": 7, "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12,
}

// parse3164Time parses "Mmm dd hh:mm:ss" (day space-padded or not, optional
// fraction) at the start of s and returns the rest.
func parse3164Time(s string, ref time.Time, loc *time.Location) (time.Time, string, bool) {
	if len(s) < 14 {
		return time.Time{}, "", false
	}
	mon, ok := months[s[:3]]
	if !ok || s[3] != ' ' {
		return time.Time{}, "", false
	}
	s = strings.TrimLeft(s[4:], " ")
	day, n := leadingInt(s)
	if n == 0 || n > 2 || day < 1 || day > 31 || len(s) <= n || s[n] != ' ' {
		return time.Time{}, "", false
	}
	s = s[n+1:]
	hh, mm, ss, nsec, rest, ok := parseClock(s)
	if !ok {
		return time.Time{}, "", false
	}
	// Optional year after the time ("Jan  2 15:04:05 2006 host ...").
	if len(rest) > 5 && rest[0] == ' ' {
		if y, n := leadingInt(rest[1:]); n == 4 && len(rest) > 5 && (len(rest) == 5 || rest[5] == ' ') && y > 1970 {
			return time.Date(y, mon, day, hh, mm, ss, nsec, loc), rest[5:], true
		}
	}
	if ref.IsZero() {
		ref = time.Now()
	}
	ref = ref.In(loc)
	y := ref.Year()
	t := time.Date(y, mon, day, hh, mm, ss, nsec, loc)
	// A log line is not from the future: a date more than a month ahead of
	// the reference is from the previous year (December lines read in
	// January); one more than 11 months behind is from the next year.
	if t.After(ref.AddDate(0, 1, 0)) {
		t = time.Date(y-1, mon, day, hh, mm, ss, nsec, loc)
	} else if t.Before(ref.AddDate(0, -11, 0)) {
		t = time.Date(y+1, mon, day, hh, mm, ss, nsec, loc)
	}
	return t, rest, true
}

// parseClock parses "hh:mm:ss[.frac]".
func parseClock(s string) (hh, mm, ss, nsec int, rest string, ok bool) {
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return
	}
	var n1, n2, n3 int
	hh, n1 = leadingInt(s[0:2])
	mm, n2 = leadingInt(s[3:5])
	ss, n3 = leadingInt(s[6:8])
	if n1 != 2 || n2 != 2 || n3 != 2 || hh > 23 || mm > 59 || ss > 60 {
		return
	}
	rest = s[8:]
	if len(rest) > 1 && rest[0] == '.' {
		_, n := leadingInt(rest[1:])
		if n > 0 {
			frac := rest[1 : 1+n]
			if len(frac) > 9 {
				frac = frac[:9]
			}
			f, _ := strconv.Atoi(frac + strings.Repeat("0", 9-len(frac)))
			nsec = f
			rest = rest[1+n:]
		}
	}
	return hh, mm, ss, nsec, rest, true
}

// leadingInt reads up to 9 leading decimal digits.
func leadingInt(s string) (int, int) {
	v, i := 0, 0
	for i < len(s) && i < 9 && s[i] >= '0' && s[i] <= '9' {
		v = v*10 + int(s[i]-'0')
		i++
	}
	return v, i
}

func atoi(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	neg := false
	if s[0] == '-' {
		neg = true
		s = s[1:]
		if s == "" {
			return 0, false
		}
	}
	var v int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

// cleanIP normalises an address: brackets and IPv4-mapped IPv6 prefixes
// removed, zones dropped. ok is false when s is not an address.
func cleanIP(s string) (string, bool) {
	s = strings.Trim(s, "[]")
	if s == "" || len(s) > 64 {
		return "", false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", false
	}
	a = a.Unmap().WithZone("")
	return a.String(), true
}

func parse3164(h *syslogHeader, s string, ref time.Time, loc *time.Location) bool {
	var rest string
	var ok bool
	if len(s) > 0 && s[0] >= '0' && s[0] <= '9' {
		// RFC 3339 timestamp, as rsyslog's high-precision template writes.
		ts, r, found := strings.Cut(s, " ")
		if !found {
			return false
		}
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t, err = time.ParseInLocation("2006-01-02T15:04:05.999999999", ts, loc)
			if err != nil {
				return false
			}
		}
		h.ts, rest = t, r
	} else {
		h.ts, rest, ok = parse3164Time(s, ref, loc)
		if !ok {
			return false
		}
		if !strings.HasPrefix(rest, " ") {
			return false
		}
		rest = rest[1:]
	}
	rest = strings.TrimLeft(rest, " ")
	// HOSTNAME, unless the next word is already the tag ("prog[1]:", "prog:").
	word, after, _ := strings.Cut(rest, " ")
	if word == "" {
		return false
	}
	if !isTag(word) {
		h.hostname = word
		rest = after
	}
	// TAG: program[pid]: or program:
	h.message = rest
	word, after, _ = strings.Cut(rest, " ")
	if isTag(word) {
		tag := strings.TrimSuffix(word, ":")
		if i := strings.IndexByte(tag, '['); i > 0 && strings.HasSuffix(tag, "]") {
			h.procid = tag[i+1 : len(tag)-1]
			tag = tag[:i]
		}
		h.appname = tag
		h.message = strings.TrimLeft(after, " ")
	}
	return true
}

// isTag reports whether a word is a syslog tag: "prog:" or "prog[pid]:".
func isTag(w string) bool {
	if len(w) < 2 || len(w) > 64 || w[len(w)-1] != ':' {
		return false
	}
	w = w[:len(w)-1]
	if i := strings.IndexByte(w, '['); i >= 0 {
		if i == 0 || !strings.HasSuffix(w, "]") {
			return false
		}
		if _, ok := atoi(w[i+1 : len(w)-1]); !ok {
			return false
		}
		w = w[:i]
	}
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c <= ' ' || c == ':' || c == '[' || c == ']' {
			return false
		}
	}
	return true
}

// Syslog parses the RFC 3164 / RFC 5424 header of a message from a program
// without a specific parser. Dataset "syslog".
type Syslog struct{ opts *Options }

var _ messageParser = (*Syslog)(nil)

func (*Syslog) Name() string { return "syslog" }

func (p *Syslog) Parse(rec Record) (event.Event, error) {
	in := newInput(rec, p.opts)
	if !splitSyslog(in) {
		return nil, ErrNoMatch
	}
	ev := in.base(p.Name())
	if err := p.parseMessage(in, ev); err != nil {
		return nil, err
	}
	return finish(in, ev), nil
}

func (*Syslog) parseMessage(in *input, ev event.Event) error {
	ev["event.module"] = "system"
	if strings.HasPrefix(in.msg, "pam_") {
		parsePAM(in.msg, ev)
	}
	return nil
}
