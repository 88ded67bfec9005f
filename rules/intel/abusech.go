package intel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// splitCSVLine splits one CSV record (RFC 4180 quoting, no embedded line
// breaks: the abuse.ch exports and local lists have none).
func splitCSVLine(line string, sep byte) ([]string, error) {
	var fields []string
	var b strings.Builder
	i := 0
	for {
		b.Reset()
		if i < len(line) && line[i] == '"' {
			i++
			closed := false
			for i < len(line) {
				c := line[i]
				if c == '"' {
					if i+1 < len(line) && line[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				b.WriteByte(c)
				i++
			}
			if !closed {
				return nil, fmt.Errorf("column %d: quoted field is not closed", i+1)
			}
			// Tolerate spaces between the closing quote and the separator.
			for i < len(line) && line[i] == ' ' {
				i++
			}
			if i < len(line) && line[i] != sep {
				return nil, fmt.Errorf("column %d: unexpected %q after a quoted field", i+1, line[i])
			}
		} else {
			j := strings.IndexByte(line[i:], sep)
			if j < 0 {
				j = len(line) - i
			}
			b.WriteString(strings.TrimSpace(line[i : i+j]))
			i += j
		}
		fields = append(fields, b.String())
		if i >= len(line) {
			return fields, nil
		}
		i++ // the separator
		if len(fields) > 1000 {
			return nil, errors.New("more than 1000 columns")
		}
	}
}

// textLines calls fn for every line of data with its 1-based number,
// without the line terminator. A UTF-8 byte order mark is dropped.
func textLines(data []byte, fn func(n int, line string) error) error {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	n := 0
	for len(data) > 0 {
		n++
		i := bytes.IndexByte(data, '\n')
		var line []byte
		if i < 0 {
			line, data = data, nil
		} else {
			line, data = data[:i], data[i+1:]
		}
		if err := fn(n, strings.TrimRight(string(line), "\r")); err != nil {
			return err
		}
	}
	return nil
}

// csvTable reads an abuse.ch style CSV: '#' comment lines, a header that
// may itself be commented out ("# id,dateadded,url,..."), quoted fields.
type csvTable struct {
	format  Format
	want    []string       // the columns of the published format, in order
	marker  string         // a column name whose presence identifies the header
	cols    map[string]int // column -> index, from the header or the default order
	rows    int            // data rows seen
	skipped int            // data rows that gave no indicator
}

func newCSVTable(f Format, marker string, cols ...string) *csvTable {
	t := &csvTable{format: f, want: cols, marker: marker, cols: map[string]int{}}
	for i, c := range cols {
		t.cols[c] = i
	}
	return t
}

// header reports whether fields is the header row and, if so, learns the
// column order from it.
func (t *csvTable) header(fields []string) bool {
	found := false
	for _, f := range fields {
		if strings.EqualFold(strings.TrimSpace(f), t.marker) {
			found = true
		}
	}
	if !found {
		return false
	}
	t.cols = map[string]int{}
	for i, f := range fields {
		t.cols[strings.ToLower(strings.TrimSpace(f))] = i
	}
	return true
}

func (t *csvTable) get(fields []string, col string) string {
	i, ok := t.cols[col]
	if !ok || i >= len(fields) {
		return ""
	}
	return fields[i]
}

// read walks the table, calling row for each data line.
func (t *csvTable) read(c *collector, data []byte, row func(line int, fields []string) (bool, error)) error {
	err := textLines(data, func(n int, line string) error {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			return nil
		}
		if strings.HasPrefix(trimmed, "#") {
			body := strings.TrimSpace(strings.TrimLeft(trimmed, "#"))
			if strings.Contains(strings.ToLower(body), t.marker) {
				if fields, err := splitCSVLine(body, ','); err == nil {
					t.header(fields)
				}
			}
			return nil
		}
		fields, err := splitCSVLine(trimmed, ',')
		if err != nil {
			c.warn(n, "", "skipped: %v", err)
			t.rows++
			t.skipped++
			return nil
		}
		if t.header(fields) {
			return nil
		}
		t.rows++
		ok, err := row(n, fields)
		if !ok {
			t.skipped++
		}
		return err
	})
	if err != nil {
		return err
	}
	if t.rows > 0 && t.rows == t.skipped {
		return &ParseError{Format: t.format, Msg: fmt.Sprintf(
			"none of the %d data lines is a %s entry (columns %s): is this the right format?", t.rows, t.format, strings.Join(t.want, ","))}
	}
	return nil
}

// ParseFeodo reads the Feodo Tracker IP blocklist CSV
// (first_seen_utc,dst_ip,dst_port,c2_status,last_online,malware; comment
// lines start with '#'). Each row is a botnet C2 address.
func ParseFeodo(r io.Reader, opts Options) ([]Indicator, []Warning, error) {
	c := newCollector(FormatFeodo, opts)
	data, err := readAll(FormatFeodo, r, c.opts.MaxBytes)
	if err != nil {
		return nil, nil, err
	}
	t := newCSVTable(FormatFeodo, "dst_ip", "first_seen_utc", "dst_ip", "dst_port", "c2_status", "last_online", "malware")
	err = t.read(c, data, func(n int, f []string) (bool, error) {
		ip, port, status, malware := t.get(f, "dst_ip"), t.get(f, "dst_port"), t.get(f, "c2_status"), t.get(f, "malware")
		first, _ := parseTime(t.get(f, "first_seen_utc"))
		last, _ := parseTime(t.get(f, "last_online"))
		var tags []string
		tags = addTag(tags, "botnet_cc")
		tags = addTag(tags, malware)
		if status != "" {
			tags = addTag(tags, "c2_status:"+strings.ToLower(status))
		}
		desc := "botnet C2"
		if malware != "" {
			desc = malware + " botnet C2"
		}
		if port != "" {
			desc += " on port " + port
		}
		if status != "" {
			desc += " (" + status + ")"
		}
		warnsBefore := c.warnCount()
		err := c.add(raw{
			typ: typeIP, value: ip, confidence: -1, tags: tags, first: first, last: last, desc: desc,
			ref: Ref{Format: string(FormatFeodo), ID: ip, Title: malware, Link: "https://feodotracker.abuse.ch/browse/host/" + ip + "/"},
		}, n, "")
		return c.warnCount() == warnsBefore, err
	})
	if err != nil {
		return nil, nil, err
	}
	out, warns := c.result()
	return out, warns, nil
}

// ParseURLhaus reads the URLhaus CSV dump
// (id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter;
// the header is a '#' comment). Each row is a malware distribution URL.
func ParseURLhaus(r io.Reader, opts Options) ([]Indicator, []Warning, error) {
	c := newCollector(FormatURLhaus, opts)
	data, err := readAll(FormatURLhaus, r, c.opts.MaxBytes)
	if err != nil {
		return nil, nil, err
	}
	t := newCSVTable(FormatURLhaus, "urlhaus_link", "id", "dateadded", "url", "url_status", "last_online", "threat", "tags", "urlhaus_link", "reporter")
	err = t.read(c, data, func(n int, f []string) (bool, error) {
		u, status, threat := t.get(f, "url"), t.get(f, "url_status"), t.get(f, "threat")
		first, _ := parseTime(t.get(f, "dateadded"))
		last, _ := parseTime(t.get(f, "last_online"))
		var tags []string
		tags = addTag(tags, threat)
		for _, tg := range splitTags(t.get(f, "tags"), ",") {
			tags = addTag(tags, tg)
		}
		if status != "" {
			tags = addTag(tags, "url_status:"+strings.ToLower(status))
		}
		desc := "malware URL"
		if threat != "" {
			desc = threat
		}
		if status != "" {
			desc += " (" + status + ")"
		}
		if rep := t.get(f, "reporter"); rep != "" {
			desc += ", reported by " + rep
		}
		warnsBefore := c.warnCount()
		err := c.add(raw{
			typ: URL, value: u, confidence: -1, tags: tags, first: first, last: last, desc: desc,
			ref: Ref{Format: string(FormatURLhaus), ID: t.get(f, "id"), Title: threat, Link: t.get(f, "urlhaus_link")},
		}, n, "")
		return c.warnCount() == warnsBefore, err
	})
	if err != nil {
		return nil, nil, err
	}
	out, warns := c.result()
	return out, warns, nil
}

// threatFoxEntry is one IOC of the ThreatFox JSON export (ioc_value,
// first_seen_utc, ...) or of the API (ioc, first_seen, ...).
type threatFoxEntry struct {
	ID               flexString `json:"id"`
	IOCValue         flexString `json:"ioc_value"`
	IOC              flexString `json:"ioc"`
	IOCType          flexString `json:"ioc_type"`
	ThreatType       flexString `json:"threat_type"`
	Malware          flexString `json:"malware"`
	MalwarePrintable flexString `json:"malware_printable"`
	FirstSeenUTC     flexString `json:"first_seen_utc"`
	FirstSeen        flexString `json:"first_seen"`
	LastSeenUTC      flexString `json:"last_seen_utc"`
	LastSeen         flexString `json:"last_seen"`
	Confidence       flexString `json:"confidence_level"`
	Reference        flexString `json:"reference"`
	Tags             flexTags   `json:"tags"`
	Reporter         flexString `json:"reporter"`
}

// ParseThreatFox reads a ThreatFox JSON export (an object keyed by IOC id,
// each holding an array of IOCs) or an API response ({"query_status":
// "ok", "data": [...]}). ioc types ip:port, domain, url, md5_hash,
// sha1_hash and sha256_hash are used.
func ParseThreatFox(r io.Reader, opts Options) ([]Indicator, []Warning, error) {
	c := newCollector(FormatThreatFox, opts)
	data, err := readAll(FormatThreatFox, r, c.opts.MaxBytes)
	if err != nil {
		return nil, nil, err
	}
	var top map[string]json.RawMessage
	if err := decodeJSON(FormatThreatFox, data, &top, "a ThreatFox export (an object keyed by IOC id)"); err != nil {
		return nil, nil, err
	}
	type item struct {
		id  string
		raw json.RawMessage
	}
	var items []item
	if d, ok := top["data"]; ok && top["query_status"] != nil {
		var list []json.RawMessage
		if err := json.Unmarshal(d, &list); err != nil {
			return nil, nil, &ParseError{Format: FormatThreatFox, Where: "data", Msg: "\"data\" is not a list of IOCs: " + err.Error(), Err: err}
		}
		for i, l := range list {
			items = append(items, item{fmt.Sprintf("data[%d]", i), l})
		}
	} else {
		ids := make([]string, 0, len(top))
		for k := range top {
			ids = append(ids, k)
		}
		sort.Slice(ids, func(i, j int) bool {
			if len(ids[i]) != len(ids[j]) {
				return len(ids[i]) < len(ids[j])
			}
			return ids[i] < ids[j]
		})
		for _, id := range ids {
			var list []json.RawMessage
			if err := json.Unmarshal(top[id], &list); err != nil {
				c.warn(0, "id "+truncate(id, 40), "skipped: not a list of IOCs")
				continue
			}
			for _, l := range list {
				items = append(items, item{id, l})
			}
		}
	}
	unsupported := map[string]int{}
	for _, it := range items {
		where := "id " + truncate(it.id, 40)
		var e threatFoxEntry
		if err := json.Unmarshal(it.raw, &e); err != nil {
			c.warn(0, where, "skipped: %v", err)
			continue
		}
		id := string(e.ID)
		if id == "" {
			id = it.id
		}
		value := string(e.IOCValue)
		if value == "" {
			value = string(e.IOC)
		}
		var typ Type
		switch strings.ToLower(string(e.IOCType)) {
		case "ip:port":
			typ, value = typeIP, hostOfHostPort(value)
		case "domain":
			typ = Domain
		case "url":
			typ = URL
		case "md5_hash":
			typ = MD5
		case "sha1_hash":
			typ = SHA1
		case "sha256_hash":
			typ = SHA256
		default:
			if len(unsupported) < 64 {
				unsupported[string(e.IOCType)]++
			}
			continue
		}
		first, _ := parseTime(string(e.FirstSeenUTC))
		if first.IsZero() {
			first, _ = parseTime(string(e.FirstSeen))
		}
		last, _ := parseTime(string(e.LastSeenUTC))
		if last.IsZero() {
			last, _ = parseTime(string(e.LastSeen))
		}
		conf := -1
		if n, ok := parseConfidence(string(e.Confidence)); ok {
			conf = n
		}
		family := string(e.MalwarePrintable)
		if family == "" {
			family = string(e.Malware)
		}
		var tags []string
		tags = addTag(tags, string(e.ThreatType))
		tags = addTag(tags, family)
		for _, t := range e.Tags {
			tags = addTag(tags, t)
		}
		desc := strings.TrimSpace(family + " " + strings.ReplaceAll(string(e.ThreatType), "_", " "))
		link := ""
		if isDigits(id) {
			link = "https://threatfox.abuse.ch/ioc/" + id + "/"
		}
		if err := c.add(raw{
			typ: typ, value: value, confidence: conf, tags: tags, first: first, last: last, desc: desc,
			ref: Ref{Format: string(FormatThreatFox), ID: id, Title: family, Link: link},
		}, 0, where); err != nil {
			return nil, nil, err
		}
	}
	types := make([]string, 0, len(unsupported))
	for t := range unsupported {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		c.warn(0, "", "%d IOCs of type %q skipped (not an observable the matcher uses)", unsupported[t], t)
	}
	out, warns := c.result()
	return out, warns, nil
}

// hostOfHostPort drops the port of "1.2.3.4:443" or "[2001:db8::1]:443"
// (a bare IPv6 address is returned as it is).
func hostOfHostPort(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i > 0 {
			return s[1:i]
		}
		return s
	}
	if strings.Count(s, ":") == 1 {
		return s[:strings.IndexByte(s, ':')]
	}
	return s
}

// parseConfidence reads a 0-100 confidence.
func parseConfidence(s string) (int, bool) {
	s = strings.TrimSpace(s)
	if !isDigits(s) || len(s) > 3 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	if n > 100 {
		return 0, false
	}
	return n, true
}
