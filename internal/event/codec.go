package event

import (
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
