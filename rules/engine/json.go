package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/csirt-toscana/platform/internal/event"
)

// DecodeLoose flattens any JSON object into an event (dotted keys), without
// the schema's type checks: numbers become int64 or float64, lists of
// scalars []string, nulls are dropped. For hunting over arbitrary JSON with
// the "none" mapping.
func DecodeLoose(data []byte) (event.Event, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("decoding event: %w", err)
	}
	if raw == nil {
		return nil, fmt.Errorf("decoding event: not a JSON object")
	}
	out := event.Event{}
	flattenLoose(out, "", raw, 0)
	return out, nil
}

func flattenLoose(out event.Event, prefix string, m map[string]any, depth int) {
	for k, v := range m {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		switch x := v.(type) {
		case nil:
		case map[string]any:
			if depth < event.MaxNesting {
				flattenLoose(out, name, x, depth+1)
			}
		case string, bool:
			out[name] = x
		case json.Number:
			if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
				out[name] = n
			} else if f, err := x.Float64(); err == nil {
				out[name] = f
			} else {
				out[name] = string(x)
			}
		case []any:
			l := make([]string, 0, len(x))
			for _, it := range x {
				switch y := it.(type) {
				case nil:
				case string:
					l = append(l, y)
				case json.Number:
					l = append(l, string(y))
				case bool:
					l = append(l, strconv.FormatBool(y))
				default:
					b, _ := json.Marshal(y)
					l = append(l, string(b))
				}
			}
			out[name] = l
		}
	}
}
