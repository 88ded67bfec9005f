package intel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// MISP JSON as written by MISP and PyMISP. Numbers and booleans are often
// quoted, hence the flex types.
type mispTag struct {
	Name flexString `json:"name"`
}

type mispEvent struct {
	UUID      flexString        `json:"uuid"`
	Info      flexString        `json:"info"`
	Date      flexString        `json:"date"`
	Timestamp flexString        `json:"timestamp"`
	Tag       []mispTag         `json:"Tag"`
	Attribute []json.RawMessage `json:"Attribute"`
	Object    []json.RawMessage `json:"Object"`
}

type mispObject struct {
	UUID      flexString        `json:"uuid"`
	Name      flexString        `json:"name"`
	Deleted   flexBool          `json:"deleted"`
	Attribute []json.RawMessage `json:"Attribute"`
}

type mispAttribute struct {
	UUID      flexString `json:"uuid"`
	Type      flexString `json:"type"`
	Value     flexString `json:"value"`
	Comment   flexString `json:"comment"`
	ToIDS     flexBool   `json:"to_ids"`
	Deleted   flexBool   `json:"deleted"`
	Timestamp flexString `json:"timestamp"`
	FirstSeen flexString `json:"first_seen"`
	LastSeen  flexString `json:"last_seen"`
	Tag       []mispTag  `json:"Tag"`
}

// mispTypes maps the MISP attribute types the matcher can use to the
// indicator type of each '|'-separated part ("" = ignore that part).
var mispTypes = map[string][]Type{
	"ip-src":          {typeIP},
	"ip-dst":          {typeIP},
	"ip-src|port":     {typeIP, ""},
	"ip-dst|port":     {typeIP, ""},
	"domain":          {Domain},
	"hostname":        {Domain},
	"domain|ip":       {Domain, typeIP},
	"hostname|port":   {Domain, ""},
	"url":             {URL},
	"md5":             {MD5},
	"sha1":            {SHA1},
	"sha256":          {SHA256},
	"filename|md5":    {"", MD5},
	"filename|sha1":   {"", SHA1},
	"filename|sha256": {"", SHA256},
	"malware-sample":  {"", MD5},
	"email-src":       {Email},
	"email-reply-to":  {Email},
	"email":           {Email},
}

// ParseMISP reads MISP events: a single event ({"Event": {...}}, as
// exported by MISP, PyMISP and MISP feeds), a list of them, or a REST
// /events/restSearch response ({"response": [{"Event": {...}}, ...]}).
// Attributes (and attributes of objects) of the types in docs/intel.md
// become indicators; to_ids=false attributes are skipped unless
// Options.IncludeNonIDS; deleted attributes and objects are skipped. A
// "tlp:*" tag on the attribute, or else on the event, gives the TLP.
func ParseMISP(r io.Reader, opts Options) ([]Indicator, []Warning, error) {
	c := newCollector(FormatMISP, opts)
	data, err := readAll(FormatMISP, r, c.opts.MaxBytes)
	if err != nil {
		return nil, nil, err
	}
	st := &mispStats{}
	if err := parseMISPData(c, data, "", st); err != nil {
		return nil, nil, err
	}
	st.report(c)
	out, warns := c.result()
	return out, warns, nil
}

// mispStats counts skipped attributes so that each reason is one warning.
type mispStats struct {
	nonIDS      int
	deleted     int
	unsupported map[string]int
}

func (s *mispStats) report(c *collector) {
	if s.nonIDS > 0 {
		c.warn(0, "", "%d attributes with to_ids=false skipped (set IncludeNonIDS to keep them)", s.nonIDS)
	}
	if s.deleted > 0 {
		c.warn(0, "", "%d deleted attributes or objects skipped", s.deleted)
	}
	types := make([]string, 0, len(s.unsupported))
	for t := range s.unsupported {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		c.warn(0, "", "%d attributes of type %q skipped (not an observable the matcher uses)", s.unsupported[t], t)
	}
}

