package event

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func sample() Event {
	return Event{
		"@timestamp":      time.Date(2026, 11, 2, 8, 30, 1, 123456789, time.UTC),
		"event.id":        IDFromSequence("agent-1", "auth", 42),
		"event.ingested":  time.Date(2026, 11, 2, 8, 30, 2, 0, time.UTC),
		"event.kind":      "event",
		"event.category":  []string{"authentication"},
		"event.type":      []string{"start"},
		"event.dataset":   "sshd",
		"event.outcome":   "failure",
		"organization.id": "comune-siena",
		"agent.id":        "agent-1",
		"host.name":       "web01",
		"source.ip":       "203.0.113.7",
		"source.port":     int64(52144),
		"user.name":       "root",
		"related.ip":      []string{"203.0.113.7"},
	}
}

func TestRoundTrip(t *testing.T) {
	e := sample()
	require.NoError(t, e.Validate())
	b, err := json.Marshal(e)
	require.NoError(t, err)
	// Nested ECS on the wire, nanoseconds kept, keys sorted.
	require.Contains(t, string(b), `"@timestamp":"2026-11-02T08:30:01.123456789Z"`)
	require.Contains(t, string(b), `"source":{"ip":"203.0.113.7","port":52144}`)
	back, err := Decode(b)
	require.NoError(t, err)
	require.Equal(t, e, back)
	b2, err := json.Marshal(back)
	require.NoError(t, err)
	require.Equal(t, string(b), string(b2), "encoding must be deterministic")
}

func TestDecodeDottedAndNested(t *testing.T) {
	nested, err := Decode([]byte(`{"source":{"ip":"10.0.0.1","port":"22"},"tags":"one"}`))
	require.NoError(t, err)
	dotted, err := Decode([]byte(`{"source.ip":"10.0.0.1","source.port":22,"tags":["one"]}`))
	require.NoError(t, err)
	require.Equal(t, nested, dotted)
	require.Equal(t, int64(22), dotted["source.port"])
}

func TestDecodeUnknownFieldsKept(t *testing.T) {
	e, err := Decode([]byte(`{"winlog":{"event_id":4688,"ratio":0.5,"list":[1,"a",true],"objs":[{"a":1}]}}`))
	require.NoError(t, err)
	require.Equal(t, int64(4688), e["winlog.event_id"])
	require.Equal(t, 0.5, e["winlog.ratio"])
	require.Equal(t, []string{"1", "a", "true"}, e["winlog.list"])
	require.Equal(t, `[{"a":1}]`, e["winlog.objs"])
}

func TestDecodeErrorsNameTheField(t *testing.T) {
	cases := []struct{ in, field string }{
		{`{"source":{"ip":"not-an-ip"}}`, "source.ip"},
		{`{"source.port":"http"}`, "source.port"},
		{`{"source.port":1.5}`, "source.port"},
		{`{"@timestamp":"yesterday"}`, "@timestamp"},
		{`{"@timestamp":12}`, "@timestamp"},
		{`{"user":{"name":{"first":"x"}}}`, "user.name"},
		{`{"source.ip":"10.0.0.1","source":{"ip":"10.0.0.2"}}`, "source.ip"},
		{`{"related":{"ip":["10.0.0.1","nope"]}}`, "related.ip"},
	}
	for _, c := range cases {
		_, err := Decode([]byte(c.in))
		var fe *FieldError
		require.ErrorAs(t, err, &fe, c.in)
		require.Equal(t, c.field, fe.Field, c.in)
		require.Contains(t, err.Error(), c.field)
	}
}

func TestDecodeMalformed(t *testing.T) {
	for _, in := range []string{``, `[]`, `{"a":`, `{"a":1} {"b":2}`, `null`} {
		_, err := Decode([]byte(in))
		require.Error(t, err, in)
	}
	deep := strings.Repeat(`{"a":`, MaxNesting+2) + `1` + strings.Repeat(`}`, MaxNesting+2)
	_, err := Decode([]byte(deep))
	require.ErrorContains(t, err, "nested deeper")
}

