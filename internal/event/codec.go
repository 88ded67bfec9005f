package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MaxNesting bounds how deep a decoded document may nest; deeper input is
// refused rather than walked.
const MaxNesting = 32

// MarshalJSON writes the event as a nested ECS document with keys sorted, so
// the same event always gives the same bytes.
func (e Event) MarshalJSON() ([]byte, error) {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	root := &node{}
	for _, k := range keys {
		root.insert(k, e[k])
	}
	var buf bytes.Buffer
	buf.Grow(64 * len(keys))
	if err := root.write(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// node is one object level of the nested document being written.
type node struct {
	keys     []string // in insertion order (already sorted)
	values   map[string]any
	children map[string]*node
}

func (n *node) insert(dotted string, v any) {
	head, rest, nested := strings.Cut(dotted, ".")
	if nested && head != "" && rest != "" && dotted != "@timestamp" {
		if _, scalar := n.values[head]; !scalar {
			if n.children == nil {
				n.children = map[string]*node{}
			}
			c, ok := n.children[head]
			if !ok {
				c = &node{}
				n.children[head] = c
				n.keys = append(n.keys, head)
			}
			c.insert(rest, v)
			return
		}
	}
	// A scalar at this level, or a key that would clash with an object
	// already built: keep the remaining dotted path as one key.
	if _, clash := n.children[dotted]; clash {
		dotted += "."
	}
	if n.values == nil {
		n.values = map[string]any{}
	}
	n.values[dotted] = v
	n.keys = append(n.keys, dotted)
}

func (n *node) write(buf *bytes.Buffer) error {
	buf.WriteByte('{')
	for i, k := range n.keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		if c, ok := n.children[k]; ok {
			if err := c.write(buf); err != nil {
				return err
			}
			continue
		}
		if err := writeValue(buf, k, n.values[k]); err != nil {
			return err
		}
	}
	buf.WriteByte('}')
	return nil
}

func writeValue(buf *bytes.Buffer, key string, v any) error {
	switch x := v.(type) {
	case time.Time:
		buf.WriteByte('"')
		buf.WriteString(x.UTC().Format(time.RFC3339Nano))
		buf.WriteByte('"')
		return nil
	case int64:
		buf.WriteString(strconv.FormatInt(x, 10))
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding field %q: %w", key, err)
	}
	buf.Write(b)
	return nil
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