// parseMISPData reads one MISP document into c. where prefixes positions
// (a feed's event file).
func parseMISPData(c *collector, data []byte, where string, st *mispStats) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return &ParseError{Format: FormatMISP, Where: where, Msg: "empty input (want MISP event JSON)"}
	}
	var wrappers []json.RawMessage
	if trimmed[0] == '[' {
		if err := decodeJSON(FormatMISP, data, &wrappers, "a list of MISP events"); err != nil {
			return withWhere(err, where)
		}
	} else {
		var top struct {
			Event     json.RawMessage `json:"Event"`
			Response  json.RawMessage `json:"response"`
			Attribute json.RawMessage `json:"Attribute"`
		}
		if err := decodeJSON(FormatMISP, data, &top, "a MISP event"); err != nil {
			return withWhere(err, where)
		}
		switch {
		case top.Event != nil:
			wrappers = []json.RawMessage{data}
		case top.Response != nil:
			rt := bytes.TrimSpace(top.Response)
			if len(rt) > 0 && rt[0] == '{' {
				wrappers = []json.RawMessage{top.Response}
			} else if err := json.Unmarshal(top.Response, &wrappers); err != nil {
				return &ParseError{Format: FormatMISP, Where: where, Msg: "\"response\" is not a list of events: " + err.Error(), Err: err}
			}
		case top.Attribute != nil:
			// A bare event object without the {"Event": ...} wrapper.
			return parseMISPEvent(c, data, where, st)
		default:
			return &ParseError{Format: FormatMISP, Where: where,
				Msg: `no "Event" or "response" key: this is not a MISP event or restSearch response`}
		}
	}
	for i, w := range wrappers {
		var ev struct {
			Event json.RawMessage `json:"Event"`
		}
		pos := joinWhere(where, fmt.Sprintf("events[%d]", i))
		if err := json.Unmarshal(w, &ev); err != nil || ev.Event == nil {
			c.warn(0, pos, "skipped: not an {\"Event\": ...} object")
			continue
		}
		if err := parseMISPEvent(c, ev.Event, pos, st); err != nil {
			return err
		}
	}
	return nil
}

func withWhere(err error, where string) error {
	var pe *ParseError
	if where != "" && errors.As(err, &pe) {
		pe.Where = joinWhere(where, pe.Where)
	}
	return err
}

func joinWhere(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + " " + b
}

// mispTagInfo extracts the TLP, a confidence and the other tag names.
func mispTagInfo(tags []mispTag) (tlp TLP, confidence int, names []string) {
	confidence = -1
	for _, t := range tags {
		name := strings.TrimSpace(string(t.Name))
		if l, ok := strings.CutPrefix(strings.ToLower(name), "tlp:"); ok {
			if v, ok := ParseTLP(l); ok {
				tlp = tlp.Stricter(v)
			}
			continue
		}
		if v, ok := strings.CutPrefix(strings.ToLower(name), "estimative-language:confidence-in-analytic-judgment="); ok {
			switch strings.Trim(v, `"`) {
			case "high":
				confidence = 90
			case "moderate":
				confidence = 60
			case "low":
				confidence = 30
			}
		}
		if len(names) < 32 {
			names = addTag(names, name)
		}
	}
	return tlp, confidence, names
}

func parseMISPEvent(c *collector, data []byte, where string, st *mispStats) error {
	var ev mispEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		c.warn(0, where, "skipped event: %v", err)
		return nil
	}
	evWhere := joinWhere(where, "Event "+string(ev.UUID))
	evTLP, evConf, evTags := mispTagInfo(ev.Tag)
	evDate, _ := parseTime(string(ev.Date))
	base := mispBase{event: ev, tlp: evTLP, conf: evConf, tags: evTags, date: evDate}
	for i, a := range ev.Attribute {
		if err := base.attribute(c, a, fmt.Sprintf("%s Attribute[%d]", evWhere, i), "", st); err != nil {
			return err
		}
	}
	for i, o := range ev.Object {
		var obj mispObject
		ow := fmt.Sprintf("%s Object[%d]", evWhere, i)
		if err := json.Unmarshal(o, &obj); err != nil {
			c.warn(0, ow, "skipped object: %v", err)
			continue
		}
		if obj.Deleted {
			st.deleted++
			continue
		}
		for j, a := range obj.Attribute {
			if err := base.attribute(c, a, fmt.Sprintf("%s Attribute[%d]", ow, j), string(obj.Name), st); err != nil {
				return err
			}
		}
	}
	return nil
}

type mispBase struct {
	event mispEvent
	tlp   TLP
	conf  int
	tags  []string
	date  time.Time
}

