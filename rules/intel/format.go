package intel

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
)

// Parse reads r in the given format (any of Formats).
func Parse(f Format, r io.Reader, opts Options) ([]Indicator, []Warning, error) {
	switch f {
	case FormatMISP:
		return ParseMISP(r, opts)
	case FormatFeodo:
		return ParseFeodo(r, opts)
	case FormatURLhaus:
		return ParseURLhaus(r, opts)
	case FormatThreatFox:
		return ParseThreatFox(r, opts)
	case FormatSTIX:
		return ParseSTIX(r, opts)
	case FormatTAXII:
		p, err := ParseTAXIIEnvelope(r, opts)
		return p.Indicators, p.Warnings, err
	case FormatCSV:
		return ParseCSV(r, opts)
	case FormatMISPFeed:
		return nil, nil, fmt.Errorf("the %s format needs its event files: use ParseMISPFeed with a loader", f)
	}
	return nil, nil, fmt.Errorf("unknown intel format %q (want one of %v)", f, Formats)
}

var (
	reMISPKey    = regexp.MustCompile(`"(Event|Attribute)"\s*:`)
	reThreatFox  = regexp.MustCompile(`"(ioc_value|ioc_type)"\s*:`)
	reSTIXBundle = regexp.MustCompile(`"type"\s*:\s*"bundle"`)
	reSTIXType   = regexp.MustCompile(`"type"\s*:\s*"(indicator|marking-definition|identity|report|malware|campaign|threat-actor|relationship)"`)
	reTAXII      = regexp.MustCompile(`"(objects|more)"\s*:`)
	reManifest   = regexp.MustCompile(`^\{\s*"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"\s*:\s*\{`)
)

// DetectFormat tells the format of a feed from its first bytes (64 KiB are
// plenty): JSON is MISP, ThreatFox, STIX or a TAXII envelope by its keys;
// text is Feodo Tracker or URLhaus by their header, else a local list.
func DetectFormat(head []byte) (Format, error) {
	head = bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	t := bytes.TrimSpace(head)
	if len(t) == 0 {
		return "", fmt.Errorf("empty input: cannot tell the intel format")
	}
	if t[0] == '{' || t[0] == '[' {
		switch {
		case reManifest.Match(t):
			return "", fmt.Errorf("this is a MISP feed manifest: read it with ParseMISPFeed and the feed's event files")
		case reMISPKey.Match(t):
			return FormatMISP, nil
		case reThreatFox.Match(t):
			return FormatThreatFox, nil
		case reSTIXBundle.Match(t):
			return FormatSTIX, nil
		case reTAXII.Match(t):
			return FormatTAXII, nil
		case reSTIXType.Match(t):
			return FormatSTIX, nil
		}
		return "", fmt.Errorf("JSON input, but not MISP, ThreatFox, STIX or TAXII: cannot tell the intel format")
	}
	lower := bytes.ToLower(t)
	switch {
	case bytes.Contains(lower, []byte("dst_ip")) || bytes.Contains(lower, []byte("feodo tracker")):
		return FormatFeodo, nil
	case bytes.Contains(lower, []byte("urlhaus_link")) || bytes.Contains(lower, []byte("urlhaus database")):
		return FormatURLhaus, nil
	}
	return FormatCSV, nil
}

// ParseAny detects the format of r and parses it: what `csirt rules hunt
// --intel FILE` uses.
func ParseAny(r io.Reader, opts Options) (Format, []Indicator, []Warning, error) {
	limit := opts.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxBytes
	}
	data, err := readAll("intel", r, limit)
	if err != nil {
		return "", nil, nil, err
	}
	head := data
	if len(head) > 64<<10 {
		head = head[:64<<10]
	}
	f, err := DetectFormat(head)
	if err != nil {
		return "", nil, nil, err
	}
	inds, warns, err := Parse(f, bytes.NewReader(data), opts)
	return f, inds, warns, err
}
