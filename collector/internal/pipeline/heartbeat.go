package pipeline

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
)

// HeartbeatStream is the stream id (and event.dataset) of agents'
// heartbeats: records of Kind summary holding a JSON object (written by
// agents/internal/heartbeat, documented in docs/agent.md: agent_version,
// hostname, policy_revision, counters{lines_read, lines_shipped, ...},
// sources[...], cert_not_after, ...). The pipeline turns them into events itself
// (the parsers never see them) and keeps every field it does not know.
const HeartbeatStream = "agent.heartbeat"

// HeartbeatPrefix is where a heartbeat event keeps the heartbeat's fields:
// csirt.heartbeat.lines_read, csirt.heartbeat.sources, ...
const HeartbeatPrefix = "csirt.heartbeat."

// maxHeartbeatDepth bounds the nesting flattened into dotted fields; deeper
// objects are kept as JSON text.
const maxHeartbeatDepth = 3

// decodeHeartbeat parses a heartbeat record leniently: nil when it is not
// a JSON object.
func decodeHeartbeat(data []byte) map[string]any {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil || dec.More() {
		return nil
	}
	return m
}

// heartbeatEvent is the event of one heartbeat record. A record that is
// not a JSON object still gives an event (tag heartbeat_unparsed) with its
// raw text: nothing is dropped.
func heartbeatEvent(data []byte, at time.Time) event.Event {
	ev := event.Event{
		"@timestamp":     at.UTC(),
		"event.kind":     "metric",
		"event.category": []string{"host"},
		"event.type":     []string{"info"},
		"event.dataset":  HeartbeatStream,
		"event.module":   "csirt",
		"event.original": string(bytes.ToValidUTF8(data, []byte("\uFFFD"))),
	}
	m := decodeHeartbeat(data)
	if m == nil {
		ev["tags"] = []string{"heartbeat_unparsed"}
		return ev
	}
	flattenHeartbeat(ev, HeartbeatPrefix, m, 0)
	if v := heartbeatVersion(m); v != "" {
		ev["agent.version"] = v
	}
	if h, ok := m["hostname"].(string); ok && h != "" {
		ev["host.hostname"] = h
	}
	return ev
}

// heartbeatVersion is the agent version a heartbeat reports:
// agent_version (agents/internal/heartbeat), or version.
func heartbeatVersion(m map[string]any) string {
	for _, k := range []string{"agent_version", "version"} {
		if v, ok := m[k].(string); ok && v != "" {
			return v
		}
	}
	return ""
}

func flattenHeartbeat(ev event.Event, prefix string, m map[string]any, depth int) {
	for k, v := range m {
		if k == "" {
			continue
		}
		// A dot in a key would make a name that is both a value and an
		// object once nested (keys "a" and "a.b").
		name := prefix + strings.ReplaceAll(k, ".", "_")
		if obj, ok := v.(map[string]any); ok && depth < maxHeartbeatDepth {
			flattenHeartbeat(ev, name+".", obj, depth+1)
			continue
		}
		if cv, ok := heartbeatValue(v); ok {
			ev[name] = cv
		}
	}
}

// heartbeatValue converts a JSON value to an event value: numbers as int64
// (float64 when not integral), lists of scalars as []string, other
// structures as their JSON text.
func heartbeatValue(v any) (any, bool) {
	switch x := v.(type) {
	case nil:
		return nil, false
	case string, bool:
		return x, true
	case json.Number:
		if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return n, true
		}
		if f, err := x.Float64(); err == nil {
			return f, true
		}
		return string(x), true
	case []any:
		out := make([]string, 0, len(x))
		for _, it := range x {
			switch s := it.(type) {
			case string:
				out = append(out, s)
			case json.Number:
				out = append(out, string(s))
			case bool:
				out = append(out, strconv.FormatBool(s))
			default:
				b, _ := json.Marshal(x)
				return string(b), true
			}
		}
		return out, true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, false
	}
	return string(b), true
}
