package elastic

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/csirt-toscana/platform/internal/event"
	"github.com/csirt-toscana/platform/internal/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func typeOf(s string) event.Type { return event.Type(s) }

func golden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the generated JSON (go test -update rewrites it)", path)
	}
}

// TestTemplatesGolden pins the templates of a store with retention.
func TestTemplatesGolden(t *testing.T) {
	zero := 0
	s := &Store{prefix: "csirt", opts: Options{
		Replicas:  &zero,
		Retention: map[string]time.Duration{"events": 90 * 24 * time.Hour, "events/sshd": 365 * 24 * time.Hour, "findings": 36 * time.Hour},
	}, schemas: map[store.Collection]store.Schema{}}
	for _, c := range store.Collections {
		s.schemas[c], _ = store.SchemaOf(c)
	}
	tpls, err := s.templates()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]M{}
	for _, tp := range tpls {
		// The events mapping follows internal/event's registry, which
		// changes often: TestMappingCoversSchema checks it instead.
		if tp.path != "/_component_template/csirt-events-mappings" {
			out[tp.path] = tp.body
		}
	}
	golden(t, "templates.json", out)
	if got := s.stream(store.Events, "sshd"); got != "csirt-events-sshd" {
		t.Errorf("stream of sshd = %s", got)
	}
	if got := s.stream(store.Events, "nginx.access"); got != "csirt-events-default" {
		t.Errorf("stream of nginx.access = %s", got)
	}
	if got := s.stream(store.Findings, ""); got != "csirt-findings-default" {
		t.Errorf("stream of findings = %s", got)
	}
}

// TestMappingCoversSchema checks that every schema field has its typed
// mapping, for every collection.
func TestMappingCoversSchema(t *testing.T) {
	want := map[event.Type]string{event.Keyword: "keyword", event.Text: "text", event.IP: "ip",
		event.Long: "long", event.Double: "double", event.Date: "date_nanos", event.Bool: "boolean"}
	for _, c := range store.Collections {
		sch, _ := store.SchemaOf(c)
		m, err := Mapping(sch)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if m["dynamic"] != false {
			t.Errorf("%s: root is not dynamic: false", c)
		}
		for name, f := range sch.Fields {
			props := m["properties"].(M)
			var leaf M
			parts := splitDots(name)
			for i, p := range parts {
				node, ok := props[p].(M)
				if !ok {
					t.Fatalf("%s: %s: no mapping for %s", c, name, p)
				}
				if i == len(parts)-1 {
					leaf = node
				} else {
					props = node["properties"].(M)
				}
			}
			if leaf["type"] != want[f.Type] {
				t.Errorf("%s: %s mapped as %v, want %s", c, name, leaf["type"], want[f.Type])
			}
			if f.Type == event.Text {
				tok := m["properties"].(M)[tokensField].(M)["properties"].(M)
				for _, p := range parts[:len(parts)-1] {
					tok = tok[p].(M)["properties"].(M)
				}
				if a := tok[parts[len(parts)-1]].(M)["analyzer"]; a != "whitespace" {
					t.Errorf("%s: tokens of %s have analyzer %v", c, name, a)
				}
			}
		}
	}
	bad := store.Schema{Fields: map[string]event.FieldDef{
		"a":   {Name: "a", Type: event.Keyword},
		"a.b": {Name: "a.b", Type: event.Keyword},
	}}
	if _, err := Mapping(bad); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a value and an object under one name: got %v", err)
	}
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func TestRetentionString(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * 24 * time.Hour: "30d", 36 * time.Hour: "36h", 90 * time.Minute: "90m", 61 * time.Second: "61s", 1500 * time.Millisecond: "1500ms",
	} {
		if got := retentionString(d); got != want {
			t.Errorf("retentionString(%s) = %s, want %s", d, got, want)
		}
	}
}