func (b *mispBase) attribute(c *collector, data []byte, where, object string, st *mispStats) error {
	var a mispAttribute
	if err := json.Unmarshal(data, &a); err != nil {
		c.warn(0, where, "skipped attribute: %v", err)
		return nil
	}
	where = joinWhere(where, string(a.UUID))
	if a.Deleted {
		st.deleted++
		return nil
	}
	typ := strings.ToLower(strings.TrimSpace(string(a.Type)))
	parts, ok := mispTypes[typ]
	if !ok {
		if st.unsupported == nil {
			st.unsupported = map[string]int{}
		}
		if len(st.unsupported) < 256 {
			st.unsupported[typ]++
		}
		return nil
	}
	if !bool(a.ToIDS) && !c.opts.IncludeNonIDS {
		st.nonIDS++
		return nil
	}
	values := []string{string(a.Value)}
	if len(parts) > 1 {
		values = strings.SplitN(string(a.Value), "|", len(parts))
		if len(values) != len(parts) {
			c.warn(0, where, "skipped: %s value %q does not have %d '|'-separated parts", typ, string(a.Value), len(parts))
			return nil
		}
	}
	tlp, conf, tags := mispTagInfo(a.Tag)
	if tlp == "" {
		tlp = b.tlp
	}
	if conf < 0 {
		conf = b.conf
	}
	all := slices.Clone(b.tags)
	for _, t := range tags {
		all = addTag(all, t)
	}
	if object != "" {
		all = addTag(all, "misp-object:"+object)
	}
	first, _ := parseTime(string(a.FirstSeen))
	if first.IsZero() {
		first = b.date
	}
	last, _ := parseTime(string(a.LastSeen))
	if last.IsZero() {
		last, _ = parseTime(string(a.Timestamp))
	}
	for i, t := range parts {
		if t == "" {
			continue
		}
		r := raw{
			typ: t, value: values[i], confidence: conf, tlp: tlp, tags: all, first: first, last: last,
			desc: string(a.Comment),
			ref:  Ref{Format: string(FormatMISP), Parent: string(b.event.UUID), ID: string(a.UUID), Title: string(b.event.Info)},
		}
		if err := c.add(r, 0, where); err != nil {
			return err
		}
	}
	return nil
}

// ManifestEntry is one event listed in a MISP feed's manifest.json.
type ManifestEntry struct {
	UUID      string
	Info      string
	Date      string
	Timestamp time.Time // last change of the event; a fetcher reloads events whose timestamp moved
	Tags      []string
}

// ParseMISPManifest reads a MISP feed's manifest.json: an object keyed by
// event uuid. Keys that are not uuids are skipped with a warning (they
// would otherwise become file names in the loader). Entries come sorted
// by uuid.
func ParseMISPManifest(r io.Reader, opts Options) ([]ManifestEntry, []Warning, error) {
	c := newCollector(FormatMISPFeed, opts)
	data, err := readAll(FormatMISPFeed, r, c.opts.MaxBytes)
	if err != nil {
		return nil, nil, err
	}
	var m map[string]json.RawMessage
	if err := decodeJSON(FormatMISPFeed, data, &m, "a MISP feed manifest (an object keyed by event uuid)"); err != nil {
		return nil, nil, err
	}
	uuids := make([]string, 0, len(m))
	for k := range m {
		uuids = append(uuids, k)
	}
	sort.Strings(uuids)
	out := make([]ManifestEntry, 0, len(uuids))
	for _, u := range uuids {
		if !isUUID(u) {
			c.warn(0, fmt.Sprintf("manifest key %q", truncate(u, 80)), "skipped: not an event uuid")
			continue
		}
		var e struct {
			Info      flexString `json:"info"`
			Date      flexString `json:"date"`
			Timestamp flexString `json:"timestamp"`
			Tag       []mispTag  `json:"Tag"`
		}
		if err := json.Unmarshal(m[u], &e); err != nil {
			c.warn(0, "manifest "+u, "skipped: %v", err)
			continue
		}
		ts, _ := parseTime(string(e.Timestamp))
		me := ManifestEntry{UUID: strings.ToLower(u), Info: string(e.Info), Date: string(e.Date), Timestamp: ts}
		for _, t := range e.Tag {
			me.Tags = addTag(me.Tags, string(t.Name))
		}
		out = append(out, me)
	}
	_, warns := c.result()
	return out, warns, nil
}

// EventLoader opens the event file of a MISP feed (<uuid>.json next to the
// manifest, over HTTP or from disk: the caller's I/O). The parser closes
// it.
type EventLoader func(uuid string) (io.ReadCloser, error)

// ParseMISPFeed reads a MISP feed: the manifest, then every event it lists
// through load. An event that cannot be loaded or parsed becomes a warning;
// the rest of the feed is still read. Each event file is limited to
// Options.MaxBytes.
func ParseMISPFeed(manifest io.Reader, load EventLoader, opts Options) ([]Indicator, []Warning, error) {
	entries, warns, err := ParseMISPManifest(manifest, opts)
	if err != nil {
		return nil, nil, err
	}
	c := newCollector(FormatMISPFeed, opts)
	c.warns = warns
	st := &mispStats{}
	for _, e := range entries {
		rc, err := load(e.UUID)
		if err != nil {
			c.warn(0, "event "+e.UUID, "not loaded: %v", err)
			continue
		}
		data, err := readAll(FormatMISPFeed, rc, c.opts.MaxBytes)
		rc.Close()
		if err != nil {
			c.warn(0, "event "+e.UUID, "not loaded: %v", err)
			continue
		}
		if err := parseMISPData(c, data, "event file "+e.UUID+".json", st); err != nil {
			if errors.Is(err, ErrTooMany) {
				return nil, nil, err
			}
			c.warn(0, "", "%v", err)
		}
	}
	st.report(c)
	out, w := c.result()
	return out, w, nil
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHexByte(c) {
				return false
			}
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
