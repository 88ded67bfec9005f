// Package parse turns raw log records into Elastic Common Schema events.
//
// Each supported format has a Parser, registered by name; the name is the
// event.dataset the parser produces ("sshd", "sudo", "nginx.access", ...).
// A Dispatcher picks the parser for a record from its source hint (syslog
// program name, journal identifier, file path) or, when there is none, by
// sniffing the content. A record no parser understands still becomes an
// event: dataset "<source>.unparsed", event.kind "pipeline_error", the raw
// text in event.original and message. Nothing is dropped.
//
// Text handling: records are decoded as UTF-8; each run of invalid bytes is
// replaced by one U+FFFD (the Unicode replacement character) in every
// string field, including event.original, so that events always encode as
// valid JSON. Such events carry the tag "invalid_utf8". A timestamp no log
// means (before 1970, after 9999) is replaced by the reference time and
// tagged "invalid_timestamp".
//
// DATASETS.md lists the fields each dataset fills (generated from the
// golden tests).
//
// Parsers are stateless and safe for concurrent use. The only stateful
// piece is the auditd joiner (AuditJoiner), used through Stream.
package parse

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/csirt-toscana/platform/internal/event"
)

// Record is one raw log record and what its transport knows about it.
type Record struct {
	// Raw is the record as received: one log line without its newline, one
	// journal MESSAGE, one syslog message.
	Raw []byte
	// Source is a hint of where the record comes from: a file path
	// ("/var/log/nginx/access.log"), a journal unit or SYSLOG_IDENTIFIER
	// ("sshd", "sshd.service"), a syslog app-name, or a dataset name. Empty
	// when unknown: the content is sniffed.
	Source string
	// Time is the event time known by the transport (journal timestamp,
	// agent read time); zero when unknown. It is used when the record
	// carries no time of its own, and as the reference for inferring the
	// year of RFC 3164 timestamps.
	Time time.Time
	// Host is the name of the host the record comes from (agent host,
	// syslog device); empty when unknown.
	Host string
}

// ErrNoMatch says that a parser does not understand a record. The
// Dispatcher then falls back to another parser or to an unparsed event.
var ErrNoMatch = errors.New("record not understood")

// Parser turns one record into one event.
//
// Parse returns the event's fields, including @timestamp, event.kind,
// event.category, event.type, event.dataset and event.original; it does not
// set the fields the collector's pipeline owns (event.id, event.ingested,
// organization.id, agent.id). It returns an error wrapping ErrNoMatch when
// the record is not in the parser's format. Parse never panics and is safe
// for concurrent use.
type Parser interface {
	Name() string
	Parse(rec Record) (event.Event, error)
}

// Options configure a Dispatcher. The zero value is usable.
type Options struct {
	// Location is the time zone of timestamps that carry none (RFC 3164,
	// Apache error log, vsftpd). Default UTC.
	Location *time.Location
	// Now gives the reference time for year inference when a record has no
	// Time. Default time.Now.
	Now func() time.Time
	// DropOriginal leaves event.original out (an entity's policy); by
	// default the raw record is kept there.
	DropOriginal bool
}