func TestValidate(t *testing.T) {
	for _, name := range Required {
		e := sample()
		delete(e, name)
		err := e.Validate()
		var fe *FieldError
		require.ErrorAs(t, err, &fe)
		require.Equal(t, name, fe.Field)
	}
	bad := []struct {
		field string
		value any
	}{
		{"source.ip", "999.1.1.1"},
		{"source.port", "22"},
		{"event.category", 3},
		{"related.ip", []string{"x"}},
		{"@timestamp", "2026-01-01"},
		{"custom.thing", map[string]int{}},
	}
	for _, b := range bad {
		e := sample()
		e[b.field] = b.value
		var fe *FieldError
		require.ErrorAs(t, e.Validate(), &fe, b.field)
		require.Equal(t, b.field, fe.Field)
	}
	e := sample()
	e["event.category"] = []string{}
	require.Error(t, e.Validate())
}

func TestIDs(t *testing.T) {
	a := IDFromSequence("agent-1", "auth", 1)
	require.Equal(t, a, IDFromSequence("agent-1", "auth", 1))
	require.Len(t, a, 32)
	require.NotEqual(t, a, IDFromSequence("agent-1", "auth", 2))
	require.NotEqual(t, a, IDFromSequence("agent-1", "aut", 1))
	require.NotEqual(t, IDFromRaw([]byte("ab"), []byte("c")), IDFromRaw([]byte("a"), []byte("bc")))
}

func TestCheckVersion(t *testing.T) {
	require.NoError(t, CheckVersion("1.0"))
	require.NoError(t, CheckVersion("1.7"))
	require.ErrorContains(t, CheckVersion("2.0"), `"2.0" is not supported`)
	require.ErrorContains(t, CheckVersion(""), "missing")
}

func TestAccessors(t *testing.T) {
	e := sample()
	require.Equal(t, "comune-siena", e.Org())
	require.Equal(t, "sshd", e.Dataset())
	require.Equal(t, "52144", e.String("source.port"))
	require.Equal(t, []string{"root"}, e.Strings("user.name"))
	require.Equal(t, "", e.String("absent"))
	c := e.Clone()
	c.Strings("related.ip")[0] = "x"
	require.Equal(t, "203.0.113.7", e.Strings("related.ip")[0])
}

func TestFieldRegistry(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range Fields() {
		require.False(t, seen[f.Name], "duplicate %s", f.Name)
		seen[f.Name] = true
		require.NotEmpty(t, f.Description, f.Name)
	}
	for _, r := range Required {
		_, ok := Lookup(r)
		require.True(t, ok, r)
	}
}

func TestMarshalStructure(t *testing.T) {
	e := Event{
		"@timestamp":  time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		"source.ip":   "10.0.0.1",
		"source.port": int64(22),
		"source-x":    "dash sorts before dot",
		"source0":     "digit sorts after dot",
		"a":           "scalar",
		"a.b":         "kept dotted beside the scalar",
		"a.b.c":       "also",
		"x.y":         "value",
		"x.y.z":       "dotted under x",
		"x.y0":        int64(1),
		"p..q":        "empty segment",
		"r.":          "trailing dot",
		"tags":        []string{"a", "b"},
		"ok":          true,
		"ratio":       0.25,
	}
	b, err := json.Marshal(e)
	require.NoError(t, err)
	require.True(t, json.Valid(b), "%s", b)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	want := map[string]any{
		"@timestamp": "2026-01-02T03:04:05.000000006Z",
		"source":     map[string]any{"ip": "10.0.0.1", "port": float64(22)},
		"source-x":   "dash sorts before dot",
		"source0":    "digit sorts after dot",
		"a":          "scalar",
		"a.b":        "kept dotted beside the scalar",
		"a.b.c":      "also",
		"x":          map[string]any{"y": "value", "y.z": "dotted under x", "y0": float64(1)},
		"p":          map[string]any{".q": "empty segment"},
		"r.":         "trailing dot",
		"tags":       []any{"a", "b"},
		"ok":         true,
		"ratio":      0.25,
	}
	require.Equal(t, want, got)
	back, err := Decode(b)
	require.NoError(t, err)
	b2, err := json.Marshal(back)
	require.NoError(t, err)
	require.Equal(t, string(b), string(b2))
}

// FuzzAppendString: our escaper and encoding/json agree on what a string
// decodes to, and the output is always valid JSON.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "ctl\x00\x01\x1f\n\r\t", "bad\xff\xfeutf8", "ls\u2028ps\u2029", "<html>&", "é漢字😀"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ours := appendString(nil, s)
		if !json.Valid(ours) {
			t.Fatalf("invalid JSON %q for %q", ours, s)
		}
		theirs, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var a, b string
		if err := json.Unmarshal(ours, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(theirs, &b); err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Fatalf("%q decodes to %q, encoding/json's to %q", s, a, b)
		}
	})
}
