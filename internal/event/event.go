// Package event defines the platform's event: an Elastic Common Schema (ECS)
// document, its JSON codec, its validation, its deterministic id and the
// schema version carried beside it. Every component meets on this type:
// the collector produces events, the correlator and rules/ read them, the
// store archives them.
package event

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// SchemaVersion is the version of the event schema this build writes. It
// travels beside events (batch envelope, Kafka header), never inside them.
const SchemaVersion = "1.0"

// ECSVersion is the ECS release whose field names the schema follows.
const ECSVersion = "8.11.0"

// Required lists the fields every event must carry.
var Required = []string{
	"@timestamp", "event.id", "event.ingested", "event.kind", "event.category",
	"event.type", "event.dataset", "organization.id", "agent.id", "host.name",
}

// Event is one event, held flat: keys are dotted ECS names ("source.ip"),
// values are string, int64, float64, bool, []string or time.Time (for Date
// fields). On the wire (JSON) it is the nested ECS document. The flat form
// makes a field lookup one map access on the detection hot path.
type Event map[string]any

// Get returns a field's value.
func (e Event) Get(name string) (any, bool) {
	v, ok := e[name]
	return v, ok
}

// String returns a field as a string: strings as they are, numbers and
// booleans formatted, lists joined by nothing (use Strings for lists). It
// returns "" for an absent field.
func (e Event) String(name string) string {
	switch v := e[name].(type) {
	case nil:
		return ""
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case []string:
		return strings.Join(v, " ")
	default:
		return fmt.Sprint(v)
	}
}

// Strings returns a field as a list of strings (a scalar gives a list of one).
func (e Event) Strings(name string) []string {
	switch v := e[name].(type) {
	case nil:
		return nil
	case []string:
		return v
	default:
		return []string{e.String(name)}
	}
}

// Time returns the event time (@timestamp); the zero time when absent.
func (e Event) Time() time.Time {
	t, _ := e["@timestamp"].(time.Time)
	return t
}

// Org returns the tenant key (organization.id).
func (e Event) Org() string { s, _ := e["organization.id"].(string); return s }

// ID returns event.id.
func (e Event) ID() string { s, _ := e["event.id"].(string); return s }

// Dataset returns event.dataset.
func (e Event) Dataset() string { s, _ := e["event.dataset"].(string); return s }

// Clone returns a copy that shares no mutable state with e.
func (e Event) Clone() Event {
	out := make(Event, len(e))
	for k, v := range e {
		if l, ok := v.([]string); ok {
			v = append([]string(nil), l...)
		}
		out[k] = v
	}
	return out
}

// FieldError says which field of an event is wrong and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %q: %s", e.Field, e.Reason) }

// Validate checks that the required fields are present and that every
// registered field holds a value of its declared type. The first problem is
// returned as a *FieldError naming the field.
func (e Event) Validate() error {
	for _, name := range Required {
		v, ok := e[name]
		if !ok || v == nil || v == "" {
			return &FieldError{Field: name, Reason: "required field is missing"}
		}
		if l, isList := v.([]string); isList && len(l) == 0 {
			return &FieldError{Field: name, Reason: "required field is empty"}
		}
	}
	for name, v := range e {
		if err := checkValue(name, v); err != nil {
			return err
		}
	}
	return nil
}

func checkValue(name string, v any) error {
	def, known := byName[name]
	if !known {
		switch v.(type) {
		case string, int64, float64, bool, []string, time.Time:
			return nil
		}
		return &FieldError{Field: name, Reason: fmt.Sprintf("unsupported value type %T", v)}
	}
	if def.Array {
		switch l := v.(type) {
		case []string:
			for _, s := range l {
				if err := checkScalar(def, s); err != nil {
					return err
				}
			}
			return nil
		case string:
			return checkScalar(def, l)
		}
		return &FieldError{Field: name, Reason: fmt.Sprintf("want a list of %s, got %T", def.Type, v)}
	}
	return checkScalar(def, v)
}

func checkScalar(def FieldDef, v any) error {
	bad := func(reason string) error { return &FieldError{Field: def.Name, Reason: reason} }
	switch def.Type {
	case Keyword, Text:
		if _, ok := v.(string); !ok {
			return bad(fmt.Sprintf("want a string, got %T", v))
		}
	case IP:
		s, ok := v.(string)
		if !ok {
			return bad(fmt.Sprintf("want an IP address string, got %T", v))
		}
		if _, err := netip.ParseAddr(s); err != nil {
			return bad(fmt.Sprintf("%q is not an IP address", s))
		}
	case Long:
		if _, ok := v.(int64); !ok {
			return bad(fmt.Sprintf("want an integer, got %T", v))
		}
	case Double:
		switch v.(type) {
		case float64, int64:
		default:
			return bad(fmt.Sprintf("want a number, got %T", v))
		}
	case Date:
		t, ok := v.(time.Time)
		if !ok {
			return bad(fmt.Sprintf("want a time, got %T", v))
		}
		if t.IsZero() {
			return bad("time is zero")
		}
	case Bool:
		if _, ok := v.(bool); !ok {
			return bad(fmt.Sprintf("want true or false, got %T", v))
		}
	}
	return nil
}

// IDFromSequence is the deterministic event id of a record shipped by an
// agent: the same (agent, stream, sequence) always gives the same id, so a
// retried delivery overwrites instead of duplicating.
func IDFromSequence(agentID, stream string, seq uint64) string {
	h := sha256.New()
	writeField(h, []byte(agentID))
	writeField(h, []byte(stream))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	h.Write(b[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// IDFromRaw is the deterministic id of a record without a sequence (syslog
// from devices): a hash of the parts that identify it, typically the entity,
// the sending device and the raw bytes.
func IDFromRaw(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		writeField(h, p)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// writeField length-prefixes p so that ("ab","c") and ("a","bc") differ.
func writeField(h interface{ Write([]byte) (int, error) }, p []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(p)))
	_, _ = h.Write(n[:])
	_, _ = h.Write(p)
}

// CheckVersion accepts a schema version this build can read: the same major
// version as SchemaVersion. Anything else is refused with a clear error.
func CheckVersion(v string) error {
	major, _, _ := strings.Cut(v, ".")
	want, _, _ := strings.Cut(SchemaVersion, ".")
	if v == "" {
		return fmt.Errorf("event schema version is missing (this build reads %s.x)", want)
	}
	if major != want {
		return fmt.Errorf("event schema version %q is not supported (this build reads %s.x)", v, want)
	}
	return nil
}