func (o *Options) fill() {
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// input is a record being parsed: its text and, when it had one, the
// syslog header already split off.
type input struct {
	rec  Record
	opts *Options
	line string // the whole record as valid UTF-8
	msg  string // the message body: after the syslog header, or the line
	hdr  *syslogHeader
	bad  bool // invalid UTF-8 was replaced
}

func (in *input) ref() time.Time {
	if !in.rec.Time.IsZero() {
		return in.rec.Time
	}
	return in.opts.Now()
}

func newInput(rec Record, opts *Options) *input {
	in := &input{rec: rec, opts: opts}
	in.line, in.bad = toText(rec.Raw)
	in.line = strings.TrimRight(in.line, "\r\n")
	in.msg = in.line
	return in
}

// toText converts raw bytes to valid UTF-8, replacing invalid sequences.
func toText(b []byte) (string, bool) {
	if utf8.Valid(b) {
		return string(b), false
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), true
}

// base builds the fields every event gets.
func (in *input) base(dataset string) event.Event {
	ev := make(event.Event, 24)
	ev["event.dataset"] = dataset
	ev["event.kind"] = "event"
	if !in.opts.DropOriginal {
		ev["event.original"] = in.line
	}
	if in.rec.Host != "" {
		ev["host.name"] = in.rec.Host
	}
	if !in.rec.Time.IsZero() {
		ev["@timestamp"] = in.rec.Time.UTC()
	}
	if in.bad {
		addTag(ev, "invalid_utf8")
	}
	if in.hdr != nil {
		in.hdr.fill(ev)
		if in.rec.Host == "" && in.hdr.hostname != "" {
			ev["host.name"] = in.hdr.hostname
		}
	}
	return ev
}

// finish fills defaults and the related.* fields once a parser is done.
func finish(in *input, ev event.Event) event.Event {
	if ts, ok := ev["@timestamp"].(time.Time); !ok {
		ev["@timestamp"] = in.ref().UTC()
	} else if ts.Year() < 1970 || ts.Year() > 9999 {
		// A time no log means (year 1, year 20000): keep the reference.
		ev["@timestamp"] = in.ref().UTC()
		addTag(ev, "invalid_timestamp")
	}
	if _, ok := ev["event.category"]; !ok {
		ev["event.category"] = []string{"host"}
	}
	if _, ok := ev["event.type"]; !ok {
		ev["event.type"] = []string{"info"}
	}
	var ips, users []string
	for _, f := range [...]string{"source.ip", "destination.ip", "host.ip"} {
		if s, ok := ev[f].(string); ok && s != "" {
			ips = appendUniq(ips, s)
		}
	}
	for _, f := range [...]string{"user.name", "user.target.name", "user.effective.name"} {
		if s, ok := ev[f].(string); ok && s != "" {
			users = appendUniq(users, s)
		}
	}
	if len(ips) > 0 {
		ev["related.ip"] = ips
	}
	if len(users) > 0 {
		ev["related.user"] = users
	}
	return ev
}

func appendUniq(l []string, s string) []string {
	for _, x := range l {
		if x == s {
			return l
		}
	}
	return append(l, s)
}

func addTag(ev event.Event, tag string) {
	l, _ := ev["tags"].([]string)
	ev["tags"] = appendUniq(l, tag)
}

// set stores a non-empty string field.
func set(ev event.Event, name, v string) {
	if v != "" && v != "-" {
		ev[name] = v
	}
}

// setIP stores an address in name when it parses as an IP, else in the
// domain field given (may be "").
func setIP(ev event.Event, ipField, domainField, v string) {
	if v == "" || v == "-" {
		return
	}
	if ip, ok := cleanIP(v); ok {
		ev[ipField] = ip
		return
	}
	if domainField != "" {
		ev[domainField] = v
	}
}

func setInt(ev event.Event, name, v string) {
	if n, ok := atoi(v); ok {
		ev[name] = n
	}
}

func categorize(ev event.Event, kind string, category []string, typ []string) {
	if kind != "" {
		ev["event.kind"] = kind
	}
	ev["event.category"] = category
	ev["event.type"] = typ
}

// messageParser is implemented by parsers of a syslog message body
// (sshd, sudo, ...): the syslog header, when present, is split off first.
type messageParser interface {
	Parser
	parseMessage(in *input, ev event.Event) error
}

// lineParser is implemented by parsers of whole lines with their own
// framing (access logs, EVE JSON, auditd).
type lineParser interface {
	Parser
	parseLine(in *input) (event.Event, error)
}

func runMessage(p messageParser, rec Record, opts *Options) (event.Event, error) {
	in := newInput(rec, opts)
	splitSyslog(in)
	ev := in.base(p.Name())
	if err := p.parseMessage(in, ev); err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name(), err)
	}
	return finish(in, ev), nil
}

func runLine(p lineParser, rec Record, opts *Options) (event.Event, error) {
	in := newInput(rec, opts)
	ev, err := p.parseLine(in)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name(), err)
	}
	return finish(in, ev), nil
}

// Registry holds parsers by name.
type Registry struct {
	byName map[string]Parser
}

// Register adds a parser; a second parser with the same name is an error.
func (r *Registry) Register(p Parser) error {
	if r.byName == nil {
		r.byName = map[string]Parser{}
	}
	if _, dup := r.byName[p.Name()]; dup {
		return fmt.Errorf("parser %q registered twice", p.Name())
	}
	r.byName[p.Name()] = p
	return nil
}

// Get returns the parser of a dataset.
func (r *Registry) Get(name string) (Parser, bool) {
	p, ok := r.byName[name]
	return p, ok
}

// Names lists the registered datasets, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.byName))
	for n := range r.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// sourceName reduces a source hint to a short name for "<source>.unparsed".
func sourceName(src string) string {
	if src == "" {
		return "unknown"
	}
	b := path.Base(strings.ReplaceAll(src, "\\", "/"))
	b = strings.TrimSuffix(b, ".service")
	for _, ext := range []string{".gz", ".log", ".json", ".txt"} {
		b = strings.TrimSuffix(b, ext)
	}
	b = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, b)
	b = strings.Trim(b, ".")
	if b == "" {
		return "unknown"
	}
	return b
}

// firstField is the first whitespace-separated field of s, "" when s has none.
func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}
