package event

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/schema.md from the field registry")

// TestSchemaDoc keeps docs/schema.md equal to the field registry: every
// field the platform writes is listed there with its type. Run with -update
// after adding a field.
func TestSchemaDoc(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "schema.md")
	want := SchemaMarkdown()
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v (run: go test ./internal/event -run TestSchemaDoc -update)", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date with the field registry: run go test ./internal/event -run TestSchemaDoc -update", path)
	}
}

// SchemaMarkdown renders the schema documentation.
func SchemaMarkdown() []byte {
	var b bytes.Buffer
	b.WriteString(`# Event schema

Generated from ` + "`internal/event/fields.go`" + ` by ` + "`go test ./internal/event -run TestSchemaDoc -update`" + `;
a test fails when this file and the registry disagree.

Events are JSON documents with Elastic Common Schema (ECS ` + ECSVersion + `) field names. On the
wire (Kafka, store) they are nested objects (` + "`{\"source\":{\"ip\":\"…\"}}`" + `); in memory they are a flat
map keyed by dotted names (` + "`source.ip`" + `). The schema version (` + SchemaVersion + `) travels beside events, in the
batch envelope and in the Kafka header ` + "`csirt-schema`" + `; readers refuse another major version.

## Required fields

Every event carries: ` + "`" + strings.Join(Required, "`, `") + "`" + `.

## Rules

- ` + "`event.id`" + ` is deterministic: a hash of agent id, stream and sequence number
  (` + "`IDFromSequence`" + `) or, for records without a sequence (syslog from devices), of the entity,
  the device and the raw bytes (` + "`IDFromRaw`" + `). A retried write therefore never duplicates.
- ` + "`organization.id`" + ` is the tenant key: every store read and write is scoped by it.
- ` + "`event.original`" + ` keeps the raw record unless the entity's policy drops it.
- Fields not listed here may be present (e.g. fields of a Windows event); they are stored but not
  indexed for search.
- Types: keyword (exact, case-insensitive in queries), text (matched by words, see docs/query.md),
  ip, long, double, date (RFC 3339 with nanoseconds), boolean. "list" marks a field holding a list.

## Fields

| field | type | description |
|---|---|---|
`)
	for _, f := range Fields() {
		typ := string(f.Type)
		if f.Array {
			typ = "list of " + typ
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", f.Name, typ, strings.ReplaceAll(f.Description, "|", "\\|"))
	}
	return b.Bytes()
}
