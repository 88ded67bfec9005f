package intel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Format names a feed format.
type Format string

// The supported formats.
const (
	FormatMISP      Format = "misp"         // MISP event JSON, single or restSearch response
	FormatMISPFeed  Format = "misp-feed"    // MISP feed manifest.json (+ event files through a loader)
	FormatFeodo     Format = "feodotracker" // abuse.ch Feodo Tracker IP blocklist CSV
	FormatURLhaus   Format = "urlhaus"      // abuse.ch URLhaus CSV dump
	FormatThreatFox Format = "threatfox"    // abuse.ch ThreatFox JSON export
	FormatSTIX      Format = "stix"         // STIX 2.1 bundle (or object list)
	FormatTAXII     Format = "taxii"        // TAXII 2.1 envelope
	FormatCSV       Format = "csv"          // local list: CSV with header, or one value per line
)

// Formats lists the formats ParseAny can read from one file (the MISP feed
// needs its event files too, see ParseMISPFeed).
var Formats = []Format{FormatMISP, FormatFeodo, FormatURLhaus, FormatThreatFox, FormatSTIX, FormatTAXII, FormatCSV}

// Defaults per format: the source name, the confidence and the TLP given to
// indicators whose feed says nothing.
var formatDefaults = map[Format]struct {
	source     string
	confidence int
	tlp        TLP
}{
	FormatMISP:      {"misp", 50, TLPAmber},
	FormatMISPFeed:  {"misp", 50, TLPAmber},
	FormatFeodo:     {"feodotracker", 90, TLPClear},
	FormatURLhaus:   {"urlhaus", 80, TLPClear},
	FormatThreatFox: {"threatfox", 50, TLPClear},
	FormatSTIX:      {"stix", 50, TLPAmber},
	FormatTAXII:     {"taxii", 50, TLPAmber},
	FormatCSV:       {"local", 70, TLPAmber},
}

// Default limits.
const (
	DefaultMaxBytes      = 256 << 20
	DefaultMaxIndicators = 2_000_000
	DefaultMaxWarnings   = 1000
)

// Options tune a parser. The zero value is usable.
type Options struct {
	// Source names the feed (Indicator.Source, part of the indicator id);
	// default: the format's name ("misp", "feodotracker", ..., "local").
	Source string
	// Now is the time of the fetch: the LastSeen of indicators whose feed
	// gives no date, and the base of TTL for them. Zero leaves them unset.
	Now time.Time
	// TTL, when positive, gives indicators without an explicit expiry one:
	// LastSeen (or Now) + TTL.
	TTL time.Duration
	// Confidence (1-100) replaces the format's default confidence for
	// indicators whose feed gives none.
	Confidence int
	// TLP replaces the format's default label for unmarked indicators.
	TLP TLP
	// IncludeNonIDS keeps MISP attributes whose to_ids flag is false
	// (context, not meant for detection); they are skipped by default.
	IncludeNonIDS bool
	// Limits: input bytes (default 256 MiB), indicators (default 2M),
	// warnings kept (default 1000; the rest are counted).
	MaxBytes      int64
	MaxIndicators int
	MaxWarnings   int
}