func TestPrepare(t *testing.T) {
	cases := []struct {
		name   string
		sc     store.Scope
		doc    store.Doc
		want   string
		tenant string
		err    error
	}{
		{"adds nested tenant", store.TenantScope("t1"), store.Doc{ID: "a", Source: json.RawMessage(`{"x":1}`)},
			`{"x":1,"organization":{"id":"t1"},"store_doc_id":"a"}`, "t1", nil},
		{"empty object", store.RegionalScope(), store.Doc{ID: "a", Tenant: "t2", Source: json.RawMessage(` {} `)},
			`{"organization":{"id":"t2"},"store_doc_id":"a"}`, "t2", nil},
		{"into existing organization", store.RegionalScope(), store.Doc{ID: "a", Tenant: "t2", Source: json.RawMessage(`{"organization":{"name":"X"}}`)},
			`{"organization":{"id":"t2","name":"X"},"store_doc_id":"a"}`, "t2", nil},
		{"source tenant kept", store.RegionalScope(), store.Doc{ID: "a", Source: json.RawMessage(`{"organization.id":"t3"}`)},
			`{"organization.id":"t3","store_doc_id":"a"}`, "t3", nil},
		{"same tenant twice", store.RegionalScope(), store.Doc{ID: "a", Tenant: "t3", Source: json.RawMessage(`{"organization":{"id":"t3"}}`)},
			`{"organization":{"id":"t3"},"store_doc_id":"a"}`, "t3", nil},
		{"different tenant in source", store.RegionalScope(), store.Doc{ID: "a", Tenant: "t1", Source: json.RawMessage(`{"organization":{"id":"t3"}}`)}, "", "", store.ErrInvalid},
		{"dotted and nested differ", store.RegionalScope(), store.Doc{ID: "a", Source: json.RawMessage(`{"organization":{"id":"t3"},"organization.id":"t4"}`)}, "", "", store.ErrInvalid},
		{"out of scope", store.TenantScope("t1"), store.Doc{ID: "a", Tenant: "t2", Source: json.RawMessage(`{}`)}, "", "", store.ErrOutOfScope},
		{"unscoped", store.Scope{}, store.Doc{ID: "a", Tenant: "t2", Source: json.RawMessage(`{}`)}, "", "", store.ErrUnscoped},
		{"no tenant", store.RegionalScope(), store.Doc{ID: "a", Source: json.RawMessage(`{}`)}, "", "", store.ErrInvalid},
		{"not an object", store.RegionalScope(), store.Doc{ID: "a", Tenant: "t", Source: json.RawMessage(`[1]`)}, "", "", store.ErrInvalid},
		{"bad id", store.RegionalScope(), store.Doc{ID: "a/b", Tenant: "t", Source: json.RawMessage(`{}`)}, "", "", store.ErrInvalid},
		{"reserved field", store.RegionalScope(), store.Doc{ID: "a", Tenant: "t", Source: json.RawMessage(`{"store_doc_id":"b"}`)}, "", "", store.ErrInvalid},
	}
	for _, c := range cases {
		orig := append(json.RawMessage(nil), c.doc.Source...)
		p, err := prepare(c.sc, store.Schema{}, c.doc)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: got %v, want %v", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if string(p.body) != c.want || p.tenant != c.tenant {
			t.Errorf("%s: got %s (tenant %s), want %s (tenant %s)", c.name, p.body, p.tenant, c.want, c.tenant)
		}
		if !bytes.Equal(orig, c.doc.Source) {
			t.Errorf("%s: the caller's source was modified", c.name)
		}
	}
}

func TestPrepareTokens(t *testing.T) {
	sch, _ := store.SchemaOf(store.Events)
	for src, want := range map[string]string{
		`{"message":"Città di-Firenze (100%)","event":{"original":"A\tB"}}`: `{"message":"Città di-Firenze (100%)","event":{"original":"A\tB"},"organization":{"id":"t1"},"store_tokens":{"event.original":"a b","message":"città di firenze 100"},"store_doc_id":"a"}`,
		`{"event.original":["X-1",null,"y"],"message":null}`:                `{"event.original":["X-1",null,"y"],"message":null,"organization":{"id":"t1"},"store_tokens":{"event.original":["x 1","y"]},"store_doc_id":"a"}`,
		`{"message":42}`:        `{"message":42,"organization":{"id":"t1"},"store_tokens":{"message":"42"},"store_doc_id":"a"}`,
		`{"host":{"name":"x"}}`: `{"host":{"name":"x"},"organization":{"id":"t1"},"store_doc_id":"a"}`,
	} {
		p, err := prepare(store.RegionalScope(), sch, store.Doc{ID: "a", Tenant: "t1", Source: json.RawMessage(src)})
		if err != nil || string(p.body) != want {
			t.Errorf("%s:\n got %s %v\nwant %s", src, p.body, err, want)
		}
	}
	for _, src := range []string{`{"message":{"a":1}}`, `{"event":{"original":"a"},"event.original":"b"}`} {
		if _, err := prepare(store.RegionalScope(), sch, store.Doc{ID: "a", Tenant: "t1", Source: json.RawMessage(src)}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", src, err)
		}
	}
}

func TestOptionsHideCredentials(t *testing.T) {
	o := Options{Username: "u", Password: "hunter2", APIKey: "c2VjcmV0"}
	for _, s := range []string{fmt.Sprint(o), fmt.Sprintf("%+v", o), fmt.Sprintf("%#v", o), fmt.Sprint(&o)} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "c2VjcmV0") {
			t.Errorf("options printed with a credential: %s", s)
		}
	}
}
