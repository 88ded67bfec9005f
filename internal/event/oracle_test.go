package event

// This file keeps the decoder Event.UnmarshalJSON used before the streaming
// decoder (decode.go): encoding/json into a map[string]any with UseNumber,
// then flatten and convert. It is the oracle of FuzzDecodeDifferential and
// TestDecodeMatchesOracle. It is the old code verbatim, with names prefixed
// by "oracle" and one deliberate change marked "CHANGED" in oracleFlatten.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// oracleDecode is the old Decode.
func oracleDecode(data []byte) (Event, error) {
	var e Event
	err := e.oracleUnmarshalJSON(data)
	return e, err
}

func (e *Event) oracleUnmarshalJSON(data []byte) error {
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
	if err := oracleFlatten(out, "", raw, 0); err != nil {
		return err
	}
	*e = out
	return nil
}

func oracleFlatten(out Event, prefix string, m map[string]any, depth int) error {
	if depth > MaxNesting {
		return &FieldError{Field: prefix, Reason: fmt.Sprintf("nested deeper than %d levels", MaxNesting)}
	}
	for k, v := range m {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		// CHANGED: a null is dropped before the "given twice" check. The old
		// code checked it first, so {"a.b":null,"a":{"b":1}} failed or
		// succeeded depending on Go's random map iteration order; the
		// streaming decoder always gives the success outcome (nulls are
		// dropped, as documented), and this line makes the oracle agree.
		if v == nil {
			continue
		}
		if obj, ok := v.(map[string]any); ok {
			if _, registered := byName[name]; !registered {
				if err := oracleFlatten(out, name, obj, depth+1); err != nil {
					return err
				}
				continue
			}
		}
		if _, dup := out[name]; dup {
			return &FieldError{Field: name, Reason: "given twice (nested and dotted)"}
		}
		cv, err := oracleConvert(name, v)
		if err != nil {
			return err
		}
		if cv != nil {
			out[name] = cv
		}
	}
	return nil
}

func oracleConvert(name string, v any) (any, error) {
	def, known := byName[name]
	if v == nil {
		return nil, nil
	}
	if !known {
		return oracleConvertLoose(name, v)
	}
	if def.Array {
		list, isList := v.([]any)
		if !isList {
			list = []any{v}
		}
		strs := make([]string, 0, len(list))
		for _, item := range list {
			s, err := oracleScalarString(def, item)
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
		return oracleScalarString(def, v)
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
		return nil, bad(fmt.Sprintf("want an integer, got %s", oracleJSONKind(v)))
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
		return nil, bad(fmt.Sprintf("want a number, got %s", oracleJSONKind(v)))
	case Date:
		s, ok := v.(string)
		if !ok {
			return nil, bad(fmt.Sprintf("want an RFC 3339 time string, got %s", oracleJSONKind(v)))
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, bad(fmt.Sprintf("%q is not an RFC 3339 time", s))
		}
		return t.UTC(), nil
	case Bool:
		b, ok := v.(bool)
		if !ok {
			return nil, bad(fmt.Sprintf("want true or false, got %s", oracleJSONKind(v)))
		}
		return b, nil
	}
	return nil, bad("unknown field type " + string(def.Type))
}

func oracleScalarString(def FieldDef, v any) (string, error) {
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
		return "", &FieldError{Field: def.Name, Reason: fmt.Sprintf("want a string, got %s", oracleJSONKind(v))}
	}
	if def.Type == IP {
		if err := checkScalar(def, s); err != nil {
			return "", err
		}
	}
	return s, nil
}

func oracleConvertLoose(name string, v any) (any, error) {
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
	return nil, &FieldError{Field: name, Reason: fmt.Sprintf("unsupported JSON value %s", oracleJSONKind(v))}
}

func oracleJSONKind(v any) string {
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