func (o Options) withDefaults(f Format) Options {
	d := formatDefaults[f]
	if o.Source == "" {
		o.Source = d.source
	}
	if o.Confidence <= 0 || o.Confidence > 100 {
		o.Confidence = d.confidence
	}
	if _, ok := tlpRank[o.TLP]; !ok {
		o.TLP = d.tlp
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxIndicators <= 0 {
		o.MaxIndicators = DefaultMaxIndicators
	}
	if o.MaxWarnings <= 0 {
		o.MaxWarnings = DefaultMaxWarnings
	}
	return o
}

// Warning is an entry of a feed that was skipped or changed, with where it
// is: a line for text formats, a path (and the entry's own id) for JSON.
type Warning struct {
	Line  int    // 1-based line, 0 when not known
	Where string // e.g. `Event 5a0a9aa9-... Attribute[12] 5a0a9e4c-...`, `objects[3] indicator--...`
	Msg   string
}

func (w Warning) String() string {
	switch {
	case w.Line > 0 && w.Where != "":
		return fmt.Sprintf("line %d (%s): %s", w.Line, w.Where, w.Msg)
	case w.Line > 0:
		return fmt.Sprintf("line %d: %s", w.Line, w.Msg)
	case w.Where != "":
		return w.Where + ": " + w.Msg
	}
	return w.Msg
}

// Errors callers may branch on (wrapped in a *ParseError).
var (
	ErrTooLarge = errors.New("intel: input larger than the limit")
	ErrTooMany  = errors.New("intel: more indicators than the limit")
)

// ParseError is a feed that cannot be read at all: not the format, too
// large, malformed. Line and Col are 1-based (0 when not known).
type ParseError struct {
	Format    Format
	Line, Col int
	Where     string
	Msg       string
	Err       error // the cause, if any
}

func (e *ParseError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s feed", e.Format)
	if e.Line > 0 {
		fmt.Fprintf(&b, ", line %d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, " column %d", e.Col)
		}
	}
	if e.Where != "" {
		fmt.Fprintf(&b, " (%s)", e.Where)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// readAll reads the whole input up to the size limit.
func readAll(f Format, r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, &ParseError{Format: f, Msg: "reading the input: " + err.Error(), Err: err}
	}
	if int64(len(data)) > limit {
		return nil, &ParseError{Format: f, Err: ErrTooLarge,
			Msg: fmt.Sprintf("input is larger than %d bytes (raise Options.MaxBytes if the feed is legitimately this big)", limit)}
	}
	return data, nil
}

// lineCol converts a byte offset into a 1-based line and column.
func lineCol(data []byte, off int64) (int, int) {
	if off < 0 {
		off = 0
	}
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// decodeJSON unmarshals data into v, turning decoding errors into a
// *ParseError with a position.
func decodeJSON(f Format, data []byte, v any, what string) error {
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	pe := &ParseError{Format: f, Err: err}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		pe.Line, pe.Col = lineCol(data, syn.Offset)
		pe.Msg = "not valid JSON: " + syn.Error()
	case errors.As(err, &typ):
		pe.Line, pe.Col = lineCol(data, typ.Offset)
		pe.Msg = fmt.Sprintf("not %s: %s is a JSON %s, want %s", what, fieldName(typ.Field), typ.Value, typ.Type)
	default:
		pe.Msg = "not " + what + ": " + err.Error()
	}
	return pe
}

func fieldName(f string) string {
	if f == "" {
		return "the document"
	}
	return "field " + strconv.Quote(f)
}

// raw is an indicator as a parser found it, before normalisation and
// defaults. typ may be typeIP (address or prefix of either family).
type raw struct {
	typ        Type
	value      string
	ref        Ref
	confidence int // -1: the feed says nothing
	tlp        TLP // "": unmarked
	tags       []string
	first      time.Time
	last       time.Time
	expires    time.Time
	desc       string
}

// typeIP asks the collector to tell address family and prefix from the
// value.
const typeIP Type = "ip"

// collector normalises, defaults, merges and counts what a parser finds.
type collector struct {
	format  Format
	opts    Options
	out     []Indicator
	seen    map[key]int
	warns   []Warning
	dropped int
}

func newCollector(f Format, o Options) *collector {
	return &collector{format: f, opts: o.withDefaults(f), seen: make(map[key]int)}
}

func (c *collector) warn(line int, where, format string, args ...any) {
	if len(c.warns) >= c.opts.MaxWarnings {
		c.dropped++
		return
	}
	c.warns = append(c.warns, Warning{Line: line, Where: where, Msg: fmt.Sprintf(format, args...)})
}

// warnCount counts the warnings so far, kept or not.
func (c *collector) warnCount() int { return len(c.warns) + c.dropped }

// add normalises r and keeps it; a value that is not an indicator of its
// type becomes a warning. It fails only when the indicator limit is
// exceeded.
func (c *collector) add(r raw, line int, where string) error {
	if r.typ == typeIP {
		r.typ = IPv4 // New tells the family and prefix from the value
	}
	ind, err := New(r.typ, r.value, c.opts.Source)
	if err != nil {
		c.warn(line, where, "skipped: %v", err)
		return nil
	}
	ind.Refs = []Ref{r.ref}
	ind.Confidence = r.confidence
	if ind.Confidence < 0 || ind.Confidence > 100 {
		ind.Confidence = c.opts.Confidence
	}
	ind.TLP = r.tlp
	if ind.TLP == "" {
		ind.TLP = c.opts.TLP
	}
	ind.Tags = slices.Clone(r.tags) // parsers share one tag list between indicators; merging appends
	ind.FirstSeen, ind.LastSeen, ind.Expires = r.first, r.last, r.expires
	// Without a last-seen date, the entry was seen in the feed now.
	if ind.LastSeen.IsZero() {
		ind.LastSeen = c.opts.Now
		if ind.LastSeen.IsZero() {
			ind.LastSeen = ind.FirstSeen
		}
	}
	if ind.FirstSeen.IsZero() {
		ind.FirstSeen = ind.LastSeen
	}
	if ind.LastSeen.Before(ind.FirstSeen) {
		ind.LastSeen = ind.FirstSeen
	}
	if ind.Expires.IsZero() && c.opts.TTL > 0 && !ind.LastSeen.IsZero() {
		ind.Expires = ind.LastSeen.Add(c.opts.TTL)
	}
	ind.Description = r.desc
	k := ind.key()
	if i, ok := c.seen[k]; ok {
		c.out[i].merge(&ind)
		return nil
	}
	if len(c.out) >= c.opts.MaxIndicators {
		return &ParseError{Format: c.format, Line: line, Where: where, Err: ErrTooMany,
			Msg: fmt.Sprintf("more than %d indicators (raise Options.MaxIndicators if the feed is legitimately this big)", c.opts.MaxIndicators)}
	}
	c.seen[k] = len(c.out)
	c.out = append(c.out, ind)
	return nil
}

func (c *collector) result() ([]Indicator, []Warning) {
	if c.dropped > 0 {
		c.warns = append(c.warns, Warning{Msg: fmt.Sprintf("%d more warnings not shown", c.dropped)})
	}
	return c.out, c.warns
}

// parseTime reads the time formats feeds use: RFC 3339, "2006-01-02
// 15:04:05" (UTC, optionally followed by " UTC"), a date, or Unix seconds.
func parseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "null" || s == "None" {
		return time.Time{}, false
	}
	if isDigits(s) && len(s) <= 12 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return time.Time{}, false
		}
		return time.Unix(n, 0).UTC(), true
	}
	s = strings.TrimSuffix(s, " UTC")
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04:05.999999", "2006-01-02T15:04:05.999999", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// flexString reads a JSON string, number or boolean as a string (null as
// ""); MISP and ThreatFox are not consistent about quoting.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	case b[0] == '{' || b[0] == '[':
		return errors.New("want a string, got an object or array")
	default:
		*f = flexString(b)
	}
	return nil
}

// flexBool reads true/false, "1"/"0", "true"/"false", 1/0 and null.
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	switch strings.ToLower(string(s)) {
	case "true", "1", "yes":
		*f = true
	case "false", "0", "no", "":
		*f = false
	default:
		return fmt.Errorf("want a boolean, got %q", string(s))
	}
	return nil
}

// flexTags reads tags given as a JSON array of strings, a comma-separated
// string, or null.
type flexTags []string

func (f *flexTags) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var l []flexString
		if err := json.Unmarshal(b, &l); err != nil {
			return err
		}
		*f = (*f)[:0]
		for _, s := range l {
			*f = addTag(*f, string(s))
		}
		return nil
	}
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	*f = splitTags(string(s), ",")
	return nil
}

func splitTags(s, seps string) []string {
	var out []string
	for _, t := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(seps, r) }) {
		out = addTag(out, t)
	}
	return out
}
