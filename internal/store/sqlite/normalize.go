package sqlite

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
	"github.com/csirt-toscana/platform/internal/store/query"
)

// row is a document ready to be written: the source as returned to readers
// (with its tenant in organization.id) and the searchable fields in the
// normalised form the SQL compiler expects (see fieldsJSON).
type row struct {
	id     string
	tenant string
	ts     *int64 // the collection's time field in Unix nanoseconds; nil if absent
	source []byte
	fields []byte
}

// tsArg is the time column's value: NULL when the document has no time.
func (r *row) tsArg() any {
	if r.ts == nil {
		return nil
	}
	return *r.ts
}

func (r *row) size() int { return len(r.source) + len(r.fields) + len(r.id) + 64 }

// prepare checks a document against the scope and the collection's schema
// and builds its row. The tenant comes from d.Tenant; when that is empty,
// from the source's organization.id, else from a tenant scope.
func prepare(s store.Scope, sc store.Schema, d store.Doc) (*row, error) {
	if !s.Valid() {
		return nil, store.ErrUnscoped
	}
	if err := store.ValidID(d.ID); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(d.Source))
	dec.UseNumber()
	var src map[string]any
	if err := dec.Decode(&src); err != nil || src == nil {
		return nil, fmt.Errorf("%w: document %s: source is not a JSON object", store.ErrInvalid, d.ID)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: document %s: trailing data after the JSON object", store.ErrInvalid, d.ID)
	}
	have, err := sourceTenant(src)
	if err != nil {
		return nil, fmt.Errorf("%w: document %s: %w", store.ErrInvalid, d.ID, err)
	}
	tenant := d.Tenant
	if tenant == "" {
		tenant = have
	}
	if tenant == "" {
		tenant = s.Tenant()
	}
	if tenant == "" {
		return nil, fmt.Errorf("%w: document %s has no tenant", store.ErrInvalid, d.ID)
	}
	if err := store.ValidID(tenant); err != nil {
		return nil, fmt.Errorf("%w: document %s: bad tenant %q", store.ErrInvalid, d.ID, tenant)
	}
	if have != "" && have != tenant {
		return nil, fmt.Errorf("%w: document %s: %s is %q but the document's tenant is %q",
			store.ErrInvalid, d.ID, store.TenantField, have, tenant)
	}
	if err := s.Check(tenant); err != nil {
		return nil, fmt.Errorf("writing document %s: %w", d.ID, err)
	}
	r := &row{id: d.ID, tenant: tenant, source: d.Source}
	if have == "" {
		if org, ok := src["organization"].(map[string]any); ok {
			org["id"] = tenant
		} else {
			src["organization"] = map[string]any{"id": tenant}
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(src); err != nil {
			return nil, fmt.Errorf("%w: document %s: %w", store.ErrInvalid, d.ID, err)
		}
		r.source = bytes.TrimRight(buf.Bytes(), "\n")
	}
	fields := make(map[string]any, 16)
	if err := extract(sc, fields, "", src, 0); err != nil {
		return nil, fmt.Errorf("%w: document %s: %w", store.ErrInvalid, d.ID, err)
	}
	fields[store.TenantField] = tenant
	if sc.TimeField != "" {
		if v, ok := fields[sc.TimeField].(int64); ok {
			r.ts = &v
		}
	}
	r.fields = appendFields(make([]byte, 0, 512), fields)
	return r, nil
}

// sourceTenant returns the organization.id the source already carries,
// written dotted or nested.
func sourceTenant(src map[string]any) (string, error) {
	var got []string
	if v, ok := src[store.TenantField]; ok && v != nil {
		s, isStr := v.(string)
		if !isStr {
			return "", fmt.Errorf("%s is not a string", store.TenantField)
		}
		got = append(got, s)
	}
	if o, ok := src["organization"]; ok && o != nil {
		org, isObj := o.(map[string]any)
		if !isObj {
			return "", fmt.Errorf("organization is not an object")
		}
		if v, ok := org["id"]; ok && v != nil {
			s, isStr := v.(string)
			if !isStr {
				return "", fmt.Errorf("%s is not a string", store.TenantField)
			}
			got = append(got, s)
		}
	}
	switch {
	case len(got) == 0:
		return "", nil
	case len(got) == 2 && got[0] != got[1]:
		return "", fmt.Errorf("%s given twice with different values", store.TenantField)
	}
	return got[0], nil
}

// extract walks a (nested, dotted or mixed) source and collects the schema
// fields in normalised form. Fields outside the schema are not searchable
// and are left out.
func extract(sc store.Schema, out map[string]any, prefix string, m map[string]any, depth int) error {
	if depth > event.MaxNesting {
		return fmt.Errorf("nested deeper than %d levels", event.MaxNesting)
	}
	for k, v := range m {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		def, known := sc.Fields[name]
		if !known {
			if obj, ok := v.(map[string]any); ok {
				if err := extract(sc, out, name, obj, depth+1); err != nil {
					return err
				}
			}
			continue
		}
		nv, err := normalise(def, v)
		if err != nil {
			return fmt.Errorf("field %q: %w", name, err)
		}
		if nv == nil {
			continue
		}
		if _, dup := out[name]; dup {
			return fmt.Errorf("field %q given twice (nested and dotted)", name)
		}
		out[name] = nv
	}
	return nil
}

