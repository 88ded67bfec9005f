package intel

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// csvTypeNames maps the type column of local lists to indicator types;
// typeIP and "" (detect) tell the type from the value.
var csvTypeNames = map[string]Type{
	"ip": typeIP, "ipv4": typeIP, "ipv6": typeIP, "cidr": typeIP, "network": typeIP, "ip-src": typeIP, "ip-dst": typeIP,
	"domain": Domain, "hostname": Domain, "fqdn": Domain,
	"url": URL,
	"md5": MD5, "sha1": SHA1, "sha256": SHA256, "hash": "",
	"email": Email, "email-src": Email,
	"": "",
}

// ParseCSV reads a local indicator list. With a header naming the columns
// type and value (and optionally confidence, tlp, tags, expires,
// description, first_seen, last_seen; separated by ',', ';' or tab), each
// row is one indicator; tags are separated by ';', '|' or ','. Without such
// a header, every line is one value whose type is detected (addresses,
// CIDRs, URLs, hashes by length, e-mail addresses, domains; defanged
// values like hxxp://evil[.]com are accepted). Lines starting with '#' are
// comments.
func ParseCSV(r io.Reader, opts Options) ([]Indicator, []Warning, error) {
	c := newCollector(FormatCSV, opts)
	data, err := readAll(FormatCSV, r, c.opts.MaxBytes)
	if err != nil {
		return nil, nil, err
	}
	var cols map[string]int
	var sep byte
	decided := false
	err = textLines(data, func(n int, line string) error {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			return nil
		}
		if !decided {
			decided = true
			if cols, sep = csvHeader(trimmed); cols != nil {
				var unknown []string
				for name := range cols {
					if !knownCSVColumn[name] {
						unknown = append(unknown, name)
					}
				}
				if len(unknown) > 0 {
					sort.Strings(unknown)
					c.warn(n, "", "columns %s are not read (known: type, value, confidence, tlp, tags, expires, description, first_seen, last_seen)", strings.Join(unknown, ", "))
				}
				return nil
			}
		}
		ref := Ref{Format: string(FormatCSV), ID: "line " + strconv.Itoa(n)}
		if cols == nil {
			typ, value, err := Detect(trimmed)
			if err != nil {
				c.warn(n, "", "skipped: %v", err)
				return nil
			}
			return c.add(raw{typ: typ, value: value, confidence: -1, ref: ref}, n, "")
		}
		fields, err := splitCSVLine(trimmed, sep)
		if err != nil {
			c.warn(n, "", "skipped: %v", err)
			return nil
		}
		return csvRow(c, n, cols, fields, ref)
	})
	if err != nil {
		return nil, nil, err
	}
	out, warns := c.result()
	return out, warns, nil
}

var knownCSVColumn = map[string]bool{"type": true, "value": true, "confidence": true, "tlp": true, "tags": true,
	"expires": true, "description": true, "first_seen": true, "last_seen": true}

// csvHeader recognises a header line naming at least type and value.
func csvHeader(line string) (map[string]int, byte) {
	for _, sep := range []byte{',', ';', '\t'} {
		fields, err := splitCSVLine(line, sep)
		if err != nil || len(fields) < 2 {
			continue
		}
		cols := map[string]int{}
		for i, f := range fields {
			f = strings.ToLower(strings.TrimSpace(f))
			if _, dup := cols[f]; !dup {
				cols[f] = i
			}
		}
		if _, ok := cols["type"]; !ok {
			continue
		}
		if _, ok := cols["value"]; ok {
			return cols, sep
		}
	}
	return nil, 0
}

func csvRow(c *collector, n int, cols map[string]int, fields []string, ref Ref) error {
	get := func(name string) string {
		if i, ok := cols[name]; ok && i < len(fields) {
			return strings.TrimSpace(fields[i])
		}
		return ""
	}
	typeName := strings.ToLower(get("type"))
	typ, ok := csvTypeNames[typeName]
	if !ok {
		c.warn(n, "", "skipped: unknown type %q (want ip, cidr, domain, url, md5, sha1, sha256, email, hash or empty to detect)", typeName)
		return nil
	}
	value := refang(get("value"))
	if typ == "" {
		t, v, err := Detect(value)
		if err != nil {
			c.warn(n, "", "skipped: %v", err)
			return nil
		}
		if typeName == "hash" && t != MD5 && t != SHA1 && t != SHA256 {
			c.warn(n, "", "skipped: %q is not an MD5, SHA-1 or SHA-256 digest", value)
			return nil
		}
		typ, value = t, v
	}
	r := raw{typ: typ, value: value, confidence: -1, ref: ref, desc: get("description"), tags: splitTags(get("tags"), ";|,")}
	if s := get("confidence"); s != "" {
		if v, ok := parseConfidence(s); ok {
			r.confidence = v
		} else {
			c.warn(n, "", "confidence %q is not a number from 0 to 100: using the default", s)
		}
	}
	if s := get("tlp"); s != "" {
		if v, ok := ParseTLP(s); ok {
			r.tlp = v
		} else {
			c.warn(n, "", "TLP %q is not clear, green, amber, amber+strict or red: using the default", s)
		}
	}
	for _, f := range []struct {
		col string
		t   *time.Time
	}{{"expires", &r.expires}, {"first_seen", &r.first}, {"last_seen", &r.last}} {
		s := get(f.col)
		if s == "" {
			continue
		}
		t, ok := parseTime(s)
		if !ok {
			c.warn(n, "", "skipped: %s %q is not a date (want RFC 3339 or YYYY-MM-DD)", f.col, s)
			return nil
		}
		*f.t = t
	}
	return c.add(r, n, fmt.Sprintf("value %q", truncate(value, 80)))
}
