package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxNesting bounds how deep a decoded document may nest; deeper input is
// refused rather than walked.
const MaxNesting = 32

// MarshalJSON writes the event as a nested ECS document with keys sorted, so
// the same event always gives the same bytes.
func (e Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 96*len(e)))
}

// AppendJSON appends the event's JSON encoding (as MarshalJSON) to dst. It
// is the allocation-light form for hot paths (publishing, archiving).
//
// Keys are sorted, so the dotted keys that share a prefix "a." are
// contiguous and the nested objects can be written in one pass. A key that
// is also the prefix of other keys ("a" and "a.b") keeps the longer keys
// dotted under it, so no object holds a name twice.
func (e Event) AppendJSON(dst []byte) ([]byte, error) {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	open := make([]string, 0, 4) // segments of the object path currently open
	segs := make([]string, 0, 8)
	dst = append(dst, '{')
	first := true
	for _, k := range keys {
		segs = e.segments(segs[:0], k)
		// Close the objects the new key is not inside.
		common := 0
		for common < len(open) && common < len(segs)-1 && open[common] == segs[common] {
			common++
		}
		for len(open) > common {
			dst = append(dst, '}')
			open = open[:len(open)-1]
			first = false
		}
		// Open the objects it is inside.
		for _, seg := range segs[len(open) : len(segs)-1] {
			if !first {
				dst = append(dst, ',')
			}
			dst = appendString(dst, seg)
			dst = append(dst, ':', '{')
			open = append(open, seg)
			first = true
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendString(dst, segs[len(segs)-1])
		dst = append(dst, ':')
		var err error
		if dst, err = appendValue(dst, k, e[k]); err != nil {
			return nil, err
		}
	}
	for range open {
		dst = append(dst, '}')
	}
	return append(dst, '}'), nil
}

// segments appends to segs the object names of a dotted key, keeping the
// rest of the key dotted below any prefix that is itself a key of the event.
func (e Event) segments(segs []string, k string) []string {
	if k == "@timestamp" || !strings.Contains(k, ".") {
		return append(segs, k)
	}
	start := 0
	for i := 0; i < len(k); i++ {
		if k[i] != '.' {
			continue
		}
		if i == start || i == len(k)-1 {
			break // empty segment: keep the rest as one name
		}
		if _, scalar := e[k[:i]]; scalar {
			break // "a" is a value: "a.b" stays dotted beside it
		}
		segs = append(segs, k[start:i])
		start = i + 1
	}
	return append(segs, k[start:])
}

func appendValue(dst []byte, key string, v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return appendString(dst, x), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case time.Time:
		dst = append(dst, '"')
		dst = x.UTC().AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"'), nil
	case []string:
		dst = append(dst, '[')
		for i, s := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, s)
		}
		return append(dst, ']'), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding field %q: %w", key, err)
	}
	return append(dst, b...), nil
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028/U+2029
// escaped, as encoding/json does (HTML characters are left as they are).
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\\ufffd"...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// UnmarshalJSON reads a nested or dotted ECS document (or a mix of both) and
// flattens it. Values of registered fields are converted to their declared
// type; a value that cannot be is an error naming the field. Unregistered
// scalars are kept (numbers as int64 when integral, else float64); lists of
// scalars become []string; anything else unregistered is kept as its JSON text.
func (e *Event) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("decoding event: %w", err)
	}
	if raw == nil {
		return fmt.Errorf("decoding event: not a JSON object")
	}
	if dec.More() {
		return fmt.Errorf("decoding event: trailing data after the JSON object")
	}
	out := make(Event, len(raw)+8)
	if err := flatten(out, "", raw, 0); err != nil {
		return err
	}
	*e = out
	return nil
}

// Decode parses one JSON event; it does not validate it.
func Decode(data []byte) (Event, error) {
	var e Event
	err := e.UnmarshalJSON(data)
	return e, err
}

func flatten(out Event, prefix string, m map[string]any, depth int) error {
	if depth > MaxNesting {
		return &FieldError{Field: prefix, Reason: fmt.Sprintf("nested deeper than %d levels", MaxNesting)}
	}
	for k, v := range m {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		if obj, ok := v.(map[string]any); ok {
			if _, registered := byName[name]; !registered {
				if err := flatten(out, name, obj, depth+1); err != nil {
					return err
				}
				continue
			}
		}
		if _, dup := out[name]; dup {
			return &FieldError{Field: name, Reason: "given twice (nested and dotted)"}
		}
		cv, err := convert(name, v)
		if err != nil {
			return err
		}
		if cv != nil {
			out[name] = cv
		}
	}
	return nil
}