// normalise converts a field value to its stored form:
//
//	keyword: the string as written (numbers and booleans as their text)
//	text:    its tokens (query.Tokenize) joined by single spaces, with a
//	         leading and a trailing space, so a token or a phrase is a substring
//	ip:      32 hex digits of the 16-byte form (IPv4 mapped into IPv6), so
//	         byte order, ranges and CIDR are string comparisons
//	long:    int64;  double: float64
//	date:    Unix nanoseconds (int64), UTC
//	boolean: true/false
//
// List fields hold a JSON array of these; an empty list is absent. nil
// means absent.
func normalise(def event.FieldDef, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	list, isList := v.([]any)
	if !def.Array {
		if !isList {
			return scalar(def, v)
		}
		var vals []any
		for _, item := range list {
			nv, err := scalar(def, item)
			if err != nil {
				return nil, err
			}
			if nv != nil {
				vals = append(vals, nv)
			}
		}
		switch len(vals) {
		case 0:
			return nil, nil
		case 1:
			return vals[0], nil
		}
		return nil, fmt.Errorf("holds a list but is not a list field")
	}
	if !isList {
		list = []any{v}
	}
	vals := make([]any, 0, len(list))
	for _, item := range list {
		nv, err := scalar(def, item)
		if err != nil {
			return nil, err
		}
		if nv != nil {
			vals = append(vals, nv)
		}
	}
	if len(vals) == 0 {
		return nil, nil
	}
	return vals, nil
}

func scalar(def event.FieldDef, v any) (any, error) {
	switch v.(type) {
	case nil:
		return nil, nil
	case map[string]any, []any:
		return nil, fmt.Errorf("holds an object or a nested list, want %s", def.Type)
	}
	switch def.Type {
	case event.Keyword:
		switch x := v.(type) {
		case string:
			return x, nil
		case json.Number:
			return x.String(), nil
		case bool:
			return strconv.FormatBool(x), nil
		}
	case event.Text:
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case json.Number:
			s = x.String()
		case bool:
			s = strconv.FormatBool(x)
		}
		return " " + strings.Join(query.Tokenize(s), " ") + " ", nil
	case event.IP:
		if s, ok := v.(string); ok {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is not an IP address", s)
			}
			return ipKey(a), nil
		}
	case event.Long:
		if n, ok := number(v); ok {
			if i, err := strconv.ParseInt(n, 10, 64); err == nil {
				return i, nil
			}
			f, err := strconv.ParseFloat(n, 64)
			if err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) && math.Abs(f) < 1<<63 {
				return int64(f), nil // as Elasticsearch coerces: truncated
			}
			return nil, fmt.Errorf("%q is not a long", n)
		}
	case event.Double:
		if n, ok := number(v); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				return nil, fmt.Errorf("%q is not a double", n)
			}
			return f, nil
		}
	case event.Date:
		switch x := v.(type) {
		case string:
			t, err := parseTime(x)
			if err != nil {
				return nil, err
			}
			return t.UnixNano(), nil
		case json.Number:
			ms, err := x.Int64() // epoch milliseconds, as Elasticsearch reads a number
			if err != nil {
				return nil, fmt.Errorf("%q is not a date", x)
			}
			return time.UnixMilli(ms).UnixNano(), nil
		}
	case event.Bool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			switch x {
			case "true":
				return true, nil
			case "false":
				return false, nil
			}
		}
	default:
		return nil, fmt.Errorf("unknown field type %q", def.Type)
	}
	return nil, fmt.Errorf("%s value of the wrong kind (%T)", def.Type, v)
}

func number(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return x.String(), true
	case string:
		return strings.TrimSpace(x), true
	}
	return "", false
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999", // no zone: UTC, as Elasticsearch reads it
	"2006-01-02",
}

func parseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", s)
}

// ipKey is the stored, ordered form of an address.
func ipKey(a netip.Addr) string {
	b := a.As16()
	return hex.EncodeToString(b[:])
}

// ipFromKey turns a stored key back into the canonical text of the address
// (IPv4 for mapped IPv4 addresses).
func ipFromKey(k string) string {
	var b [16]byte
	if n, err := hex.Decode(b[:], []byte(k)); err != nil || n != 16 {
		return k
	}
	return netip.AddrFrom16(b).Unmap().String()
}

// prefixRange gives the first and last stored keys inside a prefix.
func prefixRange(p netip.Prefix) (lo, hi string) {
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	first := p.Addr().As16()
	last := first
	for i := bits; i < 128; i++ {
		last[i/8] |= 1 << (7 - uint(i%8))
	}
	return hex.EncodeToString(first[:]), hex.EncodeToString(last[:])
}

// appendFields writes the normalised fields as a JSON object. Values are
// only what normalise returns: strings, int64, float64 (finite), bools and
// lists of these.
func appendFields(b []byte, fields map[string]any) []byte {
	b = append(b, '{')
	first := true
	for k, v := range fields {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendValue(b, v)
	}
	return append(b, '}')
}

func appendValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case string:
		return appendJSONString(b, x)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case float64:
		return strconv.AppendFloat(b, x, 'g', -1, 64)
	case bool:
		return strconv.AppendBool(b, x)
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, e)
		}
		return append(b, ']')
	}
	return append(b, "null"...)
}

// appendJSONString writes s as a JSON string; invalid UTF-8 becomes U+FFFD
// as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, "\\ufffd"...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