func convert(name string, v any) (any, error) {
	def, known := byName[name]
	if v == nil {
		return nil, nil
	}
	if !known {
		return convertLoose(name, v)
	}
	if def.Array {
		list, isList := v.([]any)
		if !isList {
			list = []any{v}
		}
		strs := make([]string, 0, len(list))
		for _, item := range list {
			s, err := scalarString(def, item)
			if err != nil {
				return nil, err
			}
			strs = append(strs, s)
		}
		return strs, nil
	}
	bad := func(reason string) error { return &FieldError{Field: name, Reason: reason} }
	switch def.Type {
	case Keyword, Text, IP:
		return scalarString(def, v)
	case Long:
		switch x := v.(type) {
		case json.Number:
			n, err := strconv.ParseInt(string(x), 10, 64)
			if err != nil {
				f, ferr := x.Float64()
				if ferr != nil || f != float64(int64(f)) {
					return nil, bad(fmt.Sprintf("%s is not an integer", x))
				}
				n = int64(f)
			}
			return n, nil
		case string:
			n, err := strconv.ParseInt(x, 10, 64)
			if err != nil {
				return nil, bad(fmt.Sprintf("%q is not an integer", x))
			}
			return n, nil
		}
		return nil, bad(fmt.Sprintf("want an integer, got %s", jsonKind(v)))
	case Double:
		switch x := v.(type) {
		case json.Number:
			f, err := x.Float64()
			if err != nil {
				return nil, bad(fmt.Sprintf("%s is not a number", x))
			}
			return f, nil
		case string:
			f, err := strconv.ParseFloat(x, 64)
			if err != nil {
				return nil, bad(fmt.Sprintf("%q is not a number", x))
			}
			return f, nil
		}
		return nil, bad(fmt.Sprintf("want a number, got %s", jsonKind(v)))
	case Date:
		s, ok := v.(string)
		if !ok {
			return nil, bad(fmt.Sprintf("want an RFC 3339 time string, got %s", jsonKind(v)))
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, bad(fmt.Sprintf("%q is not an RFC 3339 time", s))
		}
		return t.UTC(), nil
	case Bool:
		b, ok := v.(bool)
		if !ok {
			return nil, bad(fmt.Sprintf("want true or false, got %s", jsonKind(v)))
		}
		return b, nil
	}
	return nil, bad("unknown field type " + string(def.Type))
}

func scalarString(def FieldDef, v any) (string, error) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case json.Number:
		if def.Type == IP {
			return "", &FieldError{Field: def.Name, Reason: "want an IP address string, got a number"}
		}
		s = string(x)
	case bool:
		s = strconv.FormatBool(x)
	default:
		return "", &FieldError{Field: def.Name, Reason: fmt.Sprintf("want a string, got %s", jsonKind(v))}
	}
	if def.Type == IP {
		if err := checkScalar(def, s); err != nil {
			return "", err
		}
	}
	return s, nil
}

func convertLoose(name string, v any) (any, error) {
	switch x := v.(type) {
	case string, bool:
		return x, nil
	case json.Number:
		if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return n, nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, &FieldError{Field: name, Reason: fmt.Sprintf("%s is not a number", x)}
		}
		return f, nil
	case []any:
		strs := make([]string, 0, len(x))
		for _, item := range x {
			switch it := item.(type) {
			case string:
				strs = append(strs, it)
			case json.Number:
				strs = append(strs, string(it))
			case bool:
				strs = append(strs, strconv.FormatBool(it))
			case nil:
			default:
				b, err := json.Marshal(x)
				if err != nil {
					return nil, &FieldError{Field: name, Reason: err.Error()}
				}
				return string(b), nil
			}
		}
		return strs, nil
	case map[string]any:
		b, err := json.Marshal(x)
		if err != nil {
			return nil, &FieldError{Field: name, Reason: err.Error()}
		}
		return string(b), nil
	}
	return nil, &FieldError{Field: name, Reason: fmt.Sprintf("unsupported JSON value %s", jsonKind(v))}
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
